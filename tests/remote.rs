use crate::util::{GitDaemon, TestRepo, free_port, project_dir, run_git};
use pacer::model::Secret;
use pacer::source::RepoLocation;
use pacer::source::remote::{Error, GitAuth, Mirror, RemoteSpec};
use std::path::{Path, PathBuf};

/// A working repo (the examples) that pushes to a bare "upstream" served
/// from `base`, as a forge would hold it.
pub(crate) struct Upstream {
    pub(crate) work: TestRepo,
    pub(crate) base: tempfile::TempDir,
}

impl Upstream {
    pub(crate) fn new() -> Upstream {
        let work = TestRepo::examples();
        let base = tempfile::tempdir().unwrap();
        run_git(
            base.path(),
            &["clone", "-q", "--bare", work.path_str(), "config.git"],
        );
        Upstream { work, base }
    }

    pub(crate) fn bare(&self) -> PathBuf {
        self.base.path().join("config.git")
    }

    fn file_url(&self) -> String {
        format!("file://{}", self.bare().display())
    }

    /// Commits the work tree and pushes it; returns the new head.
    pub(crate) fn commit_and_push(&self, message: &str) -> git2::Oid {
        let id = self.work.commit(message);
        self.push(&["main"]);
        git2::Oid::from_str(&id).unwrap()
    }

    fn push(&self, args: &[&str]) {
        let bare = self.bare();
        let mut all = vec!["push", "-q", bare.to_str().unwrap()];
        all.extend_from_slice(args);
        run_git(self.work.path(), &all);
    }

    pub(crate) fn head(&self) -> git2::Oid {
        git2::Oid::from_str(&run_git(self.work.path(), &["rev-parse", "HEAD"])).unwrap()
    }
}

fn spec(url: &str, branch: &str) -> RemoteSpec {
    RemoteSpec {
        url: url.to_string(),
        branch: branch.to_string(),
        auth: GitAuth::None,
        ca_file: None,
        known_hosts: None,
    }
}

/// The error and its causes, as `{:#}` would print them at the edge.
pub(crate) fn chain(e: &Error) -> String {
    let mut out = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

fn read_at(mirror: &Mirror, rev: &str, path: &str) -> String {
    RepoLocation::bare(mirror.git_dir(), "")
        .at_rev(rev)
        .unwrap()
        .read_text(path)
        .unwrap()
}

/// Clone, read through `RepoLocation::bare`, a no-op second fetch, then a
/// new commit arrives and is a descendant of the first.
fn clone_then_fetch_new_commit(upstream: &Upstream, url: &str, mirror_dir: &Path) {
    let spec = spec(url, "main");
    let mirror = Mirror::open_or_clone(&spec, mirror_dir).unwrap();
    let first = mirror.fetch(&spec).unwrap();
    assert_eq!(first, upstream.head());
    assert!(read_at(&mirror, "refs/remotes/origin/main", "pacer.yaml").contains("environments"));

    assert_eq!(mirror.fetch(&spec).unwrap(), first, "nothing new");

    upstream.work.write("apps/web/NOTES.md", "a new file\n");
    let second = upstream.commit_and_push("web: notes");
    // Reopening an existing mirror keeps what it has.
    let mirror = Mirror::open_or_clone(&spec, mirror_dir).unwrap();
    assert_eq!(mirror.fetch(&spec).unwrap(), second);
    assert_eq!(
        read_at(&mirror, &second.to_string(), "apps/web/NOTES.md"),
        "a new file\n"
    );
    assert!(mirror.is_descendant(second, first).unwrap());
    assert!(mirror.is_descendant(second, second).unwrap());
    assert!(!mirror.is_descendant(first, second).unwrap());
}

#[test]
fn file_url_clone_and_fetch() {
    let upstream = Upstream::new();
    let dir = tempfile::tempdir().unwrap();
    clone_then_fetch_new_commit(&upstream, &upstream.file_url(), &dir.path().join("mirror"));
}

#[test]
fn git_daemon_clone_and_fetch() {
    let upstream = Upstream::new();
    let daemon = GitDaemon::serve(upstream.base.path());
    let dir = tempfile::tempdir().unwrap();
    clone_then_fetch_new_commit(
        &upstream,
        &daemon.url("config.git"),
        &dir.path().join("mirror"),
    );
}

#[test]
fn unreachable_remote_is_a_clean_error() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cases = [
        format!("git://127.0.0.1:{port}/config.git"),
        "file:///nonexistent/pacer/config.git".to_string(),
        format!("https://someone:tok-SECRET-1@127.0.0.1:{port}/config.git"),
    ];
    for url in cases {
        let mut spec = spec(&url, "main");
        spec.auth = GitAuth::Token(Secret::new("tok-SECRET-2".into()));
        let mirror = Mirror::open_or_clone(&spec, &dir.path().join("m")).unwrap();
        let err = mirror.fetch(&spec).unwrap_err();
        let text = chain(&err);
        assert!(matches!(err, Error::Fetch { .. }), "{url}: {text}");
        assert!(text.contains(&spec.display_url()), "{text}");
        assert!(!text.contains("SECRET"), "{text}");
        assert!(!format!("{err:?}").contains("SECRET"), "{err:?}");
    }
}

#[test]
fn missing_branch_is_a_clean_error() {
    let upstream = Upstream::new();
    let daemon = GitDaemon::serve(upstream.base.path());
    let dir = tempfile::tempdir().unwrap();
    for url in [upstream.file_url(), daemon.url("config.git")] {
        let spec = spec(&url, "release");
        let mirror = Mirror::open_or_clone(&spec, &dir.path().join("m")).unwrap();
        let err = mirror.fetch(&spec).unwrap_err();
        assert!(
            matches!(&err, Error::BranchNotFound { branch, .. } if branch == "release"),
            "{}",
            chain(&err)
        );
        assert_eq!(
            err.to_string(),
            format!("branch `release` not found at `{url}`")
        );
    }
}

#[test]
fn deleted_branch_is_not_answered_from_the_stale_ref() {
    let upstream = Upstream::new();
    run_git(upstream.work.path(), &["branch", "release"]);
    upstream.push(&["release"]);
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(&upstream.file_url(), "release");
    let mirror = Mirror::open_or_clone(&spec, &dir.path().join("m")).unwrap();
    mirror.fetch(&spec).unwrap();
    upstream.push(&[":release"]);
    let err = mirror.fetch(&spec).unwrap_err();
    assert!(
        matches!(err, Error::BranchNotFound { .. }),
        "{}",
        chain(&err)
    );
}

#[test]
fn force_pushed_rewind_is_detected() {
    let upstream = Upstream::new();
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(&upstream.file_url(), "main");
    let mirror = Mirror::open_or_clone(&spec, &dir.path().join("m")).unwrap();
    upstream.work.write("apps/web/NOTES.md", "one\n");
    let before = upstream.commit_and_push("web: one");
    assert_eq!(mirror.fetch(&spec).unwrap(), before);

    run_git(upstream.work.path(), &["reset", "-q", "--hard", "HEAD~1"]);
    upstream.work.write("apps/api/NOTES.md", "rewritten\n");
    let rewritten = upstream.work.commit("api: rewritten history");
    upstream.push(&["--force", "main"]);
    let after = mirror.fetch(&spec).unwrap();
    assert_eq!(after.to_string(), rewritten);
    assert!(!mirror.is_descendant(after, before).unwrap());
    // The rewound commit stays readable in the mirror until gc.
    assert_eq!(
        read_at(&mirror, &before.to_string(), "apps/web/NOTES.md"),
        "one\n"
    );
}

#[test]
fn is_descendant_of_an_unknown_commit_is_an_error() {
    let upstream = Upstream::new();
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(&upstream.file_url(), "main");
    let mirror = Mirror::open_or_clone(&spec, &dir.path().join("m")).unwrap();
    let head = mirror.fetch(&spec).unwrap();
    let unknown = git2::Oid::from_str(&"ab".repeat(20)).unwrap();
    let err = mirror.is_descendant(head, unknown).unwrap_err();
    assert!(
        matches!(err, Error::CommitNotFound { .. }),
        "{}",
        chain(&err)
    );
}

#[test]
fn log_lists_commits_touching_a_path_newest_first() {
    let upstream = Upstream::new();
    let initial = upstream.head();
    upstream.work.write("apps/web/NOTES.md", "one\n");
    let web1 = upstream.work.commit("web: one");
    upstream.work.write("apps/api/NOTES.md", "api\n");
    upstream.work.commit("api: notes");
    upstream.work.edit("apps/web/NOTES.md", "one", "two");
    let web2 = upstream.commit_and_push("web: two");

    let dir = tempfile::tempdir().unwrap();
    let spec = spec(&upstream.file_url(), "main");
    let mirror = Mirror::open_or_clone(&spec, &dir.path().join("m")).unwrap();
    let head = mirror.fetch(&spec).unwrap();

    let log = mirror.log(head, "apps/web", 10).unwrap();
    let ids: Vec<&str> = log.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, [web2.to_string(), web1, initial.to_string()]);
    assert_eq!(log[0].summary, "web: two");
    assert_eq!(log[0].author, "Test Author");
    assert_eq!(log[0].email, "author@example.com");
    chrono::DateTime::parse_from_rfc3339(&log[0].time).expect("RFC 3339");

    assert_eq!(mirror.log(head, "/apps/web/", 1).unwrap().len(), 1);
    assert_eq!(mirror.log(head, "apps/api", 10).unwrap().len(), 2);
    assert_eq!(mirror.log(head, "", 10).unwrap().len(), 4);
    assert!(mirror.log(head, "apps/nope", 10).unwrap().is_empty());
}

#[test]
fn deploy_app_definition_is_valid_for_marathon() {
    let text = std::fs::read_to_string(project_dir().join("deploy/pacer.marathon.json")).unwrap();
    let app: serde_json::Value = serde_json::from_str(&text).unwrap();
    let violations = pacer::marathon::validate::validate_app(&app);
    assert!(violations.is_empty(), "{violations:#?}");
}

/// An http:// server that refuses every request with 401 Basic and records
/// the Authorization headers it was sent.
fn refusing_http_server() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                if line == "\r\n" {
                    break;
                }
                if line.to_ascii_lowercase().starts_with("authorization:") {
                    let value = line["authorization:".len()..].trim().to_string();
                    record.lock().unwrap().push(value);
                }
                line.clear();
            }
            let _ = stream.write_all(
                b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    (format!("http://127.0.0.1:{port}/ops/config.git"), seen)
}

#[test]
fn token_is_sent_as_basic_auth_and_never_printed() {
    use base64::Engine;
    let (url, seen) = refusing_http_server();
    let dir = tempfile::tempdir().unwrap();
    let spec = RemoteSpec {
        url: url.clone(),
        branch: "main".into(),
        auth: GitAuth::Token(Secret::new("tok-SECRET-3".into())),
        ca_file: None,
        known_hosts: None,
    };
    let mirror = Mirror::open_or_clone(&spec, &dir.path().join("m")).unwrap();
    let err = mirror.fetch(&spec).unwrap_err();
    let text = chain(&err);
    assert!(matches!(err, Error::Fetch { .. }), "{text}");
    assert!(text.contains(&url), "{text}");
    assert!(!text.contains("SECRET"), "{text}");
    let seen = seen.lock().unwrap();
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("x-access-token:tok-SECRET-3")
    );
    assert!(seen.contains(&want), "{seen:?}");
    // Refused credentials are retried a bounded number of times, not forever.
    assert!(seen.len() <= 3, "{seen:?}");
}

fn record(app: &str, deployment: &str) -> pacer::record::notes::Record {
    pacer::record::notes::Record {
        env: "prod".into(),
        app: app.into(),
        id: format!("/prod/{app}"),
        outcome: pacer::model::Outcome::Succeeded,
        deployment: Some(deployment.into()),
        version: Some("2026-01-01T00:00:00.000Z".into()),
        rollback: None,
        at: "2026-01-01T00:00:01.000Z".into(),
        signer: None,
    }
}

/// Deployment records reach the remote's `refs/notes/pacer`, and two
/// writers (two daemons, or a daemon and `pacer apply` pushed by hand)
/// both keep theirs: a refused push is fetched, merged and pushed again.
fn records_are_pushed_and_merged(upstream: &Upstream, url: &str) {
    use pacer::record::notes::{self, Publish};
    let spec = spec(url, "main");
    let dirs = tempfile::tempdir().unwrap();
    let a = Mirror::open_or_clone(&spec, &dirs.path().join("a")).unwrap();
    let b = Mirror::open_or_clone(&spec, &dirs.path().join("b")).unwrap();
    let head = a.fetch(&spec).unwrap();
    b.fetch(&spec).unwrap();
    // Nothing there yet: no error, nothing changed.
    assert_eq!(a.fetch_ref(&spec, notes::REF).unwrap(), None);

    let web = record("web", "d-web");
    assert_eq!(
        notes::publish(&a, &spec, &[(head, web.clone())], Publish::Push).unwrap(),
        1
    );
    let upstream_repo = git2::Repository::open_bare(upstream.bare()).unwrap();
    assert_eq!(
        notes::read(&upstream_repo, head),
        std::slice::from_ref(&web)
    );

    // `b` hasn't seen `a`'s note: its own push is refused as it stands…
    let bare_b = git2::Repository::open_bare(b.git_dir()).unwrap();
    let api = record("api", "d-api");
    notes::append(&bare_b, head, std::slice::from_ref(&api)).unwrap();
    let e = b.push_ref(&spec, notes::REF).unwrap_err();
    assert!(matches!(e, Error::Push { .. }), "{}", chain(&e));
    // …and publishing fetches first, so both records survive.
    notes::publish(&b, &spec, &[(head, api.clone())], Publish::Push).unwrap();
    let upstream_repo = git2::Repository::open_bare(upstream.bare()).unwrap();
    assert_eq!(
        notes::read(&upstream_repo, head),
        [web.clone(), api.clone()]
    );
    // Publishing the same again adds nothing.
    assert_eq!(
        notes::publish(&a, &spec, &[(head, web)], Publish::Push).unwrap(),
        0
    );
    // `local` keeps them in the mirror only.
    let other = record("worker", "d-worker");
    notes::publish(&a, &spec, &[(head, other.clone())], Publish::Local).unwrap();
    let bare_a = git2::Repository::open_bare(a.git_dir()).unwrap();
    assert!(notes::read(&bare_a, head).contains(&other));
    let upstream_repo = git2::Repository::open_bare(upstream.bare()).unwrap();
    assert!(!notes::read(&upstream_repo, head).contains(&other));
}

#[test]
fn records_are_pushed_and_merged_over_file_urls() {
    let upstream = Upstream::new();
    records_are_pushed_and_merged(&upstream, &upstream.file_url());
}

#[test]
fn records_are_pushed_and_merged_over_git_daemon() {
    let upstream = Upstream::new();
    let daemon = GitDaemon::serve(upstream.base.path());
    records_are_pushed_and_merged(&upstream, &daemon.url("config.git"));
}

/// A config repo with a work tree (a laptop clone, the demo's) takes the
/// records too, though libgit2 can't push into one.
#[test]
fn records_reach_a_file_remote_with_a_work_tree() {
    use pacer::record::notes::{self, Publish};
    let upstream = Upstream::new();
    let url = format!("file://{}", upstream.work.path().display());
    let spec = spec(&url, "main");
    let dir = tempfile::tempdir().unwrap();
    let mirror = Mirror::open_or_clone(&spec, &dir.path().join("m")).unwrap();
    let head = mirror.fetch(&spec).unwrap();
    let web = record("web", "d-web");
    notes::publish(&mirror, &spec, &[(head, web.clone())], Publish::Push).unwrap();
    let work = git2::Repository::open(upstream.work.path()).unwrap();
    assert_eq!(notes::read(&work, head), std::slice::from_ref(&web));
    // A second writer's records are merged, not replaced.
    let api = record("api", "d-api");
    let other = Mirror::open_or_clone(&spec, &dir.path().join("o")).unwrap();
    other.fetch(&spec).unwrap();
    notes::publish(&other, &spec, &[(head, api.clone())], Publish::Push).unwrap();
    assert_eq!(notes::read(&work, head), [web, api]);
    // The work tree is untouched.
    let status = run_git(upstream.work.path(), &["status", "--porcelain"]);
    assert_eq!(status, "");
}
