//! The API client the CLI uses (`lifeboat --server URL ...`): blocking
//! HTTPS through `ureq` on rustls with the `ring` provider, TLS 1.2+ (the
//! rustls defaults), trusting the `--ca` file or else the system roots.
//! Errors the CLI tells apart are typed: the server's refusals keep their
//! [`ErrorKind`] (so 401/403 become the "refused" exit code), connection
//! and certificate failures are [`ClientError::Connect`].

use crate::agents::wire::{
    Hello, HelloReply, Publication, PublicationList, ScanResult, Unpublished,
};
use crate::api::agents::DeletedAgent;
use crate::api::handlers::RepositoryInfo;
use crate::api::instant_recovery::{RecoveryList, StartRecovery, StartedRecovery, StoppedRecovery};
use crate::api::jobs::{CreateJob, DeletedJob, UpdateJob};
use crate::api::proxies::{
    CreateEnrollment, CreatedEnrollment, DeletedProxy, Enroll, EnrolledProxy,
};
use crate::api::proxy_work::{
    FinishReport, ProgressReply, ProgressReport, Work, WorkReply, WorkRequest,
};
use crate::api::publications::OnTarget;
use crate::api::response::ErrorBody;
use crate::api::tokens::{CreateToken, CreatedToken, DeletedToken};
use crate::catalog::agents::Agent;
use crate::catalog::audit::AuditEntry;
use crate::catalog::jobs::Job;
use crate::catalog::proxies::{PeerKind, Proxy};
use crate::catalog::sessions::Session;
use crate::check::{CheckReport, CheckRequest};
use crate::error::ErrorKind;
use crate::proxies::identity::Identity;
use crate::tls::ClientIdentity;
use crate::token::{Role, TokenInfo};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("server URL {url:?}: {why}")]
    BadUrl { url: String, why: &'static str },
    #[error("CA file {path}: {detail}")]
    Ca { path: PathBuf, detail: String },
    #[error("no token: give --token or set LIFEBOAT_TOKEN")]
    NoToken,
    #[error("cannot reach {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: ureq::Error,
    },
    /// The server answered with an error.
    #[error("server refused {what}: {message} (HTTP {status})")]
    Server {
        what: String,
        status: u16,
        kind: Option<ErrorKind>,
        message: String,
    },
    #[error("unexpected answer to {what}: {detail}")]
    Decode { what: String, detail: String },
}

impl ClientError {
    /// The server's error kind, when the server answered with one.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            ClientError::Server { kind, .. } => *kind,
            ClientError::NoToken => Some(ErrorKind::Unauthorized),
            _ => None,
        }
    }
}

type Result<T> = std::result::Result<T, ClientError>;

/// Keep-alive connections a client keeps open to its server: a proxy's
/// upload runs at most this many requests at once
/// ([`crate::proxies::remote`]), so each reuses one of them and no
/// request pays a TLS handshake.
pub const MAX_IDLE_CONNECTIONS: usize = 8;

/// A connection to one server with one token.
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
    /// A client that presents a certificate (a proxy's, an agent's, the
    /// server's calling an agent): never a token.
    certificate: bool,
}

/// How long a request may take unless the client says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

impl Client {
    /// A client of `server` (`https://host[:port]`), trusting `ca` (PEM)
    /// or else the system's roots.
    pub fn new(server: &str, ca: Option<&Path>, token: Option<String>) -> Result<Client> {
        Client::with_timeout(server, ca, token, DEFAULT_TIMEOUT)
    }

    /// [`Client::new`] whose requests may take up to `timeout` (a scan
    /// on an agent answers when it is done).
    pub fn with_timeout(
        server: &str,
        ca: Option<&Path>,
        token: Option<String>,
        timeout: Duration,
    ) -> Result<Client> {
        let base = server.trim_end_matches('/').to_string();
        if !base.starts_with("https://") {
            return Err(ClientError::BadUrl {
                url: server.into(),
                why: "must start with https:// (the server speaks TLS only)",
            });
        }
        let roots = match ca {
            Some(path) => read_ca(path)?,
            None => system_roots(),
        };
        let agent = agent(roots, true, timeout);
        Ok(Client {
            base,
            token: token.filter(|t| !t.is_empty()),
            agent,
            certificate: false,
        })
    }

    /// A client of the server a proxy (or agent) enrolled with,
    /// presenting its certificate (mutual TLS) and trusting the CA it was
    /// given.
    pub fn for_proxy(identity: &Identity) -> Result<Client> {
        let mut client = Client::new(&identity.server, Some(&identity.ca()), None)?;
        client.agent = ureq::Agent::new_with_config(certificate_config(
            &identity.ca(),
            &identity.cert(),
            &identity.key(),
            DEFAULT_TIMEOUT,
        )?);
        client.certificate = true;
        Ok(client)
    }

    /// The server's client of agent `name` listening at `address`: the
    /// URL names the agent (`https://NAME:PORT`), whose certificate must
    /// carry that name and chain to the CA of `identity` (the server's
    /// own client certificate, presented); connections go to `address`
    /// whatever the name resolves to. Requests take at most `timeout`.
    pub fn for_agent(
        name: &str,
        address: SocketAddr,
        identity: &ClientIdentity,
        timeout: Duration,
    ) -> Result<Client> {
        let config = certificate_config(&identity.ca, &identity.cert, &identity.key, timeout)?;
        Ok(Client {
            base: format!("https://{name}:{}", address.port()),
            token: None,
            agent: ureq::Agent::with_parts(
                config,
                ureq::unversioned::transport::DefaultConnector::default(),
                FixedAddress(address),
            ),
            certificate: true,
        })
    }

    /// `POST /api/v1/login`: whose token this is.
    pub fn login(&self) -> Result<TokenInfo> {
        self.send("POST", "/api/v1/login", None::<&()>)
    }

    pub fn list_tokens(&self) -> Result<Vec<TokenInfo>> {
        self.send("GET", "/api/v1/tokens", None::<&()>)
    }

    pub fn create_token(&self, role: Role, name: Option<String>) -> Result<CreatedToken> {
        self.send("POST", "/api/v1/tokens", Some(&CreateToken { role, name }))
    }

    pub fn delete_token(&self, id: i64) -> Result<DeletedToken> {
        self.send("DELETE", &format!("/api/v1/tokens/{id}"), None::<&()>)
    }

    pub fn audit(&self) -> Result<Vec<AuditEntry>> {
        self.send("GET", "/api/v1/audit", None::<&()>)
    }

    /// The restore points of repository `name`, as `lifeboat list --json`
    /// gives them.
    pub fn restore_points(&self, name: &str) -> Result<Vec<serde_json::Value>> {
        let path = format!("/api/v1/repositories/{}/restore-points", encode(name));
        self.send("GET", &path, None::<&()>)
    }

    pub fn repositories(&self) -> Result<Vec<RepositoryInfo>> {
        self.send("GET", "/api/v1/repositories", None::<&()>)
    }

    pub fn list_recoveries(&self, repository: &str) -> Result<RecoveryList> {
        self.send(
            "GET",
            &format!(
                "/api/v1/repositories/{}/instant-recoveries",
                encode(repository)
            ),
            None::<&()>,
        )
    }

    pub fn start_recovery(
        &self,
        repository: &str,
        request: &StartRecovery,
    ) -> Result<StartedRecovery> {
        self.send(
            "POST",
            &format!(
                "/api/v1/repositories/{}/instant-recoveries",
                encode(repository)
            ),
            Some(request),
        )
    }

    pub fn stop_recovery(
        &self,
        repository: &str,
        session: &str,
        keep_overlay: bool,
    ) -> Result<StoppedRecovery> {
        self.send(
            "DELETE",
            &format!(
                "/api/v1/repositories/{}/instant-recoveries/{}?keep_overlay={keep_overlay}",
                encode(repository),
                encode(session)
            ),
            None::<&()>,
        )
    }

    pub fn check(&self, repair: bool) -> Result<CheckReport> {
        self.send("POST", "/api/v1/check", Some(&CheckRequest { repair }))
    }

    pub fn list_jobs(&self) -> Result<Vec<Job>> {
        self.send("GET", "/api/v1/jobs", None::<&()>)
    }

    pub fn create_job(&self, job: &CreateJob) -> Result<Job> {
        self.send("POST", "/api/v1/jobs", Some(job))
    }

    pub fn job(&self, name: &str) -> Result<Job> {
        self.send(
            "GET",
            &format!("/api/v1/jobs/{}", encode(name)),
            None::<&()>,
        )
    }

    pub fn update_job(&self, name: &str, update: &UpdateJob) -> Result<Job> {
        self.send(
            "PATCH",
            &format!("/api/v1/jobs/{}", encode(name)),
            Some(update),
        )
    }

    pub fn delete_job(&self, name: &str) -> Result<DeletedJob> {
        self.send(
            "DELETE",
            &format!("/api/v1/jobs/{}", encode(name)),
            None::<&()>,
        )
    }

    /// Queues a run of job `name`: the session.
    pub fn run_job(&self, name: &str) -> Result<Session> {
        self.send(
            "POST",
            &format!("/api/v1/jobs/{}/run", encode(name)),
            None::<&()>,
        )
    }

    /// The newest sessions (of `job` only, if given), newest first.
    pub fn sessions(&self, job: Option<&str>) -> Result<Vec<Session>> {
        let path = match job {
            Some(j) => format!("/api/v1/sessions?job={}", encode(j)),
            None => "/api/v1/sessions".to_string(),
        };
        self.send("GET", &path, None::<&()>)
    }

    /// One session with its log.
    pub fn cancel_session(&self, id: i64) -> Result<Session> {
        self.send(
            "POST",
            &format!("/api/v1/sessions/{id}/cancel"),
            None::<&()>,
        )
    }

    pub fn session(&self, id: i64) -> Result<Session> {
        self.send("GET", &format!("/api/v1/sessions/{id}"), None::<&()>)
    }

    /// `POST /api/v1/proxies/enrollments` (admin): a one-time secret that
    /// enrolls a `kind` peer.
    pub fn create_enrollment(
        &self,
        kind: PeerKind,
        expires_mins: Option<u32>,
    ) -> Result<CreatedEnrollment> {
        self.send(
            "POST",
            "/api/v1/proxies/enrollments",
            Some(&CreateEnrollment { expires_mins, kind }),
        )
    }

    /// `POST /api/v1/proxies/enroll`: no token, the secret authenticates.
    pub fn enroll(&self, request: &Enroll) -> Result<EnrolledProxy> {
        self.request("POST", "/api/v1/proxies/enroll", Some(request), false)
    }

    pub fn list_proxies(&self) -> Result<Vec<Proxy>> {
        self.send("GET", "/api/v1/proxies", None::<&()>)
    }

    pub fn delete_proxy(&self, name: &str) -> Result<DeletedProxy> {
        self.send(
            "DELETE",
            &format!("/api/v1/proxies/{}", encode(name)),
            None::<&()>,
        )
    }

    /// `POST /api/v1/proxy/hello` (a [`Client::for_proxy`]): which proxy
    /// the server takes this one for.
    pub fn proxy_hello(&self) -> Result<Proxy> {
        self.send("POST", "/api/v1/proxy/hello", None::<&()>)
    }

    pub fn list_agents(&self) -> Result<Vec<Agent>> {
        self.send("GET", "/api/v1/agents", None::<&()>)
    }

    pub fn delete_agent(&self, name: &str) -> Result<DeletedAgent> {
        self.send(
            "DELETE",
            &format!("/api/v1/agents/{}", encode(name)),
            None::<&()>,
        )
    }

    /// `POST /api/v1/publications`: publishes a restore point on an agent.
    pub fn publish(&self, request: &OnTarget) -> Result<Publication> {
        self.send("POST", "/api/v1/publications", Some(request))
    }

    /// `GET /api/v1/publications`: every agent's publications.
    pub fn publications(&self) -> Result<PublicationList> {
        self.send("GET", "/api/v1/publications", None::<&()>)
    }

    /// `DELETE /api/v1/publications/{id}`.
    pub fn unpublish(&self, id: &str) -> Result<Unpublished> {
        self.send(
            "DELETE",
            &format!("/api/v1/publications/{}", encode(id)),
            None::<&()>,
        )
    }

    /// `POST /api/v1/scans`: answers when the scan is done (make the
    /// client [`Client::with_timeout`] long enough).
    pub fn scan(&self, request: &OnTarget) -> Result<ScanResult> {
        self.send("POST", "/api/v1/scans", Some(request))
    }

    /// `POST /api/v1/agent/hello` (a [`Client::for_proxy`] of an agent's
    /// identity): where the agent listens; whom it should trust.
    pub fn agent_hello(&self, hello: &Hello) -> Result<HelloReply> {
        self.send("POST", "/api/v1/agent/hello", Some(hello))
    }

    /// `POST /api/v1/proxy/work`: a session to run, or `None` after the
    /// server's wait.
    pub fn proxy_work(&self, max_jobs: u32) -> Result<Option<Work>> {
        let reply: WorkReply = self.send(
            "POST",
            "/api/v1/proxy/work",
            Some(&WorkRequest { max_jobs }),
        )?;
        Ok(reply.work)
    }

    /// `POST /api/v1/proxy/sessions/{id}/progress`.
    pub fn proxy_progress(&self, id: i64, report: &ProgressReport) -> Result<ProgressReply> {
        self.send(
            "POST",
            &format!("/api/v1/proxy/sessions/{id}/progress"),
            Some(report),
        )
    }

    /// `POST /api/v1/proxy/sessions/{id}/finish`.
    pub fn proxy_finish(&self, id: i64, report: &FinishReport) -> Result<Session> {
        self.send(
            "POST",
            &format!("/api/v1/proxy/sessions/{id}/finish"),
            Some(report),
        )
    }

    /// One request with the token (a certificate client: its
    /// certificate).
    pub fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<T> {
        self.request(method, path, body, !self.certificate)
    }

    /// One request, with the bearer token if `bearer`; `body` as JSON;
    /// the answer parsed from JSON.
    fn request<B: Serialize, T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
        bearer: bool,
    ) -> Result<T> {
        let json = match body {
            Some(b) => Some(serde_json::to_vec(b).map_err(|e| ClientError::Decode {
                what: format!("{method} {path}"),
                detail: e.to_string(),
            })?),
            None => None,
        };
        let body = json.as_deref().map(|j| ("application/json", j));
        self.exchange(method, path, body, bearer)
    }

    /// One request, with the bearer token if `bearer` and `body` (its
    /// content type and bytes); the answer parsed from JSON. An error
    /// status is [`ClientError::Server`] with the server's kind.
    pub(crate) fn exchange<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &[u8])>,
        bearer: bool,
    ) -> Result<T> {
        let what = format!("{method} {path}");
        let url = format!("{}{path}", self.base);
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("Accept", "application/json");
        if bearer {
            let token = self.token.as_deref().ok_or(ClientError::NoToken)?;
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let connect = |source| ClientError::Connect {
            url: url.clone(),
            source,
        };
        let decode = |detail: String| ClientError::Decode {
            what: what.clone(),
            detail,
        };
        let mut response = match body {
            Some((content_type, bytes)) => {
                let req = request
                    .header("Content-Type", content_type)
                    .body(bytes)
                    .map_err(|e| decode(e.to_string()))?;
                self.agent.run(req).map_err(connect)?
            }
            None => {
                let req = request.body(()).map_err(|e| decode(e.to_string()))?;
                self.agent.run(req).map_err(connect)?
            }
        };
        let status = response.status().as_u16();
        let mut text = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(|e| decode(e.to_string()))?;
        // An upload's answer holds the chunk keys: the text is zeroed once
        // parsed (a cheap memset of a small body).
        let wipe = Wipe(&mut text);
        let text = &*wipe.0;
        if status >= 400 {
            let (kind, message) = match serde_json::from_str::<ErrorBody>(text) {
                Ok(b) => (ErrorKind::parse(&b.kind), b.error),
                Err(_) => (None, text.chars().take(200).collect()),
            };
            return Err(ClientError::Server {
                what,
                status,
                kind,
                message,
            });
        }
        serde_json::from_str(text).map_err(|e| decode(e.to_string()))
    }
}

/// Zeroes a response's text when dropped.
struct Wipe<'a>(&'a mut String);

impl Drop for Wipe<'_> {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(self.0);
    }
}

/// `text` percent-encoded for a path segment or query value (all but
/// unreserved characters).
fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A ureq agent on rustls (the `ring` provider, TLS 1.2+) trusting
/// `roots`, whose requests take at most `timeout`; HTTP error statuses are
/// answers, not errors. `https_only`: refuse plain `http://` URLs.
pub(crate) fn agent(
    roots: Vec<ureq::tls::Certificate<'static>>,
    https_only: bool,
    timeout: Duration,
) -> ureq::Agent {
    ureq::Agent::new_with_config(agent_config(roots, None, https_only, timeout))
}

/// The configuration of [`agent`] presenting `client_cert`.
fn agent_config(
    roots: Vec<ureq::tls::Certificate<'static>>,
    client_cert: Option<ureq::tls::ClientCert>,
    https_only: bool,
    timeout: Duration,
) -> ureq::config::Config {
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(crate::tls::crypto_provider())
        .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
        .client_cert(client_cert)
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .max_idle_connections_per_host(MAX_IDLE_CONNECTIONS)
        .https_only(https_only)
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
}

/// HTTPS only, trusting the CA file `ca`, presenting the certificate
/// `cert` with its key `key` (PEM files).
fn certificate_config(
    ca: &Path,
    cert: &Path,
    key: &Path,
    timeout: Duration,
) -> Result<ureq::config::Config> {
    let pem = |path: &Path| {
        std::fs::read(path).map_err(|e| ClientError::Ca {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })
    };
    let bad = |path: &Path, e: ureq::Error| ClientError::Ca {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    let certificate = ureq::tls::Certificate::from_pem(&pem(cert)?).map_err(|e| bad(cert, e))?;
    let private = ureq::tls::PrivateKey::from_pem(&pem(key)?).map_err(|e| bad(key, e))?;
    Ok(agent_config(
        read_ca(ca)?,
        Some(ureq::tls::ClientCert::new_with_certs(
            &[certificate],
            private,
        )),
        true,
        timeout,
    ))
}

/// A resolver that sends every request to one address (an agent's, whose
/// URL carries its name for the certificate check).
#[derive(Debug)]
struct FixedAddress(SocketAddr);

impl ureq::unversioned::resolver::Resolver for FixedAddress {
    fn resolve(
        &self,
        _uri: &ureq::http::Uri,
        _config: &ureq::config::Config,
        _timeout: ureq::unversioned::transport::NextTimeout,
    ) -> std::result::Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let mut addresses = self.empty();
        addresses.push(self.0);
        Ok(addresses)
    }
}

/// The certificates of a PEM file.
fn read_ca(path: &Path) -> Result<Vec<ureq::tls::Certificate<'static>>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let err = |detail: String| ClientError::Ca {
        path: path.to_path_buf(),
        detail,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no certificate in the file".into()));
    }
    Ok(certs
        .iter()
        .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
        .collect())
}

/// The system's trusted roots (none found: an empty list, and every
/// connection fails verification, saying so).
pub(crate) fn system_roots() -> Vec<ureq::tls::Certificate<'static>> {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "reading the system's root certificates");
    }
    found
        .certs
        .iter()
        .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
        .collect()
}
