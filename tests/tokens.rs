//! Gateway-issued API tokens in front of the ERPNext and Akaunting emulators:
//! scopes in ERP terms, credential injection, expiry, networks, rate,
//! revocation and rotation seen by a running gateway, abuse lockout, the
//! access report, and no secret in any log.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::step_up::cli;
use crate::support::{Ca, Gateway, RawResponse, base_config};

/// ERPNext's emulator takes key `k1`, secret `s1` (user Administrator).
const ERP_CRED: &str = "token k1:s1";
/// Akaunting's emulator takes the admin's e-mail and password over Basic.
const AK_CRED: &str = "Basic YWRtaW5AY29tcGFueS5jb206YWRtaW4tcGFzcw==";

fn start(app: &str, upstream: &str, credential: &str, extra: &str) -> Gateway {
    let ca = Arc::new(Ca::new());
    let dir = tempfile::tempdir().unwrap();
    let (c, k, _) = ca.leaf(dir.path(), "erp", &["erp.test"]);
    let cred_file = dir.path().join("sync.auth");
    std::fs::write(&cred_file, format!("{credential}\n")).unwrap();
    let site = format!(
        "[site.login]\nper_ip = \"1000/min\"\n[site.credentials.sync]\nauthorization_file = \"{}\"\n{extra}",
        cred_file.display()
    );
    let config =
        base_config(dir.path(), "") + &crate::login::app_site(app, upstream, &c, &k, &site);
    Gateway::start(ca, dir, &config)
}

/// `erpguard token create ...`; returns the printed token.
fn create(gw: &Gateway, args: &[&str]) -> String {
    let mut all = vec![
        "token",
        "create",
        "--site",
        "erp",
        "--name",
        "sync",
        "--credential",
        "sync",
    ];
    all.extend_from_slice(args);
    let (code, out, err) = cli(gw.dir.path(), &gw.config, &all);
    assert_eq!(code, 0, "{out}{err}");
    out.lines()
        .find(|l| l.starts_with("eg_"))
        .expect("the token is printed")
        .to_owned()
}

fn id_of(token: &str) -> String {
    token.split('_').nth(1).unwrap().to_owned()
}

fn req(method: &str, path: &str, token: &str, extra: &str, body: &str) -> String {
    let auth = match token {
        "" => String::new(),
        t => format!("Authorization: Bearer {t}\r\n"),
    };
    let ctype = match body.starts_with('{') {
        true => "Content-Type: application/json\r\n",
        false if body.is_empty() => "",
        false => "Content-Type: application/x-www-form-urlencoded\r\n",
    };
    format!(
        "{method} {path} HTTP/1.1\r\nHost: erp.test\r\n{auth}{ctype}{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn missing(r: &RawResponse) -> String {
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
    v["missing_scope"].as_str().unwrap_or("").to_owned()
}

mod erpnext {
    use super::*;
    use crate::support::erpnext::Emulator;

    #[tokio::test]
    async fn a_scoped_token_reaches_its_doctype_with_the_injected_credential_only() {
        let emu = Emulator::start().await;
        let gw = start("erpnext", &emu.url(), ERP_CRED, "");
        let token = create(&gw, &["--scope", "Item:read"]);
        let r = gw
            .raw(
                "erp.test",
                &req("GET", "/api/resource/Item", &token, "", ""),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(
            r.body.contains("Administrator"),
            "ERPNext saw the injected user: {}",
            r.body
        );
        let seen = emu.requests();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].header_values("authorization"), vec![ERP_CRED]);
        assert!(
            !format!("{:?}", seen[0]).contains(&token),
            "the token never goes upstream"
        );
        let get_list = req(
            "POST",
            "/api/method/frappe.client.get_list",
            &token,
            "",
            "doctype=Item&fields=%5B%22name%22%5D",
        );
        assert_eq!(gw.raw("erp.test", &get_list).await.status, 200);
    }

    #[tokio::test]
    async fn a_token_in_the_configured_header_works_and_is_removed() {
        let emu = Emulator::start().await;
        let gw = start(
            "erpnext",
            &emu.url(),
            ERP_CRED,
            "[site.api]\ntoken_header = \"X-ERPGuard-Token\"\n",
        );
        let token = create(&gw, &["--scope", "Item:read"]);
        let extra = format!("X-ERPGuard-Token: {token}\r\n");
        let r = gw
            .raw(
                "erp.test",
                &req("GET", "/api/resource/Item", "", &extra, ""),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let seen = &emu.requests()[0];
        assert_eq!(seen.header_values("authorization"), vec![ERP_CRED]);
        assert!(
            seen.header("x-erpguard-token").is_none(),
            "the token header is removed"
        );
    }

    #[tokio::test]
    async fn the_same_token_is_refused_on_other_doctypes_by_rest_form_json_and_cmd() {
        let emu = Emulator::start().await;
        let gw = start("erpnext", &emu.url(), ERP_CRED, "");
        let token = create(&gw, &["--scope", "Item:read"]);
        let cases = [
            (
                "REST",
                req("GET", "/api/resource/User", &token, "", ""),
                "User:read",
            ),
            (
                "form",
                req(
                    "POST",
                    "/api/method/frappe.client.set_value",
                    &token,
                    "",
                    "doctype=User&name=x&fieldname=enabled&value=0",
                ),
                "User:write",
            ),
            (
                "JSON",
                req(
                    "POST",
                    "/api/method/frappe.client.set_value",
                    &token,
                    "",
                    r#"{"doctype":"User","name":"x","fieldname":"enabled","value":0}"#,
                ),
                "User:write",
            ),
            (
                "cmd over a read path",
                req(
                    "POST",
                    "/api/method/frappe.client.get_list?cmd=frappe.client.set_value",
                    &token,
                    "",
                    "doctype=Item&name=x&fieldname=disabled&value=1",
                ),
                "Item:write",
            ),
            (
                "write on its own DocType",
                req("PUT", "/api/resource/Item/ITEM-1", &token, "", "{}"),
                "Item:write",
            ),
        ];
        for (what, request, want) in cases {
            let r = gw.raw("erp.test", &request).await;
            assert_eq!(r.status, 403, "{what}: {}", r.body);
            assert_eq!(missing(&r), want, "{what}");
        }
        assert!(
            emu.requests().is_empty(),
            "nothing out of scope reached ERPNext"
        );
        let denied = gw
            .audit_lines()
            .into_iter()
            .filter(|l| l["event"] == "token_denied" && l["token_id"] == id_of(&token))
            .count();
        assert_eq!(denied, 5);
    }

    #[tokio::test]
    async fn expiry_networks_and_rate_are_enforced() {
        let emu = Emulator::start().await;
        let gw = start("erpnext", &emu.url(), ERP_CRED, "");
        let get = |t: &str| req("GET", "/api/resource/Item", t, "", "");
        let short = create(&gw, &["--scope", "Item:read", "--expires", "1s"]);
        assert_eq!(gw.raw("erp.test", &get(&short)).await.status, 200);
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let r = gw.raw("erp.test", &get(&short)).await;
        assert_eq!(r.status, 401, "expired: {}", r.body);
        assert!(r.header("www-authenticate").is_some());

        let fenced = create(&gw, &["--scope", "Item:read", "--allow", "127.0.0.2/32"]);
        let outside: IpAddr = "127.0.0.1".parse().unwrap();
        let inside: IpAddr = "127.0.0.2".parse().unwrap();
        assert_eq!(
            gw.raw_from(outside, "erp.test", &get(&fenced)).await.status,
            403
        );
        assert_eq!(
            gw.raw_from(inside, "erp.test", &get(&fenced)).await.status,
            200
        );

        let slow = create(&gw, &["--scope", "Item:read", "--rate", "2/min"]);
        for _ in 0..2 {
            assert_eq!(gw.raw("erp.test", &get(&slow)).await.status, 200);
        }
        let r = gw.raw("erp.test", &get(&slow)).await;
        assert_eq!(r.status, 429);
        assert!(r.header("retry-after").is_some());
    }

    #[tokio::test]
    async fn a_cli_revocation_is_enforced_by_the_running_gateway_within_a_second() {
        let emu = Emulator::start().await;
        let gw = start("erpnext", &emu.url(), ERP_CRED, "");
        let token = create(&gw, &["--scope", "Item:read"]);
        let get = req("GET", "/api/resource/Item", &token, "", "");
        assert_eq!(gw.raw("erp.test", &get).await.status, 200);
        let (code, _, err) = cli(
            gw.dir.path(),
            &gw.config,
            &["token", "revoke", &id_of(&token)],
        );
        assert_eq!(code, 0, "{err}");
        let revoked_at = Instant::now();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let r = gw.raw("erp.test", &get).await;
        assert_eq!(
            r.status,
            401,
            "refused {:?} after the CLI returned",
            revoked_at.elapsed()
        );
        let audit = gw.audit_lines();
        assert!(audit.iter().any(|l| l["event"] == "token_revoked"));
        assert!(
            audit
                .iter()
                .any(|l| l["event"] == "token_denied" && l["reason"] == "revoked token")
        );
    }

    #[tokio::test]
    async fn rotation_overlap_works_and_ends() {
        let emu = Emulator::start().await;
        let gw = start("erpnext", &emu.url(), ERP_CRED, "");
        let old = create(&gw, &["--scope", "Item:read"]);
        let (code, out, err) = cli(
            gw.dir.path(),
            &gw.config,
            &["token", "rotate", &id_of(&old), "--overlap", "2s"],
        );
        assert_eq!(code, 0, "{err}");
        let new = out
            .lines()
            .find(|l| l.starts_with("eg_"))
            .unwrap()
            .to_owned();
        assert_eq!(id_of(&new), id_of(&old), "same token, new secret");
        assert_ne!(new, old);
        tokio::time::sleep(Duration::from_millis(600)).await;
        let get = |t: &str| req("GET", "/api/resource/Item", t, "", "");
        assert_eq!(
            gw.raw("erp.test", &get(&old)).await.status,
            200,
            "old secret in the overlap"
        );
        assert_eq!(gw.raw("erp.test", &get(&new)).await.status, 200);
        tokio::time::sleep(Duration::from_millis(2000)).await;
        assert_eq!(
            gw.raw("erp.test", &get(&old)).await.status,
            401,
            "overlap over"
        );
        assert_eq!(gw.raw("erp.test", &get(&new)).await.status, 200);
    }

    #[tokio::test]
    async fn invalid_tokens_lock_the_address_and_direct_credentials_are_refused() {
        let emu = Emulator::start().await;
        let gw = start("erpnext", &emu.url(), ERP_CRED, "");
        let good = create(&gw, &["--scope", "Item:read"]);
        let (id, _) = good.trim_start_matches("eg_").split_once('_').unwrap();
        for i in 0..10 {
            let forged = format!("eg_{id}_{i:0>43}");
            let r = gw
                .raw(
                    "erp.test",
                    &req("GET", "/api/resource/Item", &forged, "", ""),
                )
                .await;
            assert_eq!(r.status, 401);
        }
        let r = gw
            .raw("erp.test", &req("GET", "/api/resource/Item", &good, "", ""))
            .await;
        assert_eq!(r.status, 429, "the address is locked out: {}", r.body);
        let audit = gw.audit_lines();
        assert_eq!(
            audit
                .iter()
                .filter(|l| l["event"] == "token_abuse_locked")
                .count(),
            1
        );
        assert!(emu.requests().is_empty());

        let direct = "GET /api/resource/Item HTTP/1.1\r\nHost: erp.test\r\nAuthorization: token k1:s1\r\nConnection: close\r\n\r\n";
        let gw = start("erpnext", &emu.url(), ERP_CRED, "");
        let r = gw.raw("erp.test", direct).await;
        assert_eq!(r.status, 401, "{}", r.body);
        assert!(r.body.contains("Bearer eg_"), "{}", r.body);
        assert!(
            emu.requests().is_empty(),
            "the app's own credential never reached it"
        );
    }

    #[tokio::test]
    async fn report_shows_use_and_no_secret_reaches_any_log() {
        let emu = Emulator::start().await;
        let gw = start("erpnext", &emu.url(), ERP_CRED, "");
        let token = create(
            &gw,
            &[
                "--scope",
                "Item:read",
                "--owner",
                "ops@example.com",
                "--expires",
                "3d",
            ],
        );
        for _ in 0..3 {
            let r = gw
                .raw(
                    "erp.test",
                    &req("GET", "/api/resource/Item", &token, "", ""),
                )
                .await;
            assert_eq!(r.status, 200);
        }
        let _ = gw
            .raw(
                "erp.test",
                &req("GET", "/api/resource/User", &token, "", ""),
            )
            .await;
        // Uses are written in batches (every 5 s): wait for one.
        let deadline = Instant::now() + Duration::from_secs(10);
        let row = loop {
            let (code, out, err) = cli(
                gw.dir.path(),
                &gw.config,
                &["report", "--json", "--expiring", "7d"],
            );
            assert_eq!(code, 0, "{err}");
            let row: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
            if row["uses"] == 3 || Instant::now() > deadline {
                break row;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        assert_eq!(row["uses"], 3, "{row}");
        assert!(row["last_used"].is_string(), "{row}");
        assert_eq!(row["owner"], "ops@example.com");
        assert_eq!(row["flags"], serde_json::json!(["expiring"]));
        let (_, text, _) = cli(gw.dir.path(), &gw.config, &["report"]);
        assert!(
            text.contains(&id_of(&token)) && text.contains("expiring"),
            "{text}"
        );
        let audit = std::fs::read_to_string(gw.audit_path()).unwrap();
        assert!(
            audit.contains("\"token_used\""),
            "aggregated use is audited"
        );
        // eg_<id>_<secret>: the secret is base64url and may itself hold '_'.
        let secret = token.splitn(3, '_').nth(2).unwrap();
        for text in [audit, gw.log_text()] {
            for needle in [token.as_str(), secret, "k1:s1", ERP_CRED] {
                assert!(!text.contains(needle), "{needle} leaked");
            }
        }
    }
}

mod akaunting {
    use super::*;
    use crate::support::akaunting::Emulator;

    #[tokio::test]
    async fn resources_and_company_scoping_hold() {
        let emu = Emulator::start().await;
        let gw = start("akaunting", &emu.url(), AK_CRED, "");
        let token = create(&gw, &["--scope", "items:read", "--scope", "company:1"]);
        let ok = gw
            .raw(
                "erp.test",
                &req("GET", "/api/items?company_id=1", &token, "", ""),
            )
            .await;
        assert_eq!(ok.status, 200, "{}", ok.body);
        assert_eq!(
            emu.requests()[0].header_values("authorization"),
            vec![AK_CRED]
        );
        let header = gw
            .raw(
                "erp.test",
                &req("GET", "/api/items", &token, "X-Company: 1\r\n", ""),
            )
            .await;
        assert_eq!(header.status, 200);
        for (path, extra, want) in [
            ("/api/items?company_id=2", "", "company:2"),
            ("/api/items", "", "company:(none)"),
            ("/api/items", "X-Company: 2\r\n", "company:2"),
            ("/api/users?company_id=1", "", "users:read"),
        ] {
            let r = gw
                .raw("erp.test", &req("GET", path, &token, extra, ""))
                .await;
            assert_eq!(r.status, 403, "{path}");
            assert_eq!(missing(&r), want, "{path}");
        }
        let write = gw
            .raw(
                "erp.test",
                &req(
                    "POST",
                    "/api/items?company_id=1",
                    &token,
                    "",
                    r#"{"name":"x"}"#,
                ),
            )
            .await;
        assert_eq!(missing(&write), "items:write");
        assert_eq!(emu.requests().len(), 2);
        let direct = format!(
            "GET /api/items HTTP/1.1\r\nHost: erp.test\r\nAuthorization: {AK_CRED}\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(gw.raw("erp.test", &direct).await.status, 401);
    }
}

mod operator {
    use super::*;
    use crate::support::erpnext::Emulator;

    #[tokio::test]
    async fn check_refuses_literal_secrets_and_explain_applies_a_tokens_scope() {
        let emu = Emulator::start().await;
        let gw = start("erpnext", &emu.url(), ERP_CRED, "");
        let token = create(&gw, &["--scope", "Item:read"]);
        let explain = |path: &str| {
            let (code, out, err) = cli(
                gw.dir.path(),
                &gw.config,
                &[
                    "explain",
                    "GET",
                    &format!("https://erp.test{path}"),
                    "--ip",
                    "127.0.0.1",
                    "--header",
                    &format!("Authorization: Bearer {token}"),
                ],
            );
            assert_eq!(code, 0, "{err}");
            out
        };
        assert!(explain("/api/resource/Item").contains("decision: token-scoped"));
        assert!(explain("/api/resource/User").contains("needs User:read"));

        let text = std::fs::read_to_string(&gw.config).unwrap();
        let literal = text.replace(
            "[site.credentials.sync]\n",
            "[site.credentials.sync]\nauthorization = \"token k1:s1\"\n",
        );
        let path = gw.dir.path().join("literal.toml");
        std::fs::write(&path, literal).unwrap();
        let (code, out, err) = cli(gw.dir.path(), &path, &["check"]);
        assert_eq!(code, 64, "{out}");
        assert!(err.contains("literal secret"), "{err}");
        assert!(
            !err.contains("k1:s1"),
            "the error does not echo the secret: {err}"
        );

        let generic = text
            .replace("app = \"erpnext\"", "app = \"generic\"")
            .replace("[site.login]\nper_ip = \"1000/min\"\n", "")
            + "\n[[site.rule]]\npaths = [\"/admin*\"]\naction = \"step_up\"\n";
        std::fs::write(&path, generic).unwrap();
        let (code, _, err) = cli(gw.dir.path(), &path, &["check"]);
        assert_eq!(code, 64);
        assert!(err.contains("login guard is off"), "{err}");
    }
}
