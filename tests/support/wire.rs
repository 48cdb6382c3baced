//! Byte-level helpers shared by the test emulators: percent-decoding, form
//! and multipart parsing. Written independently of erpguard's own parser, so the
//! emulators read requests the way the apps do, not the way erpguard does.

pub(crate) fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

pub(crate) fn parse_urlencoded(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

pub(crate) fn boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

pub(crate) fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Text fields of a multipart/form-data body; file parts are skipped.
pub(crate) fn parse_multipart(body: &[u8], boundary: &str) -> Vec<(String, String)> {
    let delim = format!("--{boundary}").into_bytes();
    let mut out = Vec::new();
    let Some(mut pos) = find(body, &delim, 0) else {
        return out;
    };
    loop {
        let start = pos + delim.len();
        if body[start..].starts_with(b"--") {
            break;
        }
        let Some(next) = find(body, &delim, start) else {
            break;
        };
        let mut part = &body[start..next];
        part = part.strip_prefix(b"\r\n").unwrap_or(part);
        part = part.strip_suffix(b"\r\n").unwrap_or(part);
        if let Some(split) = find(part, b"\r\n\r\n", 0) {
            let head = String::from_utf8_lossy(&part[..split]);
            let value = &part[split + 4..];
            let mut name = None;
            let mut is_file = false;
            for line in head.lines() {
                let Some((k, v)) = line.split_once(':') else {
                    continue;
                };
                if !k.trim().eq_ignore_ascii_case("content-disposition") {
                    continue;
                }
                for attr in v.split(';').skip(1) {
                    if let Some((ak, av)) = attr.trim().split_once('=') {
                        let av = av.trim().trim_matches('"').to_owned();
                        match ak.trim().to_ascii_lowercase().as_str() {
                            "name" => name = Some(av),
                            "filename" => is_file = true,
                            _ => {}
                        }
                    }
                }
            }
            if let (Some(n), false) = (name, is_file) {
                out.push((n, String::from_utf8_lossy(value).into_owned()));
            }
        }
        pos = next;
    }
    out
}

/// One request as a test server received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query, as sent.
    pub uri: String,
    /// Header names in lower case, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    /// The first value of a header (lower-case name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// All values of a header (lower-case name).
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// One password or API-credential check as an emulated app performed it.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The login name as submitted (trimmed), the cached user for a 2FA step,
    /// or the API key / Basic user name.
    pub user: String,
    /// Whether the app accepted the credential (a disabled Akaunting account
    /// is `false` even with its right password: the app answers a failure).
    pub ok: bool,
    /// Request path, without the query.
    pub path: String,
    /// The client address as the app reads it from `X-Forwarded-For` (ERPNext:
    /// the first entry; Akaunting/Laravel behind a trusted proxy: the last);
    /// `None` without the header.
    pub client_ip: Option<String>,
}
