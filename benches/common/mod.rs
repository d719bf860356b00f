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
