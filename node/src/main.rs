//! `tallyd`: the Tally node binary (see `tally_node::cli`).

#![forbid(unsafe_code)]

use clap::Parser;
use tally_node::cli::{Cli, Command, LogFormat};

/// mimalloc instead of the system allocator: the hot path (gRPC decoding,
/// Raft entries, engine events) allocates many small objects; measured
/// 35-45% less node CPU per command (README, Performance).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cli.log_level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=error"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => builder.json().with_current_span(false).init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => tally_node::cli::run(*args).await,
            Command::Dev(args) => tally_node::cli::dev(args).await,
            Command::Probe(args) => tally_node::probe::run(args).await,
            Command::Restore(args) => tally_node::cli::restore(args),
            Command::Certs(args) => tally_node::cli::certs(args),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
