use super::*;
use crate::config::file::{build, FileConfig, Overrides};

fn load(text: &str) -> Result<crate::config::Config, String> {
    let f: FileConfig = toml::from_str(text).map_err(|e| e.to_string())?;
    build(f, Overrides::default(), "f")
}

const IAM: &str = "bootstrap = [\"b-1:9098\"]\n[upstream_sasl]\nmechanism = \"AWS_MSK_IAM\"\n";
const PLAIN: &str =
    "bootstrap = [\"b-1:9096\"]\n[upstream_sasl]\nmechanism = \"PLAIN\"\nusername = \"kgate\"\npassword_env = \"PW\"\n";

#[test]
fn roles_and_users_parse_with_their_options() {
    let c = load(&format!(
        "{IAM}upstream_identity_unmapped = \"refuse\"\n\
         [[upstream_identity]]\nprincipal = \"alice\"\nrole_arn = \"arn:aws:iam::123456789012:role/alice\"\n\
         [[upstream_identity]]\nprincipal = \"svc-*\"\nrole_arn = \"arn:aws:iam::123456789012:role/svc\"\n\
         session_name = \"svc\"\nexternal_id = \"ext-1\"\n"
    ));
    // `upstream_identity_unmapped` above sits inside [upstream_sasl]: unknown there.
    assert!(c.unwrap_err().contains("upstream_identity_unmapped"));
    let c = load(&format!(
        "upstream_identity_unmapped = \"refuse\"\n{IAM}\
         [[upstream_identity]]\nprincipal = \"alice\"\nrole_arn = \"arn:aws:iam::123456789012:role/alice\"\n\
         [[upstream_identity]]\nprincipal = \"svc-*\"\nrole_arn = \"arn:aws:iam::123456789012:role/svc\"\n\
         session_name = \"svc\"\nexternal_id = \"ext-1\"\n"
    ))
    .unwrap();
    let m = &c.upstream_identity;
    assert_eq!(m.unmapped, Unmapped::Refuse);
    assert_eq!(m.entries.len(), 2);
    assert_eq!(
        m.entries[1],
        UpstreamIdentity {
            principal: "svc-*".into(),
            source: IdentitySource::Role {
                role_arn: "arn:aws:iam::123456789012:role/svc".into(),
                session_name: Some("svc".into()),
                external_id: Some("ext-1".into()),
            }
        }
    );
    let c = load(&format!(
        "{PLAIN}[[upstream_identity]]\nprincipal = \"bob\"\nusername = \"bob-up\"\npassword_file = \"/run/bob\"\n"
    ))
    .unwrap();
    assert_eq!(c.upstream_identity.unmapped, Unmapped::Default);
    assert_eq!(
        c.upstream_identity.entries[0].source,
        IdentitySource::User {
            username: "bob-up".into(),
            password: Secret::File("/run/bob".into())
        }
    );
    let none = load(IAM).unwrap();
    assert_eq!(none.upstream_identity, IdentityMap::default());
}

#[test]
fn mechanism_must_fit_the_identity() {
    let e = load(&format!(
        "{PLAIN}[[upstream_identity]]\nprincipal = \"a\"\nrole_arn = \"arn:aws:iam::123456789012:role/a\"\n"
    ))
    .unwrap_err();
    assert!(
        e.contains("upstream_identity[0].role_arn") && e.contains("AWS_MSK_IAM"),
        "{e}"
    );
    let e = load(&format!(
        "{IAM}[[upstream_identity]]\nprincipal = \"a\"\nusername = \"a\"\npassword_env = \"X\"\n"
    ))
    .unwrap_err();
    assert!(
        e.contains("upstream_identity[0].username") && e.contains("SCRAM"),
        "{e}"
    );
    let e = load(
        "bootstrap = [\"b:1\"]\n[[upstream_identity]]\nprincipal = \"a\"\nrole_arn = \"arn:aws:iam::123456789012:role/a\"\n",
    )
    .unwrap_err();
    assert!(e.contains("needs an [upstream_sasl] section"), "{e}");
}

#[test]
fn bad_entries_are_refused_with_their_key() {
    let cases = [
        ("role_arn = \"arn:aws:iam::123456789012:role/a\"\n", "principal`: missing"),
        (
            "principal = \"a\"\nrole_arn = \"arn:aws:iam::123:role/a\"\n",
            "is not an IAM role ARN",
        ),
        (
            "principal = \"a\"\nrole_arn = \"arn:aws:iam::123456789012:user/a\"\n",
            "is not an IAM role ARN",
        ),
        (
            "principal = \"a\"\nrole_arn = \"arn:aws:iam::123456789012:role/a\"\nsession_name = \"has space\"\n",
            "session_name`: `has space` is not a valid STS session name",
        ),
        (
            "principal = \"a\"\nrole_arn = \"arn:aws:iam::123456789012:role/a\"\nexternal_id = \"x\"\n",
            "external_id`: expected 2-1224",
        ),
        (
            "principal = \"a\"\nrole_arn = \"arn:aws:iam::123456789012:role/a\"\nusername = \"u\"\n",
            "not both",
        ),
        ("principal = \"a\"\n", "expected `role_arn`"),
        ("principal = \"a\"\nrolearn = \"x\"\n", "unknown field"),
    ];
    for (entry, want) in cases {
        let e = load(&format!("{IAM}[[upstream_identity]]\n{entry}")).unwrap_err();
        assert!(e.contains(want), "{entry}: {e}");
    }
    let e = load(&format!(
        "{PLAIN}[[upstream_identity]]\nprincipal = \"a\"\nusername = \"u\"\npassword_env = \"A\"\npassword_file = \"/f\"\n"
    ))
    .unwrap_err();
    assert!(e.contains("set exactly one"), "{e}");
    let e = load(&format!(
        "{PLAIN}[[upstream_identity]]\nprincipal = \"a\"\nusername = \"u\"\n"
    ))
    .unwrap_err();
    assert!(e.contains("set exactly one"), "{e}");
    let twice = "[[upstream_identity]]\nprincipal = \"a\"\nrole_arn = \"arn:aws:iam::123456789012:role/a\"\n";
    let e = load(&format!("{IAM}{twice}{twice}")).unwrap_err();
    assert!(
        e.contains("upstream_identity[1].principal`: `a` is listed twice"),
        "{e}"
    );
    let e = load(&format!("upstream_identity_unmapped = \"deny\"\n{IAM}")).unwrap_err();
    assert!(e.contains("expected `default` or `refuse`"), "{e}");
    let e = load("bootstrap = [\"b:1\"]\nupstream_identity_unmapped = \"refuse\"\n").unwrap_err();
    assert!(e.contains("needs an [upstream_sasl] section"), "{e}");
}

#[test]
fn session_names_are_stable_valid_and_distinct() {
    assert_eq!(session_name_for("alice"), "kgate-alice");
    assert_eq!(session_name_for("svc@team.example"), "kgate-svc@team.example");
    let odd = session_name_for("CN=alice, O=Example/Ops");
    assert_eq!(odd, session_name_for("CN=alice, O=Example/Ops"), "stable");
    assert!(odd.starts_with("kgate-CN=alice,-O=Example-Ops-"), "{odd}");
    let long = "x".repeat(200);
    let a = session_name_for(&long);
    let b = session_name_for(&format!("{long}y"));
    assert_ne!(a, b, "principals that share a long prefix keep distinct names");
    for n in [&odd, &a, &b, &session_name_for("ünïcødé")] {
        assert!(n.len() <= 64, "{n}");
        check_session_name("k", n).unwrap();
    }
    // `kgate-` plus up to 58 valid characters is kept as it is
    let edge = "y".repeat(58);
    assert_eq!(session_name_for(&edge), format!("kgate-{edge}"));
    assert_ne!(
        session_name_for(&"y".repeat(59)),
        format!("kgate-{}", "y".repeat(59))
    );
}

#[test]
fn check_config_reads_password_files_and_variables() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    let entry = |secret: String| {
        load(&format!(
            "{PLAIN}[[upstream_identity]]\nprincipal = \"a\"\nusername = \"a\"\n{secret}\n"
        ))
        .unwrap()
    };
    let c = entry(format!("password_file = {:?}", pw.display().to_string()));
    let e = crate::config::check_material(&c).unwrap_err();
    assert!(e.contains("upstream_identity[0].password_file"), "{e}");
    std::fs::write(&pw, "secret-pw\n").unwrap();
    crate::config::check_material(&c).unwrap();
    let c = entry("password_env = \"KGATE_TEST_NEVER_SET_4711\"".into());
    let e = crate::config::check_material(&c).unwrap_err();
    assert!(
        e.contains("KGATE_TEST_NEVER_SET_4711 is not set") && !e.contains("secret-pw"),
        "{e}"
    );
}
