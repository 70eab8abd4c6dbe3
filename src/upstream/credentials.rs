//! AWS credentials for MSK IAM: the default chain (environment, shared
//! profile, web identity, ECS/EKS container credentials, IMDSv2), an
//! optional assume-role with a stable session name, and a refresh-ahead
//! cache (aws-config's providers do not cache).

use crate::config::AwsOptions;
use crate::upstream::sasl::sigv4::Keys;
use aws_config::sts::AssumeRoleProvider;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use std::time::{Duration, SystemTime};
use tokio::sync::Mutex;
use tracing::{info, warn};

/// Stands in when the SDK found no credential source at all: every attempt
/// to sign fails with a message that says what to set. No path signs with
/// made-up keys.
#[derive(Debug)]
struct NoCredentials;

impl ProvideCredentials for NoCredentials {
    fn provide_credentials<'a>(&'a self) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::ready(Err(
            aws_credential_types::provider::error::CredentialsError::not_loaded(
                "no AWS credential source found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, a web identity, or run with an instance or task role)",
            ),
        ))
    }
}

/// A provider that always fails with what to set.
pub fn no_credentials() -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(NoCredentials)
}

/// Never refresh earlier than this before expiry.
const MAX_REFRESH_AHEAD: Duration = Duration::from_secs(300);
const ATTEMPTS: u32 = 4;

struct Cached {
    keys: Keys,
    expiry: Option<SystemTime>,
    fetched: SystemTime,
}

impl Cached {
    /// Fresh while more than min(5 min, a third of the lifetime) is left.
    fn fresh(&self, now: SystemTime) -> bool {
        let Some(exp) = self.expiry else { return true };
        let left = exp.duration_since(now).unwrap_or(Duration::ZERO);
        let life = exp.duration_since(self.fetched).unwrap_or(Duration::ZERO);
        left > MAX_REFRESH_AHEAD.min(life / 3)
    }
}

pub struct CredentialCache {
    provider: SharedCredentialsProvider,
    state: Mutex<Option<Cached>>,
    /// Fetches so far (for tests and metrics).
    pub fetches: std::sync::atomic::AtomicU64,
    label: Option<String>,
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

impl CredentialCache {
    pub fn new(provider: SharedCredentialsProvider) -> Self {
        CredentialCache {
            provider,
            state: Mutex::new(None),
            fetches: Default::default(),
            label: None,
        }
    }

    /// Builds the provider the config asks for.
    pub async fn from_options(aws: &AwsOptions) -> Self {
        CredentialCache::new(own_provider(&sdk_config(aws).await, aws).await)
    }

    /// Counts every call to the provider under `label` (an assumed role's
    /// ARN) in the `kgate_upstream_identity_assume_role_total` metric.
    pub fn with_metric_label(mut self, label: String) -> Self {
        self.label = Some(label);
        self
    }

    /// The credentials behind this cache, for assuming further roles.
    pub fn provider(&self) -> SharedCredentialsProvider {
        self.provider.clone()
    }

    /// Current credentials, refreshed ahead of expiry, with retries.
    pub async fn get(&self) -> Result<Keys, String> {
        let mut st = self.state.lock().await;
        let now = SystemTime::now();
        if let Some(c) = st.as_ref().filter(|c| c.fresh(now)) {
            return Ok(c.keys.clone());
        }
        let mut backoff = Duration::from_millis(200);
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            self.fetches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Some(l) = &self.label {
                crate::metrics::get().assume_role.add(l.clone(), 1);
            }
            match self.provider.provide_credentials().await {
                Ok(c) => {
                    let keys = Keys {
                        access_key: c.access_key_id().to_string(),
                        secret_key: c.secret_access_key().to_string(),
                        session_token: c.session_token().map(str::to_string),
                    };
                    *st = Some(Cached {
                        keys: keys.clone(),
                        expiry: c.expiry(),
                        fetched: SystemTime::now(),
                    });
                    return Ok(keys);
                }
                Err(e) => {
                    last = chain(&e);
                    if attempt < ATTEMPTS {
                        warn!(attempt, error = %last, "cannot obtain AWS credentials; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff *= 2;
                    }
                }
            }
        }
        // Credentials that are old but not yet expired beat none at all.
        if let Some(c) = st
            .as_ref()
            .filter(|c| c.expiry.is_some_and(|e| e > SystemTime::now()))
        {
            warn!(error = %last, "using cached AWS credentials close to expiry");
            return Ok(c.keys.clone());
        }
        Err(last)
    }
}

/// The SDK configuration: rustls over ring, `profile` and `sts_region`.
pub async fn sdk_config(aws: &AwsOptions) -> SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
    if let Some(p) = &aws.profile {
        loader = loader.profile_name(p);
    }
    if let Some(r) = &aws.sts_region {
        loader = loader.region(Region::new(r.clone()));
    }
    loader.load().await
}

/// kgate's own credentials: the default chain, or `aws.role_arn` assumed
/// with it.
async fn own_provider(sdk: &SdkConfig, aws: &AwsOptions) -> SharedCredentialsProvider {
    let base = sdk
        .credentials_provider()
        .unwrap_or_else(|| SharedCredentialsProvider::new(NoCredentials));
    match &aws.role_arn {
        None => base,
        Some(role) => {
            info!(role = %role, session_name = %aws.session_name, "AWS credentials: assume-role");
            assume_role(
                sdk,
                base,
                aws,
                role,
                &aws.session_name,
                aws.external_id.as_deref(),
            )
            .await
        }
    }
}

/// STS AssumeRole (aws-config's provider) for `role`, called with `base`
/// credentials, at `aws.sts_endpoint`/`aws.sts_region` when set.
pub async fn assume_role(
    sdk: &SdkConfig,
    base: SharedCredentialsProvider,
    aws: &AwsOptions,
    role: &str,
    session_name: &str,
    external_id: Option<&str>,
) -> SharedCredentialsProvider {
    let mut b = AssumeRoleProvider::builder(role).session_name(session_name);
    if let Some(e) = external_id {
        b = b.external_id(e);
    }
    if let Some(r) = &aws.sts_region {
        b = b.region(Region::new(r.clone()));
    }
    let mut conf = sdk.to_builder().credentials_provider(base);
    if let Some(ep) = &aws.sts_endpoint {
        conf = conf.endpoint_url(ep.clone());
    }
    SharedCredentialsProvider::new(b.configure(&conf.build()).build().await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[derive(Debug)]
    struct Rotating(Arc<AtomicU32>, Duration);
    impl ProvideCredentials for Rotating {
        fn provide_credentials<'a>(&'a self) -> aws_credential_types::provider::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            let c = Credentials::new(
                format!("AK{n}"),
                "secret",
                None,
                Some(SystemTime::now() + self.1),
                "test",
            );
            aws_credential_types::provider::future::ProvideCredentials::ready(Ok(c))
        }
    }

    #[tokio::test]
    async fn caches_until_a_third_of_the_lifetime_is_left() {
        let n = Arc::new(AtomicU32::new(0));
        let c = CredentialCache::new(SharedCredentialsProvider::new(Rotating(
            n.clone(),
            Duration::from_millis(600),
        )));
        assert_eq!(c.get().await.unwrap().access_key, "AK0");
        assert_eq!(c.get().await.unwrap().access_key, "AK0", "cached");
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(
            c.get().await.unwrap().access_key,
            "AK1",
            "refreshed ahead of expiry"
        );
        let long = CredentialCache::new(SharedCredentialsProvider::new(Rotating(
            n,
            Duration::from_secs(3600),
        )));
        let a = long.get().await.unwrap().access_key;
        assert_eq!(long.get().await.unwrap().access_key, a);
    }

    #[derive(Debug)]
    struct Failing;
    impl ProvideCredentials for Failing {
        fn provide_credentials<'a>(&'a self) -> aws_credential_types::provider::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            aws_credential_types::provider::future::ProvideCredentials::ready(Err(
                aws_credential_types::provider::error::CredentialsError::not_loaded("no source"),
            ))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_retried_then_reported() {
        let c = CredentialCache::new(SharedCredentialsProvider::new(Failing));
        let e = c.get().await.unwrap_err();
        assert!(e.contains("no source") || e.contains("not loaded"), "{e}");
        assert_eq!(c.fetches.load(Ordering::Relaxed), ATTEMPTS as u64);
    }

    /// With no credential source the SDK gives no provider; kgate's
    /// stand-in fails every attempt with what to set, and never signs.
    #[tokio::test(start_paused = true)]
    async fn no_credential_source_fails_with_what_to_set() {
        let sdk = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .build();
        assert!(sdk.credentials_provider().is_none());
        let aws = AwsOptions {
            profile: None,
            role_arn: None,
            external_id: None,
            session_name: "kgate".into(),
            sts_region: None,
            sts_endpoint: None,
        };
        let c = CredentialCache::new(own_provider(&sdk, &aws).await);
        let e = c.get().await.unwrap_err();
        assert!(e.contains("no AWS credential source found"), "{e}");
        assert!(
            e.contains("AWS_ACCESS_KEY_ID") && e.contains("AWS_PROFILE"),
            "{e}"
        );
        assert_eq!(
            c.fetches.load(Ordering::Relaxed),
            ATTEMPTS as u64,
            "retried first"
        );
        let e = CredentialCache::new(no_credentials()).get().await.unwrap_err();
        assert!(e.contains("no AWS credential source found"), "{e}");
    }
}
