//! A small HTTP/1.1 client for the LocalSend requests this node makes (the
//! `register` answer to an announcement; `prepare-upload`, `upload` and
//! `cancel` when it sends to a device), over TLS or plain TCP. One request
//! per connection, the response read to its end (bounded). Public for tests
//! that play a LocalSend sender.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Largest response read.
const MAX_RESPONSE: u64 = 1 << 20;

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    /// The server certificate's fingerprint (TLS only).
    pub fingerprint: Option<String>,
}

/// How the body travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length,
    /// `Transfer-Encoding: chunked`, in pieces of this many bytes.
    Chunked(usize),
}

/// A client TLS configuration with a new certificate of its own (a
/// LocalSend device's), taking any server certificate (compare
/// [`Response::fingerprint`] instead).
pub fn tls_config() -> io::Result<Arc<rustls::ClientConfig>> {
    Ok(tls_identity()?.0)
}

/// [`tls_config`] and the fingerprint of the certificate it presents (what
/// this client must give as its `fingerprint`).
pub fn tls_identity() -> io::Result<(Arc<rustls::ClientConfig>, String)> {
    let cert = super::tls::Cert::load_or_create(None)?;
    Ok((super::tls::client_config(&cert)?, cert.fingerprint.clone()))
}

/// A connection to a LocalSend server, TLS or plain.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Connects to `addr` (`tls`: HTTPS with that configuration); with TLS, the
/// server certificate's fingerprint.
async fn connect(
    addr: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> io::Result<(Box<dyn Io>, Option<String>)> {
    let tcp = TcpStream::connect(addr).await?;
    let _ = tcp.set_nodelay(true);
    let Some(c) = tls else {
        return Ok((Box::new(tcp), None));
    };
    let name = ServerName::IpAddress(addr.ip().into());
    let s = TlsConnector::from(c).connect(name, tcp).await?;
    let fingerprint = s
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| super::tls::fingerprint(c));
    Ok((Box::new(s), fingerprint))
}

/// Sends one request to `addr` (`tls`: HTTPS with that configuration) and
/// reads the response, all within `timeout`.
pub async fn request(
    addr: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    method: &str,
    path: &str,
    body: &[u8],
    framing: Framing,
    timeout: Duration,
) -> io::Result<Response> {
    let run = async {
        let (mut s, fingerprint) = connect(addr, tls).await?;
        let (status, body) = exchange(&mut s, addr, method, path, body, framing).await?;
        Ok(Response {
            status,
            body,
            fingerprint,
        })
    };
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "LocalSend request timed out"))?
}

/// POSTs a body of exactly `size` bytes to `path` (LocalSend's `upload`),
/// streaming the blocks `body` yields as they come. The body ending short,
/// running long or yielding an error breaks the connection off before its
/// end, so the server never takes a cut file for a whole one. `idle` bounds
/// each wait on the server (a block written, the response).
pub async fn upload(
    addr: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    path: &str,
    size: u64,
    mut body: tokio::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    idle: Duration,
) -> io::Result<Response> {
    let timed = |_: tokio::time::error::Elapsed| {
        io::Error::new(
            io::ErrorKind::TimedOut,
            "the LocalSend device stopped answering",
        )
    };
    let (mut s, fingerprint) = tokio::time::timeout(idle, connect(addr, tls))
        .await
        .map_err(timed)??;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {size}\r\nConnection: close\r\n\r\n"
    );
    tokio::time::timeout(idle, s.write_all(head.as_bytes()))
        .await
        .map_err(timed)??;
    let mut sent = 0u64;
    while let Some(block) = body.recv().await {
        let block = block?;
        sent += block.len() as u64;
        if sent > size {
            return Err(bad("the file grew while it was sent"));
        }
        tokio::time::timeout(idle, s.write_all(&block))
            .await
            .map_err(timed)??;
    }
    if sent != size {
        return Err(bad("the file ended before its size"));
    }
    tokio::time::timeout(idle, s.flush())
        .await
        .map_err(timed)??;
    let (status, body) = tokio::time::timeout(idle, read_response(&mut s))
        .await
        .map_err(timed)??;
    Ok(Response {
        status,
        body,
        fingerprint,
    })
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    framing: Framing,
) -> io::Result<(u16, Vec<u8>)> {
    let length = match framing {
        Framing::Length => format!("Content-Length: {}", body.len()),
        Framing::Chunked(_) => "Transfer-Encoding: chunked".into(),
    };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         {length}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await?;
    match framing {
        Framing::Length => s.write_all(body).await?,
        Framing::Chunked(n) => {
            for piece in body.chunks(n.max(1)) {
                s.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                    .await?;
                s.write_all(piece).await?;
                s.write_all(b"\r\n").await?;
            }
            s.write_all(b"0\r\n\r\n").await?;
        }
    }
    s.flush().await?;
    read_response(s).await
}

/// Reads a response to its end (bounded) and parses it.
async fn read_response<S: AsyncRead + Unpin>(s: &mut S) -> io::Result<(u16, Vec<u8>)> {
    let mut buf = Vec::new();
    match s.take(MAX_RESPONSE).read_to_end(&mut buf).await {
        Ok(_) => {}
        // A server that closes without TLS's close_notify: what came is it.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !buf.is_empty() => {}
        Err(e) => return Err(e),
    }
    parse(&buf)
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Status and body of a whole response.
fn parse(buf: &[u8]) -> io::Result<(u16, Vec<u8>)> {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of the response head"))?;
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| bad("response head not UTF-8"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let rest = &buf[end + 4..];
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if !chunked {
        return Ok((status, rest.to_vec()));
    }
    let mut body = Vec::new();
    let mut at = rest;
    loop {
        let line_end = at
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("cut chunk"))?;
        let size = std::str::from_utf8(&at[..line_end])
            .ok()
            .and_then(|l| usize::from_str_radix(l.split(';').next()?.trim(), 16).ok())
            .ok_or_else(|| bad("bad chunk size"))?;
        at = &at[line_end + 2..];
        if size == 0 {
            return Ok((status, body));
        }
        if at.len() < size {
            return Err(bad("cut chunk"));
        }
        body.extend_from_slice(&at[..size]);
        at = at.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse_with_length_or_chunks() {
        let (s, b) = parse(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi").unwrap();
        assert_eq!((s, b.as_slice()), (200, &b"hi"[..]));
        let (s, b) = parse(
            b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((s, b.as_slice()), (403, &b"abc"[..]));
        assert!(parse(b"HTTP/1.1 200").is_err());
    }
}
