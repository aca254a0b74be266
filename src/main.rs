//! The `stele` binary: parse the command line, set up logging, run the subcommand.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = stele::cli::Cli::parse();
    if let Err(e) = stele::cli::logging::init(&cli.log) {
        eprintln!("stele: {e:#}");
        return std::process::ExitCode::from(2);
    }
    match stele::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // `stele block dump | head` closing the pipe early is not a failure.
        Err(e) if is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "command failed");
            eprintln!("stele: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}
