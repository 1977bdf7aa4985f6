//! The server's typed errors: what went wrong ([`ErrorKind`]), with the
//! context (path, repository, token) and the source. Every kind maps to one
//! HTTP status, so a handler returns `Result<_, Error>` and the client sees
//! `{"error": "...", "kind": "..."}` with the right 4xx/5xx; the CLI maps
//! the same kinds to exit codes.

use axum::http::StatusCode;
use std::path::PathBuf;

/// What kind of failure an [`Error`] is; the `kind` field of an error body
/// (serde's names are [`ErrorKind::as_str`]'s, a test checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// No token, or a token the catalog does not know (401).
    Unauthorized,
    /// A known token whose role does not allow the request (403).
    Forbidden,
    /// No such route, token, repository or restore point (404).
    NotFound,
    /// The route exists but not with this method (405).
    MethodNotAllowed,
    /// Malformed JSON, a missing field, a bad value (400).
    BadRequest,
    /// The request body is over the limit (413).
    TooLarge,
    /// The body is not `application/json` (415).
    UnsupportedMediaType,
    /// The request contradicts the state, e.g. deleting the last admin
    /// token (409).
    Conflict,
    /// A service the server relies on (an NFS service) did not answer (503).
    Unavailable,
    /// The catalog file is newer than this program (refused at start).
    CatalogTooNew,
    /// SQLite failed (500).
    Catalog,
    /// A repository failed to list (500; damage is reported per point).
    Repository,
    /// A file of the data dir or the operator's PEM files (500 / start).
    Io,
    /// Certificates and keys: making, reading or using them.
    Tls,
    /// An agent the server called did not answer, or failed (502).
    Agent,
    /// Anything else that is the server's fault (500).
    Internal,
}

impl ErrorKind {
    /// The `kind` string of an error body.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotFound => "not_found",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::UnsupportedMediaType => "unsupported_media_type",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::CatalogTooNew => "catalog_too_new",
            ErrorKind::Catalog => "catalog",
            ErrorKind::Repository => "repository",
            ErrorKind::Io => "io",
            ErrorKind::Tls => "tls",
            ErrorKind::Agent => "agent",
            ErrorKind::Internal => "internal",
        }
    }

    /// The HTTP status of this kind.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Agent => StatusCode::BAD_GATEWAY,
            ErrorKind::CatalogTooNew
            | ErrorKind::Catalog
            | ErrorKind::Repository
            | ErrorKind::Io
            | ErrorKind::Tls
            | ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The kind of an error body's `kind` string (the client's side).
    pub fn parse(s: &str) -> Option<ErrorKind> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }
}

/// A server error: kind + context + source.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("this needs the {needed} role; the token has {has}")]
    Forbidden {
        needed: &'static str,
        has: &'static str,
    },
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{message}")]
    Request { kind: ErrorKind, message: String },
    #[error("catalog {path} has schema version {found}, newer than this program's {supported}: refusing to open it (run the newer lifeboat, or restore an older catalog)")]
    CatalogTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("catalog {path}: {source}")]
    Catalog {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("repository {name}: {source}")]
    Repository {
        name: String,
        #[source]
        source: lifeboat_repo::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {detail}")]
    Tls { what: String, detail: String },
    /// Agent `name` at `address` could not be reached, or failed.
    #[error("agent {name} at {address}: {detail}")]
    Agent {
        name: String,
        address: String,
        detail: String,
    },
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// The kind of this error (and so its HTTP status).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Unauthorized(_) => ErrorKind::Unauthorized,
            Error::Forbidden { .. } => ErrorKind::Forbidden,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::Request { kind, .. } => *kind,
            Error::CatalogTooNew { .. } => ErrorKind::CatalogTooNew,
            Error::Catalog { .. } => ErrorKind::Catalog,
            Error::Repository { source, .. } => match source {
                lifeboat_repo::Error::NotFound { .. } => ErrorKind::NotFound,
                _ => ErrorKind::Repository,
            },
            Error::Io { .. } => ErrorKind::Io,
            Error::Tls { .. } => ErrorKind::Tls,
            Error::Agent { .. } => ErrorKind::Agent,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }

    /// A 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Error {
        Error::Request {
            kind: ErrorKind::BadRequest,
            message: message.into(),
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A TLS error about `what`.
    pub fn tls(what: impl Into<String>, detail: impl std::fmt::Display) -> Error {
        Error::Tls {
            what: what.into(),
            detail: detail.to_string(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_strings() {
        for k in [
            ErrorKind::Unauthorized,
            ErrorKind::Forbidden,
            ErrorKind::NotFound,
            ErrorKind::MethodNotAllowed,
            ErrorKind::BadRequest,
            ErrorKind::TooLarge,
            ErrorKind::UnsupportedMediaType,
            ErrorKind::Conflict,
            ErrorKind::Unavailable,
            ErrorKind::CatalogTooNew,
            ErrorKind::Agent,
            ErrorKind::Internal,
        ] {
            assert_eq!(ErrorKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(ErrorKind::parse("nonsense"), None);
        assert_eq!(ErrorKind::Forbidden.status(), StatusCode::FORBIDDEN);
    }
}
