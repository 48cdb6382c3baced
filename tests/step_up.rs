//! Step-up TOTP in front of the ERPNext and Akaunting emulators: which
//! requests are held, who a grant belongs to, the challenge page and its
//! answers, persistence across a restart, logout, and the `totp` CLI.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::support::{Ca, Gateway, RawResponse, base_config, bin};

/// High login rates so that only step-up is under test.
const LOGIN: &str = "[site.login]\nper_ip = \"1000/min\"\n";

fn start(app: &str, upstream: &str, extra: &str) -> Gateway {
    let ca = Arc::new(Ca::new());
    let dir = tempfile::tempdir().unwrap();
    let (c, k, _) = ca.leaf(dir.path(), "erp", &["erp.test"]);
    let config = base_config(dir.path(), "")
        + &crate::login::app_site(app, upstream, &c, &k, &format!("{LOGIN}{extra}"));
    Gateway::start(ca, dir, &config)
}

/// Runs the CLI against the gateway's config, in its directory (where the key file is).
pub fn cli(gw_dir: &Path, config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .current_dir(gw_dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Enrols `user` with the CLI and returns the base32 secret from the printed URI.
pub fn enroll(gw: &Gateway, user: &str) -> String {
    let (code, out, err) = cli(
        gw.dir.path(),
        &gw.config,
        &["totp", "enroll", "--site", "erp", "--user", user, "--no-qr"],
    );
    assert_eq!(code, 0, "{out}{err}");
    secret_of(&out)
}

fn secret_of(text: &str) -> String {
    text.split("secret=")
        .nth(1)
        .and_then(|r| r.split('&').next())
        .expect("otpauth URI with a secret")
        .to_owned()
}

/// The current code for a base32 secret (SHA1, 6 digits, 30 s).
pub fn code(secret: &str) -> String {
    let s = erpguard::totp::Secret::from_base32(secret).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    erpguard::totp::code_at(&s, now, &erpguard::totp::Params::default()).unwrap()
}

/// A cookie jar, as a browser keeps one for the site.
#[derive(Default, Clone)]
pub struct Jar(BTreeMap<String, String>);

impl Jar {
    pub fn take(&mut self, r: &RawResponse) {
        for line in r.head.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            if !k.eq_ignore_ascii_case("set-cookie") {
                continue;
            }
            let pair = v.trim().split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            let expired = v.to_ascii_lowercase().contains("max-age=0")
                || v.contains("1970")
                || value.is_empty();
            match expired {
                true => self.0.remove(name),
                false => self.0.insert(name.to_owned(), value.to_owned()),
            };
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn without(&self, name: &str) -> Jar {
        let mut j = self.clone();
        j.0.remove(name);
        j
    }

    pub fn with(&self, name: &str, value: &str) -> Jar {
        let mut j = self.clone();
        j.0.insert(name.to_owned(), value.to_owned());
        j
    }

    fn header(&self) -> String {
        if self.0.is_empty() {
            return String::new();
        }
        let pairs: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("Cookie: {}\r\n", pairs.join("; "))
    }
}

const SESSION: &str = "__Host-erpguard-session";
const GRANT: &str = "__Host-erpguard-stepup";

fn request(method: &str, path: &str, jar: &Jar, extra: &str, ctype: &str, body: &str) -> String {
    let ctype = match ctype {
        "" => String::new(),
        c => format!("Content-Type: {c}\r\n"),
    };
    format!(
        "{method} {path} HTTP/1.1\r\nHost: erp.test\r\n{ctype}{}{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        jar.header(),
        body.len()
    )
}

fn form(path: &str, jar: &Jar, body: &str) -> String {
    request(
        "POST",
        path,
        jar,
        "",
        "application/x-www-form-urlencoded",
        body,
    )
}

fn field(html: &str, name: &str) -> String {
    html.split(&format!("name=\"{name}\" value=\""))
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no field {name} in {html}"))
        .replace("&amp;", "&")
}

/// Opens the challenge page for `back` and answers it with `code`.
pub async fn answer(gw: &Gateway, jar: &mut Jar, back: &str, code: &str) -> RawResponse {
    let url = format!(
        "/.erpguard/step-up?return={}",
        form_urlencoded::byte_serialize(back.as_bytes()).collect::<String>()
    );
    let page = gw
        .raw("erp.test", &request("GET", &url, jar, "", "", ""))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = field(&page.body, "csrf");
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("csrf", &csrf)
        .append_pair("return", back)
        .append_pair("code", code)
        .finish();
    let r = gw
        .raw("erp.test", &form("/.erpguard/step-up", jar, &body))
        .await;
    jar.take(&r);
    r
}

fn events(gw: &Gateway, name: &str) -> Vec<serde_json::Value> {
    gw.audit_lines()
        .into_iter()
        .filter(|l| l["event"] == name)
        .collect()
}

mod erpnext {
    use super::*;
    use crate::support::erpnext::Emulator;

    async fn login(gw: &Gateway, user: &str, pwd: &str) -> Jar {
        let mut jar = Jar::default();
        let r = gw
            .raw(
                "erp.test",
                &form("/api/method/login", &jar, &format!("usr={user}&pwd={pwd}")),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        jar.take(&r);
        assert!(jar.get("sid").is_some_and(|s| s.len() == 56), "sid");
        assert!(jar.get(SESSION).is_some(), "erpguard's session cookie");
        jar
    }

    fn set_value(doctype: &str) -> String {
        format!(
            "doctype={}&name=x&fieldname=enabled&value=0",
            doctype.replace(' ', "+")
        )
    }

    /// Every way the doctype can travel to `frappe.client.set_value` or `savedocs`.
    fn admin_writes(jar: &Jar) -> Vec<(&'static str, String)> {
        let json = "application/json";
        vec![
            (
                "form set_value User",
                form(
                    "/api/method/frappe.client.set_value",
                    jar,
                    &set_value("User"),
                ),
            ),
            (
                "JSON set_value Role",
                request(
                    "POST",
                    "/api/method/frappe.client.set_value",
                    jar,
                    "",
                    json,
                    r#"{"doctype":"Role","name":"x","fieldname":"desk_access","value":1}"#,
                ),
            ),
            (
                "cmd override on / for System Settings",
                form(
                    "/",
                    jar,
                    &format!(
                        "cmd=frappe.client.set_value&{}",
                        set_value("System Settings")
                    ),
                ),
            ),
            (
                "cmd in the query over an innocent path",
                form(
                    "/api/method/ping?cmd=frappe.client.set_value",
                    jar,
                    &set_value("User"),
                ),
            ),
            (
                "savedocs form, User",
                form(
                    "/api/method/frappe.desk.form.save.savedocs",
                    jar,
                    "action=Save&doc=%7B%22doctype%22%3A%22User%22%2C%22name%22%3A%22x%22%7D",
                ),
            ),
            (
                "savedocs JSON, System Settings",
                request(
                    "POST",
                    "/api/method/frappe.desk.form.save.savedocs",
                    jar,
                    "",
                    json,
                    r#"{"action":"Save","doc":"{\"doctype\":\"System Settings\",\"name\":\"System Settings\"}"}"#,
                ),
            ),
        ]
    }

    #[tokio::test]
    async fn admin_writes_are_held_and_a_sales_invoice_save_passes() {
        let emu = Emulator::start().await;
        let gw = start("erpnext", &emu.url(), "");
        enroll(&gw, "alice@example.com");
        let jar = login(&gw, "alice@example.com", "alice-pass").await;
        emu.clear();
        for (what, req) in admin_writes(&jar) {
            let r = gw.raw("erp.test", &req).await;
            let url = match r.status {
                // A plain form post from a browser is sent to the page.
                303 => r.header("location").unwrap(),
                401 => {
                    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
                    assert_eq!(v["error"], "step_up_required", "{what}");
                    v["url"].as_str().unwrap().to_owned()
                }
                other => panic!("{what}: {other} {}", r.body),
            };
            assert!(
                url.starts_with("/.erpguard/step-up?return="),
                "{what}: {url}"
            );
        }
        assert!(emu.requests().is_empty(), "no admin write reached ERPNext");
        let invoice = form(
            "/api/method/frappe.desk.form.save.savedocs",
            &jar,
            "action=Save&doc=%7B%22doctype%22%3A%22Sales+Invoice%22%2C%22customer%22%3A%22ACME%22%7D",
        );
        assert_eq!(gw.raw("erp.test", &invoice).await.status, 200);
        let invoice_json = request(
            "POST",
            "/api/method/frappe.client.set_value",
            &jar,
            "",
            "application/json",
            r#"{"doctype":"Sales Invoice","name":"SINV-1","fieldname":"remarks","value":"x"}"#,
        );
        assert_eq!(gw.raw("erp.test", &invoice_json).await.status, 200);
        assert_eq!(emu.requests().len(), 2, "both Sales Invoice writes passed");
        let challenges = events(&gw, "step_up_challenge");
        assert_eq!(challenges.len(), 6);
        assert_eq!(challenges[0]["user"], "alice@example.com");
    }

    #[tokio::test]
    async fn a_code_grants_admin_for_this_session_once_and_browsers_are_redirected() {
        let emu = Emulator::start().await;
        let gw = start("erpnext", &emu.url(), "");
        let secret = enroll(&gw, "alice@example.com");
        let mut jar = login(&gw, "alice@example.com", "alice-pass").await;
        // A browser navigating to an admin screen is sent to the challenge page.
        let nav = gw
            .raw(
                "erp.test",
                &request("GET", "/app/user/x", &jar, "Accept: text/html\r\n", "", ""),
            )
            .await;
        assert_eq!(nav.status, 303);
        assert_eq!(
            nav.header("location").as_deref(),
            Some("/.erpguard/step-up?return=%2Fapp%2Fuser%2Fx")
        );
        // XHR gets JSON.
        let xhr = gw
            .raw(
                "erp.test",
                &request(
                    "GET",
                    "/app/user/x",
                    &jar,
                    "X-Requested-With: XMLHttpRequest\r\n",
                    "",
                    "",
                ),
            )
            .await;
        assert_eq!(xhr.status, 401);
        assert!(
            xhr.body.contains("\"error\":\"step_up_required\""),
            "{}",
            xhr.body
        );

        let code = code(&secret);
        let r = answer(&gw, &mut jar, "/app/user/x", &code).await;
        assert_eq!(r.status, 303, "{}", r.body);
        assert_eq!(r.header("location").as_deref(), Some("/app/user/x"));
        let grant_cookie = r
            .head
            .lines()
            .find(|l| l.contains(GRANT))
            .expect("grant cookie")
            .to_ascii_lowercase();
        for attr in [
            "httponly",
            "secure",
            "samesite=strict",
            "path=/",
            "max-age=600",
        ] {
            assert!(grant_cookie.contains(attr), "{attr} in {grant_cookie}");
        }
        let ok = gw
            .raw(
                "erp.test",
                &form(
                    "/api/method/frappe.client.set_value",
                    &jar,
                    &set_value("User"),
                ),
            )
            .await;
        assert_eq!(ok.status, 200, "{}", ok.body);
        for seen in emu.requests() {
            let cookies = seen.header_values("cookie").join("; ");
            assert!(
                !cookies.contains("erpguard"),
                "erpguard's cookies are not sent upstream: {seen:?}"
            );
        }

        // The same code again (a second browser session of the same user) is a replay.
        let mut other = login(&gw, "alice@example.com", "alice-pass").await;
        let again = answer(&gw, &mut other, "/", &code).await;
        assert_eq!(again.status, 401);
        assert!(again.body.contains("already used"), "{}", again.body);
        assert_eq!(events(&gw, "step_up_ok").len(), 1);
        assert_eq!(events(&gw, "step_up_replay").len(), 1);
        // No code or secret reaches the logs or the audit log.
        let audit = std::fs::read_to_string(gw.audit_path()).unwrap();
        for text in [audit, gw.log_text()] {
            assert!(!text.contains(&code) && !text.contains(&secret));
            assert!(!text.contains(jar.get(GRANT).unwrap()));
            assert!(!text.contains(jar.get(SESSION).unwrap()));
        }
    }

    #[tokio::test]
    async fn a_grant_belongs_to_one_session_and_user() {
        let emu = Emulator::start().await;
        let gw = start("erpnext", &emu.url(), "");
        let secret = enroll(&gw, "alice@example.com");
        enroll(&gw, "Administrator");
        let mut alice = login(&gw, "alice@example.com", "alice-pass").await;
        assert_eq!(
            answer(&gw, &mut alice, "/", &code(&secret)).await.status,
            303
        );
        let admin = login(&gw, "Administrator", "admin-pass").await;
        let write = |jar: &Jar| {
            form(
                "/api/method/frappe.client.set_value",
                jar,
                &set_value("User"),
            )
        };
        assert_eq!(gw.raw("erp.test", &write(&alice)).await.status, 200);

        // Alice's grant cookie in the Administrator's session: not theirs.
        let mixed = admin.with(GRANT, alice.get(GRANT).unwrap());
        let r = gw.raw("erp.test", &write(&mixed)).await;
        assert_eq!(r.status, 401);
        assert!(r.body.contains("step_up_required"), "{}", r.body);
        // Alice's erpguard cookies with the Administrator's ERP session: the
        // ERP session is not the one that logged in.
        let swapped = alice.with("sid", admin.get("sid").unwrap());
        let r = gw.raw("erp.test", &write(&swapped)).await;
        assert_eq!(r.status, 401);
        assert!(r.body.contains("login_required"), "{}", r.body);
    }

    #[tokio::test]
    async fn a_copied_erp_cookie_alone_is_sent_to_log_in() {
        let emu = Emulator::start().await;
        let gw = start("erpnext", &emu.url(), "");
        let secret = enroll(&gw, "alice@example.com");
        let mut jar = login(&gw, "alice@example.com", "alice-pass").await;
        assert_eq!(answer(&gw, &mut jar, "/", &code(&secret)).await.status, 303);
        let stolen = Jar::default().with("sid", jar.get("sid").unwrap());
        let browser = gw
            .raw(
                "erp.test",
                &request("GET", "/app/role", &stolen, "Accept: text/html\r\n", "", ""),
            )
            .await;
        assert_eq!(browser.status, 303);
        assert_eq!(
            browser.header("location").as_deref(),
            Some("/login?redirect-to=%2Fapp%2Frole")
        );
        let api = gw
            .raw(
                "erp.test",
                &form(
                    "/api/method/frappe.client.set_value",
                    &stolen,
                    &set_value("User"),
                ),
            )
            .await;
        assert_eq!(api.status, 401);
        assert!(
            api.body.contains("\"error\":\"login_required\""),
            "{}",
            api.body
        );
        // Even with the grant cookie copied too, no erpguard session: refused.
        let with_grant = stolen.with(GRANT, jar.get(GRANT).unwrap());
        assert_eq!(
            gw.raw(
                "erp.test",
                &form(
                    "/api/method/frappe.client.set_value",
                    &with_grant,
                    &set_value("User")
                )
            )
            .await
            .status,
            401
        );
        assert!(emu.requests().iter().all(|s| !s.uri.contains("set_value")));
        assert_eq!(events(&gw, "step_up_no_session").len(), 3);
    }

    #[tokio::test]
    async fn grants_survive_a_restart_and_end_at_logout() {
        let emu = Emulator::start().await;
        let gw = start("erpnext", &emu.url(), "");
        let secret = enroll(&gw, "alice@example.com");
        let mut jar = login(&gw, "alice@example.com", "alice-pass").await;
        assert_eq!(answer(&gw, &mut jar, "/", &code(&secret)).await.status, 303);
        let write = |jar: &Jar| {
            form(
                "/api/method/frappe.client.set_value",
                jar,
                &set_value("User"),
            )
        };
        let (ca, config) = (gw.ca.clone(), std::fs::read_to_string(&gw.config).unwrap());
        let (status, dir) = tokio::task::spawn_blocking(move || gw.stop_keeping_dir())
            .await
            .unwrap();
        assert!(status.success());
        let gw = Gateway::start(ca, dir, &config);
        assert_eq!(
            gw.raw("erp.test", &write(&jar)).await.status,
            200,
            "the grant survived"
        );

        let before_logout = jar.clone();
        let out = gw
            .raw(
                "erp.test",
                &request("POST", "/api/method/logout", &jar, "", "", ""),
            )
            .await;
        assert_eq!(out.status, 200);
        jar.take(&out);
        assert!(
            jar.get(SESSION).is_none() && jar.get(GRANT).is_none(),
            "cookies cleared"
        );
        // Replaying the cookies from before the logout does not work either.
        let r = gw.raw("erp.test", &write(&before_logout)).await;
        assert_eq!(r.status, 401);
        assert!(r.body.contains("login_required"), "{}", r.body);
        // A new login needs a new code.
        let fresh = login(&gw, "alice@example.com", "alice-pass").await;
        let old_grant = fresh.with(GRANT, before_logout.get(GRANT).unwrap());
        let r = gw.raw("erp.test", &write(&old_grant)).await;
        assert!(r.body.contains("step_up_required"), "{}", r.body);
        assert_eq!(events(&gw, "step_up_session_ended").len(), 1);
    }

    #[tokio::test]
    async fn wrong_codes_lock_step_up_and_recovery_codes_work_once() {
        let emu = Emulator::start().await;
        let gw = start("erpnext", &emu.url(), "[site.step_up]\nmax_failures = 3\n");
        let (status, out, err) = cli(
            gw.dir.path(),
            &gw.config,
            &[
                "totp",
                "enroll",
                "--site",
                "erp",
                "--user",
                "alice@example.com",
                "--no-qr",
            ],
        );
        assert_eq!(status, 0, "{err}");
        let recovery: Vec<String> = out
            .lines()
            .filter_map(|l| l.trim().split_once(". ").map(|(_, c)| c.to_owned()))
            .filter(|c| c.len() == 17)
            .collect();
        assert_eq!(recovery.len(), 10, "{out}");
        let mut jar = login(&gw, "alice@example.com", "alice-pass").await;
        let r = answer(&gw, &mut jar, "/", &recovery[0]).await;
        assert_eq!(r.status, 303, "a recovery code works: {}", r.body);
        let mut other = login(&gw, "alice@example.com", "alice-pass").await;
        let r = answer(&gw, &mut other, "/", &recovery[0]).await;
        assert_eq!(r.status, 401, "a recovery code works once");
        assert_eq!(events(&gw, "step_up_recovery_used").len(), 1);
        // That was wrong code 1; two more lock step-up for alice.
        for _ in 0..2 {
            assert_eq!(answer(&gw, &mut other, "/", "000000").await.status, 401);
        }
        assert_eq!(events(&gw, "step_up_locked").len(), 1);
        let page = gw
            .raw(
                "erp.test",
                &request("GET", "/.erpguard/step-up", &other, "", "", ""),
            )
            .await;
        assert_eq!(page.status, 429, "{}", page.body);
        assert!(page.header("retry-after").is_some());
        let (_, list, _) = cli(gw.dir.path(), &gw.config, &["lockout", "list"]);
        assert!(
            list.contains("step_up") && list.contains("alice@example.com"),
            "{list}"
        );
        let (status, _, _) = cli(
            gw.dir.path(),
            &gw.config,
            &[
                "lockout",
                "clear",
                "--site",
                "erp",
                "--user",
                "alice@example.com",
            ],
        );
        assert_eq!(status, 0);
        let page = gw
            .raw(
                "erp.test",
                &request("GET", "/.erpguard/step-up", &other, "", "", ""),
            )
            .await;
        assert_eq!(page.status, 200, "cleared");
    }

    #[tokio::test]
    async fn unenrolled_users_are_refused_or_let_through_by_policy() {
        let emu = Emulator::start().await;
        let gw = start("erpnext", &emu.url(), "");
        let jar = login(&gw, "alice@example.com", "alice-pass").await;
        let write = form(
            "/api/method/frappe.client.set_value",
            &jar,
            &set_value("User"),
        );
        let r = gw.raw("erp.test", &write).await;
        assert_eq!(r.status, 403, "{}", r.body);
        assert_eq!(events(&gw, "step_up_not_enrolled").len(), 1);

        let gw = start(
            "erpnext",
            &emu.url(),
            "[site.step_up]\nunenrolled = \"allow\"\n",
        );
        let jar = login(&gw, "alice@example.com", "alice-pass").await;
        let write = form(
            "/api/method/frappe.client.set_value",
            &jar,
            &set_value("User"),
        );
        assert_eq!(gw.raw("erp.test", &write).await.status, 200);
        assert_eq!(events(&gw, "step_up_unenrolled_allowed").len(), 1);
    }

    #[tokio::test]
    async fn an_enrolment_link_enrols_the_signed_in_user_once() {
        let emu = Emulator::start().await;
        let gw = start("erpnext", &emu.url(), "");
        let (status, out, err) = cli(
            gw.dir.path(),
            &gw.config,
            &[
                "totp",
                "link",
                "--site",
                "erp",
                "--user",
                "alice@example.com",
            ],
        );
        assert_eq!(status, 0, "{err}");
        let url = out
            .lines()
            .find(|l| l.starts_with("https://"))
            .expect("a link")
            .to_owned();
        let path = &url[url.find("/.erpguard/").unwrap()..];
        // The Administrator cannot use alice's link.
        let admin = login(&gw, "Administrator", "admin-pass").await;
        let r = gw
            .raw(
                "erp.test",
                &request("GET", path, &admin, "Accept: text/html\r\n", "", ""),
            )
            .await;
        assert_eq!(r.status, 303, "sent to log in as alice: {}", r.body);
        let jar = login(&gw, "alice@example.com", "alice-pass").await;
        let page = gw
            .raw("erp.test", &request("GET", path, &jar, "", "", ""))
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains("<svg"), "the QR code is inline");
        let csp = page.header("content-security-policy").unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
        let key = page
            .body
            .split("<code>")
            .nth(1)
            .and_then(|r| r.split("</code>").next())
            .unwrap()
            .to_owned();
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("csrf", &field(&page.body, "csrf"))
            .append_pair("token", &field(&page.body, "token"))
            .append_pair("code", &code(&key))
            .finish();
        let done = gw
            .raw("erp.test", &form("/.erpguard/enroll", &jar, &body))
            .await;
        assert_eq!(done.status, 200, "{}", done.body);
        assert_eq!(
            done.body.matches("<li>").count(),
            10,
            "ten recovery codes shown once"
        );
        let again = gw
            .raw("erp.test", &request("GET", path, &jar, "", "", ""))
            .await;
        assert_eq!(again.status, 404, "the link works once");
        let (_, list, _) = cli(gw.dir.path(), &gw.config, &["totp", "list", "--json"]);
        let row: serde_json::Value = serde_json::from_str(list.trim()).unwrap();
        assert_eq!(row["user"], "alice@example.com");
        assert_eq!(row["state"], "active");
        assert_eq!(row["recovery_codes_left"], 10);
        assert_eq!(events(&gw, "totp_enrolled").len(), 1);
    }

    #[tokio::test]
    async fn cross_site_posts_and_forged_forms_are_refused() {
        let emu = Emulator::start().await;
        let gw = start("erpnext", &emu.url(), "");
        let secret = enroll(&gw, "alice@example.com");
        let jar = login(&gw, "alice@example.com", "alice-pass").await;
        let body = format!("csrf=1.AAAA&return=%2F&code={}", code(&secret));
        let forged = gw
            .raw("erp.test", &form("/.erpguard/step-up", &jar, &body))
            .await;
        assert_eq!(forged.status, 403, "a forged form token");
        let cross = request(
            "POST",
            "/.erpguard/step-up",
            &jar,
            "Origin: https://evil.example\r\n",
            "application/x-www-form-urlencoded",
            &body,
        );
        assert_eq!(gw.raw("erp.test", &cross).await.status, 400);
        let cross = request(
            "POST",
            "/.erpguard/step-up",
            &jar,
            "Sec-Fetch-Site: cross-site\r\n",
            "application/x-www-form-urlencoded",
            &body,
        );
        assert_eq!(gw.raw("erp.test", &cross).await.status, 400);
        assert!(events(&gw, "step_up_ok").is_empty());
        // Open redirects are not possible through `return`.
        assert_eq!(erpguard::stepup::safe_return(Some("//evil.example/")), "/");
        let unknown = gw
            .raw(
                "erp.test",
                &request("GET", "/.ERPGUARD/other", &jar, "", "", ""),
            )
            .await;
        assert_eq!(unknown.status, 404);
        assert!(
            emu.requests()
                .iter()
                .all(|s| !s.uri.to_ascii_lowercase().contains("erpguard"))
        );
    }
}

mod akaunting {
    use super::*;
    use crate::support::akaunting::Emulator;

    async fn login(gw: &Gateway, email: &str, password: &str) -> Jar {
        let mut jar = Jar::default();
        let page = gw
            .raw("erp.test", &request("GET", "/auth/login", &jar, "", "", ""))
            .await;
        jar.take(&page);
        let token = field(&page.body, "_token");
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("_token", &token)
            .append_pair("email", email)
            .append_pair("password", password)
            .finish();
        let r = gw
            .raw(
                "erp.test",
                &request(
                    "POST",
                    "/auth/login",
                    &jar,
                    "X-Requested-With: XMLHttpRequest\r\n",
                    "application/x-www-form-urlencoded",
                    &body,
                ),
            )
            .await;
        assert!(r.body.contains("\"success\":true"), "{}", r.body);
        jar.take(&r);
        assert!(jar.get(SESSION).is_some());
        jar
    }

    async fn get(gw: &Gateway, jar: &mut Jar, path: &str) -> RawResponse {
        let r = gw
            .raw(
                "erp.test",
                &request("GET", path, jar, "Accept: text/html\r\n", "", ""),
            )
            .await;
        jar.take(&r);
        r
    }

    #[tokio::test]
    async fn users_and_a_get_uninstall_are_held_until_stepped_up() {
        let emu = Emulator::start().await;
        let gw = start("akaunting", &emu.url(), "");
        let secret = enroll(&gw, "admin@company.com");
        let mut jar = login(&gw, "admin@company.com", "admin-pass").await;
        assert_eq!(get(&gw, &mut jar, "/1/sales/invoices").await.status, 200);
        for path in [
            "/1/auth/users",
            "/1/apps/paypal-standard/uninstall",
            "/1/settings/company",
        ] {
            let r = get(&gw, &mut jar, path).await;
            assert_eq!(r.status, 303, "{path}");
            assert!(
                r.header("location")
                    .unwrap()
                    .starts_with("/.erpguard/step-up?return="),
                "{path}"
            );
        }
        let xhr = gw
            .raw(
                "erp.test",
                &request(
                    "GET",
                    "/1/auth/users",
                    &jar,
                    "X-Requested-With: XMLHttpRequest\r\n",
                    "",
                    "",
                ),
            )
            .await;
        assert_eq!(xhr.status, 401);
        assert!(xhr.body.contains("step_up_required"));
        assert!(
            emu.requests()
                .iter()
                .all(|s| !s.uri.contains("/auth/users") && !s.uri.contains("uninstall")),
            "nothing admin reached Akaunting"
        );
        assert_eq!(
            answer(&gw, &mut jar, "/1/auth/users", &code(&secret))
                .await
                .status,
            303
        );
        let r = get(&gw, &mut jar, "/1/auth/users").await;
        assert_eq!(r.status, 200, "{}", r.body);
        // Logout ends the grant: after logging in again, a code is needed again.
        let out = get(&gw, &mut jar, "/1/auth/logout").await;
        assert_eq!(out.status, 302);
        assert!(jar.get(GRANT).is_none());
        let mut jar = login(&gw, "admin@company.com", "admin-pass").await;
        assert_eq!(get(&gw, &mut jar, "/1/auth/users").await.status, 303);
    }

    #[tokio::test]
    async fn the_akaunting_session_cookie_alone_is_sent_to_log_in() {
        let emu = Emulator::start().await;
        let gw = start("akaunting", &emu.url(), "");
        enroll(&gw, "admin@company.com");
        let jar = login(&gw, "admin@company.com", "admin-pass").await;
        let stolen = jar.without(SESSION);
        let mut s = stolen.clone();
        let r = get(&gw, &mut s, "/1/auth/users").await;
        assert_eq!(r.status, 303);
        assert_eq!(r.header("location").as_deref(), Some("/auth/login"));
    }
}
