//! The command line: `check` errors with positions and exit 64, `explain`,
//! `audit verify` pinpointing an edited line.

use std::process::Command;
use std::sync::Arc;

use crate::support::upstream::Upstream;
use crate::support::{Ca, Gateway, base_config, bin, site};

fn check(config: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(bin())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const GOOD: &str = r#"[listen]
https = "127.0.0.1:0"

[[site]]
name = "erp"
hosts = ["erp.example.com"]
app = "erpnext"
upstream = "http://127.0.0.1:8000"
tls = "self-signed"
allow = ["10.0.0.0/8"]

[[site.rule]]
paths = ["/app/system-settings*"]
allow = ["10.20.0.0/16"]
action = "allow"
"#;

#[test]
fn check_accepts_a_good_config_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("good.toml");
    std::fs::write(&path, GOOD).unwrap();
    let out = Command::new(bin())
        .args(["check", "--config"])
        .arg(&path)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("site erp"), "{stdout}");
    assert!(stdout.contains("/app/system-settings*"), "{stdout}");
    assert!(
        !dir.path().join("certs").exists(),
        "check must not generate certificates"
    );
}

#[test]
fn check_points_at_a_bad_cidr_with_a_hint() {
    let (code, _, err) = check(&GOOD.replace("\"10.0.0.0/8\"", "\"10.0.0.0/33\""));
    assert_eq!(code, 64);
    assert!(err.contains("broken.toml:10:10:"), "{err}");
    assert!(err.contains("10.0.0.0/33"), "{err}");
    assert!(err.contains("CIDR"), "{err}");
}

#[test]
fn check_points_at_an_unknown_key() {
    let (code, _, err) =
        check(&GOOD.replace("app = \"erpnext\"", "app = \"erpnext\"\nupstreams = \"x\""));
    assert_eq!(code, 64);
    assert!(err.contains("broken.toml:8:1:"), "{err}");
    assert!(err.contains("unknown field `upstreams`"), "{err}");
    assert!(err.contains("hint:"), "{err}");
}

#[test]
fn check_refuses_a_missing_allow_list_and_bad_values() {
    let (code, _, err) = check(&GOOD.replace("allow = [\"10.0.0.0/8\"]\n", ""));
    assert_eq!(code, 64);
    assert!(
        err.contains("no `allow` list") && err.contains("0.0.0.0/0"),
        "{err}"
    );
    let (code, _, err) = check(&GOOD.replace("action = \"allow\"", "action = \"maybe\""));
    assert_eq!(code, 64);
    assert!(err.contains("broken.toml:15:10:"), "{err}");
    let (code, _, err) = check(&GOOD.replace("/app/system-settings*", "app/system"));
    assert_eq!(code, 64);
    assert!(err.contains("must start with '/'"), "{err}");
    let (code, _, err) = check("this is not toml");
    assert_eq!(code, 64);
    assert!(err.contains("broken.toml:1:"), "{err}");
}

#[test]
fn check_bounds_the_worker_count() {
    let (code, _, err) = check(&GOOD.replacen("[listen]\n", "[listen]\nworkers = 5000\n", 1));
    assert_eq!(code, 64);
    assert!(err.contains("broken.toml:2:11:"), "{err}");
    assert!(
        err.contains("at most 1024") && err.contains("hint:"),
        "{err}"
    );
    let (code, out, err) = check(&GOOD.replacen("[listen]\n", "[listen]\nworkers = 4\n", 1));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("https 127.0.0.1:0 (4 workers)"), "{out}");
}

#[test]
fn check_refuses_missing_certificate_files() {
    let (code, _, err) = check(&GOOD.replace(
        "tls = \"self-signed\"",
        "tls = { cert = \"/nonexistent/x.pem\", key = \"/nonexistent/x.key\" }",
    ));
    assert_eq!(code, 64);
    assert!(err.contains("/nonexistent/x.pem"), "{err}");
}

#[test]
fn bad_usage_exits_64() {
    let out = Command::new(bin()).arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let out = Command::new(bin())
        .args(["check", "--help"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn explain_shows_site_rule_and_decision() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, GOOD).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(bin())
            .arg("explain")
            .arg("--config")
            .arg(&path)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = run(&[
        "GET",
        "https://erp.example.com/app/System-Settings",
        "--ip",
        "10.20.1.1",
    ]);
    // The rule lets the network through; System Settings is an admin screen,
    // so a step-up grant is still needed.
    assert!(
        out.contains("site: erp") && out.contains("rule #1") && out.contains("decision: step-up"),
        "{out}"
    );
    let out = run(&[
        "GET",
        "https://erp.example.com/%61pp/system-settings",
        "--ip",
        "10.1.1.1",
    ]);
    assert!(out.contains("decision: deny → HTTP 403"), "{out}");
    let out = run(&[
        "GET",
        "https://erp.example.com/app",
        "--ip",
        "10.1.1.1",
        "-H",
        "X-Forwarded-For: 192.0.2.1",
    ]);
    assert!(
        out.contains("client: 10.1.1.1") && out.contains("X-Forwarded-For ignored"),
        "{out}"
    );
    let out = run(&[
        "GET",
        "https://erp.example.com/app%2fsystem-settings",
        "--ip",
        "10.1.1.1",
    ]);
    assert!(out.contains("HTTP 400"), "{out}");
}

#[tokio::test]
async fn audit_verify_detects_an_edited_line() {
    let ca = Arc::new(Ca::new());
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let (c, k, _) = ca.leaf(dir.path(), "a", &["a.test"]);
    let mut config = base_config(dir.path(), "");
    config += &site(
        "a",
        &["a.test"],
        &up.url(),
        &c,
        &k,
        "allow = [\"10.0.0.0/8\"]",
    );
    let gw = Gateway::start(ca, dir, &config);
    for i in 0..5 {
        let r = gw
            .raw(
                "a.test",
                &format!("GET /p{i} HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"),
            )
            .await;
        assert_eq!(r.status, 403);
    }
    let path = gw.audit_path();
    let _dir_keepalive = gw.dir.path().to_path_buf();
    let cfg = gw.config.clone();
    let (status, gw) = tokio::task::spawn_blocking(move || {
        let status = Command::new(bin())
            .args(["audit", "verify", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        (status, gw)
    })
    .await
    .unwrap();
    assert_eq!(
        status.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.lines().count() >= 6);
    // Hide one denial: rewrite the client address on line 3.
    let edited: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 2 {
                l.replace("127.0.0.1", "127.0.0.2")
            } else {
                l.to_owned()
            }
        })
        .collect();
    std::fs::write(&path, edited.join("\n") + "\n").unwrap();
    let out = Command::new(bin())
        .args(["audit", "verify", "--path"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("line 3") && stdout.contains("altered"),
        "{stdout}"
    );
    drop(gw);
}
