//! Facet counts from roaring bitmaps, measured: reads postings
//! `field<TAB>value<TAB>ordinal` (stdin, as bench/segments.sh exports them
//! from `profile_facets`), builds one bitmap per (field, value) and prints
//! the build time and memory, then answers the facet requests of a
//! segments paths file (`/v1/facets?field=F&f1=v1...`, argument 1) with
//! exact counts: filters intersected rarest first, then every value of the
//! field counted against the result; prints p50 / p95 per number of
//! filters.

use std::collections::HashMap;
use std::io::BufRead;
use std::time::Instant;

use roaring::RoaringBitmap;

/// A percent-encoded query value (bench.py quotes with `safe=''`), lowercased.
fn unquote(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap().to_lowercase()
}

fn main() {
    let started = Instant::now();
    let mut index: HashMap<String, HashMap<String, RoaringBitmap>> = HashMap::new();
    let mut rows = 0u64;
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        let mut parts = line.splitn(3, '\t');
        let (field, value, n) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        index
            .entry(field.to_owned())
            .or_default()
            .entry(value.to_owned())
            .or_default()
            .insert(n.parse().unwrap());
        rows += 1;
    }
    let built = started.elapsed();
    let bytes: usize = index
        .values()
        .flat_map(|v| v.iter())
        .map(|(k, b)| b.serialized_size() + k.len() + 48)
        .sum();
    println!(
        "postings {rows}, values {}, built in {:.2} s (from the piped text), bitmaps and keys {:.1} MiB",
        index.values().map(|v| v.len()).sum::<usize>(),
        built.as_secs_f64(),
        bytes as f64 / 1048576.0
    );

    let paths =
        std::fs::read_to_string(std::env::args().nth(1).expect("a facets paths file")).unwrap();
    let mut by_filters: HashMap<usize, Vec<f64>> = HashMap::new();
    for path in paths.lines() {
        let query = path.split_once('?').unwrap().1;
        let mut field = String::new();
        let mut filters = Vec::new();
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap();
            if k == "field" {
                field = v.to_owned();
            } else {
                filters.push((k.to_owned(), unquote(v)));
            }
        }
        let t = Instant::now();
        let empty = RoaringBitmap::new();
        let mut sets: Vec<&RoaringBitmap> = filters
            .iter()
            .map(|(f, v)| index.get(f).and_then(|m| m.get(v)).unwrap_or(&empty))
            .collect();
        sets.sort_by_key(|b| b.len());
        let mut top: Vec<(u64, &str)> = match sets.split_first() {
            None => index[&field]
                .iter()
                .map(|(v, b)| (b.len(), v.as_str()))
                .collect(),
            Some((first, rest)) => {
                let mut m = (*first).clone();
                for b in rest {
                    m &= *b;
                }
                index[&field]
                    .iter()
                    .map(|(v, b)| (b.intersection_len(&m), v.as_str()))
                    .filter(|(n, _)| *n > 0)
                    .collect()
            }
        };
        top.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        top.truncate(20);
        std::hint::black_box(&top);
        by_filters
            .entry(filters.len())
            .or_default()
            .push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let mut keys: Vec<_> = by_filters.keys().copied().collect();
    keys.sort();
    for k in keys {
        let v = by_filters.get_mut(&k).unwrap();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
        println!(
            "facets with {k} filters: {} requests, p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms",
            v.len(),
            q(0.5),
            q(0.95),
            q(1.0)
        );
    }
}
