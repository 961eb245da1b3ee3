//! `peerconnect bench mux`: throughput of the multiplexer beside the connections
//! it is built on, measured in the same run.
//!
//! - Loopback (default): one process sends `--bytes` over raw TCP, one raw TLS
//!   connection (the node's transport), and a mux session of 1, 2, 4 and 8 TLS
//!   lanes, all on 127.0.0.1, the median of `--runs`.
//! - Shaped (`--shaped`, root): two network namespaces joined by a veth pair,
//!   each side's egress shaped with `tbf` to `--rate` and `--loss` % of the
//!   packets dropped on arrival (nftables), like `shared/lan up 2 --rate 200mbit
//!   --loss 5`. The bench re-runs itself as `--server` in one namespace and
//!   `--client` in the other, compares plain TCP, raw TLS and the mux with 1, 2
//!   and 4 lanes, runs iperf3 if it is installed, and removes the namespaces.
//!   `--server ADDR` / `--client ADDR` also work by hand inside namespaces made
//!   with `lan`.
//!
//! Each measurement sends bytes one way and waits for the receiver's 8-byte
//! acknowledgement, so it times delivery, not buffering.

use std::io;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use peerconnect::Identity;
use peerconnect::net::mux::{Config, MuxConfig, MuxSession, Side, Stats};
use peerconnect::net::transport::Transport;
use serde::Serialize;

use super::sh;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CHUNK: usize = 256 * 1024;

#[derive(clap::Args, Debug, Clone)]
pub struct MuxArgs {
    /// Bytes per measurement (default 2 GiB on loopback, 128 MiB shaped).
    #[arg(long)]
    bytes: Option<u64>,
    /// Measurements per case; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Lane counts to measure.
    #[arg(long, value_delimiter = ',')]
    lanes: Option<Vec<usize>>,
    /// Measure between two shaped network namespaces the bench creates (root).
    #[arg(long)]
    shaped: bool,
    /// Link rate of the shaped mode (tc tbf syntax).
    #[arg(long, default_value = "200mbit")]
    rate: String,
    /// Percent of packets dropped on arrival in the shaped mode.
    #[arg(long, default_value_t = 5.0)]
    loss: f64,
    /// Serve shaped measurements on this address (inside a namespace).
    #[arg(long, conflicts_with = "client")]
    server: Option<SocketAddr>,
    /// Run shaped measurements against a `--server` at this address.
    #[arg(long)]
    client: Option<SocketAddr>,
    /// Shaped mode: set net.ipv4.tcp_notsent_lowat to this many bytes in both
    /// namespaces (what a lane socket's TCP_NOTSENT_LOWAT would do).
    #[arg(long)]
    notsent_lowat: Option<u64>,
    /// Bytes queued per lane before the scheduler looks elsewhere, KiB
    /// (default: the library's).
    #[arg(long)]
    lane_queue_kib: Option<u64>,
    /// Receive window of the bulk stream, MiB (default: the library's).
    #[arg(long)]
    bulk_window_mib: Option<u64>,
}

/// One measured case.
#[derive(Debug, Clone, Serialize)]
struct Row {
    case: String,
    lanes: usize,
    bytes: u64,
    seconds: f64,
    mbytes_per_s: f64,
    mbits_per_s: f64,
    /// Frames the mux sent again (lane death or hedging), 0 for the baselines.
    resent_frames: u64,
    /// CPU cores other processes used during the run (loopback only): a run
    /// that shared the machine is not a clean measurement.
    #[serde(skip_serializing_if = "Option::is_none")]
    other_cores: Option<f64>,
    /// Throughput of every run, MB/s (the row shows the median run).
    runs_mbytes_per_s: Vec<f64>,
}

impl Row {
    fn new(case: &str, lanes: usize, bytes: u64, took: Duration, resent: u64) -> Self {
        let s = took.as_secs_f64();
        Self {
            case: case.into(),
            lanes,
            bytes,
            seconds: s,
            mbytes_per_s: bytes as f64 / s / 1e6,
            mbits_per_s: bytes as f64 * 8.0 / s / 1e6,
            resent_frames: resent,
            other_cores: None,
            runs_mbytes_per_s: Vec::new(),
        }
    }
}

pub async fn run(args: MuxArgs, json: bool) -> anyhow::Result<()> {
    if let Some(addr) = args.server {
        return serve(addr, (args.bulk_window_mib, args.lane_queue_kib)).await;
    }
    if let Some(addr) = args.client {
        let rows = client(&args, addr).await?;
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(());
    }
    if args.shaped {
        return shaped(&args, json).await;
    }
    loopback(&args, json).await
}

// ----- loopback ----------------------------------------------------------------

async fn loopback(args: &MuxArgs, json: bool) -> anyhow::Result<()> {
    let bytes = args.bytes.unwrap_or(2 << 30);
    let lanes = args.lanes.clone().unwrap_or(vec![1, 2, 4, 8]);
    let (a, b) = (Identity::generate(), Identity::generate());
    let (ta, tb) = (Transport::new(&a, 256)?, Transport::new(&b, 256)?);
    let mut rows = Vec::new();
    rows.push(
        median(args.runs, || async {
            let (mut x, mut y) = tcp_pair().await?;
            timed("raw TCP", 1, bytes, &mut x, &mut y).await
        })
        .await?,
    );
    rows.push(
        median(args.runs, || async {
            let (mut x, mut y) = tls_pair(&ta, &tb).await?;
            timed("raw TLS", 1, bytes, &mut x, &mut y).await
        })
        .await?,
    );
    for &n in &lanes {
        rows.push(
            median(args.runs, || {
                mux_loopback(
                    &ta,
                    &tb,
                    n,
                    bytes,
                    (args.bulk_window_mib, args.lane_queue_kib),
                )
            })
            .await?,
        );
    }
    report("loopback TLS (127.0.0.1)", &rows, json, None);
    Ok(())
}

/// Runs a case `runs` times and reports the median run (links and a shared
/// machine are noisy; the median is the honest middle), with every run's
/// throughput alongside.
async fn median<F, Fut>(runs: usize, mut f: F) -> anyhow::Result<Row>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Row>>,
{
    let mut all = Vec::new();
    for _ in 0..runs.max(1) {
        let before = cpu_ticks();
        let start = Instant::now();
        let mut row = f().await?;
        let wall = start.elapsed().as_secs_f64();
        if let (Some((busy0, own0)), Some((busy1, own1))) = (before, cpu_ticks()) {
            let others = busy1
                .saturating_sub(busy0)
                .saturating_sub(own1.saturating_sub(own0));
            row.other_cores = Some(others as f64 / CLOCK_TICKS / wall);
        }
        all.push(row);
    }
    let runs: Vec<f64> = all.iter().map(|r| r.mbytes_per_s).collect();
    all.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    let mut mid = all.swap_remove(all.len() / 2);
    mid.runs_mbytes_per_s = runs;
    Ok(mid)
}

/// `sysconf(_SC_CLK_TCK)` on Linux.
const CLOCK_TICKS: f64 = 100.0;

/// Busy CPU ticks of the whole machine and of this process, from /proc.
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy = cpu.first()? + cpu.get(1)? + cpu.get(2)? + cpu.get(5)? + cpu.get(6)? + cpu.get(7)?;
    let me = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = me.rsplit_once(')')?.1.split_whitespace().collect();
    // after the command name: state is field 3, utime 14, stime 15
    let own = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((busy, own))
}

async fn tcp_pair() -> io::Result<(TcpStream, TcpStream)> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    let (x, y) = tokio::join!(TcpStream::connect(addr), l.accept());
    let (x, y) = (x?, y?.0);
    x.set_nodelay(true)?;
    y.set_nodelay(true)?;
    Ok((x, y))
}

async fn tls_pair(
    ta: &Transport,
    tb: &Transport,
) -> anyhow::Result<(
    peerconnect::net::transport::Connection,
    peerconnect::net::transport::Connection,
)> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    let accept = async {
        let (tcp, from) = l.accept().await?;
        anyhow::Ok(tb.accept(tcp, from).await?)
    };
    let (x, y) = tokio::join!(ta.connect(addr, Some(tb.local_peer_id())), accept);
    Ok((x?, y?))
}

/// Sends `bytes` from `w`'s side, reads them at `r`, waits for the ack.
async fn timed<W, R>(
    case: &str,
    lanes: usize,
    bytes: u64,
    w: &mut W,
    r: &mut R,
) -> anyhow::Result<Row>
where
    W: AsyncRead + AsyncWrite + Unpin,
    R: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let (sent, got) = tokio::join!(send_then_wait(w, bytes), receive_then_ack(r));
    sent?;
    anyhow::ensure!(got? == bytes, "receiver got a different byte count");
    Ok(Row::new(case, lanes, bytes, start.elapsed(), 0))
}

/// Announces `bytes`, writes them, and waits for the peer's 8-byte count.
async fn send_then_wait<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    bytes: u64,
) -> io::Result<()> {
    s.write_all(&bytes.to_be_bytes()).await?;
    let buf = vec![0xa5u8; CHUNK];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        s.write_all(&buf[..n]).await?;
        left -= n as u64;
    }
    s.flush().await?;
    let mut ack = [0u8; 8];
    s.read_exact(&mut ack).await?;
    Ok(())
}

/// Reads the announced count of bytes, then acknowledges with that count.
async fn receive_then_ack<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) -> io::Result<u64> {
    let mut header = [0u8; 8];
    s.read_exact(&mut header).await?;
    let want = u64::from_be_bytes(header);
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    while got < want {
        let n = s
            .read(&mut buf[..(want - got).min(CHUNK as u64) as usize])
            .await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        got += n as u64;
    }
    s.write_all(&got.to_be_bytes()).await?;
    s.shutdown().await?;
    Ok(got)
}

/// Two sessions over `lanes` TLS connections, one bulk stream.
async fn mux_loopback(
    ta: &Transport,
    tb: &Transport,
    lanes: usize,
    bytes: u64,
    window: Tuning,
) -> anyhow::Result<Row> {
    let config = mux_config(lanes, window);
    let a = MuxSession::new(config.clone(), Side::Low);
    let b = MuxSession::new(config, Side::High);
    for _ in 0..lanes {
        let (x, y) = tls_pair(ta, tb).await?;
        a.add_lane(x).await;
        b.add_lane(y).await;
    }
    let mut s = a.open_bulk_stream().await?;
    let b2 = b.clone();
    let receiver = tokio::spawn(async move {
        let mut t = b2.accept_stream().await.context("no stream")?;
        anyhow::Ok(receive_then_ack(&mut t).await?)
    });
    let start = Instant::now();
    send_then_wait(&mut s, bytes).await?;
    let took = start.elapsed();
    anyhow::ensure!(
        receiver.await?? == bytes,
        "receiver got a different byte count"
    );
    let stats = a.stats().await;
    a.close();
    b.close();
    Ok(Row::new("mux", lanes, bytes, took, stats.resent_frames))
}

/// The bulk window (MiB) and lane queue (KiB) overrides of a run.
type Tuning = (Option<u64>, Option<u64>);

fn mux_config(lanes: usize, (bulk_window_mib, lane_queue_kib): Tuning) -> MuxConfig {
    let mut mux = Config {
        max_lanes: lanes,
        ..Config::default()
    };
    if let Some(q) = lane_queue_kib {
        mux.lane_queue = q << 10;
    }
    if let Some(w) = bulk_window_mib {
        mux.bulk_window = w << 20;
        mux.session_window = mux.session_window.max(4 * mux.bulk_window);
    }
    MuxConfig {
        mux,
        ..MuxConfig::default()
    }
}

// ----- shaped: server and client ------------------------------------------------

/// Ports of the shaped cases, from the `--server` port `p`: plain TCP on `p`,
/// raw TLS on `p + 1`, a mux of `n` lanes on `p + 1 + n` (every `n` connections
/// accepted there form one session).
const MAX_LANES: u16 = 8;

async fn serve(addr: SocketAddr, window: Tuning) -> anyhow::Result<()> {
    let transport = Arc::new(Transport::new(&Identity::generate(), 1024)?);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(serve_tcp(TcpListener::bind(addr).await?));
    tasks.spawn(serve_tls(
        TcpListener::bind(port(addr, 1)).await?,
        transport.clone(),
    ));
    for lanes in 1..=MAX_LANES {
        let l = TcpListener::bind(port(addr, 1 + lanes)).await?;
        tasks.spawn(serve_mux(l, transport.clone(), usize::from(lanes), window));
    }
    eprintln!("bench mux server on {addr}");
    while let Some(res) = tasks.join_next().await {
        res??;
    }
    Ok(())
}

async fn serve_tcp(l: TcpListener) -> anyhow::Result<()> {
    loop {
        let (mut c, _) = l.accept().await?;
        c.set_nodelay(true)?;
        tokio::spawn(async move { receive_then_ack(&mut c).await });
    }
}

async fn serve_tls(l: TcpListener, t: Arc<Transport>) -> anyhow::Result<()> {
    loop {
        let (c, from) = l.accept().await?;
        let t = t.clone();
        tokio::spawn(async move {
            let mut c = t.accept(c, from).await?;
            anyhow::Ok(receive_then_ack(&mut c).await?)
        });
    }
}

async fn serve_mux(
    l: TcpListener,
    t: Arc<Transport>,
    lanes: usize,
    window: Tuning,
) -> anyhow::Result<()> {
    loop {
        let session = MuxSession::new(mux_config(lanes, window), Side::High);
        let mut added = 0;
        while added < lanes {
            let (c, from) = l.accept().await?;
            match t.accept(c, from).await {
                Ok(c) => {
                    session.add_lane(c).await;
                    added += 1;
                }
                Err(e) => eprintln!("bench mux server: {e}"),
            }
        }
        tokio::spawn(async move {
            let mut s = session.accept_stream().await.context("no stream")?;
            receive_then_ack(&mut s).await?;
            // Keep the session until the client closes it.
            session.closed().await;
            anyhow::Ok(())
        });
    }
}

fn port(addr: SocketAddr, offset: u16) -> SocketAddr {
    SocketAddr::new(addr.ip(), addr.port() + offset)
}

async fn client(args: &MuxArgs, addr: SocketAddr) -> anyhow::Result<Vec<Row>> {
    let bytes = args.bytes.unwrap_or(128 << 20);
    let lanes = args.lanes.clone().unwrap_or(vec![1, 2, 4]);
    let transport = Transport::new(&Identity::generate(), 1024)?;
    let mut rows = Vec::new();
    rows.push(
        median(args.runs, || async {
            let mut tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            let start = Instant::now();
            send_then_wait(&mut tcp, bytes).await?;
            Ok(Row::new("plain TCP", 1, bytes, start.elapsed(), 0))
        })
        .await?,
    );
    rows.push(
        median(args.runs, || async {
            let mut c = transport.connect(port(addr, 1), None).await?;
            let start = Instant::now();
            send_then_wait(&mut c, bytes).await?;
            Ok(Row::new("raw TLS", 1, bytes, start.elapsed(), 0))
        })
        .await?,
    );
    for &n in &lanes {
        anyhow::ensure!(
            (1..=usize::from(MAX_LANES)).contains(&n),
            "lanes must be 1..={MAX_LANES}"
        );
        rows.push(
            median(args.runs, || async {
                let session = MuxSession::new(
                    mux_config(n, (args.bulk_window_mib, args.lane_queue_kib)),
                    Side::Low,
                );
                for _ in 0..n {
                    let c = transport.connect(port(addr, 1 + n as u16), None).await?;
                    session.add_lane(c).await;
                }
                let mut s = session.open_bulk_stream().await?;
                let start = Instant::now();
                send_then_wait(&mut s, bytes).await?;
                let took = start.elapsed();
                let stats: Stats = session.stats().await;
                session.close();
                Ok(Row::new("mux", n, bytes, took, stats.resent_frames))
            })
            .await?,
        );
    }
    Ok(rows)
}

// ----- shaped: namespaces --------------------------------------------------------

const NS_A: &str = "pcbench-a";
const NS_B: &str = "pcbench-b";
const IP_A: &str = "10.124.0.1";
const IP_B: &str = "10.124.0.2";

/// Removes the namespaces (and with them the veth pair) when dropped.
struct Namespaces;

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in [NS_A, NS_B] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn make_namespaces(rate: &str, loss: f64, lowat: Option<u64>) -> anyhow::Result<Namespaces> {
    for ns in [NS_A, NS_B] {
        let _ = Command::new("ip")
            .args(["netns", "del", ns])
            .stderr(Stdio::null())
            .status();
    }
    sh(&["ip", "netns", "add", NS_A])?;
    let guard = Namespaces;
    sh(&["ip", "netns", "add", NS_B])?;
    sh(&[
        "ip", "-n", NS_A, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns",
        NS_B,
    ])?;
    for (ns, ip) in [(NS_A, IP_A), (NS_B, IP_B)] {
        sh(&[
            "ip",
            "-n",
            ns,
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            "eth0",
        ])?;
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        if let Some(b) = lowat {
            sh(&[
                "ip",
                "netns",
                "exec",
                ns,
                "sysctl",
                "-q",
                &format!("net.ipv4.tcp_notsent_lowat={b}"),
            ])?;
        }
        sh(&["ip", "-n", ns, "link", "set", "eth0", "up"])?;
        sh(&[
            "ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate",
            rate, "burst", "256kb", "latency", "50ms",
        ])?;
        if loss > 0.0 {
            let modulo = format!("{}", (100.0 / loss).round() as u64);
            sh(&[
                "ip", "netns", "exec", ns, "nft", "add", "table", "inet", "pcbench",
            ])?;
            sh(&[
                "ip",
                "netns",
                "exec",
                ns,
                "nft",
                "add chain inet pcbench in { type filter hook input priority 0; }",
            ])?;
            sh(&[
                "ip", "netns", "exec", ns, "nft", "add", "rule", "inet", "pcbench", "in",
                "iifname", "eth0", "numgen", "random", "mod", &modulo, "0", "drop",
            ])?;
        }
    }
    Ok(guard)
}

async fn shaped(args: &MuxArgs, json: bool) -> anyhow::Result<()> {
    let _ns = make_namespaces(&args.rate, args.loss, args.notsent_lowat)
        .context("creating network namespaces (needs root, iproute2 and nftables)")?;
    let exe = std::env::current_exe()?;
    let exe = exe.to_str().context("executable path is not UTF-8")?;
    let server_addr = format!("{IP_B}:47499");
    let mut server = Command::new("ip")
        .args([
            "netns",
            "exec",
            NS_B,
            exe,
            "bench",
            "mux",
            "--server",
            &server_addr,
        ])
        .stdout(Stdio::null())
        .spawn()?;
    let res = shaped_client(args, exe, &server_addr).await;
    let _ = server.kill();
    let _ = server.wait();
    let mut rows = res?;
    for streams in [1, 4] {
        rows.extend(iperf3(args.bytes.unwrap_or(128 << 20), streams));
    }
    let mut title = format!(
        "shaped link {} with {} % loss (two namespaces)",
        args.rate, args.loss
    );
    if let Some(b) = args.notsent_lowat {
        title += &format!(", tcp_notsent_lowat {b}");
    }
    if let Some(q) = args.lane_queue_kib {
        title += &format!(", lane queue {q} KiB");
    }
    report(&title, &rows, json, Some(rate_mbit(&args.rate)));
    Ok(())
}

async fn shaped_client(args: &MuxArgs, exe: &str, server: &str) -> anyhow::Result<Vec<Row>> {
    // Wait for the server to listen.
    let mut ready = false;
    for _ in 0..100 {
        let probe = Command::new("ip")
            .args([
                "netns",
                "exec",
                NS_A,
                "bash",
                "-c",
                &format!("exec 3<>/dev/tcp/{IP_B}/47499"),
            ])
            .stderr(Stdio::null())
            .status()?;
        if probe.success() {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::ensure!(ready, "the bench server did not start");
    let mut cmd = vec![
        "netns".to_string(),
        "exec".into(),
        NS_A.into(),
        exe.into(),
        "bench".into(),
        "mux".into(),
        "--client".into(),
        server.into(),
        "--runs".into(),
        args.runs.to_string(),
    ];
    if let Some(b) = args.bytes {
        cmd.extend(["--bytes".into(), b.to_string()]);
    }
    if let Some(w) = args.bulk_window_mib {
        cmd.push(format!("--bulk-window-mib={w}"));
    }
    if let Some(q) = args.lane_queue_kib {
        cmd.push(format!("--lane-queue-kib={q}"));
    }
    if let Some(l) = &args.lanes {
        cmd.extend([
            "--lanes".into(),
            l.iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(","),
        ]);
    }
    let out = tokio::process::Command::new("ip")
        .args(&cmd)
        .stderr(Stdio::inherit())
        .output()
        .await?;
    anyhow::ensure!(out.status.success(), "the bench client failed");
    let rows: Vec<RowIn> =
        serde_json::from_slice(&out.stdout).context("reading the client's results")?;
    Ok(rows.into_iter().map(RowIn::into_row).collect())
}

#[derive(serde::Deserialize)]
struct RowIn {
    case: String,
    lanes: usize,
    bytes: u64,
    seconds: f64,
    resent_frames: u64,
    #[serde(default)]
    runs_mbytes_per_s: Vec<f64>,
}

impl RowIn {
    fn into_row(self) -> Row {
        let mut row = Row::new(
            &self.case,
            self.lanes,
            self.bytes,
            Duration::from_secs_f64(self.seconds),
            self.resent_frames,
        );
        row.runs_mbytes_per_s = self.runs_mbytes_per_s;
        row
    }
}

/// iperf3 with `streams` TCP streams on the same link, if iperf3 is installed.
fn iperf3(bytes: u64, streams: usize) -> Option<Row> {
    Command::new("iperf3").arg("--version").output().ok()?;
    let mut server = Command::new("ip")
        .args(["netns", "exec", NS_B, "iperf3", "-s", "-1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    std::thread::sleep(Duration::from_millis(300));
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            NS_A,
            "iperf3",
            "-c",
            IP_B,
            "-n",
            &bytes.to_string(),
            "-J",
            "-P",
            &streams.to_string(),
        ])
        .output()
        .ok();
    let _ = server.kill();
    let _ = server.wait();
    let v: serde_json::Value = serde_json::from_slice(&out?.stdout).ok()?;
    let end = &v["end"]["sum_received"];
    let secs = end["seconds"].as_f64()?;
    let got = end["bytes"].as_u64()?;
    Some(Row::new(
        "iperf3 TCP",
        streams,
        got,
        Duration::from_secs_f64(secs),
        0,
    ))
}

fn rate_mbit(rate: &str) -> f64 {
    let r = rate.to_ascii_lowercase();
    let (num, mul) = if let Some(n) = r.strip_suffix("gbit") {
        (n, 1000.0)
    } else if let Some(n) = r.strip_suffix("mbit") {
        (n, 1.0)
    } else if let Some(n) = r.strip_suffix("kbit") {
        (n, 0.001)
    } else {
        (r.as_str(), 1e-6)
    };
    num.parse::<f64>().unwrap_or(0.0) * mul
}

// ----- report ----------------------------------------------------------------------

fn report(title: &str, rows: &[Row], json: bool, link_mbit: Option<f64>) {
    let tls = rows
        .iter()
        .find(|r| r.case == "raw TLS")
        .map(|r| r.mbytes_per_s);
    if json {
        let v = serde_json::json!({
            "event": "bench",
            "what": "mux",
            "setting": title,
            "link_mbit": link_mbit,
            "results": rows,
        });
        println!("{v}");
        return;
    }
    println!("mux throughput, {title}");
    println!(
        "{:<12} {:>5} {:>10} {:>10} {:>9} {:>9} {:>7} {:>7}",
        "case", "lanes", "MB/s", "Mbit/s", "vs TLS", "vs link", "resent", "others"
    );
    for r in rows {
        let vs_tls = tls
            .map(|t| format!("{:.2}", r.mbytes_per_s / t))
            .unwrap_or_default();
        let vs_link = link_mbit
            .map(|l| format!("{:.2}", r.mbits_per_s / l))
            .unwrap_or_default();
        let others = r.other_cores.map(|c| format!("{c:.2}")).unwrap_or_default();
        println!(
            "{:<12} {:>5} {:>10.1} {:>10.1} {:>9} {:>9} {:>7} {:>7}",
            r.case,
            r.lanes,
            r.mbytes_per_s,
            r.mbits_per_s,
            vs_tls,
            vs_link,
            r.resent_frames,
            others
        );
    }
}
