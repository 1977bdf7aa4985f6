//! Errors as JSON responses (`{"error": "...", "kind": "..."}` with the
//! kind's status), and [`ApiJson`], the JSON body extractor whose
//! rejections (malformed JSON, wrong content type, oversized body) are
//! such errors too.

use crate::error::{Error, ErrorKind};
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub kind: String,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let kind = self.kind();
        if kind.status().is_server_error() {
            tracing::error!(kind = kind.as_str(), error = %self, "request failed");
        }
        let body = ErrorBody {
            error: self.to_string(),
            kind: kind.as_str().to_string(),
        };
        let mut response = (kind.status(), Json(body)).into_response();
        if kind == ErrorKind::Unauthorized {
            // RFC 6750: a 401 names the scheme the client should use.
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// A JSON request body; a body that does not parse is a 400 naming why,
/// one over the limit a 413, one without `Content-Type: application/json`
/// a 415.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(rejection_error(&rejection)),
        }
    }
}

fn rejection_error(r: &JsonRejection) -> Error {
    let kind = match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ErrorKind::TooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorKind::UnsupportedMediaType,
        _ => ErrorKind::BadRequest,
    };
    if kind == ErrorKind::TooLarge {
        return too_large(super::BODY_LIMIT);
    }
    Error::Request {
        kind,
        message: r.body_text(),
    }
}

/// The 413 of a body over `limit` bytes.
pub fn too_large(limit: usize) -> Error {
    Error::Request {
        kind: ErrorKind::TooLarge,
        message: format!("request body is over the limit of {limit} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_answer_with_their_status_and_a_401_names_the_scheme() {
        let r = Error::Unauthorized("no token").into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers()
                .get(axum::http::header::WWW_AUTHENTICATE)
                .unwrap(),
            "Bearer"
        );
        let r = too_large(super::super::BODY_LIMIT).into_response();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(r
            .headers()
            .get(axum::http::header::WWW_AUTHENTICATE)
            .is_none());
    }
}
