//! Table-driven tests, one group per normalisation rule.

use super::*;
use serde_json::json;

#[test]
fn identical_apps_are_in_sync() {
    let app = json!({"id": "/prod/web", "cmd": "./serve"});
    assert_eq!(app_diff(&app, &app, &[]), None);
}
