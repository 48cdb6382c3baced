//! Test harness: a CA and certificates made per test, an echo upstream that
//! records what reached it, the real `erpguard` binary on ephemeral ports, and
//! TLS clients (raw HTTP/1.1 bytes, and hyper for HTTP/2).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod akaunting;
pub mod erpnext;
pub mod upstream;
pub mod wire;

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

/// A test certificate authority and the leaf certificates it signs.
pub struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
    pub der: CertificateDer<'static>,
}

impl Ca {
    pub fn new() -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "erpguard test CA");
        let cert = params.self_signed(&key).unwrap();
        let der = cert.der().clone();
        Ca { cert, key, der }
    }

    /// Writes a leaf for `names` into `dir` as `<stem>.pem`/`<stem>.key`; returns (cert, key, DER).
    pub fn leaf(
        &self,
        dir: &Path,
        stem: &str,
        names: &[&str],
    ) -> (PathBuf, PathBuf, CertificateDer<'static>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let (c, k) = (
            dir.join(format!("{stem}.pem")),
            dir.join(format!("{stem}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k, cert.der().clone())
    }

    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(cfg)
    }
}

/// A running `erpguard run` child process.
pub struct Gateway {
    child: Child,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub https: SocketAddr,
    pub http: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub logs: Arc<Mutex<Vec<String>>>,
    pub ca: Arc<Ca>,
}

/// The path of the built binary.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_erpguard")
}

/// A `[listen]` + `[audit]` + `[state]` + `[log]` header for a config in `dir`, with ephemeral ports.
pub fn base_config(dir: &Path, extra_listen: &str) -> String {
    format!(
        "[listen]\nhttps = \"127.0.0.1:0\"\n{extra_listen}\n\n[limits]\ndrain_timeout = \"5s\"\nheader_read_timeout = \"2s\"\n\n\
[state]\npath = \"{}\"\n\n[audit]\npath = \"{}\"\n\n[log]\nformat = \"json\"\nlevel = \"info\"\naccess = true\n",
        dir.join("state.db").display(),
        dir.join("audit.jsonl").display()
    )
}

impl Gateway {
    /// Writes `config` (which may use `{dir}` for the temp dir) and starts the gateway.
    pub fn start(ca: Arc<Ca>, dir: tempfile::TempDir, config: &str) -> Gateway {
        let path = dir.path().join("erpguard.toml");
        std::fs::write(
            &path,
            config.replace("{dir}", &dir.path().display().to_string()),
        )
        .unwrap();
        let mut child = Command::new(bin())
            .args(["run", "--config"])
            .arg(&path)
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start erpguard");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("\"listening\"") {
                    let _ = tx.send(line.clone());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) else {
            let _ = child.kill();
            panic!(
                "erpguard did not start; logs:\n{}",
                logs.lock().unwrap().join("\n")
            );
        };
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let addr = |k: &str| {
            v.get(k)
                .and_then(|a| a.as_str())
                .map(|a| a.trim_matches('"').parse().unwrap())
        };
        Gateway {
            child,
            config: path,
            https: addr("https").unwrap(),
            http: addr("http"),
            admin: addr("admin"),
            logs,
            ca,
            dir,
        }
    }

    /// Rewrites the config file (with `{dir}` substituted).
    pub fn write_config(&self, config: &str) {
        let text = config.replace("{dir}", &self.dir.path().display().to_string());
        let tmp = self.dir.path().join("erpguard.toml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.config).unwrap();
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn audit_path(&self) -> PathBuf {
        self.dir.path().join("audit.jsonl")
    }

    /// Audit lines (waits briefly for the writer thread).
    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        std::thread::sleep(Duration::from_millis(200));
        std::fs::read_to_string(self.audit_path())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Waits for a log line containing `needle`.
    pub fn wait_log(&self, needle: &str, within: Duration) -> bool {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if self.log_text().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < end, "erpguard did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the gateway and hands back its directory (state, audit, certs) for a restart.
    pub fn stop_keeping_dir(mut self) -> (std::process::ExitStatus, tempfile::TempDir) {
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (self.stop(), dir)
    }

    /// A TLS connection from `127.0.0.1` with this SNI and ALPN.
    pub async fn tls(&self, sni: &str, alpn: &[&[u8]]) -> std::io::Result<TlsStream<TcpStream>> {
        self.tls_from("127.0.0.1".parse().unwrap(), sni, alpn).await
    }

    /// A TLS connection from a chosen loopback source address (any 127.x works on Linux).
    pub async fn tls_from(
        &self,
        src: IpAddr,
        sni: &str,
        alpn: &[&[u8]],
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(src, 0))?;
        let tcp = socket.connect(self.https).await?;
        let connector = tokio_rustls::TlsConnector::from(self.ca.client_config(alpn));
        connector
            .connect(ServerName::try_from(sni.to_owned()).unwrap(), tcp)
            .await
    }

    /// The leaf certificate the gateway presents for `sni`.
    pub async fn peer_cert(&self, sni: &str) -> CertificateDer<'static> {
        let tls = self.tls(sni, &[]).await.unwrap();
        tls.get_ref().1.peer_certificates().unwrap()[0]
            .clone()
            .into_owned()
    }

    /// One raw HTTP/1.1 exchange over TLS; `raw` is sent as is (it should say `Connection: close`).
    pub async fn raw(&self, sni: &str, raw: &str) -> RawResponse {
        self.raw_from("127.0.0.1".parse().unwrap(), sni, raw).await
    }

    pub async fn raw_from(&self, src: IpAddr, sni: &str, raw: &str) -> RawResponse {
        let mut tls = self.tls_from(src, sni, &[b"http/1.1"]).await.unwrap();
        tls.write_all(raw.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buf)).await;
        RawResponse::parse(&buf)
    }

    /// A GET with hyper over HTTP/1.1 or HTTP/2 (by ALPN).
    pub async fn get(&self, sni: &str, path: &str, headers: &[(&str, &str)], h2: bool) -> Reply {
        let alpn: &[&[u8]] = if h2 { &[b"h2"] } else { &[b"http/1.1"] };
        let tls = self.tls(sni, alpn).await.unwrap();
        let mut req = http::Request::get(if h2 {
            format!("https://{sni}{path}")
        } else {
            path.to_owned()
        });
        if !h2 {
            req = req.header("host", sni);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        send(tls, req.body(Full::new(Bytes::new())).unwrap(), h2).await
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

/// Sends one request over an established TLS stream with hyper.
pub async fn send(tls: TlsStream<TcpStream>, req: http::Request<Full<Bytes>>, h2: bool) -> Reply {
    let io = hyper_util::rt::TokioIo::new(tls);
    let resp = if h2 {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .unwrap();
        tokio::spawn(conn);
        sender.send_request(req).await.unwrap()
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        sender.send_request(req).await.unwrap()
    };
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A raw HTTP/1.1 response: status line and headers parsed, body as text.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl RawResponse {
    fn parse(buf: &[u8]) -> RawResponse {
        let text = String::from_utf8_lossy(buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        RawResponse {
            status,
            head: head.to_owned(),
            body: body.to_owned(),
        }
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// A free loopback port with nothing listening on it.
pub fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A site table for a test config.
pub fn site(
    name: &str,
    hosts: &[&str],
    upstream: &str,
    cert: &Path,
    key: &Path,
    extra: &str,
) -> String {
    let hosts = hosts
        .iter()
        .map(|h| format!("\"{h}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "\n[[site]]\nname = \"{name}\"\nhosts = [{hosts}]\napp = \"generic\"\nupstream = \"{upstream}\"\n\
tls = {{ cert = \"{}\", key = \"{}\" }}\n{extra}\n",
        cert.display(),
        key.display()
    )
}
