use super::file::{build, FileConfig, Overrides};
use super::*;

fn file(text: &str) -> Result<FileConfig, String> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("kgate.toml");
    std::fs::write(&p, text).unwrap();
    FileConfig::load(&p)
}

#[test]
fn defaults_follow_the_one_liner() {
    let o = Overrides {
        bootstrap: Some(vec!["b-1:9092".into()]),
        ..Default::default()
    };
    let c = build(FileConfig::default(), o, "test").unwrap();
    assert_eq!(c.bind_host, "127.0.0.1");
    assert_eq!(c.advertised_host, "127.0.0.1");
    assert_eq!(c.port_base, 19092);
    assert!(c.dynamic_listeners);
    assert_eq!(c.bootstrap, vec![HostPort::new("b-1", 9092)]);
}

#[test]
fn flags_win_over_the_file() {
    let f = file("bootstrap = [\"a:1\"]\nport_base = 20000\nbind_host = \"0.0.0.0\"\n").unwrap();
    let o = Overrides {
        port_base: Some(30000),
        ..Default::default()
    };
    let c = build(f, o, "f").unwrap();
    assert_eq!(c.port_base, 30000);
    assert_eq!(c.bind_host, "0.0.0.0");
    assert_eq!(c.advertised_host, "0.0.0.0");
    assert_eq!(c.bootstrap[0], HostPort::new("a", 1));
}

#[test]
fn full_file_parses() {
    let f = file(
        r#"
bootstrap = ["b-1.x.kafka.us-east-1.amazonaws.com:9094"]
advertised_host = "kgate.local"
port_range = "30000-30010"
dynamic_listeners = false
[[static_listeners]]
upstream = "b-1.x.kafka.us-east-1.amazonaws.com:9094"
bind = "127.0.0.1:19094"
advertised = "localhost:19094"
[[dial]]
broker = "b-1.x.kafka.us-east-1.amazonaws.com:9094"
connect = "vpce-1.example:9094"
"#,
    )
    .unwrap();
    let c = build(f, Overrides::default(), "f").unwrap();
    assert_eq!(c.port_range, Some((30000, 30010)));
    assert!(!c.dynamic_listeners);
    assert_eq!(
        c.static_listeners[0].advertised,
        HostPort::new("localhost", 19094)
    );
    let b = HostPort::new("b-1.x.kafka.us-east-1.amazonaws.com", 9094);
    assert_eq!(c.dial_address(&b), HostPort::new("vpce-1.example", 9094));
    assert_eq!(
        c.dial_address(&HostPort::new("other", 1)),
        HostPort::new("other", 1)
    );
}

#[test]
fn mistakes_name_file_key_and_expectation() {
    let e = file("bootstrap = [\"a:1\"]\nbogus = 1\n").unwrap_err();
    assert!(
        e.contains("kgate.toml") && e.contains("bogus") && e.contains("line 2"),
        "{e}"
    );
    let e = file("port_base = 70000\n").unwrap_err();
    assert!(e.contains("line 1"), "{e}");
    let e = build(
        file("bootstrap = [\"nohost\"]").unwrap(),
        Overrides::default(),
        "k.toml",
    )
    .unwrap_err();
    assert!(
        e.contains("k.toml") && e.contains("bootstrap[0]") && e.contains("host:port"),
        "{e}"
    );
    let e = build(file("").unwrap(), Overrides::default(), "k.toml").unwrap_err();
    assert!(e.contains("`bootstrap`: missing"), "{e}");
    let e = build(
        file("bootstrap=[\"a:1\"]\nport_range=\"9-3\"").unwrap(),
        Overrides::default(),
        "k.toml",
    )
    .unwrap_err();
    assert!(e.contains("port_range"), "{e}");
    let e = build(
        file("bootstrap=[\"a:1\"]\n[[static_listeners]]\nupstream=\"a:1\"\nbind=\"x\"").unwrap(),
        Overrides::default(),
        "k.toml",
    )
    .unwrap_err();
    assert!(e.contains("static_listeners[0].bind"), "{e}");
    let e = file("[[static_listeners]]\nupstream=\"a:1\"\nbind=\"b:2\"\nport=3").unwrap_err();
    assert!(e.contains("port"), "{e}");
}

#[test]
fn host_port_parsing() {
    assert_eq!(HostPort::parse("[::1]:9092").unwrap(), HostPort::new("::1", 9092));
    assert_eq!(HostPort::new("::1", 9092).to_string(), "[::1]:9092");
    assert!(HostPort::parse("a:0").is_err());
    assert!(HostPort::parse(":9").is_err());
    assert!(HostPort::parse("a:99999").is_err());
}

#[test]
fn storm_limits_default_under_msk_and_come_from_file_and_flags() {
    let o = || Overrides {
        bootstrap: Some(vec!["b-1:9098".into()]),
        ..Default::default()
    };
    let c = build(FileConfig::default(), o(), "t").unwrap();
    assert_eq!(c.storm, StormLimits::default());
    assert!(
        c.storm.rate < 100 && c.storm.max_per_broker < 3000,
        "under MSK's limits"
    );
    let f = file(
        "upstream_connect_rate = 20\nupstream_connect_burst = 3\nupstream_max_connections_per_broker = 900\nupstream_connect_wait_ms = 5000\n",
    )
    .unwrap();
    let mut flags = o();
    flags.ops.upstream_connect_rate = Some(30);
    let c = build(f, flags, "f").unwrap();
    assert_eq!(
        c.storm,
        StormLimits {
            rate: 30,
            burst: 3,
            max_per_broker: 900,
            wait: std::time::Duration::from_secs(5)
        }
    );
    for bad in [
        "upstream_connect_rate = 0\n",
        "upstream_connect_burst = 0\n",
        "upstream_max_connections_per_broker = 0\n",
    ] {
        let e = build(file(bad).unwrap(), o(), "f").unwrap_err();
        let key = bad.split(' ').next().unwrap();
        assert!(e.contains(key), "{e}");
    }
}

#[test]
fn proxy_protocol_per_listener_and_flag() {
    let f = file(
        "bootstrap = [\"a:1\"]\nproxy_protocol = \"optional\"\n[[static_listeners]]\nupstream = \"b:2\"\nbind = \"127.0.0.1:20001\"\nproxy_protocol = \"required\"\n",
    )
    .unwrap();
    let c = build(f, Overrides::default(), "f").unwrap();
    assert_eq!(c.proxy_protocol, ProxyMode::Optional);
    assert_eq!(c.static_listeners[0].proxy_protocol, Some(ProxyMode::Required));
    let f = file("bootstrap = [\"a:1\"]\nproxy_protocol = \"optional\"\n").unwrap();
    let o = Overrides {
        proxy_protocol: Some("off".into()),
        ..Default::default()
    };
    assert_eq!(build(f, o, "f").unwrap().proxy_protocol, ProxyMode::Off);
    let f = file("bootstrap = [\"a:1\"]\nproxy_protocol = \"v2\"\n").unwrap();
    let e = build(f, Overrides::default(), "f").unwrap_err();
    assert!(e.contains("key `proxy_protocol`") && e.contains("`v2`"), "{e}");
    let f = file("bootstrap = [\"a:1\"]\n[[static_listeners]]\nupstream = \"b:2\"\nbind = \"127.0.0.1:1\"\nproxy_protocol = \"yes\"\n").unwrap();
    let e = build(f, Overrides::default(), "f").unwrap_err();
    assert!(e.contains("static_listeners[0].proxy_protocol"), "{e}");
}

#[test]
fn sni_section_needs_downstream_tls() {
    let f = file(
        "bootstrap = [\"a:1\"]\n[sni]\nlisten = \"127.0.0.1:29092\"\nbootstrap_name = \"boot.example.internal\"\nbroker_pattern = \"b-{node_id}.example.internal\"\n",
    )
    .unwrap();
    let e = build(f, Overrides::default(), "f").unwrap_err();
    assert!(e.contains("plaintext carries no server name"), "{e}");
    let e = file("bootstrap = [\"a:1\"]\n[sni]\nport = 1\n").unwrap_err();
    assert!(e.contains("unknown field `port`"), "{e}");
}

#[test]
fn mtls_principal_needs_a_client_ca_and_a_known_part() {
    let dir = std::env::temp_dir().join(format!("kgate-principal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for n in ["c.pem", "k.pem", "ca.pem"] {
        std::fs::write(dir.join(n), "x").unwrap();
    }
    let d = dir.display();
    let base = format!(
        "bootstrap = [\"a:1\"]\n[downstream_tls]\nenabled = true\ncert_file = \"{d}/c.pem\"\nkey_file = \"{d}/k.pem\"\n"
    );
    let e = build(
        file(&format!("{base}principal = \"cn\"\n")).unwrap(),
        Overrides::default(),
        "f",
    )
    .unwrap_err();
    assert!(
        e.contains("downstream_tls.principal") && e.contains("client_ca_file"),
        "{e}"
    );
    let with_ca = format!("{base}client_ca_file = \"{d}/ca.pem\"\n");
    let e = build(
        file(&format!("{with_ca}principal = \"ou\"\n")).unwrap(),
        Overrides::default(),
        "f",
    )
    .unwrap_err();
    assert!(e.contains("\"ou\" is not one of"), "{e}");
    let c = build(
        file(&format!("{with_ca}principal = \"san_dns\"\n")).unwrap(),
        Overrides::default(),
        "f",
    )
    .unwrap();
    assert_eq!(
        c.downstream_tls.unwrap().principal,
        Some(crate::config::PrincipalFrom::SanDns)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cutover_order_parses_and_explains_mistakes() {
    use crate::config::CutoverOrder;
    let c = build(
        file("bootstrap = [\"a:1\"]\n").unwrap(),
        Overrides::default(),
        "f",
    )
    .unwrap();
    assert_eq!(c.cutover_order, CutoverOrder::AllAtOnce);
    let c = build(
        file(
            "bootstrap = [\"a:1\"]\ncutover_order = \"producers_first\"\ncutover_consumer_delay_ms = 1500\n",
        )
        .unwrap(),
        Overrides::default(),
        "f",
    )
    .unwrap();
    assert_eq!(
        c.cutover_order,
        CutoverOrder::ProducersFirst {
            consumer_delay: std::time::Duration::from_millis(1500)
        }
    );
    let e = build(
        file("bootstrap = [\"a:1\"]\ncutover_order = \"consumers_first\"\n").unwrap(),
        Overrides::default(),
        "f",
    )
    .unwrap_err();
    assert!(
        e.contains("`cutover_order`") && e.contains("producers_first"),
        "{e}"
    );
    let e = build(
        file("bootstrap = [\"a:1\"]\ncutover_consumer_delay_ms = 5\n").unwrap(),
        Overrides::default(),
        "f",
    )
    .unwrap_err();
    assert!(e.contains("only used with cutover_order"), "{e}");
}

#[test]
fn static_listener_node_ids_are_unique_and_not_negative() {
    let one = |id: i32, up: &str, port: u16| {
        format!("[[static_listeners]]\nupstream = \"{up}\"\nnode_id = {id}\nbind = \"127.0.0.1:{port}\"\n")
    };
    let ok = format!(
        "bootstrap = [\"a:1\"]\n{}{}",
        one(1, "b1:9092", 20001),
        one(2, "b2:9092", 20002)
    );
    let c = build(file(&ok).unwrap(), Overrides::default(), "f").unwrap();
    assert_eq!(
        c.static_listeners.iter().map(|s| s.node_id).collect::<Vec<_>>(),
        vec![Some(1), Some(2)]
    );
    let twice = format!(
        "bootstrap = [\"a:1\"]\n{}{}",
        one(1, "b1:9092", 20001),
        one(1, "b2:9092", 20002)
    );
    let e = build(file(&twice).unwrap(), Overrides::default(), "f").unwrap_err();
    assert!(
        e.contains("static_listeners[1].node_id") && e.contains("listed twice"),
        "{e}"
    );
    let neg = format!("bootstrap = [\"a:1\"]\n{}", one(-3, "b1:9092", 20001));
    let e = build(file(&neg).unwrap(), Overrides::default(), "f").unwrap_err();
    assert!(e.contains("negative"), "{e}");
}

#[test]
fn policy_section_reaches_the_config() {
    let f = file(
        "bootstrap = [\"a:1\"]\n[policy]\ndefault = \"deny\"\n[[policy.principal]]\nnames = [\"svc-*\"]\n",
    )
    .unwrap();
    let c = build(f, Overrides::default(), "f").unwrap();
    let p = c.policy.expect("policy");
    assert!(!p.rules_for(None).api_allowed(0));
    assert!(p.rules_for(Some("svc-a")).api_allowed(0));
    let bad = file("bootstrap = [\"a:1\"]\n[policy]\nunmatched = \"maybe\"\n").unwrap();
    let e = build(bad, Overrides::default(), "f").unwrap_err();
    assert!(e.contains("policy.unmatched"), "{e}");
    assert!(build(
        file("bootstrap = [\"a:1\"]\n").unwrap(),
        Overrides::default(),
        "f"
    )
    .unwrap()
    .policy
    .is_none());
}
