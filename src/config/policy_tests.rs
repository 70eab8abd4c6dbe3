use super::*;
use serde::Deserialize;

fn parse(text: &str) -> Result<Option<std::sync::Arc<PolicyConfig>>, String> {
    #[derive(Deserialize)]
    struct W {
        policy: Option<FilePolicy>,
    }
    let w: W = toml::from_str(text).map_err(|e| e.to_string())?;
    policy(w.policy)
}

#[test]
fn glob_matching() {
    assert!(glob(b"svc-*", b"svc-orders"));
    assert!(glob(b"*", b""));
    assert!(glob(b"a*b*c", b"axxbyyc"));
    assert!(!glob(b"a*b*c", b"axxbyy"));
    assert!(glob(b"orders.??", b"orders.eu"));
    assert!(!glob(b"orders.??", b"orders.eur"));
    assert!(!glob(b"svc-*", b"sv"));
}

#[test]
fn no_section_means_no_policy() {
    assert_eq!(parse("").unwrap(), None);
}

#[test]
fn defaults_allow_anonymous_and_deny_unmatched() {
    let p = parse("[policy]\n").unwrap().unwrap();
    assert_eq!(p.rules_for(None), &Rules::everything());
    let u = p.rules_for(Some("mallory"));
    assert!(!u.api_allowed(0));
    assert!(u.api_allowed(18));
    assert!(u.api_allowed(3));
    assert!(!grants(&u.topics, "t", op::DESCRIBE));
}

#[test]
fn a_principal_block() {
    let p = parse(
        r#"
[policy]
default = "deny"
[[policy.principal]]
names = ["alice", "svc-*"]
apis_deny = ["DeleteGroups", 47]
topics = [{ prefix = "orders.", ops = ["read", "write", "describe"] },
          { glob = "logs-*-eu", ops = ["all"] }]
groups = [{ name = "orders-app", ops = ["read"] }]
[[policy.principal]]
names = ["admin"]
apis_allow = ["all"]
"#,
    )
    .unwrap()
    .unwrap();
    assert!(!p.rules_for(None).api_allowed(0));
    let a = p.rules_for(Some("svc-x"));
    assert!(a.api_allowed(0));
    assert!(!a.api_allowed(42));
    assert!(!a.api_allowed(47));
    assert!(!a.api_allowed(19), "admin keys need apis_allow");
    assert!(grants(&a.topics, "orders.eu", op::WRITE));
    assert!(!grants(&a.topics, "orders.eu", op::CREATE));
    assert!(!grants(&a.topics, "payments", op::READ));
    assert!(grants(&a.topics, "logs-app-eu", op::DELETE));
    assert!(grants(&a.groups, "orders-app", op::READ));
    assert!(!grants(&a.groups, "other", op::READ));
    assert!(
        grants(&a.transactional_ids, "any", op::WRITE),
        "no rules: unrestricted"
    );
    let admin = p.rules_for(Some("admin"));
    assert!(admin.api_allowed(19) && admin.api_allowed(20));
    assert!(!admin.has_resources());
}

#[test]
fn default_may_be_a_rule_block() {
    let p = parse("[policy.default]\ntopics = [{ prefix = \"bench\", ops = [\"read\", \"write\"] }]")
        .unwrap()
        .unwrap();
    let d = p.rules_for(None);
    assert!(d.api_allowed(0) && !d.api_allowed(19));
    assert!(grants(&d.topics, "bench-1", op::WRITE));
    assert!(!grants(&d.topics, "other", op::READ));
    let e = parse("[policy.default]\nnames = [\"x\"]").unwrap_err();
    assert!(e.contains("policy.default.names"), "{e}");
}

#[test]
fn errors_name_the_key() {
    let cases = [
        ("[policy]\ndefault = \"maybe\"", "policy.default"),
        ("[[policy.principal]]\nnames = []", "policy.principal[0].names"),
        (
            "[[policy.principal]]\nnames = [\"a\"]\napis_allow = [\"Produse\"]",
            "policy.principal[0].apis_allow[0]",
        ),
        (
            "[[policy.principal]]\nnames = [\"a\"]\napis_deny = [999]",
            "policy.principal[0].apis_deny[0]",
        ),
        (
            "[[policy.principal]]\nnames = [\"a\"]\ntopics = [{ name = \"x\", prefix = \"y\", ops = [\"read\"] }]",
            "policy.principal[0].topics[0]",
        ),
        (
            "[[policy.principal]]\nnames = [\"a\"]\ngroups = [{ name = \"x\", ops = [\"write\"] }]",
            "policy.principal[0].groups[0].ops",
        ),
        (
            "[[policy.principal]]\nnames = [\"a\"]\ntransactional_ids = [{ name = \"x\", ops = [] }]",
            "policy.principal[0].transactional_ids[0].ops",
        ),
    ];
    for (text, key) in cases {
        let e = parse(text).unwrap_err();
        assert!(e.contains(key), "{text}: {e}");
    }
    assert!(parse("[policy]\nbogus = 1").is_err());
}
