//! `pacer status`: what runs where. From the daemon's `/api/v1/status`, or
//! straight from Marathon through the same planning as `pacer plan`; both
//! give the daemon's JSON shape, so one printer serves both.

use super::args::{Format, StatusArgs};
use super::exit;
use super::plan::{plan_env, render_envs};
use anyhow::{Context, bail};
use serde_json::{Map, Value, json};
use std::time::Duration;

/// The most of a daemon's answer read: a status is small, and a server
/// that streams without end must not fill memory.
const MAX_STATUS_BYTES: usize = 32 << 20;

pub fn status_cmd(a: StatusArgs) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Runtime::new()?;
    let status = match &a.daemon {
        Some(url) => {
            let token =
                super::tokens::token(a.token_file.as_deref(), "PACER_TOKEN", &|k: &str| {
                    std::env::var(k).ok()
                })?;
            let v = rt.block_on(from_daemon(
                url,
                token.as_deref(),
                a.marathon.marathon_timeout,
            ))?;
            if v["redacted"] == true {
                // On stderr: the output itself stays what a script parses.
                eprintln!(
                    "pacer status: no token, so the daemon showed its public status (no errors or messages); set PACER_TOKEN or --token-file to its read token"
                );
            }
            v
        }
        None => rt.block_on(from_marathon(&a))?,
    };
    let status = filter(status, &a.envs, a.app.as_deref())?;
    match a.format.format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(&status)?)?,
        f => out!("{}", render(&status, f == Format::Markdown))?,
    }
    // Read straight from Marathon, an environment that could not be read
    // is a failed status (the daemon's own errors are its news to report).
    let unread = a.daemon.is_none()
        && status["environments"].as_object().is_some_and(|m| {
            m.values().any(|e| {
                e["apps"].as_object().is_some_and(|a| a.is_empty())
                    && e["errors"].as_array().is_some_and(|v| !v.is_empty())
            })
        });
    Ok(if unread { exit::ERROR } else { exit::OK })
}

async fn from_daemon(base: &str, token: Option<&str>, timeout: u64) -> anyhow::Result<Value> {
    let url = format!("{}/api/v1/status", base.trim_end_matches('/'));
    let shown = crate::redact::url(&url);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(timeout.max(1)))
        .build()?;
    let mut req = client.get(&url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let mut resp = req
        .send()
        .await
        .with_context(|| format!("asking the daemon at {shown}"))?;
    if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
        bail!(
            "the daemon at {shown} refused the token (PACER_TOKEN or --token-file): it is not one of its tokens"
        );
    }
    if !resp.status().is_success() {
        bail!("the daemon at {shown} answered {}", resp.status());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .with_context(|| format!("reading the daemon's answer from {shown}"))?
    {
        if body.len() + chunk.len() > MAX_STATUS_BYTES {
            bail!(
                "the daemon at {shown} sent more than {} MiB: is it a pacer daemon?",
                MAX_STATUS_BYTES >> 20
            );
        }
        body.extend_from_slice(&chunk);
    }
    let v: Value = serde_json::from_slice(&body)
        .with_context(|| format!("the answer of {shown} is not JSON: is it a pacer daemon?"))?;
    if !v["environments"].is_object() {
        bail!("the answer of {shown} has no `environments`: is it a pacer daemon?");
    }
    Ok(v)
}

/// Marathon read straight and compared with the working tree, in the
/// daemon's shape.
async fn from_marathon(a: &StatusArgs) -> anyhow::Result<Value> {
    let rendered = render_envs(&a.repo.repo, None, &a.envs, a.app.as_deref())?;
    let commit = rendered.snap.revision.label();
    let mut envs = Map::new();
    for desired in rendered.envs.into_values() {
        let name = desired.settings.name.clone();
        let group = desired.settings.group.clone();
        let ep = match plan_env(
            &rendered.loc,
            desired,
            a.app.as_deref(),
            &a.marathon,
            crate::plan::Overrides::default(),
        )
        .await
        {
            Ok(ep) => ep,
            // One unreachable Marathon must not hide the others.
            Err(e) => {
                envs.insert(
                    name,
                    json!({"group": group, "commit": commit, "apps": {}, "errors": [{"message": format!("{e:#}")}]}),
                );
                continue;
            }
        };
        let mut apps = Map::new();
        for step in &ep.plan.steps {
            let live = ep.observed.apps.get(&step.id);
            let mut app = json!({"id": step.id, "sync": step.action.sync_status()});
            if let Some(c) = live.and_then(|l| l.label(crate::render::labels::COMMIT)) {
                app["liveCommit"] = Value::from(c);
            }
            if let Some(v) = live.and_then(|l| l.spec.get("version")) {
                app["version"] = v.clone();
            }
            let key = step.app.clone().unwrap_or_else(|| step.id.clone());
            apps.insert(key, app);
        }
        envs.insert(
            name,
            json!({
                "group": ep.plan.group,
                "marathon": crate::redact::url(ep.client.url()),
                "commit": commit,
                "apps": apps,
            }),
        );
    }
    Ok(json!({"environments": envs}))
}

/// Keeps the environments and the app asked for. Pure.
fn filter(mut status: Value, envs: &[String], app: Option<&str>) -> anyhow::Result<Value> {
    let all = status["environments"]
        .as_object_mut()
        .context("no environments")?;
    for want in envs {
        if !all.contains_key(want) {
            let known: Vec<&str> = all.keys().map(String::as_str).collect();
            bail!(
                "no environment `{want}` in the status; it has: {}",
                known.join(", ")
            );
        }
    }
    if !envs.is_empty() {
        all.retain(|k, _| envs.contains(k));
    }
    if let Some(app) = app {
        let mut found = false;
        for e in all.values_mut() {
            if let Some(apps) = e["apps"].as_object_mut() {
                apps.retain(|k, _| k == app);
                found |= !apps.is_empty();
            }
        }
        if !found {
            bail!("no app `{app}` in the status of the environments shown");
        }
    }
    Ok(status)
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

fn short(v: &Value) -> String {
    let s = text(v);
    s[..s.len().min(12)].to_string()
}

/// Who signed the commit an environment deploys (its `verify:` gate).
fn signed_line(v: &Value) -> Option<String> {
    let s = &v["verified"]["signer"];
    if !v.is_object() {
        return None;
    }
    let list = match v["signers"].as_str() {
        Some(l) => format!(", trust list {l}"),
        None => String::new(),
    };
    let commit = &v["verified"]["commit"];
    Some(match (s.is_object(), commit.is_string()) {
        (true, _) => format!(
            "signed: {} by {} ({}){list}",
            short(commit),
            text(&s["principal"]),
            text(&s["fingerprint"])
        ),
        // The public view (no token) names the commit, not who signed it.
        (false, true) => format!(
            "signed: {} (who signed it: with a read token)",
            short(commit)
        ),
        (false, false) => format!("signed: no verified commit yet{list}"),
    })
}

/// Text (or markdown) for people.
fn render(status: &Value, md: bool) -> String {
    let mut out = String::new();
    let empty = Map::new();
    let envs = status["environments"].as_object().unwrap_or(&empty);
    for (name, e) in envs {
        let mut head = format!("{name} ({})", text(&e["group"]));
        if !e["commit"].is_null() {
            head.push_str(&format!(" at {}", short(&e["commit"])));
        }
        if !e["lastSync"].is_null() {
            head.push_str(&format!(", last sync {}", text(&e["lastSync"])));
        }
        if md {
            out.push_str(&format!(
                "### {head}\n\n| app | id | sync | live commit | last |\n|---|---|---|---|---|\n"
            ));
        } else {
            out.push_str(&format!(
                "{head}\n  {:<20} {:<28} {:<12} {:<12} LAST\n",
                "APP", "ID", "SYNC", "LIVE COMMIT"
            ));
        }
        for (path, a) in e["apps"].as_object().unwrap_or(&empty) {
            let last = match a["last"].as_object() {
                Some(l) => {
                    let mut s = text(&l["outcome"]).to_string();
                    if let Some(d) = l.get("deploymentId").and_then(Value::as_str) {
                        s.push_str(&format!(" (deployment {d})"));
                    }
                    s
                }
                None => "-".into(),
            };
            let live = if a["liveCommit"].is_null() {
                "-".to_string()
            } else {
                short(&a["liveCommit"])
            };
            if md {
                out.push_str(&format!(
                    "| `{path}` | `{}` | {} | {live} | {last} |\n",
                    text(&a["id"]),
                    text(&a["sync"])
                ));
            } else {
                out.push_str(&format!(
                    "  {path:<20} {:<28} {:<12} {live:<12} {last}\n",
                    text(&a["id"]),
                    text(&a["sync"])
                ));
            }
            if let Some(n) = a["errorCount"].as_u64() {
                out.push_str(&format!("      {n} error(s): a token shows them\n"));
            }
            for err in a["errors"].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "      {}:{}: {}\n",
                    text(&err["file"]),
                    err["line"].as_u64().unwrap_or(0),
                    text(&err["message"])
                ));
            }
            if a["rollout"].is_object() {
                out.push_str(&rollout_line(&a["rollout"]));
            }
            if a["delivery"].is_object() {
                out.push_str(&delivery_line(&a["delivery"]));
            }
        }
        out.push_str(&plan_lines(e));
        for err in e["errors"].as_array().into_iter().flatten() {
            // The daemon's are strings; ours are {message} objects.
            let msg = err
                .as_str()
                .or_else(|| err["message"].as_str())
                .unwrap_or("-");
            out.push_str(&format!("  error: {msg}\n"));
        }
        if let Some(line) = signed_line(&e["verify"]) {
            out.push_str(&format!("  {line}\n"));
        }
        out.push('\n');
    }
    out.push_str(&endpoints(&status["endpoints"], md));
    out
}

/// The live endpoints templates follow: one line per service, and why a
/// set is held.
fn endpoints(e: &Value, md: bool) -> String {
    let empty = Map::new();
    let services = e["services"].as_object().unwrap_or(&empty);
    if services.is_empty() {
        return String::new();
    }
    let mut out = if md {
        "### live endpoints\n\n| service | tasks | state |\n|---|---|---|\n".to_string()
    } else {
        format!("live endpoints\n  {:<30} {:<6} STATE\n", "SERVICE", "TASKS")
    };
    for (id, s) in services {
        let state = match (s["held"]["reason"].as_str(), s["error"].as_str()) {
            (Some(why), _) => format!(
                "held: {why} (Marathon shows {})",
                s["pendingTasks"].as_u64().unwrap_or(0)
            ),
            (None, Some(e)) => format!("read failed: {e}"),
            (None, None) if !s["pendingTasks"].is_null() => format!(
                "waiting for quiet ({} in Marathon)",
                s["pendingTasks"].as_u64().unwrap_or(0)
            ),
            _ => "current".to_string(),
        };
        let tasks = s["tasks"].as_u64().unwrap_or(0);
        if md {
            out.push_str(&format!("| `{id}` | {tasks} | {state} |\n"));
        } else {
            out.push_str(&format!("  {id:<30} {tasks:<6} {state}\n"));
        }
    }
    for (url, up) in e["streams"].as_object().unwrap_or(&empty) {
        if up != true {
            out.push_str(&format!("  event stream of {url}: not connected\n"));
        }
    }
    out.push('\n');
    out
}

/// What applying the environment would do now (when anything), and the
/// last apply an operator asked for.
fn plan_lines(e: &Value) -> String {
    let mut out = String::new();
    let p = &e["plan"];
    let n = |k: &str| p[k].as_u64().unwrap_or(0);
    if n("creates") + n("updates") + n("deletes") + n("heals") > 0 {
        out.push_str(&format!(
            "  plan: {} to create, {} to update, {} to delete, {} to heal (plan {})\n",
            n("creates"),
            n("updates"),
            n("deletes"),
            n("heals"),
            text(&p["digest"])
        ));
    }
    let a = &e["apply"];
    if a.is_object() {
        out.push_str(&format!("  apply asked: {}", text(&a["state"])));
        if let Some(why) = a["reason"].as_str() {
            out.push_str(&format!(" ({why})"));
        }
        out.push_str(&format!(
            ", plan {} at {}\n",
            text(&a["plan"]),
            text(&a["at"])
        ));
    }
    out
}

/// A deployment touching the app: Marathon's task counts against its target.
fn rollout_line(r: &Value) -> String {
    let n = |k: &str| r[k].as_u64().unwrap_or(0);
    let ids: Vec<&str> = r["deployments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    format!(
        "      rollout: {} of {} running, {} healthy, {} staged, {} unhealthy (deployment {})\n",
        n("running"),
        n("instances"),
        n("healthy"),
        n("staged"),
        n("unhealthy"),
        ids.join(", ")
    )
}

/// An app's config delivery: its state, how many tasks hold the bundle,
/// and why it failed.
fn delivery_line(d: &Value) -> String {
    let index = d["index"].as_u64().unwrap_or(0);
    let count = d["tasks"]["count"].as_u64().unwrap_or(0);
    let holding: u64 = d["tasks"]["byIndex"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(i, _)| i.parse::<u64>().is_ok_and(|i| i >= index))
        .filter_map(|(_, n)| n.as_u64())
        .sum();
    let mut line = format!("      delivery: {} (bundle {index}", text(&d["state"]),);
    if !d["commit"].is_null() {
        line.push_str(&format!(" at {}", short(&d["commit"])));
    }
    line.push_str(&format!(
        ") since {}: {holding} of {count} tasks hold it",
        text(&d["since"])
    ));
    match d["tasks"]["unreported"].as_u64() {
        Some(n) if n > 0 => line.push_str(&format!(", {n} never reported")),
        _ => {}
    }
    line.push('\n');
    if let Some(why) = d["reason"].as_str() {
        line.push_str(&format!("        {why}\n"));
    }
    for f in d["failedFiles"].as_array().into_iter().flatten() {
        line.push_str(&format!(
            "        {} on {}: {} failed\n",
            text(&f["file"]),
            text(&f["task"]),
            text(&f["stage"])
        ));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Value {
        json!({"environments": {
            "dev": {"group": "/dev", "commit": "0123456789abcdef", "apps": {
                "web": {"id": "/dev/web", "sync": "inSync", "liveCommit": "0123456789abcdef",
                        "last": {"outcome": "succeeded", "deploymentId": "d-1"}},
                "api": {"id": "/dev/api", "sync": "outOfSync"}
            }},
            "prod": {"group": "/prod", "apps": {"web": {"id": "/prod/web", "sync": "missing"}}},
            "qa": {"group": "/qa", "apps": {}, "errors": [{"message": "reading Marathon at http://m:8080"}]}
        }})
    }

    #[test]
    fn the_signer_of_a_gated_environment_is_shown() {
        let s = json!({"environments": {"prod": {"group": "/prod", "apps": {}, "verify": {
            "mode": "head", "signers": ".pacer/allowed_signers", "basis": "anchor",
            "verified": {"commit": "0123456789abcdef", "signer": {
                "kind": "ssh", "principal": "alice@example.com", "fingerprint": "SHA256:abc"}}}}}});
        let out = render(&s, false);
        assert!(
            out.contains("signed: 0123456789ab by alice@example.com (SHA256:abc), trust list .pacer/allowed_signers"),
            "{out}"
        );
        let none = json!({"environments": {"dev": {"group": "/dev", "apps": {}}}});
        assert!(!render(&none, false).contains("signed:"));
        let public = json!({"environments": {"prod": {"group": "/prod", "apps": {}, "verify": {
            "mode": "head", "basis": "anchor", "verified": {"commit": "0123456789abcdef"}}}}});
        let out = render(&public, false);
        assert!(
            out.contains("signed: 0123456789ab (who signed it: with a read token)"),
            "{out}"
        );
    }

    #[test]
    fn status_keeps_the_environments_and_app_asked_for() {
        let v = filter(sample(), &["dev".into()], Some("web")).unwrap();
        let envs = v["environments"].as_object().unwrap();
        assert_eq!(envs.keys().collect::<Vec<_>>(), ["dev"]);
        assert_eq!(envs["dev"]["apps"].as_object().unwrap().len(), 1);
        let err = filter(sample(), &["uat".into()], None).unwrap_err();
        assert!(err.to_string().contains("no environment `uat`"), "{err}");
        assert!(filter(sample(), &[], Some("nope")).is_err());
    }

    #[test]
    fn status_text_shows_each_app_and_its_last_outcome() {
        let s = render(&sample(), false);
        assert!(s.contains("dev (/dev) at 0123456789ab"), "{s}");
        assert!(s.contains("/dev/web"), "{s}");
        assert!(s.contains("succeeded (deployment d-1)"), "{s}");
        assert!(s.contains("prod (/prod)"), "{s}");
        assert!(
            s.contains("error: reading Marathon at http://m:8080"),
            "{s}"
        );
        let md = render(&sample(), true);
        assert!(md.contains("| `web` | `/dev/web` | inSync |"), "{md}");
    }

    #[test]
    fn status_text_shows_held_endpoints_and_why() {
        let mut v = sample();
        v["endpoints"] = json!({
            "services": {
                "/dev/db": {"tasks": 2, "pendingTasks": 0,
                            "held": {"reason": "no running, healthy task left (was 2); the last good endpoints stay"}},
                "/dev/cache": {"tasks": 3}
            },
            "streams": {"http://m:8080": false}
        });
        let s = render(&v, false);
        assert!(s.contains("/dev/db"), "{s}");
        assert!(
            s.contains("held: no running, healthy task left (was 2); the last good endpoints stay (Marathon shows 0)"),
            "{s}"
        );
        assert!(
            s.contains(&format!("  {:<30} {:<6} current", "/dev/cache", 3)),
            "{s}"
        );
        assert!(
            s.contains("event stream of http://m:8080: not connected"),
            "{s}"
        );
        let md = render(&v, true);
        assert!(md.contains("| `/dev/cache` | 3 | current |"), "{md}");
        // No endpoints followed: nothing printed.
        assert!(!render(&sample(), false).contains("live endpoints"));
    }

    #[test]
    fn status_text_shows_a_rollout_the_plan_that_waits_and_the_last_apply() {
        let mut v = sample();
        v["environments"]["dev"]["apps"]["web"]["rollout"] = json!({
            "deployments": ["d-7"], "instances": 4, "staged": 1, "running": 3,
            "healthy": 2, "unhealthy": 0});
        v["environments"]["dev"]["plan"] = json!({
            "creates": 1, "updates": 2, "deletes": 0, "heals": 0, "digest": "sha256:9f0c"});
        v["environments"]["dev"]["apply"] = json!({
            "plan": "sha256:1234567890abcdef", "state": "dropped",
            "reason": "the plan changed", "at": "2026-12-04T10:00:00Z"});
        let s = render(&v, false);
        assert!(
            s.contains(
                "rollout: 3 of 4 running, 2 healthy, 1 staged, 0 unhealthy (deployment d-7)"
            ),
            "{s}"
        );
        assert!(
            s.contains("plan: 1 to create, 2 to update, 0 to delete, 0 to heal (plan sha256:9f0c)"),
            "{s}"
        );
        assert!(
            s.contains(
                "apply asked: dropped (the plan changed), plan sha256:1234567890abcdef at 2026-12-04T10:00:00Z"
            ),
            "{s}"
        );
        // Nothing to apply, nothing asked: no such lines.
        let quiet = render(&sample(), false);
        assert!(
            !quiet.contains("plan:") && !quiet.contains("apply asked"),
            "{quiet}"
        );
    }

    #[test]
    fn status_text_shows_a_delivery_and_why_it_failed() {
        let mut v = sample();
        v["environments"]["dev"]["apps"]["web"]["delivery"] = json!({
            "index": 20, "commit": "abcdef0123456789", "state": "failed",
            "since": "2026-12-03T10:05:00.000Z",
            "tasks": {"count": 2, "byIndex": {"10": 1, "20": 1}, "unreported": 0},
            "reason": "task t2: nginx.conf: its check refused the new content",
            "failedFiles": [{"task": "t2", "file": "nginx.conf", "stage": "check"}]
        });
        let s = render(&v, false);
        assert!(
            s.contains("delivery: failed (bundle 20 at abcdef012345) since 2026-12-03T10:05:00.000Z: 1 of 2 tasks hold it"),
            "{s}"
        );
        assert!(s.contains("its check refused"), "{s}");
        assert!(s.contains("nginx.conf on t2: check failed"), "{s}");
    }
}
