//! The `kgate` command line: check-config's errors, and the precedence
//! flag > env > file, observed on the real binary.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn kgate() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kgate"));
    for (k, _) in std::env::vars() {
        if k.starts_with("KGATE_") {
            c.env_remove(k);
        }
    }
    c
}

fn write(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
    let p = dir.path().join("kgate.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn check_config_accepts_a_good_file_and_explains_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(&dir, "bootstrap = [\"b-1.example:9094\"]\n[[dial]]\nbroker = \"b-1.example:9094\"\nconnect = \"127.0.0.2:9094\"\n");
    let out = kgate()
        .args(["check-config", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));

    let cases = [
        (
            "bootstrap = [\"a:1\"]\nlisteners = 3\n",
            vec!["line 2", "unknown field `listeners`"],
        ),
        (
            "bootstrap = [\"a:1\"]\nport_base = \"x\"\n",
            vec!["line 2", "invalid type"],
        ),
        (
            "bootstrap = [\"a\"]\n",
            vec!["`bootstrap[0]`", "no port", "host:port"],
        ),
        ("port_base = 1\n", vec!["`bootstrap`: missing"]),
        (
            "bootstrap = [\"a:1\"]\nmax_frame_bytes = 10\n",
            vec!["`max_frame_bytes`", "expected 1024"],
        ),
        (
            "bootstrap = [\"a:1\"]\nlog_format = \"xml\"\n",
            vec!["`log_format`", "`human` or `json`"],
        ),
    ];
    for (text, expect) in cases {
        let p = write(&dir, text);
        let out = kgate()
            .args(["check-config", "--config"])
            .arg(&p)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("kgate.toml"), "{err}");
        for e in expect {
            assert!(err.contains(e), "{text}: expected {e:?} in {err}");
        }
    }
}

/// Starts `kgate run` and returns the bootstrap listener it reports.
fn bound_listener(mut cmd: Command) -> String {
    let mut child = cmd
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut found = None;
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        if line.contains("bootstrap listener") {
            found = line
                .split("listener=")
                .nth(1)
                .map(|s| s.split_whitespace().next().unwrap().to_string());
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    found.expect("kgate logged its bootstrap listener")
}

#[test]
fn flag_beats_env_beats_file() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        common::free_port_base(0),
        common::free_port_base(0),
        common::free_port_base(0),
    );
    let file = write(
        &dir,
        &format!("bootstrap = [\"127.0.0.1:1\"]\nport_base = {a}\nadmin_listen = \"off\"\n"),
    );
    let run = || {
        let mut k = kgate();
        k.args(["run", "--config"]).arg(&file);
        k
    };
    assert_eq!(bound_listener(run()), format!("127.0.0.1:{a}"));
    let mut with_env = run();
    with_env.env("KGATE_PORT_BASE", b.to_string());
    assert_eq!(bound_listener(with_env), format!("127.0.0.1:{b}"));
    let mut with_flag = run();
    with_flag
        .env("KGATE_PORT_BASE", b.to_string())
        .args(["--port-base", &c.to_string()]);
    assert_eq!(bound_listener(with_flag), format!("127.0.0.1:{c}"));
}

#[test]
fn run_without_bootstrap_fails_with_a_hint() {
    let out = kgate().arg("run").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bootstrap"));
}

/// SIGHUP re-reads the file: a raised per-listener limit admits a
/// connection the old limit refused, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_new_limits_live() {
    use kafka_protocol::messages::{ApiKey, HeartbeatRequest, HeartbeatResponse};
    use tokio::io::AsyncWriteExt;
    let upstream = common::serve(|mut sock: tokio::net::TcpStream| async move {
        while let Some(f) = common::read_frame(&mut sock).await {
            let corr = i32::from_be_bytes([f[8], f[9], f[10], f[11]]);
            let v = i16::from_be_bytes([f[6], f[7]]);
            let key = ApiKey::try_from(i16::from_be_bytes([f[4], f[5]])).unwrap();
            let r = if key == ApiKey::Metadata {
                common::response_frame(
                    key,
                    v,
                    corr,
                    &kafka_protocol::messages::MetadataResponse::default(),
                )
            } else {
                common::response_frame(key, v, corr, &HeartbeatResponse::default())
            };
            let _ = sock.write_all(&r).await;
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let pb = common::free_port_base(0);
    let cfg = |limit: u32| {
        format!("bootstrap = [\"{upstream}\"]\nport_base = {pb}\nadmin_listen = \"off\"\nmax_connections_per_listener = {limit}\n")
    };
    let file = write(&dir, &cfg(1));
    let log = dir.path().join("kgate.log");
    let mut child = kgate()
        .args(["run", "--config"])
        .arg(&file)
        .env("RUST_LOG", "info")
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    let connect = || async {
        for _ in 0..200 {
            if let Ok(s) = tokio::net::TcpStream::connect(("127.0.0.1", pb)).await {
                return s;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("kgate does not listen");
    };
    let hb = |corr| common::request_frame(ApiKey::Heartbeat, 4, corr, &HeartbeatRequest::default());
    let mut first = connect().await;
    first.write_all(&hb(1)).await.unwrap();
    assert!(common::read_frame(&mut first).await.is_some());
    let mut refused = connect().await;
    assert!(
        common::closed(&mut refused).await,
        "the limit of 1 admits a second connection"
    );

    std::fs::write(&file, cfg(2)).unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let mut applied = false;
    for _ in 0..200 {
        if std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("limits and timeouts updated")
        {
            applied = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(applied, "{}", std::fs::read_to_string(&log).unwrap_or_default());
    let mut second = connect().await;
    second.write_all(&hb(2)).await.unwrap();
    assert!(
        common::read_frame(&mut second).await.is_some(),
        "the raised limit admits it"
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `kgate check-config ARGS` with extra environment; (exit code,
/// stdout, stderr).
fn check(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = kgate()
        .arg("check-config")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_validates_the_merged_configuration_run_would_use() {
    let dir = tempfile::tempdir().unwrap();
    let no_bootstrap = write(&dir, "port_base = 20000\n");
    let f = no_bootstrap.to_str().unwrap();
    // The bootstrap comes from the environment, as for `run`.
    let (code, out, err) = check(&["--config", f], &[("KGATE_BOOTSTRAP", "a:1,b:2")]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("2 bootstrap server(s)") && out.contains(":20000"),
        "{out}"
    );
    // A bad value in the environment fails, naming the key.
    let (code, _, err) = check(
        &["--config", f],
        &[("KGATE_BOOTSTRAP", "a:1"), ("KGATE_MAX_FRAME_BYTES", "10")],
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("max_frame_bytes"), "{err}");
    // A flag beats the environment, here too.
    let env = [("KGATE_BOOTSTRAP", "a:1"), ("KGATE_LOG_FORMAT", "xml")];
    assert_eq!(check(&["--config", f], &env).0, Some(2));
    let (code, _, err) = check(&["--config", f, "--log-format", "json"], &env);
    assert_eq!(code, Some(0), "{err}");
    // Flags alone, without a file.
    let (code, out, err) = check(&["--bootstrap", "a:1", "--admin-listen", "nope"], &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        err.contains("admin_listen") && err.contains("command line"),
        "{err}"
    );
    let (code, out, _) = check(&["--bootstrap", "a:1"], &[]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("command line: OK"), "{out}");
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
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

/// Two P-256 keys and a self-signed certificate for the first.
fn key_material(dir: &std::path::Path) {
    for k in ["one.key", "two.key"] {
        openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                k,
            ],
        );
    }
    let subj = ["-subj", "/CN=kgate-test", "-days", "2"];
    openssl(
        dir,
        &[
            &["req", "-x509", "-new", "-key", "one.key", "-out", "one.pem"][..],
            &subj,
        ]
        .concat(),
    );
    std::fs::write(dir.join("garbage.pem"), "not pem at all\n").unwrap();
}

#[test]
fn check_config_parses_certificates_and_keys_and_pairs_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    key_material(d);
    let p = |n: &str| d.join(n).display().to_string();
    let down = |cert: &str, key: &str| {
        format!(
            "bootstrap = [\"a:1\"]\n[downstream_tls]\nenabled = true\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            p(cert),
            p(key)
        )
    };
    let file = |text: String| write(&dir, &text).display().to_string();
    let (code, _, err) = check(&["--config", &file(down("one.pem", "one.key"))], &[]);
    assert_eq!(code, Some(0), "{err}");
    let cases = [
        (
            down("one.pem", "two.key"),
            vec![
                "does not belong",
                "two.key",
                "one.pem",
                "downstream_tls.cert_file",
            ],
        ),
        (
            down("garbage.pem", "one.key"),
            vec!["garbage.pem", "no CERTIFICATE"],
        ),
        (
            down("one.pem", "garbage.pem"),
            vec!["garbage.pem", "no usable private key"],
        ),
        (
            format!(
                "bootstrap = [\"a:1\"]\n[upstream_tls]\nenabled = true\nca_file = \"{}\"\n",
                p("garbage.pem")
            ),
            vec!["upstream_tls.ca_file", "no CERTIFICATE"],
        ),
    ];
    for (text, expect) in cases {
        let (code, _, err) = check(&["--config", &file(text.clone())], &[]);
        assert_eq!(code, Some(2), "{text}");
        assert!(err.contains("kgate.toml"), "{err}");
        for e in expect {
            assert!(err.contains(e), "{text}: expected {e:?} in {err}");
        }
    }
    // The same check for files given as flags.
    let flags = [
        "--bootstrap",
        "a:1",
        "--upstream-tls",
        "true",
        "--upstream-cert-file",
    ];
    let (code, _, err) = check(
        &[&flags[..], &[&p("one.pem"), "--upstream-key-file", &p("two.key")]].concat(),
        &[],
    );
    assert_eq!(code, Some(2));
    assert!(
        err.contains("does not belong") && err.contains("upstream_tls"),
        "{err}"
    );
}

#[test]
fn check_config_reads_the_users_file_and_the_jwks() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    let jwks = dir.path().join("jwks.json");
    let cfg = |users: &std::path::Path, jwks: &std::path::Path| {
        format!(
            "bootstrap = [\"b-1.example:9094\"]\n[client_auth]\nmechanisms = [\"SCRAM-SHA-512\", \"OAUTHBEARER\"]\nusers_file = {:?}\n[client_auth.oauthbearer]\njwks_file = {:?}\nissuer = \"i\"\naudience = \"a\"\n",
            users, jwks
        )
    };
    let path = write(&dir, &cfg(&users, &jwks));
    let p = path.to_str().unwrap();
    let (code, _, err) = check(&["--config", p], &[]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("client_auth.users_file") && err.contains("cannot read"),
        "{err}"
    );
    let mut add = kgate()
        .args([
            "user",
            "add",
            "alice",
            "--file",
            users.to_str().unwrap(),
            "--iterations",
            "4096",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    add.stdin.take().unwrap().write_all(b"alice-pw\n").unwrap();
    assert!(add.wait().unwrap().success());
    std::fs::write(&jwks, "{\"keys\": \"nope\"}").unwrap();
    let (code, _, err) = check(&["--config", p], &[]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("client_auth.oauthbearer.jwks_file") && err.contains("not a JWKS"),
        "{err}"
    );
    std::fs::write(&jwks, r#"{"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#).unwrap();
    let (code, out, err) = check(&["--config", p], &[]);
    assert_eq!(code, Some(0), "{out}{err}");
}
