//! Sending to a LocalSend device: the files the owner sends a peer of kind
//! `localsend` travel by LocalSend's `prepare-upload` and `upload` requests.
//!
//! As for a browser guest ([`crate::net::transfer::local::download`]), the
//! node's one sender offers and streams the files as to any peer (the same
//! walk and manifest, [`TransferId`](crate::proto::transfer::TransferId),
//! registry, pause and cancel, events, store history, the reader's BLAKE3
//! hashing) over an in-memory stream whose other end is read here, by the
//! same [`receiver::State`] a peer's receiver uses. This side turns it into
//! LocalSend requests:
//!
//! 1. The offer is read, each file's SHA-256 computed from its source (the
//!    current app checks it), and `prepare-upload` sent with this node's
//!    LocalSend description and client certificate (the one its server
//!    presents, so the device sees the fingerprint it was told). The device's
//!    owner decides there; the sender waits with the transfer `offered`, as
//!    for any peer, until [`ANSWER_WAIT`] at most.
//! 2. 403 (declined), 401 (a PIN is needed or wrong), 409 (the device is in
//!    another session), 429 (too many tries) and anything else end the
//!    transfer as rejected with that reason; 204 (nothing wanted) too.
//! 3. 200: the files the device took (it may take some) are accepted; each
//!    is `upload`ed as the sender streams it, one at a time in the order the
//!    sender sends them. The last block of a file goes out only after the
//!    sender's BLAKE3 of the whole file matched the bytes that went through;
//!    on a mismatch the upload breaks off short, so the device never keeps a
//!    wrong file. The device's answer (200, or 422 for a SHA-256 it refused)
//!    is that file's verdict.
//! 4. A transfer that does not end complete (cancelled here, a file failed)
//!    sends `cancel` so the device frees its session.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};

use super::{InfoDto, client};
use crate::net::transfer::local::download::{
    self as adapter, SenderAlive, Stop, Verdict, drain, next, read_offer, reply, stream_file,
};
use crate::net::transfer::stream::Shared as SharedStream;
use crate::proto::transfer::manifest::{Manifest, mask_to_ranges};
use crate::proto::transfer::receiver::{self, Action};
use crate::proto::transfer::{RESET_CANCELLED, RESET_PROTOCOL, ToSender};

/// Longest wait for the device's owner to answer an offer.
pub const ANSWER_WAIT: Duration = Duration::from_secs(300);
/// Longest wait on the device during an upload (a block taken, its answer)
/// and for its other answers.
const IDLE: Duration = Duration::from_secs(30);

/// This node's side of sending to LocalSend devices: its description and
/// the client certificate its server presents (set when LocalSend starts).
#[derive(Debug)]
pub(crate) struct Outbound {
    pub tls: Arc<rustls::ClientConfig>,
    pub me: InfoDto,
}

/// Where a device is reached.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub addr: SocketAddr,
    pub https: bool,
    /// The PIN to give it (`send --pin`), if any.
    pub pin: Option<String>,
}

/// The sender's end of a new transfer to the device `to`, and the guard the
/// sender holds while it runs; `sources` are the files' paths (for their
/// SHA-256).
pub(crate) fn open(
    out: Arc<Outbound>,
    to: Target,
    sources: Arc<Vec<Option<PathBuf>>>,
) -> (SharedStream, SenderAlive) {
    let (mine, theirs) = SharedStream::local_pair(adapter::BUFFER);
    let (alive, alive_rx) = adapter::alive();
    tokio::spawn(run(theirs, out, to, sources, alive_rx));
    (mine, alive)
}

/// What the device said to `prepare-upload`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Prepared {
    session_id: String,
    /// File id → token, for the files it takes.
    #[serde(default)]
    files: BTreeMap<String, String>,
}

struct Session<'a> {
    out: &'a Outbound,
    to: &'a Target,
    id: Option<String>,
}

impl Session<'_> {
    fn tls(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.to.https.then(|| self.out.tls.clone())
    }

    /// Sends `prepare-upload` with `body` (and the PIN, if one is set) and
    /// waits up to [`ANSWER_WAIT`] for the device's owner to answer.
    async fn prepare_upload(&self, body: &[u8]) -> Result<client::Response, String> {
        let path = match &self.to.pin {
            Some(pin) => format!("/api/localsend/v2/prepare-upload?pin={}", query(pin)),
            None => "/api/localsend/v2/prepare-upload".to_string(),
        };
        client::request(
            self.to.addr,
            self.tls(),
            "POST",
            &path,
            body,
            client::Framing::Length,
            ANSWER_WAIT,
        )
        .await
        .map_err(|e| format!("cannot reach the device: {e}"))
    }
}

/// A SHA-256 digest in lowercase hex (as LocalSend sends it).
fn sha256_hex(digest: ring::digest::Digest) -> String {
    super::tls::hex_upper(digest.as_ref()).to_ascii_lowercase()
}

async fn run(
    s: SharedStream,
    out: Arc<Outbound>,
    to: Target,
    sources: Arc<Vec<Option<PathBuf>>>,
    alive: oneshot::Receiver<()>,
) {
    let mut session = Session {
        out: &out,
        to: &to,
        id: None,
    };
    let complete = match drive(&s, &mut session, &sources, alive).await {
        Ok(complete) => complete,
        Err(Stop::Protocol(what)) => {
            tracing::debug!(%what, "the sender broke the protocol");
            s.reset(RESET_PROTOCOL);
            false
        }
        Err(Stop::Gone(why)) => {
            tracing::debug!(%why, "a transfer to a LocalSend device stopped");
            s.reset(RESET_CANCELLED);
            false
        }
    };
    if let (false, Some(id)) = (complete, &session.id) {
        let path = format!("/api/localsend/v2/cancel?sessionId={}", query(id));
        let _ = client::request(
            to.addr,
            session.tls(),
            "POST",
            &path,
            b"",
            client::Framing::Length,
            IDLE,
        )
        .await;
    }
}

/// A query parameter's value, percent-encoded.
fn query(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Why the device did not take an offer, from its answer's status.
fn refusal(status: u16) -> String {
    match status {
        204 => "the device wants none of the files".into(),
        401 => "the device asks for a PIN, or the PIN given was wrong (send with --pin)".into(),
        403 => "the device declined the files".into(),
        409 => "the device is busy with another transfer".into(),
        429 => "the device refuses more tries for now (too many wrong PINs)".into(),
        s => format!("the device answered {s}"),
    }
}

/// SHA-256 of each file of `m` (lowercase hex) by its index, read from
/// `sources`.
async fn sha256s(
    m: &Manifest,
    sources: &Arc<Vec<Option<PathBuf>>>,
) -> io::Result<BTreeMap<usize, String>> {
    let paths = m
        .entries()
        .iter()
        .enumerate()
        .filter(|(_, e)| e.size().is_some())
        .map(|(i, _)| match sources.get(i) {
            Some(Some(p)) => Ok((i, p.clone())),
            _ => Err(io::Error::other("a file of the offer has no source")),
        })
        .collect::<io::Result<Vec<(usize, PathBuf)>>>()?;
    tokio::task::spawn_blocking(move || {
        paths
            .into_iter()
            .map(|(i, p)| {
                use std::io::Read;
                let mut f = std::fs::File::open(&p)?;
                let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
                let mut buf = vec![0u8; 256 << 10];
                loop {
                    let n = f.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    ctx.update(&buf[..n]);
                }
                Ok((i, sha256_hex(ctx.finish())))
            })
            .collect()
    })
    .await
    .map_err(io::Error::other)?
}

/// The `prepare-upload` body: this node, then each file by its index.
fn prepare_body(me: &InfoDto, m: &Manifest, sums: &BTreeMap<usize, String>) -> Vec<u8> {
    let files: serde_json::Map<String, serde_json::Value> = m
        .entries()
        .iter()
        .enumerate()
        .filter_map(|(i, e)| Some((i, e.size()?, &e.path, sums.get(&i)?)))
        .map(|(i, size, path, sha)| {
            let id = i.to_string();
            let file = serde_json::json!({
                "id": id,
                "fileName": path,
                "size": size,
                "fileType": "application/octet-stream",
                "sha256": sha,
            });
            (id, file)
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "info": me, "files": files }))
        .expect("a JSON value serializes")
}

/// Runs one transfer; `Ok(true)` when every selected file reached the device.
async fn drive(
    s: &SharedStream,
    session: &mut Session<'_>,
    sources: &Arc<Vec<Option<PathBuf>>>,
    mut alive: oneshot::Receiver<()>,
) -> Result<bool, Stop> {
    let mut r = s.clone();
    let mut w = s.clone();
    let mut st = receiver::State::new();
    read_offer(&mut r, &mut st).await?;
    let m = st.manifest().expect("the offer was read").clone();
    let prepared = tokio::select! {
        p = prepare(session, &m, sources) => p,
        _ = &mut alive => return Err(Stop::Gone("the transfer ended".into())),
    };
    let prepared = match prepared {
        Ok(p) => p,
        Err(reason) => {
            reply(&mut w, &ToSender::Reject { reason }).await?;
            let _ = w.shutdown().await;
            return Ok(false);
        }
    };
    session.id = Some(prepared.session_id.clone());
    let selected: Vec<bool> = (0..m.len())
        .map(|i| prepared.files.contains_key(&i.to_string()))
        .collect();
    st.accept(&selected, BTreeMap::new());
    let accept = ToSender::Accept {
        selected: mask_to_ranges(&selected),
        proofs: 0,
    };
    reply(&mut w, &accept).await?;
    let (mut ok, mut failed) = (0u32, 0u32);
    loop {
        match next(&mut r, &mut st).await? {
            Action::Open { index, size, .. } => {
                let token = prepared
                    .files
                    .get(&index.to_string())
                    .cloned()
                    .unwrap_or_default();
                let path = format!(
                    "/api/localsend/v2/upload?sessionId={}&fileId={index}&token={}",
                    query(&prepared.session_id),
                    query(&token),
                );
                let (tx, body) = mpsc::channel(1);
                let (addr, tls) = (session.to.addr, session.tls());
                let upload = tokio::spawn(async move {
                    client::upload(addr, tls, &path, size, body, IDLE).await
                });
                let verdict = stream_file(&mut r, &mut st, size, &tx).await;
                if let Err(Stop::Gone(why) | Stop::Protocol(why)) = &verdict {
                    let _ = tx.try_send(Err(io::Error::other(why.clone())));
                }
                drop(tx);
                let verdict = match verdict? {
                    Verdict::Ok => match upload.await {
                        Ok(Ok(res)) if res.status == 200 => Ok(()),
                        Ok(Ok(res)) if res.status == 422 => {
                            Err("the device found the file's SHA-256 wrong (422)".to_string())
                        }
                        Ok(Ok(res)) => Err(format!("the device answered {}", res.status)),
                        Ok(Err(e)) => Err(format!("the upload failed: {e}")),
                        Err(e) => Err(format!("the upload failed: {e}")),
                    },
                    Verdict::Failed { reason, ended } => {
                        upload.abort();
                        if !ended {
                            drain(&mut r, &mut st).await?;
                        }
                        Err(reason)
                    }
                };
                match verdict {
                    Ok(()) => {
                        ok += 1;
                        reply(&mut w, &ToSender::FileOk { index }).await?;
                    }
                    Err(reason) => {
                        failed += 1;
                        reply(&mut w, &ToSender::FileFailed { index, reason }).await?;
                    }
                }
            }
            Action::Skipped { index, reason } => {
                failed += 1;
                reply(&mut w, &ToSender::FileFailed { index, reason }).await?;
            }
            Action::Done => {
                reply(&mut w, &ToSender::Summary { ok, failed }).await?;
                let _ = w.shutdown().await;
                return Ok(failed == 0);
            }
            other => return Err(Stop::Protocol(format!("{other:?} between files"))),
        }
    }
}

/// Sends `prepare-upload` for the offer `m`: the device's session and the
/// files it takes, or why it took none.
async fn prepare(
    session: &Session<'_>,
    m: &Manifest,
    sources: &Arc<Vec<Option<PathBuf>>>,
) -> Result<Prepared, String> {
    let sums = sha256s(m, sources)
        .await
        .map_err(|e| format!("cannot read the files: {e}"))?;
    let body = prepare_body(&session.out.me, m, &sums);
    let res = session.prepare_upload(&body).await?;
    if res.status != 200 {
        return Err(refusal(res.status));
    }
    let p: Prepared = serde_json::from_slice(&res.body)
        .map_err(|e| format!("the device's answer is not LocalSend's: {e}"))?;
    if p.files.is_empty() {
        return Err(refusal(204));
    }
    Ok(p)
}

/// Sends `text` to the device `to` as LocalSend sends a message: a text
/// share (one `text/plain` file whose preview is all of it), which the
/// device shows (204). A device that asks for the file instead (200) gets
/// it uploaded.
pub(crate) async fn text(out: &Outbound, to: &Target, text: &str) -> Result<(), String> {
    let session = Session { out, to, id: None };
    let name = format!("{}.txt", super::tls::hex_upper(&rand::random::<[u8; 8]>()));
    let sha = sha256_hex(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()));
    let body = serde_json::json!({
        "info": out.me,
        "files": { "text": {
            "id": "text",
            "fileName": name,
            "size": text.len(),
            "fileType": "text/plain",
            "sha256": sha,
            "preview": text,
        }},
    });
    let body = serde_json::to_vec(&body).expect("a JSON value serializes");
    let res = session.prepare_upload(&body).await?;
    match res.status {
        204 => Ok(()),
        200 => {
            let p: Prepared = serde_json::from_slice(&res.body)
                .map_err(|e| format!("the device's answer is not LocalSend's: {e}"))?;
            let token = p.files.get("text").ok_or_else(|| refusal(204))?;
            let path = format!(
                "/api/localsend/v2/upload?sessionId={}&fileId=text&token={}",
                query(&p.session_id),
                query(token)
            );
            let (tx, rx) = mpsc::channel(1);
            let _ = tx.try_send(Ok(text.as_bytes().to_vec()));
            drop(tx);
            let res = client::upload(to.addr, session.tls(), &path, text.len() as u64, rx, IDLE)
                .await
                .map_err(|e| format!("the upload failed: {e}"))?;
            match res.status {
                200 => Ok(()),
                s => Err(format!("the device answered {s}")),
            }
        }
        s => Err(refusal(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_offer_names_each_file_by_its_index_with_its_sha256() {
        use crate::proto::transfer::manifest::Entry;
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.jpg"), dir.path().join("b.txt"));
        std::fs::write(&a, b"abc").unwrap();
        std::fs::write(&b, b"").unwrap();
        let m = Manifest::new(vec![
            Entry::dir("trip"),
            Entry::file("trip/a.jpg", 3),
            Entry::file("b.txt", 0),
        ])
        .unwrap();
        let sources = Arc::new(vec![None, Some(a), Some(b)]);
        let sums = sha256s(&m, &sources).await.unwrap();
        let me = InfoDto {
            alias: "pc".into(),
            fingerprint: "FP".into(),
            ..InfoDto::default()
        };
        let body: serde_json::Value =
            serde_json::from_slice(&prepare_body(&me, &m, &sums)).unwrap();
        assert_eq!(body["info"]["alias"], "pc");
        let files = body["files"].as_object().unwrap();
        // The folder is no file of LocalSend's; files keep their paths.
        assert_eq!(files.keys().collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(files["1"]["fileName"], "trip/a.jpg");
        assert_eq!(files["1"]["size"], 3);
        assert_eq!(
            files["1"]["sha256"],
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            files["2"]["sha256"],
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // A file without a source cannot be offered.
        let none = Arc::new(vec![None, None, None]);
        assert!(sha256s(&m, &none).await.is_err());
    }

    #[test]
    fn refusals_say_what_the_user_can_do() {
        assert!(refusal(401).contains("--pin"));
        assert!(refusal(409).contains("busy"));
        assert!(refusal(403).contains("declined"));
        assert!(refusal(418).contains("418"));
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(query("a-B_9.~"), "a-B_9.~");
        assert_eq!(query("x&y=z /"), "x%26y%3Dz%20%2F");
    }
}
