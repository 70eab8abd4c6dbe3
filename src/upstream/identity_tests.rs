use super::*;
use crate::config::{Mechanism, Secret};
use aws_credential_types::provider::{future, ProvideCredentials};
use aws_credential_types::Credentials;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::{Duration, SystemTime};

/// STS stand-in: each call returns new keys for the role, living `ttl`.
#[derive(Debug)]
struct Sts {
    spec: RoleSpec,
    calls: Arc<AtomicU32>,
    ttl: Duration,
}

impl ProvideCredentials for Sts {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let n = self.calls.fetch_add(1, SeqCst);
        let key = format!("{}/{}#{n}", self.spec.role_arn, self.spec.session_name);
        let exp = SystemTime::now() + self.ttl;
        future::ProvideCredentials::ready(Ok(Credentials::new(
            key,
            "s",
            Some("t".into()),
            Some(exp),
            "test",
        )))
    }
}

struct Counts {
    providers: Arc<AtomicU32>,
    calls: Arc<AtomicU32>,
}

fn factory(ttl: Duration) -> (RoleFactory, Counts) {
    let providers = Arc::new(AtomicU32::new(0));
    let calls = Arc::new(AtomicU32::new(0));
    let (p, c) = (providers.clone(), calls.clone());
    let f: RoleFactory = Arc::new(move |spec| {
        p.fetch_add(1, SeqCst);
        let sts = Sts {
            spec,
            calls: c.clone(),
            ttl,
        };
        Box::pin(async move { SharedCredentialsProvider::new(sts) })
    });
    (f, Counts { providers, calls })
}

fn sasl(m: Mechanism) -> SaslConfig {
    SaslConfig {
        mechanism: m,
        username: Some("kgate".into()),
        password: Some(Secret::Env("KGATE_PW".into())),
        region: Some("us-east-1".into()),
        aws: AwsOptions {
            profile: None,
            role_arn: None,
            external_id: None,
            session_name: "kgate".into(),
            sts_region: None,
            sts_endpoint: None,
        },
    }
}

fn role(principal: &str, arn: &str, session: Option<&str>) -> UpstreamIdentity {
    UpstreamIdentity {
        principal: principal.into(),
        source: IdentitySource::Role {
            role_arn: arn.into(),
            session_name: session.map(str::to_string),
            external_id: None,
        },
    }
}

const A: &str = "arn:aws:iam::123456789012:role/a";
const B: &str = "arn:aws:iam::123456789012:role/b";

fn roles(unmapped: Unmapped, ttl: Duration) -> (Identities, Counts) {
    let map = IdentityMap {
        entries: vec![
            role("svc-*", B, Some("svc")),
            role("alice", A, None),
            role("*", B, None),
        ],
        unmapped,
    };
    let (f, n) = factory(ttl);
    (Identities::new(map, sasl(Mechanism::MskIam), f), n)
}

async fn access_key(m: &Mapped) -> String {
    m.authenticator
        .credentials()
        .unwrap()
        .get()
        .await
        .unwrap()
        .access_key
}

#[tokio::test]
async fn exact_names_win_then_patterns_in_file_order() {
    let (ids, _) = roles(Unmapped::Default, Duration::from_secs(3600));
    let alice = ids.resolve(Some("alice")).await.unwrap().unwrap();
    assert_eq!(alice.describe, format!("role {A} (session kgate-alice)"));
    let svc = ids.resolve(Some("svc-1")).await.unwrap().unwrap();
    assert_eq!(svc.describe, format!("role {B} (session svc)"));
    let bob = ids.resolve(Some("bob")).await.unwrap().unwrap();
    assert_eq!(bob.describe, format!("role {B} (session kgate-bob)"));
    assert!(access_key(&alice).await.starts_with(&format!("{A}/kgate-alice#")));
    assert!(access_key(&bob).await.starts_with(&format!("{B}/kgate-bob#")));
    // no principal: nothing to match, so the unmapped rule decides
    assert!(ids.resolve(None).await.unwrap().is_none());
}

#[tokio::test]
async fn unmapped_principals_use_kgate_or_are_refused() {
    let map = IdentityMap {
        entries: vec![role("alice", A, None)],
        unmapped: Unmapped::Refuse,
    };
    let (f, n) = factory(Duration::from_secs(3600));
    let ids = Identities::new(map.clone(), sasl(Mechanism::MskIam), f.clone());
    let e = ids.resolve(Some("mallory")).await.err().unwrap().to_string();
    assert!(
        e.contains("\"mallory\" has no [[upstream_identity]] mapping") && e.contains("refuse"),
        "{e}"
    );
    let e = ids.resolve(None).await.err().unwrap().to_string();
    assert!(e.contains("no principal"), "{e}");
    assert_eq!(
        n.providers.load(SeqCst),
        0,
        "nothing assumed for refused principals"
    );
    let open = Identities::new(
        IdentityMap {
            unmapped: Unmapped::Default,
            ..map
        },
        sasl(Mechanism::MskIam),
        f,
    );
    assert!(open.resolve(Some("mallory")).await.unwrap().is_none());
}

#[tokio::test]
async fn a_role_is_assumed_once_for_all_its_connections() {
    let (ids, n) = roles(Unmapped::Default, Duration::from_secs(3600));
    let first = ids.resolve(Some("alice")).await.unwrap().unwrap();
    let mut keys = std::collections::BTreeSet::new();
    for _ in 0..50 {
        let m = ids.resolve(Some("alice")).await.unwrap().unwrap();
        assert!(Arc::ptr_eq(&m, &first), "one authenticator per identity");
        keys.insert(access_key(&m).await);
    }
    assert_eq!(keys.len(), 1, "{keys:?}");
    // svc-1 and svc-2 share role B with the fixed session name `svc`
    let s1 = ids.resolve(Some("svc-1")).await.unwrap().unwrap();
    let s2 = ids.resolve(Some("svc-2")).await.unwrap().unwrap();
    assert!(Arc::ptr_eq(&s1, &s2));
    assert_eq!(access_key(&s1).await, access_key(&s2).await);
    assert_eq!(n.providers.load(SeqCst), 2, "alice's role and svc's");
    assert_eq!(n.calls.load(SeqCst), 2, "one AssumeRole per role");
    assert_eq!(ids.cached(), 2);
}

#[tokio::test]
async fn a_role_is_assumed_again_ahead_of_expiry() {
    let (ids, n) = roles(Unmapped::Default, Duration::from_millis(900));
    let m = ids.resolve(Some("alice")).await.unwrap().unwrap();
    let k0 = access_key(&m).await;
    assert_eq!(access_key(&m).await, k0, "cached while fresh");
    // a third of the lifetime before expiry it is renewed: 600 ms in
    tokio::time::sleep(Duration::from_millis(700)).await;
    let again = ids.resolve(Some("alice")).await.unwrap().unwrap();
    let k1 = access_key(&again).await;
    assert_ne!(k1, k0, "renewed ahead of expiry");
    assert_eq!(n.calls.load(SeqCst), 2);
    assert_eq!(n.providers.load(SeqCst), 1, "the same provider renews");
}

#[tokio::test]
async fn the_cache_is_bounded_least_recently_used_first() {
    let (ids, n) = roles(Unmapped::Default, Duration::from_secs(3600));
    let ids = ids.with_max(2);
    let a = ids.resolve(Some("p1")).await.unwrap().unwrap();
    ids.resolve(Some("p2")).await.unwrap();
    ids.resolve(Some("p1")).await.unwrap(); // p2 is now the oldest
    ids.resolve(Some("p3")).await.unwrap();
    assert_eq!(ids.cached(), 2);
    assert_eq!(n.providers.load(SeqCst), 3);
    let a2 = ids.resolve(Some("p1")).await.unwrap().unwrap();
    assert!(Arc::ptr_eq(&a, &a2), "p1 was kept");
    ids.resolve(Some("p2")).await.unwrap();
    assert_eq!(n.providers.load(SeqCst), 4, "p2 was dropped and made again");
    assert!(
        access_key(&a).await.contains("kgate-p1"),
        "a dropped identity still works for its holders"
    );
}

#[tokio::test]
async fn users_get_their_own_credentials() {
    let map = IdentityMap {
        entries: vec![UpstreamIdentity {
            principal: "team-*".into(),
            source: IdentitySource::User {
                username: "team".into(),
                password: Secret::File("/run/team".into()),
            },
        }],
        unmapped: Unmapped::Default,
    };
    let (f, n) = factory(Duration::from_secs(60));
    let ids = Identities::new(map, sasl(Mechanism::ScramSha512), f);
    let a = ids.resolve(Some("team-a")).await.unwrap().unwrap();
    let b = ids.resolve(Some("team-b")).await.unwrap().unwrap();
    assert!(Arc::ptr_eq(&a, &b), "one user entry, one authenticator");
    assert_eq!(a.describe, "user team");
    assert_eq!(a.authenticator.username(), Some("team"));
    assert_eq!(a.authenticator.mechanism(), Mechanism::ScramSha512);
    assert!(a.authenticator.credentials().is_none());
    assert_eq!(n.providers.load(SeqCst), 0);
}
