//! Marathon JSON as observe reads it: `RawApp` spans of a `GET /v2/apps`
//! answer, `normalize_app` and the desired/live comparison.
//!
//! Input: Marathon JSON. `{"apps": [...]}` (a list answer) or `{"app": {}}`
//! (one app) go through `RawApp`; an array `[desired, live]` or
//! `[desired, live, ["/ignored/pointer", ...]]` is compared as it is; any
//! other value is one app. Adjacent apps of a list are compared in pairs.
//!
//! Checked: no panic; a raw app's id and version are those of its text;
//! `normalize_app` is idempotent; an app compared with itself never shows a
//! diff; `app_diff` and `changed_paths` agree; `comparable` is a fixpoint.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pacer::marathon::normalize_app;
use pacer::marathon::raw::RawApp;
use pacer::observe::{app_diff, changed_paths, comparable};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut apps: Vec<Value> = Vec::new();
    let mut ignore: Vec<String> = Vec::new();
    if let Ok(list) = RawApp::list(text.to_string()) {
        for raw in &list {
            apps.push(check_raw(raw));
        }
    } else if let Ok(one) = RawApp::one(text.to_string()) {
        if let Some(raw) = one {
            apps.push(check_raw(&raw));
        }
    } else if let Ok(v) = serde_json::from_str::<Value>(text) {
        match v {
            Value::Array(mut items) if (2..=3).contains(&items.len()) => {
                if let Some(Value::Array(ptrs)) = items.get(2) {
                    ignore = ptrs
                        .iter()
                        .filter_map(|p| p.as_str().map(String::from))
                        .collect();
                }
                items.truncate(2);
                apps = items;
            }
            other => apps.push(other),
        }
    }
    for app in apps.iter().take(8) {
        let mut once = app.clone();
        normalize_app(&mut once);
        let mut twice = once.clone();
        normalize_app(&mut twice);
        assert_eq!(once, twice, "normalize_app is not idempotent");
        assert_eq!(
            app_diff(app, app, &ignore),
            None,
            "an app differs from itself"
        );
        assert!(changed_paths(app, app, &ignore).is_empty());
    }
    for pair in apps.windows(2).take(8) {
        let (desired, live) = (&pair[0], &pair[1]);
        let diff = app_diff(desired, live, &ignore);
        let paths = changed_paths(desired, live, &ignore);
        assert_eq!(
            diff.is_none(),
            paths.is_empty(),
            "diff {diff:?} but paths {paths:?}"
        );
        let (d, l) = comparable(desired, live, &ignore);
        let (d2, l2) = comparable(&d, &l, &ignore);
        assert_eq!((&d, &l), (&d2, &l2), "comparable is not a fixpoint");
    }
});

/// The raw app's fields agree with its text, and the text parses.
fn check_raw(raw: &RawApp) -> Value {
    let v = raw.parse().expect("a span of valid JSON parses");
    assert_eq!(v.get("id").and_then(Value::as_str), Some(raw.id.as_str()));
    let version = v.get("version").and_then(Value::as_str).unwrap_or_default();
    assert_eq!(version, raw.version);
    let summary = raw.summary();
    assert_eq!(summary["id"], Value::from(raw.id.as_str()));
    v
}
