use super::*;
use crate::source::Snapshot;
use serde_json::json;

fn repo(files: &[(&str, &str)]) -> Arc<Snapshot> {
    let mut all: Vec<(String, Vec<u8>)> = vec![
        (
            "pacer.yaml".into(),
            b"version: 1\nenvironments:\n  dev: {}\n  prod:\n    group: /prod\n".to_vec(),
        ),
        (
            "environments/dev.yaml".into(),
            b"values:\n  level: debug\n".to_vec(),
        ),
        (
            "environments/prod.yaml".into(),
            b"values:\n  level: warn\n".to_vec(),
        ),
    ];
    for (p, c) in files {
        all.retain(|(q, _)| q != p);
        all.push((p.to_string(), c.as_bytes().to_vec()));
    }
    Snapshot::from_files(all)
}

fn render_all(snap: Arc<Snapshot>) -> Result<Desired, Vec<Diagnostic>> {
    render(snap, &Scope::default())
}

fn messages(diags: &[Diagnostic]) -> String {
    diags.iter().map(|d| format!("{d}\n")).collect()
}

const WEB: &str = "\
values:
  port: 8080
  instances: 2
marathon:
  cmd: ./web --port {{ values.port }} --log {{ values.level }}
  cpus: 0.5
  instances: \"{{ values.instances }}\"
  env:
    PORT: 8080
    DEBUG: true
files:
  nginx.conf:
    path: /etc/nginx/nginx.conf
    reload: hot
  app.ini:
    path: /etc/app.ini
";

#[test]
fn layers_merge_and_templates_keep_types() {
    let snap = repo(&[
        ("apps/web/app.yaml", WEB),
        (
            "apps/web/env/prod.yaml",
            "values:\n  instances: 5\nmarathon:\n  cpus: 2\n  env:\n    DEBUG: null\n",
        ),
        ("apps/web/files/nginx.conf", "listen {{ values.port }};\n"),
        ("apps/web/files/app.ini", "level={{ values.level }}\n"),
    ]);
    let d = render_all(snap).unwrap_or_else(|e| panic!("{}", messages(&e)));
    let prod = &d.envs["prod"].apps["web"];
    assert_eq!(prod.id, "/prod/web");
    let m = &prod.marathon;
    assert_eq!(m["instances"], json!(5));
    assert_eq!(m["cpus"], json!(2));
    assert_eq!(m["cmd"], json!("./web --port 8080 --log warn"));
    assert_eq!(m["env"], json!({"PORT": "8080"}));
    assert_eq!(m["labels"]["pacer.env"], json!("prod"));
    assert_eq!(m["labels"]["pacer.source"], json!("apps/web"));
    let dev = &d.envs["dev"].apps["web"];
    assert_eq!(dev.id, "/dev/web");
    assert_eq!(dev.marathon["env"]["DEBUG"], json!("true"));
    assert_eq!(dev.files["nginx.conf"].content, b"listen 8080;\n");
    assert_eq!(dev.files["app.ini"].content, b"level=debug\n");
    assert_eq!(dev.files["nginx.conf"].reload, Reload::Hot);
}

#[test]
fn config_hash_covers_restart_files_only() {
    let files = |nginx: &'static str, ini: &'static str| {
        repo(&[
            ("apps/web/app.yaml", WEB),
            ("apps/web/files/nginx.conf", nginx),
            ("apps/web/files/app.ini", ini),
        ])
    };
    let hash = |snap| {
        render_all(snap).unwrap().envs["dev"].apps["web"].marathon["labels"][labels::CONFIG_HASH]
            .clone()
    };
    let a = hash(files("a", "x"));
    assert_eq!(
        a,
        hash(files("b", "x")),
        "a hot file must not restart the app"
    );
    assert_ne!(
        a,
        hash(files("a", "y")),
        "a restart file must roll the tasks"
    );
}

#[test]
fn problems_are_all_reported_with_their_lines() {
    let snap = repo(&[
        (
            "apps/web/app.yaml",
            "marathon:\n  cmd: x\n  intances: 3\n  cpus: lots\n",
        ),
        (
            "apps/api/app.yaml",
            "marathon:\n  cmd: \"{{ values.nope }}\"\n",
        ),
        ("apps/api/env/qa.yaml", "values: {}\n"),
    ]);
    let text = messages(&render_all(snap).unwrap_err());
    assert!(
        text.contains("apps/web/app.yaml:3:3: unknown key `intances`"),
        "{text}"
    );
    assert!(text.contains("did you mean `instances`?"), "{text}");
    assert!(text.contains("apps/web/app.yaml:4:9: `cpus`"), "{text}");
    assert!(
        text.contains("apps/api/app.yaml:2:12: template error"),
        "{text}"
    );
    assert!(text.contains("values.nope"), "{text}");
    assert!(
        text.contains("apps/api/env/qa.yaml: environment `qa` is not defined"),
        "{text}"
    );
}

#[test]
fn a_missing_environment_file_is_named() {
    let snap = repo(&[("apps/web/app.yaml", "marathon: {cmd: x}\n")]);
    let mut files: Vec<(String, Vec<u8>)> = snap
        .entries()
        .keys()
        .filter(|p| *p != "environments/prod.yaml")
        .map(|p| (p.clone(), snap.read_bytes(p).unwrap()))
        .collect();
    files.sort();
    let text = messages(&render_all(Snapshot::from_files(files)).unwrap_err());
    assert!(
        text.contains("pacer.yaml:4:3: environment `prod` has no file `environments/prod.yaml`"),
        "{text}"
    );
}

#[test]
fn the_same_inputs_render_the_same_bytes() {
    let files = [
        ("apps/web/app.yaml", WEB),
        (
            "apps/web/files/nginx.conf",
            "{% for k in values %}{{ k }}\n{% endfor %}",
        ),
        ("apps/web/files/app.ini", "x"),
    ];
    let a = render_all(repo(&files)).unwrap();
    let b = render_all(repo(&files)).unwrap();
    let ja = serde_json::to_string(&a.envs["prod"]).unwrap();
    let jb = serde_json::to_string(&b.envs["prod"]).unwrap();
    assert_eq!(ja, jb);
    assert_eq!(
        a.envs["prod"].apps["web"].inputs,
        b.envs["prod"].apps["web"].inputs
    );
}

#[test]
fn apps_may_be_limited_to_some_environments() {
    let snap = repo(&[
        (
            "apps/web/app.yaml",
            "environments: [prod]\nmarathon: {cmd: x}\n",
        ),
        ("apps/web/env/dev.yaml", "values: {}\n"),
    ]);
    let text = messages(&render_all(snap).unwrap_err());
    assert!(
        text.contains("apps/web/env/dev.yaml: overlay for `dev`"),
        "{text}"
    );
    let snap = repo(&[(
        "apps/web/app.yaml",
        "environments: [prod]\nmarathon: {cmd: x}\n",
    )]);
    let d = render_all(snap).unwrap();
    assert!(d.envs["dev"].apps.is_empty());
    assert!(d.envs["prod"].apps.contains_key("web"));
}

#[test]
fn the_last_layer_to_set_a_deploy_timeout_wins_and_it_never_reaches_marathon() {
    let snap = repo(&[
        (
            "apps/web/app.yaml",
            "deployTimeoutSeconds: 600\nmarathon:\n  cmd: ./web\n",
        ),
        ("apps/web/env/prod.yaml", "deployTimeoutSeconds: 1800\n"),
        ("apps/api/app.yaml", "marathon:\n  cmd: ./api\n"),
    ]);
    let d = render_all(snap).unwrap_or_else(|e| panic!("{}", messages(&e)));
    assert_eq!(
        d.envs["prod"].apps["web"].deploy_timeout_seconds,
        Some(1800)
    );
    assert_eq!(d.envs["dev"].apps["web"].deploy_timeout_seconds, Some(600));
    assert_eq!(d.envs["dev"].apps["api"].deploy_timeout_seconds, None);
    let m = &d.envs["prod"].apps["web"].marathon;
    assert!(m.get("deployTimeoutSeconds").is_none(), "{m:#}");
}

#[test]
fn a_deploy_timeout_that_is_not_whole_seconds_is_refused_at_its_line() {
    let snap = repo(&[(
        "apps/web/app.yaml",
        "marathon:\n  cmd: ./web\ndeployTimeoutSeconds: 10m\n",
    )]);
    let e = render_all(snap).expect_err("10m is not a number of seconds");
    let text = messages(&e);
    assert!(text.contains("apps/web/app.yaml:3:"), "{text}");
    assert!(text.contains("deployTimeoutSeconds"), "{text}");
}

#[test]
fn a_missing_template_value_gets_its_column_and_a_suggestion() {
    let snap = repo(&[
        (
            "apps/web/app.yaml",
            "values:\n  port: 8080\nmarathon:\n  cmd: \"./web --port {{ values.prot }}\"\n  user: \"{{ value.port }}\"\nfiles:\n  a.conf:\n    path: /etc/a.conf\n",
        ),
        (
            "apps/web/files/a.conf",
            "# a\n\n  listen {{ values.prot }};\n",
        ),
    ]);
    let diags = render_all(snap).unwrap_err();
    let text = messages(&diags);
    // The expression's own column, in the YAML file and in the template.
    assert!(
        text.contains("apps/web/app.yaml:4:25: template error"),
        "{text}"
    );
    assert!(
        text.contains("apps/web/app.yaml:5:13: template error"),
        "{text}"
    );
    assert!(
        text.contains("apps/web/files/a.conf:3:13: template error"),
        "{text}"
    );
    assert!(text.contains("did you mean `values`?"), "{text}");
    assert_eq!(
        diags
            .iter()
            .filter(|d| d.hint.as_deref() == Some("did you mean `values.port`?"))
            .count(),
        2,
        "{text}"
    );
}

#[test]
fn an_app_over_its_budget_is_invalid_and_the_others_render() {
    let snap = repo(&[
        ("apps/api/app.yaml", "marathon:\n  cmd: ./api\n"),
        (
            "apps/web/app.yaml",
            "marathon:\n  cmd: \"{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}\"\n",
        ),
        (
            "apps/big/app.yaml",
            "marathon:\n  cmd: ./big\nfiles:\n  a: {path: /a}\n  b: {path: /b}\n",
        ),
        ("apps/big/files/a", "{{ 'x' * 3000 }}"),
        ("apps/big/files/b", "{{ 'y' * 3000 }}"),
    ]);
    let budgets = Budgets {
        app_bytes: 5000,
        ..Budgets::default()
    };
    let mut diags = Diagnostics::default();
    let repo = Repo::load_with(snap, &budgets, &mut diags).unwrap();
    let pairs = repo.resolve_scope(&Scope::default()).unwrap();
    let d = render_pairs(&repo, &pairs, &mut diags);
    let text = messages(&diags.finish());
    assert!(
        text.contains("apps/web/app.yaml:2:") && text.contains("steps"),
        "{text}"
    );
    assert!(text.contains("apps/big/files/b:1:"), "{text}");
    assert!(
        text.contains("over its 4.9 KiB limit")
            || text.contains("limit for all its rendered files"),
        "{text}"
    );
    for env in ["dev", "prod"] {
        assert!(d.envs[env].apps.contains_key("api"), "{env}");
        assert!(!d.envs[env].apps.contains_key("web"), "{env}");
        assert!(!d.envs[env].apps.contains_key("big"), "{env}");
    }
}

#[test]
fn the_deadline_makes_the_rest_invalid() {
    let snap = repo(&[("apps/api/app.yaml", "marathon:\n  cmd: ./api\n")]);
    let budgets = Budgets {
        deadline: Some(std::time::Duration::ZERO),
        ..Budgets::default()
    };
    let text = messages(&render_with(snap, &Scope::default(), &budgets).unwrap_err());
    assert!(
        text.contains("apps/api/app.yaml: app `api` in `dev` was not rendered: the whole render passed its deadline"),
        "{text}"
    );
}

#[test]
fn a_render_can_run_off_the_callers_thread() {
    fn send<T: Send + 'static>(_: &T) {}
    let snap = repo(&[("apps/api/app.yaml", "marathon:\n  cmd: ./api\n")]);
    let mut diags = Diagnostics::default();
    let repo = Repo::load(snap, &mut diags).unwrap();
    send(&repo);
    let d = std::thread::spawn(move || {
        let pairs = repo.resolve_scope(&Scope::default()).unwrap();
        render_pairs(&repo, &pairs, &mut Diagnostics::default())
    })
    .join()
    .unwrap();
    assert!(d.envs["dev"].apps.contains_key("api"));
}

#[test]
fn settings_print_without_url_credentials() {
    let s = EnvSettings {
        name: "dev".into(),
        group: "/dev".into(),
        marathon: Some("https://ops:hunter2@marathon:8080/".into()),
        policy: Policy::default(),
    };
    let text = serde_json::to_string(&s).unwrap();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("https://***@marathon:8080/"), "{text}");
}

#[test]
fn the_deadline_holds_inside_an_app_with_many_heavy_templates() {
    // Each string is within its fuel, but together they would run for minutes.
    let heavy = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
    let mut app = String::from("marathon:\n  cmd: ./x\n  env:\n");
    for i in 0..500 {
        app.push_str(&format!("    V{i}: \"{heavy}\"\n"));
    }
    let snap = repo(&[("apps/api/app.yaml", app.as_str())]);
    let budgets = Budgets {
        deadline: Some(std::time::Duration::from_millis(300)),
        ..Budgets::default()
    };
    let start = std::time::Instant::now();
    let text = messages(&render_with(snap, &Scope::default(), &budgets).unwrap_err());
    assert!(
        start.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert!(
        text.contains("apps/api/app.yaml: app `api` in `dev` was not rendered: the whole render passed its deadline"),
        "{text}"
    );
}

#[test]
fn an_app_with_many_heavy_templates_runs_out_of_its_fuel() {
    let heavy = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
    let mut app = String::from("marathon:\n  cmd: ./x\n  env:\n");
    for i in 0..500 {
        // Whole expressions count too: each walks a long range.
        if i % 2 == 0 {
            app.push_str(&format!("    V{i}: \"{heavy}\"\n"));
        } else {
            app.push_str(&format!("    V{i}: \"{{{{ range(100000) | sum }}}}\"\n"));
        }
    }
    let snap = repo(&[
        ("apps/api/app.yaml", app.as_str()),
        ("apps/web/app.yaml", "marathon:\n  cmd: ./web\n"),
    ]);
    let start = std::time::Instant::now();
    let mut diags = Diagnostics::default();
    let r = Repo::load(snap, &mut diags).unwrap();
    let pairs = r.resolve_scope(&Scope::default()).unwrap();
    let d = render_pairs(&r, &pairs, &mut diags);
    assert!(
        start.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    let text = messages(&diags.finish());
    assert!(
        text.contains("apps/api/app.yaml: app `api` in `dev`: its templates used more than 10000000 steps together"),
        "{text}"
    );
    assert!(d.envs["dev"].apps.contains_key("web"));
}

#[test]
fn a_marathon_url_without_a_scheme_is_http_and_a_bad_one_is_refused_at_its_line() {
    let yaml = "version: 1\nenvironments:\n  dev:\n    marathon: 127.0.0.1:8080\n  prod:\n    group: /prod\n    marathon: https://m.example:8443\n";
    let snap = repo(&[
        ("pacer.yaml", yaml),
        ("apps/web/app.yaml", "marathon: {cmd: x}\n"),
    ]);
    let d = render_all(snap).expect("renders");
    assert_eq!(
        d.envs["dev"].settings.marathon.as_deref(),
        Some("http://127.0.0.1:8080")
    );
    assert_eq!(
        d.envs["prod"].settings.marathon.as_deref(),
        Some("https://m.example:8443")
    );

    let yaml = "version: 1\nenvironments:\n  dev:\n    marathon: ftp://ops:hunter2@m.example\n  prod:\n    group: /prod\n";
    let snap = repo(&[
        ("pacer.yaml", yaml),
        ("apps/web/app.yaml", "marathon: {cmd: x}\n"),
    ]);
    let e = render_all(snap).expect_err("ftp is not Marathon's scheme");
    let text = messages(&e);
    assert!(text.contains("pacer.yaml:4:"), "{text}");
    assert!(text.contains("http://marathon.example:8080"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn many_apps_render_on_every_core_as_they_would_one_at_a_time() {
    let mut files: Vec<(String, String)> = Vec::new();
    for i in 0..40 {
        let app = format!("svc{i:02}");
        // Every third app has a template error, every fifth a bad overlay,
        // every seventh a missing config file: problems in many workers.
        let cmd = if i % 3 == 0 {
            "./x {{ values.nope }}"
        } else {
            "./x {{ values.port }}"
        };
        files.push((
            format!("apps/{app}/app.yaml"),
            format!("values:\n  port: {i}\nmarathon:\n  cmd: {cmd}\nfiles:\n  a.conf: {{path: /etc/a.conf}}\n"),
        ));
        if i % 7 != 0 {
            files.push((
                format!("apps/{app}/files/a.conf"),
                "port={{ values.port }} env={{ env }}\n".into(),
            ));
        }
        let overlay = if i % 5 == 0 {
            "marathon:\n  cpus: lots\n"
        } else {
            "marathon:\n  cpus: 0.5\n"
        };
        files.push((format!("apps/{app}/env/prod.yaml"), overlay.into()));
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let snap = repo(&refs);
    let mut diags = Diagnostics::default();
    let r = Repo::load(snap, &mut diags).unwrap();
    assert!(diags.is_empty(), "{diags}");
    let pairs = r.resolve_scope(&Scope::default()).unwrap();
    let mut all = Diagnostics::default();
    let whole = render_pairs(&r, &pairs, &mut all);

    let mut one_by_one = Diagnostics::default();
    let mut apps = 0;
    for (env, list) in &pairs {
        for app in list {
            let d = render_pairs(&r, &[(env.clone(), vec![app.clone()])], &mut one_by_one);
            for (e, de) in d.envs {
                for (a, rendered) in de.apps {
                    apps += 1;
                    let same = &whole.envs[&e].apps[&a];
                    assert_eq!(same.marathon, rendered.marathon, "{e} {a}");
                    assert_eq!(same.files, rendered.files, "{e} {a}");
                }
            }
        }
    }
    let rendered: usize = whole.envs.values().map(|e| e.apps.len()).sum();
    assert_eq!(rendered, apps);
    assert!(rendered > 10 && rendered < 80, "{rendered}");
    // The same problems in the same order, before any sorting.
    assert!(all.len() > 20, "{all}");
    assert_eq!(all.0, one_by_one.0);
}

#[test]
fn the_parallel_map_keeps_the_order_of_its_items() {
    let items: Vec<u64> = (0..1000).collect();
    let out = pairs::par_map(&items, |&i| {
        // Uneven work, so that workers finish out of order.
        (0..(i % 17) * 100).fold(i, |a, b| a.wrapping_mul(31).wrapping_add(b)) ^ i
    });
    let want: Vec<u64> = items
        .iter()
        .map(|&i| (0..(i % 17) * 100).fold(i, |a, b| a.wrapping_mul(31).wrapping_add(b)) ^ i)
        .collect();
    assert_eq!(out, want);
    assert!(pairs::par_map(&Vec::<u8>::new(), |_| 1).is_empty());
}

#[test]
fn a_value_that_is_a_large_list_counts_against_the_output_budget() {
    // A whole-expression field that yields a list never passes the text
    // output cap; its JSON size is what counts.
    let snap = repo(&[(
        "apps/web/app.yaml",
        "marathon:\n  cmd: ./web\n  args: \"{{ [('x' * 400000)] * 20 }}\"\n",
    )]);
    let e = render_all(snap).expect_err("8 MB of args is over the budget");
    let text = messages(&e);
    assert!(text.contains("budget of output"), "{text}");
    assert!(text.contains("apps/web/app.yaml:3:"), "{text}");
}
