//! Webhook notifications (`serve --webhook URL`, repeatable): after each
//! session ends, a small JSON document is POSTed to every URL, with a
//! [`TIMEOUT`] each. HTTPS URLs are verified against the system's roots;
//! plain `http://` is accepted only for a loopback host (the document
//! would otherwise cross a network in the clear). A failed delivery is
//! logged and never fails the job.

use crate::catalog::sessions::Session;
use serde::Serialize;
use std::time::Duration;

/// How long one delivery may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Checks a webhook URL: `https://...`, or `http://` to a loopback host.
pub fn check_url(url: &str) -> Result<(), String> {
    if url.starts_with("https://") && url.len() > "https://".len() {
        return Ok(());
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(format!(
            "webhook {url:?}: must start with https:// (or http:// to a loopback address)"
        ));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(format!(
            "webhook {url:?}: plain http:// is allowed only to a loopback address (127.0.0.0/8, ::1, localhost); use https://"
        ))
    }
}

/// The document a webhook receives.
#[derive(Debug, Clone, Serialize)]
pub struct Event<'a> {
    /// `session.end`.
    pub event: &'static str,
    pub job: &'a str,
    pub session: i64,
    pub state: &'static str,
    pub trigger: &'static str,
    pub attempt: u32,
    pub restore_point: Option<&'a str>,
    pub error: Option<&'a str>,
    pub queued_at: &'a str,
    pub started_at: Option<&'a str>,
    pub ended_at: Option<&'a str>,
    pub bytes_read: u64,
    pub bytes_stored: u64,
    /// The proxy that ran it (`None`: the server itself).
    pub proxy: Option<&'a str>,
}

impl<'a> Event<'a> {
    pub fn ended(s: &'a Session) -> Event<'a> {
        Event {
            event: "session.end",
            job: &s.job,
            session: s.id,
            state: s.state.as_str(),
            trigger: s.trigger.as_str(),
            attempt: s.attempt,
            restore_point: s.restore_point.as_deref(),
            error: s.error.as_deref(),
            queued_at: &s.queued_at,
            started_at: s.started_at.as_deref(),
            ended_at: s.ended_at.as_deref(),
            bytes_read: s.bytes_read,
            bytes_stored: s.bytes_stored,
            proxy: s.proxy.as_deref(),
        }
    }
}

/// The configured webhooks and the HTTP agent that calls them (cheap to
/// clone: the agent is shared).
#[derive(Clone)]
pub struct Webhooks {
    urls: Vec<String>,
    agent: ureq::Agent,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("urls", &self.urls)
            .finish()
    }
}

impl Webhooks {
    /// Webhooks to `urls` (each checked with [`check_url`]).
    pub fn new(urls: Vec<String>) -> Result<Webhooks, String> {
        for u in &urls {
            check_url(u)?;
        }
        let agent = crate::client::agent(crate::client::system_roots(), false, TIMEOUT);
        Ok(Webhooks { urls, agent })
    }

    /// POSTs `event` to every URL; failures are logged.
    pub fn send(&self, event: &Event<'_>) {
        let body = serde_json::to_vec(event).expect("an event serializes");
        for url in &self.urls {
            let result = self
                .agent
                .post(url)
                .header("Content-Type", "application/json")
                .send(&body[..]);
            match result {
                Ok(r) if r.status().is_success() => {
                    tracing::info!(url, session = event.session, "webhook delivered")
                }
                Ok(r) => tracing::warn!(
                    url,
                    session = event.session,
                    status = r.status().as_u16(),
                    "webhook refused"
                ),
                Err(e) => {
                    tracing::warn!(url, session = event.session, error = %e, "webhook failed")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback() {
        for ok in [
            "https://hooks.example/x",
            "http://127.0.0.1:9000/hook",
            "http://localhost/hook",
            "http://[::1]:80/",
        ] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.1/hook",
            "http://hooks.example/",
            "ftp://x",
            "https://",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
