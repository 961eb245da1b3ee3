//! A node of this binary run as a child process (`peerconnect up` on
//! 127.0.0.1, discovery off), so that its memory and descriptors are its own
//! and can be read from `/proc`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use peerconnect::PeerId;

pub struct ChildNode {
    child: Child,
    pub addr: SocketAddr,
    pub web: SocketAddr,
    pub id: PeerId,
    /// The web UI's guest PIN.
    pub pin: String,
    pub data_dir: PathBuf,
}

impl ChildNode {
    /// Starts `peerconnect up` named `name` on `dir` with `extra` options, and
    /// returns once it listens.
    pub fn start(dir: &Path, name: &str, extra: &[String]) -> anyhow::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["up", "--no-discovery", "--json", "--quiet", "--name", name])
            .args(["--listen", "127.0.0.1:0", "--web", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let out = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(out).lines();
        let (mut listening, mut web) = (None, None);
        while listening.is_none() || web.is_none() {
            let line = lines
                .next()
                .ok_or_else(|| anyhow::anyhow!("the node exited before listening"))??;
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            match v["event"].as_str() {
                Some("listening") => listening = Some(v),
                Some("web") => web = Some(v),
                _ => {}
            }
        }
        let (listening, web) = (listening.expect("seen"), web.expect("seen"));
        // Keep reading its stdout so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let addr = listening["addrs"][0]
            .as_str()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no address in {listening}"))?;
        let web_addr = listening["web"]
            .as_str()
            .and_then(|u| u.strip_prefix("http://"))
            .and_then(|u| u.split('/').next())
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no web address in {listening}"))?;
        let id = listening["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no id in {listening}"))?;
        let pin = web["pin"].as_str().unwrap_or_default().to_string();
        Ok(Self {
            child,
            addr,
            web: web_addr,
            id,
            pin,
            data_dir: dir.to_path_buf(),
        })
    }

    /// Resident memory in MB and open descriptors.
    pub fn sample(&self) -> (f64, u64) {
        let pid = self.child.id();
        let rss_kb = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            })
            .unwrap_or(0.0);
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count() as u64)
            .unwrap_or(0);
        (rss_kb / 1024.0, fds)
    }
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
