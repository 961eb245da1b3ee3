//! A browser guest's file routes: its offers and uploads (handed to the
//! node's receiver through [`crate::net::transfer::local`]) and the files the
//! owner sent it (downloads fed by the node's sender through
//! [`crate::net::transfer::local::download`]). HTTP only: the transfers and
//! their state are the node's.

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Multipart, Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::super::auth::Guest;
use super::super::{ApiError, ApiResult, App};
use super::body::{attachment, content_length, field_path, multipart_error, too_large};
use crate::net::transfer::TransferId;
use crate::net::transfer::local::{FileState, LocalError, LocalStatus};
use crate::proto::transfer::{Entry, Manifest};

pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/api/guest/offers", post(guest_offer))
        .route("/api/guest/offers/{id}", get(guest_offer_state))
        .route(
            "/api/guest/offers/{id}/upload",
            post(guest_upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/api/guest/offers/{id}/cancel", post(guest_cancel))
        .route("/api/guest/shared", get(shared))
        .route("/api/guest/shared/{id}/{index}", get(download_shared))
}

#[derive(Debug, Deserialize)]
pub(crate) struct GuestOfferReq {
    entries: Vec<GuestEntry>,
}

/// An entry of a guest's offer (`dir` may be left out for files).
#[derive(Debug, Deserialize)]
struct GuestEntry {
    path: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    dir: bool,
}

/// The checked manifest of a guest's offer (at least one file).
pub(crate) fn guest_manifest(req: &GuestOfferReq) -> ApiResult<Manifest> {
    let manifest = Manifest::new(
        req.entries
            .iter()
            .map(|e| {
                if e.dir {
                    Entry::dir(e.path.clone())
                } else {
                    Entry::file(e.path.clone(), e.size)
                }
            })
            .collect(),
    )
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if manifest.files() == 0 {
        return Err(ApiError::bad_request("the offer holds no file"));
    }
    Ok(manifest)
}

/// A refusal of the transfer service, as an HTTP error.
fn local_error(e: LocalError) -> ApiError {
    let status = match &e {
        LocalError::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
        LocalError::NotFound(_) | LocalError::NoFile(_) => StatusCode::NOT_FOUND,
        LocalError::Conflict(_) | LocalError::Cancelled => StatusCode::CONFLICT,
        LocalError::NoSpace(_) => StatusCode::INSUFFICIENT_STORAGE,
        LocalError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        LocalError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
    };
    ApiError::new(status, e.to_string())
}

/// `POST /api/guest/offers`: a guest offers files (names and sizes). The
/// node takes it as any peer's offer (the owner is asked, budgets apply).
async fn guest_offer(
    State(app): State<App>,
    Guest(guest): Guest,
    Json(req): Json<GuestOfferReq>,
) -> ApiResult<Json<serde_json::Value>> {
    let node = app.node()?;
    let manifest = guest_manifest(&req)?;
    let max = app.options.max_upload;
    if manifest.total_bytes() > max {
        return Err(too_large(max));
    }
    let (id, accepted) = node
        .local_transfers()
        .offer(guest, manifest)
        .await
        .map_err(local_error)?;
    Ok(Json(serde_json::json!({
        "id": id,
        "state": if accepted { "accepted" } else { "offered" },
    })))
}

/// Where a guest's offer stands.
async fn guest_offer_state(
    State(app): State<App>,
    Guest(guest): Guest,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<LocalStatus>> {
    let id: TransferId = id.parse().map_err(ApiError::bad_request)?;
    let status = app.node()?.local_transfers().status(id, &guest);
    Ok(Json(status.map_err(local_error)?))
}

async fn guest_cancel(
    State(app): State<App>,
    Guest(guest): Guest,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let id: TransferId = id.parse().map_err(ApiError::bad_request)?;
    let local = app.node()?.local_transfers();
    local.cancel(id, &guest).map_err(local_error)?;
    Ok(Json(serde_json::json!({ "id": id, "state": "cancelled" })))
}

/// `POST /api/guest/offers/{id}/upload`: the files of an accepted offer, one
/// multipart field per file, named by its path in the offer, in the offer's
/// order. Each is handed to the node's receiver as it streams in; files the
/// owner did not accept are read and dropped, files not sent fail.
async fn guest_upload(
    State(app): State<App>,
    Guest(guest): Guest,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    mut mp: Multipart,
) -> ApiResult<Json<serde_json::Value>> {
    let id: TransferId = id.parse().map_err(ApiError::bad_request)?;
    let local = app.node()?.local_transfers();
    let offer = local.status(id, &guest).map_err(local_error)?;
    // The body holds the files and a little multipart framing.
    let framing = 1024 * (offer.entries + 1);
    let total = offer.total_bytes;
    if content_length(&headers).is_some_and(|n| n > total.saturating_add(framing)) {
        return Err(too_large(total));
    }
    let mut up = local.upload(id, &guest).await.map_err(local_error)?;
    while let Some(mut field) = mp.next_field().await.map_err(multipart_error)? {
        let path = field_path(&field)?;
        let Some(index) = up.index_of(path.as_str()) else {
            return Err(ApiError::bad_request(format!(
                "{:?} was not offered",
                path.as_str()
            )));
        };
        let take = up.accepted(index);
        if take {
            up.start(index).await.map_err(local_error)?;
        }
        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
            if take {
                up.write(&chunk).await.map_err(local_error)?;
            }
        }
        if take {
            up.end().await.map_err(local_error)?;
        }
    }
    let done = up.finish().await.map_err(local_error)?;
    Ok(Json(serde_json::json!({
        "id": id,
        "files": done.ok + done.failed,
        "failed": done.failed,
        "bytes": done.done_bytes,
    })))
}

/// A file the owner sent, as the guest page lists it.
#[derive(Debug, Serialize)]
struct SharedFile {
    index: u32,
    path: String,
    size: u64,
    state: FileState,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    downloaded: bool,
    url: String,
}

#[derive(Debug, Serialize)]
struct SharedView {
    id: TransferId,
    at_ms: u64,
    /// Files in the order they are downloaded.
    files: Vec<SharedFile>,
}

/// What the owner sent this guest, newest first.
async fn shared(State(app): State<App>, Guest(guest): Guest) -> ApiResult<Json<Vec<SharedView>>> {
    let shares = app.node()?.local_transfers().shares(&guest);
    Ok(Json(
        shares
            .into_iter()
            .map(|s| SharedView {
                id: s.id,
                at_ms: s.created_ms,
                files: s
                    .files
                    .into_iter()
                    .map(|f| SharedFile {
                        url: format!("/api/guest/shared/{}/{}", s.id, f.index),
                        downloaded: f.state == FileState::Done,
                        index: f.index,
                        path: f.path,
                        size: f.size,
                        state: f.state,
                        error: f.error,
                    })
                    .collect(),
            })
            .collect(),
    ))
}

/// `GET /api/guest/shared/{id}/{index}`: one file the owner sent, as the
/// node's sender streams it (one at a time, in the listed order).
async fn download_shared(
    State(app): State<App>,
    Guest(guest): Guest,
    UrlPath((id, index)): UrlPath<(String, u32)>,
) -> ApiResult<Response> {
    let id: TransferId = id.parse().map_err(ApiError::bad_request)?;
    let local = app.node()?.local_transfers();
    let d = local.download(id, &guest, index).map_err(local_error)?;
    let name = d.path.rsplit('/').next().unwrap_or(&d.path).to_string();
    let blocks = futures::stream::unfold(d.body, |mut rx| async move {
        let block = rx.recv().await?;
        Some((block.map(Bytes::from), rx))
    });
    Ok(attachment(Body::from_stream(blocks), d.size, &name))
}
