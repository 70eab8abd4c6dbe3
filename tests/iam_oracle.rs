//! kgate's MSK IAM signatures against botocore, an independent SigV4
//! implementation (tests/e2e/sigv4_oracle.py), for AWS_MSK_IAM and
//! OAUTHBEARER, with and without a session token.

use kgate::upstream::sasl::msk_iam::{iam_payload, oauth_token, USER_AGENT};
use kgate::upstream::sasl::sigv4::Keys;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

fn python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let venv = root.join("target/e2e-deps/venv/bin/python");
    assert!(
        venv.exists(),
        "run `bash tests/setup.sh` first: the oracle needs botocore from the e2e venv"
    );
    venv
}

fn oracle(args: &[&str]) -> serde_json::Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/sigv4_oracle.py");
    let out = Command::new(python())
        .arg(script)
        .arg("vector")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "oracle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// (access key, secret, session token, region, host, unix time)
type Case = (
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
    &'static str,
    u64,
);

const CASES: &[Case] = &[
    (
        "ACCESS_KEY",
        "SECRET_KEY",
        None,
        "us-east-1",
        "localhost",
        1_634_216_700,
    ),
    (
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        Some("FwoGZXIvYXdzE+/=token"),
        "eu-west-1",
        "b-1.c1.abc.c2.kafka.eu-west-1.amazonaws.com",
        1_709_251_199,
    ),
    (
        "ASIAXYZ",
        "s3cr3t",
        Some("IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD"),
        "ap-southeast-2",
        "b-3.x.kafka.ap-southeast-2.amazonaws.com",
        1_900_000_000,
    ),
];

fn iso(secs: u64) -> String {
    let d = kgate::upstream::sasl::sigv4::amz_date(UNIX_EPOCH + Duration::from_secs(secs));
    format!(
        "{}-{}-{}T{}:{}:{}Z",
        &d[0..4],
        &d[4..6],
        &d[6..8],
        &d[9..11],
        &d[11..13],
        &d[13..15]
    )
}

/// Keys and the oracle's answer for one case (`--oauth` for the token).
fn case(c: &Case, oauth: bool) -> (Keys, serde_json::Value) {
    let &(ak, sk, token, region, host, t) = c;
    let time = iso(t);
    let mut args = vec![
        "--access-key",
        ak,
        "--secret",
        sk,
        "--region",
        region,
        "--host",
        host,
        "--time",
        &time,
        "--expires",
        "900",
        "--user-agent",
        USER_AGENT,
    ];
    if let Some(tok) = token {
        args.extend(["--token", tok]);
    }
    if oauth {
        args.push("--oauth");
    }
    let keys = Keys {
        access_key: ak.into(),
        secret_key: sk.into(),
        session_token: token.map(str::to_string),
    };
    (keys, oracle(&args))
}

#[test]
fn aws_msk_iam_payload_matches_botocore() {
    for c in CASES {
        let (keys, want) = case(c, false);
        let at = UNIX_EPOCH + Duration::from_secs(c.5);
        let ours: serde_json::Value = serde_json::from_slice(&iam_payload(&keys, c.3, c.4, at)).unwrap();
        assert_eq!(ours, want, "payload for {} at {}", c.4, iso(c.5));
    }
}

#[test]
fn oauthbearer_token_matches_botocore() {
    for c in CASES {
        let (keys, want) = case(c, true);
        let ours = oauth_token(&keys, c.3, UNIX_EPOCH + Duration::from_secs(c.5));
        assert_eq!(
            ours,
            want["token"].as_str().unwrap(),
            "token for {} (oracle url {})",
            c.3,
            want["url"]
        );
    }
}
