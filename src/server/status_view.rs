//! `GET /api/v1/status`: the full status for a read or admin token, and
//! without one a public view that keeps what a dashboard or a probe needs
//! (sync states, counts, commit ids, outcomes) and drops whatever quotes
//! the config or Marathon: error messages and hints (they quote rendered
//! values and Marathon's answers), messages, reasons, the repo's URL, the
//! config server's settings, the failed files' names.
//!
//! The public view is an allow-list: a field added to the status later
//! stays out of it until it is named here.

use super::auth::Level;
use serde_json::{Map, Value};

/// The status `full` as a caller at `level` may see it.
pub fn view(full: Value, level: Level) -> Value {
    match level {
        Level::Read | Level::Admin => full,
        Level::Anonymous => public(&full),
    }
}

/// Copies the named keys of `from` that are present.
fn pick(from: &Value, keys: &[&str]) -> Map<String, Value> {
    keys.iter()
        .filter_map(|k| from.get(*k).map(|v| ((*k).to_string(), v.clone())))
        .collect()
}

/// `errors` becomes `errorCount` (absent when there are none, as `errors` is).
fn count_errors(from: &Value, into: &mut Map<String, Value>) {
    if let Some(n) = from["errors"].as_array().map(Vec::len).filter(|n| *n > 0) {
        into.insert("errorCount".into(), n.into());
    }
}

/// Each entry of an object mapped through `f`.
fn each(from: &Value, f: impl Fn(&Value) -> Value) -> Value {
    Value::Object(
        from.as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), f(v)))
            .collect(),
    )
}

/// What the public view keeps of an app's delivery (the dashboard's app
/// page shows the same): its bundle, state and task counts, not why it
/// failed nor which files.
pub fn public_delivery(d: &Value) -> Value {
    Value::Object(pick(d, &["index", "commit", "state", "since", "tasks"]))
}

/// The view without a token. Pure.
pub fn public(full: &Value) -> Value {
    let mut out = pick(full, &["writes", "webhooks"]);
    out.insert("redacted".into(), Value::Bool(true));
    if full["ha"].is_object() {
        let ha = pick(
            &full["ha"],
            &["role", "zkConnected", "id", "leader", "epoch"],
        );
        out.insert("ha".into(), Value::Object(ha));
    }
    let mut repo = pick(
        &full["repo"],
        &["branch", "head", "lastGood", "pendingRecords"],
    );
    count_errors(&full["repo"], &mut repo);
    out.insert("repo".into(), Value::Object(repo));
    if full["endpoints"]["services"].is_object() {
        let services = each(&full["endpoints"]["services"], |s| {
            let mut o = pick(s, &["tasks", "pendingTasks"]);
            if s["held"].is_object() {
                let held = pick(&s["held"], &["releasedTasks", "heldTasks", "sinceMs"]);
                o.insert("held".into(), Value::Object(held));
            }
            Value::Object(o)
        });
        out.insert(
            "endpoints".into(),
            Value::Object([("services".to_string(), services)].into_iter().collect()),
        );
    }
    let envs = each(&full["environments"], |e| {
        let mut env = pick(e, &["group", "commit", "lastSync", "plan"]);
        count_errors(e, &mut env);
        if e["apply"].is_object() {
            env.insert(
                "apply".into(),
                pick(&e["apply"], &["plan", "state", "at"]).into(),
            );
        }
        if e["verify"].is_object() {
            // Which commits the gate took and refused, and the kind of
            // refusal (for alerts); not who signed, wrote or why in words.
            let v = &e["verify"];
            let mut verify = pick(v, &["mode", "basis"]);
            if v["verified"].is_object() {
                verify.insert("verified".into(), pick(&v["verified"], &["commit"]).into());
            }
            if v["refused"].is_object() {
                let refused = pick(&v["refused"], &["head", "commit", "reason"]);
                verify.insert("refused".into(), refused.into());
            }
            env.insert("verify".into(), verify.into());
        }
        let apps = each(&e["apps"], |a| {
            let mut app = pick(a, &["id", "sync", "liveCommit"]);
            count_errors(a, &mut app);
            if a["last"].is_object() {
                let last = pick(&a["last"], &["outcome", "commit", "at", "deploymentId"]);
                app.insert("last".into(), Value::Object(last));
            }
            if a["rollout"].is_object() {
                let r = pick(
                    &a["rollout"],
                    &[
                        "deployments",
                        "instances",
                        "staged",
                        "running",
                        "healthy",
                        "unhealthy",
                    ],
                );
                app.insert("rollout".into(), Value::Object(r));
            }
            if a["delivery"].is_object() {
                app.insert("delivery".into(), public_delivery(&a["delivery"]));
            }
            Value::Object(app)
        });
        env.insert("apps".into(), apps);
        Value::Object(env)
    });
    out.insert("environments".into(), envs);
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn full() -> Value {
        json!({
            "repo": {"url": "https://***@git.internal/ops/config.git", "branch": "main",
                     "head": "c2", "lastGood": "c1", "lastFetchError": "PLANTED-fetch",
                     "errors": [{"file": "pacer.yaml", "line": 3, "message": "PLANTED-repo"}],
                     "pendingRecords": 0, "lastRecordError": "PLANTED-record"},
            "writes": "active",
            "webhooks": "off",
            "configServer": {"disabledEnvs": ["PLANTED-env"]},
            "endpoints": {
                "services": {"/prod/db": {"tasks": 3, "pendingTasks": 0, "error": "PLANTED-ep",
                                          "held": {"reason": "PLANTED-held", "releasedTasks": 3,
                                                   "heldTasks": 0, "sinceMs": 1}}},
                "streams": {"http://PLANTED-marathon:8080": true}
            },
            "ha": {"role": "leader", "zkConnected": true, "id": "r1", "epoch": 7},
            "environments": {"dev": {
                "group": "/dev", "commit": "c1", "lastSync": "t",
                "plan": {"creates": 1, "updates": 0, "deletes": 0, "heals": 0, "digest": "sha256:p"},
                "apply": {"plan": "sha256:p", "state": "dropped", "reason": "PLANTED-why", "at": "t"},
                "errors": [{"message": "PLANTED-env-error"}],
                "verify": {"mode": "head", "signers": "PLANTED-signers", "basis": "anchor",
                           "verified": {"commit": "c1", "signer": {"kind": "ssh",
                                        "principal": "PLANTED-principal", "fingerprint": "PLANTED-fp"}},
                           "refused": {"head": "c2", "commit": "c2", "author": "PLANTED-author",
                                       "summary": "PLANTED-summary", "reason": "unknownKey",
                                       "message": "PLANTED-message"}},
                "apps": {"web": {
                    "id": "/dev/web", "sync": "failed", "liveCommit": "c1",
                    "last": {"outcome": "rolledBack", "commit": "c1", "at": "t",
                             "deploymentId": "d-1", "message": "PLANTED-last"},
                    "errors": [{"file": "apps/web/app.yaml", "message": "PLANTED-app",
                                "hint": "PLANTED-hint"}, {"message": "PLANTED-2"}],
                    "rollout": {"deployments": ["d-2"], "instances": 3, "staged": 1, "running": 2,
                                "healthy": 1, "unhealthy": 0, "PLANTED-extra": 1},
                    "delivery": {"index": 4, "commit": "c1", "state": "failed",
                                 "reason": "PLANTED-reason", "failedFiles": ["PLANTED-file"],
                                 "tasks": {"byIndex": {"4": 2}}}
                }}
            }}
        })
    }

    #[test]
    fn the_public_view_keeps_states_counts_and_commits_only() {
        let v = public(&full());
        let text = v.to_string();
        assert!(!text.contains("PLANTED"), "{v:#}");
        assert!(!text.contains("git.internal"), "{v:#}");
        assert_eq!(v["redacted"], true);
        assert_eq!(v["writes"], "active");
        assert_eq!(v["webhooks"], "off");
        assert_eq!(v["repo"]["head"], "c2");
        assert_eq!(v["repo"]["lastGood"], "c1");
        assert_eq!(v["repo"]["errorCount"], 1);
        let app = &v["environments"]["dev"]["apps"]["web"];
        assert_eq!(app["sync"], "failed");
        assert_eq!(app["errorCount"], 2);
        assert_eq!(app["last"]["outcome"], "rolledBack");
        assert_eq!(app["last"]["deploymentId"], "d-1");
        assert_eq!(app["delivery"]["state"], "failed");
        assert_eq!(app["rollout"]["running"], 2);
        assert_eq!(app["rollout"]["deployments"][0], "d-2");
        assert_eq!(app["delivery"]["tasks"]["byIndex"]["4"], 2);
        assert_eq!(v["environments"]["dev"]["errorCount"], 1);
        assert_eq!(v["environments"]["dev"]["plan"]["creates"], 1);
        assert_eq!(v["environments"]["dev"]["apply"]["state"], "dropped");
        assert_eq!(
            v["endpoints"]["services"]["/prod/db"]["held"]["releasedTasks"],
            3
        );
        assert_eq!(v["ha"]["role"], "leader");
        let verify = &v["environments"]["dev"]["verify"];
        assert_eq!(verify["verified"]["commit"], "c1");
        assert_eq!(verify["refused"]["reason"], "unknownKey");
        assert_eq!(verify["mode"], "head");
    }

    #[test]
    fn a_token_sees_everything_and_nothing_is_invented_when_absent() {
        assert_eq!(view(full(), Level::Read), full());
        assert_eq!(view(full(), Level::Admin), full());
        let v = public(&json!({"repo": {"branch": "main"}, "writes": "active",
                               "environments": {"dev": {"group": "/dev", "apps": {}}}}));
        assert_eq!(
            v,
            json!({"redacted": true, "writes": "active", "repo": {"branch": "main"},
                   "environments": {"dev": {"group": "/dev", "apps": {}}}})
        );
    }
}
