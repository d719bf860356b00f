//! The dashboard over HTTP, with the real binaries: what each level of
//! caller sees, sessions, the plan apply it offers (only with the admin
//! token, only at the reviewed commit, never cross-site), the live event
//! stream, and sealed secrets kept off every page. The browser's view is
//! `dashboard_browser.rs`.

use crate::util::harness::{ADMIN_TOKEN, Daemon, READ_TOKEN, World, wait_until};
use serde_json::{Value, json};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

/// The plaintexts of prod's sealed secrets (see `sealed_e2e.rs`).
const PLAINTEXTS: [&str; 2] = ["prod-placeholder-use-encrypted-secrets", "9f8e7d6c5b4a"];

/// `pacer serve` on dev (applies on its own) and prod (waits for a human),
/// each deployment within `deploy_timeout` seconds, once dev is in sync
/// and prod planned.
pub async fn dev_and_prod(w: &World, deploy_timeout: u64) -> Daemon {
    let mut args = w.serve_args(&w.git.url(), &w.sim.url, 1, deploy_timeout, "mirror");
    args.extend(["--env", "dev", "--env", "prod"].map(String::from));
    let d = Daemon::start(w.scratch.path(), &args);
    d.wait_all("dev", "inSync", LIMIT).await;
    wait_until("prod planned", LIMIT, || async {
        let s = d.status().await;
        match s["environments"]["prod"]["apps"]["api"]["sync"].as_str() {
            Some("missing") => Ok(()),
            _ => Err(format!("{s:#}")),
        }
    })
    .await;
    d
}

/// A GET as the page's script sends it, with `session` as its bearer:
/// status, headers, body.
async fn page(
    d: &Daemon,
    path: &str,
    session: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut rb = reqwest::Client::new().get(format!("{}{path}", d.url));
    if let Some(s) = session {
        rb = rb.bearer_auth(s);
    }
    let r = rb.send().await.expect("GET");
    let (s, h) = (r.status().as_u16(), r.headers().clone());
    (s, h, r.text().await.unwrap_or_default())
}

/// Signs in with `token` as the sign-in page does: the session.
async fn sign_in(d: &Daemon, token: &str) -> Result<String, (u16, Value)> {
    let r = reqwest::Client::new()
        .post(format!("{}/ui/session", d.url))
        .header("Origin", &d.url)
        .json(&json!({ "token": token }))
        .send()
        .await
        .expect("POST /ui/session");
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    match (status, v["session"].as_str()) {
        (200, Some(s)) => Ok(s.to_string()),
        _ => Err((status, v)),
    }
}

/// `POST /api/v1/apply` with `auth` (a bearer token or a cookie) and
/// `origin`.
async fn apply(
    d: &Daemon,
    auth: &[(&str, String)],
    origin: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut rb = reqwest::Client::new()
        .post(format!("{}/api/v1/apply", d.url))
        .header("Content-Type", "application/json")
        .body(body.to_string());
    for (k, v) in auth {
        rb = rb.header(*k, v);
    }
    if let Some(o) = origin {
        rb = rb.header("Origin", o);
    }
    let r = rb.send().await.expect("POST /api/v1/apply");
    let s = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (
        s,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_caller_sees_its_level_and_only_an_admin_applies_the_reviewed_plan() {
    let w = World::new().await;
    let d = dev_and_prod(&w, 30).await;
    let s = d.status().await;
    let prod_plan = s["environments"]["prod"]["plan"]["digest"]
        .as_str()
        .unwrap_or_else(|| panic!("prod's plan in the status: {s:#}"))
        .to_string();
    let prod_commit = s["environments"]["prod"]["commit"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(s["environments"]["prod"]["plan"]["creates"], 4, "{s:#}");
    // `pacer status` shows the same plan waiting.
    let out = crate::util::pacer(&["status", "--daemon", &d.url, "--env", "prod"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains(&format!(
            "plan: 4 to create, 0 to update, 0 to delete, 0 to heal (plan {prod_plan})"
        )),
        "{out:?}"
    );

    // Anyone: every environment, what waits for a human, under a strict
    // content policy; no action and nothing quoted from the config.
    let (s, h, body) = page(&d, "/", None).await;
    assert_eq!(s, 200, "{body}");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    for want in [
        "data-env=\"dev\"",
        "data-env=\"prod\"",
        "waits for an apply",
        "public view",
    ] {
        assert!(body.contains(want), "{want} missing from:\n{body}");
    }
    assert!(!body.contains("data-action=\"apply\""), "{body}");
    let (s, _, body) = page(&d, "/ui/app?env=prod&app=api", None).await;
    assert_eq!(s, 200, "{body}");
    assert!(
        body.contains("Sign in with the read or admin token"),
        "{body}"
    );
    assert!(
        !body.contains("Git&#x27;s definition") && !body.contains("Git's definition"),
        "{body}"
    );

    // The list pages on the server: prod's four apps wait for an apply.
    let (s, v) = d.get("/api/v1/apps?env=prod&status=pending&per=3").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["total"].as_u64(), v["pages"].as_u64()),
        (Some(4), Some(2)),
        "{v:#}"
    );
    assert_eq!(v["rows"].as_array().unwrap().len(), 3);
    let (s, v) = d.get("/api/v1/apps?per=0").await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("per"), "{v}");

    // Sessions: a wrong token signs in nobody; a forged session is refused.
    let (s, v) = sign_in(&d, "not-a-token-of-this-daemon").await.unwrap_err();
    assert_eq!(s, 401, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("not a token this daemon knows"),
        "{v}"
    );
    let read = sign_in(&d, READ_TOKEN).await.unwrap();
    let admin = sign_in(&d, ADMIN_TOKEN).await.unwrap();
    assert!(!read.contains(READ_TOKEN) && !admin.contains(ADMIN_TOKEN));
    let forged = admin.replacen("v1.a.", "v1.r.", 1);
    let (s, _, body) = page(&d, "/", Some(&forged)).await;
    assert_eq!(s, 401, "{body}");
    assert!(body.contains("sign in again"), "{body}");
    let (_, h, body) = page(&d, "/", Some(&read)).await;
    assert_eq!(h["x-pacer-level"], "read");
    assert!(!body.contains("data-action=\"apply\""), "{body}");
    let (_, h, body) = page(&d, "/", Some(&admin)).await;
    assert_eq!(h["x-pacer-level"], "admin");
    assert!(
        body.contains(&format!("data-plan=\"{prod_plan}\"")),
        "{body}"
    );
    // Signing in is same-origin JSON only.
    let r = reqwest::Client::new()
        .post(format!("{}/ui/session", d.url))
        .header("Origin", "http://evil.example")
        .json(&json!({ "token": ADMIN_TOKEN }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // A read session sees the definition, with the secrets as placeholders.
    let (_, _, body) = page(&d, "/ui/app?env=prod&app=api", Some(&read)).await;
    assert!(body.contains("Git's definition"), "{body}");
    for p in PLAINTEXTS {
        assert!(!body.contains(p), "a secret on the app page:\n{body}");
    }

    // Every refusal changes nothing in Marathon.
    let good = json!({"env": "prod", "plan": prod_plan});
    let (s, v) = apply(&d, &[], None, good.clone()).await;
    assert_eq!(s, 401, "{v}");
    let bearer = |t: &str| ("Authorization", format!("Bearer {t}"));
    let (s, v) = apply(&d, &[bearer(READ_TOKEN)], None, good.clone()).await;
    assert_eq!(s, 403, "{v}");
    let (s, v) = apply(&d, &[bearer(&read)], Some(&d.url), good.clone()).await;
    assert_eq!(s, 403, "a read session may not write: {v}");
    let stale = json!({"env": "prod", "plan": "sha256:0"});
    let (s, v) = apply(&d, &[bearer(ADMIN_TOKEN)], None, stale).await;
    assert_eq!(s, 409, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("review it again"),
        "{v}"
    );
    let (s, v) = apply(
        &d,
        &[bearer(ADMIN_TOKEN)],
        None,
        json!({"env": "dev", "plan": prod_plan}),
    )
    .await;
    assert_eq!(s, 409, "dev applies on its own: {v}");
    // Not from another site's page either, session or not.
    let evil = Some("http://evil.example");
    let (s, v) = apply(&d, &[bearer(&admin)], evil, good.clone()).await;
    assert_eq!(s, 403, "{v}");
    assert!(
        w.sim.app("/prod/api").await.is_none(),
        "a refused apply deployed"
    );

    // The admin's session from the dashboard's own page applies prod.
    let (s, v) = apply(&d, &[bearer(&admin)], Some(&d.url), good).await;
    assert_eq!(s, 202, "{v}");
    d.wait_all("prod", "inSync", Duration::from_secs(60)).await;
    let s = d.status().await;
    assert_eq!(
        s["environments"]["prod"]["apply"]["state"], "applied",
        "{s:#}"
    );
    let (_, _, body) = page(&d, "/", Some(&admin)).await;
    assert!(!body.contains("class=\"awaiting\""), "{body}");
    // Recorded as any deployment is, on the commit that was reviewed.
    wait_until("prod's records on the reviewed commit", LIMIT, || async {
        let r = w.git.records(&prod_commit);
        match r
            .iter()
            .any(|x| x["env"] == "prod" && x["outcome"] == "succeeded")
        {
            true => Ok(()),
            false => Err(format!("{r:#?}")),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_tells_a_page_of_each_change() {
    let w = World::new().await;
    let d = w.serve(1, 30, &[]);
    d.wait_all("dev", "inSync", LIMIT).await;
    let r = reqwest::get(format!("{}/ui/events", d.url)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut events = Events {
        body: Box::pin(r.bytes_stream()),
        text: String::new(),
    };
    let first = events.next_seq().await;
    assert!(first > 0);
    let commit = crate::util::scenario::push_worker(&w, "live", "dev worker: seen live");
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let seq = events.next_seq().await;
        assert!(seq > first, "events go forward: {seq} after {first}");
        let s = d.status().await;
        if s["environments"]["dev"]["commit"] == commit.as_str() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{s:#}");
    }
}

type Body = std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// An event stream read as far as asked.
struct Events {
    body: Body,
    text: String,
}

impl Events {
    /// The next `changed` event's snapshot number.
    async fn next_seq(&mut self) -> u64 {
        use futures::StreamExt;
        loop {
            if let Some(at) = self.text.find("event: changed\ndata: ") {
                let rest = &self.text[at + 21..];
                if let Some(end) = rest.find('\n') {
                    let n = rest[..end].parse().unwrap();
                    self.text = rest[end..].to_string();
                    return n;
                }
            }
            let chunk = tokio::time::timeout(LIMIT, self.body.next())
                .await
                .expect("an event within the limit")
                .expect("the stream goes on")
                .unwrap();
            self.text.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}
