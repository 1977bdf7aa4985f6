//! The one table of the API's routes: method, path, who may call it and
//! which handler answers. The router is built from it
//! ([`crate::api::router`]) and the OpenAPI document is checked against it
//! (a test in this file), so the three cannot drift apart.

use crate::token::Role;

/// The HTTP methods the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Method {
    Get,
    Post,
    Patch,
    Put,
    Delete,
}

impl Method {
    /// Lower case, as OpenAPI names operations.
    pub fn as_openapi(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
            Method::Patch => "patch",
            Method::Put => "put",
            Method::Delete => "delete",
        }
    }

    /// As in a request line.
    pub fn as_http(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Patch => "PATCH",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, no token.
    Public,
    /// A token with at least this role.
    Role(Role),
    /// An enrolled proxy's client certificate (mutual TLS), no token.
    Proxy,
    /// An enrolled agent's certificate (mutual TLS), no token.
    Agent,
}

/// Which handler answers a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Health,
    Login,
    ListTokens,
    CreateToken,
    DeleteToken,
    ListRepositories,
    ListRestorePoints,
    ListRecoveries,
    StartRecovery,
    StopRecovery,
    Audit,
    Check,
    ListJobs,
    CreateJob,
    ShowJob,
    UpdateJob,
    DeleteJob,
    RunJob,
    ListSessions,
    ShowSession,
    CancelSession,
    Metrics,
    OpenApi,
    CreateEnrollment,
    Enroll,
    ListProxies,
    DeleteProxy,
    ProxyHello,
    ProxyWork,
    ProxyProgress,
    ProxyFinish,
    ListAgents,
    DeleteAgent,
    AgentHello,
    ListPublications,
    CreatePublication,
    DeletePublication,
    RunScan,
    UploadOpen,
    UploadKnown,
    UploadChunk,
    UploadCommit,
    UploadAbort,
}

/// One route of the API.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: Method,
    /// Path with `{name}` parameters, as axum and OpenAPI both write them.
    pub path: &'static str,
    pub access: Access,
    pub endpoint: Endpoint,
}

const fn route(method: Method, path: &'static str, access: Access, endpoint: Endpoint) -> Route {
    Route {
        method,
        path,
        access,
        endpoint,
    }
}

const VIEWER: Access = Access::Role(Role::Viewer);
const OPERATOR: Access = Access::Role(Role::Operator);
const ADMIN: Access = Access::Role(Role::Admin);

/// Every route the server answers.
pub const ROUTES: &[Route] = &[
    route(
        Method::Get,
        "/api/v1/health",
        Access::Public,
        Endpoint::Health,
    ),
    route(Method::Post, "/api/v1/login", VIEWER, Endpoint::Login),
    route(Method::Get, "/api/v1/tokens", ADMIN, Endpoint::ListTokens),
    route(Method::Post, "/api/v1/tokens", ADMIN, Endpoint::CreateToken),
    route(
        Method::Delete,
        "/api/v1/tokens/{id}",
        ADMIN,
        Endpoint::DeleteToken,
    ),
    route(
        Method::Get,
        "/api/v1/repositories",
        VIEWER,
        Endpoint::ListRepositories,
    ),
    route(
        Method::Get,
        "/api/v1/repositories/{name}/restore-points",
        VIEWER,
        Endpoint::ListRestorePoints,
    ),
    route(
        Method::Get,
        "/api/v1/repositories/{name}/instant-recoveries",
        VIEWER,
        Endpoint::ListRecoveries,
    ),
    route(
        Method::Post,
        "/api/v1/repositories/{name}/instant-recoveries",
        OPERATOR,
        Endpoint::StartRecovery,
    ),
    route(
        Method::Delete,
        "/api/v1/repositories/{name}/instant-recoveries/{id}",
        OPERATOR,
        Endpoint::StopRecovery,
    ),
    route(Method::Get, "/api/v1/audit", ADMIN, Endpoint::Audit),
    route(Method::Post, "/api/v1/check", ADMIN, Endpoint::Check),
    route(Method::Get, "/api/v1/jobs", VIEWER, Endpoint::ListJobs),
    route(Method::Post, "/api/v1/jobs", OPERATOR, Endpoint::CreateJob),
    route(
        Method::Get,
        "/api/v1/jobs/{name}",
        VIEWER,
        Endpoint::ShowJob,
    ),
    route(
        Method::Patch,
        "/api/v1/jobs/{name}",
        OPERATOR,
        Endpoint::UpdateJob,
    ),
    route(
        Method::Delete,
        "/api/v1/jobs/{name}",
        ADMIN,
        Endpoint::DeleteJob,
    ),
    route(
        Method::Post,
        "/api/v1/jobs/{name}/run",
        OPERATOR,
        Endpoint::RunJob,
    ),
    route(
        Method::Get,
        "/api/v1/sessions",
        VIEWER,
        Endpoint::ListSessions,
    ),
    route(
        Method::Get,
        "/api/v1/sessions/{id}",
        VIEWER,
        Endpoint::ShowSession,
    ),
    route(
        Method::Post,
        "/api/v1/sessions/{id}/cancel",
        OPERATOR,
        Endpoint::CancelSession,
    ),
    route(
        Method::Post,
        "/api/v1/proxies/enrollments",
        ADMIN,
        Endpoint::CreateEnrollment,
    ),
    // No token: the one-time enrollment secret in the body authenticates.
    route(
        Method::Post,
        "/api/v1/proxies/enroll",
        Access::Public,
        Endpoint::Enroll,
    ),
    route(Method::Get, "/api/v1/proxies", ADMIN, Endpoint::ListProxies),
    route(
        Method::Delete,
        "/api/v1/proxies/{name}",
        ADMIN,
        Endpoint::DeleteProxy,
    ),
    route(
        Method::Post,
        "/api/v1/proxy/hello",
        Access::Proxy,
        Endpoint::ProxyHello,
    ),
    route(
        Method::Post,
        "/api/v1/proxy/work",
        Access::Proxy,
        Endpoint::ProxyWork,
    ),
    route(
        Method::Post,
        "/api/v1/proxy/sessions/{id}/progress",
        Access::Proxy,
        Endpoint::ProxyProgress,
    ),
    route(
        Method::Post,
        "/api/v1/proxy/sessions/{id}/finish",
        Access::Proxy,
        Endpoint::ProxyFinish,
    ),
    route(Method::Get, "/api/v1/agents", VIEWER, Endpoint::ListAgents),
    route(
        Method::Delete,
        "/api/v1/agents/{name}",
        ADMIN,
        Endpoint::DeleteAgent,
    ),
    route(
        Method::Post,
        "/api/v1/agent/hello",
        Access::Agent,
        Endpoint::AgentHello,
    ),
    route(
        Method::Get,
        "/api/v1/publications",
        VIEWER,
        Endpoint::ListPublications,
    ),
    route(
        Method::Post,
        "/api/v1/publications",
        OPERATOR,
        Endpoint::CreatePublication,
    ),
    route(
        Method::Delete,
        "/api/v1/publications/{id}",
        OPERATOR,
        Endpoint::DeletePublication,
    ),
    route(Method::Post, "/api/v1/scans", OPERATOR, Endpoint::RunScan),
    route(
        Method::Post,
        "/api/v1/proxy/sessions/{id}/upload",
        Access::Proxy,
        Endpoint::UploadOpen,
    ),
    route(
        Method::Post,
        "/api/v1/proxy/uploads/{id}/known",
        Access::Proxy,
        Endpoint::UploadKnown,
    ),
    route(
        Method::Put,
        "/api/v1/proxy/uploads/{id}/chunks/{digest}",
        Access::Proxy,
        Endpoint::UploadChunk,
    ),
    route(
        Method::Post,
        "/api/v1/proxy/uploads/{id}/commit",
        Access::Proxy,
        Endpoint::UploadCommit,
    ),
    route(
        Method::Delete,
        "/api/v1/proxy/uploads/{id}",
        Access::Proxy,
        Endpoint::UploadAbort,
    ),
    route(Method::Get, "/metrics", VIEWER, Endpoint::Metrics),
    route(
        Method::Get,
        "/api/v1/openapi.json",
        Access::Public,
        Endpoint::OpenApi,
    ),
];

/// The route `path` (as matched, with `{parameters}`) and `method` name.
pub fn find(method: &str, path: &str) -> Option<&'static Route> {
    ROUTES
        .iter()
        .find(|r| r.path == path && r.method.as_http() == method)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The OpenAPI document's (method, path) pairs.
    fn documented() -> BTreeSet<(String, String)> {
        let doc: serde_json::Value = serde_json::from_str(crate::api::openapi::DOCUMENT).unwrap();
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                if ["get", "post", "put", "delete", "patch", "head", "options"]
                    .contains(&method.as_str())
                {
                    out.insert((method.clone(), path.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn the_openapi_document_has_exactly_the_routes() {
        let routes: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.method.as_openapi().to_string(), r.path.to_string()))
            .collect();
        assert_eq!(routes.len(), ROUTES.len(), "a route is listed twice");
        let doc = documented();
        let missing: Vec<_> = routes.difference(&doc).collect();
        let extra: Vec<_> = doc.difference(&routes).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "routes not in openapi.json: {missing:?}; documented but not routed: {extra:?}"
        );
    }

    #[test]
    fn the_openapi_document_lists_every_audit_action() {
        let doc: serde_json::Value = serde_json::from_str(crate::api::openapi::DOCUMENT).unwrap();
        let documented: BTreeSet<&str> = doc["components"]["schemas"]["AuditEntry"]["properties"]
            ["action"]["enum"]
            .as_array()
            .expect("the action enum")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        let actions: BTreeSet<&str> = crate::catalog::audit::Action::ALL
            .iter()
            .map(|a| a.as_str())
            .collect();
        assert_eq!(documented, actions);
    }

    #[test]
    fn the_openapi_document_says_which_routes_need_a_token() {
        let doc: serde_json::Value = serde_json::from_str(crate::api::openapi::DOCUMENT).unwrap();
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..3]), Some("3.1"));
        for r in ROUTES {
            let op = &doc["paths"][r.path][r.method.as_openapi()];
            // An empty `security` list opts out of the global bearer rule.
            let public = op["security"].as_array().is_some_and(|s| s.is_empty());
            assert_eq!(
                public,
                r.access == Access::Public,
                "{} {}: security does not match the route's access",
                r.method.as_http(),
                r.path
            );
            if r.access == Access::Proxy {
                assert_eq!(
                    op["security"],
                    serde_json::json!([{"proxyCertificate": []}]),
                    "{} {}: a proxy route's security is the client certificate only",
                    r.method.as_http(),
                    r.path
                );
                assert!(r.path.starts_with("/api/v1/proxy/"), "{}", r.path);
            }
            if r.access == Access::Agent {
                assert_eq!(
                    op["security"],
                    serde_json::json!([{"agentCertificate": []}]),
                    "{} {}: an agent route's security is the agent certificate only",
                    r.method.as_http(),
                    r.path
                );
                assert!(r.path.starts_with("/api/v1/agent/"), "{}", r.path);
            }
            if let Access::Role(role) = r.access {
                let text = op["description"].as_str().unwrap_or_default();
                assert!(
                    text.contains(&format!("Role: {role}")),
                    "{} {}: the description should say `Role: {role}`",
                    r.method.as_http(),
                    r.path
                );
            }
        }
    }

    #[test]
    fn routes_are_found_by_method_and_matched_path() {
        let r = find("DELETE", "/api/v1/tokens/{id}").unwrap();
        assert_eq!(r.endpoint, Endpoint::DeleteToken);
        assert!(find("PUT", "/api/v1/tokens/{id}").is_none());
    }
}
