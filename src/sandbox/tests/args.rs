//! The `sandbox` subcommand's settings: defaults and validation.

use clap::Parser;

use crate::sandbox::SandboxArgs;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: SandboxArgs,
}

#[test]
fn defaults_match_the_documented_ones() {
    let cli = Cli::try_parse_from(["sandbox"]).map_err(|e| e.to_string());
    let args = cli.map(|cli| cli.args);
    let args = args.as_ref().ok();
    assert_eq!(
        args.map(|a| a.listen_addr.to_string()),
        Some("0.0.0.0:9090".into())
    );
    assert_eq!(args.map(|a| a.api_key.as_str()), Some("sandbox-key"));
    assert_eq!(args.map(|a| a.api_secret.as_str()), Some("sandbox-secret"));
    assert_eq!(args.map(|a| a.time_scale), Some(1.0));
    assert_eq!(
        args.map(|a| (a.rate_per_minute, a.rate_per_hour)),
        Some((60, 1000))
    );
    assert!(!format!("{:?}", args).contains("sandbox-secret"));
}

#[test]
fn a_time_scale_of_zero_or_less_is_refused() {
    for scale in ["0", "-1", "nan", "abc"] {
        assert!(
            Cli::try_parse_from(["sandbox", "--time-scale", scale]).is_err(),
            "{scale}"
        );
    }
    let ok = Cli::try_parse_from(["sandbox", "--time-scale", "0.01"]).map(|c| c.args.time_scale);
    assert_eq!(ok.ok(), Some(0.01));
}
