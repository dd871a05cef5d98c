use clap::Parser;
use interests_receiver::cli::{Cli, run};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Before logging is set up (bad configuration) this is the only
            // place the reason can go.
            eprintln!("interests-receiver: {e:#}");
            tracing::error!(error = format!("{e:#}"), "stopped");
            std::process::ExitCode::FAILURE
        }
    }
}
