//! Stamps tallyctl with its git commit (`TALLY_GIT_COMMIT`) for `--version`.
include!("../scripts/build_commit.rs");
