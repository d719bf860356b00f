//! `pacer serve` against hostile requests, with the real binaries: webhooks
//! tampered, unsigned, oversized or flooding; the operator API without its
//! token or with the read one; a task asking for files outside its bundle;
//! a repo value forging a header through a Marathon label. Each is refused
//! and changes nothing: Marathon's apps (in the simulator) and the daemon's
//! status are compared before and after, and a control request that must
//! pass shows the refusal was the guard's doing.

use crate::delivery::{Agent, DB_PASSWORD, tasks};
use crate::util::harness::{
    ADMIN_TOKEN, Daemon, READ_TOKEN, SECRET, World, metric_value, wait_until,
};
use crate::util::pacer;
use serde_json::{Value, json};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

fn sign(body: &[u8], key: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A GitHub push delivery of `body` with `signature` (or none).
async fn hook(d: &Daemon, body: Vec<u8>, signature: Option<String>) -> (u16, Value, String) {
    let mut rb = reqwest::Client::new()
        .post(format!("{}/hooks/git", d.url))
        .header("X-GitHub-Event", "push")
        .header("X-GitHub-Delivery", "security-e2e")
        .header("Content-Type", "application/json");
    if let Some(sig) = signature {
        rb = rb.header("X-Hub-Signature-256", sig);
    }
    let resp = rb.body(body).send().await.expect("POST /hooks/git");
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = resp.text().await.unwrap_or_default();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v, retry_after)
}

fn push(commit: &str) -> Vec<u8> {
    json!({"ref": "refs/heads/main", "after": commit})
        .to_string()
        .into_bytes()
}

/// What Marathon runs of dev, as the simulator has it: id → the fields a
/// deployment would change.
async fn marathon_dev(w: &World) -> Value {
    let mut out = serde_json::Map::new();
    for id in ["/dev/api", "/dev/web", "/dev/worker"] {
        let app = w.sim.app(id).await.unwrap_or_default();
        out.insert(
            id.into(),
            json!({"version": app["version"], "instances": app["instances"],
                   "labels": app["labels"], "env": app["env"]}),
        );
    }
    Value::Object(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_unsigned_and_oversized_webhooks_are_refused_and_change_nothing() {
    let w = World::new().await;
    // A long poll: only a webhook can make the daemon fetch.
    let d = w.serve(3600, 60, &["--webhook-max-body", "65536"]);
    let before = d.wait_all("dev", "inSync", LIMIT).await;
    let marathon_before = marathon_dev(&w).await;
    w.git
        .repo
        .edit("apps/worker/env/dev.yaml", "instances: 1", "instances: 3");
    let commit = w.git.commit_push("worker: three");

    // Tampered: signed for one body, another sent.
    let signed_for = push("1111111111111111111111111111111111111111");
    let (s, v, _) = hook(&d, push(&commit), Some(sign(&signed_for, SECRET))).await;
    assert_eq!(s, 401, "tampered: {v}");
    // Signed with another key.
    let (s, v, _) = hook(&d, push(&commit), Some(sign(&push(&commit), "guess"))).await;
    assert_eq!(s, 401, "wrong key: {v}");
    // No signature at all.
    let (s, v, _) = hook(&d, push(&commit), None).await;
    assert_eq!(s, 401, "unsigned: {v}");
    assert!(
        v["reason"].as_str().unwrap_or("").contains("missing"),
        "{v}"
    );
    // Over the limit, though properly signed: refused before it is read whole.
    let mut big = push(&commit);
    big.truncate(big.len() - 1);
    big.extend_from_slice(format!(",\"pad\":\"{}\"}}", "x".repeat(70_000)).as_bytes());
    let sig = sign(&big, SECRET);
    let (s, v, _) = hook(&d, big, Some(sig)).await;
    assert_eq!(s, 413, "oversized: {v}");
    let why = v["error"].as_str().unwrap_or("");
    assert!(
        why.contains("65536 bytes") && why.contains("--webhook-max-body"),
        "{v}"
    );

    // None of them reached the loop: an accepted delivery is counted
    // before its run is queued, and the head and Marathon are as they were.
    let accepted = d
        .metric("pacer_webhooks_total{decision=\"accepted\",provider=\"github\"}")
        .await;
    assert_eq!(accepted, 0.0, "{}", d.metrics().await);
    let rejected = d
        .metric("pacer_webhooks_total{decision=\"rejected\",provider=\"github\"}")
        .await;
    assert_eq!(rejected, 3.0);
    assert_eq!(
        d.metric("pacer_api_refusals_total{route=\"webhook\",reason=\"tooLarge\"}")
            .await,
        1.0
    );
    assert_eq!(d.status().await["repo"]["head"], before["repo"]["head"]);
    assert_eq!(marathon_dev(&w).await, marathon_before);

    // The control: the same push, signed, is taken at once.
    let (s, v, _) = hook(&d, push(&commit), Some(sign(&push(&commit), SECRET))).await;
    assert_eq!(s, 202, "{v}");
    wait_until("the signed push deployed", LIMIT, || async {
        let app = w.sim.app("/dev/worker").await.unwrap_or_default();
        if app["instances"] == 3 {
            Ok(())
        } else {
            Err(format!("{app:#}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_over_their_rate_get_429_then_pass_again() {
    let w = World::new().await;
    let d = w.serve(3600, 60, &["--webhook-burst", "3", "--webhook-rate", "1"]);
    d.wait_all("dev", "inSync", LIMIT).await;
    // A push to another branch: authenticated, ignored, no run.
    let body = json!({"ref": "refs/heads/other", "after": "2".repeat(40)}).to_string();
    let signed = || Some(sign(body.as_bytes(), SECRET));
    for _ in 0..3 {
        let (s, v, _) = hook(&d, body.clone().into_bytes(), signed()).await;
        assert_eq!(s, 202, "{v}");
    }
    let (s, v, retry_after) = hook(&d, body.clone().into_bytes(), signed()).await;
    assert_eq!(s, 429, "{v}");
    assert_eq!(v["reason"], "rateLimited", "{v}");
    assert_eq!(retry_after, "1");
    // Limited before anything is checked: an unsigned flood costs no HMAC.
    let (s, _, _) = hook(&d, body.clone().into_bytes(), None).await;
    assert_eq!(s, 429);
    wait_until(
        "a webhook passes again",
        Duration::from_secs(10),
        || async {
            match hook(&d, body.clone().into_bytes(), signed()).await {
                (202, _, _) => Ok(()),
                (s, v, _) => Err(format!("{s} {v}")),
            }
        },
    )
    .await;
    assert!(
        d.metric("pacer_api_refusals_total{route=\"webhook\",reason=\"rateLimited\"}")
            .await
            >= 2.0
    );
    // Health and the status are not rate-limited.
    assert_eq!(d.get("/healthz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_api_needs_its_tokens() {
    let w = World::new().await;
    let d = w.serve(3600, 60, &[]);
    d.wait_all("dev", "inSync", LIMIT).await;
    let retry = "/api/v1/retry?env=dev&app=worker";

    let (s, v) = d.post_as(retry, None).await;
    assert_eq!(
        (s, v["reason"].as_str()),
        (401, Some("missingToken")),
        "{v}"
    );
    let (s, v) = d
        .post_as(retry, Some("e2e-a-token-this-daemon-never-had"))
        .await;
    assert_eq!((s, v["reason"].as_str()), (401, Some("badToken")), "{v}");
    let (s, v) = d.post_as(retry, Some(READ_TOKEN)).await;
    assert_eq!(
        (s, v["reason"].as_str()),
        (403, Some("readOnlyToken")),
        "{v}"
    );
    let (s, v) = d.post_as(retry, Some(ADMIN_TOKEN)).await;
    assert_eq!(s, 202, "{v}");
    let metrics = d.metrics().await;
    for (reason, n) in [
        ("missingToken", 1.0),
        ("badToken", 1.0),
        ("readOnlyToken", 1.0),
    ] {
        let series = format!("pacer_api_refusals_total{{route=\"api\",reason=\"{reason}\"}}");
        assert_eq!(metric_value(&metrics, &series), n, "{metrics}");
    }

    // Without a token the status is the public view: states, no messages.
    let (s, public) = d.get_as("/api/v1/status", None).await;
    assert_eq!(s, 200);
    assert_eq!(public["redacted"], true, "{public}");
    assert_eq!(
        public["environments"]["dev"]["apps"]["worker"]["sync"],
        "inSync"
    );
    assert!(public["repo"].get("url").is_none(), "{public}");
    let (s, full) = d.get_as("/api/v1/status", Some(READ_TOKEN)).await;
    assert_eq!(s, 200);
    assert!(full["repo"]["url"].is_string(), "{full}");
    assert!(full.get("redacted").is_none());
    // The CLI sends its token from PACER_TOKEN; a wrong one is an error.
    let run = |token: &str| {
        let out = std::process::Command::new(crate::util::PACER)
            .args(["status", "--daemon", &d.url, "--format", "json"])
            .env("PACER_TOKEN", token)
            .output()
            .expect("pacer status");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, out, err) = run(READ_TOKEN);
    assert_eq!(code, Some(0), "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(v["repo"]["url"].is_string(), "{v}");
    let (code, out, err) = run("e2e-a-token-this-daemon-never-had");
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("refused the token"), "{err}");
    assert!(!err.contains("never-had"), "{err}");
    // Health and metrics stay open.
    assert_eq!(d.get_as("/healthz", None).await.0, 200);
    assert_eq!(d.get_as("/readyz", None).await.0, 200);
    let text = reqwest::get(format!("{}/metrics", d.url)).await.unwrap();
    assert_eq!(text.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_secret_or_an_admin_token_webhooks_and_writes_are_off() {
    let w = World::new().await;
    let mut args = w.serve_args(&w.git.url(), &w.sim.url, 3600, 60, "mirror");
    let secret = args.iter().position(|a| a == "--webhook-secret").unwrap();
    args.drain(secret..secret + 2);
    args.extend(["--env", "dev"].map(String::from));
    // A read token only: no admin token, no webhook secret.
    let env = [("PACER_READ_TOKEN", READ_TOKEN)];
    let d = Daemon::start_env(w.scratch.path(), &args, &env, Some(READ_TOKEN));
    let status = d.wait_all("dev", "inSync", LIMIT).await;
    assert_eq!(status["webhooks"], "off", "{status}");
    let log = std::fs::read_to_string(&d.proc.log).unwrap();
    assert_eq!(log.matches("webhooks are off").count(), 1, "{log}");
    assert!(log.contains("--admin-token-file"), "{log}");
    assert!(!log.contains(READ_TOKEN), "a token in the log");

    let commit = w.git.commit_push("nothing changes");
    // Signed with what a forge might hold: still refused, nothing to check with.
    let (s, v, _) = hook(&d, push(&commit), Some(sign(&push(&commit), SECRET))).await;
    assert_eq!(s, 401, "{v}");
    assert!(
        v["reason"].as_str().unwrap().contains("webhooks are off"),
        "{v}"
    );
    // Writes are refused, not open, whatever is sent, naming the flag.
    for token in [None, Some(READ_TOKEN), Some(ADMIN_TOKEN)] {
        let (s, v) = d.post_as("/api/v1/retry", token).await;
        assert_eq!(
            (s, v["reason"].as_str()),
            (403, Some("writesDisabled")),
            "{v}"
        );
        assert!(
            v["error"].as_str().unwrap().contains("--admin-token-file"),
            "{v}"
        );
    }
    assert_ne!(d.status().await["repo"]["head"], commit.as_str());
}

/// A file name that climbs out of the bundle, as a task's agent could send
/// it, on a raw connection (a client library would normalise the `..`).
async fn raw_get(from: &str, base: &str, path: &str, token: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(addr).await.expect("connect");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut resp))
        .await
        .expect("an answer within 20s")
        .unwrap();
    let text = String::from_utf8_lossy(&resp).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_name_that_climbs_out_of_the_bundle_is_refused() {
    let w = crate::delivery::world().await;
    let d = crate::delivery::serve(&w, &[]);
    d.wait_all("dev", "inSync", LIMIT).await;
    let web = tasks(&w, "/dev/web", 1).await;
    let (task, host) = &web[0];
    let token = Agent::on(host, &d).token(task, "/dev/web").await;
    // The control: web's own file.
    let (s, text) = raw_get(host, &d.url, "/v1/config/files/nginx.conf", &token).await;
    assert_eq!(s, 200, "{text}");
    let marathon_before = marathon_dev(&w).await;
    for path in [
        "/v1/config/files/..%2F..%2Fetc%2Fpasswd",
        "/v1/config/files/../../etc/passwd",
        "/v1/config/files/%2e%2e/%2e%2e/etc/passwd",
        "/v1/config/files/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/v1/config/files/..%252F..%252Fetc%252Fpasswd",
        "/v1/config/files/..%5C..%5Cetc%5Cpasswd",
        "/v1/config/files/%2Fetc%2Fpasswd",
        "/v1/config/files//etc/passwd",
        "/v1/config/files/nginx.conf%00.txt",
        "/v1/config/files/nginx.conf/../../api/application.yaml",
        // Another app's file (the api's holds its database password).
        "/v1/config/files/application.yaml",
        "/v1/config/files/..%2Fapi%2Fapplication.yaml",
    ] {
        let (s, text) = raw_get(host, &d.url, path, &token).await;
        assert!(matches!(s, 400 | 404), "{path}: answered {s}\n{text}");
        assert!(!text.contains("root:"), "{path}: {text}");
        assert!(!text.contains(DB_PASSWORD), "{path}: {text}");
    }
    assert_eq!(marathon_dev(&w).await, marathon_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_forging_a_header_through_a_label_is_refused_and_nothing_changes() {
    let w = World::new().await;
    let d = w.serve(3600, 60, &[]);
    let before = d.wait_all("dev", "inSync", LIMIT).await;
    let web_before = w.sim.app("/dev/web").await.expect("web runs");
    let puts_before = w.sim.accepted_puts("/dev/web").await;
    // web renders `HAPROXY_0_VHOST: "www.{{ values.domain }}"`.
    w.git.repo.edit(
        "apps/web/env/dev.yaml",
        "values:\n",
        "values:\n  domain: \"dev.example.com\\r\\nX-Injected: yes\"\n",
    );
    let commit = w.git.commit_push("web: a domain with a header in it");
    let (s, v) = d.github_push(&commit, SECRET).await;
    assert_eq!(s, 202, "{v}");
    let status = wait_until("web refused at the new commit", LIMIT, || async {
        let s = d.status().await;
        let web = &s["environments"]["dev"]["apps"]["web"];
        if s["repo"]["head"] == commit.as_str() && web["sync"] == "invalid" {
            Ok(s)
        } else {
            Err(format!("{s:#}\n--- daemon log\n{}", d.proc.log_tail()))
        }
    })
    .await;
    let web = &status["environments"]["dev"]["apps"]["web"];
    let error = web["errors"][0].clone();
    assert_eq!(error["file"], "apps/web/app.yaml", "{web:#}");
    let message = error["message"].as_str().unwrap_or("");
    assert!(message.contains("HAPROXY_0_VHOST"), "{web:#}");
    assert!(
        !message.contains("X-Injected"),
        "the value is never quoted: {web:#}"
    );
    // Marathon's web is the one from before, label and all.
    let web_after = w.sim.app("/dev/web").await.expect("web runs");
    assert_eq!(web_after["version"], web_before["version"]);
    assert_eq!(web_after["labels"], web_before["labels"]);
    assert_eq!(
        web_after["labels"]["HAPROXY_0_VHOST"],
        "www.dev.example.com"
    );
    assert_eq!(w.sim.accepted_puts("/dev/web").await, puts_before);
    // web stays at the last good commit.
    assert_eq!(web["liveCommit"], before["repo"]["head"]);
    // `pacer validate` says the same in CI.
    let run = pacer(&["validate", "--repo", w.git.repo.path_str(), "--env", "dev"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains("HAPROXY_0_VHOST") || run.stderr.contains("HAPROXY_0_VHOST"),
        "{run:?}"
    );
}

#[test]
fn a_bad_token_setting_is_a_usage_error_that_never_quotes_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short");
    std::fs::write(&short, "hunter2\n").unwrap();
    let missing = dir.path().join("missing");
    for file in [&short, &missing] {
        let run = pacer(&[
            "serve",
            "--repo-url",
            "file:///nonexistent",
            "--listen",
            "127.0.0.1:0",
            "--admin-token-file",
            file.to_str().unwrap(),
        ]);
        assert_eq!(run.code, 1, "{run:?}");
        assert!(!run.stdout.contains("listening"), "{run:?}");
        assert!(!run.stderr.contains("hunter2"), "{run:?}");
    }
}
