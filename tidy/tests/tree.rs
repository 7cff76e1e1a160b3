//! The tidy checks over the real workspace: prints every violation.

#[test]
fn workspace_passes_every_tidy_check() {
    let report = tally_tidy::check_tree(&tally_tidy::workspace_root());
    assert!(
        report.files_checked > 50,
        "found only {} files",
        report.files_checked
    );
    assert!(
        report.violations.is_empty(),
        "tidy violations (run `cargo run -p tally-tidy` to list them):\n{}",
        tally_tidy::render(&report)
    );
}
