//! Documents a teller shows in a call. The teller uploads a PDF or PowerPoint file for the call they are in; the
//! gateway renders it page by page (`vbank-documents`) and keeps the pages with the call; pushing a page is a call
//! message (`{"kind":"document","id":…,"page":…}`), checked here and recorded with the document's SM3.
//!
//! - `POST /api/documents?customer=C&name=N` (a teller's session; the teller is in C's call), the file as the body:
//!   `{id, name, kind, pages, sm3}`. Too large: 413; not a PDF or PowerPoint file: 415; unreadable: 422.
//! - `GET /api/documents/{id}/pages/{n}`: the page as PNG, for the tellers in the document's call (session) and its
//!   customer (header `x-vbank-visit: <customer>:<secret>`, the visit's own secret); nobody else.
//!
//! In the store (calls table): `docmeta/<id>` (what it is, which call) and `docpage/<id>/<n>` (a PNG), apart, so
//! listing documents never reads pages. Documents are deleted [`KEEP`] after upload.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Semaphore;
use vbank_accounts::Role as StaffRole;
use vbank_documents::{DocumentError, MAX_BYTES, Renderer};
use vbank_store::{Expect, Table};

use super::{Desk, now_ms, problem, random_hex};
use crate::AppState;
use crate::room_messages::Body as Message;

/// How long an uploaded document and its pages are kept.
pub const KEEP: Duration = Duration::from_secs(12 * 3600);

/// Rendering runs a converter process per document: at most this many at once, so uploads cannot starve the media.
const RENDERS_AT_ONCE: usize = 2;

/// The renderer and its limit.
#[derive(Clone)]
pub(super) struct Documents {
    renderer: Renderer,
    permits: Arc<Semaphore>,
}

impl Default for Documents {
    fn default() -> Self {
        Documents { renderer: Renderer::default(), permits: Arc::new(Semaphore::new(RENDERS_AT_ONCE)) }
    }
}

/// What is kept about a document.
#[derive(Serialize, Deserialize)]
struct Meta {
    id: String,
    room: String,
    name: String,
    kind: String,
    pages: u32,
    sm3: String,
    by: String,
    at_ms: u64,
}

#[derive(Deserialize)]
struct UploadQuery {
    customer: String,
    #[serde(default)]
    name: String,
}

/// A file name fit to show: no path, no control characters, at most 200 characters.
fn display_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = base.chars().filter(|c| !c.is_control()).take(200).collect();
    if clean.trim().is_empty() { "document".into() } else { clean }
}

impl Desk {
    /// Why the pages of a document in `room` are refused to this request, unless it comes from a teller in that
    /// call or from its customer with the visit secret.
    async fn refuse_pages(&self, headers: &HeaderMap, room: &str) -> Option<Response> {
        if let Some(visit) = headers.get("x-vbank-visit").and_then(|v| v.to_str().ok()) {
            let (customer, secret) = visit.split_once(':').unwrap_or((visit, ""));
            let inner = self.inner.lock().expect("not poisoned");
            let ok = inner.customers.get(customer).is_some_and(|c| c.holds(secret))
                && inner.rooms.get(customer).is_some_and(|r| r == room);
            return (!ok).then(|| problem(StatusCode::FORBIDDEN, "this document is not for your call"));
        }
        let Some((name, StaffRole::Teller)) = self.session(headers).await else {
            return Some(problem(StatusCode::UNAUTHORIZED, "log in as a teller, or open the page from your call"));
        };
        let customer = {
            let inner = self.inner.lock().expect("not poisoned");
            inner.rooms.iter().find(|(_, r)| *r == room).map(|(c, _)| c.clone())
        };
        match customer {
            Some(c) if self.teller_room(&name, &c).await.is_some() => None,
            _ => Some(problem(StatusCode::FORBIDDEN, "this document belongs to a call you are not in")),
        }
    }

    async fn meta(&self, id: &str) -> Option<Meta> {
        let v = self.store.as_ref()?.get(Table::Calls, &format!("docmeta/{id}")).await.ok()??;
        serde_json::from_slice(&v.value).ok()
    }

    /// A document push from `role` in `room`: only tellers and specialists push, only documents of this call and
    /// pages they have. The message comes back with the document's name, pages and SM3 filled in.
    pub async fn check_push(&self, room: &str, role: &str, body: Message) -> Result<Message, String> {
        let Message::Document { id, page, .. } = body else { return Ok(body) };
        if !matches!(role, "teller" | "specialist") {
            return Err("only the bank's staff push documents".into());
        }
        let meta = self.meta(&id).await.filter(|m| m.room == room);
        let Some(m) = meta else { return Err(format!("no document {id} in this call: upload it first")) };
        if page > m.pages {
            return Err(format!("page {page}: the document has {} pages", m.pages));
        }
        Ok(Message::Document { id, page, name: m.name, pages: m.pages, sm3: m.sm3 })
    }

    /// Delete documents older than [`KEEP`].
    pub(super) async fn expire_documents(&self) {
        let Some(store) = &self.store else { return };
        let Ok(all) = store.list(Table::Calls, "docmeta/", 10_000).await else { return };
        let limit = now_ms().saturating_sub(KEEP.as_millis() as u64);
        for (key, v) in all {
            let Ok(m) = serde_json::from_slice::<Meta>(&v.value) else { continue };
            if m.at_ms > limit {
                continue;
            }
            delete_pages(store.as_ref(), &m.id, m.pages).await;
            let _ = store.delete(Table::Calls, &key, Expect::Any).await;
            log::info!(room = m.room.as_str(); "document {} deleted after {KEEP:?}", m.id);
        }
    }
}

async fn delete_pages(store: &dyn vbank_store::Store, id: &str, pages: u32) {
    for n in 1..=pages {
        let _ = store.delete(Table::Calls, &format!("docpage/{id}/{n}"), Expect::Any).await;
    }
}

async fn upload(State(s): State<AppState>, Query(q): Query<UploadQuery>, headers: HeaderMap, body: Body) -> Response {
    let desk = &s.desk;
    let Some(store) = desk.store.clone() else {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "no document store on this node");
    };
    let name = match desk.session(&headers).await {
        Some((name, StaffRole::Teller)) => name,
        Some(_) => return problem(StatusCode::FORBIDDEN, "only tellers show documents"),
        None => return problem(StatusCode::UNAUTHORIZED, "log in first (POST /api/login)"),
    };
    let Some(room) = desk.teller_room(&name, &q.customer).await else {
        return problem(StatusCode::FORBIDDEN, "you are not in a call with this customer");
    };
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let too_large = |bytes: Option<usize>| {
        let e = DocumentError::TooLarge { bytes: bytes.unwrap_or(MAX_BYTES + 1), max: MAX_BYTES };
        problem(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
    };
    if declared.is_some_and(|n| n > MAX_BYTES) {
        return too_large(declared);
    }
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BYTES).await else { return too_large(declared) };
    let rendered = {
        let _permit = desk.documents.permits.acquire().await;
        desk.documents.renderer.render(&bytes).await
    };
    let r = match rendered {
        Ok(r) => r,
        Err(e) => {
            let status = match e {
                DocumentError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                DocumentError::Unsupported(_) | DocumentError::Empty => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                DocumentError::Unreadable(_) | DocumentError::TooManyPages { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            log::warn!(room = room.as_str(); "document refused: {e}");
            return problem(status, e.to_string());
        }
    };
    let id = format!("doc-{}", random_hex(12));
    for (n, png) in r.pages.iter().enumerate() {
        if let Err(e) = store.put(Table::Calls, &format!("docpage/{id}/{}", n + 1), png, Expect::Absent).await {
            delete_pages(store.as_ref(), &id, n as u32).await;
            return problem(StatusCode::SERVICE_UNAVAILABLE, format!("the pages could not be kept: {e}"));
        }
    }
    let meta = Meta {
        id: id.clone(),
        room: room.clone(),
        name: display_name(&q.name),
        kind: r.kind.as_str().into(),
        pages: r.pages.len() as u32,
        sm3: r.sm3,
        by: name,
        at_ms: now_ms(),
    };
    let value = serde_json::to_vec(&meta).expect("serializes");
    if let Err(e) = store.put(Table::Calls, &format!("docmeta/{id}"), &value, Expect::Absent).await {
        delete_pages(store.as_ref(), &id, meta.pages).await;
        return problem(StatusCode::SERVICE_UNAVAILABLE, format!("the document could not be kept: {e}"));
    }
    log::info!(room = room.as_str(); "document {id} uploaded: {} pages", meta.pages);
    Json(json!({"id": id, "name": meta.name, "kind": meta.kind, "pages": meta.pages, "sm3": meta.sm3})).into_response()
}

async fn page(State(s): State<AppState>, Path((id, n)): Path<(String, u32)>, headers: HeaderMap) -> Response {
    let Some(meta) = s.desk.meta(&id).await else { return problem(StatusCode::NOT_FOUND, "no such document") };
    if let Some(refused) = s.desk.refuse_pages(&headers, &meta.room).await {
        return refused;
    }
    let key = format!("docpage/{id}/{n}");
    match s.desk.store.as_ref().map(|st| st.get(Table::Calls, &key)) {
        Some(get) => match get.await {
            Ok(Some(v)) => {
                ([(header::CONTENT_TYPE, "image/png"), (header::CACHE_CONTROL, "private, no-store")], v.value)
                    .into_response()
            }
            Ok(None) => problem(StatusCode::NOT_FOUND, format!("page {n}: the document has {} pages", meta.pages)),
            Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, format!("the page could not be read: {e}")),
        },
        None => problem(StatusCode::SERVICE_UNAVAILABLE, "no document store on this node"),
    }
}

/// The document routes.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/documents", axum::routing::post(upload).layer(axum::extract::DefaultBodyLimit::max(MAX_BYTES)))
        .route("/api/documents/{id}/pages/{n}", axum::routing::get(page))
}

#[cfg(test)]
mod tests {
    #[test]
    fn display_names_lose_paths_and_control_characters() {
        assert_eq!(super::display_name("C:\\Users\\x\\开户协议.pdf"), "开户协议.pdf");
        assert_eq!(super::display_name("../../etc/passwd"), "passwd");
        assert_eq!(super::display_name("a\u{0}b\nc.pdf"), "abc.pdf");
        assert_eq!(super::display_name(""), "document");
    }
}
