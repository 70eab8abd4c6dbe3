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
