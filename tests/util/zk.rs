//! A real ZooKeeper (Debian's `zookeeper` package, standalone) on
//! 127.0.0.1 for the high-availability tests: started on a free port in a
//! temp dir, stopped and started again on the same port and data for an
//! outage, killed on drop.

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
        assert!(
            std::path::Path::new("/usr/share/java/zookeeper.jar").exists(),
            "ZooKeeper is not installed: apt-get install zookeeper (.ci/run does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        std::fs::write(
            dir.path().join("zoo.cfg"),
            format!(
                "tickTime=500\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
                 admin.enableServer=false\nminSessionTimeout=1000\nmaxSessionTimeout=60000\n\
                 4lw.commands.whitelist=ruok\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let mut zk = Zk {
            port,
            dir,
            child: None,
        };
        zk.resume();
        zk
    }

    /// `zk://127.0.0.1:<port><root>`.
    pub fn url(&self, root: &str) -> String {
        format!("zk://127.0.0.1:{}{root}", self.port)
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("zk.log")
    }

    /// Starts the server (again) and waits until it answers `ruok`.
    pub fn resume(&mut self) {
        let log = std::fs::File::create(self.log()).unwrap();
        let child = Command::new("java")
            .arg(format!("-Dzookeeper.log.dir={}", self.dir.path().display()))
            .args(["-Xmx256m", "-cp", CLASSPATH])
            .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
            .arg(self.dir.path().join("zoo.cfg"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("starting java");
        self.child = Some(child);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if self.ruok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "ZooKeeper did not answer within 30 s:\n{}",
            std::fs::read_to_string(self.log()).unwrap_or_default()
        );
    }

    fn ruok(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut out = String::new();
        s.write_all(b"ruok").is_ok() && s.read_to_string(&mut out).is_ok() && out == "imok"
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
