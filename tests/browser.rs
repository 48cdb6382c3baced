//! End to end in a real headless Chromium, driven over WebDriver
//! (chromedriver): sign in to the ERPNext emulator through erpguard, open an
//! admin page, meet the challenge, type the current code, land on the page.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them).
//! Without them the test says loudly that it was skipped, unless
//! `ERPGUARD_REQUIRE_BROWSER=1` (CI sets it), where a missing browser fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};
use serde_json::json;

use crate::step_up::{code, enroll};
use crate::support::erpnext::Emulator;
use crate::support::{Ca, Gateway, base_config, dead_port};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The browser binaries, or `None` when the test must be skipped.
fn browser() -> Option<(PathBuf, PathBuf)> {
    let pick = |var: &str, default: &str| {
        PathBuf::from(std::env::var(var).unwrap_or_else(|_| default.to_owned()))
    };
    let (chromium, driver) = (
        pick("ERPGUARD_CHROMIUM", CHROMIUM),
        pick("ERPGUARD_CHROMEDRIVER", CHROMEDRIVER),
    );
    if chromium.exists() && driver.exists() {
        return Some((chromium, driver));
    }
    let required = std::env::var("ERPGUARD_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "ERPGUARD_REQUIRE_BROWSER=1 but {} or {} is missing (apt-get install chromium chromium-driver)",
        chromium.display(),
        driver.display()
    );
    eprintln!(
        "\n\n*** SKIPPED browser::step_up_in_chromium: {} or {} not found. \
         Install Debian's chromium and chromium-driver to run it (CI does). ***\n",
        chromium.display(),
        driver.display()
    );
    None
}

/// chromedriver on a loopback port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_driver(path: &Path) -> Driver {
    let port = dead_port();
    let child = Command::new(path)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

/// Where the challenge screenshot is kept for people and CI to look at.
fn artifact_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn step_up_in_chromium() {
    let Some((chromium, driver_path)) = browser() else {
        return;
    };
    let emu = Emulator::start().await;
    let ca = Arc::new(Ca::new());
    let dir = tempfile::tempdir().unwrap();
    let (c, k, _) = ca.leaf(dir.path(), "erp", &["erp.test"]);
    let config =
        base_config(dir.path(), "") + &crate::login::app_site("erpnext", &emu.url(), &c, &k, "");
    let gw = Gateway::start(ca, dir, &config);
    let secret = enroll(&gw, "alice@example.com");
    let driver = start_driver(&driver_path);
    let profile = tempfile::tempdir().unwrap();
    let caps = json!({
        "browserName": "chrome",
        "acceptInsecureCerts": true,
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                // erp.test is the site's name; only loopback is ever reached.
                "--host-resolver-rules=MAP erp.test 127.0.0.1, EXCLUDE localhost",
                format!("--user-data-dir={}", profile.path().display()),
                "--window-size=420,860",
            ]
        }
    });
    let caps = caps.as_object().unwrap().clone();
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session");
    let base = format!("https://erp.test:{}", gw.https.port());
    let result = run(&client, &base, &secret).await;
    client.close().await.ok();
    drop(driver);
    if let Err(e) = result {
        panic!("{e}\n--- erpguard log:\n{}", gw.log_text());
    }
    assert!(
        gw.audit_lines()
            .iter()
            .any(|l| l["event"] == "step_up_ok" && l["user"] == "alice@example.com")
    );
}

async fn run(
    client: &fantoccini::Client,
    base: &str,
    secret: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    // Sign in through erpguard.
    client.goto(&format!("{base}/login")).await?;
    client
        .find(Locator::Id("usr"))
        .await?
        .send_keys("alice@example.com")
        .await?;
    client
        .find(Locator::Id("pwd"))
        .await?
        .send_keys("alice-pass")
        .await?;
    client.find(Locator::Id("login")).await?.click().await?;
    wait_for(client, |src| src.contains("Logged In")).await?;

    // An admin page: erpguard holds it and shows the challenge.
    client.goto(&format!("{base}/app/user")).await?;
    let url = client.current_url().await?;
    assert_eq!(url.path(), "/.erpguard/step-up", "{url}");
    let label = client.find(Locator::Css("label[for=code]")).await?;
    assert!(label.text().await?.contains("authenticator"));
    let shot = client.screenshot().await?;
    let path = artifact_dir().join("step-up-challenge.png");
    std::fs::write(&path, &shot)?;
    eprintln!("challenge page screenshot: {}", path.display());

    // Type the current code and land on the page asked for.
    client
        .find(Locator::Id("code"))
        .await?
        .send_keys(&code(secret))
        .await?;
    client
        .find(Locator::Css("button[type=submit]"))
        .await?
        .click()
        .await?;
    wait_for(client, |src| src.contains("frappe.boot")).await?;
    let url = client.current_url().await?;
    assert_eq!(url.path(), "/app/user", "{url}");
    let src = client.source().await?;
    assert!(src.contains("alice@example.com"), "{src}");
    Ok(())
}

async fn wait_for(
    client: &fantoccini::Client,
    ready: impl Fn(&str) -> bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let src = client.source().await?;
        if ready(&src) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("page never became ready: {src}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
