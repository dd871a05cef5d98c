//! bench/RESULTS.md: the machine, the setup and one table of ratios, each
//! with the raw medians it came from.

use std::fmt::Write as _;
use std::time::Duration;

use crate::compare::{Spread, Throughput};
use crate::harness::{Facts, Settings};
use crate::ingestion::Ingestion;
use crate::search::Search;
use crate::seed::Seeded;

/// Everything a run measured.
pub struct Results {
    pub facts: Facts,
    pub settings: Settings,
    pub seeded: Seeded,
    pub searches: Vec<Search>,
    pub ingestion: Ingestion,
    pub creation: Throughput,
    pub run_time: Duration,
}

pub fn render(r: &Results) -> String {
    let mut out = String::new();
    out.push_str("# Benchmark results\n\n");
    out.push_str(
        "Written by `scripts/bench.sh`; overwritten on every run. Each ratio is the median of \
         per-round ratios against a baseline measured in the same run, interleaved with it; \
         the raw medians beside it are for orientation only and vary between machines and \
         runs. How to read this: `bench/README.md`.\n\n",
    );
    machine(&mut out, r);
    setup(&mut out, r);
    results(&mut out, r);
    plans(&mut out, r);
    per_round(&mut out, r);
    out
}

fn machine(out: &mut String, r: &Results) {
    let f = &r.facts;
    out.push_str("## Machine\n\n| | |\n|---|---|\n");
    for (key, value) in [
        ("Date", f.date.clone()),
        ("CPUs (nproc)", f.nproc.to_string()),
        ("CPU", f.cpu.clone()),
        ("Memory", f.memory.clone()),
        ("Load average at start", f.load_average.clone()),
        ("PostgreSQL", f.postgres.clone()),
        ("PostgreSQL durability", f.postgres_durability.clone()),
        ("Commit", f.commit.clone()),
        (
            "Run time (seeding included)",
            format!("{:.0} s", r.run_time.as_secs_f64()),
        ),
    ] {
        let _ = writeln!(out, "| {key} | {value} |");
    }
    out.push('\n');
}

fn setup(out: &mut String, r: &Results) {
    let s = &r.settings;
    let pct = |n: usize| 100.0 * n as f64 / r.seeded.profiles as f64;
    let _ = writeln!(
        out,
        "## Setup\n\n\
         - Service in-process on 127.0.0.1, release build, workers off, no log subscriber, \
         a pool of 10 database connections (the default); the load clients run in the same \
         process.\n\
         - Throughput (1, 3): {} requests in {} rounds of {}, {} concurrent clients, each \
         round a subject batch and a `GET /healthz` batch of the same size, alternating which \
         goes first.\n\
         - Search (2): {} seeded profiles; the interest probe matches {} ({:.1} %), the brand \
         probe {} ({:.1} %); a page of 50; {} rounds of {} queries of each kind, one at a time, \
         the order rotating query by query.\n",
        s.requests,
        s.rounds,
        s.per_round(),
        s.concurrency,
        r.seeded.profiles,
        r.seeded.interest_matches,
        pct(r.seeded.interest_matches),
        r.seeded.brand_matches,
        pct(r.seeded.brand_matches),
        s.search_rounds,
        s.queries_per_round,
    );
}

fn results(out: &mut String, r: &Results) {
    out.push_str(
        "## Results\n\n\
         | Measurement | Subject (median of rounds) | Baseline (median of rounds) | Ratio (median of rounds) | Ratio range |\n\
         |---|---|---|---|---|\n",
    );
    throughput_rows(
        out,
        "1a. Callback ingestion, first delivery",
        "deliveries/s",
        &r.ingestion.first,
    );
    throughput_rows(
        out,
        "1b. Callback ingestion, duplicate delivery",
        "deliveries/s",
        &r.ingestion.duplicate,
    );
    for (search, label) in r.searches.iter().zip(["2a", "2b"]) {
        search_rows(out, label, search);
    }
    throughput_rows(out, "3. Lookup creation", "lookups/s", &r.creation);
    out.push('\n');
}

/// Rate, p50 and p99 of a throughput measurement against `/healthz`.
fn throughput_rows(out: &mut String, name: &str, unit: &str, t: &Throughput) {
    row(
        out,
        &format!("{name}: throughput"),
        &format!("{} {unit}", thousands(t.subject_rate())),
        &format!("{} req/s `GET /healthz`", thousands(t.baseline_rate())),
        &format!(
            "**{}** (subject / healthz rate)",
            fixed(t.rate_ratio().median)
        ),
        t.rate_ratio(),
    );
    for (q, label) in [(0.5, "p50"), (0.99, "p99")] {
        row(
            out,
            &format!("{name}: latency {label}"),
            &ms(t.subject_latency_ms(q)),
            &ms(t.baseline_latency_ms(q)),
            &format!("{}× (subject / healthz)", fixed(t.latency_ratio(q).median)),
            t.latency_ratio(q),
        );
    }
}

fn search_rows(out: &mut String, label: &str, s: &Search) {
    let filter = format!("`?{}=`", s.facet.param());
    row(
        out,
        &format!("{label}. Search {filter}: facet design"),
        &format!("{} indexed facet query (direct SQL)", ms(s.indexed_ms())),
        &format!("{} naive JSON-walking query (direct SQL)", ms(s.naive_ms())),
        &format!(
            "**{}× faster** (naive / indexed)",
            fixed(s.speedup().median)
        ),
        s.speedup(),
    );
    row(
        out,
        &format!("{label}. Search {filter}: HTTP layer"),
        &format!("{} `GET /v1/profiles`", ms(s.http_ms())),
        &format!("{} same indexed query (direct SQL)", ms(s.indexed_ms())),
        &format!("{}× (HTTP / direct)", fixed(s.http_overhead().median)),
        s.http_overhead(),
    );
}

fn row(out: &mut String, name: &str, subject: &str, baseline: &str, ratio: &str, spread: Spread) {
    let _ = writeln!(
        out,
        "| {name} | {subject} | {baseline} | {ratio} | {}–{} |",
        fixed(spread.min),
        fixed(spread.max)
    );
}

/// The scans of each search query's plan: the speedup means little unless
/// the facet query used its GIN index.
fn plans(out: &mut String, r: &Results) {
    out.push_str("## Search query plans (scan nodes)\n\n");
    for s in &r.searches {
        let name = s.facet.param();
        let _ = writeln!(out, "- `?{name}=` indexed: {}", s.indexed_plan);
        let _ = writeln!(out, "- `?{name}=` naive: {}", s.naive_plan);
    }
    out.push('\n');
}

/// Every per-round ratio, so that a reader can see how much the rounds agree.
fn per_round(out: &mut String, r: &Results) {
    out.push_str("<details><summary>Per-round ratios</summary>\n\n");
    let list = |values: Vec<f64>| values.into_iter().map(fixed).collect::<Vec<_>>().join(", ");
    let rates = |t: &Throughput| {
        list(
            t.pairs
                .iter()
                .map(|p| p.subject.rate() / p.baseline.rate())
                .collect(),
        )
    };
    let _ = writeln!(
        out,
        "- 1a callback / healthz rate: {}",
        rates(&r.ingestion.first)
    );
    let _ = writeln!(
        out,
        "- 1b duplicate / healthz rate: {}",
        rates(&r.ingestion.duplicate)
    );
    for s in &r.searches {
        let speedups = s
            .rounds
            .iter()
            .map(|x| x.naive.as_secs_f64() / x.indexed.as_secs_f64());
        let overheads = s
            .rounds
            .iter()
            .map(|x| x.http.as_secs_f64() / x.indexed.as_secs_f64());
        let name = s.facet.param();
        let _ = writeln!(
            out,
            "- 2 {name} naive / indexed: {}",
            list(speedups.collect())
        );
        let _ = writeln!(
            out,
            "- 2 {name} HTTP / direct: {}",
            list(overheads.collect())
        );
    }
    let _ = writeln!(out, "- 3 create / healthz rate: {}", rates(&r.creation));
    out.push_str("\n</details>\n");
}

/// A ratio with three significant digits or so.
fn fixed(v: f64) -> String {
    match v.abs() {
        x if x >= 100.0 => format!("{v:.0}"),
        x if x >= 10.0 => format!("{v:.1}"),
        x if x >= 1.0 => format!("{v:.2}"),
        _ => format!("{v:.3}"),
    }
}

fn ms(v: f64) -> String {
    format!("{} ms", fixed(v))
}

/// A rate rounded to a whole number, with thousands separators.
fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
