//! Per-principal upstream identity: which [`Authenticator`] a client
//! principal's upstream connection uses (`[[upstream_identity]]`).
//!
//! Each distinct identity (a role with its session name and external id,
//! or a SCRAM/PLAIN user) gets one authenticator, and a role one
//! credentials cache, shared by every connection that uses it: the role is
//! assumed once and refreshed ahead of expiry, not per connection. The map
//! is bounded; beyond [`MAX_CACHED`] the least recently used identity is
//! dropped (connections that hold it keep it).

use super::credentials::{self, CredentialCache};
use super::sasl::Authenticator;
use crate::config::{
    session_name_for, AwsOptions, IdentityMap, IdentitySource, SaslConfig, Unmapped, UpstreamIdentity,
};
use crate::metrics;
use aws_credential_types::provider::SharedCredentialsProvider;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;
use tracing::info;

/// Identities kept at once.
pub const MAX_CACHED: usize = 1024;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What assuming one role needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSpec {
    pub role_arn: String,
    pub session_name: String,
    pub external_id: Option<String>,
}

/// Makes the (uncached) credentials provider for a role.
pub type RoleFactory = Arc<dyn Fn(RoleSpec) -> BoxFuture<SharedCredentialsProvider> + Send + Sync>;

/// The identity a connection authenticates as when it is not kgate's own.
pub struct Mapped {
    pub authenticator: Arc<Authenticator>,
    /// For logs: `role ARN (session NAME)` or `user NAME`; no secret.
    pub describe: String,
}

/// A principal with no mapping under `upstream_identity_unmapped = "refuse"`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

struct Slot {
    cell: Arc<OnceCell<Arc<Mapped>>>,
    used: u64,
}

pub struct Identities {
    map: IdentityMap,
    sasl: SaslConfig,
    roles: RoleFactory,
    cache: Mutex<(HashMap<String, Slot>, u64)>,
    max: usize,
}

/// Roles assumed with kgate's own credentials (`own`), through the STS
/// endpoint and region `[upstream_sasl]` names.
pub async fn sts_roles(aws: &AwsOptions, own: SharedCredentialsProvider) -> RoleFactory {
    let sdk = credentials::sdk_config(aws).await;
    let aws = aws.clone();
    Arc::new(move |r: RoleSpec| {
        let (sdk, aws, own) = (sdk.clone(), aws.clone(), own.clone());
        Box::pin(async move {
            credentials::assume_role(
                &sdk,
                own,
                &aws,
                &r.role_arn,
                &r.session_name,
                r.external_id.as_deref(),
            )
            .await
        })
    })
}

/// For SCRAM/PLAIN: no role is ever assumed; a call gets no credentials.
pub fn no_roles() -> RoleFactory {
    Arc::new(|_| Box::pin(async { credentials::no_credentials() }))
}

fn find<'a>(map: &'a IdentityMap, principal: &str) -> Option<&'a UpstreamIdentity> {
    map.entries.iter().find(|e| e.principal == principal).or_else(|| {
        map.entries
            .iter()
            .find(|e| e.principal.contains('*') && crate::tls::identity::glob(&e.principal, principal))
    })
}

impl Identities {
    pub fn new(map: IdentityMap, sasl: SaslConfig, roles: RoleFactory) -> Self {
        Identities {
            map,
            sasl,
            roles,
            cache: Mutex::new((HashMap::new(), 0)),
            max: MAX_CACHED,
        }
    }

    #[cfg(test)]
    fn with_max(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    /// The identity for `principal`: `Ok(None)` for kgate's own.
    pub async fn resolve(&self, principal: Option<&str>) -> Result<Option<Arc<Mapped>>, Refused> {
        let m = metrics::get();
        let Some(entry) = principal.and_then(|p| find(&self.map, p)) else {
            return match self.map.unmapped {
                Unmapped::Default => {
                    m.upstream_identity.add(("default", String::new()), 1);
                    Ok(None)
                }
                Unmapped::Refuse => {
                    m.upstream_identity.add(("refused", String::new()), 1);
                    Err(Refused(match principal {
                        Some(p) => format!("principal {p:?} has no [[upstream_identity]] mapping and upstream_identity_unmapped is \"refuse\""),
                        None => "the connection has no principal and upstream_identity_unmapped is \"refuse\"".into(),
                    }))
                }
            };
        };
        let principal = principal.unwrap_or_default();
        let (key, kind, label) = match &entry.source {
            IdentitySource::Role {
                role_arn,
                session_name,
                external_id,
            } => {
                let session = session_name
                    .clone()
                    .unwrap_or_else(|| session_name_for(principal));
                let key = format!(
                    "role\0{role_arn}\0{session}\0{}",
                    external_id.as_deref().unwrap_or("")
                );
                (key, "role", role_arn.clone())
            }
            IdentitySource::User { username, .. } => {
                (format!("user\0{}", entry.principal), "user", username.clone())
            }
        };
        m.upstream_identity.add((kind, label), 1);
        let cell = self.slot(key);
        let made = cell.get_or_init(|| self.make(entry, principal)).await;
        Ok(Some(made.clone()))
    }

    /// The cell for `key`, created (and the least recently used one
    /// dropped) when new.
    fn slot(&self, key: String) -> Arc<OnceCell<Arc<Mapped>>> {
        let mut g = match self.cache.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let (map, tick) = &mut *g;
        *tick += 1;
        let now = *tick;
        if let Some(s) = map.get_mut(&key) {
            s.used = now;
            return s.cell.clone();
        }
        if map.len() >= self.max {
            if let Some(old) = map.iter().min_by_key(|(_, s)| s.used).map(|(k, _)| k.clone()) {
                map.remove(&old);
            }
        }
        let cell = Arc::new(OnceCell::new());
        map.insert(
            key,
            Slot {
                cell: cell.clone(),
                used: now,
            },
        );
        cell
    }

    async fn make(&self, entry: &UpstreamIdentity, principal: &str) -> Arc<Mapped> {
        match &entry.source {
            IdentitySource::Role {
                role_arn,
                session_name,
                external_id,
            } => {
                let spec = RoleSpec {
                    role_arn: role_arn.clone(),
                    session_name: session_name
                        .clone()
                        .unwrap_or_else(|| session_name_for(principal)),
                    external_id: external_id.clone(),
                };
                info!(role = %spec.role_arn, session_name = %spec.session_name, for_principal = %entry.principal, "upstream identity: assume-role");
                let describe = format!("role {} (session {})", spec.role_arn, spec.session_name);
                let cache =
                    CredentialCache::new((self.roles)(spec).await).with_metric_label(role_arn.clone());
                Arc::new(Mapped {
                    authenticator: Arc::new(Authenticator::new(self.sasl.clone(), Some(Arc::new(cache)))),
                    describe,
                })
            }
            IdentitySource::User { username, password } => {
                let mut cfg = self.sasl.clone();
                cfg.username = Some(username.clone());
                cfg.password = Some(password.clone());
                Arc::new(Mapped {
                    authenticator: Arc::new(Authenticator::new(cfg, None)),
                    describe: format!("user {username}"),
                })
            }
        }
    }

    /// Identities cached now.
    pub fn cached(&self) -> usize {
        match self.cache.lock() {
            Ok(g) => g.0.len(),
            Err(p) => p.into_inner().0.len(),
        }
    }
}

#[cfg(test)]
#[path = "identity_tests.rs"]
mod tests;
