use clap::Parser;
use interests_receiver::cli::{Cli, run};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
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
