//! The options every node-running command shares, and the `Config` they make.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use peerconnect::Config;
use peerconnect::config::{DEFAULT_PORT, DEFAULT_WEB_PORT, default_data_dir, truncate_name};
use peerconnect::store::SavedSettings;

#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    /// Where the identity key and store live.
    #[arg(long, env = "PEERCONNECT_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Device name shown to others (default: host name).
    #[arg(long, global = true)]
    pub name: Option<String>,
    /// Device kind shown to others: desktop, laptop, phone, tablet, server, other.
    #[arg(long, global = true)]
    pub kind: Option<String>,
    /// TCP address to listen on (port 0 = any).
    #[arg(long, global = true)]
    pub listen: Option<SocketAddr>,
    /// Do not use LAN discovery (multicast/broadcast).
    #[arg(long, global = true)]
    pub no_discovery: bool,
    /// UDP port of LAN discovery.
    #[arg(long, global = true)]
    pub discovery_port: Option<u16>,
    /// Only discover on this interface (repeatable).
    #[arg(long = "interface", global = true)]
    pub interfaces: Vec<String>,
    /// Dial this HOST:PORT (repeatable), for networks where discovery finds nobody.
    #[arg(long, global = true)]
    pub connect: Vec<String>,
    /// Address of the web UI (`up` only; default 0.0.0.0:47480, port 0 = any).
    #[arg(long, global = true, value_name = "ADDR", conflicts_with = "no_web")]
    pub web: Option<SocketAddr>,
    /// Do not serve the web UI.
    #[arg(long, global = true)]
    pub no_web: bool,
    /// Do not advertise this node over mDNS (DNS-SD `_peerconnect._tcp`: its
    /// name, port and peer id) nor browse for others there. Also off with
    /// --no-discovery.
    #[arg(long, global = true)]
    pub no_mdns: bool,
    /// Do not speak LocalSend (its discovery and its HTTPS server on port
    /// 53317). Also off with --no-discovery (unless --localsend-listen is a
    /// loopback address).
    #[arg(long, global = true)]
    pub no_localsend: bool,
    /// Address of the LocalSend HTTPS server (`up` only; default
    /// 0.0.0.0:53317).
    #[arg(long, global = true, value_name = "ADDR")]
    pub localsend_listen: Option<SocketAddr>,
    /// PIN LocalSend senders must give (default: none).
    #[arg(
        long,
        global = true,
        value_name = "PIN",
        env = "PEERCONNECT_LOCALSEND_PIN"
    )]
    pub localsend_pin: Option<String>,
    /// Folder for received files.
    #[arg(long, global = true)]
    pub downloads: Option<PathBuf>,
    /// Accept incoming offers without asking.
    #[arg(long, global = true)]
    pub yes: bool,
    /// One JSON object per line on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// More logging (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Sessions with new keys accepted from one IP address (default 16).
    /// For benchmarks of many nodes on one machine, which all connect from
    /// 127.0.0.1.
    #[arg(long, global = true, hide = true, value_name = "N")]
    pub max_sessions_per_ip: Option<usize>,
}

impl NodeArgs {
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(default_data_dir)
    }

    /// The node configuration. `ephemeral_port`: for short-lived helper nodes
    /// (`peers`, `send`, ...) that must not fight a running node for the default port.
    pub fn config(&self, ephemeral_port: bool) -> anyhow::Result<Config> {
        let mut c = Config::new(self.data_dir());
        // Settings saved in the web UI, then flags over them.
        SavedSettings::load(&c.data_dir)
            .context("reading saved settings")?
            .apply(&mut c);
        if let Some(n) = &self.name {
            let n = n.trim();
            anyhow::ensure!(!n.is_empty(), "--name must not be empty");
            c.name = truncate_name(n);
        }
        if let Some(k) = &self.kind {
            c.kind = k.parse().map_err(anyhow::Error::msg)?;
        }
        c.listen = match self.listen {
            Some(l) => l,
            None if ephemeral_port => SocketAddr::from(([0, 0, 0, 0], 0)),
            None => SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)),
        };
        c.discovery.enabled = !self.no_discovery;
        if let Some(p) = self.discovery_port {
            c.discovery.port = p;
        }
        c.discovery.interfaces = self.interfaces.clone();
        c.discovery.mdns = !self.no_mdns;
        c.connect = self.connect.clone();
        if let Some(d) = &self.downloads {
            c.downloads = d.clone();
        }
        c.accept_all = self.yes;
        if let Some(n) = self.max_sessions_per_ip {
            c.max_sessions_per_ip = n;
        }
        // Helper nodes (`peers`, `send`, ...) never serve the web UI.
        c.web = match (self.no_web, self.web) {
            (true, _) => None,
            (false, Some(addr)) => Some(addr),
            (false, None) if ephemeral_port => None,
            (false, None) => {
                c.web_options.optional = true;
                Some(SocketAddr::from(([0, 0, 0, 0], DEFAULT_WEB_PORT)))
            }
        };
        // LocalSend's multicast is discovery (a loopback --localsend-listen
        // reaches no other device, so it may run without), and only a
        // long-running node (`up`) takes its port.
        let loopback = self.localsend_listen.is_some_and(|l| l.ip().is_loopback());
        c.localsend.enabled =
            !self.no_localsend && (!self.no_discovery || loopback) && !ephemeral_port;
        if let Some(l) = self.localsend_listen {
            c.localsend.listen = l;
        }
        c.localsend.pin = self.localsend_pin.clone().filter(|p| !p.is_empty());
        Ok(c)
    }

    /// Logs to stderr: warnings by default, more with -v, errors only with -q;
    /// `RUST_LOG` overrides.
    pub fn init_logging(&self) {
        let level = match (self.quiet, self.verbose) {
            (true, _) => "error",
            (false, 0) => "warn",
            (false, 1) => "info,peerconnect=debug",
            (false, _) => "debug,peerconnect=trace",
        };
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    }
}
