//! `tally-bench`: see the crate docs and `tally-bench --help`.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;
use tally_bench::args::Args;

/// mimalloc instead of the system allocator: the hot path (gRPC decoding,
/// Raft entries, engine events) allocates many small objects; measured
/// 35-45% less node CPU per command (README, Performance).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tally-bench: error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = runtime.block_on(tally_bench::run::run(args));
    // Abandoned requests must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match outcome {
        Ok(outcome) => {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(outcome.stdout.as_bytes());
            let _ = stdout.flush();
            match outcome.smoke_ok {
                Some(true) => {
                    eprintln!("SMOKE OK: work was applied");
                    ExitCode::SUCCESS
                }
                Some(false) => {
                    eprintln!("SMOKE FAIL: nothing was applied");
                    ExitCode::FAILURE
                }
                None => ExitCode::SUCCESS,
            }
        }
        Err(e) => {
            eprintln!("tally-bench: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
