//! The daemon's signed-commit gate: `pacer serve` against the simulator,
//! with commits signed for real by `git commit -S` (SSH keys from
//! ssh-keygen, OpenPGP keys from gpg). A refused commit never reaches the
//! gated environment; the others go on; the status, the metrics, the log,
//! the deployment records and `pacer history` say who signed what.

use crate::util::harness::{Daemon, World};
use crate::util::keys::{Keys, Sign};
use crate::util::scenario::{LIMIT, wait_live, wait_log, wait_status, writes};
use serde_json::Value;
use std::path::Path;

const POLICY: &str =
    "    group: /dev\n    verify:\n      mode: MODE\n      signers: .pacer/allowed_signers\n";

/// Commits the working clone of `w`, signed as `sign`, and pushes it.
fn commit_push(keys: &Keys, w: &World, message: &str, sign: Sign) -> String {
    let head = keys.commit(w.git.repo.path(), message, sign);
    w.git.push(false);
    head
}

/// Gives dev a `verify:` policy in `mode` trusting `signers`: the commit,
/// signed as `sign`, is pushed.
fn gate_dev(w: &World, keys: &Keys, mode: &str, signers: &str, sign: Sign) -> String {
    w.git.repo.write(".pacer/allowed_signers", signers);
    w.git.repo.edit(
        "pacer.yaml",
        "    group: /dev\n",
        &POLICY.replace("MODE", mode),
    );
    commit_push(
        keys,
        w,
        &format!("dev deploys commits signed ({mode})"),
        sign,
    )
}

/// Gives the worker (in every environment it runs in) a new env var.
fn change_worker(w: &World, value: &str) {
    let path = "apps/worker/app.yaml";
    let text = w.git.repo.read(path);
    let text = match text.find("    GATE: ") {
        Some(start) => {
            let end = start + text[start..].find('\n').unwrap();
            format!("{}    GATE: \"{value}\"{}", &text[..start], &text[end..])
        }
        None => text.replacen(
            "    METRICS_PREFIX: \"{{ id }}\"\n",
            &format!("    METRICS_PREFIX: \"{{{{ id }}}}\"\n    GATE: \"{value}\"\n"),
            1,
        ),
    };
    assert!(text.contains(&format!("GATE: \"{value}\"")), "{text}");
    w.git.repo.write(path, &text);
}

fn serve(w: &World, state: &Path) -> Daemon {
    w.serve(
        1,
        30,
        &["--env", "staging", "--state-dir", state.to_str().unwrap()],
    )
}

fn verify_of(s: &Value) -> &Value {
    &s["environments"]["dev"]["verify"]
}

/// Until dev shows a refusal of `commit`.
async fn wait_refused(d: &Daemon, commit: &str) -> Value {
    wait_status(d, &format!("dev to refuse {commit}"), |s| {
        verify_of(s)["refused"]["commit"] == commit
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_commits_signed_by_a_trusted_ssh_key_reach_the_gated_environment() {
    let w = World::new().await;
    let keys = Keys::new();
    let (alice, alice_pub) = keys.ssh("alice");
    let (eve, eve_pub) = keys.ssh("eve");
    let state = w.scratch.path().join("state");
    let signers = format!("alice@example.com {alice_pub}\n");
    let c1 = gate_dev(&w, &keys, "head", &signers, Sign::Ssh(alice.clone()));

    let d = serve(&w, &state);
    d.wait_all("dev", "inSync", LIMIT).await;
    d.wait_all("staging", "inSync", LIMIT).await;
    let s = d.status().await;
    let v = verify_of(&s);
    assert_eq!(v["verified"]["commit"], c1.as_str(), "{s:#}");
    assert_eq!(v["verified"]["signer"]["principal"], "alice@example.com");
    assert_eq!(v["verified"]["signer"]["kind"], "ssh");
    // Nothing was deployed before: the head was checked against its own list.
    assert_eq!(v["basis"], "firstUse");
    assert!(
        s["environments"]["staging"].get("verify").is_none(),
        "{s:#}"
    );

    let synced = writes(&w).await.len();

    // Unsigned: staging (no policy) takes it, dev does not.
    change_worker(&w, "unsigned");
    let c2 = commit_push(&keys, &w, "unsigned change", Sign::No);
    let s = wait_refused(&d, &c2).await;
    let r = &verify_of(&s)["refused"];
    assert_eq!(r["reason"], "unsigned", "{s:#}");
    assert!(r["author"].as_str().unwrap().contains('@'), "{s:#}");
    assert!(
        s["environments"]["dev"]["errors"]
            .to_string()
            .contains(&format!("commit {} ", &c2[..12])),
        "{s:#}"
    );
    wait_live(&w, &d, "/staging/worker", &c2).await;
    wait_log(
        &d,
        "the refusal in the log",
        "not deployed: the commit is not signed",
    )
    .await;
    assert!(
        d.metric("pacer_commits_refused_total{env=\"dev\",reason=\"unsigned\"}")
            .await
            >= 1.0
    );
    assert_eq!(d.metric("pacer_commit_refused{env=\"dev\"}").await, 1.0);
    // Another full pass: dev's worker still runs the signed commit, and no
    // write went to a dev app.
    crate::util::scenario::wait_cycles(&d, 2.0).await;
    let worker = w.sim.app("/dev/worker").await.unwrap();
    assert_eq!(worker["labels"]["pacer.commit"], c1.as_str());
    assert!(worker["env"].get("GATE").is_none(), "{worker:#}");
    let since: Vec<_> = writes(&w).await.split_off(synced);
    assert!(
        !since.iter().any(|(_, p, _)| p.contains("/dev/")),
        "{since:?}"
    );
    assert!(
        since.iter().any(|(_, p, _)| p.contains("/staging/worker")),
        "{since:?}"
    );

    // Signed by a key the list doesn't hold: refused, the key named.
    change_worker(&w, "eve");
    let c3 = commit_push(&keys, &w, "signed by eve", Sign::Ssh(eve.clone()));
    let s = wait_refused(&d, &c3).await;
    let r = &verify_of(&s)["refused"];
    assert_eq!(r["reason"], "unknownKey", "{s:#}");
    assert!(r["message"].as_str().unwrap().contains("SHA256:"), "{s:#}");

    // Signed by alice, changing nothing itself: dev takes the head's whole
    // tree, the changes of the refused commits included (mode head checks
    // the head only). Nothing changed since the last head read, so only
    // comparing each app with the version dev holds finds them.
    let c4 = commit_push(&keys, &w, "signed by alice", Sign::Ssh(alice.clone()));
    let worker = wait_live(&w, &d, "/dev/worker", &c4).await;
    assert_eq!(worker["env"]["GATE"], "eve", "{worker:#}");
    let s = wait_status(&d, "the refusal to end", |s| {
        verify_of(s).get("refused").is_none() && verify_of(s)["verified"]["commit"] == c4.as_str()
    })
    .await;
    assert_eq!(verify_of(&s)["basis"], "anchor", "{s:#}");
    assert_eq!(d.metric("pacer_commit_refused{env=\"dev\"}").await, 0.0);
    // The deployment record names the signer; so does the history.
    let records =
        crate::util::harness::wait_until("the signed deployment's record", LIMIT, || async {
            let r = w.git.records(&c4);
            match r.iter().find(|r| r["id"] == "/dev/worker") {
                Some(rec) => Ok(rec.clone()),
                None => Err(format!("{r:?}")),
            }
        })
        .await;
    assert_eq!(
        records["signer"]["principal"], "alice@example.com",
        "{records}"
    );
    w.git.fetch_records();
    let history = w.history_json("worker");
    let entry = history
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["commit"] == c4.as_str())
        .unwrap_or_else(|| panic!("{history:#}"));
    assert_eq!(
        entry["signer"]["principal"], "alice@example.com",
        "{history:#}"
    );
    assert!(
        entry["signer"]["fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("SHA256:")
    );
    let text = w.history("worker", "text");
    assert!(text.stdout.contains("alice@example.com"), "{text:?}");

    // A restarted daemon keeps its anchor: a commit that adds eve to the
    // list and is signed by eve is checked against the deployed list,
    // which does not trust her.
    drop(d);
    w.git.repo.write(
        ".pacer/allowed_signers",
        &format!("alice@example.com {alice_pub}\neve@example.com {eve_pub}\n"),
    );
    change_worker(&w, "eve trusts herself");
    let c5 = commit_push(&keys, &w, "eve adds her key", Sign::Ssh(eve.clone()));
    let d = serve(&w, &state);
    let s = wait_refused(&d, &c5).await;
    assert_eq!(verify_of(&s)["refused"]["reason"], "unknownKey", "{s:#}");
    assert_eq!(verify_of(&s)["basis"], "anchor", "{s:#}");
    assert_eq!(verify_of(&s)["verified"]["commit"], c4.as_str(), "{s:#}");
    d.wait_all("dev", "inSync", LIMIT).await;
    let worker = w.sim.app("/dev/worker").await.unwrap();
    assert_eq!(worker["labels"]["pacer.commit"], c4.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mode_all_refuses_an_unsigned_commit_inside_a_signed_range() {
    let w = World::new().await;
    let keys = Keys::new();
    let (pgp_id, pgp) = keys.pgp("release@example.com");
    let state = w.scratch.path().join("state");
    let c1 = gate_dev(&w, &keys, "all", &pgp, Sign::Pgp(pgp_id.clone()));
    let d = serve(&w, &state);
    d.wait_all("dev", "inSync", LIMIT).await;
    let s = d.status().await;
    assert_eq!(verify_of(&s)["verified"]["signer"]["kind"], "pgp", "{s:#}");
    assert_eq!(verify_of(&s)["verified"]["commit"], c1.as_str());

    // A signed head does not carry an unsigned commit before it.
    change_worker(&w, "sneaked in");
    let sneaked = commit_push(&keys, &w, "unsigned, in the middle", Sign::No);
    // Both land between two fetches as a user would push them: the poll
    // may see the middle commit alone first, which is refused too.
    change_worker(&w, "signed on top");
    let head = commit_push(&keys, &w, "signed on top", Sign::Pgp(pgp_id.clone()));
    let s = wait_status(&d, "dev to refuse the range", |s| {
        verify_of(s)["refused"]["head"] == head.as_str()
    })
    .await;
    let r = &verify_of(&s)["refused"];
    assert_eq!(r["commit"], sneaked.as_str(), "{s:#}");
    assert_eq!(r["reason"], "unsigned", "{s:#}");
    assert_eq!(r["summary"], "unsigned, in the middle");
    crate::util::scenario::wait_cycles(&d, 2.0).await;
    let worker = w.sim.app("/dev/worker").await.unwrap();
    assert_eq!(worker["labels"]["pacer.commit"], c1.as_str());
}
