//! `tally-tidy [ROOT]`: runs the tidy checks (see the `tally_tidy` crate
//! docs) over the workspace at ROOT (default: the one it was built in),
//! prints every violation with how to fix it, and exits 1 if there is any.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let root = std::env::args_os()
        .nth(1)
        .map_or_else(tally_tidy::workspace_root, PathBuf::from);
    let report = tally_tidy::check_tree(&root);
    print!("{}", tally_tidy::render(&report));
    if report.violations.is_empty() {
        println!("tidy: ok ({} files checked)", report.files_checked);
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
