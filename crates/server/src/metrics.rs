//! Prometheus metrics in the text exposition format (written by hand: a
//! few families do not need a metrics crate): requests by route, method
//! and status, requests refused for their credentials, TLS handshakes
//! completed (so a test sees that a proxy's upload reuses its
//! connections), proxies' uploads and the chunk bytes they stored, and
//! uptime.
//!
//! Labels are bounded: the route is the matched route pattern (or
//! `unmatched`) and the method one of the few HTTP knows (else `other`),
//! so a client cannot grow the map with made-up paths or methods.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// The route label of requests no route matched.
pub const UNMATCHED: &str = "unmatched";

/// The server's counters.
#[derive(Debug)]
pub struct Metrics {
    started: Instant,
    requests: Mutex<BTreeMap<(String, &'static str, u16), u64>>,
    auth_failures: AtomicU64,
    /// Completed handshakes without and with a client certificate.
    handshakes: [AtomicU64; 2],
    uploads: AtomicU64,
    chunks: AtomicU64,
    chunk_bytes: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            started: Instant::now(),
            requests: Mutex::new(BTreeMap::new()),
            auth_failures: AtomicU64::new(0),
            handshakes: [AtomicU64::new(0), AtomicU64::new(0)],
            uploads: AtomicU64::new(0),
            chunks: AtomicU64::new(0),
            chunk_bytes: AtomicU64::new(0),
        }
    }

    /// Counts one answered request.
    pub fn request(&self, route: &str, method: &str, status: u16) {
        let method = bounded_method(method);
        let mut map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((route.to_string(), method, status)).or_insert(0) += 1;
    }

    /// Counts one request refused for its credentials (401 or 403).
    pub fn auth_failure(&self) {
        self.auth_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one completed TLS handshake (one connection), with a
    /// client certificate (a proxy's) or without.
    pub fn handshake(&self, client_certificate: bool) {
        self.handshakes[usize::from(client_certificate)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one upload opened by a proxy.
    pub fn upload_opened(&self) {
        self.uploads.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one new chunk a proxy uploaded, `bytes` as stored.
    pub fn chunk_uploaded(&self, bytes: u64) {
        self.chunks.fetch_add(1, Ordering::Relaxed);
        self.chunk_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Seconds since the server started.
    pub fn uptime_seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP lifeboat_http_requests_total HTTP requests answered, by route, method and status.\n");
        out.push_str("# TYPE lifeboat_http_requests_total counter\n");
        let map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        for ((route, method, status), n) in map.iter() {
            let _ = writeln!(
                out,
                "lifeboat_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        drop(map);
        out.push_str("# HELP lifeboat_auth_failures_total Requests refused for their token: missing, unknown, deleted, or without the role.\n");
        out.push_str("# TYPE lifeboat_auth_failures_total counter\n");
        let _ = writeln!(
            out,
            "lifeboat_auth_failures_total {}",
            self.auth_failures.load(Ordering::Relaxed)
        );
        out.push_str("# HELP lifeboat_tls_handshakes_total TLS handshakes completed (connections served), by whether the client sent a certificate (a proxy).\n");
        out.push_str("# TYPE lifeboat_tls_handshakes_total counter\n");
        for (cert, n) in ["false", "true"].iter().zip(&self.handshakes) {
            let _ = writeln!(
                out,
                "lifeboat_tls_handshakes_total{{client_certificate=\"{cert}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        for (name, help, v) in [
            (
                "lifeboat_uploads_total",
                "Uploads opened by proxies.",
                &self.uploads,
            ),
            (
                "lifeboat_upload_chunks_total",
                "New chunks proxies uploaded.",
                &self.chunks,
            ),
            (
                "lifeboat_upload_chunk_bytes_total",
                "Bytes of the new chunks proxies uploaded, as stored.",
                &self.chunk_bytes,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
        }
        out.push_str("# HELP lifeboat_uptime_seconds Seconds since the server started.\n");
        out.push_str("# TYPE lifeboat_uptime_seconds gauge\n");
        let _ = writeln!(out, "lifeboat_uptime_seconds {:.3}", self.uptime_seconds());
        out
    }
}

fn bounded_method(m: &str) -> &'static str {
    const KNOWN: [&str; 8] = [
        "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE",
    ];
    KNOWN.into_iter().find(|k| *k == m).unwrap_or("other")
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_render_as_prometheus_text() {
        let m = Metrics::new();
        m.request("/api/v1/health", "GET", 200);
        m.request("/api/v1/health", "GET", 200);
        m.request(UNMATCHED, "BREW", 404);
        m.auth_failure();
        m.handshake(true);
        m.chunk_uploaded(100);
        m.chunk_uploaded(20);
        let text = m.render();
        assert!(text.contains("lifeboat_tls_handshakes_total{client_certificate=\"true\"} 1\n"));
        assert!(text.contains("lifeboat_tls_handshakes_total{client_certificate=\"false\"} 0\n"));
        assert!(text.contains("lifeboat_upload_chunks_total 2\n"));
        assert!(text.contains("lifeboat_upload_chunk_bytes_total 120\n"));
        assert!(text.contains(
            "lifeboat_http_requests_total{route=\"/api/v1/health\",method=\"GET\",status=\"200\"} 2\n"
        ));
        assert!(text.contains(
            "lifeboat_http_requests_total{route=\"unmatched\",method=\"other\",status=\"404\"} 1\n"
        ));
        assert!(text.contains("lifeboat_auth_failures_total 1\n"));
        assert!(text.contains("# TYPE lifeboat_uptime_seconds gauge\nlifeboat_uptime_seconds "));
    }
}
