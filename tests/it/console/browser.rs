//! The console in a real headless Chromium: sign in, watch a sandbox lookup
//! complete without reloading, read its profile, click a facet, download the
//! segment, import a CSV; a read token gets no write controls; a forged
//! cross-site write is refused.

use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::webdriver::Browser;
use crate::common::{READ_TOKEN, Settings, TOKEN, TestApp, UpstreamKind, spawn};

/// Signs in through the form and waits for the navigation to appear.
async fn sign_in(browser: &Browser, app: &TestApp, token: &str) {
    browser.goto(&app.url("/console/")).await;
    browser
        .wait_for(
            "the sign-in form",
            "return document.getElementById('signin-token')",
        )
        .await;
    browser.type_into("#signin-token", token).await;
    browser.click("#signin-submit").await;
    browser
        .wait_for(
            "the signed-in navigation",
            "return !document.getElementById('nav').hidden",
        )
        .await;
}

async fn goto_hash(browser: &Browser, hash: &str) {
    browser
        .exec("location.hash = arguments[0]", json!([hash]))
        .await;
}

/// A page on another site (localhost vs 127.0.0.1) whose form posts a
/// lookup to the service as soon as it loads: the classic CSRF.
async fn evil_site(target: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let page = format!(
        "<!doctype html><form id=f method=POST enctype=text/plain action=\"{target}\">\
         <input name='{{\"email\":\"csrf.victim@example.com\",\"x\":\"' value='\"}}'></form>\
         <script>document.getElementById('f').submit()</script>"
    );
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                page.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        }
    });
    format!("http://localhost:{port}/")
}

/// An HTTP endpoint that acknowledges every webhook with 200.
async fn webhook_receiver() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 256 * 1024];
                let _ = socket.read(&mut buf).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    format!("http://127.0.0.1:{port}/hook")
}

#[sqlx::test]
async fn the_console_works_in_a_real_browser_and_refuses_what_it_must(db: PgPool) {
    // Slow enough that a lookup is seen in flight before it completes.
    let mut settings = Settings::sandbox();
    settings.upstream = UpstreamKind::Sandbox { time_scale: 0.3 };
    let app = spawn(db, settings).await;
    let browser = Browser::start().await;

    // --- sign in: the token goes nowhere but the session request --------
    sign_in(&browser, &app, TOKEN).await;
    let storage = browser
        .exec(
            "return [document.cookie, localStorage.length, sessionStorage.length, location.href]",
            json!([]),
        )
        .await;
    assert_eq!(storage[0], "", "the session cookie is HttpOnly");
    assert_eq!(storage[1], 0);
    assert_eq!(storage[2], 0);
    assert!(!storage[3].as_str().unwrap().contains(TOKEN));
    let cookies = browser.cookies().await;
    let session = cookies
        .iter()
        .find(|c| c["name"] == "ir_console")
        .unwrap_or_else(|| panic!("no session cookie: {cookies:?}"));
    assert_eq!(session["httpOnly"], true);
    assert_eq!(session["sameSite"], "Strict");
    assert!(!session["value"].as_str().unwrap().contains(TOKEN));

    // --- overview ------------------------------------------------------------
    browser
        .wait_for(
            "the credits chart",
            "return document.querySelectorAll('#credits-chart rect').length === 30",
        )
        .await;

    // --- a lookup, watched live -----------------------------------------------
    goto_hash(&browser, "#/lookups").await;
    browser
        .wait_for(
            "the live event stream",
            "const s = document.getElementById('live-state'); return s && s.dataset.live === 'true'",
        )
        .await;
    // Marks the document (a reload would lose it) and records every status
    // a row shows.
    browser
        .exec(
            "window.__noReload = true; window.__seen = [];
             new MutationObserver(() => {
               for (const el of document.querySelectorAll('#lookup-rows [data-status]')) {
                 const s = el.dataset.status;
                 if (window.__seen[window.__seen.length - 1] !== s) window.__seen.push(s);
               }
             }).observe(document.getElementById('main'), {subtree: true, childList: true});",
            json!([]),
        )
        .await;
    browser
        .type_into("#new-email", "ann.console@example.com")
        .await;
    browser.type_into("#new-company", "Acme").await;
    browser.click("#new-lookup-submit").await;
    let completed = browser
        .wait_for(
            "the new lookup to turn completed",
            "const row = document.querySelector('#lookup-rows tr[data-lookup-id]');
             return row && row.querySelector('[data-status=completed]') ? row.dataset.lookupId : null",
        )
        .await;
    let lookup_id = completed.as_str().unwrap().to_owned();
    let seen = browser
        .exec(
            "return [window.__noReload === true, window.__seen]",
            json!([]),
        )
        .await;
    assert_eq!(seen[0], true, "the page was reloaded");
    let statuses: Vec<&str> = seen[1]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        statuses.len() >= 2 && statuses.last() == Some(&"completed"),
        "the row should have shown an in-flight status, then completed: {statuses:?}"
    );

    // --- its profile, for a person to read -------------------------------------
    browser
        .click(&format!("#lookup-rows tr[data-lookup-id='{lookup_id}'] a"))
        .await;
    browser
        .wait_for(
            "the profile",
            "return document.querySelector('#profile [data-section=core_profile] [data-kind=archetype]')",
        )
        .await;
    let page = browser
        .exec(
            "return {
               interests: document.querySelectorAll('#profile [data-section=interest_graph] [data-kind=interest]').length,
               brands: document.querySelectorAll('#profile [data-section=brand_affinities] [data-kind=brand]').length,
               industries: document.querySelectorAll('#profile [data-section=professional_ecosystem] [data-kind=industry]').length,
               accounts: document.querySelectorAll('#profile .accounts').length,
               sandbox: !!document.querySelector('[data-synthetic=true]'),
               deliveries: document.querySelectorAll('#delivery-rows tr').length,
             }",
            json!([]),
        )
        .await;
    for part in ["interests", "brands", "industries", "accounts"] {
        assert!(page[part].as_i64().unwrap() > 0, "{part} missing: {page}");
    }
    assert_eq!(
        page["sandbox"], true,
        "no SANDBOX badge on synthetic data: {page}"
    );
    assert!(
        page["deliveries"].as_i64().unwrap() >= 2,
        "no delivery history (header + at least one callback): {page}"
    );

    // --- segments: click a facet, download the segment -------------------------
    goto_hash(&browser, "#/segments").await;
    let brand = browser
        .wait_for(
            "brand facets",
            "const chip = document.querySelector('[data-facet=brand] .chip'); return chip && chip.dataset.facetValue",
        )
        .await;
    let brand = brand.as_str().unwrap().to_owned();
    browser.click("[data-facet=brand] .chip").await;
    browser
        .wait_for(
            "the brand filter",
            "return document.querySelector('#active-filters [data-filter=brand]')",
        )
        .await;
    assert!(
        browser
            .exec("return location.hash", json!([]))
            .await
            .as_str()
            .unwrap()
            .contains("brand="),
    );
    browser.click("#download-csv").await;
    let count = browser
        .wait_for(
            "the segment to be collected",
            "return document.getElementById('download-status').dataset.count",
        )
        .await;
    let csv = browser.downloaded("segment.csv").await;
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with(
        "id,lookup_id,email,phone,social_media_url,name,company,completed_on,archetypes"
    ));
    assert_eq!((lines.len() - 1).to_string(), count.as_str().unwrap());
    assert!(
        lines.len() >= 2,
        "the segment of a clicked facet is not empty"
    );
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.to_lowercase().contains(&brand.to_lowercase())),
        "every row of the segment has brand {brand}: {csv}"
    );
    assert!(csv.contains("ann.console@example.com"));
    // Cells that start like a formula are neutralised (OWASP CSV injection),
    // by the very function Download CSV uses.
    let risky = browser
        .exec(
            "return import('/console/segments.js').then((m) => m.segmentCsv([{
               id: 'p', lookup_id: 'l', completed_on: null,
               subject: {name: '=HYPERLINK(\"http://x\")', company: '+1', email: '@a', phone: '-1'},
               result: {brand_affinities: [{brands: ['\\tx']}], core_profile: {archetypes: ['\\rx']}}}]))",
            json!([]),
        )
        .await;
    let risky = risky.as_str().unwrap();
    let row: Vec<String> = csv::Reader::from_reader(risky.as_bytes())
        .records()
        .next()
        .unwrap()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(row[5], "'=HYPERLINK(\"http://x\")", "{risky}");
    assert_eq!(
        &row[2..7],
        ["'@a", "'-1", "", row[5].as_str(), "'+1"],
        "{risky}"
    );
    assert_eq!(row[8], "'\rx", "{risky}");
    assert_eq!(row[11], "'\tx", "{risky}");

    // --- import: a CSV uploaded and followed to the end ------------------------
    let upload = browser.downloads.join("people.csv");
    std::fs::write(
        &upload,
        "Email,Name,crm_id\nbob.import@example.com,Bob,1\nnot-an-email,,2\ncid.import@example.com,Cid,3\n",
    )
    .unwrap();
    goto_hash(&browser, "#/import").await;
    browser
        .wait_for(
            "the import form",
            "return document.getElementById('import-file')",
        )
        .await;
    browser
        .type_into("#import-file", &upload.display().to_string())
        .await;
    browser.click("#import-start").await;
    browser
        .wait_for(
            "both good rows to complete",
            "const t = document.getElementById('import-counts').textContent;
             return t.includes('completed 2') && t.includes('in flight 0')",
        )
        .await;
    let problems = browser
        .exec(
            "return document.getElementById('import-problems').textContent",
            json!([]),
        )
        .await;
    assert!(
        problems.as_str().unwrap().contains("line 3")
            && problems.as_str().unwrap().contains("email"),
        "the bad row is reported with its line and field: {problems}"
    );

    // --- webhooks: an endpoint made in the console, its attempts, a replay -------
    let receiver = webhook_receiver().await;
    goto_hash(&browser, "#/webhooks").await;
    browser
        .wait_for(
            "the webhook form",
            "return document.getElementById('webhook-url')",
        )
        .await;
    browser.type_into("#webhook-url", &receiver).await;
    browser.click("#webhook-form button[type=submit]").await;
    browser
        .wait_for(
            "the new endpoint's secret",
            "const s = document.getElementById('webhook-secret'); return s && s.textContent.startsWith('whsec_')",
        )
        .await;
    browser.click("[data-new-webhook]").await;
    browser
        .wait_for(
            "the endpoint page",
            "return document.getElementById('replay-submit')",
        )
        .await;
    let created: Value = app
        .post_lookup(&json!({"email": "hook.console@example.com"}))
        .await
        .json()
        .await
        .unwrap();
    app.wait_for_status(
        created["id"].as_str().unwrap(),
        "completed",
        std::time::Duration::from_secs(30),
    )
    .await;
    browser
        .wait_for(
            "a delivered attempt on the endpoint page (it refreshes itself)",
            "return document.querySelector('#attempt-rows tr[data-status-code=\"200\"]')",
        )
        .await;
    browser.click("#replay-submit").await;
    let queued = browser
        .wait_for(
            "the replay answer",
            "return document.getElementById('replay-message').dataset.queued",
        )
        .await;
    assert!(
        queued.as_str().unwrap().parse::<i64>().unwrap() >= 1,
        "replay queued nothing: {queued}"
    );

    // --- a forged cross-site write is refused ----------------------------------
    let before = app.count("select count(*) from lookups").await;
    let evil = evil_site(app.url("/v1/lookups")).await;
    browser.goto(&evil).await;
    let landed = browser
        .wait_for(
            "the forged form to be answered",
            "return location.href.includes('/v1/lookups') && document.readyState === 'complete' && document.body.innerText",
        )
        .await;
    let answer: Value = serde_json::from_str(landed.as_str().unwrap().trim())
        .unwrap_or_else(|_| panic!("not a problem document: {landed}"));
    assert!(
        answer["status"] == 401 || answer["status"] == 403,
        "the forged write was not refused: {answer}"
    );
    assert_eq!(app.count("select count(*) from lookups").await, before);

    // --- a read token: everything visible, no write controls --------------------
    browser.goto(&app.url("/console/#/lookups")).await;
    browser
        .wait_for(
            "the lookups page",
            "return document.getElementById('lookup-rows')",
        )
        .await;
    browser.click("#sign-out").await;
    browser
        .wait_for(
            "the sign-in form",
            "return document.getElementById('signin-token')",
        )
        .await;
    sign_in(&browser, &app, READ_TOKEN).await;
    for hash in [
        "#/lookups",
        "#/import",
        "#/webhooks",
        &format!("#/lookup/{lookup_id}"),
    ] {
        goto_hash(&browser, hash).await;
        browser
            .wait_for(
                hash,
                &format!("return document.getElementById('main').dataset.route === '{hash}'"),
            )
            .await;
        let writes = browser
            .exec(
                "return [document.querySelectorAll('[data-write]').length,
                         !!document.getElementById('new-lookup-form'),
                         !!document.getElementById('import-start'),
                         document.getElementById('who').dataset.access]",
                json!([]),
            )
            .await;
        assert_eq!(writes, json!([0, false, false, "read"]), "{hash}");
    }
    assert!(
        browser
            .exec("return document.body.innerText", json!([]))
            .await
            .as_str()
            .unwrap()
            .contains("ann.console@example.com"),
        "a read token sees the lookup"
    );

    browser.quit().await;
    app.stop().await;
}
