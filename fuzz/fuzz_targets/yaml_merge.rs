//! The YAML loader and the layered merge.
//!
//! Input: up to three YAML layers (environment, app, overlay) separated by a
//! `#8<` comment line, so a seed is one readable YAML file.
//!
//! Checked: parsing never panics; an error points inside the text; a located
//! node is inside the text; merging the top layer again changes nothing; a
//! `null` in an upper layer never leaks into the result as a map member.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pacer::render::merge::merge;
use pacer::render::yaml::{self, Target};
use serde_json::Value;

const SEPARATOR: &str = "\n#8<\n";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut layers = Vec::new();
    for (i, part) in text.splitn(3, SEPARATOR).enumerate() {
        let file = format!("layer{i}.yaml");
        match yaml::parse(&file, part) {
            Ok(v) => {
                check_locations(part, &v);
                layers.push(v);
            }
            Err(d) => {
                assert_eq!(d.file, file);
                let lines = line_count(part);
                if d.message.starts_with("invalid YAML") {
                    assert!(d.line.is_some() && d.column.is_some(), "{d:?}");
                } else {
                    // A non-string key or a tag: the whole file is named.
                    assert!(d.message.starts_with("unsupported YAML"), "{d:?}");
                }
                if let (Some(line), Some(column)) = (d.line, d.column) {
                    assert!(line >= 1 && line <= lines, "line {line} of {lines}: {d:?}");
                    assert!(column >= 1, "{d:?}");
                }
            }
        }
    }
    let Some((bottom, upper)) = layers.split_first() else {
        return;
    };
    let mut merged = bottom.clone();
    for top in upper {
        merge(&mut merged, top);
    }
    if let Some(top) = upper.last() {
        let mut again = merged.clone();
        merge(&mut again, top);
        assert_eq!(
            again, merged,
            "merging the top layer twice changed the result"
        );
    }
    if null_members(bottom) == 0 {
        assert_eq!(
            null_members(&merged),
            0,
            "a null leaked from an upper layer: {merged}"
        );
    }
});

/// Map members whose value is `null` ("remove this key"), at any depth.
fn null_members(v: &Value) -> usize {
    match v {
        Value::Object(m) => m
            .values()
            .map(|v| usize::from(v.is_null()) + null_members(v))
            .sum(),
        Value::Array(a) => a.iter().map(null_members).sum(),
        _ => 0,
    }
}

/// Lines as YAML counts them (`\r\n`, `\r` and `\n` each end one), plus the
/// empty one after a final line break.
fn line_count(text: &str) -> usize {
    text.replace("\r\n", "\n").matches(['\n', '\r']).count() + 1
}

/// Every node's location (the first few hundred) lies inside the text.
fn check_locations(text: &str, v: &Value) {
    let lines = line_count(text);
    let mut pointers = Vec::new();
    collect_pointers(v, String::new(), &mut pointers);
    for p in pointers {
        for target in [Target::Key, Target::Value] {
            if let Some((line, column)) = yaml::locate(text, &p, target) {
                assert!(line >= 1 && line <= lines, "{p}: line {line} of {lines}");
                assert!(column >= 1, "{p}: column {column}");
            }
        }
    }
}

fn collect_pointers(v: &Value, at: String, out: &mut Vec<String>) {
    if out.len() >= 200 {
        return;
    }
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = k.replace('~', "~0").replace('/', "~1");
                collect_pointers(v, format!("{at}/{key}"), out);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                collect_pointers(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}
