//! The config-repo pipeline at monorepo scale: a synthetic repo of
//! `--apps` apps × `--envs` environments (default 1,000 × 10 = 10,000
//! rendered apps), timed in-process and through the release binary.
//!
//! Run with `cargo bench --bench pipeline` (add `-- --apps 200` for a
//! smaller repo). Prints medians, the machine, and ratios against a floor
//! measured in the same run: reading every blob of the tree from Git.

use pacer::diff;
use pacer::render::{self, Scope};
use pacer::source::RepoLocation;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Opts {
    apps: usize,
    envs: usize,
    runs: usize,
    /// Keep the generated repo here, for profiling the binary against it.
    out: Option<std::path::PathBuf>,
}

fn opts() -> Opts {
    let mut o = Opts {
        apps: 1000,
        envs: 10,
        runs: 5,
        out: None,
    };
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        let next = || args.get(i + 1).and_then(|v| v.parse().ok());
        match args[i].as_str() {
            "--apps" => o.apps = next().expect("--apps N"),
            "--envs" => o.envs = next().expect("--envs N"),
            "--runs" => o.runs = next().expect("--runs N"),
            "--out" => o.out = args.get(i + 1).map(Into::into),
            _ => {} // cargo passes --bench
        }
        i += 1;
    }
    o
}

mod common;
use common::{generate, git};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        last = Some(f());
        times.push(t.elapsed());
    }
    (median(times), last.unwrap())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Wall time and peak RSS of one run of the release binary.
fn run_binary(args: &[&str]) -> (Duration, u64, i32) {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_pacer"))
        .args(args)
        .output()
        .unwrap();
    let wall = t.elapsed();
    // SAFETY: getrusage writes into the struct we pass and nothing else.
    let rss_kb = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
        ru.ru_maxrss as u64
    };
    (wall, rss_kb, out.status.code().unwrap_or(-1))
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{cpu}, {cores} cores")
}

fn main() {
    let o = opts();
    let dir = tempfile::tempdir().unwrap();
    let root = match &o.out {
        Some(p) => {
            std::fs::create_dir_all(p).unwrap();
            p.as_path()
        }
        None => dir.path(),
    };
    let t = Instant::now();
    generate(
        root,
        &common::Shape {
            apps: o.apps,
            envs: o.envs,
        },
    );
    git(root, &["init", "-q", "-b", "main"]);
    git(root, &["add", "-A"]);
    git(root, &["commit", "-q", "-m", "synthetic repo"]);
    // The change under test: one app's overlay in one environment.
    let overlay = format!("apps/svc{:04}/env/env3.yaml", o.apps / 2);
    let text = std::fs::read_to_string(root.join(&overlay)).unwrap();
    std::fs::write(
        root.join(&overlay),
        text.replace("instances:", "instances: 7\n  cpus: 0.5\n  #"),
    )
    .unwrap();
    git(root, &["commit", "-q", "-am", "one overlay"]);
    println!(
        "pacer pipeline benchmark: {} apps × {} envs = {} rendered apps",
        o.apps,
        o.envs,
        o.apps * o.envs
    );
    println!("machine: {}; generated in {}", machine(), ms(t.elapsed()));
    println!("median of {} runs each\n", o.runs);

    let loc = RepoLocation::discover(root).unwrap();
    let (floor, bytes) = time(o.runs, || {
        let snap = loc.at_rev("HEAD").unwrap();
        let paths: Vec<String> = snap.entries().keys().cloned().collect();
        paths
            .iter()
            .map(|p| snap.read_bytes(p).unwrap().len())
            .sum::<usize>()
    });
    println!(
        "floor: read every blob from Git ({} files, {} KiB)   {}",
        loc.at_rev("HEAD").unwrap().entries().len(),
        bytes / 1024,
        ms(floor)
    );

    let (full, apps) = time(o.runs, || {
        let snap = Arc::new(loc.at_rev("HEAD").unwrap());
        let d = render::render(snap, &Scope::default())
            .unwrap_or_else(|e| panic!("{:?}", &e[..e.len().min(3)]));
        d.envs.values().map(|e| e.apps.len()).sum::<usize>()
    });
    assert_eq!(apps, o.apps * o.envs);
    println!(
        "validate + full render, in process               {}  ({:.1}× floor; target ≤ 2000 ms)",
        ms(full),
        full.as_secs_f64() / floor.as_secs_f64()
    );

    let (one, report) = time(o.runs, || {
        let base = Arc::new(loc.at_rev("HEAD~1").unwrap());
        let head = Arc::new(loc.at_rev("HEAD").unwrap());
        diff::between(base, head, None).unwrap()
    });
    assert_eq!(report.summary.changed, 1, "{:?}", report.summary);
    assert_eq!(report.summary.rendered, 1);
    println!(
        "offline diff of a one-overlay commit, in process  {}  (rendered {} app; target ≤ 300 ms)",
        ms(one),
        report.summary.rendered
    );

    let repo = root.to_str().unwrap();
    let mut walls = Vec::new();
    let mut rss = 0;
    for _ in 0..o.runs {
        let (wall, kb, code) = run_binary(&["validate", "--repo", repo, "--rev", "HEAD"]);
        assert_eq!(code, 0);
        walls.push(wall);
        rss = rss.max(kb);
    }
    println!(
        "`pacer validate --rev HEAD`, release binary        {}  (peak RSS {:.0} MB; target ≤ 2000 ms, ≤ 300 MB)",
        ms(median(walls)),
        rss as f64 / 1024.0
    );
    let mut walls = Vec::new();
    for _ in 0..o.runs {
        let (wall, _, code) = run_binary(&[
            "diff", "--repo", repo, "--base", "HEAD~1", "--head", "HEAD", "--format", "json",
        ]);
        assert_eq!(code, 2);
        walls.push(wall);
    }
    println!(
        "`pacer diff HEAD~1 HEAD`, release binary           {}  (target ≤ 300 ms)",
        ms(median(walls))
    );
}
