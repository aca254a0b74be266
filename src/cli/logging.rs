//! Structured logs through `tracing`: logfmt-like text by default, JSON on request.

use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Logfmt,
    Json,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log filtering level: error, warn, info, debug, or a tracing filter directive.
    #[arg(
        long = "log.level",
        global = true,
        default_value = "info",
        env = "STELE_LOG_LEVEL"
    )]
    pub level: String,
    /// Log format.
    #[arg(
        long = "log.format",
        global = true,
        value_enum,
        default_value = "logfmt"
    )]
    pub format: LogFormat,
}

pub fn init(args: &LogArgs) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&args.level)
        .map_err(|e| anyhow::anyhow!("invalid --log.level {:?}: {e}", args.level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.format {
        LogFormat::Logfmt => builder.with_ansi(false).with_target(false).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
    Ok(())
}
