use crate::remote::{Upstream, chain};
use crate::util::{free_port, project_dir};
use pacer::model::Secret;
use pacer::source::remote::{Error, GitAuth, Mirror, RemoteSpec};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";

/// Fails the test, saying what to install, unless `program` (a path, or a
/// name looked up on PATH) exists.
fn require(program: &str, package: &str) {
    let found = if program.contains('/') {
        Path::new(program).is_file()
    } else {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()))
    };
    assert!(
        found,
        "`{program}` is missing: install {package} \
         (`apt-get install {package}`; .ci/run installs it)"
    );
}

/// Runs a command to completion, failing the test with its stderr if it fails.
fn run(program: &str, args: &[&str], dir: &Path) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A server process started by a test, killed and reaped when dropped.
struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Server {
    /// Starts `cmd` with its stderr in `log`, and waits (up to 10 s) until
    /// it accepts connections on `port`.
    fn start(mut cmd: Command, port: u16, log: PathBuf) -> Server {
        let err = std::fs::File::create(&log).expect("creating a log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
        let mut server = Server { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            if let Some(status) = server.child.try_wait().expect("polling a server") {
                panic!(
                    "{cmd:?} exited with {status} before listening on port {port}:\n{}",
                    server.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{cmd:?} did not listen on port {port} within 10 s:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spec(url: String, auth: GitAuth) -> RemoteSpec {
    RemoteSpec {
        url,
        branch: "main".into(),
        auth,
        ca_file: None,
        known_hosts: None,
    }
}

fn fetch(spec: &RemoteSpec) -> Result<git2::Oid, Error> {
    let dir = tempfile::tempdir().unwrap();
    let mirror = Mirror::open_or_clone(spec, &dir.path().join("mirror")).unwrap();
    mirror.fetch(spec)
}

/// The first fetch clones the branch; a commit pushed later arrives with
/// the next fetch into the same mirror, as a descendant.
fn fetch_then_follow(upstream: &Upstream, spec: &RemoteSpec, server: &Server) {
    let dir = tempfile::tempdir().unwrap();
    let mirror = Mirror::open_or_clone(spec, &dir.path().join("mirror")).unwrap();
    let first = mirror
        .fetch(spec)
        .unwrap_or_else(|e| panic!("{}\n{}", chain(&e), server.log()));
    assert_eq!(first, upstream.head());
    upstream.work.write("apps/web/NOTES.md", "a new file\n");
    let second = upstream.commit_and_push("web: notes");
    assert_eq!(mirror.fetch(spec).unwrap(), second);
    assert!(mirror.is_descendant(second, first).unwrap());
}

/// Asserts that a fetch failed as a fetch, naming the URL without its
/// user-info and printing no secret (neither displayed nor debugged).
fn assert_clean_failure(spec: &RemoteSpec, err: &Error, secrets: &[&str]) -> String {
    let text = chain(err);
    assert!(matches!(err, Error::Fetch { .. }), "{text}");
    assert!(
        text.contains(&format!("`{}`", spec.display_url())),
        "{text}"
    );
    for secret in secrets {
        assert!(!text.contains(secret), "{secret} in {text}");
        assert!(!format!("{err:?}").contains(secret), "{secret} in {err:?}");
    }
    text
}

// ---- https ----------------------------------------------------------------

/// A CA and a certificate it issued for 127.0.0.1, as an internal Git
/// server would have.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        require("openssl", "openssl");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A name of its own, so that no other test's CA can pass for it.
        let ca_name = format!(
            "/CN=pacer test CA {}",
            d.file_name().unwrap().to_string_lossy()
        );
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        let mut ca = vec!["req", "-x509", "-nodes", "-days", "2"];
        ca.extend(ec);
        ca.extend(["-keyout", "ca.key", "-out", "ca.pem", "-subj", &ca_name]);
        run("openssl", &ca, d);
        let mut csr = vec!["req", "-new", "-nodes"];
        csr.extend(ec);
        csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
        csr.extend(["-subj", "/CN=127.0.0.1"]);
        run("openssl", &csr, d);
        std::fs::write(
            d.join("server.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        run(
            "openssl",
            &[
                "x509",
                "-req",
                "-days",
                "2",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-extfile",
                "server.ext",
                "-out",
                "server.pem",
            ],
            d,
        );
        Pki { dir }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
}

/// tests/peers/git_https_server.py: `git http-backend` over TLS, refusing
/// any request whose Basic password is not `token`.
fn https_git(base: &Path, pki: &Pki, token: &str) -> Server {
    // The interpreter itself, not a launcher (pyenv's shim, say) that would
    // outlive the kill on drop.
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 is missing: install python3 (.ci/run installs it)");
    let python = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let port = free_port();
    let mut cmd = Command::new(python);
    cmd.arg(project_dir().join("tests/peers/git_https_server.py"))
        .arg(port.to_string())
        .arg(base)
        .arg(pki.dir.path().join("server.pem"))
        .arg(pki.dir.path().join("server.key"))
        .env("GIT_HTTPS_TOKEN", token);
    Server::start(cmd, port, pki.dir.path().join("server.log"))
}

fn https_url(server: &Server, userinfo: &str) -> String {
    format!("https://{userinfo}127.0.0.1:{}/config.git", server.port)
}

#[test]
fn https_token_fetches_and_follows_new_commits() {
    let upstream = Upstream::new();
    let pki = Pki::new();
    let server = https_git(upstream.base.path(), &pki, "tok-RIGHT-1");
    let mut spec = spec(
        https_url(&server, ""),
        GitAuth::Token(Secret::new("tok-RIGHT-1".into())),
    );
    spec.ca_file = Some(pki.ca());
    fetch_then_follow(&upstream, &spec, &server);
    // Everything went over the authenticated smart protocol.
    let log = server.log();
    assert!(log.contains("POST /config.git/git-upload-pack"), "{log}");
}

#[test]
fn https_wrong_token_is_refused_and_never_printed() {
    let upstream = Upstream::new();
    let pki = Pki::new();
    let server = https_git(upstream.base.path(), &pki, "tok-RIGHT-2");
    let cases = [
        ("", "x-access-token"),
        ("deploy@", "deploy"),
        ("deploy:tok-SECRET-URL@", "deploy"),
    ];
    let mut seen = 0;
    for (userinfo, user) in cases {
        let mut spec = spec(
            https_url(&server, userinfo),
            GitAuth::Token(Secret::new("tok-SECRET-WRONG".into())),
        );
        spec.ca_file = Some(pki.ca());
        let err = fetch(&spec).unwrap_err();
        let text = assert_clean_failure(&spec, &err, &["SECRET", "tok-RIGHT-2"]);
        assert!(text.contains("authentication failed"), "{text}");
        let log = server.log();
        let refusals: Vec<&str> = log.lines().filter(|l| l.contains("refused:")).collect();
        let new = &refusals[seen..];
        seen = refusals.len();
        // The server did get a token, under the expected user name...
        let wrong = format!("wrong token for user '{user}'");
        assert!(new.iter().any(|l| l.contains(&wrong)), "{userinfo}: {log}");
        // ...and refused credentials are retried a bounded number of times.
        assert!(new.len() <= 5, "{userinfo}: {log}");
    }
    assert!(!server.log().contains("\" 200 "), "{}", server.log());
}

#[test]
fn https_without_a_token_is_refused_clearly() {
    let upstream = Upstream::new();
    let pki = Pki::new();
    let server = https_git(upstream.base.path(), &pki, "tok-RIGHT-3");
    let mut spec = spec(https_url(&server, ""), GitAuth::None);
    spec.ca_file = Some(pki.ca());
    let err = fetch(&spec).unwrap_err();
    let text = assert_clean_failure(&spec, &err, &["tok-RIGHT-3"]);
    assert!(
        text.contains("the remote requires authentication and no credentials are configured"),
        "{text}"
    );
}

#[test]
fn https_certificate_of_an_untrusted_ca_is_refused_before_the_token_is_sent() {
    let upstream = Upstream::new();
    let trusted = Pki::new();
    let other = Pki::new();
    let server = https_git(upstream.base.path(), &other, "tok-SECRET-4");
    let mut spec = spec(
        https_url(&server, ""),
        GitAuth::Token(Secret::new("tok-SECRET-4".into())),
    );
    spec.ca_file = Some(trusted.ca());
    let err = fetch(&spec).unwrap_err();
    let text = assert_clean_failure(&spec, &err, &["SECRET"]);
    assert!(text.contains("certificate"), "{text}");
    // A request would have been logged before its answer reached pacer.
    let log = server.log();
    assert!(!log.contains("GET /") && !log.contains("POST /"), "{log}");

    // Without a CA file only the system's CAs count.
    spec.ca_file = None;
    let text = assert_clean_failure(&spec, &fetch(&spec).unwrap_err(), &["SECRET"]);
    assert!(text.contains("certificate"), "{text}");

    spec.ca_file = Some(trusted.dir.path().join("missing.pem"));
    let text = assert_clean_failure(&spec, &fetch(&spec).unwrap_err(), &["SECRET"]);
    assert!(text.contains("missing.pem"), "{text}");
}

// ---- ssh ------------------------------------------------------------------

/// `ssh-keygen` into `dir/name`; returns the private key's path.
fn ssh_key(dir: &Path, name: &str, passphrase: &str) -> PathBuf {
    require("ssh-keygen", "openssh-client");
    run(
        "ssh-keygen",
        &[
            "-q", "-t", "ed25519", "-N", passphrase, "-C", name, "-f", name,
        ],
        dir,
    );
    dir.join(name)
}

fn public_key(private: &Path) -> String {
    std::fs::read_to_string(private.with_extension("pub")).unwrap()
}

fn user() -> String {
    let out = Command::new("id").arg("-un").output().expect("running id");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A real sshd on 127.0.0.1, as the current user, with a config, host key
/// and authorized_keys of its own: nothing of the machine's is used.
struct Sshd {
    dir: tempfile::TempDir,
    server: Server,
}

impl Sshd {
    fn start(authorized: &[&Path]) -> Sshd {
        require(SSHD, "openssh-server");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let host_key = ssh_key(d, "host_key", "");
        let keys: String = authorized.iter().map(|k| public_key(k)).collect();
        std::fs::write(d.join("authorized_keys"), keys).unwrap();
        let port = free_port();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "ListenAddress 127.0.0.1:{port}\n\
                 HostKey {}\n\
                 AuthorizedKeysFile {}\n\
                 PidFile {}\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 UsePAM no\n\
                 StrictModes no\n\
                 PermitRootLogin prohibit-password\n\
                 LogLevel VERBOSE\n",
                host_key.display(),
                d.join("authorized_keys").display(),
                d.join("sshd.pid").display(),
            ),
        )
        .unwrap();
        // sshd refuses to start without its privilege separation directory,
        // which only the openssh-server service would create at boot.
        let privsep = Path::new("/run/sshd");
        if !privsep.is_dir() {
            std::fs::create_dir_all(privsep).unwrap_or_else(|e| {
                panic!("sshd needs {}: {e} (create it as root)", privsep.display())
            });
        }
        let mut cmd = Command::new(SSHD);
        cmd.args(["-D", "-e", "-f"]).arg(d.join("sshd_config"));
        let server = Server::start(cmd, port, d.join("sshd.log"));
        Sshd { dir, server }
    }

    /// Its host key as a known_hosts line.
    fn known_hosts_line(&self) -> String {
        let key = public_key(&self.dir.path().join("host_key"));
        let mut fields = key.split_whitespace();
        let (kind, blob) = (fields.next().unwrap(), fields.next().unwrap());
        format!("[127.0.0.1]:{} {kind} {blob}\n", self.server.port)
    }

    /// Its host key's fingerprint, as `ssh-keygen -l` prints it.
    fn fingerprint(&self) -> String {
        let out = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(self.dir.path().join("host_key.pub"))
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        text.split_whitespace().nth(1).unwrap().to_string()
    }

    fn url(&self, bare: &Path) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            user(),
            self.server.port,
            bare.display()
        )
    }

    /// A known_hosts file listing this server, in a fresh temp dir.
    fn known_hosts(&self, keys: &tempfile::TempDir) -> PathBuf {
        let path = keys.path().join("known_hosts");
        std::fs::write(&path, self.known_hosts_line()).unwrap();
        path
    }
}

fn ssh_spec(sshd: &Sshd, upstream: &Upstream, key: &Path, passphrase: Option<&str>) -> RemoteSpec {
    spec(
        sshd.url(&upstream.bare()),
        GitAuth::SshKey {
            path: key.to_path_buf(),
            passphrase: passphrase.map(|p| Secret::new(p.to_string())),
        },
    )
}

#[test]
fn ssh_deploy_key_fetches_and_follows_new_commits() {
    let upstream = Upstream::new();
    let keys = tempfile::tempdir().unwrap();
    let key = ssh_key(keys.path(), "deploy", "");
    let sshd = Sshd::start(&[&key]);
    let mut spec = ssh_spec(&sshd, &upstream, &key, None);
    spec.known_hosts = Some(sshd.known_hosts(&keys));
    fetch_then_follow(&upstream, &spec, &sshd.server);
    assert!(
        sshd.server.log().contains("Accepted publickey"),
        "{}",
        sshd.server.log()
    );
}

#[test]
fn ssh_key_with_a_passphrase() {
    let upstream = Upstream::new();
    let keys = tempfile::tempdir().unwrap();
    let key = ssh_key(keys.path(), "deploy", "pp-RIGHT-1");
    let sshd = Sshd::start(&[&key]);
    let mut spec = ssh_spec(&sshd, &upstream, &key, Some("pp-RIGHT-1"));
    spec.known_hosts = Some(sshd.known_hosts(&keys));
    assert_eq!(
        fetch(&spec).unwrap_or_else(|e| panic!("{}", chain(&e))),
        upstream.head()
    );

    let mut wrong = ssh_spec(&sshd, &upstream, &key, Some("pp-SECRET-WRONG"));
    wrong.known_hosts = spec.known_hosts.clone();
    let err = fetch(&wrong).unwrap_err();
    assert_clean_failure(&wrong, &err, &["SECRET", "pp-RIGHT-1"]);
}

#[test]
fn ssh_key_the_server_does_not_know_is_refused() {
    let upstream = Upstream::new();
    let keys = tempfile::tempdir().unwrap();
    let authorized = ssh_key(keys.path(), "deploy", "");
    let stranger = ssh_key(keys.path(), "stranger", "pp-SECRET-5");
    let sshd = Sshd::start(&[&authorized]);
    let mut spec = ssh_spec(&sshd, &upstream, &stranger, Some("pp-SECRET-5"));
    spec.known_hosts = Some(sshd.known_hosts(&keys));
    let err = fetch(&spec).unwrap_err();
    let text = assert_clean_failure(&spec, &err, &["SECRET"]);
    // sshd hangs up after its MaxAuthTries, before pacer gives up.
    assert!(text.contains("rejected authentication"), "{text}");
    let log = sshd.server.log();
    assert!(log.contains("Failed publickey"), "{log}");
    assert!(!log.contains("Accepted publickey"), "{log}");
}

#[test]
fn ssh_unknown_or_changed_host_key_is_refused() {
    let upstream = Upstream::new();
    let keys = tempfile::tempdir().unwrap();
    let key = ssh_key(keys.path(), "deploy", "pp-SECRET-6");
    let sshd = Sshd::start(&[&key]);
    let mut spec = ssh_spec(&sshd, &upstream, &key, Some("pp-SECRET-6"));
    let known_hosts = keys.path().join("known_hosts");
    spec.known_hosts = Some(known_hosts.clone());

    // Listed under another port only: unknown here.
    let line = sshd.known_hosts_line();
    let elsewhere = line.replace(&format!(":{} ", sshd.server.port), ":1 ");
    std::fs::write(&known_hosts, format!("# ops\n{elsewhere}")).unwrap();
    let text = assert_clean_failure(&spec, &fetch(&spec).unwrap_err(), &["SECRET"]);
    assert!(text.contains("is not in the known_hosts file"), "{text}");
    assert!(text.contains(&sshd.fingerprint()), "{text}");

    // Listed with another key: an impostor, or a re-keyed host.
    let impostor = ssh_key(keys.path(), "impostor", "");
    let impostor_blob = public_key(&impostor)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    let real_blob = line.split_whitespace().nth(2).unwrap();
    std::fs::write(&known_hosts, line.replace(real_blob, &impostor_blob)).unwrap();
    let text = assert_clean_failure(&spec, &fetch(&spec).unwrap_err(), &["SECRET"]);
    assert!(text.contains("does not match"), "{text}");

    // Without a known_hosts file, libgit2 checks ~/.ssh/known_hosts, which
    // can't hold a host key generated a moment ago.
    spec.known_hosts = None;
    let text = assert_clean_failure(&spec, &fetch(&spec).unwrap_err(), &["SECRET"]);
    assert!(text.contains("hostkey"), "{text}");

    // The key was never offered to a host that wasn't verified.
    let log = sshd.server.log();
    assert!(!log.contains("Accepted publickey"), "{log}");
    assert!(!log.contains("Failed publickey"), "{log}");
}
