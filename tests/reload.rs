//! Reload: a valid config changes the rules with no failed in-flight request;
//! an invalid one is refused and the old rules keep serving.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::upstream::Upstream;
use crate::support::{Ca, Gateway, base_config, site};

struct Fixture {
    gw: Gateway,
    _up: Upstream,
    base: String,
}

async fn fixture() -> Fixture {
    let ca = Arc::new(Ca::new());
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let (c, k, _) = ca.leaf(dir.path(), "a", &["a.test"]);
    let mut base = base_config(dir.path(), "");
    base += &site("a", &["a.test"], &up.url(), &c, &k, "allow = \"off\"");
    let gw = Gateway::start(ca, dir, &base);
    Fixture { gw, _up: up, base }
}

const DENY_BLOCKED: &str =
    "\n[[site.rule]]\nname = \"blocked\"\npaths = [\"/blocked*\"]\naction = \"deny\"\n";

async fn status(gw: &Gateway, path: &str) -> u16 {
    gw.get("a.test", path, &[], false).await.status
}

async fn wait_status(gw: &Gateway, path: &str, want: u16) -> bool {
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        if status(gw, path).await == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn sighup_applies_a_new_rule_without_failing_in_flight_requests() {
    let f = fixture().await;
    assert_eq!(status(&f.gw, "/blocked").await, 200);
    // Requests in flight across the reload: slow ones, and a steady stream.
    let mut slow = Vec::new();
    for _ in 0..4 {
        let tls = f.gw.tls("a.test", &[b"h2"]).await.unwrap();
        let req = http::Request::get("https://a.test/slow/1200")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        slow.push(tokio::spawn(crate::support::send(tls, req, true)));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    f.gw.write_config(&(f.base.clone() + DENY_BLOCKED));
    f.gw.signal("HUP");
    let mut steady = Vec::new();
    for _ in 0..40 {
        steady.push(status(&f.gw, "/steady").await);
    }
    assert!(
        wait_status(&f.gw, "/blocked", 403).await,
        "the new rule did not take effect"
    );
    for s in slow {
        assert_eq!(
            s.await.unwrap().status,
            200,
            "an in-flight request failed during reload"
        );
    }
    assert!(
        steady.iter().all(|&s| s == 200),
        "statuses during reload: {steady:?}"
    );
    let audit = f.gw.audit_lines();
    assert!(audit.iter().any(|l| l["event"] == "config_reload_ok"));
}

#[tokio::test]
async fn an_invalid_config_is_refused_and_the_old_rule_keeps_serving() {
    let f = fixture().await;
    f.gw.write_config(&(f.base.clone() + DENY_BLOCKED));
    assert!(
        wait_status(&f.gw, "/blocked", 403).await,
        "file-change reload did not apply the rule"
    );
    // Break it: a bad CIDR.
    f.gw.write_config(
        &(f.base
            .replace("allow = \"off\"", "allow = [\"10.0.0.0/33\"]")
            + DENY_BLOCKED),
    );
    f.gw.signal("HUP");
    assert!(
        f.gw.wait_log("config reload refused", Duration::from_secs(5)),
        "{}",
        f.gw.log_text()
    );
    assert_eq!(
        status(&f.gw, "/blocked").await,
        403,
        "the old rule must keep serving"
    );
    assert_eq!(
        status(&f.gw, "/open").await,
        200,
        "the old allow list must keep serving"
    );
    let audit = f.gw.audit_lines();
    let failed = audit
        .iter()
        .find(|l| l["event"] == "config_reload_failed")
        .expect("config_reload_failed audited");
    assert!(
        failed["reason"].as_str().unwrap().contains("10.0.0.0/33"),
        "{failed}"
    );
}

#[tokio::test]
async fn certificates_reload_when_their_files_change() {
    let f = fixture().await;
    let dir = f.gw.dir.path().to_path_buf();
    let before = f.gw.peer_cert("a.test").await;
    assert_ne!(before, f.gw.ca.der, "sanity: the leaf is not the CA");
    let (_, _, fresh) = f.gw.ca.leaf(&dir, "a", &["a.test"]);
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let now = f.gw.peer_cert("a.test").await;
        if now == fresh {
            break;
        }
        assert!(
            Instant::now() < end,
            "the new certificate was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
