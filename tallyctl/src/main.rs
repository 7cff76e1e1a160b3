//! `tallyctl`: the operator's command line for a Tally cluster. Parses the
//! command line, runs it on a single-threaded Tokio runtime, prints the
//! outcome (text, or one JSON object with `--json`) and exits with
//! 0 success, 1 usage/connection error, 2 rejected, 3 unknown outcome,
//! 4 degraded cluster (`cluster status`, a canary that failed its watch).

#![forbid(unsafe_code)]

mod acct;
mod args;
mod backup;
mod ingest;
mod perps;
mod render;
mod run;
mod spot;
mod upgrade;

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

use crate::args::Cli;
use crate::run::{EXIT_ERROR, Outcome};

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    // Known before parsing, so that even usage errors honor --json.
    let json = argv.iter().skip(1).any(|a| a == "--json");
    let cli = match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(error) => return parse_error(&error, json),
    };
    let json = cli.json;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let outcome = match runtime {
        Ok(runtime) => runtime.block_on(run::run(cli)),
        Err(error) => Outcome::usage(&format!("cannot start the async runtime: {error}")),
    };
    emit(&outcome, json);
    ExitCode::from(outcome.exit_code())
}

/// `--help` and `--version` print and succeed; any other parse error is a
/// one-line usage error with exit status 1.
fn parse_error(error: &clap::Error, json: bool) -> ExitCode {
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            print_out(&error.render().to_string());
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand => {
            usage_error(&missing_command(&error.render().to_string()), json)
        }
        _ => {
            let message = first_paragraph(&error.render().to_string());
            let outcome = match amount_reason(error) {
                Some(reason) => Outcome::error(
                    EXIT_ERROR,
                    format!("error: {message} (see tallyctl --help)"),
                    reason,
                    &message,
                ),
                None => usage_outcome(&message),
            };
            emit(&outcome, json);
            ExitCode::from(outcome.exit_code())
        }
    }
}

/// The reason of an amount refused while parsing (`AMOUNT_TOO_LARGE`,
/// `BAD_PRECISION`, `MALFORMED_DECIMAL`, ...), for `--json`.
fn amount_reason(error: &clap::Error) -> Option<&'static str> {
    use std::error::Error as _;
    error
        .source()
        .and_then(|e| e.downcast_ref::<tally_client::amount::AmountError>())
        .map(|e| e.reason)
}

/// The first paragraph of clap's rendered error on one line, without its
/// `error: ` prefix (the usage and tips that follow are dropped).
fn first_paragraph(rendered: &str) -> String {
    let mut words: Vec<&str> = Vec::new();
    for line in rendered.trim_start().lines() {
        if line.trim().is_empty() {
            break;
        }
        words.extend(line.split_whitespace());
    }
    let text = words.join(" ");
    let text = text
        .strip_prefix("error:")
        .unwrap_or(&text)
        .trim()
        .to_string();
    if text.is_empty() {
        "invalid command line".to_string()
    } else {
        text
    }
}

/// "missing command" plus the usage line of the (sub)command that needs one.
fn missing_command(rendered: &str) -> String {
    match rendered
        .lines()
        .find_map(|l| l.trim().strip_prefix("Usage: "))
    {
        Some(usage) => format!("missing command; usage: {usage}"),
        None => "missing command".to_string(),
    }
}

/// The outcome of a command line clap refused (other than help/version).
fn usage_outcome(message: &str) -> Outcome {
    let line = format!("error: {message} (see tallyctl --help)");
    Outcome::error(EXIT_ERROR, line, "USAGE", message)
}

fn usage_error(message: &str, json: bool) -> ExitCode {
    let outcome = usage_outcome(message);
    emit(&outcome, json);
    ExitCode::from(outcome.exit_code())
}

fn emit(outcome: &Outcome, json: bool) {
    match outcome {
        Outcome::Ok { text, json: value } => {
            if json {
                print_out(&value.to_string());
            } else {
                print_out(text);
            }
        }
        Outcome::Fail {
            line, json: value, ..
        } => {
            if json {
                print_out(&value.to_string());
            }
            print_err(line);
        }
        Outcome::Warn {
            text,
            json: value,
            line,
            ..
        } => {
            if json {
                print_out(&value.to_string());
            } else {
                print_out(text);
            }
            print_err(line);
        }
        Outcome::Printed => {}
    }
}

/// Writes a line to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn print_out(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", text.trim_end()).and_then(|()| out.flush());
}

fn print_err(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_message(args: &[&str]) -> String {
        match Cli::try_parse_from(args) {
            Ok(_) => String::new(),
            Err(e) => match e.kind() {
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                | ErrorKind::MissingSubcommand => missing_command(&e.render().to_string()),
                _ => first_paragraph(&e.render().to_string()),
            },
        }
    }

    #[test]
    fn usage_errors_are_one_line() {
        let cases: [&[&str]; 6] = [
            &["tallyctl"],
            &["tallyctl", "cluster"],
            &["tallyctl", "account"],
            &["tallyctl", "deposit", "7", "BTC", "-1"],
            &["tallyctl", "deposit", "7", "BTC", "1e3"],
            &["tallyctl", "frobnicate"],
        ];
        for args in cases {
            let message = parse_message(args);
            assert!(!message.is_empty(), "{args:?}");
            assert!(!message.contains('\n'), "{args:?}: {message}");
            assert!(!message.starts_with("error"), "{args:?}: {message}");
            match usage_outcome(&message) {
                Outcome::Fail { exit, line, json } => {
                    assert_eq!(exit, EXIT_ERROR);
                    assert!(line.starts_with("error: "));
                    assert_eq!(json["status"], "error");
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            parse_message(&["tallyctl", "cluster"]),
            "missing command; usage: tallyctl cluster [OPTIONS] <COMMAND>"
        );
        assert!(parse_message(&["tallyctl", "account"]).contains("<ACCOUNT>"));
    }
}
