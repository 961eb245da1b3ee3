//! Test harness for multi-node PeerConnect tests: private virtual LANs of
//! network namespaces, running code inside a namespace, waiting on conditions,
//! and the `peerconnect` binary.
//!
//! Safety rule: traffic only ever flows on loopback or inside namespaces made
//! here; every [`Lan`] removes what it made when dropped.

pub mod crash;
pub mod http;
pub mod proxy;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Polls `cond` until it returns `Some`, or fails after `timeout` with `what`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut cond: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for the first event matching `pick` on `events`, failing after `timeout`.
pub async fn next_matching<T>(
    events: &mut peerconnect::EventStream,
    timeout: Duration,
    what: &str,
    mut pick: impl FnMut(&peerconnect::Event) -> Option<T>,
) -> T {
    let fut = async {
        loop {
            match events.recv().await {
                Some(e) => {
                    if let Some(v) = pick(&e) {
                        return v;
                    }
                }
                None => panic!("event stream ended while waiting for {what}"),
            }
        }
    };
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// Path of the `peerconnect` binary of this workspace's build (built by the test
/// command before the tests run: `cargo build -p peerconnect-cli`).
/// `peerconnect up --json --no-web --no-discovery --listen LISTEN --data-dir
/// DIR` with stdin closed: a loopback node for [`UpProcess::spawn`], to which
/// a test adds its own arguments.
pub fn up_command(dir: &std::path::Path, listen: &str) -> Command {
    let mut cmd = Command::new(peerconnect_bin());
    cmd.args([
        "up",
        "--json",
        "--no-web",
        "--no-discovery",
        "--listen",
        listen,
    ])
    .arg("--data-dir")
    .arg(dir)
    .stdin(std::process::Stdio::null());
    cmd
}

/// Runs `find` (a `peerconnect find … --json` command, made anew for each
/// try) until it finds something, retrying while it says "not found" (exit
/// 3), e.g. until a peer's DHT record is published; panics after `timeout`.
/// Its output.
pub fn find_until_found(
    timeout: Duration,
    mut find: impl FnMut() -> Command,
) -> std::process::Output {
    let deadline = Instant::now() + timeout;
    loop {
        let out = find().output().unwrap();
        if out.status.success() {
            return out;
        }
        assert_eq!(
            out.status.code(),
            Some(3),
            "find failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(Instant::now() < deadline, "never found");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `len` bytes of a fixed xorshift sequence (a file's content that differs
/// by seed and compresses badly).
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn peerconnect_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PEERCONNECT_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let p = target.join(profile).join("peerconnect");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build -p peerconnect-cli` first (the README's test command does)",
        p.display()
    );
    p
}

/// Why namespaces cannot be used here, or `None` if they can.
pub fn netns_unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("network namespaces need root".into());
    }
    match Command::new("ip").args(["netns", "list"]).output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "`ip netns` fails: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("`ip` (iproute2) is not available: {e}")),
    }
}

fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

static LAN_SEQ: AtomicU32 = AtomicU32::new(0);

/// A private LAN: `n` hosts (namespaces) on one bridge, addresses
/// 10.77.0.1..n/24, each host with multicast and broadcast routes on eth0.
/// Removed on drop.
#[derive(Debug)]
pub struct Lan {
    prefix: String,
    hosts: Vec<String>,
    bridge: String,
}

impl Lan {
    /// Makes the LAN, or returns why it cannot be made here (the caller skips
    /// with that reason).
    pub fn up(n: usize) -> Result<Lan, String> {
        if let Some(why) = netns_unavailable() {
            return Err(why);
        }
        let seq = LAN_SEQ.fetch_add(1, Ordering::SeqCst);
        let prefix = format!(
            "pc{}{}",
            std::process::id() % 100_000,
            (b'a' + (seq % 26) as u8) as char
        );
        let bridge = format!("{prefix}-br");
        let mut lan = Lan {
            prefix: prefix.clone(),
            hosts: Vec::new(),
            bridge: bridge.clone(),
        };
        sh(&["ip", "netns", "add", &bridge])?;
        sh(&["ip", "-n", &bridge, "link", "add", "br0", "type", "bridge"])?;
        sh(&["ip", "-n", &bridge, "link", "set", "br0", "up"])?;
        for i in 1..=n {
            let h = format!("{prefix}-h{i}");
            sh(&["ip", "netns", "add", &h])?;
            lan.hosts.push(h.clone());
            let v = format!("{prefix}v{i}");
            let b = format!("{prefix}b{i}");
            sh(&["ip", "link", "add", &v, "type", "veth", "peer", "name", &b])?;
            sh(&["ip", "link", "set", &v, "netns", &h])?;
            sh(&["ip", "link", "set", &b, "netns", &bridge])?;
            sh(&[
                "ip", "-n", &bridge, "link", "set", &b, "master", "br0", "up",
            ])?;
            sh(&["ip", "-n", &h, "link", "set", &v, "name", "eth0"])?;
            let addr = format!("10.77.0.{i}/24");
            sh(&["ip", "-n", &h, "addr", "add", &addr, "dev", "eth0"])?;
            sh(&["ip", "-n", &h, "link", "set", "lo", "up"])?;
            sh(&["ip", "-n", &h, "link", "set", "eth0", "up"])?;
            sh(&["ip", "-n", &h, "route", "add", "224.0.0.0/4", "dev", "eth0"])?;
            sh(&[
                "ip",
                "-n",
                &h,
                "route",
                "add",
                "255.255.255.255/32",
                "dev",
                "eth0",
            ])?;
        }
        Ok(lan)
    }

    /// Namespace name of host `i` (1-based).
    pub fn ns(&self, i: usize) -> &str {
        &self.hosts[i - 1]
    }

    pub fn ip(&self, i: usize) -> std::net::Ipv4Addr {
        std::net::Ipv4Addr::new(10, 77, 0, i as u8)
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Shapes every host's link to `rate` (a `tc` rate such as `100mbit`) both
    /// ways: its uplink (eth0's egress, token bucket) and its downlink (the
    /// bridge port's egress toward it).
    pub fn shape(&self, rate: &str) -> Result<(), String> {
        for i in 1..=self.len() {
            let b = format!("{}b{i}", self.prefix);
            for (ns, dev) in [(self.ns(i), "eth0"), (self.bridge.as_str(), b.as_str())] {
                sh(&[
                    "ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "tbf",
                    "rate", rate, "burst", "256kb", "latency", "50ms",
                ])?;
            }
        }
        Ok(())
    }

    /// Drops all IPv4 and IPv6 multicast in and out of every host (nftables), so
    /// only broadcast and unicast cross the LAN. Errs if `nft` is missing.
    pub fn drop_multicast(&self) -> Result<(), String> {
        self.nft_drop("ip daddr 224.0.0.0/4 drop; ip6 daddr ff00::/8 drop;")
    }

    /// Drops PeerConnect's own discovery (its IPv4 and IPv6 groups and subnet
    /// broadcast) in and out of every host, and no other multicast: a network
    /// that passes mDNS but not our group. Errs if `nft` is missing.
    pub fn drop_peerconnect_discovery(&self) -> Result<(), String> {
        use peerconnect::config::{DEFAULT_GROUP_V4, DEFAULT_GROUP_V6};
        self.nft_drop(&format!(
            "ip daddr {{ {DEFAULT_GROUP_V4}, 10.77.0.255, 255.255.255.255 }} drop; \
             ip6 daddr {DEFAULT_GROUP_V6} drop;"
        ))
    }

    /// Drops multicast and broadcast (a Wi-Fi with client isolation, or a
    /// filtering router): LAN discovery cannot work, only unicast crosses.
    pub fn drop_multicast_and_broadcast(&self) -> Result<(), String> {
        self.nft_drop(
            "ip daddr 224.0.0.0/4 drop; ip6 daddr ff00::/8 drop; \
             ip daddr 10.77.0.255 drop; ip daddr 255.255.255.255 drop;",
        )
    }

    /// Cuts the LAN in two (a switch between two rooms failing): every host
    /// of `side` drops all packets from and to the other hosts, and they from
    /// and to it. Undone by [`heal`](Self::heal).
    pub fn cut(&self, side: &[usize]) -> Result<(), String> {
        let addrs = |hosts: &mut dyn Iterator<Item = usize>| {
            hosts
                .map(|i| self.ip(i).to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        for i in 1..=self.len() {
            let mine = side.contains(&i);
            let mut others = (1..=self.len()).filter(|j| side.contains(j) != mine);
            let others = addrs(&mut others);
            // IPv6 off the namespace too (loopback aside): nodes learn each
            // other's link-local IPv6 addresses (DNS-SD), which a cut of the
            // IPv4 addresses alone would leave connected.
            let rules = format!(
                "table inet lancut {{
  chain in {{ type filter hook input priority 0; ip saddr {{ {others} }} drop; meta nfproto ipv6 iifname != \"lo\" drop; }}
  chain out {{ type filter hook output priority 0; ip daddr {{ {others} }} drop; meta nfproto ipv6 oifname != \"lo\" drop; }}
}}"
            );
            self.nft(self.ns(i), &rules)?;
        }
        Ok(())
    }

    /// Undoes [`cut`](Self::cut).
    pub fn heal(&self) -> Result<(), String> {
        for h in &self.hosts {
            sh(&[
                "ip", "netns", "exec", h, "nft", "delete", "table", "inet", "lancut",
            ])?;
        }
        Ok(())
    }

    fn nft_drop(&self, rule: &str) -> Result<(), String> {
        for h in &self.hosts {
            let rules = format!(
                "table inet lanfilter {{
  chain in {{ type filter hook input priority 0; {rule} }}
  chain out {{ type filter hook output priority 0; {rule} }}
}}"
            );
            self.nft(h, &rules)?;
        }
        Ok(())
    }

    /// Loads nftables `rules` into host namespace `ns`.
    fn nft(&self, ns: &str, rules: &str) -> Result<(), String> {
        let path = std::env::temp_dir().join(format!("{}-nft.conf", self.prefix));
        std::fs::write(&path, rules).map_err(|e| e.to_string())?;
        sh(&[
            "ip",
            "netns",
            "exec",
            ns,
            "nft",
            "-f",
            &path.to_string_lossy(),
        ])
    }

    /// A `Command` that runs `program` inside host `i`.
    pub fn command(&self, i: usize, program: &std::path::Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.ns(i)]).arg(program);
        c
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for h in &self.hosts {
            let _ = sh(&["ip", "netns", "del", h]);
        }
        let _ = sh(&["ip", "netns", "del", &self.bridge]);
    }
}

/// Runs `make()`'s future to completion on a new thread that has entered network
/// namespace `ns`, with its own current-thread tokio runtime. Sockets made inside
/// live in that namespace.
pub fn in_netns<T, F, Fut>(ns: &str, make: F) -> std::thread::JoinHandle<T>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
{
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        use std::os::fd::AsRawFd;
        // SAFETY: setns on a valid namespace fd changes only this thread's network
        // namespace.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(make())
    })
}

/// A `peerconnect up --json` child process (or any `peerconnect … --json` that
/// keeps running), its stdout parsed into JSON events by a reader thread.
/// Killed on drop, so a failed test leaves no node running.
#[derive(Debug)]
pub struct UpProcess {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<serde_json::Value>,
    /// Every event read so far, in order.
    pub seen: Vec<serde_json::Value>,
}

impl UpProcess {
    /// Spawns `cmd` (a `peerconnect up --json …` command) with stdout captured
    /// (pipe its stdin first to write to it with [`take_stdin`](Self::take_stdin)).
    pub fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("spawn peerconnect up");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let v: serde_json::Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads events until `done(seen so far)` holds, or panics after `timeout`.
    pub fn until(
        &mut self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&[serde_json::Value]) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        while !done(&self.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => self.seen.push(v),
                Err(_) => panic!("timed out waiting for {what}; saw {:#?}", self.seen),
            }
        }
    }

    /// Starts `peerconnect up --json --data-dir DIR ARGS…` inside host `host` of `lan`.
    pub fn start(lan: &Lan, host: usize, dir: &std::path::Path, args: &[&str]) -> Self {
        let mut cmd = lan.command(host, &peerconnect_bin());
        cmd.args(["up", "--json", "--data-dir"]).arg(dir).args(args);
        Self::spawn(cmd)
    }

    /// The node's PeerId from its `listening` event (which must have been read).
    pub fn id(&self) -> String {
        self.seen
            .iter()
            .find(|v| v["event"] == "listening")
            .and_then(|v| v["id"].as_str())
            .expect("listening event")
            .to_string()
    }

    /// Verification codes shown for connected peers, by peer id.
    pub fn codes(&self) -> BTreeMap<String, String> {
        self.seen
            .iter()
            .filter(|v| v["event"] == "peer_connected")
            .map(|v| {
                (
                    v["peer"]["id"].as_str().unwrap_or_default().to_string(),
                    v["verification_code"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect()
    }

    /// The `listening` event (`id`, `name`, `addrs`), waiting for it if needed.
    pub fn listening(&mut self, timeout: Duration) -> serde_json::Value {
        self.until(timeout, "the listening event", |s| {
            s.iter().any(|v| v["event"] == "listening")
        });
        self.seen
            .iter()
            .find(|v| v["event"] == "listening")
            .cloned()
            .expect("listening event")
    }

    /// The first event `pick` accepts (already read, or the next ones),
    /// panicking after `timeout`.
    pub fn first(
        &mut self,
        timeout: Duration,
        what: &str,
        pick: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        self.until(timeout, what, |s| s.iter().any(&pick));
        self.seen
            .iter()
            .find(|v| pick(v))
            .cloned()
            .expect("until saw it")
    }

    /// Writes one line to the child's (piped) stdin.
    pub fn type_line(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().expect("stdin was not piped");
        writeln!(stdin, "{line}").expect("write to stdin");
    }

    /// The child's stdin, if it was piped.
    pub fn take_stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.child.stdin.take()
    }

    /// Waits up to `timeout` for the process to exit by itself; its status
    /// and every event it printed.
    pub fn finish(
        mut self,
        timeout: Duration,
    ) -> (std::process::ExitStatus, Vec<serde_json::Value>) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "process did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader thread ends at end of output, which closes the channel.
        while let Ok(v) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(v);
        }
        (status, std::mem::take(&mut self.seen))
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(self, timeout: Duration) -> std::process::ExitStatus {
        self.finish(timeout).0
    }

    /// Kills the process with SIGKILL; every event it printed before dying.
    pub fn kill(mut self) -> Vec<serde_json::Value> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The reader thread ends at end of output, which closes the channel.
        while let Ok(v) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(v);
        }
        std::mem::take(&mut self.seen)
    }

    /// Stops the node with SIGTERM and checks it exits cleanly; every event
    /// it printed.
    pub fn stop(mut self) -> Vec<serde_json::Value> {
        // SAFETY: sending SIGTERM to our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().expect("wait");
        assert!(
            status.success(),
            "peerconnect up exited with {status} on SIGTERM"
        );
        while let Ok(v) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(v);
        }
        std::mem::take(&mut self.seen)
    }
}

impl Drop for UpProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Prints why a test is skipped (visible with `--nocapture` and in CI logs).
pub fn skip(test: &str, why: &str) {
    eprintln!("SKIPPED {test}: {why}");
}
