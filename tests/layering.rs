//! The module layering: each top-level module of `src/` imports only what
//! its row of [`ALLOWED`] lists, and no import cycle joins two modules. The
//! pipeline stages (source → render → observe → diff → plan → apply →
//! record) never reach up into the daemon, its HTTP side, the CLI or the
//! simulator.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module → the modules it may import.
const ALLOWED: &[(&str, &[&str])] = &[
    ("model", &[]),
    ("redact", &[]),
    ("listen", &[]),
    ("state_file", &[]),
    ("sops", &["model"]),
    ("agent", &["listen", "model"]),
    ("source", &["model", "redact"]),
    ("marathon", &["model", "redact"]),
    ("render", &["marathon", "model", "redact", "sops", "source"]),
    ("diff", &["model", "redact", "render", "source"]),
    (
        "observe",
        &["diff", "marathon", "model", "render", "source"],
    ),
    ("plan", &["diff", "model", "observe", "render"]),
    (
        "apply",
        &["diff", "marathon", "model", "observe", "plan", "render"],
    ),
    (
        "record",
        &[
            "apply", "marathon", "model", "observe", "plan", "render", "source",
        ],
    ),
    ("status", &["model", "redact", "render", "source"]),
    (
        "delivery",
        &[
            "listen",
            "marathon",
            "model",
            "redact",
            "render",
            "state_file",
            "status",
        ],
    ),
    // The dashboard shows the published desired state: render's types.
    (
        "server",
        &["delivery", "listen", "model", "redact", "render", "status"],
    ),
    ("sim", &["listen", "marathon", "model", "redact"]),
    // The election beside the loop: it turns the loop's writes on and off
    // through a callback, and wakes it with a trigger.
    ("ha", &["model", "server", "status"]),
    (
        "reconcile",
        &[
            "apply",
            "delivery",
            "diff",
            "ha",
            "listen",
            "marathon",
            "model",
            "observe",
            "plan",
            "record",
            "redact",
            "render",
            "server",
            "source",
            "state_file",
            "status",
        ],
    ),
    (
        "cli",
        &[
            "agent",
            "apply",
            "delivery",
            "diff",
            "ha",
            "listen",
            "marathon",
            "model",
            "observe",
            "plan",
            "reconcile",
            "record",
            "redact",
            "render",
            "server",
            "sim",
            "sops",
            "source",
            "status",
        ],
    ),
];

/// The top-level modules named by `crate::` paths in `code` (comments
/// skipped), `use crate::{a, b::c}` groups included.
fn imports(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in code.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // Top-level names of the group: each item after `{` or `,`
                // at depth 0.
                let mut depth = 0;
                let mut item_start = true;
                for (j, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => item_start = true,
                        c if item_start && depth == 0 && (c.is_alphabetic() || c == '_') => {
                            item_start = false;
                            out.insert(ident(&group[j..]));
                        }
                        _ => {}
                    }
                }
            } else {
                out.insert(ident(rest));
            }
        }
    }
    out
}

fn ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Top-level module → the other top-level modules it imports.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_stem().unwrap().to_string_lossy().to_string();
        if name == "lib" || name == "main" {
            continue;
        }
        let mut files = Vec::new();
        if p.is_dir() {
            rust_files(&p, &mut files);
        } else if p.extension().is_some_and(|x| x == "rs") {
            files.push(p.clone());
        } else {
            continue;
        }
        let deps = g.entry(name.clone()).or_default();
        for f in files {
            let code = std::fs::read_to_string(&f).unwrap();
            deps.extend(imports(&code).into_iter().filter(|d| *d != name));
        }
    }
    g
}

/// A cycle through `start`, if any, as the path of modules.
fn cycle(g: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_string(), vec![start.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((m, path)) = stack.pop() {
        for d in g.get(&m).into_iter().flatten() {
            if d == start {
                let mut p = path.clone();
                p.push(d.clone());
                return Some(p);
            }
            if seen.insert(d.clone()) {
                let mut p = path.clone();
                p.push(d.clone());
                stack.push((d.clone(), p));
            }
        }
    }
    None
}

#[test]
fn the_scanner_reads_paths_and_groups() {
    let code = "use crate::plan::{self, Plan};\nuse crate::{model::Outcome, render};\n// crate::cli in a comment\nlet v = crate::record::versions(c);\n";
    let got: Vec<String> = imports(code).into_iter().collect();
    assert_eq!(got, ["model", "plan", "record", "render"]);
}

#[test]
fn modules_import_only_what_the_layering_allows() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let g = graph(&src);
    let allowed: BTreeMap<&str, BTreeSet<&str>> = ALLOWED
        .iter()
        .map(|(m, deps)| (*m, deps.iter().copied().collect()))
        .collect();
    let mut wrong = Vec::new();
    for (m, deps) in &g {
        let Some(ok) = allowed.get(m.as_str()) else {
            wrong.push(format!(
                "{m}: a new top-level module; add its row to ALLOWED in tests/layering.rs"
            ));
            continue;
        };
        for d in deps {
            if g.contains_key(d) && !ok.contains(d.as_str()) {
                wrong.push(format!("{m} imports {d}, which its layer may not"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    for m in g.keys() {
        if let Some(c) = cycle(&g, m) {
            panic!("an import cycle: {}", c.join(" → "));
        }
    }
    // The table itself has no cycle, and keeps the stages below the daemon.
    let table: BTreeMap<String, BTreeSet<String>> = ALLOWED
        .iter()
        .map(|(m, d)| (m.to_string(), d.iter().map(|s| s.to_string()).collect()))
        .collect();
    for m in table.keys() {
        assert!(
            cycle(&table, m).is_none(),
            "ALLOWED has a cycle through {m}"
        );
    }
    for stage in [
        "source", "render", "observe", "diff", "plan", "apply", "record",
    ] {
        for top in ["reconcile", "server", "cli", "sim"] {
            assert!(!table[stage].contains(top), "{stage} may not import {top}");
        }
    }
}
