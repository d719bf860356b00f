//! Placeholder until the live-state module lands: the same signatures.
use serde_json::Value;

pub fn comparable(desired: &Value, live: &Value, _ignore: &[String]) -> (Value, Value) {
    (desired.clone(), live.clone())
}

pub fn app_diff(desired: &Value, live: &Value, ignore: &[String]) -> Option<String> {
    let (d, l) = comparable(desired, live, ignore);
    (d != l).then(|| "(differs)".to_string())
}

pub fn changed_paths(desired: &Value, live: &Value, ignore: &[String]) -> Vec<String> {
    let (d, l) = comparable(desired, live, ignore);
    let mut out = Vec::new();
    if let (Value::Object(a), Value::Object(b)) = (&d, &l) {
        for k in a.keys().chain(b.keys()) {
            if a.get(k) != b.get(k) {
                out.push(format!("/{k}"));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}
