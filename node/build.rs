//! Stamps the build with its git commit (`TALLY_GIT_COMMIT`) for
//! `tallyd --version` and the `tally_build_info` metric.
include!("../scripts/build_commit.rs");
