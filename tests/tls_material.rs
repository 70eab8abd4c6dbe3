//! Keys and certificates made by the openssl command line (an independent
//! implementation) load in every supported format, and an encrypted key
//! with a wrong passphrase is a clear error.

use kgate::tls::material::{load_certs, load_key, Passphrase};
use std::path::Path;
use std::process::Command;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_key_format_loads_and_matches_its_certificate() {
    kgate::tls::install_provider();
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    openssl(
        p,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "rsa.p8",
        ],
    );
    openssl(p, &["rsa", "-in", "rsa.p8", "-traditional", "-out", "rsa.p1"]);
    openssl(
        p,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "p256.sec1",
        ],
    );
    openssl(
        p,
        &[
            "ecparam",
            "-name",
            "secp384r1",
            "-genkey",
            "-noout",
            "-out",
            "p384.sec1",
        ],
    );
    std::fs::write(p.join("pass"), "s3cret phrase\n").unwrap();
    openssl(
        p,
        &[
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-in",
            "rsa.p8",
            "-out",
            "rsa.enc",
            "-passout",
            "file:pass",
        ],
    );
    openssl(
        p,
        &[
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-128-cbc",
            "-in",
            "p256.sec1",
            "-out",
            "p256.enc",
            "-passout",
            "file:pass",
        ],
    );

    let pass = Passphrase::File(p.join("pass"));
    for (key, pp) in [
        ("rsa.p8", None),
        ("rsa.p1", None),
        ("p256.sec1", None),
        ("p384.sec1", None),
        ("rsa.enc", Some(&pass)),
        ("p256.enc", Some(&pass)),
    ] {
        let k = load_key(&p.join(key), pp).unwrap_or_else(|e| panic!("{key}: {e}"));
        let base = key.split('.').next().unwrap();
        let cert = format!("{key}.crt");
        let src = if key.ends_with(".enc") {
            format!("{base}.{}", if base == "rsa" { "p8" } else { "sec1" })
        } else {
            key.to_string()
        };
        openssl(
            p,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                &src,
                "-subj",
                "/CN=kgate-test",
                "-days",
                "1",
                "-out",
                &cert,
            ],
        );
        let chain = load_certs(&p.join(&cert)).unwrap();
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, k)
            .unwrap_or_else(|e| panic!("{key} does not pair with its certificate: {e}"));
    }

    std::fs::write(p.join("wrong"), "not it").unwrap();
    let e = load_key(&p.join("rsa.enc"), Some(&Passphrase::File(p.join("wrong")))).unwrap_err();
    assert!(e.contains("wrong passphrase") && e.contains("rsa.enc"), "{e}");
    std::env::set_var("KGATE_TEST_KEY_PASS", "s3cret phrase");
    load_key(
        &p.join("p256.enc"),
        Some(&Passphrase::Env("KGATE_TEST_KEY_PASS".into())),
    )
    .unwrap();
    // A mismatched pair is refused by the server config, not at use.
    let other = load_key(&p.join("p384.sec1"), None).unwrap();
    let chain = load_certs(&p.join("rsa.p8.crt")).unwrap();
    assert!(rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, other)
        .is_err());
}
