//! Plain HTTP/1.1 written by hand over a TCP socket, for the web UI's tests:
//! no client library, `Connection: close`, one request per connection.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const T: Duration = Duration::from_secs(20);

/// One HTTP answer.
#[derive(Debug)]
pub struct Http {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Http {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A request whose answer is being read: its status and headers are in,
/// the body may still be coming.
#[derive(Debug)]
pub struct Pending {
    socket: TcpStream,
    answer: Http,
}

impl Pending {
    pub fn status(&self) -> u16 {
        self.answer.status
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.answer.header(name)
    }

    /// Reads the rest of the answer, until the server closes the connection
    /// (at the body's end, or when it breaks the body off).
    pub async fn finish(mut self) -> Http {
        // A body broken off may end with a reset: what came before it counts.
        let _ = tokio::time::timeout(T, self.socket.read_to_end(&mut self.answer.body))
            .await
            .expect("answer timed out");
        self.answer
    }
}

/// Sends one request (`Connection: close`) and reads the answer's head.
pub async fn start(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Pending {
    let mut s = tokio::time::timeout(T, TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if method != "GET" {
        req.push_str(&format!("Origin: http://{addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    let split = loop {
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(T, s.read(&mut buf))
            .await
            .expect("answer timed out")
            .unwrap();
        assert!(n > 0, "the connection closed before the end of headers");
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Pending {
        socket: s,
        answer: Http {
            status,
            headers,
            body: raw[split + 4..].to_vec(),
        },
    }
}

/// Sends one request (`Connection: close`) and reads the whole answer.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Http {
    start(addr, method, path, headers, body)
        .await
        .finish()
        .await
}
