//! Request and response bodies of files: multipart uploads written to disk
//! as they stream (bounded in bytes and by the free space), the paths they
//! name, query strings, and attachments for downloads.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use axum::body::{Body, Bytes};
use axum::extract::Multipart;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::super::{ApiError, ApiResult};
use crate::net::transfer::fs as tfs;
use crate::proto::transfer::{Entry, Manifest, SafePath};

/// Free space an upload must leave on the disk.
pub const SPACE_MARGIN: u64 = 64 << 20;
/// Read size of downloads.
const READ_CHUNK: usize = 256 << 10;

/// Fails with 507 unless `need` bytes fit in `dir` with the margin to spare.
pub(crate) fn check_space(dir: &Path, need: u64) -> ApiResult<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| internal(format!("cannot create {}: {e}", dir.display())))?;
    let free = tfs::free_space(dir)
        .map_err(|e| internal(format!("free space of {}: {e}", dir.display())))?;
    if free < need.saturating_add(SPACE_MARGIN) {
        return Err(ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            format!(
                "not enough free space: {} MB needed, {} MB free",
                need.div_ceil(1_000_000),
                free / 1_000_000
            ),
        ));
    }
    Ok(())
}

pub(crate) fn internal(message: String) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
}

pub(crate) fn too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the upload is over the limit of {} MB", max / 1_000_000),
    )
}

pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The relative path a multipart field names (its file name).
pub(crate) fn field_path(field: &axum::extract::multipart::Field<'_>) -> ApiResult<SafePath> {
    upload_path(field.file_name())
}

/// The relative path an upload's file name asks for (`None`: the field has none).
pub(crate) fn upload_path(name: Option<&str>) -> ApiResult<SafePath> {
    let name = name.ok_or_else(|| ApiError::bad_request("a file field has no file name"))?;
    SafePath::parse(name).map_err(|e| ApiError::bad_request(format!("bad file name: {e}")))
}

pub(crate) fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    ApiError::bad_request(format!("the upload broke off: {e}"))
}

/// Key/value pairs of a query string, percent-decoded.
pub(crate) fn url_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Writes each multipart field to `dir/<its path>`, at most `max` bytes in
/// all. Returns (path, file, size) per file.
pub(crate) async fn store_fields(
    mp: &mut Multipart,
    dir: &Path,
    max: u64,
) -> ApiResult<Vec<(SafePath, PathBuf, u64)>> {
    let mut out: Vec<(SafePath, PathBuf, u64)> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut known = BTreeSet::new();
    let mut total: u64 = 0;
    std::fs::create_dir_all(dir).map_err(|e| internal(format!("outbox: {e}")))?;
    while let Some(mut field) = mp.next_field().await.map_err(multipart_error)? {
        let path = field_path(&field)?;
        if !seen.insert(path.as_str().to_string()) {
            return Err(ApiError::bad_request(format!(
                "{:?} appears twice",
                path.as_str()
            )));
        }
        let target = path.components().fold(dir.to_path_buf(), |p, c| p.join(c));
        let parent = target.parent().unwrap_or(dir).to_path_buf();
        tfs::ensure_dir(dir, &parent, &mut known)
            .map_err(|e| ApiError::bad_request(format!("{}: {e}", path.as_str())))?;
        let f = tfs::open_part(&target, 0).map_err(|e| internal(format!("{e}")))?;
        let mut f = tokio::fs::File::from_std(f);
        let mut size = 0u64;
        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
            // Without a Content-Length nothing was checked up front: keep
            // the margin free as the bytes come.
            if (total + chunk.len() as u64) / SPACE_MARGIN > total / SPACE_MARGIN {
                check_space(dir, 0)?;
            }
            total += chunk.len() as u64;
            if total > max {
                return Err(too_large(max));
            }
            size += chunk.len() as u64;
            f.write_all(&chunk)
                .await
                .map_err(|e| internal(format!("writing {}: {e}", target.display())))?;
        }
        f.flush().await.map_err(|e| internal(e.to_string()))?;
        out.push((path, target, size));
    }
    // A file named like a folder another file is in cannot be both.
    let manifest = Manifest::new(
        out.iter()
            .map(|(p, _, s)| Entry::file(p.as_str(), *s))
            .collect(),
    );
    manifest.map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(out)
}

/// Streams a file on this machine as an attachment named `name`.
pub(crate) async fn serve_file(path: &Path, name: &str) -> ApiResult<Response> {
    let f = tfs::open_existing(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            ApiError::new(StatusCode::GONE, format!("{name} is no longer there"))
        }
        _ => internal(format!("{}: {e}", path.display())),
    })?;
    let len = f.metadata().map_err(|e| internal(e.to_string()))?.len();
    let file = tokio::fs::File::from_std(f);
    // The server stops polling once it has `len` bytes, so the end is noticed
    // when the last byte is read, not by reading past it.
    let stream = futures::stream::unfold(Some((file, 0u64)), move |st| async move {
        let (mut file, sent) = st?;
        if sent == len {
            return None;
        }
        let mut buf = vec![0u8; READ_CHUNK.min((len - sent) as usize)];
        match file.read(&mut buf).await {
            Ok(0) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the file got shorter while it was sent",
                )),
                None,
            )),
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some((file, sent + n as u64))))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    Ok(attachment(Body::from_stream(stream), len, name))
}

/// A response of `len` bytes from `body`, downloaded as `name`.
pub(crate) fn attachment(body: Body, len: u64, name: &str) -> Response {
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&content_disposition(name)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// `attachment` with an ASCII fallback name and the UTF-8 name (RFC 6266).
pub(crate) fn content_disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut enc = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            enc.push(b as char);
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{enc}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_names_are_quoted_safely() {
        let d = content_disposition("naïve \"plan\".txt");
        assert!(
            d.starts_with("attachment; filename=\"na_ve _plan_.txt\";"),
            "{d}"
        );
        assert!(
            d.ends_with("filename*=UTF-8''na%C3%AFve%20%22plan%22.txt"),
            "{d}"
        );
    }

    #[test]
    fn query_pairs_are_percent_decoded() {
        assert_eq!(
            url_pairs("to=abc&to=d%2Fe&x"),
            vec![
                ("to".to_string(), "abc".to_string()),
                ("to".to_string(), "d/e".to_string()),
                ("x".to_string(), String::new())
            ]
        );
        assert_eq!(percent_decode("50%"), "50%");
    }
}
