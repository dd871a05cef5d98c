//! The `import` and `export` client subcommands (contract section 3), run as
//! the real binary against a server in sandbox mode: a real CSV with bad
//! rows, quoting, a BOM and CRLF; re-runs and interrupted runs that pay for
//! nobody twice; exports read back with a CSV parser.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use crate::common::{Settings, TOKEN, TestApp, spawn};
use interests_receiver::facets::Facets;
use serde_json::Value;
use sqlx::PgPool;

fn csv_file(content: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("import-{}.csv", uuid::Uuid::new_v4()));
    std::fs::write(&path, content).unwrap();
    path
}

/// The client binary with `args`, against the server at `server`.
fn client(server: &str, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(crate::common::bin());
    command
        .args(args)
        .env_clear()
        .env("INTERESTS_SERVER", server)
        .env("INTERESTS_TOKEN", TOKEN)
        .kill_on_drop(true);
    command
}

async fn run(app: &TestApp, args: &[&str]) -> Output {
    run_against(&app.url(""), args).await
}

async fn run_against(server: &str, args: &[&str]) -> Output {
    let output = tokio::time::timeout(Duration::from_secs(120), client(server, args).output())
        .await
        .expect("the client finishes")
        .unwrap();
    if std::env::var("TEST_LOG").is_ok() {
        eprintln!("stdout: {}", String::from_utf8_lossy(&output.stdout));
        eprintln!("stderr: {}", String::from_utf8_lossy(&output.stderr));
    }
    output
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn submits_accepted(app: &TestApp) -> u64 {
    app.sandbox_json("stats").await["submits_accepted"]
        .as_u64()
        .unwrap()
}

/// Every lookup, by subject email.
async fn lookups_by_email(app: &TestApp) -> HashMap<String, Value> {
    let page = app.get_json("/v1/lookups?limit=500").await;
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["subject"]["email"].as_str().unwrap().to_owned(),
                l.clone(),
            )
        })
        .collect()
}

/// A BOM, CRLF line ends, quoted commas, quotes and a line break inside a
/// field, a bad email (line 3), a row with no identifier (line 6), a row
/// with too few fields (line 9), and Ann twice (lines 2 and 7).
const CONTACTS: &str = "\u{feff}Email,Name,COMPANY,Notes\r\n\
ann@example.com,Ann Lee,\"Acme, Inc\",\"likes \"\"running\"\", hiking\"\r\n\
not-an-email,Bob,,x\r\n\
carol@example.com,Carol,Beta,\"two\r\nlines\"\r\n\
,,,nobody\r\n\
ANN@example.com,ann lee,\"acme, inc\",again\r\n\
dave@example.com,Dave,Gamma,\r\n\
eve@example.com,Eve\r\n";

#[sqlx::test]
async fn import_reports_bad_rows_by_line_and_looks_each_person_up_once(db: PgPool) {
    let app = spawn(db, Settings::sandbox()).await;
    let file = csv_file(CONTACTS);

    let output = run(&app, &["import", file.to_str().unwrap(), "--wait"]).await;

    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("line 3: email: "), "{stderr}");
    assert!(stderr.contains("line 6: "), "{stderr}");
    assert!(stderr.contains("at least one of"), "{stderr}");
    assert!(
        stderr.contains("line 9: row: expected 4 fields"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("line 2:") && !stderr.contains("line 4:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("sent 7/7 rows"),
        "plain progress lines: {stderr}"
    );
    assert!(stdout.contains("rows: 7, accepted: 4, bad: 3"), "{stdout}");
    assert!(stdout.contains("people: 3, completed: 3"), "{stdout}");

    assert_eq!(submits_accepted(&app).await, 3);
    let lookups = lookups_by_email(&app).await;
    assert_eq!(lookups.len(), 3, "{lookups:?}");
    let ann = &lookups["ann@example.com"];
    assert_eq!(ann["status"], "completed");
    assert_eq!(ann["subject"]["company"], "Acme, Inc");
    assert_eq!(ann["metadata"]["Notes"], "likes \"running\", hiking");
    let carol_notes = lookups["carol@example.com"]["metadata"]["Notes"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(carol_notes.starts_with("two") && carol_notes.ends_with("\nlines"));
    assert_eq!(lookups["dave@example.com"]["metadata"]["Notes"], "");

    // The same file again: the same answers, nobody paid for twice.
    let again = run(&app, &["import", file.to_str().unwrap(), "--wait"]).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stdout).contains("people: 3, completed: 3"));
    assert_eq!(submits_accepted(&app).await, 3);
    assert_eq!(lookups_by_email(&app).await.len(), 3);
    app.stop().await;
}

#[sqlx::test]
async fn a_person_repeated_with_another_company_spelling_is_paid_for_once(db: PgPool) {
    let app = spawn(db, Settings::sandbox()).await;
    let file = csv_file(
        "email,name,company\n\
         ann@example.com,Ann Lee,Acme Inc\n\
         Ann@Example.com,Ann Lee,ACME Incorporated\n\
         ann+crm@example.com,Ann,Acme\n",
    );

    let output = run(&app, &["import", file.to_str().unwrap(), "--wait"]).await;

    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(submits_accepted(&app).await, 1);
    app.stop().await;
}

#[sqlx::test]
async fn an_interrupted_import_run_again_pays_for_nobody_twice(db: PgPool) {
    let app = spawn(db, Settings::sandbox()).await;
    let mut content = String::from("email,name,segment\n");
    for n in 0..30 {
        content.push_str(&format!("person{n}@example.com,Person {n},trial\n"));
    }
    let file = csv_file(&content);
    let path = file.to_str().unwrap();

    // Interrupted with ctrl-c (SIGINT) once a few rows are in.
    let mut first = client(&app.url(""), &["import", path, "--batch-size", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..400 {
        if app.count("SELECT count(*) FROM lookups").await >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pid = first.id().expect("still running");
    crate::common::signal(pid, nix::sys::signal::Signal::SIGINT);
    let stopped = first.wait().await.unwrap();
    // It was stopped mid-way: by the signal, with rows not yet sent.
    assert!(!stopped.success(), "the first import ran to its end");
    let interrupted_at = app.count("SELECT count(*) FROM lookups").await;
    assert!(
        (1..30).contains(&interrupted_at),
        "{interrupted_at} of 30 rows were in when it stopped"
    );

    let resumed = run(&app, &["import", path, "--batch-size", "1", "--wait"]).await;
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed.stderr));
    assert!(text(&resumed.stdout).contains("people: 30, completed: 30"));
    let after_resume = submits_accepted(&app).await;

    let third = run(&app, &["import", path, "--wait"]).await;
    assert_eq!(third.status.code(), Some(0), "{}", text(&third.stderr));

    assert_eq!(after_resume, 30);
    assert_eq!(submits_accepted(&app).await, 30);
    assert_eq!(app.count("SELECT count(*) FROM lookups").await, 30);
    app.stop().await;
}

#[sqlx::test]
async fn a_dry_run_import_prints_what_the_run_would_do_and_changes_nothing(db: PgPool) {
    let app = spawn(db, Settings::sandbox()).await;
    let known = csv_file("email\nann@example.com\n");
    let first = run(&app, &["import", known.to_str().unwrap(), "--wait"]).await;
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let erased = app
        .http
        .delete(app.url("/v1/subjects?email=gone@example.com&suppress=true"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert!(erased.status().is_success());
    let lookups_before = app.count("SELECT count(*) FROM lookups").await;
    let submits_before = submits_accepted(&app).await;
    // Batches of two: Carol's second spelling is in another batch than her
    // first, and still counted once.
    let file = csv_file(
        "email,name\n\
         ann@example.com,Ann\n\
         carol@example.com,Carol\n\
         Carol+crm@example.com,Carol\n\
         not-an-email,Bob\n\
         gone@example.com,Gone\n\
         dave@example.com,Dave\n",
    );
    let path = file.to_str().unwrap();

    let output = run(&app, &["import", path, "--dry-run", "--batch-size", "2"]).await;

    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    for line in [
        "rows: 6",
        "new paid lookups: 2",
        "served from cache: 1",
        "already in flight: 1",
        "suppressed: 1",
        "bad rows: 1",
        "credits at most: 10",
        "budget left today: unlimited",
    ] {
        assert!(stdout.contains(line), "no `{line}` in:\n{stdout}");
    }
    assert!(stderr.contains("line 5: email: "), "{stderr}");
    assert!(stderr.contains("line 6: "), "{stderr}");
    assert_eq!(
        app.count("SELECT count(*) FROM lookups").await,
        lookups_before
    );
    assert_eq!(submits_accepted(&app).await, submits_before);

    // A clean file exits 0; a server that cannot be used, 2.
    let clean = csv_file("email\nann@example.com\nerin@example.com\n");
    let ok = run(&app, &["import", clean.to_str().unwrap(), "--dry-run"]).await;
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    assert!(text(&ok.stdout).contains("new paid lookups: 1"));
    let refused = run(
        &app,
        &[
            "import",
            clean.to_str().unwrap(),
            "--dry-run",
            "--token",
            "wrong-token-0123456789",
        ],
    )
    .await;
    assert_eq!(refused.status.code(), Some(2));
    assert_eq!(
        app.count("SELECT count(*) FROM lookups").await,
        lookups_before
    );
    app.stop().await;
}

#[sqlx::test]
async fn an_unusable_server_exits_2(db: PgPool) {
    let app = spawn(db, Settings::sandbox()).await;
    let file = csv_file("email\nann@example.com\n");
    let path = file.to_str().unwrap();

    let wrong_token = run(&app, &["import", path, "--token", "wrong-token-0123456789"]).await;
    assert_eq!(wrong_token.status.code(), Some(2));
    assert!(
        text(&wrong_token.stderr).contains("401"),
        "{}",
        text(&wrong_token.stderr)
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = format!("http://127.0.0.1:{port}");
    let nobody = run(&app, &["import", path, "--server", &unreachable]).await;
    assert_eq!(nobody.status.code(), Some(2));
    let export = run(
        &app,
        &["export", "--format", "csv", "--server", &unreachable],
    )
    .await;
    assert_eq!(export.status.code(), Some(2));
    assert_eq!(app.count("SELECT count(*) FROM lookups").await, 0);
    app.stop().await;
}

/// All profiles of `GET /v1/profiles?{query}`, by id.
async fn profiles(app: &TestApp, query: &str) -> HashMap<String, Value> {
    let mut all = HashMap::new();
    let mut cursor = String::new();
    loop {
        let page = app
            .get_json(&format!("/v1/profiles?{query}&limit=500{cursor}"))
            .await;
        for p in page["items"].as_array().unwrap() {
            all.insert(p["id"].as_str().unwrap().to_owned(), p.clone());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return all,
        }
    }
}

fn joined(values: &[String]) -> String {
    values.join("; ")
}

#[sqlx::test]
async fn export_writes_every_matching_profile_as_csv_and_as_json_lines(db: PgPool) {
    let app = spawn(db, Settings::sandbox()).await;
    let mut content = String::from("email,name,company\n");
    for n in 0..7 {
        content.push_str(&format!("buyer{n}@example.com,\"Buyer, {n}\",Shop {n}\n"));
    }
    let file = csv_file(&content);
    let imported = run(&app, &["import", file.to_str().unwrap(), "--wait"]).await;
    assert_eq!(
        imported.status.code(),
        Some(0),
        "{}",
        text(&imported.stderr)
    );
    let stored = profiles(&app, "").await;
    assert_eq!(stored.len(), 7);

    // CSV, streamed, read three profiles at a time.
    let csv_out = run(&app, &["export", "--format", "csv", "--page-size", "3"]).await;
    assert_eq!(csv_out.status.code(), Some(0), "{}", text(&csv_out.stderr));
    // Each read of the stream is audited with its count: 3 + 3 + 1.
    let exported = app
        .count("SELECT COALESCE(sum(count), 0) FROM audit_log WHERE action = 'profile.export'")
        .await;
    let reads = app
        .count("SELECT count(*) FROM audit_log WHERE action = 'profile.export'")
        .await;
    assert_eq!((exported, reads), (7, 3));
    // Paging `GET /v1/profiles` (a server without the stream) gives the
    // same bytes.
    let paged = run(
        &app,
        &["export", "--format", "csv", "--page-size", "3", "--paged"],
    )
    .await;
    assert_eq!(paged.status.code(), Some(0), "{}", text(&paged.stderr));
    assert_eq!(text(&paged.stdout), text(&csv_out.stdout));
    let mut reader = csv::Reader::from_reader(&csv_out.stdout[..]);
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        header,
        [
            "id",
            "lookup_id",
            "email",
            "phone",
            "social_media_url",
            "name",
            "company",
            "completed_on",
            "archetypes",
            "categories",
            "interests",
            "brands",
            "industries"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 7);
    let ids: BTreeSet<&str> = rows.iter().map(|r| &r[0]).collect();
    assert_eq!(ids.len(), 7);
    for row in &rows {
        let profile = &stored[&row[0]];
        let facets = Facets::as_written(&profile["result"]);
        assert_eq!(&row[1], profile["lookup_id"].as_str().unwrap());
        assert_eq!(&row[2], profile["subject"]["email"].as_str().unwrap());
        assert_eq!(&row[3], "");
        assert_eq!(&row[5], profile["subject"]["name"].as_str().unwrap());
        assert!(row[5].starts_with("Buyer, "), "quoted comma survives");
        assert_eq!(&row[7], profile["completed_on"].as_str().unwrap_or(""));
        assert_eq!(&row[8], joined(&facets.archetypes));
        assert_eq!(&row[9], joined(&facets.categories));
        assert_eq!(&row[10], joined(&facets.interests));
        assert_eq!(&row[11], joined(&facets.brands));
        assert_eq!(&row[12], joined(&facets.industries));
    }

    // JSON lines: each line is the profile as GET /v1/profiles/{id} shows it.
    let jsonl = run(&app, &["export", "--format", "jsonl", "--page-size", "2"]).await;
    assert_eq!(jsonl.status.code(), Some(0), "{}", text(&jsonl.stderr));
    let lines: Vec<Value> = text(&jsonl.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 7);
    for line in &lines {
        let id = line["id"].as_str().unwrap();
        assert_eq!(line, &app.get_json(&format!("/v1/profiles/{id}")).await);
    }
    let paged = run(
        &app,
        &["export", "--format", "jsonl", "--page-size", "2", "--paged"],
    )
    .await;
    assert_eq!(text(&paged.stdout), text(&jsonl.stdout));

    // A filter exports exactly the matching profiles.
    let brand = rows
        .iter()
        .find_map(|r| r[11].split("; ").next().filter(|b| !b.is_empty()))
        .expect("some profile has a brand")
        .to_uppercase();
    let matching = profiles(&app, &format!("brand={brand}")).await;
    let filtered = run(&app, &["export", "--format", "csv", "--brand", &brand]).await;
    assert_eq!(filtered.status.code(), Some(0));
    let mut reader = csv::Reader::from_reader(&filtered.stdout[..]);
    let got: BTreeSet<String> = reader.records().map(|r| r.unwrap()[0].to_owned()).collect();
    let expected: BTreeSet<String> = matching.keys().cloned().collect();
    assert!(!expected.is_empty());
    assert_eq!(got, expected);
    app.stop().await;
}

#[sqlx::test]
async fn exported_csv_cells_that_start_like_a_formula_are_neutralised(db: PgPool) {
    let (upstream, app) = crate::common::spawn_with_accepting_upstream(db).await;
    let (id, request_id, callback) = crate::common::submitted_lookup(
        &app,
        &upstream,
        serde_json::json!({"email": "formula@example.com", "name": "=1+1", "company": "@Acme"}),
    )
    .await;
    // Upstream strings as a spreadsheet would run them.
    let result = serde_json::json!({
        "core_profile": {"archetypes": ["=HYPERLINK(\"http://evil.example\",\"x\")"]},
        "interest_graph": {"-2+3": {"interests": [{"topic": "+cmd|' /C calc'!A0"}]}},
        "brand_affinities": [{"brands": ["@SUM(A1:A9)", "Nike"]}],
        "professional_ecosystem": {"industry_focus": ["\tTab", "\rReturn"]}
    });
    crate::common::complete_by_callback(
        &app,
        &id,
        &callback,
        &crate::common::completed_with(&request_id, result),
    )
    .await;

    let out = run(&app, &["export", "--format", "csv"]).await;

    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut reader = csv::Reader::from_reader(&out.stdout[..]);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(&row[5], "'=1+1");
    assert_eq!(&row[6], "'@Acme");
    assert_eq!(&row[8], "'=HYPERLINK(\"http://evil.example\",\"x\")");
    assert_eq!(&row[9], "'-2+3");
    assert_eq!(&row[10], "'+cmd|' /C calc'!A0");
    assert_eq!(&row[11], "'@SUM(A1:A9); Nike");
    assert_eq!(&row[12], "'\tTab; \rReturn");
    for cell in row {
        assert!(
            !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
            "a cell a spreadsheet would run: {cell:?}"
        );
    }
    app.stop().await;
}

/// A server answering `GET /v1/profiles/export` with `body`, as it is.
async fn export_stream_of(body: String) -> wiremock::MockServer {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/profiles/export"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body, "application/x-ndjson"))
        .mount(&server)
        .await;
    server
}

fn exported_profile(id: &str) -> Value {
    serde_json::json!({
        "id": id, "lookup_id": "l-1", "completed_on": "2026-11-30",
        "created_at": "2026-11-30T00:00:00Z",
        "subject": {"email": "ann@example.com"},
        "result": {"brand_affinities": [{"brands": ["Nike"]}]}
    })
}

/// During a rolling deploy, a replica of an earlier version has no
/// `/v1/profiles/export` (404): the export pages through `/v1/profiles`.
#[tokio::test]
async fn export_pages_through_a_server_without_the_stream() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/profiles/export"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/profiles"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "items": [exported_profile("p-1")], "next_cursor": null
        })))
        .mount(&server)
        .await;

    let out = run_against(&server.uri(), &["export", "--format", "csv"]).await;

    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut reader = csv::Reader::from_reader(&out.stdout[..]);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1);
    assert_eq!((&rows[0][0], &rows[0][11]), ("p-1", "Nike"));
}

/// A stream that ends inside a profile (whatever cut it) is a failed
/// export (exit 2), never a shorter one that looks whole.
#[tokio::test]
async fn an_export_stream_ending_inside_a_profile_fails() {
    let whole = format!("{}\n", exported_profile("p-1"));
    let cut = exported_profile("p-2").to_string();
    let server = export_stream_of(format!("{whole}{}", &cut[..cut.len() / 2])).await;

    let out = run_against(&server.uri(), &["export", "--format", "jsonl"]).await;

    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("ended inside a profile"),
        "{}",
        text(&out.stderr)
    );
}

/// The service sends a bare newline when a page is slow to read (a
/// keep-alive): whitespace between profiles, never a profile.
#[tokio::test]
async fn keep_alive_newlines_between_exported_profiles_are_skipped() {
    let server = export_stream_of(format!(
        "\n{}\n\n\n{}\n\n",
        exported_profile("p-1"),
        exported_profile("p-2")
    ))
    .await;

    let out = run_against(&server.uri(), &["export", "--format", "jsonl"]).await;

    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let ids: Vec<String> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].to_string())
        .collect();
    assert_eq!(ids, ["\"p-1\"", "\"p-2\""]);
}

#[sqlx::test]
async fn the_export_stream_refuses_bad_parameters_naming_them(db: PgPool) {
    let app = spawn(db, Settings::sandbox()).await;
    for (query, field) in [
        ("page_size=0", "page_size"),
        ("page_size=1001", "page_size"),
        ("page_size=ten", "page_size"),
        ("match_basis=guess", "match_basis"),
        ("email=not-an-email", "email"),
    ] {
        let response = app.get(&format!("/v1/profiles/export?{query}")).await;
        let problem = crate::common::problem(response, 422).await;
        assert_eq!(
            crate::common::error_fields(&problem),
            [field],
            "{query}: {problem}"
        );
    }
    // Refused before anything was read: nothing is audited as exported.
    assert_eq!(
        app.count("SELECT count(*) FROM audit_log WHERE action = 'profile.export'")
            .await,
        0
    );
    app.stop().await;
}

/// Each open export holds pages and, while it reads, a connection: past
/// the bound, 503 with Retry-After; a stream whose reader has gone frees
/// its place.
#[sqlx::test]
async fn open_exports_are_bounded_and_a_closed_one_frees_its_place(db: PgPool) {
    // Far more than the sockets' buffers hold (about 30 MB of lines), so
    // that a stream nobody reads stays open, its next page waiting.
    let generated = crate::generate::generate(&db, &["--profiles", "20000"]).await;
    assert!(generated.status.success(), "{}", text(&generated.stderr));
    let mut settings = Settings::sandbox();
    settings.options.max_exports = 1;
    let app = spawn(db, settings).await;

    // Headers read, body not.
    let held = app.get("/v1/profiles/export").await;
    assert_eq!(held.status(), 200);
    let refused = app.get("/v1/profiles/export").await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "5");
    let problem = crate::common::problem(refused, 503).await;
    assert_eq!(problem["type"], "service_unavailable", "{problem}");

    drop(held);
    // The server learns at its next write that the reader has gone.
    let started = std::time::Instant::now();
    loop {
        let again = app
            .get("/v1/profiles/export?email=nobody@example.com")
            .await;
        if again.status() == 200 {
            assert_eq!(again.text().await.unwrap(), "");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the closed export still holds its place"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}

/// A page that is slow to come (here: its audit record waits 1.5 s) does
/// not leave the stream silent, which the server's idle watchdog or a
/// proxy would take for a dead connection: a bare newline goes out at
/// each keep-alive, and the export still ends whole.
#[sqlx::test]
async fn a_slow_page_sends_keep_alive_newlines_and_the_export_ends_whole(db: PgPool) {
    let generated = crate::generate::generate(&db, &["--profiles", "3"]).await;
    assert!(generated.status.success(), "{}", text(&generated.stderr));
    sqlx::raw_sql(
        "CREATE FUNCTION slow_later_export_audits() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.action = 'profile.export'
              AND EXISTS (SELECT 1 FROM audit_log WHERE action = 'profile.export') THEN
             PERFORM pg_sleep(1.5);
           END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER slow_later_export_audits BEFORE INSERT ON audit_log
           FOR EACH ROW EXECUTE FUNCTION slow_later_export_audits();",
    )
    .execute(&db)
    .await
    .unwrap();
    let mut settings = Settings::sandbox();
    settings.options.export_keep_alive = Duration::from_millis(200);
    let app = spawn(db, settings).await;

    // Three pages of one: the second and third wait 1.5 s each.
    let response = app.get("/v1/profiles/export?page_size=1").await;
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();

    let profiles: Vec<Value> = body
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(profiles.len(), 3, "{body}");
    let keep_alives = body.lines().filter(|l| l.is_empty()).count();
    assert!(
        keep_alives >= 4,
        "{keep_alives} keep-alive lines in 3 s: {body:?}"
    );
    app.stop().await;
}
