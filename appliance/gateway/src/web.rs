//! The pages, built into the binary: the appliance is air-gapped, so nothing comes from a CDN.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const CUSTOMER: &str = include_str!("../../web/customer/index.html");
const TELLER: &str = include_str!("../../web/teller/index.html");
const SUPERVISOR: &str = include_str!("../../web/supervisor/index.html");
const E2EE_BENCH: &str = include_str!("../../web/e2ee-bench/index.html");

/// Static assets by file name: (bytes, content type).
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.css", include_str!("../../web/assets/app.css"), "text/css; charset=utf-8"),
    ("status.js", include_str!("../../web/assets/status.js"), "text/javascript; charset=utf-8"),
    ("call.js", include_str!("../../web/assets/call.js"), "text/javascript; charset=utf-8"),
    ("call-page.js", include_str!("../../web/assets/call-page.js"), "text/javascript; charset=utf-8"),
    ("desk-page.js", include_str!("../../web/assets/desk-page.js"), "text/javascript; charset=utf-8"),
    ("document-view.js", include_str!("../../web/assets/document-view.js"), "text/javascript; charset=utf-8"),
    ("kyc-panel.js", include_str!("../../web/assets/kyc-panel.js"), "text/javascript; charset=utf-8"),
    ("language.js", include_str!("../../web/assets/language.js"), "text/javascript; charset=utf-8"),
    ("supervisor.js", include_str!("../../web/assets/supervisor.js"), "text/javascript; charset=utf-8"),
];

/// The frame-encryption worker and its modules (`/assets/e2ee/…`).
const E2EE_ASSETS: &[(&str, &str, &str)] = &[
    ("call-e2ee.js", include_str!("../../web/assets/e2ee/call-e2ee.js"), "text/javascript; charset=utf-8"),
    ("worker.js", include_str!("../../web/assets/e2ee/worker.js"), "text/javascript; charset=utf-8"),
    ("sframe.js", include_str!("../../web/assets/e2ee/sframe.js"), "text/javascript; charset=utf-8"),
    ("keys.js", include_str!("../../web/assets/e2ee/keys.js"), "text/javascript; charset=utf-8"),
    ("bench.js", include_str!("../../web/assets/e2ee/bench.js"), "text/javascript; charset=utf-8"),
];

/// Routes for the pages and their assets.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { html(CUSTOMER) }))
        .route("/teller", get(|| async { html(TELLER) }))
        .route("/supervisor", get(|| async { html(SUPERVISOR) }))
        .route("/e2ee-bench", get(|| async { html(E2EE_BENCH) }))
        .route("/assets/{file}", get(asset))
        .route("/assets/e2ee/{file}", get(e2ee_asset))
}

fn html(body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

async fn asset(Path(file): Path<String>) -> Response {
    serve(ASSETS, &file)
}

async fn e2ee_asset(Path(file): Path<String>) -> Response {
    serve(E2EE_ASSETS, &file)
}

fn serve(assets: &'static [(&str, &str, &str)], file: &str) -> Response {
    match assets.iter().find(|(name, _, _)| *name == file) {
        Some((_, body, ctype)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(ctype)),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            *body,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Headers on every response of the public listener: no framing, no sniffing, no referrers, same-origin only.
pub async fn security_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; \
             frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(self), microphone=(self), geolocation=(self), display-capture=(self)"),
    );
    resp
}
