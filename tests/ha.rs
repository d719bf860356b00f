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
    replica_on(w, &zk.url("/pacer-test"), name, envs, 1)
}

/// A replica named `name` on the ZooKeeper at `url`, serving `envs`,
/// polling every `poll` seconds.
fn replica_on(w: &World, url: &str, name: &str, envs: &str, poll: u64) -> Daemon {
    w.serve_replica(
        name,
        poll,
        &[
            "--zk",
            url,
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
            // Ready: a follower serves (status, config server) as the
            // leader does.
            wait_until("a follower to be ready", LIMIT, || async {
                let (code, ready) = d.get("/readyz").await;
                match (code, ready["role"].as_str()) {
                    (200, Some("follower")) => Ok(()),
                    _ => Err(format!("{code} {ready}")),
                }
            })
            .await;
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
    // The new leader brings staging in (nobody managed it before).
    new.wait_all("staging", "inSync", LIMIT).await;
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
    let sent: Vec<_> = writes(&w)
        .await
        .into_iter()
        .filter(|(_, p, _)| p.starts_with("/v2/apps/dev"))
        .collect();
    assert!(sent.is_empty(), "{sent:?}\n{}", old.proc.log_tail());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_id_logs_in_once_across_replicas() {
    use crate::delivery::{Agent, reason, tasks};
    let w = crate::delivery::world().await;
    let zk = Zk::start();
    let r1 = replica(&w, &zk, "r1", "dev");
    let r2 = replica(&w, &zk, "r2", "dev");
    let leader = one_leader(&[&r1, &r2]).await;
    [&r1, &r2][leader].wait_all("dev", "inSync", LIMIT).await;
    r1.wait_all("dev", "inSync", LIMIT).await;
    r2.wait_all("dev", "inSync", LIMIT).await;
    let api = tasks(&w, "/dev/api", 2).await;
    let (task, host) = api[0].clone();
    let first = Agent::on(&host, &r1).login(&task, "/dev/api").await;
    assert_eq!(first.0, 200, "{}", first.1);
    // The same id on the other replica: a replay.
    let (s, v) = Agent::on(&host, &r2).login(&task, "/dev/api").await;
    assert_eq!((s, reason(&v)), (403, "replay"), "{v}");
    // Another task of the app logs in on the second replica, then not on
    // the first.
    let (task2, host2) = api[1].clone();
    let (s, v) = Agent::on(&host2, &r2).login(&task2, "/dev/api").await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = Agent::on(&host2, &r1).login(&task2, "/dev/api").await;
    assert_eq!((s, reason(&v)), (403, "replay"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_zookeeper_nothing_is_written_and_everything_else_goes_on() {
    use crate::delivery::{Agent, tasks};
    let w = crate::delivery::world().await;
    let mut zk = Zk::start();
    let r1 = replica(&w, &zk, "r1", "dev");
    let r2 = replica(&w, &zk, "r2", "dev");
    let leader = one_leader(&[&r1, &r2]).await;
    let rs = [&r1, &r2];
    rs[leader].wait_all("dev", "inSync", LIMIT).await;
    let api = tasks(&w, "/dev/api", 2).await;
    let (s, _) = w.sim.delete("/_sim/requests").await;
    assert_eq!(s, 200);

    zk.stop();
    let stopped = Instant::now();
    for d in rs {
        wait_until("writes to stop without ZooKeeper", LIMIT, || async {
            let s = d.status().await;
            match (s["ha"]["zkConnected"] == false, s["writes"] == "paused") {
                (true, true) => Ok(()),
                _ => Err(format!("{}", s["ha"])),
            }
        })
        .await;
        assert_eq!(d.metric("pacer_zk_connected").await, 0.0);
        assert_eq!(d.metric("pacer_leader").await, 0.0);
    }
    // A change arrives: both replicas see it, neither sends it.
    let c2 = push_worker(&w, "no zookeeper", "a change during the outage");
    for d in rs {
        wait_until("the change to be seen", LIMIT, || async {
            let s = d.status().await;
            match s["repo"]["head"] == c2.as_str()
                && s["environments"]["dev"]["apps"]["worker"]["sync"] == "outOfSync"
            {
                true => Ok(()),
                false => Err(format!("{s:#}")),
            }
        })
        .await;
    }
    // Logins (checked against the replica's own record) and reads go on.
    let (task, host) = api[0].clone();
    let agent = Agent::on(&host, &r2);
    let token = agent.token(&task, "/dev/api").await;
    let (s, v) = agent.get("/v1/config", &token).await;
    assert_eq!(s, 200, "{v}");
    crate::util::scenario::wait_cycles(&r1, 2.0).await;
    // An outage of 30 s, far past the session timeout: the sessions are
    // gone when ZooKeeper returns. The replicas keep reconciling (and
    // sending nothing) meanwhile.
    if let Some(rest) = Duration::from_secs(30).checked_sub(stopped.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    crate::util::scenario::wait_cycles(&r2, 2.0).await;
    assert!(writes(&w).await.is_empty(), "{:?}", writes(&w).await);
    let (code, ready) = r2.get("/readyz").await;
    assert_eq!(ready["zkConnected"], false, "{code} {ready}");

    // ZooKeeper is back: a leader again, and the change goes out once.
    zk.resume();
    let leader = one_leader(&rs).await;
    wait_live(&w, rs[leader], "/dev/worker", &c2).await;
    assert_eq!(writes_to(&w, "/dev/worker").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_to_a_follower_wakes_the_leader() {
    let w = World::new().await;
    let zk = Zk::start();
    // Polls an hour apart: only a webhook makes a change go out.
    let url = zk.url("/pacer-test");
    let r1 = replica_on(&w, &url, "r1", "dev", 3600);
    let r2 = replica_on(&w, &url, "r2", "dev", 3600);
    let rs = [&r1, &r2];
    let leader = one_leader(&rs).await;
    rs[leader].wait_all("dev", "inSync", LIMIT).await;
    let follower = rs[1 - leader];
    let (s, _) = w.sim.delete("/_sim/requests").await;
    assert_eq!(s, 200);
    let c2 = push_worker(&w, "woken", "a push told to the follower");
    let (s, v) = follower
        .github_push(&c2, crate::util::harness::SECRET)
        .await;
    assert_eq!(s, 202, "{v}");
    wait_live(&w, rs[leader], "/dev/worker", &c2).await;
    // Once, by the leader: the follower fetched it too, and sent nothing.
    assert_eq!(writes_to(&w, "/dev/worker").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_with_its_zookeeper_server_stops_and_another_takes_over() {
    let w = World::new().await;
    // Three servers; each replica talks to one of them only.
    let zks = Zk::ensemble(3);
    let replicas: Vec<Daemon> = (0..3)
        .map(|i| replica_on(&w, &zks[i].url("/pacer-test"), &format!("r{i}"), "dev", 1))
        .collect();
    let all: Vec<&Daemon> = replicas.iter().collect();
    let old = one_leader(&all).await;
    all[old].wait_all("dev", "inSync", LIMIT).await;
    let (s, _) = w.sim.delete("/_sim/requests").await;
    assert_eq!(s, 200);

    // The leader's server is cut off (frozen): the other two keep a
    // quorum, expire the leader's session and elect another replica.
    zks[old].signal("-STOP");
    let rest: Vec<&Daemon> = (0..3).filter(|i| *i != old).map(|i| all[i]).collect();
    let new = one_leader(&rest).await;
    let c2 = push_worker(&w, "partition", "a change during the partition");
    wait_live(&w, rest[new], "/dev/worker", &c2).await;
    // The old leader, cut off, neither leads nor writes.
    let ha = ha_of(all[old]).await;
    assert_ne!(ha["role"], "leader", "{ha}");

    // The partition heals: the old leader's session is gone; it follows.
    zks[old].signal("-CONT");
    wait_until("the old leader to follow", LIMIT, || async {
        let ha = ha_of(all[old]).await;
        match (ha["role"].as_str(), &ha["zkConnected"]) {
            (Some("follower"), Value::Bool(true)) => Ok(()),
            _ => Err(format!("{ha}")),
        }
    })
    .await;
    assert_eq!(
        one_leader(&all).await,
        (0..3).filter(|i| *i != old).nth(new).unwrap()
    );
    crate::util::scenario::wait_cycles(all[old], 2.0).await;
    assert_eq!(writes_to(&w, "/dev/worker").await.len(), 1);
}
