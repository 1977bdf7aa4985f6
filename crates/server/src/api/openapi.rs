//! The OpenAPI 3.1 document, written by hand in `openapi.json` beside the
//! crate's manifest and served as it is at `GET /api/v1/openapi.json`.
//! Hand-written rather than derived (utoipa): ten routes do not pay for a
//! proc-macro dependency, and the document is checked against the one
//! route table instead (tests in [`crate::routes`]): every route is
//! documented, nothing else is, and the public ones say so.

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

/// The document's text.
pub const DOCUMENT: &str = include_str!("../../openapi.json");

/// `GET /api/v1/openapi.json` (no token).
pub async fn document() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], DOCUMENT)
}
