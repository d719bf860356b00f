//! A real ZooKeeper (Debian's `zookeeper` package) on 127.0.0.1 for the
//! high-availability tests: one server ([`Zk::start`]) or an ensemble
//! ([`Zk::ensemble`]), each on free ports in a temp dir; stopped and started
//! again on the same ports and data for an outage, frozen (SIGSTOP) to cut
//! it off from the others, killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Also compiled into `benches/ha.rs` (`#[path]`): nothing here reaches
/// outside this file.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}

const CLASSPATH: &str = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar";

pub struct Zk {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Zk {
    /// A running server; panics with a hint when the package is missing.
    pub fn start() -> Zk {
        let mut zk = Zk::configured(free_port(), "", None);
        zk.resume();
        zk
    }

    /// `n` servers forming one ensemble, each serving once they all run.
    pub fn ensemble(n: usize) -> Vec<Zk> {
        let ports: Vec<(u16, u16, u16)> = (0..n)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let servers: String = ports
            .iter()
            .enumerate()
            .map(|(i, (_, q, e))| format!("server.{}=127.0.0.1:{q}:{e}\n", i + 1))
            .collect();
        let mut zks: Vec<Zk> = ports
            .iter()
            .enumerate()
            .map(|(i, (c, _, _))| {
                let extra = format!("initLimit=10\nsyncLimit=5\n{servers}");
                Zk::configured(*c, &extra, Some(i + 1))
            })
            .collect();
        for z in &mut zks {
            z.spawn();
        }
        for z in &zks {
            z.wait_serving();
        }
        zks
    }

    fn configured(port: u16, extra: &str, myid: Option<usize>) -> Zk {
        assert!(
            std::path::Path::new("/usr/share/java/zookeeper.jar").exists(),
            "ZooKeeper is not installed: apt-get install zookeeper (.ci/run does)"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        if let Some(id) = myid {
            std::fs::write(dir.path().join("data/myid"), id.to_string()).unwrap();
        }
        std::fs::write(
            dir.path().join("zoo.cfg"),
            format!(
                "tickTime=500\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
                 admin.enableServer=false\nminSessionTimeout=1000\nmaxSessionTimeout=60000\n\
                 4lw.commands.whitelist=ruok,srvr\n{extra}",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        Zk {
            port,
            dir,
            child: None,
        }
    }

    /// `zk://127.0.0.1:<port><root>`.
    pub fn url(&self, root: &str) -> String {
        format!("zk://127.0.0.1:{}{root}", self.port)
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("zk.log")
    }

    /// Starts the server (again) and waits until it serves.
    pub fn resume(&mut self) {
        self.spawn();
        self.wait_serving();
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.log()).unwrap();
        // QuorumPeerMain runs a lone server as ZooKeeperServerMain does.
        let child = Command::new("java")
            .arg(format!("-Dzookeeper.log.dir={}", self.dir.path().display()))
            .args(["-Xmx256m", "-cp", CLASSPATH])
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(self.dir.path().join("zoo.cfg"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("starting java");
        self.child = Some(child);
    }

    /// Until `srvr` says the server serves (standalone, leader or follower).
    fn wait_serving(&self) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if self.four("srvr").contains("Mode: ") {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "ZooKeeper did not serve within 60 s:\n{}",
            std::fs::read_to_string(self.log()).unwrap_or_default()
        );
    }

    /// A four-letter command's answer ("" when it can't be asked).
    fn four(&self, cmd: &str) -> String {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return String::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut out = String::new();
        if s.write_all(cmd.as_bytes()).is_ok() {
            let _ = s.read_to_string(&mut out);
        }
        out
    }

    /// Freezes (`-STOP`) or thaws (`-CONT`) the server: cut off from its
    /// clients and its ensemble while its process lives on.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid}");
    }

    /// Kills the server (its data stays for [`Zk::resume`]).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Zk {
    fn drop(&mut self) {
        self.stop();
    }
}
