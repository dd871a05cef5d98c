//! What may import what (ARCHITECTURE.md, "Layers"): every `crate::…` path
//! in `src/` names a module of the same layer or of a layer below, and the
//! top-level modules import each other without a circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, lowest first; a module may use its own layer and those
/// below. The simulator (`sandbox`) is a program of its own that uses
/// nothing of the service.
const LAYERS: &[&[&str]] = &[
    &[
        "lifecycle",
        "subject",
        "token",
        "secrets",
        "auth",
        "config",
        "telemetry",
        "facets",
        "fields",
        "versions",
        "crashpoint",
        "sandbox",
    ],
    &["store"],
    &["upstream", "views", "reads"],
    &[
        "lookups",
        "batch",
        "dry_run",
        "refresh",
        "audit",
        "erasure",
        "callbacks",
        "events",
        "webhooks",
        "generate",
        "facet_index",
    ],
    &["workers"],
    &["http"],
    &["app", "client", "cli"],
];

fn layer_of(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|layer| layer.contains(&module))
        .unwrap_or_else(|| panic!("module `{module}` is in no layer of tests/it/layers.rs"))
}

/// `crate::<module>` references of every file, by top-level module.
fn imports() -> BTreeMap<String, BTreeSet<(String, String)>> {
    fn walk(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, files);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    let mut found: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for file in files {
        let relative = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let top = relative
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_owned();
        if top == "lib" || top == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (at, _) in text.match_indices("crate::") {
            let used: String = text[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !used.is_empty() && used != top {
                found
                    .entry(top.clone())
                    .or_default()
                    .insert((used, relative.clone()));
            }
        }
    }
    found
}

#[test]
fn no_module_imports_a_layer_above_its_own() {
    let mut upward = Vec::new();
    for (module, used) in imports() {
        for (target, file) in used {
            if layer_of(&target) > layer_of(&module) {
                upward.push(format!("{file}: {module} -> {target}"));
            }
        }
    }
    assert!(upward.is_empty(), "imports that point up: {upward:#?}");
}

#[test]
fn top_level_modules_import_each_other_without_a_circle() {
    let graph: BTreeMap<String, BTreeSet<String>> = imports()
        .into_iter()
        .map(|(m, used)| (m, used.into_iter().map(|(t, _)| t).collect()))
        .collect();
    // Depth-first search; a module met again while on the path closes a circle.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if done.contains(m) {
            return;
        }
        if let Some(start) = path.iter().position(|p| p == m) {
            panic!("circle: {:?}", &path[start..]);
        }
        path.push(m.to_owned());
        for next in graph.get(m).into_iter().flatten() {
            visit(next, graph, path, done);
        }
        path.pop();
        done.insert(m.to_owned());
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        visit(m, &graph, &mut Vec::new(), &mut done);
    }
}
