//! `peerconnect bench transfer`: file transfer, file to file, on loopback, with
//! TLS and BLAKE3 verification, as a user would run it: the receiver is a
//! separate `peerconnect up --yes` process, the sender a node in this process.
//!
//! 1. One big file (`--size`, default 2 GiB): MB/s from the offer to the
//!    sender's `transfer_complete` (which waits for the receiver's verified,
//!    renamed file), CPU seconds and peak RSS of each side.
//! 2. Many small files (`--files` × `--file-size`, default 10,000 × 4 KiB) in
//!    one folder: files per second.
//! 3. Beside them, in the same run: iperf3 single stream on 127.0.0.1 (when
//!    installed) and this machine's single-thread BLAKE3 speed.
//!
//! `--vs` runs only the big file, side by side with what it is judged against:
//! for each of `--rounds` rounds, our transfer, a plain TLS copy of the same
//! file to a file (one connection with our TLS setup, no hashing, no
//! protocol) and `iperf3` moving as many bytes over one TCP stream, in turn;
//! it prints each round and the median ratios (ours ÷ each).
//!
//! Source files are written first (so they sit in the page cache, as a file
//! just saved does); everything lives in one temporary folder on the same
//! disk (`--dir`, default the system temp dir), removed at the end.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use peerconnect::{Config, Event, Node};
use serde::Serialize;

#[derive(clap::Args, Debug, Clone)]
pub struct TransferArgs {
    /// Bytes of the big file.
    #[arg(long, default_value_t = 2 << 30)]
    size: u64,
    /// Number of small files.
    #[arg(long, default_value_t = 10_000)]
    files: usize,
    /// Bytes of each small file.
    #[arg(long, default_value_t = 4096)]
    file_size: usize,
    /// Folder for the temporary files (default: the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Skip the iperf3 baseline.
    #[arg(long)]
    no_iperf: bool,
    /// Only the big file, against a plain TLS file copy and iperf3 in turn,
    /// with ratios.
    #[arg(long)]
    vs: bool,
    /// Rounds of `--vs` (each runs all three).
    #[arg(long, default_value_t = 3, requires = "vs")]
    rounds: usize,
}

/// Resources one process used during one measurement.
#[derive(Debug, Clone, Default, Serialize)]
struct Side {
    cpu_seconds: f64,
    peak_rss_mb: f64,
}

#[derive(Debug, Clone, Serialize)]
struct Run {
    case: String,
    files: usize,
    bytes: u64,
    seconds: f64,
    mbytes_per_s: f64,
    files_per_s: f64,
    sender: Side,
    receiver: Side,
}

#[derive(Debug, Clone, Serialize)]
struct Report {
    runs: Vec<Run>,
    iperf3_mbytes_per_s: Option<f64>,
    blake3_mbytes_per_s: f64,
    /// `std::fs::copy` of the big file on the same disk.
    local_copy_mbytes_per_s: f64,
    /// Copying the small files one by one on the same disk, files/s.
    local_copy_files_per_s: f64,
    /// One TLS connection on 127.0.0.1, memory to memory, in this process.
    tls_mbytes_per_s: f64,
    /// One mux bulk stream over one TLS lane, memory to memory, in this process.
    mux_mbytes_per_s: f64,
    targets: serde_json::Value,
}

pub async fn run(args: TransferArgs, json: bool) -> anyhow::Result<()> {
    if args.vs {
        return run_vs(args, json).await;
    }
    let tmp = scratch_dir(&args)?;
    let root = tmp.path().to_path_buf();
    let say = |s: &str| {
        if !json {
            eprintln!("{s}");
        }
    };

    say(&format!(
        "writing a {} MiB file and {} small files in {}",
        args.size >> 20,
        args.files,
        root.display()
    ));
    let src = root.join("src");
    std::fs::create_dir_all(src.join("small"))?;
    let big = src.join("big.bin");
    write_file(&big, args.size)?;
    let mut block = random_bytes(args.file_size, 99);
    for i in 0..args.files {
        // each file a little different
        let n = block.len().min(8);
        block[..n].copy_from_slice(&(i as u64).to_le_bytes()[..n]);
        std::fs::write(src.join(format!("small/f{i:06}.bin")), &block)?;
    }

    let blake3_mbytes_per_s = blake3_speed();
    say("copying the big file locally (the disk's file-to-file ceiling)");
    let t = Instant::now();
    std::fs::copy(&big, root.join("copy.bin"))?;
    let copy_mbytes_per_s = args.size as f64 / t.elapsed().as_secs_f64() / 1e6;
    std::fs::remove_file(root.join("copy.bin"))?;

    let (mut receiver, node, peer) = sender_and_receiver(&root).await?;
    let mut runs = Vec::new();

    say("sending the big file");
    runs.push(
        measure(
            &node,
            peer,
            &mut receiver,
            &big,
            "one big file",
            1,
            args.size,
        )
        .await?,
    );
    let _ = std::fs::remove_file(receiver.downloads.join("big.bin"));
    say("copying the small files locally (the disk's files-per-second ceiling)");
    let t = Instant::now();
    let copy_dir = root.join("copy-small");
    std::fs::create_dir(&copy_dir)?;
    for e in std::fs::read_dir(src.join("small"))? {
        let e = e?;
        std::fs::copy(e.path(), copy_dir.join(e.file_name()))?;
    }
    let copy_files_per_s = args.files as f64 / t.elapsed().as_secs_f64();
    say("sending the small files");
    runs.push(
        measure(
            &node,
            peer,
            &mut receiver,
            &src.join("small"),
            "small files",
            args.files,
            (args.files * args.file_size) as u64,
        )
        .await?,
    );
    node.shutdown().await?;
    receiver.stop();

    say("measuring TLS and a mux stream, memory to memory");
    let (tls_mbytes_per_s, mux_mbytes_per_s) = memory_to_memory(args.size).await?;
    let iperf3_mbytes_per_s = if args.no_iperf {
        None
    } else {
        say("running iperf3");
        iperf3(None)
    };
    let report = Report {
        runs,
        iperf3_mbytes_per_s,
        blake3_mbytes_per_s,
        local_copy_mbytes_per_s: copy_mbytes_per_s,
        local_copy_files_per_s: copy_files_per_s,
        tls_mbytes_per_s,
        mux_mbytes_per_s,
        targets: serde_json::json!({
            "big_file_mbytes_per_s": 1500,
            "peak_rss_mb": 100,
            "small_files_per_s": 5000,
        }),
    };
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_table(&report);
    }
    drop(tmp);
    Ok(())
}

fn print_table(r: &Report) {
    println!(
        "{:<14} {:>7} {:>10} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "case",
        "files",
        "MB",
        "seconds",
        "MB/s",
        "files/s",
        "cpu snd",
        "cpu rcv",
        "rss snd",
        "rss rcv"
    );
    for x in &r.runs {
        println!(
            "{:<14} {:>7} {:>10.1} {:>8.2} {:>9.0} {:>9.0} {:>8.2}s {:>8.2}s {:>7.1}MB {:>7.1}MB",
            x.case,
            x.files,
            x.bytes as f64 / 1e6,
            x.seconds,
            x.mbytes_per_s,
            x.files_per_s,
            x.sender.cpu_seconds,
            x.receiver.cpu_seconds,
            x.sender.peak_rss_mb,
            x.receiver.peak_rss_mb,
        );
    }
    match r.iperf3_mbytes_per_s {
        Some(v) => println!("iperf3 single stream, 127.0.0.1: {v:.0} MB/s"),
        None => println!("iperf3: not run (not installed or --no-iperf)"),
    }
    println!(
        "memory to memory in one process: TLS {:.0} MB/s, mux bulk stream {:.0} MB/s",
        r.tls_mbytes_per_s, r.mux_mbytes_per_s
    );
    println!("BLAKE3, one thread: {:.0} MB/s", r.blake3_mbytes_per_s);
    println!(
        "local copy on the same disk: big file {:.0} MB/s, small files {:.0} files/s",
        r.local_copy_mbytes_per_s, r.local_copy_files_per_s
    );
    println!("targets: big file ≥ 1500 MB/s, peak RSS < 100 MB, small files ≥ 5000 files/s");
}

/// The bench's temporary folder, in `--dir` or the system temp dir; removed
/// when dropped.
fn scratch_dir(args: &TransferArgs) -> anyhow::Result<tempfile::TempDir> {
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    tempfile::Builder::new()
        .prefix("peerconnect-bench-")
        .tempdir_in(&base)
        .with_context(|| format!("temp dir in {}", base.display()))
}

/// The receiving `up` process under `root/receiver` and the sending node in
/// this process (`root/sender`), connected.
async fn sender_and_receiver(root: &Path) -> anyhow::Result<(Receiver, Node, peerconnect::PeerId)> {
    let receiver = Receiver::start(&root.join("receiver"))?;
    let mut config = Config::local(root.join("sender"));
    config.name = "bench-sender".into();
    let node = Node::start(config).await?;
    let peer = node.connect(receiver.addr, None).await?;
    Ok((receiver, node, peer))
}

async fn measure(
    node: &Node,
    peer: peerconnect::PeerId,
    receiver: &mut Receiver,
    path: &Path,
    case: &str,
    files: usize,
    bytes: u64,
) -> anyhow::Result<Run> {
    reset_peak_rss(None);
    reset_peak_rss(Some(receiver.child.id()));
    let (cpu_s0, cpu_r0) = (cpu_seconds(None), cpu_seconds(Some(receiver.child.id())));
    let mut events = node.events();
    let t0 = Instant::now();
    let id = node.send_files(peer, &[path.to_path_buf()]).await?;
    let end = loop {
        let Some(e) = tokio::time::timeout(Duration::from_secs(600), events.recv()).await? else {
            bail!("the node stopped");
        };
        if e.transfer_id() == Some(id) && e.ends_transfer() {
            break e;
        }
    };
    let secs = t0.elapsed().as_secs_f64();
    let Event::TransferComplete { failed: 0, .. } = end else {
        bail!("the transfer did not complete: {end:?}");
    };
    let sender = Side {
        cpu_seconds: cpu_seconds(None) - cpu_s0,
        peak_rss_mb: peak_rss_mb(None),
    };
    let receiver_side = Side {
        cpu_seconds: cpu_seconds(Some(receiver.child.id())) - cpu_r0,
        peak_rss_mb: peak_rss_mb(Some(receiver.child.id())),
    };
    Ok(Run {
        case: case.into(),
        files,
        bytes,
        seconds: secs,
        mbytes_per_s: bytes as f64 / secs / 1e6,
        files_per_s: files as f64 / secs,
        sender,
        receiver: receiver_side,
    })
}

/// The receiving node: `peerconnect up --yes` in its own process.
struct Receiver {
    child: Child,
    addr: SocketAddr,
    downloads: PathBuf,
}

impl Receiver {
    fn start(dir: &Path) -> anyhow::Result<Self> {
        let downloads = dir.join("downloads");
        let mut child = Command::new(std::env::current_exe()?)
            .args(["up", "--yes", "--no-discovery", "--json", "-q"])
            .args(["--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--downloads")
            .arg(&downloads)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the receiver process")?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        let addr = loop {
            line.clear();
            if lines.read_line(&mut line)? == 0 {
                bail!("the receiver process exited before listening");
            }
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if v["event"] == "listening" {
                break v["addrs"][0]
                    .as_str()
                    .context("listening line without an address")?
                    .parse()?;
            }
        };
        // Keep its stdout drained, or it blocks once the pipe is full.
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            while lines
                .read_until(b'\n', &mut sink)
                .map(|n| n > 0)
                .unwrap_or(false)
            {
                sink.clear();
            }
        });
        Ok(Self {
            child,
            addr,
            downloads,
        })
    }

    fn stop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn proc_file(pid: Option<u32>, name: &str) -> String {
    let p = match pid {
        Some(pid) => format!("/proc/{pid}/{name}"),
        None => format!("/proc/self/{name}"),
    };
    std::fs::read_to_string(p).unwrap_or_default()
}

/// User + system CPU seconds of a process so far.
fn cpu_seconds(pid: Option<u32>) -> f64 {
    let stat = proc_file(pid, "stat");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks / hz
}

/// Peak resident set since the last reset, in MB.
fn peak_rss_mb(pid: Option<u32>) -> f64 {
    proc_file(pid, "status")
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb * 1024.0 / 1e6)
        .unwrap_or(0.0)
}

/// Resets a process's peak RSS to its current RSS (Linux: clear_refs 5).
fn reset_peak_rss(pid: Option<u32>) {
    let p = match pid {
        Some(pid) => format!("/proc/{pid}/clear_refs"),
        None => "/proc/self/clear_refs".into(),
    };
    let _ = std::fs::write(p, "5");
}

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
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

/// Writes `size` bytes of varied data (4 MiB pieces, each a little different).
fn write_file(path: &Path, size: u64) -> anyhow::Result<()> {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut piece = random_bytes(4 << 20, 7);
    let mut left = size;
    let mut n: u64 = 0;
    while left > 0 {
        piece[..8].copy_from_slice(&n.to_le_bytes());
        let k = left.min(piece.len() as u64) as usize;
        f.write_all(&piece[..k])?;
        left -= k as u64;
        n += 1;
    }
    f.flush()?;
    Ok(())
}

/// Single-thread BLAKE3 over 256 MiB in memory, MB/s.
fn blake3_speed() -> f64 {
    let data = random_bytes(16 << 20, 5);
    let t = Instant::now();
    let mut h = blake3::Hasher::new();
    for _ in 0..16 {
        h.update(&data);
    }
    std::hint::black_box(h.finalize());
    (16 * data.len()) as f64 / t.elapsed().as_secs_f64() / 1e6
}

/// One TLS connection on 127.0.0.1 between two fresh identities, with the
/// node's own TLS setup: (client, server).
async fn tls_pair() -> anyhow::Result<(
    peerconnect::net::transport::Connection,
    peerconnect::net::transport::Connection,
)> {
    use peerconnect::net::transport::Transport;
    let (a, b) = (
        peerconnect::Identity::generate(),
        peerconnect::Identity::generate(),
    );
    let (ta, tb) = (Transport::new(&a, 8)?, Transport::new(&b, 8)?);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    let accept = async {
        let (tcp, from) = l.accept().await?;
        anyhow::Ok(tb.accept(tcp, from).await?)
    };
    let (x, y) = tokio::join!(ta.connect(addr, Some(b.peer_id())), accept);
    Ok((x?, y?))
}

/// `bytes` through one TLS connection, then through a mux bulk stream on one
/// TLS lane, both on 127.0.0.1 within this process: MB/s of each.
async fn memory_to_memory(bytes: u64) -> anyhow::Result<(f64, f64)> {
    use peerconnect::net::mux::{MuxConfig, MuxSession, Side};
    let (x, y) = tls_pair().await?;
    let tls = pump(x, y, bytes).await?;
    let (x, y) = tls_pair().await?;
    let (ma, mb) = (
        MuxSession::new(MuxConfig::default(), Side::Low),
        MuxSession::new(MuxConfig::default(), Side::High),
    );
    ma.add_lane(x).await;
    mb.add_lane(y).await;
    let w = ma.open_bulk_stream().await?;
    let accept = async {
        let mut r = mb.accept_stream().await.context("no stream")?;
        // the stream opens on its first byte
        let mut first = [0u8; 1];
        tokio::io::AsyncReadExt::read_exact(&mut r, &mut first).await?;
        anyhow::Ok(r)
    };
    let (w, r) = tokio::join!(
        async {
            let mut w = w;
            tokio::io::AsyncWriteExt::write_all(&mut w, &[0]).await?;
            anyhow::Ok(w)
        },
        accept
    );
    let mux = pump(w?, r?, bytes).await?;
    Ok((tls, mux))
}

/// Writes `bytes` into `w` while reading them from `r`: MB/s.
async fn pump<W, R>(mut w: W, mut r: R, bytes: u64) -> anyhow::Result<f64>
where
    W: tokio::io::AsyncWrite + Unpin,
    R: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = Instant::now();
    let send = async {
        let buf = vec![0x5au8; 1 << 20];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            w.write_all(&buf[..n]).await?;
            left -= n as u64;
        }
        w.flush().await?;
        anyhow::Ok(w)
    };
    let recv = async {
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0;
        while got < bytes {
            let n = r.read(&mut buf).await?;
            anyhow::ensure!(n > 0, "the stream ended early");
            got += n as u64;
        }
        anyhow::Ok(())
    };
    let (w, got) = tokio::join!(send, recv);
    got?;
    let secs = t.elapsed().as_secs_f64();
    drop(w?);
    Ok(bytes as f64 / secs / 1e6)
}

/// iperf3, one TCP stream on 127.0.0.1 for 3 s (or `bytes` bytes), received
/// MB/s.
fn iperf3(bytes: Option<u64>) -> Option<f64> {
    Command::new("iperf3").arg("--version").output().ok()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port()
        .to_string();
    let mut server = Command::new("iperf3")
        .args(["-s", "-1", "-B", "127.0.0.1", "-p", &port])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut out = None;
    // The server needs a moment to listen: retry the client for a while.
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..50 {
        let mut client = Command::new("iperf3");
        client.args(["-c", "127.0.0.1", "-p", &port, "-J"]);
        match bytes {
            Some(n) => client.args(["-n", &n.to_string()]),
            None => client.args(["-t", "3"]),
        };
        let o = client.output().ok()?;
        if o.status.success() {
            out = Some(o);
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = server.kill();
    let _ = server.wait();
    let v: serde_json::Value = serde_json::from_slice(&out?.stdout).ok()?;
    let end = &v["end"]["sum_received"];
    Some(end["bytes"].as_f64()? / end["seconds"].as_f64()? / 1e6)
}

// --- `--vs`: the big file beside a plain TLS copy and iperf3 -----------------

#[derive(Debug, Clone, Serialize)]
struct VsRound {
    peerconnect_mbytes_per_s: f64,
    tls_copy_mbytes_per_s: f64,
    iperf3_mbytes_per_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
struct VsReport {
    bytes: u64,
    rounds: Vec<VsRound>,
    /// Medians over the rounds of each round's ratio.
    ours_over_tls_copy: f64,
    ours_over_iperf3: Option<f64>,
}

async fn run_vs(args: TransferArgs, json: bool) -> anyhow::Result<()> {
    anyhow::ensure!(args.rounds > 0, "--rounds must be at least 1");
    let tmp = scratch_dir(&args)?;
    let root = tmp.path().to_path_buf();
    let say = |s: &str| {
        if !json {
            eprintln!("{s}");
        }
    };
    say(&format!(
        "writing a {} MiB file in {}",
        args.size >> 20,
        root.display()
    ));
    let big = root.join("big.bin");
    write_file(&big, args.size)?;
    let (mut receiver, node, peer) = sender_and_receiver(&root).await?;
    let copy = root.join("tls-copy.bin");
    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        say(&format!("round {round}: peerconnect"));
        let ours = measure(&node, peer, &mut receiver, &big, "big", 1, args.size).await?;
        std::fs::remove_file(receiver.downloads.join("big.bin"))?;
        say(&format!("round {round}: plain TLS copy"));
        let tls = tls_file_copy(&big, &copy).await?;
        std::fs::remove_file(&copy)?;
        let iperf = if args.no_iperf {
            None
        } else {
            say(&format!("round {round}: iperf3"));
            iperf3(Some(args.size))
        };
        rounds.push(VsRound {
            peerconnect_mbytes_per_s: ours.mbytes_per_s,
            tls_copy_mbytes_per_s: tls,
            iperf3_mbytes_per_s: iperf,
        });
    }
    node.shutdown().await?;
    receiver.stop();
    let ratio = |f: &dyn Fn(&VsRound) -> Option<f64>| {
        let r: Vec<f64> = rounds
            .iter()
            .filter_map(|x| f(x).map(|b| x.peerconnect_mbytes_per_s / b))
            .collect();
        (r.len() == rounds.len()).then(|| median(r))
    };
    let report = VsReport {
        bytes: args.size,
        ours_over_tls_copy: ratio(&|x| Some(x.tls_copy_mbytes_per_s)).unwrap_or(0.0),
        ours_over_iperf3: ratio(&|x| x.iperf3_mbytes_per_s),
        rounds,
    };
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_vs(&report);
    }
    drop(tmp);
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn print_vs(r: &VsReport) {
    println!(
        "{:.0} MB, file to file on 127.0.0.1, MB/s per round",
        r.bytes as f64 / 1e6
    );
    println!(
        "{:>5} {:>12} {:>14} {:>10} {:>12} {:>12}",
        "round", "peerconnect", "plain TLS copy", "iperf3", "÷ TLS copy", "÷ iperf3"
    );
    for (i, x) in r.rounds.iter().enumerate() {
        let iperf = x
            .iperf3_mbytes_per_s
            .map_or("-".to_string(), |v| format!("{v:.0}"));
        let over_iperf = x.iperf3_mbytes_per_s.map_or("-".to_string(), |v| {
            format!("{:.2}", x.peerconnect_mbytes_per_s / v)
        });
        println!(
            "{:>5} {:>12.0} {:>14.0} {:>10} {:>12.2} {:>12}",
            i + 1,
            x.peerconnect_mbytes_per_s,
            x.tls_copy_mbytes_per_s,
            iperf,
            x.peerconnect_mbytes_per_s / x.tls_copy_mbytes_per_s,
            over_iperf
        );
    }
    println!(
        "median ratio: peerconnect = {:.2} × a plain TLS copy{}",
        r.ours_over_tls_copy,
        r.ours_over_iperf3.map_or(String::new(), |v| format!(
            ", {v:.2} × iperf3 (one TCP stream)"
        ))
    );
}

/// The file at `src` copied to `dst` through one TLS connection on
/// 127.0.0.1 (the node's TLS setup, 1 MiB reads and writes, nothing else):
/// MB/s from the first read to the written file's close.
async fn tls_file_copy(src: &Path, dst: &Path) -> anyhow::Result<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut w, mut r) = tls_pair().await?;
    let bytes = std::fs::metadata(src)?.len();
    let t = Instant::now();
    let send = async {
        let mut f = tokio::fs::File::open(src).await?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            w.write_all(&buf[..n]).await?;
        }
        w.flush().await?;
        anyhow::Ok(w)
    };
    let recv = async {
        let mut f = tokio::fs::File::create(dst).await?;
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0;
        while got < bytes {
            let n = r.read(&mut buf).await?;
            anyhow::ensure!(n > 0, "the TLS copy ended early");
            f.write_all(&buf[..n]).await?;
            got += n as u64;
        }
        f.flush().await?;
        anyhow::Ok(())
    };
    let (w, got) = tokio::join!(send, recv);
    got?;
    let secs = t.elapsed().as_secs_f64();
    drop(w?);
    Ok(bytes as f64 / secs / 1e6)
}
