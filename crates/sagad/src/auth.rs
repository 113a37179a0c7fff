//! Who is calling, and may they: principals from `auth.tokens_file`, matched by bearer token (its
//! SHA-256, compared in constant time) or by client certificate subject (mTLS), and the tower layer that
//! authenticates every call and checks its verb before any handler runs.
//!
//! The file is TOML, one table per principal:
//! ```toml
//! [[principal]]
//! name = "billing-service"
//! token_sha256 = "<64 hex chars>"                     # or cert_subject = "CN=billing,O=Acme"
//! roles = ["client"]                                  # client, operator
//! saga_types = ["purchase_plan", "payment_refund"]    # optional; absent = all types
//! ```

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::status::{forbidden, unauthenticated};
use futures::future::BoxFuture;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::watch;
use tonic::Status;
use tonic::body::Body;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use x509_parser::prelude::{FromDer, X509Certificate};

/// A role a principal holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Role {
    /// Starts sagas and reads them.
    Client,
    /// Everything a client does, plus the operator verbs (abort, retry, resolve).
    Operator,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Operator => "operator",
        }
    }
}

/// An authenticated caller, as handlers find it in the request extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Principal {
    /// The name recorded as `started_by` and on operator events.
    pub name: String,
    roles: HashSet<Role>,
    /// The saga types it may start; `None` for all.
    saga_types: Option<HashSet<String>>,
}

impl Principal {
    /// Whether this principal may start sagas of `saga_type`: `PERMISSION_DENIED` naming what it may
    /// start if not.
    pub(crate) fn may_start(&self, saga_type: &str) -> Result<(), Status> {
        match &self.saga_types {
            Some(allowed) if !allowed.contains(saga_type) => {
                let mut allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
                allowed.sort_unstable();
                Err(forbidden(format!(
                    "principal {} may not start sagas of this type; it may start: {}",
                    self.name,
                    allowed.join(", ")
                )))
            }
            _ => Ok(()),
        }
    }

    fn roles_text(&self) -> String {
        let mut roles: Vec<&str> = self.roles.iter().map(|r| r.as_str()).collect();
        roles.sort_unstable();
        roles.join(", ")
    }
}

/// A principals file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PrincipalsError {
    /// The file cannot be read.
    #[error("auth.tokens_file: cannot read {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("auth.tokens_file: {path}: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// The parser's words (line and column included).
        message: String,
    },
    /// A principal's entry makes no sense.
    #[error("auth.tokens_file: {path}: principal[{index}] ({name:?}): {field}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// Position of the `[[principal]]` table, from 0.
        index: usize,
        /// Its name, as far as it has one.
        name: String,
        /// The field at fault.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalsFile {
    #[serde(default)]
    principal: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    token_sha256: Option<String>,
    cert_subject: Option<String>,
    roles: Vec<Role>,
    saga_types: Option<Vec<String>>,
}

/// Every principal of the tokens file.
#[derive(Debug, Default)]
pub(crate) struct Principals {
    by_token: Vec<([u8; 32], Arc<Principal>)>,
    by_subject: Vec<(Subject, Arc<Principal>)>,
}

impl Principals {
    /// Reads and checks the tokens file. `client_certificates` says whether clients present verified
    /// certificates (`tls.client_ca_file`): without them a `cert_subject` could never match.
    pub(crate) fn load(path: &Path, client_certificates: bool) -> Result<Self, PrincipalsError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PrincipalsError::Read {
            path: display.clone(),
            source,
        })?;
        Self::parse(&text, client_certificates).map_err(|e| e.at(&display))
    }

    fn parse(text: &str, client_certificates: bool) -> Result<Self, PrincipalsError> {
        let file: PrincipalsFile = toml::from_str(text).map_err(|e| {
            // toml's own rendering spans several lines (with a snippet): start-up errors are one line.
            let line = e.span().map_or(0, |span| {
                let before = &text.as_bytes()[..span.start.min(text.len())];
                before.iter().filter(|&&b| b == b'\n').count() + 1
            });
            PrincipalsError::Syntax {
                path: String::new(),
                message: format!("line {line}: {}", e.message()),
            }
        })?;
        let mut principals = Self::default();
        let mut names = HashSet::new();
        for (index, entry) in file.principal.into_iter().enumerate() {
            let invalid = |field, message: &str| PrincipalsError::Invalid {
                path: String::new(),
                index,
                name: entry.name.clone(),
                field,
                message: message.to_owned(),
            };
            if entry.name.trim().is_empty() {
                return Err(invalid("name", "is required"));
            }
            if !names.insert(entry.name.clone()) {
                return Err(invalid("name", "is used by an earlier principal"));
            }
            if entry.roles.is_empty() {
                return Err(invalid("roles", "give at least one of client, operator"));
            }
            if entry.token_sha256.is_none() && entry.cert_subject.is_none() {
                return Err(invalid(
                    "token_sha256",
                    "give token_sha256 or cert_subject (or both)",
                ));
            }
            let principal = Arc::new(Principal {
                name: entry.name.clone(),
                roles: entry.roles.iter().copied().collect(),
                saga_types: entry.saga_types.map(|t| t.into_iter().collect()),
            });
            if let Some(hash) = &entry.token_sha256 {
                let mut digest = [0; 32];
                hex::decode_to_slice(hash.trim(), &mut digest).map_err(|_| {
                    invalid(
                        "token_sha256",
                        "must be 64 hex characters: the SHA-256 of the token \
                         (printf %s \"$TOKEN\" | sha256sum)",
                    )
                })?;
                if principals.by_token.iter().any(|(d, _)| *d == digest) {
                    return Err(invalid("token_sha256", "is used by an earlier principal"));
                }
                principals.by_token.push((digest, Arc::clone(&principal)));
            }
            if let Some(subject) = &entry.cert_subject {
                if !client_certificates {
                    return Err(invalid(
                        "cert_subject",
                        "needs tls.client_ca_file, so that clients present verified certificates",
                    ));
                }
                let subject = Subject::parse(subject).ok_or_else(|| {
                    invalid(
                        "cert_subject",
                        "must be attribute=value pairs separated by commas, e.g. \"CN=billing,O=Acme\"",
                    )
                })?;
                principals.by_subject.push((subject, principal));
            }
        }
        Ok(principals)
    }

    /// The principal holding `token`. Every listed hash is compared, in constant time, so the answer's
    /// timing says nothing about how close a guess came.
    fn by_token(&self, token: &str) -> Option<Arc<Principal>> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (candidate, principal) in &self.by_token {
            if bool::from(candidate.ct_eq(&digest)) {
                found = Some(Arc::clone(principal));
            }
        }
        found
    }

    /// The principal whose `cert_subject` is the subject of the client certificate `der`.
    fn by_certificate(&self, der: &[u8]) -> Option<Arc<Principal>> {
        let (_, certificate) = X509Certificate::from_der(der).ok()?;
        let subject = Subject::parse(&certificate.subject().to_string())?;
        self.by_subject
            .iter()
            .find(|(s, _)| *s == subject)
            .map(|(_, p)| Arc::clone(p))
    }
}

impl PrincipalsError {
    fn at(self, file: &str) -> Self {
        match self {
            Self::Syntax { message, .. } => Self::Syntax {
                path: file.to_owned(),
                message,
            },
            Self::Invalid {
                index,
                name,
                field,
                message,
                ..
            } => Self::Invalid {
                path: file.to_owned(),
                index,
                name,
                field,
                message,
            },
            read @ Self::Read { .. } => read,
        }
    }
}

/// A distinguished name as a set of `TYPE=value` pairs: order and the spaces `openssl` prints around
/// `=` and `,` do not matter, attribute types are case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Subject(Vec<(String, String)>);

impl Subject {
    fn parse(text: &str) -> Option<Self> {
        let mut pairs = text
            .split(',')
            .map(|part| {
                let (kind, value) = part.split_once('=')?;
                let (kind, value) = (kind.trim(), value.trim());
                (!kind.is_empty()).then(|| (kind.to_ascii_uppercase(), value.to_owned()))
            })
            .collect::<Option<Vec<_>>>()?;
        pairs.sort();
        Some(Self(pairs))
    }
}

/// What a call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Anyone (health and reflection, unless `auth.protect_reflection`).
    Open,
    /// Any authenticated principal.
    Authenticated,
    /// A principal with this role (an operator has every client right too).
    Role(Role),
}

/// What `path` (`/package.Service/Method`) requires. Coordinator methods not listed as client verbs
/// need an operator: a verb added later is closed until someone decides who may call it.
fn access(path: &str, protect_reflection: bool) -> Access {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (service, method) = (parts.next().unwrap_or_default(), parts.next());
    match (service, method) {
        ("saga.v1.SagaCoordinator", Some(method)) => match method {
            "StartSaga" | "GetStatus" | "ListSagas" | "WatchSaga" | "GetSagaHistory"
            | "GetStats" => Access::Role(Role::Client),
            _ => Access::Role(Role::Operator),
        },
        ("grpc.health.v1.Health", _)
        | ("grpc.reflection.v1.ServerReflection", _)
        | ("grpc.reflection.v1alpha.ServerReflection", _) => {
            if protect_reflection {
                Access::Authenticated
            } else {
                Access::Open
            }
        }
        _ => Access::Authenticated,
    }
}

/// Authenticates every call against the current principals and checks its verb; the principal goes
/// into the request extensions for the handlers (`started_by`, saga types, watch quota). Refusals are
/// answered here, so a refused call never reaches a handler and writes nothing. Without principals
/// (no `auth.tokens_file`) every call passes.
#[derive(Debug, Clone)]
pub(crate) struct AuthLayer {
    principals: Option<watch::Receiver<Arc<Principals>>>,
    protect_reflection: bool,
}

impl AuthLayer {
    pub(crate) fn new(
        principals: Option<watch::Receiver<Arc<Principals>>>,
        protect_reflection: bool,
    ) -> Self {
        Self {
            principals,
            protect_reflection,
        }
    }

    /// The principal this call runs as, or the status refusing it.
    fn check(&self, request: &http::Request<Body>) -> Result<Option<Arc<Principal>>, Status> {
        let Some(principals) = &self.principals else {
            return Ok(None);
        };
        let path = request.uri().path();
        let access = access(path, self.protect_reflection);
        if access == Access::Open {
            return Ok(None);
        }
        let principals = Arc::clone(&principals.borrow());
        let principal = authenticate(&principals, request)?;
        if let Access::Role(needed) = access {
            let allowed = principal.roles.contains(&needed)
                || (needed == Role::Client && principal.roles.contains(&Role::Operator));
            if !allowed {
                let method = path.rsplit('/').next().unwrap_or(path);
                return Err(forbidden(format!(
                    "principal {} (roles: {}) may not call {method}: it needs role {}",
                    principal.name,
                    principal.roles_text(),
                    needed.as_str()
                )));
            }
        }
        Ok(Some(principal))
    }
}

fn authenticate(
    principals: &Principals,
    request: &http::Request<Body>,
) -> Result<Arc<Principal>, Status> {
    if let Some(header) = request.headers().get(http::header::AUTHORIZATION) {
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| unauthenticated("authorization metadata must be \"Bearer <token>\""))?;
        return principals.by_token(token).ok_or_else(|| {
            unauthenticated("the bearer token matches no principal in auth.tokens_file")
        });
    }
    let certificate = request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(TlsConnectInfo::peer_certs);
    if let Some(first) = certificate.as_ref().and_then(|chain| chain.first()) {
        return principals.by_certificate(first).ok_or_else(|| {
            unauthenticated(
                "no bearer token, and the client certificate's subject matches no cert_subject \
                 in auth.tokens_file",
            )
        });
    }
    Err(unauthenticated(
        "credentials required: send metadata \"authorization: Bearer <token>\"",
    ))
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            layer: self.clone(),
            inner,
        }
    }
}

/// The service [`AuthLayer`] makes.
#[derive(Debug, Clone)]
pub(crate) struct Auth<S> {
    layer: AuthLayer,
    inner: S,
}

impl<S> tower::Service<http::Request<Body>> for Auth<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        match self.layer.check(&request) {
            Ok(principal) => {
                if let Some(principal) = principal {
                    request.extensions_mut().insert(principal);
                }
                // The instance that was polled ready serves this call; its clone the next one.
                let ready = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, ready);
                Box::pin(inner.call(request))
            }
            Err(status) => Box::pin(futures::future::ready(Ok(status.into_http()))),
        }
    }
}

#[cfg(test)]
mod tests;
