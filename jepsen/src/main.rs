//! `tally-jepsen`: see the crate docs and jepsen/README.md.

fn main() {
    std::process::exit(tally_jepsen::cli::main());
}
