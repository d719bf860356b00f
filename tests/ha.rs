//! Several `pacer serve` replicas on a real ZooKeeper (`--zk`): one leader
//! writes, the others serve; a killed or stopped leader is replaced, and
//! nothing is written twice or by a replica that lost the lead.

use crate::util::harness::{Daemon, World, wait_until};
use crate::util::scenario::{push_worker, wait_deploying, wait_live, writes};
use crate::util::zk::Zk;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Short, so that a failover fits a test: a dead leader is replaced about
/// this long after its last heartbeat.
const SESSION: &str = "2";
const LIMIT: Duration = Duration::from_secs(30);

fn replica(w: &World, zk: &Zk, name: &str, envs: &str) -> Daemon {
    let url = zk.url("/pacer-test");
    w.serve_replica(
        name,
        1,
        &[
            "--zk",
            &url,
            "--zk-session-timeout",
            SESSION,
            "--replica-id",
            name,
            "--env",
            envs,
        ],
    )
}

async fn ha_of(d: &Daemon) -> Value {
    d.status().await["ha"].clone()
}

/// Until exactly one of `replicas` leads (the others follow): its index.
async fn one_leader(replicas: &[&Daemon]) -> usize {
    wait_until("exactly one leader", LIMIT, || async {
        let mut roles = Vec::new();
        for d in replicas {
            roles.push(ha_of(d).await["role"].as_str().unwrap_or("").to_string());
        }
        let leaders: Vec<usize> = (0..roles.len()).filter(|i| roles[*i] == "leader").collect();
        let others_follow = roles
            .iter()
            .filter(|r| *r != "leader")
            .all(|r| r == "follower");
        match (leaders.as_slice(), others_follow) {
            ([one], true) => Ok(*one),
            _ => Err(format!("{roles:?}")),
        }
    })
    .await
}

/// The writes Marathon took for `id` since the request log's start.
async fn writes_to(w: &World, id: &str) -> Vec<(String, String, u16)> {
    w.sim
        .requests()
        .await
        .into_iter()
        .filter(|(m, p, _)| m != "GET" && p.starts_with(&format!("/v2/apps{id}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_and_its_deployment_adopted_not_repeated() {
    let w = World::new().await;
    let zk = Zk::start();
    let mut ds = vec![
        replica(&w, &zk, "r1", "dev"),
        replica(&w, &zk, "r2", "dev"),
        replica(&w, &zk, "r3", "dev"),
    ];
    let first = one_leader(&ds.iter().collect::<Vec<_>>()).await;
    ds[first].wait_all("dev", "inSync", LIMIT).await;
    // Every replica serves the status, and says who leads.
    for (i, d) in ds.iter().enumerate() {
        let ha = ha_of(d).await;
        assert_eq!(ha["zkConnected"], true, "{ha}");
        if i != first {
            assert_eq!(d.status().await["writes"], "paused");
            let (code, ready) = d.get("/readyz").await;
            assert_eq!(
                (code, ready["role"].as_str()),
                (200, Some("follower")),
                "{ready}"
            );
        }
        assert_eq!(
            d.metric("pacer_leader").await,
            if i == first { 1.0 } else { 0.0 }
        );
    }
    let (s, _) = w.sim.delete("/_sim/requests").await;
    assert_eq!(s, 200);

    // A slow deployment, and the leader dies in the middle of it.
    let (s, v) = w
        .sim
        .put(
            "/_sim/settings",
            json!({"taskStartDelayMs": 3000, "taskHealthyDelayMs": 2000}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let c2 = push_worker(&w, "failover", "change during a failover");
    wait_deploying(&w, "/dev/worker", &c2).await;
    let killed = Instant::now();
    ds[first].proc.kill();
    let rest: Vec<&Daemon> = ds
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != first)
        .map(|(_, d)| d)
        .collect();
    let next = one_leader(&rest).await;
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(10), "failover took {took:?}");
    // The new leader adopts the running deployment: one PUT in all.
    wait_live(&w, rest[next], "/dev/worker", &c2).await;
    rest[next].wait_all("dev", "inSync", LIMIT).await;
    let puts = writes_to(&w, "/dev/worker").await;
    assert_eq!(puts.len(), 1, "{puts:?}");
    let all = writes(&w).await;
    assert_eq!(all.len(), 1, "{all:?}");
    ds.clear();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stopped_past_its_session_writes_nothing_when_it_wakes() {
    let w = World::new().await;
    let zk = Zk::start();
    // The first replica alone, so that it leads; then a second one that
    // manages staging only: once it leads, dev's changes wait.
    let old = replica(&w, &zk, "old", "dev");
    one_leader(&[&old]).await;
    old.wait_all("dev", "inSync", LIMIT).await;
    let new = replica(&w, &zk, "new", "staging");
    assert_eq!(one_leader(&[&old, &new]).await, 0);

    let pid = old.proc.pid().unwrap().to_string();
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid}");
    };
    signal("-STOP");
    assert_eq!(one_leader(&[&new]).await, 0);
    let (s, _) = w.sim.delete("/_sim/requests").await;
    assert_eq!(s, 200);
    // A dev change lands while the old leader sleeps: it would deploy it
    // the moment it wakes, if anything let it.
    let c2 = push_worker(&w, "while stopped", "a change the old leader must not send");
    signal("-CONT");
    wait_until("the old leader to know it follows", LIMIT, || async {
        let ha = ha_of(&old).await;
        if ha["role"] == "follower" && ha["zkConnected"] == true {
            Ok(())
        } else {
            Err(format!("{ha}"))
        }
    })
    .await;
    // It fetched the change and would have sent it by now: it did not.
    wait_until("the old replica to see the change", LIMIT, || async {
        let s = old.status().await;
        match s["repo"]["head"] == c2.as_str()
            && s["environments"]["dev"]["apps"]["worker"]["sync"] == "outOfSync"
        {
            true => Ok(()),
            false => Err(format!("{s:#}")),
        }
    })
    .await;
    crate::util::scenario::wait_cycles(&old, 2.0).await;
    let sent = writes(&w).await;
    assert!(sent.is_empty(), "{sent:?}\n{}", old.proc.log_tail());
}
