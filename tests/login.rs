//! Login protection in front of faithful emulators of ERPNext and Akaunting
//! (tests/support/erpnext.rs, akaunting.rs): lockout, atomic counting, uniform
//! failures, restart persistence, honest client IPs, device cookies, API limits.

use std::net::IpAddr;
use std::sync::Arc;

use crate::support::{Ca, Gateway, RawResponse, base_config};

/// The login policy used here: the per-IP rate is high so that the lockout is
/// what the tests see, unless a test sets its own.
const POLICY: &str = "[site.login]\nper_ip = \"1000/min\"\nlockout_after = 5\nuser_lockout_after = 8\napi_lockout_after = 10\n";

/// Lets clients send the app's own API credentials (refused by default).
const DIRECT: &str = "[site.api]\nallow_direct_credentials = true\n";

pub fn app_site(
    app: &str,
    upstream: &str,
    cert: &std::path::Path,
    key: &std::path::Path,
    login: &str,
) -> String {
    format!(
        "\n[[site]]\nname = \"erp\"\nhosts = [\"erp.test\"]\napp = \"{app}\"\nupstream = \"{upstream}\"\n\
tls = {{ cert = \"{}\", key = \"{}\" }}\nallow = \"off\"\n\n{login}\n",
        cert.display(),
        key.display()
    )
}

fn start(app: &str, upstream: &str, login: &str) -> Gateway {
    let ca = Arc::new(Ca::new());
    let dir = tempfile::tempdir().unwrap();
    let (c, k, _) = ca.leaf(dir.path(), "erp", &["erp.test"]);
    let config = base_config(dir.path(), "") + &app_site(app, upstream, &c, &k, login);
    Gateway::start(ca, dir, &config)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn form(method: &str, path: &str, body: &str, extra: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: erp.test\r\nContent-Type: application/x-www-form-urlencoded\r\n\
Content-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    )
}

fn json(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: erp.test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn erp_login(user: &str, pwd: &str) -> String {
    form(
        "POST",
        "/api/method/login",
        &format!("usr={user}&pwd={pwd}"),
        "",
    )
}

/// Status, headers without Date/X-Request-Id, and body: what must be identical.
fn comparable(r: &RawResponse) -> String {
    let head: Vec<&str> = r
        .head
        .lines()
        .filter(|l| {
            !l.to_ascii_lowercase().starts_with("date:")
                && !l.to_ascii_lowercase().starts_with("x-request-id:")
        })
        .collect();
    format!("{}\n\n{}", head.join("\n"), r.body)
}

mod erpnext {
    use super::*;
    use crate::support::erpnext::Emulator;

    #[tokio::test]
    async fn n_wrong_passwords_lock_and_the_next_never_reaches_the_app() {
        let emu = Emulator::start().await;
        let gw = start("erpnext", &emu.url(), POLICY);
        for _ in 0..5 {
            assert_eq!(
                gw.raw("erp.test", &erp_login("alice@example.com", "wrong"))
                    .await
                    .status,
                401
            );
        }
        let locked = gw
            .raw("erp.test", &erp_login("alice@example.com", "alice-pass"))
            .await;
        assert_eq!(locked.status, 429, "{}", locked.body);
        assert!(locked.header("retry-after").is_some());
        assert_eq!(
            emu.login_attempts().len(),
            5,
            "the 6th attempt must not reach ERPNext"
        );
        let audit = gw.audit_lines();
        assert!(
            audit
                .iter()
                .any(|l| l["event"] == "login_locked" && l["user"] == "alice@example.com")
        );
        assert!(audit.iter().any(|l| l["event"] == "login_blocked"));
        assert_eq!(
            audit
                .iter()
                .filter(|l| l["event"] == "login_failed")
                .count(),
            5
        );
    }

    #[tokio::test]
    async fn fifty_parallel_guesses_never_exceed_the_limit() {
        let emu = Emulator::start().await;
        let gw = Arc::new(start("erpnext", &emu.url(), POLICY));
        let mut tasks = Vec::new();
        for i in 0..50 {
            let gw = gw.clone();
            tasks.push(tokio::spawn(async move {
                gw.raw(
                    "erp.test",
                    &erp_login("Administrator", &format!("guess{i}")),
                )
                .await
                .status
            }));
        }
        let mut statuses = Vec::new();
        for t in tasks {
            statuses.push(t.await.unwrap());
        }
        let reached = emu.login_attempts().len();
        assert!(
            reached <= 5,
            "{reached} guesses reached ERPNext; statuses {statuses:?}"
        );
        assert_eq!(statuses.iter().filter(|&&s| s == 429).count(), 50 - reached);
    }

    #[tokio::test]
    async fn unknown_user_and_wrong_password_answers_are_identical() {
        let emu = Emulator::start().await;
        let gw = start("erpnext", &emu.url(), POLICY);
        let unknown = gw
            .raw("erp.test", &erp_login("nobody@example.com", "x"))
            .await;
        let wrong = gw
            .raw("erp.test", &erp_login("alice@example.com", "x"))
            .await;
        assert_eq!(unknown.status, 401);
        assert_eq!(comparable(&unknown), comparable(&wrong));
        assert!(!wrong.body.contains("Traceback"), "{}", wrong.body);
        // Straight from the emulator the two differ (the reason for normalising).
        assert_eq!(emu.login_attempts().len(), 2);
    }

    #[tokio::test]
    async fn every_login_form_is_counted() {
        let emu = Emulator::start().await;
        let gw = start("erpnext", &emu.url(), POLICY);
        let u = "alice@example.com";
        let forms = [
            form("POST", "/", &format!("cmd=login&usr={u}&pwd=a"), ""),
            format!(
                "GET /?cmd=login&usr={u}&pwd=b HTTP/1.1\r\nHost: erp.test\r\nConnection: close\r\n\r\n"
            ),
            json(
                "/api/method/login",
                &format!(r#"{{"usr":"{u}","pwd":"c"}}"#),
            ),
            json("/", &format!(r#"{{"cmd":"login","usr":"{u}","pwd":"d"}}"#)),
            form(
                "POST",
                "/api/method/ping",
                &format!("cmd=login&usr={}&pwd=e", u.to_uppercase()),
                "",
            ),
        ];
        for f in &forms {
            assert_eq!(gw.raw("erp.test", f).await.status, 401, "{f}");
        }
        assert_eq!(emu.login_attempts().len(), 5);
        let r = gw
            .raw(
                "erp.test",
                &form(
                    "POST",
                    "/login",
                    &format!("cmd=login&usr={u}&pwd=alice-pass"),
                    "",
                ),
            )
            .await;
        assert_eq!(r.status, 429, "the five forms counted toward one lock");
        assert_eq!(emu.login_attempts().len(), 5);
    }

    #[tokio::test]
    async fn a_successful_login_resets_and_gets_a_device_cookie() {
        let emu = Emulator::start().await;
        let gw = start("erpnext", &emu.url(), POLICY);
        for _ in 0..4 {
            gw.raw("erp.test", &erp_login("alice@example.com", "wrong"))
                .await;
        }
        let ok = gw
            .raw("erp.test", &erp_login("alice@example.com", "alice-pass"))
            .await;
        assert_eq!(ok.status, 200, "{}", ok.body);
        assert!(ok.head.contains("__Host-erpguard_device="), "{}", ok.head);
        assert!(
            ok.head.contains("sid="),
            "the app's session cookie passes through"
        );
        for _ in 0..4 {
            assert_eq!(
                gw.raw("erp.test", &erp_login("alice@example.com", "wrong"))
                    .await
                    .status,
                401,
                "counter was reset"
            );
        }
        assert!(
            gw.audit_lines()
                .iter()
                .any(|l| l["event"] == "login_ok" && l["user"] == "alice@example.com")
        );
    }

    #[tokio::test]
    async fn spoofed_forwarded_for_neither_dodges_the_rate_nor_locks_another_ip() {
        let emu = Emulator::start().await;
        let policy = "[site.login]\nper_ip = \"5/min\"\nlockout_after = 5\n";
        let gw = start("erpnext", &emu.url(), policy);
        for i in 0..5 {
            let xff = format!("X-Forwarded-For: 203.0.113.{i}\r\n");
            let r = gw
                .raw(
                    "erp.test",
                    &form(
                        "POST",
                        "/api/method/login",
                        "usr=bob@example.com&pwd=x",
                        &xff,
                    ),
                )
                .await;
            assert_eq!(r.status, 401);
        }
        let sixth = form(
            "POST",
            "/api/method/login",
            "usr=carol@example.com&pwd=x",
            "X-Forwarded-For: 198.51.100.77\r\n",
        );
        assert_eq!(
            gw.raw("erp.test", &sixth).await.status,
            429,
            "rotating X-Forwarded-For must not dodge the per-IP rate"
        );
        // The attacker named 127.0.0.9 in its headers; 127.0.0.9 itself is unaffected.
        let victim = gw
            .raw_from(
                ip("127.0.0.9"),
                "erp.test",
                &erp_login("alice@example.com", "alice-pass"),
            )
            .await;
        assert_eq!(victim.status, 200);
        assert!(
            emu.login_attempts()
                .iter()
                .all(|a| a.client_ip.as_deref() != Some("203.0.113.0"))
        );
    }

    #[tokio::test]
    async fn the_device_cookie_keeps_the_owner_in_during_an_attack() {
        let emu = Emulator::start().await;
        let gw = start("erpnext", &emu.url(), POLICY);
        let owner = ip("127.0.0.2");
        let ok = gw
            .raw_from(
                owner,
                "erp.test",
                &erp_login("alice@example.com", "alice-pass"),
            )
            .await;
        let cookie = ok
            .head
            .lines()
            .find_map(|l| {
                l.strip_prefix("set-cookie: __Host-erpguard_device=")
                    .map(|v| v.split(';').next().unwrap().to_owned())
            })
            .expect("device cookie");
        // An attack from many addresses until the account is locked for unknown browsers.
        for i in 0..8u8 {
            let src = ip(&format!("127.0.1.{}", 10 + i));
            gw.raw_from(src, "erp.test", &erp_login("alice@example.com", "guess"))
                .await;
        }
        let stranger = gw
            .raw_from(
                ip("127.0.1.99"),
                "erp.test",
                &erp_login("alice@example.com", "alice-pass"),
            )
            .await;
        assert_eq!(
            stranger.status, 429,
            "the account is locked for browsers without its device cookie"
        );
        let without = gw
            .raw_from(
                owner,
                "erp.test",
                &erp_login("alice@example.com", "alice-pass"),
            )
            .await;
        assert_eq!(without.status, 429);
        let header = format!("Cookie: __Host-erpguard_device={cookie}\r\n");
        let with = gw
            .raw_from(
                owner,
                "erp.test",
                &form(
                    "POST",
                    "/api/method/login",
                    "usr=alice@example.com&pwd=alice-pass",
                    &header,
                ),
            )
            .await;
        assert_eq!(
            with.status, 200,
            "the owner's known browser still logs in: {}",
            with.body
        );
    }

    #[tokio::test]
    async fn the_lockout_survives_a_restart() {
        let emu = Emulator::start().await;
        let gw = start("erpnext", &emu.url(), POLICY);
        for _ in 0..5 {
            gw.raw("erp.test", &erp_login("alice@example.com", "wrong"))
                .await;
        }
        let (ca, config) = (gw.ca.clone(), std::fs::read_to_string(&gw.config).unwrap());
        let (status, dir) = tokio::task::spawn_blocking(move || gw.stop_keeping_dir())
            .await
            .unwrap();
        assert!(status.success());
        let gw = Gateway::start(ca, dir, &config);
        let r = gw
            .raw("erp.test", &erp_login("alice@example.com", "alice-pass"))
            .await;
        assert_eq!(r.status, 429, "the lock must survive the restart");
        assert_eq!(emu.login_attempts().len(), 5);
    }

    #[tokio::test]
    async fn api_credential_failures_are_limited_per_ip() {
        let emu = Emulator::start().await;
        let gw = start("erpnext", &emu.url(), &format!("{POLICY}{DIRECT}"));
        for i in 0..10 {
            let r = gw.raw("erp.test", &format!("GET /api/resource/Item HTTP/1.1\r\nHost: erp.test\r\nAuthorization: token k1:bad{i}\r\nConnection: close\r\n\r\n")).await;
            assert_eq!(r.status, 401);
        }
        let r = gw.raw("erp.test", "GET /api/resource/Item HTTP/1.1\r\nHost: erp.test\r\nAuthorization: token k1:s1\r\nConnection: close\r\n\r\n").await;
        assert_eq!(r.status, 429);
        assert_eq!(emu.login_attempts().len(), 10);
        let other = gw.raw_from(ip("127.0.0.3"), "erp.test", "GET /api/resource/Item HTTP/1.1\r\nHost: erp.test\r\nAuthorization: token k1:s1\r\nConnection: close\r\n\r\n").await;
        assert_eq!(other.status, 200, "another client is unaffected");
    }

    #[tokio::test]
    async fn account_oracles_are_rate_limited() {
        let emu = Emulator::start().await;
        let gw = start(
            "erpnext",
            &emu.url(),
            "[site.login]\noracle_per_ip = \"3/min\"\n",
        );
        let reset = form(
            "POST",
            "/api/method/frappe.core.doctype.user.user.reset_password",
            "user=someone@example.com",
            "",
        );
        for _ in 0..3 {
            assert_ne!(gw.raw("erp.test", &reset).await.status, 429);
        }
        let r = gw.raw("erp.test", &reset).await;
        assert_eq!(
            r.status, 429,
            "the fourth probe of the enumeration oracle is refused"
        );
        assert!(r.header("retry-after").is_some());
        let via_cmd = form(
            "POST",
            "/",
            "cmd=frappe.core.doctype.user.user.reset_password&user=x@example.com",
            "",
        );
        assert_eq!(
            gw.raw("erp.test", &via_cmd).await.status,
            429,
            "cmd on another path is the same oracle"
        );
    }

    #[tokio::test]
    async fn second_factor_and_expired_password_answers_pass_through() {
        let emu = Emulator::start().await;
        let gw = start("erpnext", &emu.url(), POLICY);
        let otp = gw
            .raw("erp.test", &erp_login("otp@example.com", "otp-pass"))
            .await;
        assert_eq!(otp.status, 200);
        assert!(otp.body.contains("tmp_id"), "{}", otp.body);
        let expired = gw
            .raw(
                "erp.test",
                &erp_login("expired@example.com", "expired-pass"),
            )
            .await;
        assert_eq!(expired.status, 200);
        assert!(expired.body.contains("Password Reset"), "{}", expired.body);
        assert!(
            !otp.head.contains("erpguard_device") && !expired.head.contains("erpguard_device"),
            "no device cookie before a real login"
        );
        let audit = gw.audit_lines();
        assert!(
            audit
                .iter()
                .any(|l| l["event"] == "login_second_factor_pending"
                    && l["user"] == "otp@example.com")
        );
        assert!(
            audit
                .iter()
                .any(|l| l["event"] == "login_password_expired"
                    && l["user"] == "expired@example.com")
        );
    }

    #[tokio::test]
    async fn tracebacks_are_scrubbed_for_anonymous_clients() {
        let emu = Emulator::start().await;
        let gw = start("erpnext", &emu.url(), POLICY);
        let r = gw
            .raw(
                "erp.test",
                "GET /api/method/boom HTTP/1.1\r\nHost: erp.test\r\nConnection: close\r\n\r\n",
            )
            .await;
        assert!(r.status >= 500);
        assert!(
            !r.body.contains("Traceback") && !r.body.contains("\"exc\""),
            "{}",
            r.body
        );
    }
}

mod akaunting {
    use super::*;
    use crate::support::akaunting::Emulator;

    /// A browser's login: fetch the form (session cookie and CSRF token), then
    /// post it as multipart, the way Akaunting's own front end does.
    async fn login(gw: &Gateway, email: &str, password: &str) -> RawResponse {
        login_from(gw, ip("127.0.0.1"), email, password, "").await
    }

    /// The same, from a chosen source address and with extra request headers.
    async fn login_from(
        gw: &Gateway,
        src: IpAddr,
        email: &str,
        password: &str,
        extra: &str,
    ) -> RawResponse {
        let page = gw
            .raw_from(
                src,
                "erp.test",
                "GET /auth/login HTTP/1.1\r\nHost: erp.test\r\nConnection: close\r\n\r\n",
            )
            .await;
        let session = page
            .head
            .lines()
            .find_map(|l| {
                l.strip_prefix("set-cookie: akaunting_session=")
                    .map(|v| v.split(';').next().unwrap().to_owned())
            })
            .expect("session cookie");
        let token = page
            .body
            .split("name=\"_token\" value=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("token");
        gw.raw_from(
            src,
            "erp.test",
            &login_request(&session, token, email, password, extra),
        )
        .await
    }

    fn login_request(
        session: &str,
        token: &str,
        email: &str,
        password: &str,
        extra: &str,
    ) -> String {
        let boundary = "----erpguardtest";
        let part = |name: &str, value: &str| {
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
        };
        let body = [
            part("_token", token),
            part("_method", "POST"),
            part("email", email),
            part("password", password),
            part("remember", ""),
        ]
        .concat()
            + &format!("--{boundary}--\r\n");
        format!(
            "POST /auth/login HTTP/1.1\r\nHost: erp.test\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n\
Cookie: akaunting_session={session}\r\nX-Requested-With: XMLHttpRequest\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    #[tokio::test]
    async fn http_200_failures_are_counted_and_lock() {
        let emu = Emulator::start().await;
        let gw = start("akaunting", &emu.url(), POLICY);
        for _ in 0..5 {
            let r = login(&gw, "admin@company.com", "wrong").await;
            assert_eq!(r.status, 200);
            assert!(r.body.contains("\"success\":false"), "{}", r.body);
        }
        let r = login(&gw, "admin@company.com", "admin-pass").await;
        assert_eq!(r.status, 429);
        assert_eq!(emu.login_attempts().len(), 5);
    }

    #[tokio::test]
    async fn fifty_parallel_guesses_never_exceed_the_limit() {
        let emu = Emulator::start().await;
        let gw = Arc::new(start("akaunting", &emu.url(), POLICY));
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let gw = gw.clone();
                tokio::spawn(async move {
                    login(&gw, "admin@company.com", &format!("g{i}"))
                        .await
                        .status
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert!(
            emu.login_attempts().len() <= 5,
            "{} reached Akaunting",
            emu.login_attempts().len()
        );
    }

    #[tokio::test]
    async fn failures_look_the_same_for_unknown_disabled_and_wrong() {
        let emu = Emulator::start().await;
        let gw = start("akaunting", &emu.url(), POLICY);
        let unknown = login(&gw, "nobody@company.com", "x").await;
        let wrong = login(&gw, "admin@company.com", "x").await;
        let disabled = login(&gw, "disabled@company.com", "disabled-pass").await;
        assert_eq!(comparable(&unknown), comparable(&wrong));
        assert_eq!(
            comparable(&unknown),
            comparable(&disabled),
            "a disabled account must not be told apart (no rotated cookie)"
        );
        let ok = login(&gw, "admin@company.com", "admin-pass").await;
        assert!(ok.body.contains("\"success\":true"), "{}", ok.body);
        assert!(ok.head.contains("__Host-erpguard_device="));
    }

    #[tokio::test]
    async fn the_lockout_survives_a_restart() {
        let emu = Emulator::start().await;
        let gw = start("akaunting", &emu.url(), POLICY);
        for _ in 0..6 {
            login(&gw, "admin@company.com", "wrong").await;
        }
        let (ca, config) = (gw.ca.clone(), std::fs::read_to_string(&gw.config).unwrap());
        let (status, dir) = tokio::task::spawn_blocking(move || gw.stop_keeping_dir())
            .await
            .unwrap();
        assert!(status.success());
        let gw = Gateway::start(ca, dir, &config);
        assert_eq!(
            login(&gw, "admin@company.com", "admin-pass").await.status,
            429
        );
        assert_eq!(emu.login_attempts().len(), 5);
    }

    #[tokio::test]
    async fn spoofed_forwarded_for_neither_dodges_the_rate_nor_locks_another_ip() {
        let emu = Emulator::start().await;
        let gw = start(
            "akaunting",
            &emu.url(),
            "[site.login]\nper_ip = \"5/min\"\n",
        );
        for i in 0..5 {
            let xff =
                format!("X-Forwarded-For: 203.0.113.{i}\r\nCF-Connecting-IP: 203.0.113.{i}\r\n");
            assert_eq!(
                login_from(&gw, ip("127.0.0.1"), "admin@company.com", "x", &xff)
                    .await
                    .status,
                200
            );
        }
        let sixth = login_from(
            &gw,
            ip("127.0.0.1"),
            "admin@company.com",
            "x",
            "X-Forwarded-For: 127.0.0.9\r\n",
        )
        .await;
        assert_eq!(
            sixth.status, 429,
            "rotating X-Forwarded-For must not dodge the per-IP rate"
        );
        let victim = login_from(&gw, ip("127.0.0.9"), "admin@company.com", "admin-pass", "").await;
        assert!(
            victim.body.contains("\"success\":true"),
            "the address the attacker named is unaffected: {}",
            victim.body
        );
        // Akaunting's own view of the client is the address erpguard saw, never the spoof.
        assert!(emu.login_attempts().iter().all(|a| {
            a.client_ip
                .as_deref()
                .is_none_or(|c| c.starts_with("127.0.0."))
        }));
    }

    #[tokio::test]
    async fn the_device_cookie_keeps_the_owner_in_during_an_attack() {
        let emu = Emulator::start().await;
        let gw = start("akaunting", &emu.url(), POLICY);
        let owner = ip("127.0.0.2");
        let ok = login_from(&gw, owner, "admin@company.com", "admin-pass", "").await;
        let cookie = ok
            .head
            .lines()
            .find_map(|l| {
                l.strip_prefix("set-cookie: __Host-erpguard_device=")
                    .map(|v| v.split(';').next().unwrap().to_owned())
            })
            .expect("device cookie");
        for i in 0..15u8 {
            login_from(
                &gw,
                ip(&format!("127.0.2.{}", 10 + i)),
                "admin@company.com",
                "guess",
                "",
            )
            .await;
        }
        let stranger =
            login_from(&gw, ip("127.0.2.99"), "admin@company.com", "admin-pass", "").await;
        assert_eq!(
            stranger.status, 429,
            "locked for browsers without the device cookie"
        );
        let header = format!("Cookie: __Host-erpguard_device={cookie}\r\n");
        let with = login_from(&gw, owner, "admin@company.com", "admin-pass", &header).await;
        assert!(
            with.body.contains("\"success\":true"),
            "the owner's known browser still logs in: {} {}",
            with.status,
            with.body
        );
    }

    #[tokio::test]
    async fn api_basic_401s_are_limited() {
        let emu = Emulator::start().await;
        let gw = start("akaunting", &emu.url(), &format!("{POLICY}{DIRECT}"));
        use base64::Engine as _;
        for i in 0..10 {
            let cred = base64::engine::general_purpose::STANDARD
                .encode(format!("admin@company.com:bad{i}"));
            let r = gw.raw("erp.test", &format!("GET /api/items HTTP/1.1\r\nHost: erp.test\r\nAuthorization: Basic {cred}\r\nConnection: close\r\n\r\n")).await;
            assert_eq!(r.status, 401);
        }
        let cred = base64::engine::general_purpose::STANDARD.encode("admin@company.com:admin-pass");
        let r = gw.raw("erp.test", &format!("GET /api/items HTTP/1.1\r\nHost: erp.test\r\nAuthorization: Basic {cred}\r\nConnection: close\r\n\r\n")).await;
        assert_eq!(r.status, 429);
    }
}

mod operator {
    use super::*;
    use crate::support::bin;
    use crate::support::erpnext::Emulator;
    use std::process::Command;

    fn cli(gw: &Gateway, args: &[&str]) -> (i32, String) {
        let out = Command::new(bin())
            .args(args)
            .arg("--config")
            .arg(&gw.config)
            .current_dir(gw.dir.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code().unwrap_or(-1), text)
    }

    #[tokio::test]
    async fn explain_shows_a_login_as_login_guarded_with_its_counters() {
        let emu = Emulator::start().await;
        let gw = start("erpnext", &emu.url(), POLICY);
        let (code, out) = cli(
            &gw,
            &[
                "explain",
                "POST",
                "https://erp.test/api/method/ping",
                "--ip",
                "192.0.2.10",
                "-H",
                "Content-Type: application/x-www-form-urlencoded",
                "--body",
                "cmd=login&usr=Alice@Example.com&pwd=x",
            ],
        );
        assert_eq!(code, 0, "{out}");
        assert!(
            out.contains("login guard: Password attempt via cmd=login for alice@example.com"),
            "{out}"
        );
        assert!(
            out.contains("counter user \"alice@example.com\": locked after 8 failures"),
            "{out}"
        );
        assert!(
            out.contains(
                "counter user_ip \"alice@example.com|192.0.2.10\": locked after 5 failures"
            ),
            "{out}"
        );
        assert!(out.contains("decision: login-guarded"), "{out}");
        assert!(
            !out.contains("pwd=x") && !out.contains("\"x\""),
            "explain must not echo the password: {out}"
        );
        let (_, out) = cli(
            &gw,
            &[
                "explain",
                "GET",
                "https://erp.test/app/sales-invoice",
                "--ip",
                "192.0.2.10",
            ],
        );
        assert!(out.contains("decision: allow"), "{out}");
    }

    #[tokio::test]
    async fn lockout_list_and_clear_work_on_a_running_gateway() {
        let emu = Emulator::start().await;
        let gw = start("erpnext", &emu.url(), POLICY);
        for _ in 0..6 {
            gw.raw("erp.test", &erp_login("alice@example.com", "wrong"))
                .await;
        }
        assert_eq!(
            gw.raw("erp.test", &erp_login("alice@example.com", "alice-pass"))
                .await
                .status,
            429
        );
        let (code, out) = cli(&gw, &["lockout", "list"]);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("alice@example.com|127.0.0.1"), "{out}");
        let (code, out) = cli(
            &gw,
            &[
                "lockout",
                "clear",
                "--site",
                "erp",
                "--user",
                "ALICE@example.com",
            ],
        );
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("cleared"), "{out}");
        let r = gw
            .raw("erp.test", &erp_login("alice@example.com", "alice-pass"))
            .await;
        assert_eq!(
            r.status, 200,
            "the running gateway sees the cleared lock at once: {}",
            r.body
        );
        let (code, _) = cli(&gw, &["lockout", "clear", "--site", "nope", "--user", "x"]);
        assert_eq!(code, 64);
        let (_, out) = cli(&gw, &["lockout", "list"]);
        assert!(out.contains("no active lockouts"), "{out}");
        // The CLI's audit line and the gateway's share one intact chain.
        gw.raw("erp.test", &erp_login("alice@example.com", "wrong"))
            .await;
        let audit = gw.audit_lines();
        assert!(
            audit
                .iter()
                .any(|l| l["event"] == "lockout_cleared" && l["user"] == "alice@example.com")
        );
        let (code, out) = cli(&gw, &["audit", "verify"]);
        assert_eq!(code, 0, "{out}");
    }
}
