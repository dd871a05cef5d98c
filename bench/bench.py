#!/usr/bin/env python3
"""Helpers of scripts/bench.sh (standard library only).

  bench.py targets SECRET < "lookup_id request_id" lines > "path request_id" lines
  bench.py template FIXTURE > body with @RID@ in place of the request_id
  bench.py forged N > N callback paths with well-formed but wrong tokens
  bench.py dburl URL NAME > URL with its database replaced by NAME
  bench.py quote < lines > the lines, URL-encoded
  bench.py subject-paths SUBJECTS PREFIX   search paths per identifier
  bench.py report RESULTS.jsonl > the report (markdown)

Callback tokens are computed exactly as the service does
(src/secrets.rs): key = HMAC-SHA256(SERVICE_SECRET,
"interests-receiver/v1/callback-token"); token = base64url, unpadded, of
HMAC-SHA256(key, the lookup id's 16 bytes).
"""

import base64
import hashlib
import hmac
import json
import os
import random
import re
import statistics
import sys
import urllib.parse
import uuid


def callback_key(secret: bytes) -> bytes:
    return hmac.new(secret, b"interests-receiver/v1/callback-token", hashlib.sha256).digest()


def token(key: bytes, lookup_id: str) -> str:
    mac = hmac.new(key, uuid.UUID(lookup_id).bytes, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def identity_key_id(secret: str) -> None:
    """The id of the identity key under SERVICE_SECRET (secrets.rs): seeded
    lookups carry it, or the service would re-key every one of them in the
    background while it is measured."""
    key = hmac.new(secret.encode(), b"interests-receiver/v1/identifier-hash", hashlib.sha256).digest()
    print(hmac.new(key, b"\0identity-key-id", hashlib.sha256).digest()[:8].hex())


def targets(secret: str) -> None:
    key = callback_key(secret.encode())
    out = sys.stdout
    for line in sys.stdin:
        lookup_id, request_id = line.split()
        out.write(f"/callbacks/{lookup_id}/{token(key, lookup_id)} {request_id}\n")


def template(fixture: str) -> None:
    with open(fixture) as f:
        body = json.load(f)
    body["data"]["request_id"] = "@RID@"
    sys.stdout.write(json.dumps(body, separators=(",", ":")))


def forged(n: int) -> None:
    for _ in range(n):
        fake = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
        sys.stdout.write(f"/callbacks/{uuid.uuid4()}/{fake}\n")


def dburl(url: str, name: str) -> None:
    parts = urllib.parse.urlsplit(url)
    print(urllib.parse.urlunsplit(parts._replace(path="/" + name)))


def facets(result) -> list:
    """The five facet arrays of a result, as src/facets.rs extracts them."""
    interests, categories, brands, archetypes, industries = set(), set(), set(), set(), set()
    for category, body in (result.get("interest_graph") or {}).items():
        categories.add(category.lower())
        for entry in (body or {}).get("interests") or []:
            if isinstance(entry, dict):
                interests.update(v.lower() for k, v in entry.items()
                                 if k != "supporting_accounts" and isinstance(v, str))
    for affinity in result.get("brand_affinities") or []:
        brands.update(b.lower() for b in affinity.get("brands") or [] if isinstance(b, str))
    archetypes.update(a.lower() for a in (result.get("core_profile") or {}).get("archetypes") or [])
    industries.update(i.lower() for i in
                      (result.get("professional_ecosystem") or {}).get("industry_focus") or [])
    return [sorted(s) for s in (interests, categories, brands, archetypes, industries)]


def pgbench_literal(body: str) -> str:
    """The JSON body as the inside of an SQL string literal in a pgbench
    script. pgbench takes `:name` for a variable even inside a literal, so
    no colon may be followed by a name character: structural colons get a
    space after them, colons inside strings become the JSON escape \\u003a
    (the same value once parsed)."""
    text = json.dumps(json.loads(body))
    return re.sub(r":(?=[A-Za-z0-9_])", r"\\u003a", text).replace("'", "''")


def quote() -> None:
    for line in sys.stdin:
        print(urllib.parse.quote(line.rstrip("\n"), safe=""))


def subject_paths(subjects: str, prefix: str) -> None:
    """One file of /v1/profiles?<identifier>= paths per identifier column."""
    names = ["email", "phone", "social_media_url"]
    rows = [line.split() for line in open(subjects) if line.strip()]
    for col, name in enumerate(names):
        with open(f"{prefix}{name}.paths", "w") as out:
            for row in rows:
                out.write(f"/v1/profiles?{name}={urllib.parse.quote(row[col], safe='')}\n")


def segment_paths(values: str, prefix: str) -> None:
    """Request paths for the segments runs, from lines field|band|count|value
    (bench/segments.sh): per field, its values of every band in turn; pairs
    and triples of different fields, each value from a band chosen at random
    (so common, mid and rare come up alike, and many rare combinations match
    nothing); facets of a random field with 0 to 3 such filters."""
    rng = random.Random(17)
    by_field = {}
    for line in open(values):
        field, band, _count, value = line.rstrip("\n").split("|", 3)
        by_field.setdefault(field, {}).setdefault(band, []).append(value)
    fields = sorted(by_field)

    def pick(field):
        bands = by_field[field]
        return field, rng.choice(bands[rng.choice(sorted(bands))])

    def filters(n):
        return "&".join(f"{f}={urllib.parse.quote(v, safe='')}" for f, v in map(pick, rng.sample(fields, n)))

    def write(name, paths):
        with open(f"{prefix}{name}.paths", "w") as out:
            out.writelines(p + "\n" for p in paths)

    for field in fields:
        write(f"search-{field}", [f"/v1/profiles?{field}={urllib.parse.quote(v, safe='')}"
                                  for vs in by_field[field].values() for v in vs])
    write("search-pairs", [f"/v1/profiles?{filters(2)}" for _ in range(300)])
    write("search-triples", [f"/v1/profiles?{filters(3)}" for _ in range(300)])
    for n in range(4):
        write(f"facets-{n}", [f"/v1/facets?field={rng.choice(fields)}" + (f"&{filters(n)}" if n else "")
                              for _ in range(300)])


def buckets(path: str, name: str) -> dict:
    """A Prometheus histogram's cumulative buckets in a /metrics page."""
    out = {}
    prefix = f'{name}_bucket{{le="'
    for line in open(path):
        if line.startswith(prefix):
            le, count = line[len(prefix):].split('"}')
            out[le] = float(count)
    return out


def histogram_diff(before: str, after: str, name: str) -> None:
    """The samples a histogram got between two scrapes, as JSON: the
    bucket bounds (s) under which 50 % and 99 % of them fell."""
    b, a = buckets(before, name), buckets(after, name)
    rows = sorted(((float("inf") if le == "+Inf" else float(le), a[le] - b.get(le, 0)) for le in a))
    total = rows[-1][1] if rows else 0

    def bound(q):
        for le, n in rows:
            if total and n >= q * total:
                return None if le == float("inf") else le
        return None

    print(json.dumps({"count": total, "p50_le": bound(0.5), "p99_le": bound(0.99)}))


def ms(us) -> str:
    return f"{us / 1000:.2f} ms"


def rate(r) -> float:
    return r["requests"] / (r["duration_us"] / 1e6)


def verdict(ok) -> str:
    return "met" if ok else "**missed**"


def deliveries(p, facts, runs, one) -> None:
    """The delivery part of the report (not run with BENCH_ONLY=segments)."""
    p("| measurement | figure | target | verdict |")
    p("|---|---|---|---|")
    ceiling = facts["pgbench_tps"]
    p(f"| pgbench ceiling: single-row JSONB insert (the delivery body), 32 clients | {ceiling:,.0f} inserts/s | (baseline) | |")
    apply_tps = facts.get("pgbench_apply_tps")
    if apply_tps:
        p(f"| diagnostic: pgbench running the service's own statement (`apply_job_update`, first delivery), 32 clients | {apply_tps:,.0f}/s = {apply_tps / ceiling:.2f} of the ceiling | | |")
    no_event = facts.get("pgbench_apply_no_event_tps")
    if no_event:
        p(f"| diagnostic: the same with the lookup event trigger (`lookups_event_on_status`) off | {no_event:,.0f}/s = {no_event / ceiling:.2f} of the ceiling | | |")
    bare = facts.get("pgbench_apply_bare_tps")
    if bare:
        p(f"| diagnostic: the same with every trigger of `lookups`, `profiles` and `deliveries` off (the statement's own writes: a bound no trigger change can beat) | {bare:,.0f}/s = {bare / ceiling:.2f} of the ceiling | | |")
    grouped = facts.get("pgbench_apply16_tps")
    if grouped:
        p(f"| diagnostic: `apply_job_update` in groups of 16 per statement and transaction, 4 clients (the service's appliers under load), triggers on | {grouped * 16:,.0f}/s = {grouped * 16 / ceiling:.2f} of the ceiling | | |")
    first = one("first")
    fr = first["applied"] / (first["duration_us"] / 1e6)
    p(f"| first deliveries, 32 connections: throughput | {fr:,.0f}/s = **{fr / ceiling:.2f}** of the ceiling | >= 0.5 of the ceiling | {verdict(fr / ceiling >= 0.5)} |")
    p(f"| first deliveries: p50 / p99 | {ms(first['p50_us'])} / {ms(first['p99_us'])} | | |")
    if facts.get("waits"):
        p(f"| first deliveries: what active sessions waited on (samples every 100 ms) | {facts['waits']} | | |")
    if apply_tps:
        p(f"| first deliveries beside `apply_job_update` alone | {fr / apply_tps:.2f} of it | | |")
    dup = one("duplicate")
    dr = rate(dup)
    p(f"| duplicates, 32 connections: throughput | {dr:,.0f}/s = **{dr / fr:.2f}x** first deliveries | >= 2x first deliveries | {verdict(dr / fr >= 2)} |")
    p(f"| duplicates: p50 / p99 | {ms(dup['p50_us'])} / {ms(dup['p99_us'])} | | |")
    if "paced-quiet" in runs:
        quiet = one("paced-quiet")
        p(f"| fixed rate, first deliveries at 1,000/s (achieved {rate(quiet):,.0f}/s), nothing else open: p50 / p99 / max | {ms(quiet['p50_us'])} / **{ms(quiet['p99_us'])}** / {ms(quiet['max_us'])}; answers other than 200: {quiet['other']} | p99 < 10 ms | {verdict(quiet['p99_us'] < 10_000 and quiet['other'] == 0)} |")
    paced = one("paced")
    pr = rate(paced)
    obs = facts.get("observers")
    beside = f", {obs['streams']} event streams open, two webhook endpoints (one never answers)" if obs else ""
    p(f"| fixed rate, first deliveries at 1,000/s (achieved {pr:,.0f}/s{beside}): p50 / p99 / max | {ms(paced['p50_us'])} / **{ms(paced['p99_us'])}** / {ms(paced['max_us'])}; answers other than 200: {paced['other']} | p99 < 10 ms | {verdict(paced['p99_us'] < 10_000 and paced['other'] == 0)} |")
    if obs:
        sse, hook = obs["sse"], obs["webhook"]
        p(f"| meanwhile: an event reaching an open stream, from the event's `at` (taken as its writer's transaction commits, before the commit's log flush: an upper bound of the delay from its commit): p50 / p99 ({sse['count']:,} events timed; streams ended by the service as too slow: {sse['streams_ended']}) | {sse['p50_ms']} ms / **{sse['p99_ms']} ms** | p99 < 100 ms | {verdict(sse['p99_ms'] is not None and sse['p99_ms'] < 100)} |")
        feed = facts.get("feed_delay")
        if feed and feed["count"]:
            le = lambda s: "over 10 s" if s is None else f"at most {s * 1000:.0f} ms"
            p(f"| of which: from the commit to this replica's event feed reading the event (`event_feed_delay_seconds`, histogram buckets; {feed['count']:,.0f} events): p50 / p99 | {le(feed['p50_le'])} / {le(feed['p99_le'])} | | |")
        p(f"| meanwhile: the healthy webhook endpoint's delivery lag, from the event's time: p50 / p99 ({hook['count']:,} events; the dead endpoint held {obs['dead']['connections_held']} connections) | {hook['p50_ms']} ms / **{hook['p99_ms']} ms** | p99 < 1 s | {verdict(hook['p99_ms'] is not None and hook['p99_ms'] < 1000)} |")
    forged_rates = [rate(r) for r in runs["forged"]]
    health_rates = [rate(r) for r in runs["healthz"]]
    fo, he = statistics.median(forged_rates), statistics.median(health_rates)
    p(f"| forged-token refusals, 64 connections (median of {len(forged_rates)} rounds) | **{fo:,.0f}/s** = {fo / he:.2f} of `GET /healthz` ({he:,.0f}/s, same connections, interleaved) | >= 30,000/s | {verdict(fo >= 30_000)} |")
    p(f"| RSS idle / under load (max sampled, VmHWM) | {facts['rss_idle_kib'] / 1024:.1f} MiB / **{facts['rss_load_kib'] / 1024:.1f} MiB** ({facts['rss_hwm_kib'] / 1024:.1f} MiB) | < 40 MiB under load | {verdict(facts['rss_load_kib'] < 40 * 1024)} |")
    if "rss_load_anon_kib" in facts:
        p(f"| the RSS peak's parts: anonymous (heap, stacks) / file-backed (the binary's code, libraries) | {facts['rss_load_anon_kib'] / 1024:.1f} MiB / {facts['rss_load_file_kib'] / 1024:.1f} MiB | | |")
    p(f"| start to `/readyz` 200 (schema current, {facts['ready_rows']:,} lookups in the table) | **{facts['ready_ms']:.0f} ms** | < 1 s | {verdict(facts['ready_ms'] < 1000)} |")
    if "scale:GET /metrics" in runs:
        stored = facts["scale_lookups"]
        for name, target_ms in [("scale:GET /metrics", 5), ("scale:GET /v1/stats", 5),
                                ("scale:POST /v1/lookups", 10), ("scale:POST /v1/lookups (budget)", 10)]:
            r = one(name)
            p(f"| `{name[6:]}` with {stored:,} lookups stored, 4 connections ({rate(r):,.0f}/s): p50 / p95 | {ms(r['p50_us'])} / **{ms(r['p95_us'])}** | p95 < {target_ms} ms | {verdict(r['p95_us'] < target_ms * 1000)} |")
        for prefix, label in [("scale:batch-", "without"), ("scale:batch-budget-", "with")]:
            secs = [r["seconds"] for k, rs in runs.items() for r in rs
                    if k.startswith(prefix) and k[len(prefix):].isdigit()]
            p(f"| a 1,000-item batch of new people, {label} a daily budget ({len(secs)} rounds: slowest) | **{max(secs):.2f} s** | < 2 s | {verdict(max(secs) < 2)} |")
    p()


# Targets of issue 17 at a million profiles: p95 in microseconds.
SEGMENT_TARGETS = {"single": 20_000, "pairs": 50_000, "triples": 50_000, "facets": 50_000}


def segments(p, facts, runs) -> None:
    """Search, facets and export at each generated size (bench/segments.sh)."""
    sizes = sorted({r["profiles"] for k, rs in runs.items() if k.startswith(("search:", "facets:")) for r in rs})
    if not sizes:
        return
    p("Segments: `GET /v1/profiles` and `GET /v1/facets`, 4 connections, values from the common, mid and rare thirds of each field's ranking; targets at 1,000,000 profiles:")
    p()
    p("| request | profiles | p50 | p95 | target p95 | verdict |")
    p("|---|---|---|---|---|---|")
    for size in sizes:
        for name, rs in runs.items():
            if not name.startswith(("search:", "facets:")):
                continue
            for r in (r for r in rs if r["profiles"] == size):
                kind, what = name.split(":", 1)
                if kind == "facets":
                    label, target = f"facets, {what} filters", SEGMENT_TARGETS["facets"]
                elif what in ("pairs", "triples"):
                    label, target = f"search, {what}", SEGMENT_TARGETS[what]
                else:
                    label, target = f"search, `{what}=`", SEGMENT_TARGETS["single"]
                v = verdict(r["p95_us"] < target) if size >= 1_000_000 else ""
                p(f"| {label} | {size:,} | {ms(r['p50_us'])} | **{ms(r['p95_us'])}** | < {target // 1000} ms | {v} |")
    p()
    for size in sizes:
        g = facts.get(f"generate:{size}")
        if g:
            p(f"- generate, {g['added']:,} profiles to reach {size:,}: **{g['seconds']:.0f} s**; postings: {facts.get(f'postings:{size}', '?')}")
        fl = facts.get(f"flushed:{size}")
        if fl:
            p(f"- then flushed before measuring (CHECKPOINT, sync): {fl['dirty_kib'] / 1024:,.0f} MiB dirty in the page cache, {fl['seconds']:.1f} s")
        e = facts.get(f"export:{size}")
        if e:
            er, cr = e["rows"] / e["seconds"], e["rows"] / e["copy_seconds"]
            v = verdict(er / cr >= 0.5) if size >= 1_000_000 else ""
            p(f"- export of {e['rows']:,} profiles at {size:,}: **{er:,.0f} profiles/s** ({e['seconds']:.2f} s, peak RSS {e['rss_kib'] / 1024:.1f} MiB) beside COPY of the same rows to /dev/null {cr:,.0f} rows/s ({e['copy_seconds']:.2f} s): **{er / cr:.2f}** of COPY (target >= 0.5) {v}")
        fi = facts.get(f"facet_index:{size}")
        if fi:
            p(f"- the service's facet index at {size:,}: {fi['postings']:,} postings in **{fi['bytes'] / 1048576:.1f} MiB** of bitmaps, service RSS {fi['rss_kib'] / 1024:.1f} MiB once loaded; waited {fi['waited']:.0f} s after generate for it (log: `{fi['log']}`)")
        b = facts.get(f"bitmaps:{size}")
        if b:
            p(f"- in-process bitmaps (bench/bitmap-probe) at {size:,}, the same facet requests: {b}")
        x = facts.get(f"explain:{size}")
        if x:
            p(f"- EXPLAIN ANALYZE at {size:,} (search common; search 0.1% value driving, common probed; facets under the most common value): {x}")
    p()


def report(path: str) -> None:
    facts, runs = {}, {}
    with open(path) as f:
        for line in f:
            rec = json.loads(line)
            if rec["kind"] == "fact":
                facts[rec["name"]] = rec["value"]
            else:
                runs.setdefault(rec["name"], []).append(rec["result"])

    def one(name):
        return runs[name][-1]

    p = print
    p("# scripts/bench.sh report")
    p()
    for k in ["date", "commit", "machine", "cpu", "memory", "postgres", "pg_settings", "load_tool", "durations"]:
        if k in facts:
            p(f"- {k.replace('_', ' ')}: {facts[k]}")
    p()
    if "pgbench_tps" in facts:
        deliveries(p, facts, runs, one)
    segments(p, facts, runs)
    p("Raw wrk results (JSON, one per run):")
    p()
    p("```")
    for name, rs in runs.items():
        for r in rs:
            p(f"{name}: {json.dumps(r, separators=(',', ':'))}")
    p("```")


def main() -> None:
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "identity-key-id":
        identity_key_id(args[0])
    elif cmd == "targets":
        targets(args[0])
    elif cmd == "template":
        template(args[0])
    elif cmd == "forged":
        forged(int(args[0]))
    elif cmd == "dburl":
        dburl(args[0], args[1])
    elif cmd == "quote":
        quote()
    elif cmd == "subject-paths":
        subject_paths(args[0], args[1])
    elif cmd == "segment-paths":
        segment_paths(args[0], args[1])
    elif cmd == "histogram-diff":
        histogram_diff(args[0], args[1], args[2])
    elif cmd == "report":
        report(args[0])
    else:
        sys.exit(f"bench.py: unknown command {cmd}")


if __name__ == "__main__":
    main()
