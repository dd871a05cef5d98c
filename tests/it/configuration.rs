//! Configuration (contract sections 3 and 4): the binary documents every
//! variable with its default, refuses bad values with a message naming the
//! variable (and never echoes a secret), `migrate` applies the schema, and
//! with no upstream credentials `serve` runs in sandbox mode end to end.

use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::child::{database_url, free_port};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Secret values given to every run; none may appear in its output.
const UPSTREAM_SECRET: &str = "upstream-secret-never-print-5f2c9a";
const API_TOKEN: &str = "api-token-never-print-0123456789";
const DB_PASSWORD: &str = "dbpass-never-print-77e1";
const SERVICE_SECRET: &str = "service-secret-never-print-0123456789abcdef";

/// A configuration that passes validation; its database does not answer
/// (port 1), so a run that got past validation fails on connecting.
fn valid_env() -> Vec<(&'static str, String)> {
    vec![
        (
            "DATABASE_URL",
            format!("postgres://postgres:{DB_PASSWORD}@127.0.0.1:1/unreachable"),
        ),
        ("LISTEN_ADDR", "127.0.0.1:0".into()),
        ("UPSTREAM_BASE_URL", "http://127.0.0.1:9".into()),
        ("UPSTREAM_API_KEY", "upstream-key".into()),
        ("UPSTREAM_API_SECRET", UPSTREAM_SECRET.into()),
        ("API_TOKENS", API_TOKEN.into()),
        ("SERVICE_SECRET", SERVICE_SECRET.into()),
    ]
}

/// Runs the binary with exactly `env`, killed if it outlives 20 s.
async fn run(args: &[&str], env: &[(&str, String)]) -> Output {
    let output = tokio::process::Command::new(crate::common::bin())
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(20), output)
        .await
        .unwrap_or_else(|_| panic!("`{}` did not exit within 20 s", args.join(" ")))
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn assert_no_secret(output: &str) {
    for (what, secret) in [
        ("UPSTREAM_API_SECRET", UPSTREAM_SECRET),
        ("API_TOKENS", API_TOKEN),
        ("the database password", DB_PASSWORD),
        ("SERVICE_SECRET", SERVICE_SECRET),
    ] {
        assert!(!output.contains(secret), "{what} was echoed:\n{output}");
    }
}

/// `serve` with the valid configuration changed by `changes` (`None`
/// unsets) must stop non-zero naming `variable`.
async fn serve_refuses(changes: &[(&'static str, Option<&str>)], variable: &str) {
    let mut env = valid_env();
    for (key, value) in changes {
        env.retain(|(k, _)| k != key);
        if let Some(value) = value {
            env.push((key, (*value).to_owned()));
        }
    }
    let output = run(&["serve"], &env).await;
    let printed = text(&output);
    assert!(
        !output.status.success(),
        "serve accepted {changes:?}:\n{printed}"
    );
    assert!(
        printed.contains(variable),
        "the error for {changes:?} does not name {variable}:\n{printed}"
    );
    assert_no_secret(&printed);
}

// ---------------------------------------------------------------------------
// 1. --help

/// The help paragraph of each `--flag` (from its line to the next flag).
fn option_blocks(help: &str) -> Vec<String> {
    let mut blocks: Vec<String> = Vec::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("--") || trimmed.starts_with("-h,") {
            blocks.push(String::new());
        }
        if let Some(block) = blocks.last_mut() {
            block.push_str(line);
            block.push('\n');
        }
    }
    blocks
}

#[tokio::test]
async fn serve_help_names_every_contract_variable_with_its_default() {
    let output = run(&["serve", "--help"], &[]).await;
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout).into_owned();
    let blocks = option_blocks(&help);
    let block_of = |variable: &str| {
        blocks
            .iter()
            .find(|b| b.contains(variable))
            .unwrap_or_else(|| panic!("serve --help does not mention {variable}:\n{help}"))
            .clone()
    };
    for (variable, defaults) in [
        ("DATABASE_URL", &[][..]),
        ("LISTEN_ADDR", &["0.0.0.0:8080"][..]),
        ("PUBLIC_BASE_URL", &[][..]),
        ("UPSTREAM_BASE_URL", &["https://api.nyne.ai"][..]),
        ("UPSTREAM_API_KEY", &[][..]),
        ("UPSTREAM_API_SECRET", &[][..]),
        ("API_TOKENS", &[][..]),
        ("POLL_AFTER_SECS", &["600", "15"][..]),
        ("UPSTREAM_RATE_PER_MINUTE", &["60"][..]),
        ("UPSTREAM_RATE_PER_HOUR", &["1000"][..]),
        ("JOB_DEADLINE_SECS", &["86400"][..]),
        ("PROFILE_CACHE_SECS", &["2592000"][..]),
        ("LOG_FORMAT", &["json"][..]),
        ("NAME_ONLY_LOOKUPS", &["warn", "allow", "refuse"][..]),
        ("AMBIGUOUS_RESUBMIT_AFTER_SECS", &["never sent again"][..]),
        ("REFRESH_AFTER_DAYS", &[][..]),
        ("REFRESH_CREDITS_DAILY", &[][..]),
        ("WEBHOOK_DISABLE_AFTER_DAYS", &["5"][..]),
        ("DATABASE_READ_URL", &[][..]),
        ("DATABASE_READ_MAX_LAG_SECS", &["5"][..]),
    ] {
        let block = block_of(variable);
        for default in defaults {
            assert!(
                block.contains(default),
                "the help of {variable} does not give its default {default}:\n{block}"
            );
        }
    }
}

#[tokio::test]
async fn top_level_help_lists_serve_migrate_sandbox_and_healthcheck() {
    let output = run(&["--help"], &[]).await;
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for command in ["serve", "migrate", "sandbox", "healthcheck"] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{command} "))),
            "--help does not list {command}:\n{help}"
        );
    }
}

// ---------------------------------------------------------------------------
// 2. Validation

#[tokio::test]
async fn a_valid_configuration_gets_past_validation_and_fails_only_on_the_database() {
    // The control for every refusal below: the base configuration is clean,
    // so a refusal that names a variable is due to that variable.
    let output = run(&["serve"], &valid_env()).await;
    let printed = text(&output);
    assert!(!output.status.success(), "{printed}");
    assert!(printed.contains("DATABASE_URL"), "{printed}");
    for other in [
        "LISTEN_ADDR",
        "PUBLIC_BASE_URL",
        "UPSTREAM_BASE_URL",
        "UPSTREAM_API_KEY",
        "UPSTREAM_API_SECRET",
        "API_TOKENS",
        "POLL_AFTER_SECS",
        "UPSTREAM_RATE_PER",
        "JOB_DEADLINE_SECS",
        "PROFILE_CACHE_SECS",
        "LOG_FORMAT",
        "CREDIT_BUDGET_DAILY",
    ] {
        assert!(
            !printed.contains(other),
            "a valid configuration was refused over {other}:\n{printed}"
        );
    }
    assert_no_secret(&printed);
}

#[tokio::test]
async fn serve_refuses_to_start_without_database_url() {
    serve_refuses(&[("DATABASE_URL", None)], "DATABASE_URL").await;
}

#[tokio::test]
async fn serve_refuses_a_listen_addr_that_is_not_an_address() {
    serve_refuses(&[("LISTEN_ADDR", Some("nope"))], "LISTEN_ADDR").await;
}

#[tokio::test]
async fn serve_refuses_a_public_base_url_that_is_not_http() {
    serve_refuses(&[("PUBLIC_BASE_URL", Some("ftp://x"))], "PUBLIC_BASE_URL").await;
}

#[tokio::test]
async fn serve_refuses_an_upstream_base_url_that_is_not_a_url() {
    serve_refuses(
        &[("UPSTREAM_BASE_URL", Some("not a url"))],
        "UPSTREAM_BASE_URL",
    )
    .await;
}

#[tokio::test]
async fn serve_refuses_an_upstream_key_without_its_secret() {
    serve_refuses(&[("UPSTREAM_API_SECRET", None)], "UPSTREAM_API_SECRET").await;
}

#[tokio::test]
async fn serve_refuses_an_upstream_secret_without_its_key() {
    serve_refuses(&[("UPSTREAM_API_KEY", None)], "UPSTREAM_API_KEY").await;
}

#[tokio::test]
async fn serve_refuses_upstream_credentials_without_api_tokens() {
    serve_refuses(&[("API_TOKENS", None)], "API_TOKENS").await;
}

#[tokio::test]
async fn serve_refuses_a_missing_or_short_service_secret_outside_sandbox_mode() {
    serve_refuses(&[("SERVICE_SECRET", None)], "SERVICE_SECRET").await;
    serve_refuses(&[("SERVICE_SECRET", Some("too-short"))], "SERVICE_SECRET").await;
    serve_refuses(
        &[("SERVICE_SECRET_PREVIOUS", Some("too-short"))],
        "SERVICE_SECRET_PREVIOUS",
    )
    .await;
}

#[tokio::test]
async fn serve_refuses_a_badly_named_or_short_read_token() {
    serve_refuses(&[("API_READ_TOKENS", Some("short"))], "API_READ_TOKENS").await;
    serve_refuses(
        &[("API_READ_TOKENS", Some("bad name=read-token-0123456789"))],
        "API_READ_TOKENS",
    )
    .await;
}

#[tokio::test]
async fn serve_refuses_an_api_token_that_is_too_short() {
    serve_refuses(&[("API_TOKENS", Some("short"))], "API_TOKENS").await;
}

#[tokio::test]
async fn serve_refuses_a_sha256_api_token_that_is_not_a_digest() {
    serve_refuses(&[("API_TOKENS", Some("sha256:xyz"))], "API_TOKENS").await;
}

#[tokio::test]
async fn serve_refuses_a_database_read_url_that_is_not_a_postgres_url_without_echoing_it() {
    for bad in [
        format!("mysql://reader:{DB_PASSWORD}@127.0.0.1/x"),
        format!("postgres://reader:{DB_PASSWORD}@127.0.0.1:notaport/x"),
        "replica-host".to_owned(),
    ] {
        serve_refuses(&[("DATABASE_READ_URL", Some(&bad))], "DATABASE_READ_URL").await;
    }
}

#[tokio::test]
async fn serve_refuses_a_zero_or_non_numeric_read_lag_bound() {
    for bad in ["0", "soon"] {
        serve_refuses(
            &[("DATABASE_READ_MAX_LAG_SECS", Some(bad))],
            "DATABASE_READ_MAX_LAG_SECS",
        )
        .await;
    }
}

#[tokio::test]
async fn serve_refuses_a_zero_poll_after_secs() {
    serve_refuses(&[("POLL_AFTER_SECS", Some("0"))], "POLL_AFTER_SECS").await;
}

#[tokio::test]
async fn serve_refuses_a_poll_after_secs_that_is_not_a_number() {
    serve_refuses(&[("POLL_AFTER_SECS", Some("abc"))], "POLL_AFTER_SECS").await;
}

#[tokio::test]
async fn serve_refuses_a_zero_rate_per_minute() {
    serve_refuses(
        &[("UPSTREAM_RATE_PER_MINUTE", Some("0"))],
        "UPSTREAM_RATE_PER_MINUTE",
    )
    .await;
}

#[tokio::test]
async fn serve_refuses_a_rate_per_hour_below_the_rate_per_minute() {
    serve_refuses(
        &[
            ("UPSTREAM_RATE_PER_MINUTE", Some("60")),
            ("UPSTREAM_RATE_PER_HOUR", Some("30")),
        ],
        "UPSTREAM_RATE_PER_HOUR",
    )
    .await;
}

#[tokio::test]
async fn serve_refuses_a_negative_job_deadline() {
    serve_refuses(&[("JOB_DEADLINE_SECS", Some("-1"))], "JOB_DEADLINE_SECS").await;
}

#[tokio::test]
async fn serve_refuses_a_profile_cache_secs_that_is_not_a_number() {
    serve_refuses(&[("PROFILE_CACHE_SECS", Some("x"))], "PROFILE_CACHE_SECS").await;
}

#[tokio::test]
async fn serve_refuses_an_unknown_log_format() {
    serve_refuses(&[("LOG_FORMAT", Some("xml"))], "LOG_FORMAT").await;
}

#[tokio::test]
async fn serve_refuses_an_unknown_name_only_lookups_policy() {
    serve_refuses(
        &[("NAME_ONLY_LOOKUPS", Some("sometimes"))],
        "NAME_ONLY_LOOKUPS",
    )
    .await;
}

#[tokio::test]
async fn serve_refuses_an_ambiguous_resubmit_after_secs_that_is_zero_or_not_a_number() {
    for bad in ["0", "soon"] {
        serve_refuses(
            &[("AMBIGUOUS_RESUBMIT_AFTER_SECS", Some(bad))],
            "AMBIGUOUS_RESUBMIT_AFTER_SECS",
        )
        .await;
    }
}

#[tokio::test]
async fn serve_refuses_a_webhook_allow_private_that_is_not_true_or_false() {
    serve_refuses(
        &[("WEBHOOK_ALLOW_PRIVATE", Some("yes"))],
        "WEBHOOK_ALLOW_PRIVATE",
    )
    .await;
}

#[tokio::test]
async fn serve_refuses_a_facet_index_that_is_not_true_or_false() {
    serve_refuses(&[("FACET_INDEX", Some("on"))], "FACET_INDEX").await;
}

#[tokio::test]
async fn serve_refuses_a_webhook_disable_period_that_is_not_a_whole_number_of_days() {
    for bad in ["0", "1.5", "366", "soon"] {
        serve_refuses(
            &[("WEBHOOK_DISABLE_AFTER_DAYS", Some(bad))],
            "WEBHOOK_DISABLE_AFTER_DAYS",
        )
        .await;
    }
}

#[tokio::test]
async fn serve_refuses_a_credit_budget_that_is_not_a_number() {
    serve_refuses(
        &[("CREDIT_BUDGET_DAILY", Some("lots"))],
        "CREDIT_BUDGET_DAILY",
    )
    .await;
}

#[tokio::test]
async fn serve_refuses_a_refresh_period_that_is_not_a_positive_number_of_days() {
    for bad in ["soon", "0", "-1", "NaN"] {
        serve_refuses(
            &[
                ("REFRESH_AFTER_DAYS", Some(bad)),
                ("REFRESH_CREDITS_DAILY", Some("100")),
            ],
            "REFRESH_AFTER_DAYS",
        )
        .await;
    }
}

#[tokio::test]
async fn serve_refuses_a_refresh_period_without_a_refresh_budget_or_with_a_bad_one() {
    serve_refuses(
        &[("REFRESH_AFTER_DAYS", Some("0.5"))],
        "REFRESH_CREDITS_DAILY",
    )
    .await;
    serve_refuses(
        &[
            ("REFRESH_AFTER_DAYS", Some("90")),
            ("REFRESH_CREDITS_DAILY", Some("plenty")),
        ],
        "REFRESH_CREDITS_DAILY",
    )
    .await;
}

// ---------------------------------------------------------------------------
// 3. migrate

async fn lookups_table_exists(db: &PgPool) -> bool {
    sqlx::query_scalar("SELECT to_regclass('public.lookups') IS NOT NULL")
        .fetch_one(db)
        .await
        .unwrap()
}

#[sqlx::test(migrations = false)]
async fn migrate_applies_the_schema_and_can_run_again(db: PgPool) {
    assert!(
        !lookups_table_exists(&db).await,
        "the database is not fresh"
    );
    let env = [("DATABASE_URL", database_url(&db))];
    for round in ["first", "second"] {
        let output = run(&["migrate"], &env).await;
        assert!(
            output.status.success(),
            "{round} migrate failed:\n{}",
            text(&output)
        );
        assert!(lookups_table_exists(&db).await, "after the {round} migrate");
    }
}

// ---------------------------------------------------------------------------
// 4. Sandbox mode

/// Lines a child printed on one stream, kept as they arrive.
fn collect<R>(stream: R) -> Arc<Mutex<Vec<String>>>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

#[sqlx::test(migrations = false)]
async fn with_only_a_database_serve_runs_a_sandbox_whose_printed_token_completes_a_lookup(
    db: PgPool,
) {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(crate::common::bin())
        .arg("serve")
        .env_clear()
        .env("DATABASE_URL", database_url(&db))
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("SANDBOX_TIME_SCALE", "0.05")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("binary starts");
    let stdout = collect(child.stdout.take().unwrap());
    let stderr = collect(child.stderr.take().unwrap());
    let http = reqwest::Client::new();

    let started = Instant::now();
    let deadline = started + Duration::from_secs(10);
    while !http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            Instant::now() < deadline,
            "sandbox serve did not start: {:?}",
            stderr.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let out = stdout.lock().unwrap().clone();
    let token_line = out
        .iter()
        .find(|l| l.to_lowercase().contains("token"))
        .unwrap_or_else(|| panic!("no token printed on stdout: {out:?}"))
        .clone();
    let token = token_line
        .split_whitespace()
        .last()
        .unwrap()
        .trim_matches(|c: char| c == '"' || c == '\'' || c == '`')
        .to_owned();
    assert!(token.len() >= 16, "token {token:?} from {token_line:?}");
    let printed = out.iter().filter(|l| l.contains(&token)).count();
    assert_eq!(printed, 1, "the token was printed {printed} times: {out:?}");

    let err = stderr.lock().unwrap().clone();
    assert!(
        err.iter().any(|l| {
            let lower = l.to_lowercase();
            lower.contains("sandbox") && (l.contains("WARN") || l.contains("ERROR"))
        }),
        "no sandbox warning on stderr: {err:?}"
    );

    let refused = http
        .post(format!("{base}/v1/lookups"))
        .bearer_auth("not-the-printed-token-0123456789")
        .json(&json!({"email": "ann@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401, "any token is accepted");
    let created = http
        .post(format!("{base}/v1/lookups"))
        .bearer_auth(&token)
        .json(&json!({"email": "ann@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 202);
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let lookup = crate::common::wait_for_lookup_at(
        &http,
        &base,
        &token,
        &id,
        Duration::from_secs(20),
        |l| l["status"] == "completed",
    )
    .await;
    assert_eq!(lookup["credits_charged"], 5);
    assert!(lookup["profile"]["result"].is_object(), "{lookup}");

    let err = stderr.lock().unwrap().clone();
    assert!(
        err.iter().all(|l| !l.contains(&token)),
        "the token reached the logs"
    );
    child.kill().await.unwrap();
}

// ---------------------------------------------------------------------------
// 5. The front door: defaults a new user meets

#[tokio::test]
async fn sandbox_help_shows_the_default_of_every_option() {
    let output = run(&["sandbox", "--help"], &[]).await;
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout).into_owned();
    for block in option_blocks(&help) {
        if block.trim_start().starts_with("-h,") {
            continue;
        }
        assert!(
            block.contains("[default: "),
            "sandbox --help gives no default for:\n{block}"
        );
    }
    assert!(help.contains("sandbox-secret"), "{help}");
}

#[derive(clap::Parser)]
struct ServeCli {
    #[command(flatten)]
    args: interests_receiver::config::ServeArgs,
}

fn config_from(argv: &[&str]) -> interests_receiver::config::Config {
    use clap::Parser;
    let mut full = vec!["serve", "--database-url", "postgres://x@127.0.0.1:1/x"];
    full.extend_from_slice(argv);
    let cli = ServeCli::try_parse_from(full).expect("arguments parse");
    interests_receiver::config::Config::from_args(cli.args).expect("configuration is valid")
}

#[test]
fn in_sandbox_mode_the_first_poll_comes_after_15_seconds() {
    assert_eq!(config_from(&[]).poll_after, Duration::from_secs(15));
    // Control: with a real upstream and callbacks on, 600 s remains.
    let with_callbacks = config_from(&[
        "--upstream-api-key",
        "k",
        "--upstream-api-secret",
        "s",
        "--api-tokens",
        "a-token-of-sixteen-chars",
        "--service-secret",
        "0123456789abcdef0123456789abcdef",
        "--public-base-url",
        "https://receiver.example.com",
    ]);
    assert_eq!(with_callbacks.poll_after, Duration::from_secs(600));
}

#[test]
fn name_only_lookups_default_to_warn_and_ambiguous_submits_are_never_resent_by_default() {
    use interests_receiver::config::NameOnlyLookups;
    let defaults = config_from(&[]);
    assert_eq!(defaults.name_only_lookups, NameOnlyLookups::Warn);
    assert_eq!(defaults.ambiguous_resubmit_after, None);

    let set = config_from(&[
        "--name-only-lookups",
        "refuse",
        "--ambiguous-resubmit-after-secs",
        "3600",
    ]);
    assert_eq!(set.name_only_lookups, NameOnlyLookups::Refuse);
    assert_eq!(
        set.ambiguous_resubmit_after,
        Some(Duration::from_secs(3600))
    );
}

/// A one-shot HTTP server answering 200 to whatever it is asked.
async fn answering_200() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut buf = [0u8; 2048];
            let _ = socket.read(&mut buf).await;
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
        }
    });
    port
}

#[tokio::test]
async fn healthcheck_probes_the_port_of_listen_addr_when_no_url_is_given() {
    let port = answering_200().await;
    let healthy = run(
        &["healthcheck"],
        &[("LISTEN_ADDR", format!("0.0.0.0:{port}"))],
    )
    .await;
    assert!(healthy.status.success(), "{}", text(&healthy));

    // Control: another port, where nothing answers, is unhealthy.
    let unhealthy = run(
        &["healthcheck"],
        &[("LISTEN_ADDR", format!("0.0.0.0:{}", free_port()))],
    )
    .await;
    assert!(!unhealthy.status.success(), "{}", text(&unhealthy));
}
