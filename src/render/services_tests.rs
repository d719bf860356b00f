use super::*;
use crate::model::endpoints::{Endpoint, Endpoints, ServiceSet};
use crate::render::{Desired, Diagnostic, Scope, read_endpoints, render_with_endpoints};
use crate::source::Snapshot;

const PACER: &str = "\
version: 1
environments:
  dev: {}
  prod:
    group: /prod
external:
  /shared/postgres:
    ports: [pg]
";

const DB: &str = "\
marathon:
  cmd: ./db
  instances: 2
  portDefinitions:
    - {port: 0, name: pg}
    - {port: 0, name: metrics}
";

fn snap(files: &[(&str, &str)]) -> Arc<Snapshot> {
    let mut all: Vec<(String, Vec<u8>)> = vec![
        ("pacer.yaml".into(), PACER.into()),
        ("environments/dev.yaml".into(), b"values: {}\n".to_vec()),
        ("environments/prod.yaml".into(), b"values: {}\n".to_vec()),
        ("apps/db/app.yaml".into(), DB.into()),
    ];
    for (p, c) in files {
        all.retain(|(q, _)| q != p);
        all.push((p.to_string(), c.as_bytes().to_vec()));
    }
    Snapshot::from_files(all)
}

/// `web` with one hot file holding `template`.
fn web(template: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "apps/web/app.yaml",
            "marathon:\n  cmd: ./web\nfiles:\n  app.conf:\n    path: /etc/app.conf\n    reload: hot\n"
                .to_string(),
        ),
        ("apps/web/files/app.conf", template.to_string()),
    ]
}

fn render(files: &[(&str, String)], e: Option<Endpoints>) -> Result<Desired, Vec<Diagnostic>> {
    let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
    render_with_endpoints(
        snap(&files),
        &Scope::default(),
        &Budgets::default(),
        e.map(Arc::new),
    )
}

fn file(files: &[(&str, String)], e: Option<Endpoints>, env: &str) -> String {
    let d = render(files, e).unwrap_or_else(|e| panic!("{}", messages(&e)));
    String::from_utf8(d.envs[env].apps["web"].files["app.conf"].content.clone()).unwrap()
}

fn messages(diags: &[Diagnostic]) -> String {
    diags.iter().map(|d| format!("{d}\n")).collect()
}

fn error(files: &[(&str, String)]) -> String {
    messages(&render(files, None).expect_err("a render error"))
}

fn task(host: &str, ports: &[u16], id: &str) -> Endpoint {
    Endpoint {
        host: host.into(),
        ips: vec![],
        ports: ports.to_vec(),
        task_id: id.into(),
        version: "v1".into(),
        started_at: "2024-01-01T00:00:00.000Z".into(),
    }
}

fn db_set(tasks: Vec<Endpoint>) -> (String, Arc<ServiceSet>) {
    let names = vec![Some("pg".to_string()), Some("metrics".to_string())];
    ("/prod/db".into(), Arc::new(ServiceSet::new(names, tasks)))
}

#[test]
fn placeholders_are_as_documented() {
    let t = "{% for t in service(\"db\") %}{{ t.host }} {{ t.ip }} {{ t.ips }} {{ t.port }} {{ t.ports }} {{ t.named.pg }} {{ t.named.metrics }} {{ t.id }} {{ t.version }} {{ t.startedAt }} {{ t.address }}\n{% endfor %}";
    let out = file(&web(t), None, "prod");
    assert_eq!(
        out,
        "prod-db-0.pacer.invalid 192.0.2.1 ['192.0.2.1'] 31000 [31000, 31001] 31000 31001 prod_db.instance-placeholder-0._app.1 1970-01-01T00:00:00.000Z 1970-01-01T00:00:00.000Z prod-db-0.pacer.invalid:31000\n\
         prod-db-1.pacer.invalid 192.0.2.2 ['192.0.2.2'] 31000 [31000, 31001] 31000 31001 prod_db.instance-placeholder-1._app.1 1970-01-01T00:00:00.000Z 1970-01-01T00:00:00.000Z prod-db-1.pacer.invalid:31000\n"
    );
    // Relative to the environment's group: dev's `db` is `/dev/db`.
    let out = file(&web("{{ address(\"db\") }}"), None, "dev");
    assert_eq!(out, "dev-db-0.pacer.invalid:31000");
}

#[test]
fn placeholder_instances_are_capped_and_ports_default_to_one() {
    let mut files = web("{{ addresses(\"cache\")|join(\",\") }}");
    files.push((
        "apps/cache/app.yaml",
        "marathon:\n  cmd: ./c\n  instances: 9\n".into(),
    ));
    let out = file(&files, None, "prod");
    assert_eq!(
        out,
        "prod-cache-0.pacer.invalid:31000,prod-cache-1.pacer.invalid:31000,prod-cache-2.pacer.invalid:31000"
    );
    // A templated count is unknown before the render: one task. Ports
    // may come from the container's port mappings.
    files.pop();
    files.push((
        "apps/cache/app.yaml",
        "values: {n: 2}\nmarathon:\n  cmd: ./c\n  instances: \"{{ values.n }}\"\n  container:\n    type: DOCKER\n    docker: {image: cache}\n    portMappings: [{containerPort: 80, name: http}]\n"
            .into(),
    ));
    files[1].1 = "{{ addresses(\"cache\", port=\"http\")|join(\",\") }}".into();
    assert_eq!(
        file(&files, None, "prod"),
        "prod-cache-0.pacer.invalid:31000"
    );
}

#[test]
fn absolute_names_ports_by_name_and_index_and_join() {
    let t = "{{ addresses(\"/dev/db\", port=\"metrics\")|join(\",\") }}|{{ address(\"db\", port=1) }}|{{ addresses(\"db\", 0)|join(\",\") }}|{{ address(\"/shared/postgres\", port=\"pg\") }}";
    assert_eq!(
        file(&web(t), None, "prod"),
        "dev-db-0.pacer.invalid:31001,dev-db-1.pacer.invalid:31001|prod-db-0.pacer.invalid:31001|prod-db-0.pacer.invalid:31000,prod-db-1.pacer.invalid:31000|shared-postgres-0.pacer.invalid:31000"
    );
}

#[test]
fn given_sets_render_sorted_whatever_their_order() {
    let t = "{{ addresses(\"db\", port=\"pg\")|join(\",\") }} {% for t in service(\"db\") %}{{ t.id }};{% endfor %}";
    let a = task("b.example", &[5432, 9100], "t-b");
    let b = task("a.example", &[5433, 9101], "t-a");
    let one = Endpoints {
        mode: Mode::Placeholders,
        services: [db_set(vec![a.clone(), b.clone()])].into(),
    };
    let other = Endpoints {
        mode: Mode::Placeholders,
        services: [db_set(vec![b, a])].into(),
    };
    let x = file(&web(t), Some(one), "prod");
    assert_eq!(x, "a.example:5433,b.example:5432 t-a;t-b;");
    assert_eq!(x, file(&web(t), Some(other), "prod"));
}

#[test]
fn a_live_service_not_seen_yet_has_no_tasks() {
    let t =
        "{{ address(\"db\") is none }} {{ addresses(\"db\")|length }} {{ service(\"db\")|length }}";
    let out = file(&web(t), Some(Endpoints::live(BTreeMap::new())), "prod");
    assert_eq!(out, "true 0 0");
    // Its port names are still checked.
    let t = "{{ address(\"db\", port=\"pgg\") }}";
    let e = render(&web(t), Some(Endpoints::live(BTreeMap::new()))).unwrap_err();
    assert!(
        messages(&e).contains("did you mean `pg`?"),
        "{}",
        messages(&e)
    );
}

#[test]
fn the_services_an_app_names_are_recorded() {
    let mut files = web("{{ address(\"db\") }} {{ address(\"/shared/postgres\") }}\n");
    // A secret read in the same file: the app renders twice.
    files[0].1.push_str("secrets:\n  pw: hunter2\n");
    files[1].1.push_str("{{ secrets.pw }}\n");
    let d = render(&files, None).unwrap_or_else(|e| panic!("{}", messages(&e)));
    let web = &d.envs["prod"].apps["web"];
    let used: Vec<&str> = web.services.iter().map(String::as_str).collect();
    assert_eq!(used, ["/prod/db", "/shared/postgres"]);
    assert_eq!(
        web.shown_file("app.conf").unwrap(),
        b"prod-db-0.pacer.invalid:31000 shared-postgres-0.pacer.invalid:31000\n<secret:pw>\n"
    );
    assert!(d.envs["prod"].apps["db"].services.is_empty());
}

#[test]
fn an_unknown_name_is_an_error_at_its_line_with_a_hint() {
    let text = error(&web("a\nx {{ address(\"dbb\") }}\n"));
    assert!(text.contains("apps/web/files/app.conf:2:"), "{text}");
    assert!(text.contains("`/prod/dbb`"), "{text}");
    assert!(text.contains("did you mean `db`?"), "{text}");
    assert!(
        text.contains("list it under `external:` in pacer.yaml"),
        "{text}"
    );
    // An app that doesn't run in the environment is unknown there.
    let mut files = web("{{ address(\"/prod/only-dev\") }}");
    files.push((
        "apps/only-dev/app.yaml",
        "environments: [dev]\nmarathon:\n  cmd: x\n".into(),
    ));
    let text = error(&files);
    assert!(
        text.contains("no app of this repo runs as `/prod/only-dev`"),
        "{text}"
    );
}

#[test]
fn bad_names_and_ports_are_refused() {
    let long = format!("{{{{ address(\"{}\") }}}}", "a".repeat(257));
    for (t, want) in [
        ("{{ address(\"../x\") }}", "`..` is not allowed"),
        ("{{ address(\"/prod/../db\") }}", "`..` is not allowed"),
        ("{{ address(\"Db\") }}", "lower-case"),
        ("{{ address(\"a//b\") }}", "empty segment"),
        ("{{ address(1) }}", "must be a string"),
        (long.as_str(), "over the limit of 256"),
        (
            "{{ address(\"db\", port=\"http\") }}",
            "has no port named `http`",
        ),
        (
            "{{ address(\"db\", port=2) }}",
            "has 2 port(s): there is no port 2",
        ),
        (
            "{{ address(\"db\", port=-1) }}",
            "an index from 0 or a port name",
        ),
    ] {
        let text = error(&web(t));
        assert!(text.contains(want), "{t}: {text}");
        assert!(text.contains("apps/web/files/app.conf:1:"), "{t}: {text}");
    }
    let text = error(&web("{{ address(\"db\", port=\"http\") }}"));
    assert!(text.contains("its named ports: pg, metrics"), "{text}");
}

#[test]
fn only_hot_files_may_name_services() {
    let mut files = web("ok\n");
    files[0].1 = "marathon:\n  cmd: ./web --db {{ address(\"db\") }}\n".into();
    let text = error(&files);
    assert!(text.contains("apps/web/app.yaml:2:"), "{text}");
    assert!(
        text.contains("can't be used in a field of the app definition"),
        "{text}"
    );
    assert!(text.contains("relaunched every time"), "{text}");

    let mut files = web("{{ address(\"db\") }}\n");
    files[0].1 = files[0].1.replace("reload: hot", "reload: restart");
    let text = error(&files);
    assert!(text.contains("apps/web/files/app.conf:1:"), "{text}");
    assert!(text.contains("`reload: restart`"), "{text}");
    assert!(text.contains("set `reload: hot`"), "{text}");
}

#[test]
fn external_must_be_well_formed() {
    let pacer = PACER.replace("ports: [pg]", "ports: [PG]");
    let files = [("pacer.yaml", pacer.as_str())];
    let e = crate::render::render(snap(&files), &Scope::default()).unwrap_err();
    assert!(messages(&e).contains("pacer.yaml"), "{}", messages(&e));
}

#[test]
fn endpoints_files_are_read_sorted_and_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.yaml");
    std::fs::write(
        &path,
        "/prod/db:\n  portNames: [pg]\n  tasks:\n    - {host: b, ports: [2], taskId: t2}\n    - {host: a, ports: [1], taskId: t1}\n",
    )
    .unwrap();
    let e = read_endpoints(&path).unwrap();
    assert_eq!(e.mode, Mode::Placeholders);
    assert_eq!(e.services["/prod/db"].tasks[0].host, "a");
    std::fs::write(&path, "/prod/db: {tasks: 3}\n").unwrap();
    let err = read_endpoints(&path).unwrap_err();
    assert!(err.contains("e.yaml"), "{err}");
    std::fs::write(&path, "db: {}\n").unwrap();
    assert!(read_endpoints(&path).unwrap_err().contains("absolute"));
}

#[test]
fn a_change_to_external_changes_every_apps_inputs() {
    let inputs = |pacer: &str| {
        let mut diags = crate::render::Diagnostics::default();
        let repo = Repo::load(snap(&[("pacer.yaml", pacer)]), &mut diags).unwrap();
        repo.inputs("prod", "db")
    };
    assert_ne!(inputs(PACER), inputs(&PACER.replace("[pg]", "[pg, admin]")));
}
