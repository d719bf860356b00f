//! The reconcile loop's writes can be paused and resumed (as a replica
//! that loses and regains leadership will) while the HTTP side keeps
//! serving what the daemon publishes. In-process: `cli::serve::start` with
//! a real git daemon and the simulator binary.

use crate::util::harness::{World, wait_until};
use pacer::cli::serve;
use pacer::reconcile::daemon::Config;
use pacer::source::remote::{GitAuth, RemoteSpec};
use serde_json::Value;
use std::time::Duration;

fn config(w: &World) -> Config {
    Config {
        remote: RemoteSpec {
            url: w.git.url(),
            branch: "main".into(),
            auth: GitAuth::None,
            ca_file: None,
            known_hosts: None,
        },
        prefix: String::new(),
        workdir: w.scratch.path().join("mirror"),
        listen: "127.0.0.1:0".parse().unwrap(),
        listener: None,
        poll: Duration::from_millis(500),
        envs: Some(["dev".to_string()].into()),
        marathon_url: Some(w.sim.url.clone()),
        marathon_user: None,
        marathon_password: None,
        marathon_token: None,
        marathon_timeout: Duration::from_secs(10),
        marathon_events: false,
        apply: pacer::apply::Options {
            deploy_timeout: Duration::from_secs(60),
            poll: Duration::from_millis(50),
            ..pacer::apply::Options::default()
        },
        webhook_secret: None,
        allow_rewind: false,
        records: pacer::record::notes::Publish::Off,
        render_timeout: Duration::from_secs(60),
        http: pacer::listen::Limits::default(),
        allowed_hosts: Vec::new(),
        endpoints: Default::default(),
        endpoints_resync: Duration::from_secs(30),
        state_dir: None,
        verify_signers: None,
        zk: None,
        secret_keys: crate::util::demo_keys(),
    }
}

async fn status(url: &str) -> Result<Value, String> {
    let resp = reqwest::get(format!("{url}/api/v1/status"))
        .await
        .map_err(|e| e.to_string())?;
    if resp.status() != 200 {
        return Err(format!("status answered {}", resp.status()));
    }
    resp.json().await.map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_writer_sends_nothing_and_resuming_deploys_what_waited() {
    let w = World::new().await;
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let started = serve::start(config(&w), async move {
        let _ = stop_rx.changed().await;
    })
    .await
    .expect("the daemon starts");
    let url = format!("http://{}", started.addr);
    let reader = started.reader.clone();
    wait_until("every dev app inSync", Duration::from_secs(30), || async {
        let s = reader.latest();
        let dev = s.status.environments.get("dev");
        let synced = dev.is_some_and(|e| {
            !e.apps.is_empty()
                && e.apps
                    .values()
                    .all(|a| a.sync == pacer::model::SyncStatus::InSync)
        });
        // The desired state is published alongside, at the same commit.
        if synced && s.desired.get("dev").is_some_and(|d| !d.apps.is_empty()) {
            Ok(())
        } else {
            Err(format!("{:#?}", s.status))
        }
    })
    .await;

    started.writer.pause();
    let puts_before = w.sim.accepted_puts("/dev/worker").await;
    w.git.repo.edit(
        "apps/worker/env/dev.yaml",
        "marathon:\n  instances: 1",
        "marathon:\n  instances: 2",
    );
    let commit = w.git.commit_push("dev worker: two instances");

    // The HTTP side goes on serving: the new commit is picked up and the
    // change shows as pending.
    let seen = wait_until(
        "the change to show as pending",
        Duration::from_secs(30),
        || async {
            let s = status(&url).await?;
            let worker = &s["environments"]["dev"]["apps"]["worker"];
            if s["repo"]["lastGood"] == commit.as_str()
                && worker["sync"] == "outOfSync"
                && s["writes"] == "paused"
            {
                Ok(s)
            } else {
                Err(format!("{s:#}"))
            }
        },
    )
    .await;
    assert_eq!(
        reader.latest().commit.as_deref(),
        Some(commit.as_str()),
        "{seen:#}"
    );
    // A second cycle at that commit, still paused: nothing sent.
    let mut r = started.reader.clone();
    for _ in 0..2 {
        tokio::time::timeout(Duration::from_secs(10), r.changed())
            .await
            .expect("the loop goes on publishing while paused");
    }
    assert_eq!(w.sim.accepted_puts("/dev/worker").await, puts_before);
    let app = w.sim.app("/dev/worker").await.expect("worker runs");
    assert_eq!(app["instances"], 1, "{app:#}");

    started.writer.resume();
    wait_until(
        "the worker deployed at two instances",
        Duration::from_secs(30),
        || async {
            let app = w
                .sim
                .app("/dev/worker")
                .await
                .ok_or_else(|| "no worker".to_string())?;
            let s = status(&url).await?;
            let worker = &s["environments"]["dev"]["apps"]["worker"];
            if app["instances"] == 2 && worker["sync"] == "inSync" && s["writes"] == "active" {
                Ok(())
            } else {
                Err(format!("{app:#}\n{s:#}"))
            }
        },
    )
    .await;
    assert!(w.sim.accepted_puts("/dev/worker").await > puts_before);

    let _ = stop_tx.send(true);
    tokio::time::timeout(Duration::from_secs(20), started.task)
        .await
        .expect("the daemon stops")
        .expect("the daemon task")
        .expect("the daemon ran");
}
