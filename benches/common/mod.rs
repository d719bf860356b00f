//! Shared by the benchmarks: a synthetic config repo shaped like a real one.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

pub struct Shape {
    pub apps: usize,
    pub envs: usize,
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A repo shaped like a real one: every app has a base with templates, an
/// overlay per environment and a config-file template.
pub fn generate(root: &Path, o: &Shape) {
    let mut settings = String::from("version: 1\nenvironments:\n");
    for e in 0..o.envs {
        settings.push_str(&format!(
            "  env{e}:\n    group: /env{e}\n    policy: {{autoApply: {}}}\n",
            e % 2 == 0
        ));
        write(
            root,
            &format!("environments/env{e}.yaml"),
            &format!(
                "values:\n  domain: env{e}.example.com\n  logLevel: info\n  db: {{host: db.env{e}.internal, port: 5432}}\nsecrets:\n  sentry: https://key{e}@sentry.example.com/1\nmarathon:\n  labels: {{team: platform, env: \"{{{{ env }}}}\"}}\n  env:\n    APP_ENV: \"{{{{ env }}}}\"\n  upgradeStrategy: {{minimumHealthCapacity: 1, maximumOverCapacity: 0.2}}\n"
            ),
        );
    }
    write(root, "pacer.yaml", &settings);
    for a in 0..o.apps {
        let app = format!("svc{a:04}");
        write(
            root,
            &format!("apps/{app}/app.yaml"),
            &format!(
                "values:\n  port: {}\n  version: 1.{a}.0\n  workers: 4\nmarathon:\n  cmd: ./{app} --port {{{{ values.port }}}} --log {{{{ values.logLevel }}}}\n  cpus: 0.25\n  mem: 256\n  instances: 2\n  env:\n    DB_HOST: \"{{{{ values.db.host }}}}\"\n    DB_PORT: \"{{{{ values.db.port }}}}\"\n    VERSION: \"{{{{ values.version }}}}\"\n  healthChecks:\n    - protocol: MESOS_HTTP\n      path: /health\n      portIndex: 0\n  constraints: [[hostname, UNIQUE]]\n  portDefinitions: [{{port: 0, name: http}}]\nfiles:\n  app.conf:\n    path: /etc/{app}/app.conf\n    reload: hot\n",
                8000 + a % 1000
            ),
        );
        write(
            root,
            &format!("apps/{app}/files/app.conf"),
            "# {{ id }}\nlisten = {{ values.port }}\nworkers = {{ values.workers }}\ndomain = {{ values.domain }}\ndb = {{ values.db.host }}:{{ values.db.port }}\n{% for i in range(3) %}shard.{{ i }} = {{ app }}-{{ i }}.{{ values.domain }}\n{% endfor %}",
        );
        for e in 0..o.envs {
            write(
                root,
                &format!("apps/{app}/env/env{e}.yaml"),
                &format!(
                    "values:\n  workers: {}\nmarathon:\n  instances: {}\n  mem: {}\n",
                    2 + e,
                    1 + e % 4,
                    256 + 64 * (e % 3)
                ),
            );
        }
    }
}

pub fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .status()
        .unwrap()
        .success();
    assert!(ok, "git {args:?}");
}

/// The simulator in this process with `settings`; its URL.
pub async fn start_sim(settings: pacer::sim::Settings) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let sim = pacer::sim::Shared::new(pacer::sim::SimConfig {
        settings,
        state_file: None,
    })
    .unwrap();
    tokio::spawn(pacer::sim::serve_sim(listener, sim, std::future::pending()));
    url
}

/// Puts every app the repo renders at HEAD into the simulator at `url`,
/// straight through Marathon's API, 32 at a time. What to wait for after
/// (deployments gone, tasks running) is the caller's.
pub async fn load_sim(url: &str, repo: &Path) {
    use pacer::render::{self, Scope};
    use std::sync::Arc;
    let loc = pacer::source::RepoLocation::discover(repo).unwrap();
    let desired = render::render(Arc::new(loc.at_rev("HEAD").unwrap()), &Scope::default())
        .unwrap_or_else(|d| panic!("the bench repo does not render: {d:?}"));
    let http = reqwest::Client::new();
    let limit = Arc::new(tokio::sync::Semaphore::new(32));
    let mut puts = tokio::task::JoinSet::new();
    for app in desired.envs.values().flat_map(|e| e.apps.values()) {
        let (http, url, limit) = (http.clone(), url.to_string(), limit.clone());
        let (id, body) = (app.id.clone(), app.marathon.clone());
        puts.spawn(async move {
            let _p = limit.acquire_owned().await.unwrap();
            let r = http
                .put(format!("{url}/v2/apps{id}"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "PUT {id}: {}", r.status());
        });
    }
    while let Some(r) = puts.join_next().await {
        r.unwrap();
    }
}

/// The stdout of `git args` in `dir`, trimmed.
pub fn git_out(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The median (the upper one of an even count).
pub fn median<T: PartialOrd + Copy>(mut v: Vec<T>) -> T {
    v.sort_by(|a, b| a.partial_cmp(b).expect("comparable"));
    v[v.len() / 2]
}

/// Milliseconds from the daemon's `cycle done elapsed_ms=N` log line.
pub fn cycle_ms(line: &str) -> Option<f64> {
    if !line.contains("cycle done") {
        return None;
    }
    let rest = &line[line.find("elapsed_ms=")? + "elapsed_ms=".len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}
