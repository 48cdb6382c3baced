//! erpguard's own pages: the step-up challenge, enrolment and plain messages.
//!
//! Self-contained (no external asset, no script), readable on a phone, with
//! labelled fields, and served with a strict Content-Security-Policy: the one
//! inline style block is allowed by a per-response nonce, forms may only post
//! back here, and no site may frame the page.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::body::{self, ResponseBody};

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;background:#f4f5f7;color:#1f2328}\
main{max-width:26rem;margin:3rem auto;padding:1.5rem;background:#fff;border:1px solid #d0d7de;border-radius:8px}\
h1{font-size:1.3rem;margin-top:0}label{display:block;font-weight:600;margin:1rem 0 .4rem}\
input[type=text]{box-sizing:border-box;width:100%;font-size:1.4rem;padding:.5rem;letter-spacing:.15em;border:1px solid #8c959f;border-radius:6px}\
button{margin-top:1rem;width:100%;font-size:1.1rem;padding:.6rem;border:0;border-radius:6px;background:#0969da;color:#fff}\
.err{color:#b42318;font-weight:600}.hint{color:#57606a;font-size:.9rem}code{word-break:break-all}\
svg{width:100%;max-width:16rem;height:auto;display:block;margin:1rem auto}\
ol{font-family:ui-monospace,monospace;font-size:1.1rem}@media (max-width:30rem){main{margin:0;border:0;border-radius:0}}";

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The challenge form. `error` is shown above the field (our text, escaped anyway).
pub fn challenge(user: &str, csrf: &str, back: &str, error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=\"err\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    format!(
        "<h1>Confirm it is you</h1>\
<p>This is an administrative action. Signed in as <strong>{user}</strong>.</p>{error}\
<form method=\"post\" action=\"{action}\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"return\" value=\"{back}\">\
<label for=\"code\">Code from your authenticator app</label>\
<input type=\"text\" id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" \
autocapitalize=\"off\" spellcheck=\"false\" maxlength=\"40\" required autofocus aria-describedby=\"code-hint\">\
<p id=\"code-hint\" class=\"hint\">Lost your device? Type one of your recovery codes instead.</p>\
<button type=\"submit\">Continue</button></form>",
        user = esc(user),
        action = super::CHALLENGE_PATH,
        csrf = esc(csrf),
        back = esc(back),
    )
}

/// The enrolment page of a one-time link: the QR code, the key for typing,
/// and the field for the first code.
pub fn enrol(
    user: &str,
    svg: &str,
    key: &str,
    csrf: &str,
    token: &str,
    error: Option<&str>,
) -> String {
    let error = error
        .map(|e| format!("<p class=\"err\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    // The renderer's SVG is ours (no user text); drop its XML prolog.
    let svg = svg.find("<svg").map_or("", |i| &svg[i..]);
    format!(
        "<h1>Set up step-up codes</h1>\
<p>For <strong>{user}</strong>. Scan this with your authenticator app:</p>\
<div role=\"img\" aria-label=\"QR code with your TOTP key\">{svg}</div>\
<p class=\"hint\">Or type this key: <code>{key}</code></p>{error}\
<form method=\"post\" action=\"{action}\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"token\" value=\"{token}\">\
<label for=\"code\">The code your app shows now</label>\
<input type=\"text\" id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" maxlength=\"12\" required autofocus>\
<button type=\"submit\">Confirm</button></form>",
        user = esc(user),
        key = esc(key),
        action = super::ENROL_PATH,
        csrf = esc(csrf),
        token = esc(token),
    )
}

/// The recovery codes, shown once after an enrolment is confirmed.
pub fn recovery_codes(codes: &[String]) -> String {
    let items: String = codes
        .iter()
        .map(|c| format!("<li>{}</li>", esc(c)))
        .collect();
    format!(
        "<h1>Step-up codes are set up</h1>\
<p>Keep these recovery codes somewhere safe. Each works once, if you lose your device. \
They are shown only now.</p><ol>{items}</ol><p><a href=\"/\">Continue</a></p>"
    )
}

/// A page with a heading and a sentence.
pub fn message(title: &str, text: &str) -> String {
    format!("<h1>{}</h1><p>{}</p>", esc(title), esc(text))
}

/// The full response for a page body.
pub fn respond(status: StatusCode, title: &str, main: &str) -> Response<ResponseBody> {
    let nonce = crate::stepup::cookie::new_id();
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title}</title><style nonce=\"{nonce}\">{STYLE}</style></head>\
<body><main>{main}</main></body></html>\n",
        title = esc(title),
    );
    let csp = format!(
        "default-src 'none'; style-src 'nonce-{nonce}'; img-src data:; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    let mut resp = Response::new(body::full(Bytes::from(html)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The page's URL may carry a link token or a return path: never leak it.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_text_is_escaped() {
        let html = challenge("<script>x</script>", "t", "/app?a=1&b=\"2\"", None);
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("/app?a=1&amp;b=&quot;2&quot;"));
    }
}
