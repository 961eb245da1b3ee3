//! The local control socket: lets `peerconnect peers`, `send`, `msg`, ... use the
//! node that `peerconnect up` runs on the same data dir, instead of starting a
//! second node with the same identity.
//!
//! A Unix socket `control.sock` in the data dir (mode 0600, so only the owner of
//! the data dir can drive the node) speaks JSON lines: the client writes one
//! [`Request`]; the node answers with zero or more `{"event":…}` lines (progress of
//! long requests) and ends with one `{"ok":…}` or `{"error":…}` line.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::event::{Event, Trust};
use crate::node::Node;

/// Longest request line accepted.
const MAX_REQUEST: usize = 1 << 20;

/// What a client asks of the running node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Request {
    /// This node's id, name and addresses.
    Id,
    /// Live peers.
    Peers,
    /// Set the trust of a peer named by `peer` (id, prefix, name).
    SetTrust { peer: String, trust: Trust },
}

/// One line of the node's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Reply {
    Ok { ok: serde_json::Value },
    Error { error: String },
    Event(Event),
}

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("control.sock")
}

/// Serves the control socket of `node` until the node shuts down.
#[cfg(unix)]
pub(crate) fn serve(node: Node) -> Option<tokio::task::JoinHandle<()>> {
    let path = socket_path(node.data_dir());
    // We hold the data dir lock, so a socket file left here is stale.
    let _ = std::fs::remove_file(&path);
    let listener = match tokio::net::UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "no control socket; CLI commands will start their own node");
            return None;
        }
    };
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    let weak = node.downgrade();
    drop(node);
    Some(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let Some(node) = weak.upgrade() else { return };
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut r = BufReader::new(r).take(MAX_REQUEST as u64);
                let mut line = String::new();
                if r.read_line(&mut line).await.is_err() {
                    return;
                }
                let reply = match serde_json::from_str::<Request>(&line) {
                    Ok(req) => handle(&node, req).await,
                    Err(e) => Reply::Error {
                        error: format!("bad request: {e}"),
                    },
                };
                let mut out = serde_json::to_vec(&reply).expect("replies serialize");
                out.push(b'\n');
                let _ = w.write_all(&out).await;
            });
        }
    }))
}

async fn handle(node: &Node, req: Request) -> Reply {
    let res: crate::Result<serde_json::Value> = async {
        Ok(match req {
            Request::Id => serde_json::json!({
                "id": node.id(),
                "name": node.name(),
                "addrs": node.listen_addrs(),
            }),
            Request::Peers => serde_json::to_value(node.peers().await?).expect("peers serialize"),
            Request::SetTrust { peer, trust } => {
                let id = node.resolve(&peer).await?;
                node.set_trust(id, trust).await?;
                serde_json::json!({ "id": id, "trust": trust })
            }
        })
    }
    .await;
    match res {
        Ok(ok) => Reply::Ok { ok },
        Err(e) => Reply::Error {
            error: e.to_string(),
        },
    }
}

/// Client side: sends `req` to the node running on `data_dir`, calling
/// `on_event` for each progress event. `Ok(None)` means no node is running there.
#[cfg(unix)]
pub async fn call(
    data_dir: &Path,
    req: &Request,
    mut on_event: impl FnMut(Event),
) -> std::io::Result<Option<Result<serde_json::Value, String>>> {
    let path = socket_path(data_dir);
    let stream = match tokio::net::UnixStream::connect(&path).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let (r, mut w) = stream.into_split();
    let mut line = serde_json::to_vec(req).expect("requests serialize");
    line.push(b'\n');
    w.write_all(&line).await?;
    let mut lines = BufReader::new(r).lines();
    while let Some(l) = lines.next_line().await? {
        match serde_json::from_str::<Reply>(&l) {
            Ok(Reply::Ok { ok }) => return Ok(Some(Ok(ok))),
            Ok(Reply::Error { error }) => return Ok(Some(Err(error))),
            Ok(Reply::Event(e)) => on_event(e),
            Err(e) => return Ok(Some(Err(format!("bad reply from node: {e}")))),
        }
    }
    Ok(Some(Err(
        "the running node closed the control socket".into()
    )))
}
