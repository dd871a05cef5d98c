//! Checks on the deployment files: docker-compose.yml, .env.example, the
//! Dockerfile, .ci/run and the shared build/test scripts.
//!
//! There is no Docker engine in CI, so these tests read the files instead of
//! running them. They pin down how the pieces must fit together (service
//! names, ports, credentials, health gates, the one release build command), so
//! that an edit to one file that breaks another fails here rather than in a
//! deployment.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_norway::Value;
use url::Url;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn compose() -> Value {
    serde_norway::from_str(&read("docker-compose.yml")).expect("docker-compose.yml is valid YAML")
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    compose
        .get("services")
        .and_then(|s| s.get(name))
        .unwrap_or_else(|| panic!("docker-compose.yml has no service `{name}`"))
}

/// A YAML scalar as compose sees it (numbers and booleans become strings).
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A service's `environment`, in either the mapping or the list form. `None`
/// is a variable declared without a value (passed through from the shell or
/// .env when set there, else unset).
fn environment(service: &Value) -> BTreeMap<String, Option<String>> {
    match service.get("environment") {
        None => BTreeMap::new(),
        Some(Value::Mapping(map)) => map
            .iter()
            .map(|(k, v)| (scalar(k).expect("variable name"), scalar(v)))
            .collect(),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|item| {
                let item = item.as_str().expect("environment entries are strings");
                match item.split_once('=') {
                    Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                    None => (item.to_owned(), None),
                }
            })
            .collect(),
        Some(other) => panic!("unexpected environment: {other:?}"),
    }
}

/// The value of an environment variable as the container would see it when
/// compose runs with no .env file and no relevant shell variables.
fn resolved_env(service: &Value, name: &str) -> String {
    let raw = environment(service)
        .remove(name)
        .flatten()
        .unwrap_or_else(|| panic!("variable {name} has no value in docker-compose.yml"));
    resolve(&raw)
}

/// Result of compose-style interpolation of one string.
#[derive(Default)]
struct Interpolation {
    value: String,
    /// Every variable referenced, including those inside defaults.
    referenced: BTreeSet<String>,
    /// Variables that would be substituted by an empty string (no default).
    without_default: BTreeSet<String>,
}

/// Compose interpolation (the subset compose documents) with an empty
/// environment: `$$`, `$NAME`, `${NAME}`, `${NAME:-default}`,
/// `${NAME-default}`, with defaults that may themselves contain variables.
fn interpolate(input: &str) -> Interpolation {
    let mut out = Interpolation::default();
    let mut chars = input.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '$' {
            out.value.push(c);
            continue;
        }
        match chars.peek().map(|&(_, c)| c) {
            Some('$') => {
                chars.next();
                out.value.push('$');
            }
            Some('{') => {
                // Find the matching brace, allowing nested ${...} in defaults.
                let start = i + 2;
                let mut depth = 1;
                let mut end = None;
                chars.next();
                for (j, c) in chars.by_ref() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = Some(j);
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let end = end.unwrap_or_else(|| panic!("unclosed ${{ in {input:?}"));
                let expr = &input[start..end];
                let name_len = expr
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(expr.len());
                let (name, rest) = expr.split_at(name_len);
                out.referenced.insert(name.to_owned());
                let default = rest.strip_prefix(":-").or_else(|| rest.strip_prefix('-'));
                match default {
                    Some(default) => {
                        let inner = interpolate(default);
                        out.value.push_str(&inner.value);
                        out.referenced.extend(inner.referenced);
                        out.without_default.extend(inner.without_default);
                    }
                    None if rest.is_empty() => {
                        out.without_default.insert(name.to_owned());
                    }
                    None => panic!("unsupported interpolation ${{{expr}}} in {input:?}"),
                }
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                let mut name = String::new();
                while let Some(&(_, c)) = chars.peek() {
                    if !(c.is_ascii_alphanumeric() || c == '_') {
                        break;
                    }
                    name.push(c);
                    chars.next();
                }
                out.referenced.insert(name.clone());
                out.without_default.insert(name);
            }
            _ => out.value.push('$'),
        }
    }
    out
}

fn resolve(input: &str) -> String {
    interpolate(input).value
}

/// Every string value in the compose file (keys are not interpolated).
fn string_values(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Sequence(items) => items.iter().for_each(|v| string_values(v, out)),
        Value::Mapping(map) => map.values().for_each(|v| string_values(v, out)),
        Value::Tagged(tagged) => string_values(&tagged.value, out),
        _ => {}
    }
}

/// `command` in either the list or the string form, as words.
fn command(service: &Value) -> Vec<String> {
    match service.get("command") {
        Some(Value::Sequence(items)) => items.iter().filter_map(scalar).collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        other => panic!("unexpected command: {other:?}"),
    }
}

fn port_of_listen_addr(addr: &str) -> u16 {
    addr.rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("{addr:?} is not host:port"))
}

fn depends_on_condition(service: &Value, dependency: &str) -> Option<String> {
    match service.get("depends_on")? {
        Value::Mapping(map) => map
            .get(dependency)?
            .get("condition")
            .and_then(Value::as_str)
            .map(str::to_owned),
        // The short (list) form only waits for the container to start.
        Value::Sequence(items) => items
            .iter()
            .any(|d| d.as_str() == Some(dependency))
            .then(|| "service_started".to_owned()),
        _ => None,
    }
}

/// Variable names in .env.example, active (`NAME=`) or commented (`# NAME=`),
/// with the line index of each.
fn env_example_variables() -> Vec<(usize, String)> {
    read(".env.example")
        .lines()
        .enumerate()
        .filter_map(|(i, line)| env_example_name(line).map(|name| (i, name)))
        .collect()
}

fn env_example_name(line: &str) -> Option<String> {
    let line = line.trim_start();
    let line = line.strip_prefix('#').map(str::trim_start).unwrap_or(line);
    let (name, _) = line.split_once('=')?;
    let is_name = !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_uppercase())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    is_name.then(|| name.to_owned())
}

/// Variables named by the product contract (section 4).
const CONTRACT_VARIABLES: &[&str] = &[
    "DATABASE_URL",
    "LISTEN_ADDR",
    "PUBLIC_BASE_URL",
    "UPSTREAM_BASE_URL",
    "UPSTREAM_API_KEY",
    "UPSTREAM_API_SECRET",
    "API_TOKENS",
    "POLL_AFTER_SECS",
    "UPSTREAM_RATE_PER_MINUTE",
    "UPSTREAM_RATE_PER_HOUR",
    "JOB_DEADLINE_SECS",
    "PROFILE_CACHE_SECS",
    "RUST_LOG",
    "LOG_FORMAT",
    "API_READ_TOKENS",
    "SERVICE_SECRET",
    "SERVICE_SECRET_PREVIOUS",
    "RETENTION_DELIVERY_DAYS",
    "RETENTION_PROFILE_DAYS",
    "REDACT_SECTIONS",
    "WEBHOOK_ALLOW_PRIVATE",
    "AMBIGUOUS_RESUBMIT_AFTER_SECS",
    "NAME_ONLY_LOOKUPS",
    "REFRESH_AFTER_DAYS",
    "REFRESH_CREDITS_DAILY",
    "DATABASE_READ_URL",
];

/// Variables this project adds beyond the contract, each read by the binary
/// or by docker-compose.yml. Add a name here only together with its
/// documentation (README and .env.example).
const PROJECT_VARIABLES: &[&str] = &[
    // serve: daily ceiling on upstream credits, and tuning knobs.
    "CREDIT_BUDGET_DAILY",
    "UPSTREAM_TIMEOUT_SECS",
    "WORKER_LEASE_SECS",
    "UPSTREAM_CONCURRENCY",
    "DATABASE_MAX_CONNECTIONS",
    "DATABASE_READ_MAX_LAG_SECS",
    "WEBHOOK_DISABLE_AFTER_DAYS",
    "FACET_INDEX",
    // sandbox subcommand.
    "SANDBOX_LISTEN_ADDR",
    "SANDBOX_API_KEY",
    "SANDBOX_API_SECRET",
    "SANDBOX_TIME_SCALE",
    // healthcheck subcommand.
    "HEALTHCHECK_URL",
    // docker-compose.yml: the postgres container.
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_DB",
];

/// A Dockerfile as stages of (INSTRUCTION, arguments), continuation lines
/// joined and comments dropped.
struct Stage {
    name: Option<String>,
    from: String,
    instructions: Vec<(String, String)>,
}

fn dockerfile_stages() -> Vec<Stage> {
    let text = read("Dockerfile");
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
        } else {
            current.push_str(trimmed);
            logical.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        logical.push(current);
    }

    let mut stages: Vec<Stage> = Vec::new();
    for line in logical {
        let (instruction, args) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let instruction = instruction.to_ascii_uppercase();
        let args = args.trim().to_owned();
        if instruction == "FROM" {
            let words: Vec<&str> = args.split_whitespace().collect();
            let image = words
                .iter()
                .find(|w| !w.starts_with("--"))
                .expect("FROM names an image");
            let name = words
                .iter()
                .position(|w| w.eq_ignore_ascii_case("as"))
                .and_then(|i| words.get(i + 1))
                .map(|n| n.to_ascii_lowercase());
            stages.push(Stage {
                name,
                from: (*image).to_owned(),
                instructions: Vec::new(),
            });
        } else {
            stages
                .last_mut()
                .expect("instruction before the first FROM")
                .instructions
                .push((instruction, args));
        }
    }
    stages
}

fn instructions<'a>(stage: &'a Stage, instruction: &'a str) -> impl Iterator<Item = &'a str> {
    stage
        .instructions
        .iter()
        .filter(move |(i, _)| i == instruction)
        .map(|(_, args)| args.as_str())
}

/// Lines of a shell script that are not comments.
fn script_commands(relative: &str) -> Vec<String> {
    read(relative)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------------------
// docker-compose.yml
// ---------------------------------------------------------------------------

#[test]
fn compose_defines_the_postgres_sandbox_and_receiver_services() {
    let compose = compose();
    for name in ["postgres", "sandbox", "receiver"] {
        service(&compose, name);
    }
}

#[test]
fn compose_pins_the_postgres_image_to_a_major_version() {
    let compose = compose();
    let image = service(&compose, "postgres")["image"]
        .as_str()
        .expect("postgres has an image");
    let (repository, tag) = image.rsplit_once(':').expect("postgres image has a tag");
    assert!(repository.ends_with("postgres"), "unexpected image {image}");
    let major = tag.split(['.', '-']).next().unwrap_or_default();
    assert!(
        !major.is_empty() && major.chars().all(|c| c.is_ascii_digit()),
        "postgres image tag {tag:?} must start with a major version"
    );
}

#[test]
fn compose_checks_postgres_health_with_pg_isready() {
    let compose = compose();
    let test = &service(&compose, "postgres")["healthcheck"]["test"];
    let words: Vec<String> = match test {
        Value::Sequence(items) => items.iter().filter_map(scalar).collect(),
        Value::String(s) => vec![s.clone()],
        other => panic!("postgres has no healthcheck test: {other:?}"),
    };
    assert!(
        words.iter().any(|w| w.contains("pg_isready")),
        "postgres healthcheck should run pg_isready, got {words:?}"
    );
}

#[test]
fn compose_keeps_postgres_data_in_a_named_volume() {
    let compose = compose();
    let declared = compose
        .get("volumes")
        .and_then(Value::as_mapping)
        .expect("top-level volumes");
    let mounts = service(&compose, "postgres")["volumes"]
        .as_sequence()
        .expect("postgres mounts volumes");
    let data_volume = mounts.iter().find_map(|mount| {
        let (source, target) = match mount {
            Value::String(s) => {
                let mut parts = s.split(':');
                (parts.next()?.to_owned(), parts.next()?.to_owned())
            }
            Value::Mapping(_) => (
                mount.get("source")?.as_str()?.to_owned(),
                mount.get("target")?.as_str()?.to_owned(),
            ),
            _ => return None,
        };
        target.starts_with("/var/lib/postgresql").then_some(source)
    });
    let data_volume = data_volume.expect("a volume mounted on the postgres data directory");
    assert!(
        declared.contains_key(data_volume.as_str()),
        "volume {data_volume:?} must be declared under top-level volumes (a named volume, not a bind mount)"
    );
}

#[test]
fn compose_receiver_waits_for_a_healthy_database() {
    let compose = compose();
    assert_eq!(
        depends_on_condition(service(&compose, "receiver"), "postgres").as_deref(),
        Some("service_healthy")
    );
}

#[test]
fn compose_receiver_waits_for_a_healthy_sandbox() {
    let compose = compose();
    assert_eq!(
        depends_on_condition(service(&compose, "receiver"), "sandbox").as_deref(),
        Some("service_healthy")
    );
}

#[test]
fn compose_receiver_reaches_upstream_through_the_sandbox_service() {
    let compose = compose();
    let receiver = service(&compose, "receiver");
    let sandbox = service(&compose, "sandbox");

    let upstream = Url::parse(&resolved_env(receiver, "UPSTREAM_BASE_URL"))
        .expect("UPSTREAM_BASE_URL is a URL");
    let sandbox_port = port_of_listen_addr(&resolved_env(sandbox, "SANDBOX_LISTEN_ADDR"));
    assert_eq!(upstream.host_str(), Some("sandbox"));
    assert_eq!(upstream.port_or_known_default(), Some(sandbox_port));

    assert_eq!(
        resolved_env(receiver, "UPSTREAM_API_KEY"),
        resolved_env(sandbox, "SANDBOX_API_KEY"),
        "the receiver must present the key the sandbox accepts"
    );
    assert_eq!(
        resolved_env(receiver, "UPSTREAM_API_SECRET"),
        resolved_env(sandbox, "SANDBOX_API_SECRET"),
        "the receiver must present the secret the sandbox accepts"
    );
}

#[test]
fn compose_receiver_stores_its_data_in_the_postgres_service() {
    let compose = compose();
    let receiver = service(&compose, "receiver");
    let postgres = service(&compose, "postgres");

    let url = Url::parse(&resolved_env(receiver, "DATABASE_URL")).expect("DATABASE_URL is a URL");
    assert!(matches!(url.scheme(), "postgres" | "postgresql"), "{url}");
    assert_eq!(url.host_str(), Some("postgres"));
    assert_eq!(url.port().unwrap_or(5432), 5432);
    assert_eq!(url.username(), resolved_env(postgres, "POSTGRES_USER"));
    assert_eq!(
        url.password().unwrap_or_default(),
        resolved_env(postgres, "POSTGRES_PASSWORD")
    );
    assert_eq!(
        url.path().trim_start_matches('/'),
        resolved_env(postgres, "POSTGRES_DB")
    );
}

#[test]
fn compose_sends_callbacks_to_the_receiver_service() {
    let compose = compose();
    let receiver = service(&compose, "receiver");
    let public =
        Url::parse(&resolved_env(receiver, "PUBLIC_BASE_URL")).expect("PUBLIC_BASE_URL is a URL");
    let listen_port = port_of_listen_addr(&resolved_env(receiver, "LISTEN_ADDR"));
    assert_eq!(public.host_str(), Some("receiver"));
    assert_eq!(public.port_or_known_default(), Some(listen_port));
}

#[test]
fn compose_publishes_the_receiver_listen_port() {
    let compose = compose();
    let receiver = service(&compose, "receiver");
    let listen_port = port_of_listen_addr(&resolved_env(receiver, "LISTEN_ADDR"));
    let ports = receiver["ports"]
        .as_sequence()
        .expect("receiver publishes ports");
    let published = ports.iter().any(|p| match p {
        Value::Mapping(_) => {
            p.get("target").and_then(Value::as_u64) == Some(u64::from(listen_port))
        }
        other => scalar(other)
            .and_then(|s| resolve(&s).rsplit(':').next().map(str::to_owned))
            .is_some_and(|target| {
                target.split('/').next() == Some(listen_port.to_string().as_str())
            }),
    });
    assert!(
        published,
        "receiver must publish container port {listen_port}, got {ports:?}"
    );
}

#[test]
fn compose_runs_serve_in_the_receiver_and_the_simulator_in_the_sandbox() {
    let compose = compose();
    assert_eq!(command(service(&compose, "receiver")), ["serve"]);
    assert_eq!(command(service(&compose, "sandbox")), ["sandbox"]);
}

#[test]
fn compose_sandbox_healthcheck_probes_the_sandbox_port_with_the_binary() {
    let compose = compose();
    let sandbox = service(&compose, "sandbox");
    let test: Vec<String> = sandbox["healthcheck"]["test"]
        .as_sequence()
        .expect("sandbox healthcheck test is a list")
        .iter()
        .filter_map(scalar)
        .collect();
    assert_eq!(test, ["CMD", "interests-receiver", "healthcheck"]);

    let probe =
        Url::parse(&resolved_env(sandbox, "HEALTHCHECK_URL")).expect("HEALTHCHECK_URL is a URL");
    let listen_port = port_of_listen_addr(&resolved_env(sandbox, "SANDBOX_LISTEN_ADDR"));
    assert_eq!(probe.port_or_known_default(), Some(listen_port));
}

#[test]
fn compose_starts_without_an_env_file() {
    let compose = compose();
    let mut values = Vec::new();
    string_values(&compose, &mut values);
    let missing: BTreeSet<String> = values
        .iter()
        .flat_map(|v| interpolate(v).without_default)
        .collect();
    assert!(
        missing.is_empty(),
        "these variables have no default in docker-compose.yml, so `docker compose up` needs a .env: {missing:?}"
    );

    let receiver = service(&compose, "receiver");
    assert!(
        !resolved_env(receiver, "API_TOKENS").is_empty(),
        "outside sandbox mode the receiver refuses to start without API_TOKENS"
    );
}

#[test]
fn compose_reads_only_variables_documented_in_env_example() {
    let compose = compose();
    let mut values = Vec::new();
    string_values(&compose, &mut values);
    let mut used: BTreeSet<String> = values
        .iter()
        .flat_map(|v| interpolate(v).referenced)
        .collect();
    // Variables declared without a value are passed through from .env too.
    for name in ["postgres", "sandbox", "receiver"] {
        for (variable, value) in environment(service(&compose, name)) {
            if value.is_none() {
                used.insert(variable);
            }
        }
    }
    let documented: BTreeSet<String> = env_example_variables()
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    let undocumented: Vec<&String> = used.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "add these to .env.example: {undocumented:?}"
    );
}

/// The variables `serve --help` names (`[env: NAME=…]`), read from the real
/// binary so a setting added to config.rs cannot be forgotten here.
fn serve_variables() -> BTreeSet<String> {
    let output = std::process::Command::new(crate::common::bin())
        .args(["serve", "--help"])
        .env_clear()
        .output()
        .expect("the binary runs");
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout)
        .split("[env: ")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect()
        })
        .collect()
}

#[test]
fn compose_passes_every_setting_of_serve_and_of_the_contract_to_the_receiver() {
    let compose = compose();
    let passed = environment(service(&compose, "receiver"));
    // SANDBOX_TIME_SCALE only acts in built-in sandbox mode, which the
    // compose receiver (it has upstream credentials) never is.
    let mut wanted = serve_variables();
    wanted.remove("SANDBOX_TIME_SCALE");
    assert!(wanted.contains("DATABASE_MAX_CONNECTIONS"), "{wanted:?}");
    wanted.extend(CONTRACT_VARIABLES.iter().map(|v| v.to_string()));
    let missing: Vec<&String> = wanted.iter().filter(|v| !passed.contains_key(*v)).collect();
    assert!(
        missing.is_empty(),
        "docker-compose.yml cannot pass these settings to the receiver: {missing:?}"
    );
}

#[test]
fn compose_gives_the_receiver_a_service_secret_long_enough_to_start() {
    let compose = compose();
    let secret = resolved_env(service(&compose, "receiver"), "SERVICE_SECRET");
    assert!(
        secret.len() >= 32,
        "outside sandbox mode SERVICE_SECRET needs at least 32 bytes: {secret:?}"
    );
    let example = read(".env.example");
    assert!(
        example
            .lines()
            .any(|l| l.starts_with("SERVICE_SECRET=") && l.len() >= "SERVICE_SECRET=".len() + 32),
        ".env.example sets a local SERVICE_SECRET of at least 32 bytes"
    );
}

#[test]
fn readme_says_compose_needs_compose_v2() {
    let readme = read("README.md");
    assert!(
        readme.contains("Compose v2"),
        "the compose file uses `name:` and nested defaults; the README must say it needs Compose v2"
    );
}

// ---------------------------------------------------------------------------
// .env.example
// ---------------------------------------------------------------------------

#[test]
fn env_example_names_only_contract_or_project_variables() {
    let unknown: Vec<String> = env_example_variables()
        .into_iter()
        .map(|(_, name)| name)
        .filter(|name| {
            !CONTRACT_VARIABLES.contains(&name.as_str())
                && !PROJECT_VARIABLES.contains(&name.as_str())
        })
        .collect();
    assert!(
        unknown.is_empty(),
        ".env.example names variables that neither the contract nor this project defines: {unknown:?}"
    );
}

#[test]
fn env_example_documents_every_contract_variable() {
    let documented: BTreeSet<String> = env_example_variables()
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    let missing: Vec<&&str> = CONTRACT_VARIABLES
        .iter()
        .chain(PROJECT_VARIABLES)
        .filter(|name| !documented.contains(**name))
        .collect();
    assert!(missing.is_empty(), "add these to .env.example: {missing:?}");
}

#[test]
fn env_example_explains_each_variable_in_a_comment() {
    let text = read(".env.example");
    let lines: Vec<&str> = text.lines().collect();
    for (index, name) in env_example_variables() {
        // Walk up over neighbouring variables (documented as a group) to the
        // comment that describes them.
        let explanation = lines[..index]
            .iter()
            .rev()
            .find(|line| env_example_name(line).is_none())
            .map(|line| line.trim());
        assert!(
            explanation.is_some_and(|line| line.starts_with('#') && line.len() > 2),
            "{name} in .env.example needs a comment line above it"
        );
    }
}

#[test]
fn env_example_names_each_variable_once() {
    let mut seen = BTreeSet::new();
    for (_, name) in env_example_variables() {
        assert!(
            seen.insert(name.clone()),
            "{name} appears twice in .env.example"
        );
    }
}

// ---------------------------------------------------------------------------
// Dockerfile, .ci/run and the shared scripts
// ---------------------------------------------------------------------------

#[test]
fn dockerfile_builds_the_binary_with_the_shared_release_script() {
    let stages = dockerfile_stages();
    let runtime = stages.last().expect("Dockerfile has stages");
    // The stage the runtime image copies the binary from.
    let builder_name = instructions(runtime, "COPY")
        .filter(|args| args.contains("target/release/interests-receiver"))
        .find_map(|args| {
            args.split_whitespace()
                .find_map(|w| w.strip_prefix("--from="))
                .map(str::to_ascii_lowercase)
        })
        .expect("the runtime stage copies target/release/interests-receiver from a build stage");
    let builder = stages
        .iter()
        .find(|s| s.name.as_deref() == Some(builder_name.as_str()))
        .unwrap_or_else(|| panic!("no stage named {builder_name}"));
    assert!(
        instructions(builder, "RUN").any(|args| args.contains("scripts/build-release.sh")),
        "stage {builder_name} must build with scripts/build-release.sh"
    );
    for stage in &stages {
        assert!(
            !instructions(stage, "RUN").any(|args| args.contains("cargo build")),
            "the Dockerfile must not run its own `cargo build`: use scripts/build-release.sh"
        );
    }
}

#[test]
fn ci_runs_the_shared_release_build_and_test_scripts() {
    let commands = script_commands(".ci/run");
    for script in ["scripts/build-release.sh", "scripts/test.sh"] {
        assert!(
            commands.iter().any(|c| c.starts_with(script)),
            ".ci/run must call {script}"
        );
    }
    assert!(
        !commands.iter().any(|c| c.contains("cargo build")
            || c.contains("cargo test")
            || c.contains("cargo nextest")),
        ".ci/run must build and test through the shared scripts only"
    );
    assert!(
        commands
            .iter()
            .any(|c| c.contains("cargo fmt") && c.contains("--check"))
    );
    assert!(
        commands
            .iter()
            .any(|c| c.contains("cargo clippy") && c.contains("-D warnings"))
    );
}

#[test]
fn release_script_builds_the_locked_release_binary() {
    let commands = script_commands("scripts/build-release.sh");
    assert!(
        commands
            .iter()
            .any(|c| c.starts_with("cargo build --release --locked --bin interests-receiver")),
        "scripts/build-release.sh must run `cargo build --release --locked --bin interests-receiver`"
    );
}

#[test]
fn dockerfile_builds_with_the_minimum_supported_rust_version() {
    let manifest = read("Cargo.toml");
    let rust_version = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("rust-version"))
        .and_then(|rest| rest.split('"').nth(1))
        .expect("Cargo.toml sets rust-version");
    let stages = dockerfile_stages();
    let rust_image = stages
        .iter()
        .map(|s| s.from.as_str())
        .find(|from| from.starts_with("rust:"))
        .expect("a stage builds FROM rust:<version>");
    assert!(
        rust_image.starts_with(&format!("rust:{rust_version}")),
        "{rust_image} should match rust-version {rust_version} in Cargo.toml"
    );
}

#[test]
fn dockerfile_runs_as_a_non_root_user() {
    let stages = dockerfile_stages();
    let runtime = stages.last().expect("Dockerfile has stages");
    let user = instructions(runtime, "USER")
        .last()
        .expect("the runtime stage sets USER");
    let user = user.split(':').next().unwrap_or_default();
    assert!(
        !matches!(user, "" | "root" | "0"),
        "the runtime image must not run as root (USER {user})"
    );
}

#[test]
fn dockerfile_healthcheck_uses_the_healthcheck_subcommand() {
    let stages = dockerfile_stages();
    let runtime = stages.last().expect("Dockerfile has stages");
    let healthcheck = instructions(runtime, "HEALTHCHECK")
        .last()
        .expect("the runtime stage has a HEALTHCHECK");
    let (_, exec_form) = healthcheck
        .split_once("CMD ")
        .expect("HEALTHCHECK ... CMD [...]");
    let argv: Vec<String> = serde_json::from_str(exec_form.trim())
        .expect("HEALTHCHECK uses the exec form: the image has no shell tools");
    assert_eq!(argv, ["interests-receiver", "healthcheck"]);
}

#[test]
fn dockerfile_has_no_syntax_directive_that_would_fetch_a_frontend_image() {
    // `# syntax=` makes BuildKit pull a frontend image from Docker Hub, which
    // fails on mirror-only and air-gapped hosts.
    let first = read("Dockerfile");
    assert!(
        !first
            .lines()
            .take_while(|l| l.starts_with('#'))
            .any(|l| l.trim_start_matches('#').trim().starts_with("syntax=")),
        "drop the `# syntax=` line from the Dockerfile"
    );
}

#[test]
fn dockerfile_starts_the_service_by_default() {
    let stages = dockerfile_stages();
    let runtime = stages.last().expect("Dockerfile has stages");
    let exec_form = |instruction: &str| -> Vec<String> {
        let args = instructions(runtime, instruction)
            .last()
            .unwrap_or_else(|| panic!("the runtime stage has {instruction}"));
        serde_json::from_str(args).unwrap_or_else(|e| panic!("{instruction} {args}: {e}"))
    };
    assert_eq!(exec_form("ENTRYPOINT"), ["interests-receiver"]);
    assert_eq!(exec_form("CMD"), ["serve"]);
    assert!(
        instructions(runtime, "EXPOSE").any(|args| args.split_whitespace().any(|p| p == "8080"))
    );
}

#[test]
fn dockerignore_keeps_build_output_history_and_secrets_out_of_the_image_context() {
    let ignored: BTreeSet<String> = script_commands(".dockerignore").into_iter().collect();
    for entry in ["target", ".git", ".env"] {
        assert!(ignored.contains(entry), ".dockerignore must list {entry}");
    }
}

#[cfg(unix)]
#[test]
fn ci_and_build_scripts_are_executable() {
    use std::os::unix::fs::PermissionsExt;
    // The Dockerfile and .ci/run call the scripts directly, not through bash.
    for script in [".ci/run", "scripts/build-release.sh", "scripts/test.sh"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(script);
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{script}: {e}"))
            .permissions()
            .mode();
        assert!(
            mode & 0o111 != 0,
            "{script} must be executable (git update-index --chmod=+x)"
        );
    }
}

// ---------------------------------------------------------------------------
// The interpolation helper itself
// ---------------------------------------------------------------------------

#[test]
fn interpolation_helper_follows_compose_rules() {
    let i = interpolate("a ${X:-${Y:-deep}} $$Z ${W-} $V");
    assert_eq!(i.value, "a deep $Z  ");
    assert_eq!(
        i.referenced,
        ["V", "W", "X", "Y"].into_iter().map(String::from).collect()
    );
    assert_eq!(i.without_default, ["V".to_owned()].into_iter().collect());
}
