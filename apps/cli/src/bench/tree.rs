//! `peerconnect bench tree`: one file from a sender to N receivers on a LAN of
//! network namespaces where every host's link is shaped (`--rate`, both ways:
//! each host's uplink and the bridge port toward it), as users would run it:
//! each node is a `peerconnect up --yes` process in its own namespace, the
//! sender driven through its control socket like `peerconnect send`. In one
//! run, on the same links:
//!
//! - `single`: the file to the first receiver alone;
//! - `copies`: the file to all N as separate transfers (`send --to … --to …`);
//! - `tree`: the file to all N down a relay tree (`send --tree`).
//!
//! Each time is from the request to the last receiver's verified, renamed
//! file (the sender's last `transfer_complete`); the sender's uploaded bytes
//! are its transfer counter's growth during the tree run. Needs root,
//! iproute2 and tc; the namespaces are removed at the end.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use peerconnect::Event;
use peerconnect::control::{self, Request};
use serde::Serialize;

use super::sh;

#[derive(clap::Args, Debug, Clone)]
pub struct TreeArgs {
    /// Receivers.
    #[arg(long, default_value_t = 4)]
    receivers: usize,
    /// Size of the file in MiB.
    #[arg(long, default_value_t = 256)]
    file_mib: u64,
    /// Every host's link rate, both ways (a `tc` rate).
    #[arg(long, default_value = "200mbit")]
    rate: String,
    /// Folder for the temporary files (default: the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
struct Report {
    receivers: usize,
    file_bytes: u64,
    rate: String,
    single_s: f64,
    copies_s: f64,
    tree_s: f64,
    /// `tree_s / single_s`.
    tree_x_single: f64,
    /// Bytes the sender uploaded during the tree run.
    sender_upload_bytes: u64,
    /// `sender_upload_bytes / file_bytes`.
    sender_upload_x_file: f64,
    /// Bytes the sender uploaded during the copies run.
    copies_upload_bytes: u64,
}

const PREFIX: &str = "pcbt";
const PORT: u16 = 47411;

fn ip(i: usize) -> String {
    format!("10.125.0.{i}")
}

/// The LAN: hosts 1..=n (host 1 the sender) on one bridge; removed on drop.
struct Lan {
    n: usize,
}

impl Lan {
    fn ns(i: usize) -> String {
        format!("{PREFIX}-h{i}")
    }

    fn bridge() -> String {
        format!("{PREFIX}-br")
    }

    fn up(n: usize, rate: &str) -> anyhow::Result<Lan> {
        // Left over by a run that was killed.
        for i in 1..=n + 64 {
            let _ = Command::new("ip")
                .args(["netns", "del", &Self::ns(i)])
                .stderr(Stdio::null())
                .status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &Self::bridge()])
            .stderr(Stdio::null())
            .status();
        let br = Self::bridge();
        sh(&["ip", "netns", "add", &br])?;
        let lan = Lan { n };
        sh(&["ip", "-n", &br, "link", "add", "br0", "type", "bridge"])?;
        sh(&["ip", "-n", &br, "link", "set", "br0", "up"])?;
        for i in 1..=n {
            let h = Self::ns(i);
            sh(&["ip", "netns", "add", &h])?;
            let (v, b) = (format!("{PREFIX}v{i}"), format!("{PREFIX}b{i}"));
            sh(&["ip", "link", "add", &v, "type", "veth", "peer", "name", &b])?;
            sh(&["ip", "link", "set", &v, "netns", &h])?;
            sh(&["ip", "link", "set", &b, "netns", &br])?;
            sh(&["ip", "-n", &br, "link", "set", &b, "master", "br0", "up"])?;
            sh(&["ip", "-n", &h, "link", "set", &v, "name", "eth0"])?;
            let addr = format!("{}/24", ip(i));
            sh(&["ip", "-n", &h, "addr", "add", &addr, "dev", "eth0"])?;
            sh(&["ip", "-n", &h, "link", "set", "lo", "up"])?;
            sh(&["ip", "-n", &h, "link", "set", "eth0", "up"])?;
            for (ns, dev) in [(h.as_str(), "eth0"), (br.as_str(), b.as_str())] {
                sh(&[
                    "ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "tbf",
                    "rate", rate, "burst", "256kb", "latency", "50ms",
                ])?;
            }
        }
        Ok(lan)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for i in 1..=self.n {
            let _ = Command::new("ip")
                .args(["netns", "del", &Self::ns(i)])
                .status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &Self::bridge()])
            .status();
    }
}

/// A `peerconnect up` process in host `i`; killed on drop.
struct Up {
    child: Child,
    id: String,
}

impl Up {
    fn start(i: usize, dir: &Path, extra: &[String]) -> anyhow::Result<Up> {
        use std::io::BufRead;
        let exe = std::env::current_exe()?;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &Lan::ns(i)])
            .arg(exe)
            .args(["up", "--json", "--quiet", "--no-web", "--no-discovery"])
            .args(["--name", &format!("host{i}")])
            .args(["--listen", &format!("{}:{PORT}", ip(i))])
            .arg("--data-dir")
            .arg(dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut lines = std::io::BufReader::new(child.stdout.take().expect("piped")).lines();
        let id = loop {
            let line = lines
                .next()
                .ok_or_else(|| anyhow::anyhow!("host {i}'s node exited before listening"))??;
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if v["event"] == "listening" {
                break v["id"].as_str().unwrap_or_default().to_string();
            }
        };
        // Keep reading its stdout so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Up { child, id })
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `req` on the node of `dir` until it ends; fails if a transfer of it
/// did not complete.
async fn run_send(dir: &Path, req: Request) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let mut bad = Vec::new();
    let answer = control::call(dir, &req, |e| match &e {
        Event::TransferComplete { failed: 0, .. } => {}
        e if e.ends_transfer() => bad.push(format!("{e:?}")),
        _ => {}
    })
    .await?
    .context("the sender's node is not running")?;
    let took = t0.elapsed();
    if let Err(e) = answer {
        bail!("send failed: {e}");
    }
    if !bad.is_empty() {
        bail!("transfers did not complete: {}", bad.join("; "));
    }
    Ok(took)
}

async fn uploaded(dir: &Path) -> anyhow::Result<u64> {
    let v = control::call(dir, &Request::Transfers, |_| {})
        .await?
        .context("the sender's node is not running")?
        .map_err(anyhow::Error::msg)?;
    v["stats"]["bytes_sent"]
        .as_u64()
        .context("no stats.bytes_sent")
}

/// Removes what the receivers got, so that the next run sends it all again.
fn clear(downloads: &[PathBuf]) -> anyhow::Result<()> {
    for d in downloads {
        if d.exists() {
            std::fs::remove_dir_all(d)?;
        }
        std::fs::create_dir_all(d)?;
    }
    Ok(())
}

pub async fn run(args: TreeArgs, json: bool) -> anyhow::Result<()> {
    let n = args.receivers;
    if n == 0 || n > 200 {
        bail!("--receivers must be 1..=200");
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("bench tree makes network namespaces: run it as root");
    }
    let tmp = match &args.dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    let file_bytes = args.file_mib << 20;
    let src = tmp.path().join("bench-tree.bin");
    super::write_random(&src, file_bytes, 0x9e37_79b9)?;
    let _lan = Lan::up(n + 1, &args.rate)
        .context("creating network namespaces (needs root, iproute2 and tc)")?;
    let sender_dir = tmp.path().join("h1");
    let sender = Up::start(1, &sender_dir, &[])?;
    let sender_addr = format!("{}:{PORT}", ip(1));
    let mut receivers = Vec::new();
    let mut downloads = Vec::new();
    for i in 2..=n + 1 {
        let dl = tmp.path().join(format!("dl{i}"));
        let extra = [
            "--yes".to_string(),
            "--connect".to_string(),
            sender_addr.clone(),
            "--downloads".to_string(),
            dl.to_string_lossy().into_owned(),
        ];
        receivers.push(Up::start(i, &tmp.path().join(format!("h{i}")), &extra)?);
        downloads.push(dl);
    }
    // Every receiver connected to the sender.
    let ids: Vec<String> = receivers.iter().map(|r| r.id.clone()).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = control::call(&sender_dir, &Request::Peers, |_| {})
            .await?
            .context("the sender's node is not running")?
            .map_err(anyhow::Error::msg)?;
        let connected: Vec<&str> = v
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|p| p["connected"] == true)
                    .filter_map(|p| p["id"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        if ids.iter().all(|id| connected.contains(&id.as_str())) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the receivers did not all connect to the sender within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let send = |to: Vec<String>, tree: bool| Request::Send {
        to,
        paths: vec![src.clone()],
        wait_secs: Some(5.0),
        tree,
        room: None,
        pin: None,
    };
    let say = |what: &str| {
        if !json {
            eprintln!("{what}");
        }
    };
    say("single: the file to one receiver");
    clear(&downloads)?;
    let single = run_send(&sender_dir, send(vec![ids[0].clone()], false)).await?;
    say(&format!("copies: the file to {n} receivers, one copy each"));
    clear(&downloads)?;
    let before = uploaded(&sender_dir).await?;
    let copies = run_send(&sender_dir, send(ids.clone(), false)).await?;
    let copies_upload = uploaded(&sender_dir).await? - before;
    say(&format!(
        "tree: the file to {n} receivers down a relay tree"
    ));
    clear(&downloads)?;
    let before = uploaded(&sender_dir).await?;
    let tree = run_send(&sender_dir, send(ids.clone(), true)).await?;
    let tree_upload = uploaded(&sender_dir).await? - before;
    for d in &downloads {
        let got = std::fs::metadata(d.join("bench-tree.bin"))
            .with_context(|| format!("no file in {}", d.display()))?
            .len();
        if got != file_bytes {
            bail!("{} holds {got} bytes, not {file_bytes}", d.display());
        }
    }
    drop(receivers);
    drop(sender);
    let r = Report {
        receivers: n,
        file_bytes,
        rate: args.rate.clone(),
        single_s: single.as_secs_f64(),
        copies_s: copies.as_secs_f64(),
        tree_s: tree.as_secs_f64(),
        tree_x_single: tree.as_secs_f64() / single.as_secs_f64(),
        sender_upload_bytes: tree_upload,
        sender_upload_x_file: tree_upload as f64 / file_bytes as f64,
        copies_upload_bytes: copies_upload,
    };
    if json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "{:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>13} {:>8}",
            "receivers",
            "file MiB",
            "rate",
            "single s",
            "copies s",
            "tree s",
            "tree x single",
            "up x file"
        );
        println!(
            "{:>9} {:>9} {:>9} {:>9.2} {:>9.2} {:>9.2} {:>13.2} {:>8.2}",
            r.receivers,
            args.file_mib,
            r.rate,
            r.single_s,
            r.copies_s,
            r.tree_s,
            r.tree_x_single,
            r.sender_upload_x_file
        );
    }
    Ok(())
}
