//! The `stele` binary: parse the command line, set up logging, run the subcommand.

use clap::Parser;

fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    fix_malloc_mmap_threshold();
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

/// glibc gives each thread that contends for the heap an arena of its own, up to 8 per core,
/// and memory freed in one arena is not reused by the others. With requests moving between
/// tokio and blocking-pool threads, the store's resident memory grew to 605 MiB under 32
/// clients on `medium` by default and stayed at 390 MiB with one arena per core (see
/// docs/PERFORMANCE.md). `MALLOC_ARENA_MAX` in the environment still wins.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
        // SAFETY: mallopt only changes allocator tuning; called before any other thread runs.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, cores as libc::c_int);
        }
    }
}

/// glibc serves allocations above a threshold with their own mapping, returned to the system
/// when freed, but raises the threshold (up to 32 MiB) each time such a block is freed, after
/// which fetch buffers and response batches of a few hundred KiB come from the arenas and stay
/// resident. A fixed threshold keeps them mapped: the store's peak RSS over 10 minutes of 32
/// clients on `medium` is 257 MiB with it and 331 MiB without (docs/PERFORMANCE.md, stop 14).
/// `MALLOC_MMAP_THRESHOLD_` in the environment still wins.
fn fix_malloc_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: as in `limit_malloc_arenas`.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}
