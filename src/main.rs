use clap::Parser;
use interests_receiver::cli::{Cli, run};

fn main() -> std::process::ExitCode {
    tune_malloc();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the async runtime starts")
        .block_on(serve(Cli::parse()))
}

/// glibc's malloc, told to give memory back: blocks of 64 KiB and more
/// (request and connection buffers under load) come from their own
/// mappings, returned to the system when freed, and free space at the top
/// of the heap is returned above 128 KiB. By default glibc raises both
/// thresholds after the first large block is freed, and memory freed
/// between load runs stayed resident: in `scripts/bench.sh` the service's
/// anonymous memory peaked 3.3 MiB lower with these settings (BENCHMARKS.md).
/// Before the runtime's threads start, as `mallopt` wants.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 * 1024);
    }
}

async fn serve(cli: Cli) -> std::process::ExitCode {
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            if interests_receiver::telemetry::logging_ready() {
                tracing::error!(error = format!("{e:#}"), "stopped");
            } else {
                // Before logging is set up this is the only place it can go.
                eprintln!("interests-receiver: {e:#}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}
