//! Host and path canonicalisation.
//!
//! One canonical form is computed per request and used twice: rules match it, and it is
//! what is forwarded upstream, so the request that was judged is the request that is sent.
//! Every form that an upstream (Frappe/werkzeug, Laravel/PHP) could read differently from
//! the gateway is refused rather than repaired: these functions fail closed and never panic.

use std::net::Ipv6Addr;

/// Why a host or path was refused. One variant per reason, so audit and metrics can tell
/// the bypass classes apart. Messages are generic and never echo the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonError {
    /// The host is empty (or is only a port).
    #[error("empty host")]
    EmptyHost,
    /// The host is not a valid reg-name or bracketed IPv6 literal.
    #[error("invalid host")]
    InvalidHost,
    /// The host carries userinfo (`user@host`).
    #[error("userinfo in host")]
    HostUserinfo,
    /// The port is empty, not decimal digits, zero or above 65535.
    #[error("invalid port")]
    InvalidPort,
    /// The path does not start with `/` (absolute-form, asterisk-form or relative).
    #[error("request target is not in origin form")]
    NotOriginForm,
    /// `%2F`: an encoded `/`.
    #[error("encoded slash in path")]
    EncodedSlash,
    /// `%5C`: an encoded `\`.
    #[error("encoded backslash in path")]
    EncodedBackslash,
    /// `%00`.
    #[error("encoded NUL in path")]
    EncodedNul,
    /// An encoded control byte (`%01`-`%1F`, `%7F`) or an encoded C1 control character.
    #[error("encoded control character in path")]
    EncodedControl,
    /// `%3B`: an encoded `;`.
    #[error("encoded semicolon in path")]
    EncodedSemicolon,
    /// `%3F`: an encoded `?`.
    #[error("encoded question mark in path")]
    EncodedQuestion,
    /// `%23`: an encoded `#`.
    #[error("encoded hash in path")]
    EncodedHash,
    /// `%25` followed by two hex digits (`%252e`): a second decoding would change the path.
    #[error("double percent-encoding in path")]
    DoubleEncoding,
    /// A `%` not followed by two hex digits.
    #[error("bad percent-encoding in path")]
    BadPercentEncoding,
    /// Encoded bytes that are not valid UTF-8 (overlong, truncated, surrogate, stray byte).
    #[error("invalid UTF-8 in path")]
    InvalidUtf8,
    /// A raw non-ASCII character (the request line should never carry one).
    #[error("raw non-ASCII character in path")]
    RawNonAscii,
    /// A raw `\`.
    #[error("backslash in path")]
    RawBackslash,
    /// A raw `;` (path parameters are read differently by different servers).
    #[error("semicolon in path")]
    RawSemicolon,
    /// A raw control character or space.
    #[error("control character or space in path")]
    RawControl,
    /// A raw `?` (the query must already have been split off).
    #[error("question mark in path")]
    RawQuestion,
    /// A raw `#` (fragments are never sent).
    #[error("hash in path")]
    RawHash,
    /// A `..` segment that would climb above the root.
    #[error("path climbs above the root")]
    AboveRoot,
}

/// A canonical host: lower-case ASCII, no trailing dot, port split off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonHost {
    /// A reg-name (`erp.example.com`) or a bracketed, lower-cased IPv6 literal (`[::1]`).
    pub name: String,
    /// The port, if the client sent one (always within 1..=65535).
    pub port: Option<u16>,
}

impl CanonHost {
    /// `name` or `name:port`: the host as a `Host` header or URL authority.
    pub fn authority(&self) -> String {
        // Built by hand: on the request path `format!` costs more than the
        // rest of the header work.
        let mut text = String::with_capacity(self.name.len() + 6);
        text.push_str(&self.name);
        if let Some(port) = self.port {
            text.push(':');
            text.push_str(itoa::Buffer::new().format(port));
        }
        text
    }
}

/// Longest reg-name accepted (DNS limit, without the trailing dot).
const MAX_HOST_LEN: usize = 253;
/// Longest DNS label accepted.
const MAX_LABEL_LEN: usize = 63;

/// Canonicalises a `Host` header value or HTTP/2 `:authority`.
///
/// Promises: on `Ok`, `name` is non-empty, lower-case ASCII, made of labels of
/// `[a-z0-9-_]` separated by single dots (or a bracketed IPv6 literal), and `port` is
/// 1..=65535. Userinfo, empty labels, two trailing dots, empty ports and any other
/// character are refused.
pub fn canonical_host(raw: &str) -> Result<CanonHost, CanonError> {
    if raw.is_empty() {
        return Err(CanonError::EmptyHost);
    }
    if raw.contains('@') {
        return Err(CanonError::HostUserinfo);
    }
    if !raw.is_ascii() {
        return Err(CanonError::InvalidHost);
    }
    if raw.starts_with('[') {
        return bracketed_host(raw);
    }
    let (name, port) = match raw.split_once(':') {
        Some((name, port)) => (name, Some(parse_port(port)?)),
        None => (raw, None),
    };
    Ok(CanonHost {
        name: reg_name(name)?,
        port,
    })
}

/// `[v6]` or `[v6]:port`; the literal must parse as an IPv6 address (no zone id).
fn bracketed_host(raw: &str) -> Result<CanonHost, CanonError> {
    let Some(close) = raw.find(']') else {
        return Err(CanonError::InvalidHost);
    };
    let literal = raw.get(1..close).ok_or(CanonError::InvalidHost)?;
    if literal.parse::<Ipv6Addr>().is_err() {
        return Err(CanonError::InvalidHost);
    }
    let rest = raw.get(close + 1..).ok_or(CanonError::InvalidHost)?;
    let port = match rest {
        "" => None,
        _ => match rest.strip_prefix(':') {
            Some(port) => Some(parse_port(port)?),
            None => return Err(CanonError::InvalidHost),
        },
    };
    Ok(CanonHost {
        name: format!("[{}]", literal.to_ascii_lowercase()),
        port,
    })
}

/// Decimal port 1..=65535. Only ASCII digits: `u16::from_str` would accept a leading `+`.
fn parse_port(port: &str) -> Result<u16, CanonError> {
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CanonError::InvalidPort);
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(CanonError::InvalidPort),
        Ok(p) => Ok(p),
    }
}

/// Validates and lower-cases a reg-name, stripping exactly one trailing dot.
fn reg_name(name: &str) -> Result<String, CanonError> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err(CanonError::EmptyHost);
    }
    if name.len() > MAX_HOST_LEN {
        return Err(CanonError::InvalidHost);
    }
    // One pass: each byte is checked and lower-cased as it is copied, and a
    // label's length is counted up to the dot that ends it.
    let mut lower = String::with_capacity(name.len());
    let mut label_len = 0;
    for b in name.bytes() {
        let b = b.to_ascii_lowercase();
        match b {
            // A second trailing dot leaves an empty last label, so it is refused here too.
            b'.' if label_len == 0 => return Err(CanonError::InvalidHost),
            b'.' => label_len = 0,
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' if label_len < MAX_LABEL_LEN => label_len += 1,
            _ => return Err(CanonError::InvalidHost),
        }
        lower.push(char::from(b));
    }
    if label_len == 0 {
        return Err(CanonError::InvalidHost);
    }
    Ok(lower)
}

/// A canonical request path, in a forwarded (percent-encoded) and a decoded form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonPath {
    forward: String,
    decoded: String,
}

impl CanonPath {
    /// The canonical, still percent-encoded path that is forwarded upstream.
    ///
    /// It starts with `/`, has no empty or dot segments, decodes no unreserved byte,
    /// and every remaining `%XX` has upper-case hex. `canonical_path(forward())` yields
    /// the same path again.
    pub fn forward(&self) -> &str {
        &self.forward
    }

    /// The fully percent-decoded path (valid UTF-8), used for matching rules.
    ///
    /// Decoding is safe because every byte that could change the path's structure
    /// (`/`, `\`, `;`, `?`, `#`, controls, a second `%XX` layer) was refused.
    pub fn decoded(&self) -> &str {
        &self.decoded
    }
}

/// Canonicalises the path part of an origin-form request target (no query).
///
/// Decodes `%XX` of unreserved bytes, upper-cases other escapes, percent-encodes raw
/// ASCII that is not allowed in a path segment, merges runs of `/`, removes dot
/// segments (RFC 3986 §5.2.4), keeps a trailing slash and preserves case. Refuses every
/// ambiguous form listed in [`CanonError`]; `..` above the root is refused, not clamped.
pub fn canonical_path(raw: &str) -> Result<CanonPath, CanonError> {
    if !raw.starts_with('/') {
        return Err(CanonError::NotOriginForm);
    }
    if is_already_canonical(raw.as_bytes()) {
        return Ok(CanonPath {
            forward: raw.to_owned(),
            decoded: raw.to_owned(),
        });
    }
    canonicalise(raw)
}

/// True for the common path that every step below would leave unchanged: only
/// characters allowed raw, no escape to decode, no `//` to merge and no `/.`
/// that could start a dot segment.
fn is_already_canonical(raw: &[u8]) -> bool {
    raw.iter().all(|&b| is_raw_path_char(b)) && !raw.windows(2).any(|w| w == b"//" || w == b"/.")
}

/// The full walk: escapes, slashes, dot segments, double encoding, decoding.
fn canonicalise(raw: &str) -> Result<CanonPath, CanonError> {
    let normalised = normalise_escapes(raw.as_bytes())?;
    let merged = merge_slashes(&normalised);
    let forward = remove_dot_segments(&merged)?;
    // Checked on the final form so that `%25` followed by hex digits that came from
    // decoding (`%25%34%31` -> `%2541`) is caught as well as literal ones.
    if has_double_encoding(forward.as_bytes()) {
        return Err(CanonError::DoubleEncoding);
    }
    let decoded = percent_decode(&forward)?;
    Ok(CanonPath { forward, decoded })
}

/// Walks the raw path once: refuses bad raw bytes, rewrites every escape canonically.
fn normalise_escapes(raw: &[u8]) -> Result<String, CanonError> {
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if b == b'%' {
            if hex_pair(raw, i + 1).is_some_and(|v| v >= 0x80) {
                i = push_utf8_run(raw, i, &mut out)?;
                continue;
            }
            push_escape(raw, i, &mut out)?;
            i += 3;
        } else {
            push_raw(b, &mut out)?;
            i += 1;
        }
    }
    Ok(out)
}

/// The byte encoded by the two hex digits at `raw[at..at + 2]`, if both are hex digits.
fn hex_pair(raw: &[u8], at: usize) -> Option<u8> {
    let hi = hex_value(*raw.get(at)?)?;
    let lo = hex_value(*raw.get(at + 1)?)?;
    Some(hi << 4 | lo)
}

/// The value of one hex digit, either case.
pub(crate) fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 unreserved: ALPHA, DIGIT, `-`, `.`, `_`, `~`.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Raw ASCII allowed unchanged in the forwarded path: unreserved, sub-delims except `;`,
/// `:`, `@` and `/`.
fn is_raw_path_char(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'/' | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b'='
                | b':'
                | b'@'
        )
}

/// Handles one ASCII `%XX` escape starting at `raw[at]` (the `%`).
fn push_escape(raw: &[u8], at: usize, out: &mut String) -> Result<(), CanonError> {
    let v = hex_pair(raw, at + 1).ok_or(CanonError::BadPercentEncoding)?;
    match v {
        b'/' => Err(CanonError::EncodedSlash),
        b'\\' => Err(CanonError::EncodedBackslash),
        0 => Err(CanonError::EncodedNul),
        0x01..=0x1f | 0x7f => Err(CanonError::EncodedControl),
        b';' => Err(CanonError::EncodedSemicolon),
        b'?' => Err(CanonError::EncodedQuestion),
        b'#' => Err(CanonError::EncodedHash),
        b'%' if hex_pair(raw, at + 3).is_some() => Err(CanonError::DoubleEncoding),
        _ if is_unreserved(v) => {
            out.push(char::from(v));
            Ok(())
        }
        _ => {
            push_encoded(v, out);
            Ok(())
        }
    }
}

/// Handles one raw byte of the path.
fn push_raw(b: u8, out: &mut String) -> Result<(), CanonError> {
    match b {
        b'\\' => Err(CanonError::RawBackslash),
        b';' => Err(CanonError::RawSemicolon),
        b'?' => Err(CanonError::RawQuestion),
        b'#' => Err(CanonError::RawHash),
        0x00..=0x20 | 0x7f => Err(CanonError::RawControl),
        0x80..=0xff => Err(CanonError::RawNonAscii),
        _ if is_raw_path_char(b) => {
            out.push(char::from(b));
            Ok(())
        }
        // `"`, `<`, `>`, `[`, `]`, `^`, `` ` ``, `{`, `|`, `}`: not allowed raw in a path.
        // Upstreams decode them to the same character, so encoding them is lossless and
        // makes the raw and encoded spellings canonicalise identically.
        _ => {
            push_encoded(b, out);
            Ok(())
        }
    }
}

fn push_encoded(v: u8, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(v >> 4)]));
    out.push(char::from(HEX[usize::from(v & 0x0f)]));
}

/// Handles a run of consecutive `%XX` escapes of bytes >= 0x80 starting at `raw[at]`.
/// The run must be valid UTF-8 on its own (std refuses overlong forms, surrogates,
/// truncated sequences and stray continuation bytes) and contain no C1 control.
/// Returns the index just past the run.
fn push_utf8_run(raw: &[u8], at: usize, out: &mut String) -> Result<usize, CanonError> {
    let mut bytes = Vec::new();
    let mut i = at;
    while raw.get(i) == Some(&b'%') {
        match hex_pair(raw, i + 1) {
            Some(v) if v >= 0x80 => bytes.push(v),
            _ => break,
        }
        i += 3;
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| CanonError::InvalidUtf8)?;
    if text.chars().any(char::is_control) {
        return Err(CanonError::EncodedControl);
    }
    for &b in &bytes {
        push_encoded(b, out);
    }
    Ok(i)
}

/// Collapses every run of `/` into one.
fn merge_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

/// RFC 3986 §5.2.4 on a path with no empty segments (slashes already merged), except
/// that climbing above the root is an error. A path ending in `/`, `/.` or `/..` keeps a
/// trailing slash.
fn remove_dot_segments(path: &str) -> Result<String, CanonError> {
    let body = path.strip_prefix('/').ok_or(CanonError::NotOriginForm)?;
    let segments: Vec<&str> = body.split('/').collect();
    let mut kept: Vec<&str> = Vec::with_capacity(segments.len());
    for segment in &segments {
        match *segment {
            "" | "." => {}
            ".." => {
                kept.pop().ok_or(CanonError::AboveRoot)?;
            }
            other => kept.push(other),
        }
    }
    let trailing = matches!(segments.last(), Some(&("" | "." | "..")));
    let mut out = String::with_capacity(path.len());
    out.push('/');
    out.push_str(&kept.join("/"));
    if trailing && !kept.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// True if `%25` is directly followed by two hex digits.
fn has_double_encoding(path: &[u8]) -> bool {
    path.windows(5).any(|w| {
        w.starts_with(b"%25")
            && w.get(3..5)
                .is_some_and(|p| p.iter().all(u8::is_ascii_hexdigit))
    })
}

/// Decodes every `%XX` of an already canonical path; the result must be UTF-8.
fn percent_decode(path: &str) -> Result<String, CanonError> {
    let raw = path.as_bytes();
    let mut bytes = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if b == b'%' {
            bytes.push(hex_pair(raw, i + 1).ok_or(CanonError::BadPercentEncoding)?);
            i += 3;
        } else {
            bytes.push(b);
            i += 1;
        }
    }
    String::from_utf8(bytes).map_err(|_| CanonError::InvalidUtf8)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use CanonError as E;

    type Expected = Result<(&'static str, &'static str), CanonError>;

    /// The shortcut must never disagree with the full walk: every path built
    /// from these pieces that it accepts comes out of the walk unchanged.
    #[test]
    fn the_shortcut_agrees_with_the_full_walk() {
        let pieces = [
            "",
            "a",
            "b.c",
            ".",
            "..",
            ".x",
            "x-y",
            "A~_",
            "p+q",
            "@:",
            "=,!$'()*&",
        ];
        let mut paths = vec![String::from("/")];
        for depth in 1..=3 {
            let mut next = Vec::new();
            for p in paths.iter().filter(|p| p.matches('/').count() == depth) {
                for piece in pieces {
                    next.push(format!("{p}{piece}/"));
                    next.push(format!("{p}{piece}"));
                }
            }
            paths.extend(next.into_iter().filter(|p| p.ends_with('/')));
            paths.extend(
                pieces
                    .iter()
                    .map(|piece| format!("/a/{piece}"))
                    .collect::<Vec<_>>(),
            );
        }
        let mut shortcut = 0;
        for raw in &paths {
            if is_already_canonical(raw.as_bytes()) {
                shortcut += 1;
                let walked = canonicalise(raw).unwrap();
                assert_eq!(
                    (walked.forward(), walked.decoded()),
                    (&**raw, &**raw),
                    "{raw:?}"
                );
            }
        }
        assert!(
            shortcut > 100,
            "only {shortcut} of {} paths took the shortcut",
            paths.len()
        );
        for typical in [
            "/api/method/frappe.client.get_list",
            "/app/sales-invoice/SINV-0001",
            "/",
        ] {
            assert!(is_already_canonical(typical.as_bytes()), "{typical}");
        }
        for not in [
            "/a//b", "/a/./b", "/a/%41", "/a/b/..", "/a\\b", "/a;b", "/a b",
        ] {
            assert!(!is_already_canonical(not.as_bytes()), "{not}");
        }
    }

    fn check_paths(table: &[(&str, Expected)]) {
        for (input, expected) in table {
            let got = canonical_path(input);
            let got = got.as_ref().map(|p| (p.forward(), p.decoded()));
            let want = expected.as_ref().map(|(f, d)| (*f, *d));
            assert_eq!(got, want, "input {input:?}");
        }
    }

    #[test]
    fn path_encoding_bypasses() {
        check_paths(&[
            ("/%61pp/user", Ok(("/app/user", "/app/user"))),
            ("/%41%50%50/%7euser", Ok(("/APP/~user", "/APP/~user"))),
            ("/app%2Fuser", Err(E::EncodedSlash)),
            ("/app%2fuser", Err(E::EncodedSlash)),
            ("/app%5cuser", Err(E::EncodedBackslash)),
            ("/app%5Cuser", Err(E::EncodedBackslash)),
            ("/app%00", Err(E::EncodedNul)),
            ("/app%0a", Err(E::EncodedControl)),
            ("/app%1F", Err(E::EncodedControl)),
            ("/app%7f", Err(E::EncodedControl)),
            ("/app/user%3bx", Err(E::EncodedSemicolon)),
            ("/app/user%3Bx", Err(E::EncodedSemicolon)),
            ("/app%3fx=1", Err(E::EncodedQuestion)),
            ("/app%23frag", Err(E::EncodedHash)),
            ("/a%2cb", Ok(("/a%2Cb", "/a,b"))),
            ("/a%2Cb", Ok(("/a%2Cb", "/a,b"))),
            ("/a%40b%3a", Ok(("/a%40b%3A", "/a@b:"))),
            ("/a%", Err(E::BadPercentEncoding)),
            ("/a%2", Err(E::BadPercentEncoding)),
            ("/a%zz", Err(E::BadPercentEncoding)),
            ("/a%%41", Err(E::BadPercentEncoding)),
        ]);
    }

    #[test]
    fn path_double_encoding() {
        check_paths(&[
            ("/%252e%252e/", Err(E::DoubleEncoding)),
            ("/%2541", Err(E::DoubleEncoding)),
            ("/%252F", Err(E::DoubleEncoding)),
            // Hex digits that only appear after decoding are double encoding too.
            ("/x%25%34%31", Err(E::DoubleEncoding)),
            ("/x%25%41%42", Err(E::DoubleEncoding)),
            ("/100%25", Ok(("/100%25", "/100%"))),
            ("/100%25off", Ok(("/100%25off", "/100%off"))),
            ("/100%25/x", Ok(("/100%25/x", "/100%/x"))),
        ]);
    }

    #[test]
    fn path_dot_segments_and_slashes() {
        check_paths(&[
            ("/api/../app/user", Ok(("/app/user", "/app/user"))),
            ("/app/./user", Ok(("/app/user", "/app/user"))),
            ("/%2e%2e/x", Err(E::AboveRoot)),
            ("/a/%2E%2e/b", Ok(("/b", "/b"))),
            ("/a/.%2E/b", Ok(("/b", "/b"))),
            ("/a/%2e/b", Ok(("/a/b", "/a/b"))),
            ("//app//user", Ok(("/app/user", "/app/user"))),
            (
                "/api//method/login",
                Ok(("/api/method/login", "/api/method/login")),
            ),
            (
                "//evil.example/x",
                Ok(("/evil.example/x", "/evil.example/x")),
            ),
            ("/a//..", Ok(("/", "/"))),
            ("//..", Err(E::AboveRoot)),
            ("/..", Err(E::AboveRoot)),
            ("/../", Err(E::AboveRoot)),
            ("/a/../../b", Err(E::AboveRoot)),
            ("/a/b/../../..", Err(E::AboveRoot)),
            ("/app/", Ok(("/app/", "/app/"))),
            ("/app/x/..", Ok(("/app/", "/app/"))),
            ("/a/.", Ok(("/a/", "/a/"))),
            ("/a/..", Ok(("/", "/"))),
            ("/.", Ok(("/", "/"))),
            ("/", Ok(("/", "/"))),
            ("/...", Ok(("/...", "/..."))),
            ("/a/..b/.c", Ok(("/a/..b/.c", "/a/..b/.c"))),
            ("/App/User", Ok(("/App/User", "/App/User"))),
        ]);
    }

    #[test]
    fn path_raw_characters() {
        check_paths(&[
            ("/app\\user", Err(E::RawBackslash)),
            ("/app/user;x", Err(E::RawSemicolon)),
            ("/app/..;/user", Err(E::RawSemicolon)),
            ("/app user", Err(E::RawControl)),
            ("/app\tuser", Err(E::RawControl)),
            ("/app\0", Err(E::RawControl)),
            ("/app\x7f", Err(E::RawControl)),
            ("/app?x", Err(E::RawQuestion)),
            ("/app#x", Err(E::RawHash)),
            ("/café", Err(E::RawNonAscii)),
            ("/a{b}|c^", Ok(("/a%7Bb%7D%7Cc%5E", "/a{b}|c^"))),
            ("/a!$&'()*+,=:@", Ok(("/a!$&'()*+,=:@", "/a!$&'()*+,=:@"))),
            ("app", Err(E::NotOriginForm)),
            ("*", Err(E::NotOriginForm)),
            ("http://x/", Err(E::NotOriginForm)),
            ("", Err(E::NotOriginForm)),
        ]);
    }

    #[test]
    fn path_utf8() {
        check_paths(&[
            (
                "/api/resource/Sales%20Invoice",
                Ok((
                    "/api/resource/Sales%20Invoice",
                    "/api/resource/Sales Invoice",
                )),
            ),
            ("/caf%C3%A9", Ok(("/caf%C3%A9", "/café"))),
            ("/caf%c3%a9", Ok(("/caf%C3%A9", "/café"))),
            (
                "/%E2%82%AC%F0%9F%98%80",
                Ok(("/%E2%82%AC%F0%9F%98%80", "/€😀")),
            ),
            ("/%C0%AF", Err(E::InvalidUtf8)),
            ("/%C0%AE%C0%AE/x", Err(E::InvalidUtf8)),
            ("/%E0%80%AF", Err(E::InvalidUtf8)),
            ("/%F0%80%80%AF", Err(E::InvalidUtf8)),
            ("/%ED%A0%80", Err(E::InvalidUtf8)),
            ("/%80", Err(E::InvalidUtf8)),
            ("/%C3", Err(E::InvalidUtf8)),
            ("/%C3/", Err(E::InvalidUtf8)),
            ("/%C3%41", Err(E::InvalidUtf8)),
            ("/%F8%88%80%80%80", Err(E::InvalidUtf8)),
            ("/%FF", Err(E::InvalidUtf8)),
            // C1 control (NEL) is a control character even though it is valid UTF-8.
            ("/%C2%85", Err(E::EncodedControl)),
        ]);
    }

    #[test]
    fn forward_is_a_fixed_point() {
        let inputs = [
            "/",
            "/app/user",
            "/%61pp/%75ser/",
            "//a//b//",
            "/a/./b/../c",
            "/a/%2e%2E/b/.",
            "/api/resource/Sales%20Invoice",
            "/caf%c3%a9/%e2%82%ac",
            "/a%2cb%3d%3D",
            "/100%25",
            "/100%25off/x",
            "/a{b}|c^[d]`e`\"<>",
            "/a!$&'()*+,=:@",
            "/~user/.hidden/..x",
            "/A/B/C/../../D",
            "/x%25zz",
        ];
        for input in inputs {
            let first = canonical_path(input).unwrap();
            let second = canonical_path(first.forward()).unwrap();
            assert_eq!(first, second, "input {input:?}");
        }
    }

    #[test]
    fn generated_paths_are_idempotent_and_clean() {
        // Deterministic exhaustive mix of short segments built from tricky pieces.
        let pieces = [
            "a", "%41", "%2e", ".", "..", "%2E%2e", "", "%20", "%C3%A9", "%25", "%7b", "~", "%2c",
        ];
        let mut checked = 0;
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    let input = format!("/{a}/{b}{c}/{c}");
                    let Ok(first) = canonical_path(&input) else {
                        continue;
                    };
                    let second = canonical_path(first.forward()).unwrap();
                    assert_eq!(first, second, "input {input:?}");
                    assert!(first.forward().starts_with('/'));
                    assert!(!first.forward().contains("//"));
                    assert!(first.forward().split('/').all(|s| s != "." && s != ".."));
                    checked += 1;
                }
            }
        }
        assert!(checked > 1000);
    }

    #[test]
    fn never_panics_on_odd_input() {
        let bytes: Vec<char> = (0u8..=127).map(char::from).chain(['é', '\u{0}']).collect();
        for &x in &bytes {
            for &y in &bytes {
                let input = format!("/%{x}{y}/{x}%2{y}");
                let _ = canonical_path(&input);
                let _ = canonical_host(&format!("{x}h{y}:{y}"));
            }
        }
    }

    fn host(name: &str, port: Option<u16>) -> Result<CanonHost, CanonError> {
        Ok(CanonHost {
            name: name.to_owned(),
            port,
        })
    }

    #[test]
    fn authority_names_the_port_only_when_there_is_one() {
        let with = canonical_host("ERP.Example.com:8443").unwrap();
        assert_eq!(with.authority(), "erp.example.com:8443");
        assert_eq!(
            canonical_host("erp.example.com.").unwrap().authority(),
            "erp.example.com"
        );
        assert_eq!(
            canonical_host("[::1]:65535").unwrap().authority(),
            "[::1]:65535"
        );
    }

    #[test]
    fn hosts() {
        let label = "a".repeat(63);
        // 4 * 63 + 3 dots = 255 characters: too long. Three labels plus 61 = 253: fine.
        let too_long = [label.as_str(); 4].join(".");
        let longest = format!("{label}.{label}.{label}.{}", "b".repeat(61));
        let long_label = format!("{}.com", "a".repeat(64));
        let table = [
            ("ERP.Example.COM.", host("erp.example.com", None)),
            ("erp.example.com", host("erp.example.com", None)),
            ("erp.example.com:8443", host("erp.example.com", Some(8443))),
            ("erp.example.com.:443", host("erp.example.com", Some(443))),
            ("[::1]:8443", host("[::1]", Some(8443))),
            ("[::1]", host("[::1]", None)),
            ("[2001:DB8::1]", host("[2001:db8::1]", None)),
            ("127.0.0.1:8000", host("127.0.0.1", Some(8000))),
            ("my_site-1.local", host("my_site-1.local", None)),
            ("a..b", Err(E::InvalidHost)),
            (".a", Err(E::InvalidHost)),
            ("erp.example.com..", Err(E::InvalidHost)),
            (".", Err(E::EmptyHost)),
            ("", Err(E::EmptyHost)),
            (":80", Err(E::EmptyHost)),
            ("user@host", Err(E::HostUserinfo)),
            ("user:pw@host:80", Err(E::HostUserinfo)),
            ("host:", Err(E::InvalidPort)),
            ("host:99999", Err(E::InvalidPort)),
            ("host:65536", Err(E::InvalidPort)),
            ("host:0", Err(E::InvalidPort)),
            ("host:+80", Err(E::InvalidPort)),
            ("host:080808", Err(E::InvalidPort)),
            ("host:80:81", Err(E::InvalidPort)),
            ("host:65535", host("host", Some(65535))),
            ("ho st", Err(E::InvalidHost)),
            ("ho/st", Err(E::InvalidHost)),
            ("ho\\st", Err(E::InvalidHost)),
            ("ho%2est", Err(E::InvalidHost)),
            ("ho\nst", Err(E::InvalidHost)),
            ("hôst", Err(E::InvalidHost)),
            ("::1", Err(E::InvalidPort)),
            ("[::1", Err(E::InvalidHost)),
            ("[::1]x", Err(E::InvalidHost)),
            ("[::1]:", Err(E::InvalidPort)),
            ("[fe80::1%eth0]", Err(E::InvalidHost)),
            ("[example.com]", Err(E::InvalidHost)),
            (too_long.as_str(), Err(E::InvalidHost)),
            (long_label.as_str(), Err(E::InvalidHost)),
            (longest.as_str(), host(&longest, None)),
        ];
        for (input, expected) in table {
            assert_eq!(canonical_host(input), expected, "input {input:?}");
        }
    }
}
