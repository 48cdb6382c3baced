//! Request parameters, read exactly the way each upstream app reads them.
//!
//! erpguard judges logins (`cmd=login`, `usr`, `email`) and RPC targets (`cmd`, `_method`) from
//! request parameters, so it must see the parameters the app will act on, not a generic parse:
//!
//! - [`frappe`] rebuilds Frappe's `frappe.form_dict` (`make_form_dict` in `frappe/app.py`, over
//!   werkzeug's `request.args` / `request.form` / `get_data`).
//! - [`laravel`] rebuilds Laravel's `$request->input()` (PHP's `$_GET` / `$_POST`, Symfony's body
//!   parsing for PUT/PATCH/DELETE, Laravel's JSON bag).
//! - [`laravel_method`] rebuilds the method Symfony routes on after the `_method` override.
//!
//! What this module promises:
//! - **Fail closed.** A body the app would read but that cannot be read *unambiguously* is an
//!   error, never "no parameters": invalid JSON, broken multipart, an ambiguous `Content-Type`, more
//!   than [`MAX_FIELDS`] fields in one source. Where the apps' own parsers (werkzeug, PHP's
//!   `rfc1867.c`) could disagree with each other or with us on an odd but well-formed input (LF-only
//!   lines, RFC 2231 names, single quotes, text around a boundary), the input is rejected rather
//!   than guessed at.
//! - **No panics** on any input, and no `unwrap`/`expect` outside tests.
//! - Names are exact and case-sensitive, as in both apps. Values are text: JSON values that are
//!   not strings appear as their compact JSON (object keys sorted).
//! - [`Params`]' `Debug` never prints values: they include passwords and tokens.
//!
//! Known simplifications are listed on each reader.

use std::collections::HashMap;
use std::fmt;

use http::header::CONTENT_TYPE;
use http::{HeaderMap, Method};
use serde_json::Value;

use crate::canon::hex_value;

/// The most fields one source (query string, form body, top-level JSON object or array) may
/// carry; more is [`ParamError::TooManyFields`]. werkzeug's `max_form_parts` and PHP's
/// `max_input_vars` both default to 1000 (PHP silently drops the rest, which we refuse to guess).
pub const MAX_FIELDS: usize = 1000;

/// werkzeug accepts boundaries up to 200 characters (RFC 2046 says 70).
const MAX_BOUNDARY_LEN: usize = 200;
const JSON: &str = "application/json";
const URLENCODED: &str = "application/x-www-form-urlencoded";
const MULTIPART: &str = "multipart/form-data";

/// What the app holds for one parameter, beyond its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A string.
    Text,
    /// A JSON number, boolean or null.
    Scalar,
    /// A JSON object or array, or a PHP array (`a[]=x`).
    Compound,
}

#[derive(Clone, PartialEq, Eq)]
struct Entry {
    name: String,
    value: String,
    shape: Shape,
}

impl Entry {
    fn text(name: String, value: String) -> Self {
        Self {
            name,
            value,
            shape: Shape::Text,
        }
    }
}

/// Parameters as the app sees them: name → one value, in first-seen order. Which source wins
/// and which repeated value is kept is documented on each reader.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Params {
    entries: Vec<Entry>,
}

impl Params {
    /// The value of `name` (exact, case-sensitive), if the app has that parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entry(name).map(|e| e.value.as_str())
    }

    /// Whether the app has a parameter called exactly `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.entry(name).is_some()
    }

    /// All `(name, value)` pairs, in first-seen order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .map(|e| (e.name.as_str(), e.value.as_str()))
    }

    /// How many parameters there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn entry(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }
}

impl fmt::Debug for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values carry `pwd`, `password`, `_token`, `otp`: show names and sizes only.
        let mut map = f.debug_map();
        for e in &self.entries {
            map.entry(&e.name, &format_args!("<{} bytes>", e.value.len()));
        }
        map.finish()
    }
}

/// What a body is, from its `Content-Type`, as werkzeug (Frappe) classifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyKind {
    /// No body bytes, whatever the `Content-Type`.
    Empty,
    /// `application/json` or `application/*+json`.
    Json,
    /// `application/x-www-form-urlencoded`.
    UrlEncoded,
    /// `multipart/form-data`; `boundary` is empty when it is missing or ambiguous, which the
    /// readers reject.
    Multipart {
        /// The boundary parameter, unquoted.
        boundary: String,
    },
    /// Anything else, including no `Content-Type` and an ambiguous one (several headers, or
    /// bytes that are not visible ASCII), which [`frappe`] and [`laravel`] reject.
    Other,
}

/// Why parameters could not be read. Each of these means "the gateway cannot know what the app
/// will see": treat it as a rejected request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// Several `Content-Type` headers, or one that is not visible ASCII.
    #[error("ambiguous Content-Type header")]
    AmbiguousContentType,
    /// The body is declared JSON and does not parse.
    #[error("JSON body does not parse")]
    InvalidJson,
    /// The JSON body is a string, number, boolean or null.
    #[error("JSON body is not an object or an array")]
    JsonNotObjectOrArray,
    /// An urlencoded body that is not UTF-8, which werkzeug 3 answers with 413.
    #[error("urlencoded body is not UTF-8")]
    InvalidUrlEncoded,
    /// The multipart body is malformed or could be split two ways.
    #[error("multipart body cannot be read unambiguously: {0}")]
    InvalidMultipart(String),
    /// One source carries more than [`MAX_FIELDS`] fields.
    #[error("more than 1000 fields in one parameter source")]
    TooManyFields,
    /// `_method` is not a plain token (Symfony answers 400), or is an array or object.
    #[error("invalid _method override {0}")]
    BadMethodOverride(String),
    /// The request method has lower-case letters, which PHP and the SAPI read differently.
    #[error("non-canonical request method {0}")]
    NonCanonicalMethod(String),
}

/// Whether the body is one the apps read parameters from (JSON, a form or
/// multipart), so that a parameter may hide in it.
pub fn has_parameter_body(headers: &HeaderMap) -> bool {
    matches!(
        body_kind(headers, 1),
        BodyKind::Json | BodyKind::UrlEncoded | BodyKind::Multipart { .. }
    )
}

/// werkzeug's view of the body (Frappe), from `Content-Type` and the body length.
pub fn body_kind(headers: &HeaderMap, body_len: usize) -> BodyKind {
    if body_len == 0 {
        return BodyKind::Empty;
    }
    content_type(headers).map_or(BodyKind::Other, werkzeug_kind)
}

/// Frappe's `frappe.form_dict`, as `make_form_dict` builds it.
///
/// - A non-empty body whose mimetype is `application/json` or `application/*+json` (werkzeug's
///   `is_json`) is the parameters **alone**; the query string is ignored. A top-level object
///   gives its keys; a top-level array is the single key `data`; anything else is an error.
///   The body is decoded as UTF-8 with replacement first (`get_data(as_text=True)`).
/// - Otherwise the query string merged with the form fields (urlencoded, or multipart text
///   parts; parts with a `filename` are files). A form field wins over a query parameter, and
///   within one source the first of repeated keys wins (werkzeug `MultiDict` into a `dict`).
///   Other bodies are not read. Bodies are read for every method, GET included.
/// - The jQuery cache-buster `_` is dropped.
///
/// Simplification: invalid UTF-8 in percent-escapes is replaced by U+FFFD (werkzeug 2.x); 3.x
/// keeps it as `%XX` text. Only non-ASCII names and values differ.
pub fn frappe(query: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Result<Params, ParamError> {
    let kind = if body.is_empty() {
        BodyKind::Empty
    } else {
        werkzeug_kind(content_type(headers)?)
    };
    let args = match kind {
        BodyKind::Json => Builder::from_entries(frappe_json(body)?, Repeat::KeepLast),
        other => frappe_forms(query, &other, body)?,
    };
    let mut params = args.into_params();
    // make_form_dict: `frappe.local.form_dict.pop("_", None)` (jQuery's cache-buster).
    params.entries.retain(|e| e.name != "_");
    Ok(params)
}

/// Laravel's `$request->input()`: the body source, then query keys the body lacks.
///
/// - A `Content-Type` containing `/json` or `+json` anywhere (Laravel's `isJson()`,
///   case-sensitive) makes the JSON body the source, for every method. Object keys as they are;
///   a top-level array gives keys `0`, `1`, ...; a scalar is an error (Laravel would read
///   `[0 => value]` or nothing); invalid JSON is an error (Laravel would read nothing).
/// - Otherwise, for POST, PHP's `$_POST`: urlencoded or multipart text parts. For PUT, PATCH
///   and DELETE, Symfony parses an `application/x-www-form-urlencoded` body only (PHP does not
///   parse multipart for them). GET, HEAD and other methods read no body.
/// - The body wins over the query string (`$source->all() + $this->query->all()`); within one
///   source the last of repeated keys wins (PHP).
/// - Names follow PHP: leading spaces dropped, spaces and dots become `_`, a NUL ends the name.
///
/// Simplifications: `a[]=x` and `a[k]=x` keep the key verbatim (`a[]`, `a[k]`, last value)
/// rather than building PHP arrays; global middleware (`TrimStrings`,
/// `ConvertEmptyStringsToNull`) is not applied.
pub fn laravel(
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
    method: &Method,
) -> Result<Params, ParamError> {
    check_canonical(method)?;
    let body_entries = laravel_body(headers, body, method)?;
    let query_entries = php_urlencoded(query.unwrap_or_default().as_bytes())?;
    let mut input = Builder::from_entries(body_entries, Repeat::KeepLast);
    input.merge(
        Builder::from_entries(query_entries, Repeat::KeepLast),
        Repeat::KeepFirst,
    );
    Ok(input.into_params())
}

/// The method Laravel routes on (Symfony `Request::getMethod()`).
///
/// `input` must be [`laravel`]'s result for the same request: for a real POST the override is
/// `_method` from the body (form or JSON), else from the query, which is exactly what `input`
/// holds under `_method`. It is upper-cased; anything but `A-Z` is an error (Symfony throws
/// `SuspiciousOperationException`, a 400), and so is an array or object (`BadRequestException`).
/// A JSON number, boolean or null is not a string, so Symfony keeps POST. Other real methods
/// are returned unchanged. Headers (`X-HTTP-Method-Override`) are the gateway's business.
///
/// Simplification: an empty or space-padded `_method` is an error, though on web routes
/// Laravel's middleware would first turn it into POST or trim it.
pub fn laravel_method(real: &Method, input: &Params) -> Result<Method, ParamError> {
    check_canonical(real)?;
    if *real != Method::POST {
        return Ok(real.clone());
    }
    match input.entry("_method") {
        None => Ok(Method::POST),
        Some(e) => match e.shape {
            Shape::Scalar => Ok(Method::POST),
            Shape::Compound => Err(ParamError::BadMethodOverride(shown(&e.value))),
            Shape::Text => override_method(&e.value),
        },
    }
}

fn override_method(value: &str) -> Result<Method, ParamError> {
    // Symfony: strtoupper($method), then preg_match('/^[A-Z]++$/D') or throw. PHP 8's
    // strtoupper is ASCII-only, as is to_ascii_uppercase.
    let upper = value.to_ascii_uppercase();
    if upper.is_empty() || !upper.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ParamError::BadMethodOverride(shown(value)));
    }
    Method::from_bytes(upper.as_bytes()).map_err(|_| ParamError::BadMethodOverride(shown(value)))
}

fn check_canonical(method: &Method) -> Result<(), ParamError> {
    // PHP upper-cases REQUEST_METHOD for Symfony ("post" is POST, so `_method` applies) but the
    // SAPI parses $_POST only for exactly "POST": a lower-case method is read two ways.
    if method.as_str().bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(ParamError::NonCanonicalMethod(shown(method.as_str())));
    }
    Ok(())
}

/// A short, escaped copy of attacker-controlled text for an error message.
fn shown(text: &str) -> String {
    text.chars()
        .take(40)
        .flat_map(char::escape_default)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Building parameter sets
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Repeat {
    KeepFirst,
    KeepLast,
}

/// An ordered name → entry map; a replaced entry keeps its first position, like a Python `dict`
/// or a PHP array.
///
/// Names are found by a scan while there are few of them (a typical RPC has under a dozen,
/// and a scan beats hashing and copying each name); past [`SCAN_LIMIT`] an index is built,
/// so a body with [`MAX_FIELDS`] names costs no more than linear time.
#[derive(Default)]
struct Builder {
    entries: Vec<Entry>,
    index: Option<HashMap<String, usize>>,
}

/// How many names a [`Builder`] scans before it indexes them.
const SCAN_LIMIT: usize = 16;

impl Builder {
    fn from_entries(entries: Vec<Entry>, repeat: Repeat) -> Self {
        let mut builder = Self::default();
        for entry in entries {
            builder.insert(entry, repeat);
        }
        builder
    }

    fn position(&self, name: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(name).copied(),
            None => self.entries.iter().position(|e| e.name == name),
        }
    }

    fn insert(&mut self, entry: Entry, repeat: Repeat) {
        match self.position(&entry.name) {
            Some(at) => {
                if let (Repeat::KeepLast, Some(slot)) = (repeat, self.entries.get_mut(at)) {
                    *slot = entry;
                }
            }
            None => {
                if let Some(index) = &mut self.index {
                    index.insert(entry.name.clone(), self.entries.len());
                }
                self.entries.push(entry);
                if self.index.is_none() && self.entries.len() > SCAN_LIMIT {
                    let index = self.entries.iter().enumerate();
                    self.index = Some(index.map(|(i, e)| (e.name.clone(), i)).collect());
                }
            }
        }
    }

    fn merge(&mut self, other: Self, repeat: Repeat) {
        for entry in other.entries {
            self.insert(entry, repeat);
        }
    }

    fn into_params(self) -> Params {
        Params {
            entries: self.entries,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Content-Type
// ---------------------------------------------------------------------------------------------

/// The request's single `Content-Type` ("" when absent).
fn content_type(headers: &HeaderMap) -> Result<&str, ParamError> {
    let mut values = headers.get_all(CONTENT_TYPE).iter();
    let Some(first) = values.next() else {
        return Ok("");
    };
    // gunicorn and PHP-FPM front-ends disagree on repeated Content-Type: refuse to pick one.
    if values.next().is_some() {
        return Err(ParamError::AmbiguousContentType);
    }
    first.to_str().map_err(|_| ParamError::AmbiguousContentType)
}

fn werkzeug_kind(content_type: &str) -> BodyKind {
    // werkzeug `mimetype`: the part before the first `;`, stripped, lower-cased.
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    // werkzeug `is_json`: application/json or application/*+json.
    if mime == JSON || (mime.starts_with("application/") && mime.ends_with("+json")) {
        BodyKind::Json
    } else if mime == URLENCODED {
        BodyKind::UrlEncoded
    } else if mime == MULTIPART {
        BodyKind::Multipart {
            boundary: multipart_boundary(content_type).unwrap_or_default(),
        }
    } else {
        BodyKind::Other
    }
}

/// PHP's SAPI mimetype (`sapi_read_post_data`): lower-cased, cut at the first `;`, `,` or space.
fn php_mimetype(content_type: &str) -> String {
    content_type
        .split([';', ',', ' '])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// The multipart boundary, when werkzeug and PHP must both read the same one.
fn multipart_boundary(content_type: &str) -> Option<String> {
    let (_, rest) = content_type.split_once(';')?;
    let mut boundaries = parse_params(rest)?
        .into_iter()
        .filter(|(key, _)| key == "boundary");
    let (_, boundary) = boundaries.next()?;
    // werkzeug parses `;`-parameters; PHP does its own scan. Use the boundary only when the
    // parameter is unique and PHP finds the very same text.
    let agreed =
        boundaries.next().is_none() && php_boundary(content_type) == Some(boundary.as_str());
    (agreed && valid_boundary(&boundary)).then_some(boundary)
}

/// PHP's boundary (`rfc1867_post_handler`, main/rfc1867.c): the first "boundary" (case-sensitive,
/// else case-insensitive) anywhere in the header, the first `=` after it, then a quoted string
/// or everything up to `,` or `;`.
fn php_boundary(content_type: &str) -> Option<&str> {
    let at = content_type
        .find("boundary")
        .or_else(|| content_type.to_ascii_lowercase().find("boundary"))?;
    let after = content_type.get(at..)?;
    let (_, value) = after.split_once('=')?;
    match value.strip_prefix('"') {
        Some(quoted) => quoted.split_once('"').map(|(boundary, _)| boundary),
        None => value.split([',', ';']).next(),
    }
}

/// RFC 2046 `bchars`, 1 to 200 of them, not ending in a space.
fn valid_boundary(boundary: &str) -> bool {
    (1..=MAX_BOUNDARY_LEN).contains(&boundary.len())
        && !boundary.ends_with(' ')
        && boundary
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&b))
}

/// Strict `; key=value` parameters (RFC 9110 §5.6.6), keys lower-cased. `None` when anything
/// could be read two ways: quoted-pairs, whitespace around `=`, junk after a value, a `'` in a
/// key, or an odd number of `'` in a bare value (PHP's `php_ap_getword` treats `'` as a quote
/// and would split the header elsewhere).
fn parse_params(mut rest: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    loop {
        rest = rest.trim_start_matches([' ', '\t']);
        if rest.is_empty() {
            return Some(out);
        }
        let (key, after) = rest.split_once('=')?;
        if key.is_empty() || !key.bytes().all(|b| is_token_byte(b) && b != b'\'') {
            return None;
        }
        let (value, after) = parse_value(after)?;
        out.push((key.to_ascii_lowercase(), value.to_owned()));
        let after = after.trim_start_matches([' ', '\t']);
        rest = match after.strip_prefix(';') {
            Some(next) => next,
            None if after.is_empty() => after,
            None => return None,
        };
    }
}

/// One parameter value, quoted (without escapes) or a token; returns it and what follows.
fn parse_value(text: &str) -> Option<(&str, &str)> {
    if let Some(quoted) = text.strip_prefix('"') {
        let (value, after) = quoted.split_once('"')?;
        return (!value.contains('\\')).then_some((value, after));
    }
    let end = text.find([';', ' ', '\t']).unwrap_or(text.len());
    let (value, after) = text.split_at_checked(end)?;
    let quotes = value.bytes().filter(|&b| b == b'\'').count();
    let ok = !value.is_empty() && value.bytes().all(is_token_byte) && quotes % 2 == 0;
    ok.then_some((value, after))
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

// ---------------------------------------------------------------------------------------------
// Frappe
// ---------------------------------------------------------------------------------------------

fn frappe_json(body: &[u8]) -> Result<Vec<Entry>, ParamError> {
    // werkzeug get_data(as_text=True) decodes with errors="replace" before json.loads.
    let text = String::from_utf8_lossy(body);
    match serde_json::from_str::<Value>(&text).map_err(|_| ParamError::InvalidJson)? {
        Value::Object(map) => object_entries(map),
        // make_form_dict: `elif isinstance(args, list): form_dict["data"] = args`.
        array @ Value::Array(_) => Ok(vec![json_entry("data".to_owned(), array)?]),
        // make_form_dict: frappe.throw(_("Invalid request arguments")).
        _ => Err(ParamError::JsonNotObjectOrArray),
    }
}

/// `args = {}; args.update(request.args); args.update(request.form)`.
fn frappe_forms(query: Option<&str>, kind: &BodyKind, body: &[u8]) -> Result<Builder, ParamError> {
    let query_entries = text_entries(urlencoded(query.unwrap_or_default().as_bytes())?);
    // werkzeug parses a form for every method; any other body is not a form.
    let form_entries = match kind {
        BodyKind::UrlEncoded => {
            // werkzeug 3 `_parse_urlencoded`: `stream.read().decode()` (strict), and a
            // ValueError becomes RequestEntityTooLarge.
            let text = std::str::from_utf8(body).map_err(|_| ParamError::InvalidUrlEncoded)?;
            text_entries(urlencoded(text.as_bytes())?)
        }
        BodyKind::Multipart { boundary } => werkzeug_multipart(body, boundary)?,
        _ => Vec::new(),
    };
    // dict.update(MultiDict) takes each key's first value; the form update overwrites.
    let mut args = Builder::from_entries(query_entries, Repeat::KeepFirst);
    args.merge(
        Builder::from_entries(form_entries, Repeat::KeepFirst),
        Repeat::KeepLast,
    );
    Ok(args)
}

fn werkzeug_multipart(body: &[u8], boundary: &str) -> Result<Vec<Entry>, ParamError> {
    let mut out = Vec::new();
    for part in split_multipart(body, boundary)? {
        let head = part_head(&part.headers)?;
        if !head.is_file {
            let value = werkzeug_text(part.data, head.content_type.as_deref())?;
            out.push(Entry::text(head.name, value));
        }
    }
    Ok(out)
}

/// werkzeug 3 `MultiPartParser.get_part_charset`: ascii, us-ascii, iso-8859-1 or utf-8 (the
/// default for anything else), decoded with errors="replace".
fn werkzeug_text(data: &[u8], content_type: Option<&str>) -> Result<String, ParamError> {
    let charset = match content_type.map(|ct| ct.split_once(';').map_or("", |(_, rest)| rest)) {
        Some(rest) => parse_params(rest)
            .ok_or_else(|| bad_multipart("unreadable part Content-Type"))?
            .into_iter()
            .find_map(|(key, value)| (key == "charset").then(|| value.to_ascii_lowercase())),
        None => None,
    };
    Ok(match charset.as_deref() {
        Some("ascii" | "us-ascii") => data
            .iter()
            .map(|&b| {
                if b.is_ascii() {
                    char::from(b)
                } else {
                    '\u{FFFD}'
                }
            })
            .collect(),
        Some("iso-8859-1") => data.iter().map(|&b| char::from(b)).collect(),
        _ => String::from_utf8_lossy(data).into_owned(),
    })
}

// ---------------------------------------------------------------------------------------------
// Laravel / PHP
// ---------------------------------------------------------------------------------------------

/// Laravel's `getInputSource()`: the JSON bag, `$request->request`, or nothing (GET/HEAD read
/// the query, which [`laravel`] adds anyway).
fn laravel_body(
    headers: &HeaderMap,
    body: &[u8],
    method: &Method,
) -> Result<Vec<Entry>, ParamError> {
    // Empty content: json() decodes '[]', and PHP/Symfony parse nothing.
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let content_type = content_type(headers)?;
    // Illuminate\Http\Concerns\InteractsWithContentTypes::isJson().
    if content_type.contains("/json") || content_type.contains("+json") {
        return laravel_json(body);
    }
    if *method == Method::POST {
        php_post_body(content_type, body)
    } else if matches!(*method, Method::PUT | Method::PATCH | Method::DELETE)
        // Symfony Request::createFromGlobals: str_starts_with(CONTENT_TYPE, 'application/x-www-form-urlencoded')
        // for PUT/DELETE/PATCH, then parse_str(getContent()).
        && content_type.starts_with(URLENCODED)
    {
        php_urlencoded(body)
    } else {
        Ok(Vec::new())
    }
}

/// PHP's `$_POST`: the SAPI's urlencoded and multipart handlers, chosen by PHP's mimetype.
fn php_post_body(content_type: &str, body: &[u8]) -> Result<Vec<Entry>, ParamError> {
    match php_mimetype(content_type).as_str() {
        URLENCODED => php_urlencoded(body),
        MULTIPART => php_multipart(body, &multipart_boundary(content_type).unwrap_or_default()),
        _ => Ok(Vec::new()),
    }
}

fn laravel_json(body: &[u8]) -> Result<Vec<Entry>, ParamError> {
    // json_decode rejects invalid UTF-8 (Laravel then sees nothing): strict, and an error here.
    match serde_json::from_slice::<Value>(body).map_err(|_| ParamError::InvalidJson)? {
        Value::Object(map) => object_entries(map),
        // (array) json_decode(..., true) of a list: integer keys 0, 1, ...
        Value::Array(items) => {
            if items.len() > MAX_FIELDS {
                return Err(ParamError::TooManyFields);
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| json_entry(i.to_string(), v))
                .collect()
        }
        _ => Err(ParamError::JsonNotObjectOrArray),
    }
}

fn php_urlencoded(input: &[u8]) -> Result<Vec<Entry>, ParamError> {
    Ok(urlencoded(input)?
        .into_iter()
        .filter_map(|(name, value)| php_entry(&name, value))
        .collect())
}

fn php_multipart(body: &[u8], boundary: &str) -> Result<Vec<Entry>, ParamError> {
    let mut out = Vec::new();
    for part in split_multipart(body, boundary)? {
        let head = part_head(&part.headers)?;
        // rfc1867.c: a part with a filename goes to $_FILES, not $_POST.
        if !head.is_file {
            let value = String::from_utf8_lossy(part.data).into_owned();
            out.extend(php_entry(&head.name, value));
        }
    }
    Ok(out)
}

fn php_entry(raw_name: &str, value: String) -> Option<Entry> {
    php_key(raw_name).map(|(name, shape)| Entry { name, value, shape })
}

/// PHP's variable-name rules (`php_register_variable_ex`, main/php_variables.c) for one
/// percent-decoded name. `None` when PHP drops the variable.
fn php_key(raw: &str) -> Option<(String, Shape)> {
    // The name is a C string: it ends at the first NUL.
    let raw = raw.split('\0').next().unwrap_or_default();
    // "ignore leading spaces in the variable name".
    let unmangled = raw.trim_start_matches(' ');
    let (head, bracket) = unmangled.split_at(unmangled.find('[').unwrap_or(unmangled.len()));
    // Spaces and dots become `_`, up to the first `[`.
    let base = replace_chars(head, &[' ', '.']);
    let made_prefix = ["__Host-", "__Secure-"]
        .iter()
        .any(|p| base.starts_with(p) && !unmangled.starts_with(p));
    // Empty names are dropped, and so are names that mangling turned into __Host-/__Secure-.
    if base.is_empty() || made_prefix {
        return None;
    }
    match bracket.strip_prefix('[') {
        None => Some((base, Shape::Text)),
        // An index: PHP builds an array; we keep the key verbatim (documented on `laravel`).
        Some(after) if after.contains(']') => Some((format!("{base}{bracket}"), Shape::Compound)),
        // "not an index; un-terminate the var name": `[` and later ` `, `.`, `[` become `_`.
        Some(after) => Some((
            format!("{base}_{}", replace_chars(after, &[' ', '.', '['])),
            Shape::Text,
        )),
    }
}

fn replace_chars(text: &str, from: &[char]) -> String {
    text.chars()
        .map(|c| if from.contains(&c) { '_' } else { c })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Shared decoders
// ---------------------------------------------------------------------------------------------

/// `&`-separated `name=value` pairs: `+` is a space, `%XX` is a byte, then UTF-8 with
/// replacement. Python's `parse_qsl(keep_blank_values=True)` and PHP's `php_url_decode` agree on
/// all of it; empty pieces are skipped by both.
fn urlencoded(input: &[u8]) -> Result<Vec<(String, String)>, ParamError> {
    let pieces = input.split(|&b| b == b'&').filter(|p| !p.is_empty());
    let mut out = Vec::with_capacity(8);
    for piece in pieces {
        if out.len() == MAX_FIELDS {
            return Err(ParamError::TooManyFields);
        }
        let mut halves = piece.splitn(2, |&b| b == b'=');
        let name = halves.next().unwrap_or_default();
        let value = halves.next().unwrap_or_default();
        out.push((form_decode(name), form_decode(value)));
    }
    Ok(out)
}

/// One form-encoded name or value: `+` is a space, `%XX` with two hex digits
/// is that byte (any other `%` stays), then UTF-8 with replacement; exactly
/// `form_urlencoded`'s reading (a test holds the two together), in one pass
/// and one allocation, since every inspected body goes through here.
fn form_decode(input: &[u8]) -> String {
    let mut out = Vec::with_capacity(input.len());
    let mut rest = input;
    // Runs without `%` or `+` are copied whole; most names and values are one.
    while let Some(at) = rest.iter().position(|&b| b == b'%' || b == b'+') {
        let (run, special) = rest.split_at(at);
        out.extend_from_slice(run);
        let (byte, used) = match special {
            [b'+', ..] => (b' ', 1),
            [b'%', hi, lo, ..] => match (hex_value(*hi), hex_value(*lo)) {
                (Some(hi), Some(lo)) => (hi << 4 | lo, 3),
                _ => (b'%', 1),
            },
            _ => (b'%', 1),
        };
        out.push(byte);
        rest = special.get(used..).unwrap_or_default();
    }
    out.extend_from_slice(rest);
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn text_entries(pairs: Vec<(String, String)>) -> Vec<Entry> {
    pairs
        .into_iter()
        .map(|(name, value)| Entry::text(name, value))
        .collect()
}

fn object_entries(map: serde_json::Map<String, Value>) -> Result<Vec<Entry>, ParamError> {
    if map.len() > MAX_FIELDS {
        return Err(ParamError::TooManyFields);
    }
    map.into_iter()
        .map(|(name, value)| json_entry(name, value))
        .collect()
}

/// Strings as they are; anything else as compact JSON.
fn json_entry(name: String, value: Value) -> Result<Entry, ParamError> {
    let shape = match &value {
        Value::String(_) => Shape::Text,
        Value::Array(_) | Value::Object(_) => Shape::Compound,
        Value::Null | Value::Bool(_) | Value::Number(_) => Shape::Scalar,
    };
    let value = match value {
        Value::String(text) => text,
        other => serde_json::to_string(&other).map_err(|_| ParamError::InvalidJson)?,
    };
    Ok(Entry { name, value, shape })
}

// ---------------------------------------------------------------------------------------------
// Multipart
// ---------------------------------------------------------------------------------------------

fn bad_multipart(why: &str) -> ParamError {
    ParamError::InvalidMultipart(why.to_owned())
}

/// One part: its header lines (names lower-cased) and its data.
struct RawPart<'a> {
    headers: Vec<(String, String)>,
    data: &'a [u8],
}

/// Splits a multipart body on a framing that werkzeug, PHP and we all read the same way.
///
/// werkzeug and PHP accept LF-only lines, a preamble, text after the close delimiter and
/// boundary text mid-line, each in their own way (PHP even ends a part at `\n--boundary` followed
/// by anything). Those are how one body is split two ways, so they are refused: the body starts
/// with the delimiter, every occurrence of `--boundary` is at the start of a CRLF line and is a
/// real delimiter, part headers use CRLF only, and only whitespace follows the close delimiter.
fn split_multipart<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<RawPart<'a>>, ParamError> {
    if !valid_boundary(boundary) {
        return Err(bad_multipart("missing, ambiguous or invalid boundary"));
    }
    let delimiter = format!("--{boundary}").into_bytes();
    let hits = delimiter_positions(body, &delimiter)?;
    let Some(&last) = hits.last() else {
        return Err(bad_multipart("no boundary in the body"));
    };
    check_close(body, last + delimiter.len())?;
    let mut parts = Vec::with_capacity(hits.len().saturating_sub(1));
    for pair in hits.windows(2) {
        if let &[start, next] = pair {
            // The CRLF before the next delimiter belongs to the delimiter (RFC 2046).
            let end = next
                .checked_sub(2)
                .ok_or_else(|| bad_multipart("empty part"))?;
            parts.push(raw_part(body, start + delimiter.len(), end)?);
        }
    }
    Ok(parts)
}

/// Every occurrence of the delimiter; each must open a line, the first must open the body.
fn delimiter_positions(body: &[u8], delimiter: &[u8]) -> Result<Vec<usize>, ParamError> {
    let mut hits: Vec<usize> = Vec::new();
    for at in Matches::new(body, delimiter) {
        if hits.is_empty() && at != 0 {
            return Err(bad_multipart("data before the first boundary"));
        }
        let line_start = at == 0 || (at >= 2 && body.get(at - 2..at) == Some(&b"\r\n"[..]));
        if !line_start {
            return Err(bad_multipart("boundary text inside a line"));
        }
        // n parts take n + 1 delimiters.
        if hits.len() > MAX_FIELDS {
            return Err(ParamError::TooManyFields);
        }
        hits.push(at);
    }
    Ok(hits)
}

/// The last delimiter must be the close delimiter, followed by whitespace only.
fn check_close(body: &[u8], after_delimiter: usize) -> Result<(), ParamError> {
    let tail = body.get(after_delimiter..).unwrap_or_default();
    match tail.strip_prefix(b"--") {
        Some(epilogue) if epilogue.iter().all(u8::is_ascii_whitespace) => Ok(()),
        _ => Err(bad_multipart(
            "the body does not end with the close delimiter",
        )),
    }
}

/// The part between the end of a delimiter (`from`) and the CRLF before the next one (`to`).
fn raw_part(body: &[u8], from: usize, to: usize) -> Result<RawPart<'_>, ParamError> {
    let segment = body
        .get(from..to)
        .ok_or_else(|| bad_multipart("empty part"))?;
    // Transport padding, then the CRLF that ends the delimiter line; a "--" here would be a
    // close delimiter before the end of the body.
    let padding = segment
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    let segment = segment.get(padding..).unwrap_or_default();
    let Some(segment) = segment.strip_prefix(b"\r\n") else {
        return Err(bad_multipart("a delimiter line does not end in CRLF"));
    };
    let (head, data) = if let Some(data) = segment.strip_prefix(b"\r\n") {
        (&b""[..], data)
    } else {
        let end = segment
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| bad_multipart("part headers do not end"))?;
        (
            segment.get(..end).unwrap_or_default(),
            segment.get(end + 4..).unwrap_or_default(),
        )
    };
    Ok(RawPart {
        headers: part_headers(head)?,
        data,
    })
}

/// `Name: value` lines separated by CRLF; no bare CR or LF, no folding.
fn part_headers(head: &[u8]) -> Result<Vec<(String, String)>, ParamError> {
    if head.is_empty() {
        return Ok(Vec::new());
    }
    let text = String::from_utf8_lossy(head);
    text.split("\r\n")
        .map(|line| {
            if line.contains(['\r', '\n']) {
                return Err(bad_multipart("bare CR or LF in part headers"));
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| bad_multipart("malformed part header"))?;
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(bad_multipart("malformed part header name"));
            }
            Ok((
                name.to_ascii_lowercase(),
                value.trim_matches([' ', '\t']).to_owned(),
            ))
        })
        .collect()
}

/// What the apps take from a part's headers.
struct PartHead {
    name: String,
    is_file: bool,
    content_type: Option<String>,
}

fn part_head(headers: &[(String, String)]) -> Result<PartHead, ParamError> {
    let disposition = single_header(headers, "content-disposition")?
        .ok_or_else(|| bad_multipart("part without Content-Disposition"))?;
    // werkzeug 2.x decoded base64 / quoted-printable parts; 3.x and PHP do not.
    if let Some(encoding) = single_header(headers, "content-transfer-encoding")?
        && !["7bit", "8bit", "binary"]
            .iter()
            .any(|e| encoding.eq_ignore_ascii_case(e))
    {
        return Err(bad_multipart("part with a Content-Transfer-Encoding"));
    }
    let content_type = single_header(headers, "content-type")?.map(str::to_owned);
    let (name, is_file) = parse_disposition(disposition)?;
    Ok(PartHead {
        name,
        is_file,
        content_type,
    })
}

fn single_header<'h>(
    headers: &'h [(String, String)],
    name: &str,
) -> Result<Option<&'h str>, ParamError> {
    let mut values = headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str());
    let first = values.next();
    if values.next().is_some() {
        return Err(bad_multipart("repeated part header"));
    }
    Ok(first)
}

/// `form-data; name="..."[; filename="..."]` → (name, is a file).
fn parse_disposition(value: &str) -> Result<(String, bool), ParamError> {
    let (kind, rest) = value.split_once(';').unwrap_or((value, ""));
    if !kind
        .trim_matches([' ', '\t'])
        .eq_ignore_ascii_case("form-data")
    {
        return Err(bad_multipart("part is not form-data"));
    }
    let params =
        parse_params(rest).ok_or_else(|| bad_multipart("unreadable Content-Disposition"))?;
    let (mut name, mut filename, mut extended_filename) = (None, false, false);
    for (key, value) in params {
        match key.as_str() {
            // PHP unquotes '...' names; werkzeug keeps the quotes.
            "name" if name.is_none() && !value.contains('\'') => name = Some(value),
            "filename" if !filename => filename = true,
            "name" | "filename" => return Err(bad_multipart("repeated or quoted name")),
            // werkzeug decodes RFC 2231 `name*` (and continuations); PHP ignores them.
            k if k.starts_with("name*") => return Err(bad_multipart("RFC 2231 field name")),
            k if k.starts_with("filename*") => extended_filename = true,
            _ => {}
        }
    }
    // `filename*` alone is a file to werkzeug and a text field to PHP.
    if extended_filename && !filename {
        return Err(bad_multipart("filename* without filename"));
    }
    let name = name.ok_or_else(|| bad_multipart("part without a name"))?;
    Ok((name, filename))
}

/// Occurrences of `needle` in `hay` (overlapping), found with Knuth–Morris–Pratt so a hostile
/// boundary cannot make the scan quadratic.
struct Matches<'a> {
    hay: &'a [u8],
    needle: &'a [u8],
    fallback: Vec<usize>,
    pos: usize,
    matched: usize,
}

impl<'a> Matches<'a> {
    fn new(hay: &'a [u8], needle: &'a [u8]) -> Self {
        let mut fallback = vec![0; needle.len()];
        let mut k = 0;
        for (i, &byte) in needle.iter().enumerate().skip(1) {
            while k > 0 && needle.get(k) != Some(&byte) {
                k = fallback.get(k - 1).copied().unwrap_or(0);
            }
            if needle.get(k) == Some(&byte) {
                k += 1;
            }
            if let Some(slot) = fallback.get_mut(i) {
                *slot = k;
            }
        }
        Self {
            hay,
            needle,
            fallback,
            pos: 0,
            matched: 0,
        }
    }

    fn fall_back(&self, k: usize) -> usize {
        k.checked_sub(1)
            .and_then(|i| self.fallback.get(i))
            .copied()
            .unwrap_or(0)
    }
}

impl Iterator for Matches<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.needle.is_empty() {
            return None;
        }
        while let Some(&byte) = self.hay.get(self.pos) {
            self.pos += 1;
            while self.matched > 0 && self.needle.get(self.matched) != Some(&byte) {
                self.matched = self.fall_back(self.matched);
            }
            if self.needle.get(self.matched) == Some(&byte) {
                self.matched += 1;
            }
            if self.matched == self.needle.len() {
                self.matched = self.fall_back(self.matched);
                return Some(self.pos - self.needle.len());
            }
        }
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// The hand-written decoder reads every input exactly as `form_urlencoded`
    /// does: 20,000 pseudo-random inputs over the bytes that matter.
    #[test]
    fn urlencoded_reads_as_form_urlencoded_does() {
        const ALPHABET: &[u8] = b"a=&+%%0F9fgG \xc3\xa9\xff\x80;";
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            let mut input = Vec::new();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            for k in 0..(seed % 24) {
                let pick = (seed >> (k % 48)) as usize ^ (k as usize * 7);
                input.push(ALPHABET[pick % ALPHABET.len()]);
            }
            let ours = urlencoded(&input).unwrap();
            let theirs: Vec<(String, String)> = form_urlencoded::parse(&input)
                .map(|(n, v)| (n.into_owned(), v.into_owned()))
                .collect();
            assert_eq!(ours, theirs, "input {:?}", String::from_utf8_lossy(&input));
        }
        let fixed = b"a=%41%2b+b&&c&%zz=%4&d=%C3%A9%FF";
        let theirs: Vec<(String, String)> = form_urlencoded::parse(fixed)
            .map(|(n, v)| (n.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(urlencoded(fixed).unwrap(), theirs);
        assert_eq!(theirs[0], ("a".to_owned(), "AB+ b".replace('B', "")));
    }

    type Pairs = &'static [(&'static str, &'static str)];
    type Want = Result<Pairs, ParamError>;
    /// case, query, Content-Type, body, expected parameters.
    type FrappeRow = (
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        &'static [u8],
        Want,
    );
    /// case, method, query, Content-Type, body, expected parameters.
    type LaravelRow = (
        &'static str,
        Method,
        Option<&'static str>,
        Option<&'static str>,
        &'static [u8],
        Want,
    );
    /// case, method, query, Content-Type, body, expected method.
    type MethodRow<'a> = (
        &'static str,
        Method,
        Option<&'static str>,
        Option<&'static str>,
        &'a [u8],
        Result<Method, ParamError>,
    );

    fn headers(content_type: Option<&str>) -> HeaderMap {
        let mut map = HeaderMap::new();
        if let Some(ct) = content_type {
            map.insert(CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        }
        map
    }

    fn pairs(params: &Params) -> Vec<(&str, &str)> {
        params.iter().collect()
    }

    fn check(case: &str, got: Result<Params, ParamError>, want: Want) {
        match (got, want) {
            (Ok(got), Ok(want)) => assert_eq!(pairs(&got), want.to_vec(), "{case}"),
            (Err(got), Err(want)) => assert_eq!(got, want, "{case}"),
            (got, want) => panic!("{case}: got {got:?}, want {want:?}"),
        }
    }

    /// A part: name, optional filename, value.
    type Part<'a> = (&'a str, Option<&'a str>, &'a [u8]);

    fn multipart(boundary: &str, parts: &[Part<'_>]) -> Vec<u8> {
        let mut body = Vec::new();
        for (name, filename, value) in parts {
            body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            let mut disposition = format!("Content-Disposition: form-data; name=\"{name}\"");
            if let Some(filename) = filename {
                disposition.push_str(&format!(
                    "; filename=\"{filename}\"\r\nContent-Type: text/plain"
                ));
            }
            body.extend_from_slice(format!("{disposition}\r\n\r\n").as_bytes());
            body.extend_from_slice(value);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        body
    }

    const B: &str = "----WebKitFormBoundary7MA4YWxkTrZu0gW";

    fn form_data() -> String {
        format!("multipart/form-data; boundary={B}")
    }

    // -----------------------------------------------------------------------------------------
    // Frappe
    // -----------------------------------------------------------------------------------------

    #[test]
    fn frappe_table() {
        #[rustfmt::skip]
        let cases: &[FrappeRow] = &[
            ("JSON replaces the query", Some("cmd=x"), Some(JSON), br#"{"cmd":"login"}"#, Ok(&[("cmd", "login")])),
            ("JSON hides query usr", Some("usr=a"), Some(JSON), br#"{"pwd":"p"}"#, Ok(&[("pwd", "p")])),
            ("form wins over query", Some("cmd=a&x=1"), Some(URLENCODED), b"cmd=b", Ok(&[("cmd", "b"), ("x", "1")])),
            ("repeated key: first wins", Some("a=1&a=2"), Some(URLENCODED), b"b=1&b=2", Ok(&[("a", "1"), ("b", "1")])),
            ("repeated form key beats query", Some("a=q"), Some(URLENCODED), b"a=1&a=2", Ok(&[("a", "1")])),
            ("login form", None, Some("application/x-www-form-urlencoded; charset=UTF-8"), b"cmd=login&usr=Administrator&pwd=s%26cret", Ok(&[("cmd", "login"), ("usr", "Administrator"), ("pwd", "s&cret")])),
            ("login in the query only", Some("cmd=login&usr=a&pwd=b"), None, b"", Ok(&[("cmd", "login"), ("usr", "a"), ("pwd", "b")])),
            ("usr in query, pwd in body", Some("usr=a"), Some(URLENCODED), b"pwd=b", Ok(&[("usr", "a"), ("pwd", "b")])),
            ("vnd +json", Some("cmd=x"), Some("application/vnd.api+json"), br#"{"cmd":"y"}"#, Ok(&[("cmd", "y")])),
            ("json with charset", None, Some("application/json; charset=utf-8"), br#"{"cmd":"y"}"#, Ok(&[("cmd", "y")])),
            ("json mimetype is case-insensitive", None, Some("Application/JSON"), br#"{"a":"b"}"#, Ok(&[("a", "b")])),
            ("text/x+json is not JSON to werkzeug", Some("a=1"), Some("text/x+json"), br#"{"cmd":"y"}"#, Ok(&[("a", "1")])),
            ("top-level array", None, Some(JSON), br#"[1, "a", {"b": null}]"#, Ok(&[("data", r#"[1,"a",{"b":null}]"#)])),
            ("invalid JSON", Some("cmd=login"), Some(JSON), br#"{"cmd":"#, Err(ParamError::InvalidJson)),
            ("whitespace JSON", None, Some(JSON), b"  ", Err(ParamError::InvalidJson)),
            ("scalar JSON", None, Some(JSON), br#""cmd""#, Err(ParamError::JsonNotObjectOrArray)),
            ("null JSON", None, Some(JSON), b"null", Err(ParamError::JsonNotObjectOrArray)),
            ("empty JSON body reads the query", Some("cmd=ping"), Some(JSON), b"", Ok(&[("cmd", "ping")])),
            ("non-string JSON values as compact JSON", None, Some(JSON), br#"{"doc": {"doctype": "User"}, "n": 5, "t": true, "z": null, "l": [1, 2]}"#, Ok(&[("doc", r#"{"doctype":"User"}"#), ("l", "[1,2]"), ("n", "5"), ("t", "true"), ("z", "null")])),
            ("duplicate JSON key: last wins", None, Some(JSON), br#"{"cmd":"a","cmd":"b"}"#, Ok(&[("cmd", "b")])),
            ("nested doc JSON inside urlencoded", None, Some(URLENCODED), b"doc=%7B%22doctype%22%3A%22User%22%7D&action=Save", Ok(&[("doc", r#"{"doctype":"User"}"#), ("action", "Save")])),
            ("plus and percent decoding", Some("usr=a+b%40c.com&e=%E2%82%AC&bad=%FF&raw=%zz"), None, b"", Ok(&[("usr", "a b@c.com"), ("e", "€"), ("bad", "\u{FFFD}"), ("raw", "%zz")])),
            ("blank values kept", Some("a&b=&=c"), None, b"", Ok(&[("a", ""), ("b", ""), ("", "c")])),
            ("underscore dropped from the query", Some("_=1699999&cmd=ping"), None, b"", Ok(&[("cmd", "ping")])),
            ("underscore dropped from JSON", None, Some(JSON), br#"{"_":1,"cmd":"x"}"#, Ok(&[("cmd", "x")])),
            ("text/plain body ignored", Some("a=1"), Some("text/plain"), b"cmd=login", Ok(&[("a", "1")])),
            ("body without Content-Type ignored", Some("a=1"), None, b"cmd=login", Ok(&[("a", "1")])),
            ("raw invalid UTF-8 in a form body", Some("cmd=login"), Some(URLENCODED), b"cmd=ping&x=\xff", Err(ParamError::InvalidUrlEncoded)),
            ("invalid UTF-8 in a JSON string is replaced", None, Some(JSON), b"{\"usr\":\"a\xffb\"}", Ok(&[("usr", "a\u{FFFD}b")])),
            ("names are case-sensitive", Some("CMD=login"), None, b"", Ok(&[("CMD", "login")])),
            ("multipart without boundary", None, Some(MULTIPART), b"--x\r\n", Err(bad_multipart("missing, ambiguous or invalid boundary"))),
        ];
        for (case, query, content_type, body, want) in cases {
            check(
                case,
                frappe(*query, &headers(*content_type), body),
                want.clone(),
            );
        }
    }

    #[test]
    fn many_names_keep_order_and_repeat_rules_past_the_scan_limit() {
        // 40 names, each sent twice: the first copy of each is in the query, the second in
        // the form, so the form's value wins (update) while the order stays the query's.
        let names: Vec<String> = (0..40).map(|i| format!("n{i}")).collect();
        let query: Vec<String> = names.iter().map(|n| format!("{n}=q&{n}=q2")).collect();
        let body: Vec<String> = names
            .iter()
            .rev()
            .map(|n| format!("{n}=f&{n}=f2"))
            .collect();
        let params = frappe(
            Some(&query.join("&")),
            &headers(Some(URLENCODED)),
            body.join("&").as_bytes(),
        )
        .unwrap();
        let got: Vec<(&str, &str)> = params.iter().collect();
        let want: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "f")).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn frappe_get_with_json_body_and_cmd_lookup() {
        // Frappe's API tests send JSON bodies with GET; the reader never looks at the method.
        let params = frappe(
            Some("cmd=ping"),
            &headers(Some(JSON)),
            br#"{"cmd":"login","usr":"a","pwd":"b"}"#,
        )
        .unwrap();
        assert_eq!(params.get("cmd"), Some("login"));
        assert!(params.contains("usr") && !params.contains("Usr"));
        assert_eq!(params.len(), 3);
        assert!(!params.is_empty());
    }

    #[test]
    fn frappe_multipart_text_fields_and_files() {
        let body = multipart(
            B,
            &[
                ("cmd", Some("evil.txt"), b"login"),
                ("cmd", None, b"frappe.client.set_value"),
                ("usr", None, b"admin@example.com"),
                ("usr", None, b"second"),
                ("file", Some("a.txt"), b"pwd=x"),
                ("pwd", None, b"line1\r\nline2"),
            ],
        );
        let params = frappe(Some("cmd=ping&x=1"), &headers(Some(&form_data())), &body).unwrap();
        assert_eq!(
            pairs(&params),
            [
                ("cmd", "frappe.client.set_value"),
                ("x", "1"),
                ("usr", "admin@example.com"),
                ("pwd", "line1\r\nline2")
            ]
        );
    }

    #[test]
    fn frappe_multipart_part_charsets() {
        let mut body = Vec::new();
        for (name, charset) in [("a", "ISO-8859-1"), ("b", "us-ascii"), ("c", "koi8-r")] {
            let head = format!(
                "--{B}\r\nContent-Disposition: form-data; name=\"{name}\"\r\nContent-Type: text/plain; charset={charset}\r\n\r\n"
            );
            body.extend_from_slice(head.as_bytes());
            body.extend_from_slice(b"\xE9\r\n");
        }
        body.extend_from_slice(format!("--{B}--").as_bytes());
        let params = frappe(None, &headers(Some(&form_data())), &body).unwrap();
        assert_eq!(
            pairs(&params),
            [("a", "é"), ("b", "\u{FFFD}"), ("c", "\u{FFFD}")]
        );
    }

    #[test]
    fn two_content_type_headers_are_ambiguous() {
        let mut map = headers(Some(JSON));
        map.append(CONTENT_TYPE, HeaderValue::from_static(URLENCODED));
        assert_eq!(
            frappe(None, &map, b"cmd=login"),
            Err(ParamError::AmbiguousContentType)
        );
        assert_eq!(
            laravel(None, &map, b"a=1", &Method::POST),
            Err(ParamError::AmbiguousContentType)
        );
        assert_eq!(body_kind(&map, 9), BodyKind::Other);
        // No body: nothing to misread.
        assert_eq!(frappe(Some("a=1"), &map, b"").unwrap().get("a"), Some("1"));
    }

    #[test]
    fn body_kind_table() {
        #[rustfmt::skip]
        let cases: &[(Option<&str>, usize, BodyKind)] = &[
            (Some(JSON), 0, BodyKind::Empty),
            (None, 3, BodyKind::Other),
            (Some(JSON), 3, BodyKind::Json),
            (Some(" application/json ; charset=utf-8"), 3, BodyKind::Json),
            (Some("application/merge-patch+json"), 3, BodyKind::Json),
            (Some("text/json+json"), 3, BodyKind::Other),
            (Some("application/jsonx"), 3, BodyKind::Other),
            (Some("Application/X-WWW-Form-Urlencoded"), 3, BodyKind::UrlEncoded),
            (Some("multipart/form-data; boundary=abc"), 3, BodyKind::Multipart { boundary: "abc".into(), }),
            (Some("multipart/form-data; boundary=\"a b:c\""), 3, BodyKind::Multipart { boundary: "a b:c".into(), }),
            (Some("multipart/form-data; charset=utf-8; BOUNDARY=abc"), 3, BodyKind::Multipart { boundary: "abc".into(), }),
            (Some("multipart/form-data"), 3, BodyKind::Multipart { boundary: String::new(), }),
            (Some("multipart/form-data; xboundary=a; boundary=b"), 3, BodyKind::Multipart { boundary: String::new(), }),
            (Some("multipart/form-data; boundary=a,b"), 3, BodyKind::Multipart { boundary: String::new(), }),
            // PHP keeps the space ("abc "), werkzeug strips it.
            (Some("multipart/form-data; boundary=abc ; x=1"), 3, BodyKind::Multipart { boundary: String::new(), }),
            (Some("multipart/form-data; boundary=abc; boundary=def"), 3, BodyKind::Multipart { boundary: String::new(), }),
            (Some("multipart/form-data; Boundary=\"zboundary=q\""), 3, BodyKind::Multipart { boundary: String::new(), }),
            (Some("multipart/form-data; boundary=----WebKitFormBoundaryAbC"), 3, BodyKind::Multipart { boundary: "----WebKitFormBoundaryAbC".into(), }),
            (Some("multipart/form-data; BOUNDARY=----WebKitFormBoundaryAbC"), 3, BodyKind::Multipart { boundary: "----WebKitFormBoundaryAbC".into(), }),
            (Some("multipart/form-data; boundary= abc"), 3, BodyKind::Multipart { boundary: String::new(), }),
            (Some("multipart/form-data; boundary=\"a\\\"b\""), 3, BodyKind::Multipart { boundary: String::new(), }),
            (Some("text/plain"), 3, BodyKind::Other),
        ];
        for (content_type, len, want) in cases {
            assert_eq!(
                &body_kind(&headers(*content_type), *len),
                want,
                "{content_type:?}"
            );
        }
    }

    // -----------------------------------------------------------------------------------------
    // Laravel
    // -----------------------------------------------------------------------------------------

    #[test]
    fn laravel_table() {
        #[rustfmt::skip]
        let cases: &[LaravelRow] = &[
            ("urlencoded login", Method::POST, None, Some(URLENCODED), b"_token=t&email=a%40b.c&password=p+w", Ok(&[("_token", "t"), ("email", "a@b.c"), ("password", "p w")])),
            ("JSON login", Method::POST, None, Some(JSON), br#"{"email":"a@b.c","password":"p","remember":true}"#, Ok(&[("email", "a@b.c"), ("password", "p"), ("remember", "true")])),
            ("body wins over query", Method::POST, Some("email=q&page=2"), Some(URLENCODED), b"email=b", Ok(&[("email", "b"), ("page", "2")])),
            ("JSON body wins over query", Method::POST, Some("email=q"), Some(JSON), br#"{"email":"b"}"#, Ok(&[("email", "b")])),
            ("last value wins", Method::POST, Some("a=1&a=2"), Some(URLENCODED), b"b=1&b=2", Ok(&[("b", "2"), ("a", "2")])),
            ("GET reads no form body", Method::GET, Some("a=1"), Some(URLENCODED), b"email=x", Ok(&[("a", "1")])),
            ("GET reads a JSON body", Method::GET, Some("a=1"), Some(JSON), br#"{"email":"x"}"#, Ok(&[("email", "x"), ("a", "1")])),
            ("PUT urlencoded is parsed", Method::PUT, None, Some(URLENCODED), b"name=x", Ok(&[("name", "x")])),
            ("PUT urlencoded prefix is case-sensitive", Method::PUT, None, Some("Application/x-www-form-urlencoded"), b"name=x", Ok(&[])),
            ("OPTIONS reads no form body", Method::OPTIONS, None, Some(URLENCODED), b"name=x", Ok(&[])),
            ("isJson matches anywhere", Method::POST, None, Some("text/plain; x=/json"), br#"{"a":"b"}"#, Ok(&[("a", "b")])),
            ("isJson is case-sensitive", Method::POST, Some("q=1"), Some("Application/JSON"), br#"{"a":"b"}"#, Ok(&[("q", "1")])),
            ("PHP mimetype ends at a comma", Method::POST, None, Some("application/x-www-form-urlencoded, x"), b"a=1", Ok(&[("a", "1")])),
            ("top-level JSON array", Method::POST, None, Some(JSON), br#"["x",{"y":1}]"#, Ok(&[("0", "x"), ("1", r#"{"y":1}"#)])),
            ("scalar JSON", Method::POST, None, Some(JSON), b"5", Err(ParamError::JsonNotObjectOrArray)),
            ("invalid JSON", Method::POST, None, Some(JSON), b"{", Err(ParamError::InvalidJson)),
            ("invalid UTF-8 JSON", Method::POST, None, Some(JSON), b"{\"a\":\"\xff\"}", Err(ParamError::InvalidJson)),
            ("empty JSON body", Method::POST, Some("a=1"), Some(JSON), b"", Ok(&[("a", "1")])),
            ("leading space in a name", Method::POST, None, Some(URLENCODED), b"+_method=DELETE&%20email=x", Ok(&[("_method", "DELETE"), ("email", "x")])),
            ("dots and spaces become underscores", Method::GET, Some(".method=a&a.b+c=1"), None, b"", Ok(&[("_method", "a"), ("a_b_c", "1")])),
            ("NUL ends a name", Method::POST, None, Some(URLENCODED), b"_method%00junk=PUT", Ok(&[("_method", "PUT")])),
            ("array keys verbatim, last wins", Method::POST, None, Some(URLENCODED), b"a[]=1&a[]=2&b.c[d.e]=3", Ok(&[("a[]", "2"), ("b_c[d.e]", "3")])),
            ("unterminated bracket", Method::POST, None, Some(URLENCODED), b"a[b.c[d=1", Ok(&[("a_b_c_d", "1")])),
            ("empty names dropped", Method::GET, Some("=1&+=2&[x]=3&ok=4"), None, b"", Ok(&[("ok", "4")])),
            ("mangled __Host- dropped", Method::GET, Some("..Host-x=1&__Host-y=2"), None, b"", Ok(&[("__Host-y", "2")])),
            ("lower-case method", Method::from_bytes(b"post").unwrap(), None, Some(URLENCODED), b"a=1", Err(ParamError::NonCanonicalMethod("post".into()))),
        ];
        for (case, method, query, content_type, body, want) in cases {
            check(
                case,
                laravel(*query, &headers(*content_type), body, method),
                want.clone(),
            );
        }
    }

    #[test]
    fn laravel_multipart_browser_login() {
        let body = multipart(
            B,
            &[
                ("_token", None, b"csrf123"),
                ("_method", None, b"POST"),
                ("email", None, b"admin@company.com"),
                ("password", None, b"s3cret"),
                ("remember", None, b""),
            ],
        );
        let input = laravel(None, &headers(Some(&form_data())), &body, &Method::POST).unwrap();
        assert_eq!(
            pairs(&input),
            [
                ("_token", "csrf123"),
                ("_method", "POST"),
                ("email", "admin@company.com"),
                ("password", "s3cret"),
                ("remember", "")
            ]
        );
        assert_eq!(laravel_method(&Method::POST, &input), Ok(Method::POST));
        // PHP does not parse multipart for a real PUT.
        let put = laravel(
            Some("q=1"),
            &headers(Some(&form_data())),
            &body,
            &Method::PUT,
        )
        .unwrap();
        assert_eq!(pairs(&put), [("q", "1")]);
    }

    #[test]
    fn laravel_multipart_last_wins_and_files_skipped() {
        let body = multipart(
            B,
            &[
                ("email", None, b"a"),
                ("email", None, b"b"),
                ("_method", Some("x.txt"), b"DELETE"),
            ],
        );
        let input = laravel(
            Some("email=q"),
            &headers(Some(&form_data())),
            &body,
            &Method::POST,
        )
        .unwrap();
        assert_eq!(pairs(&input), [("email", "b")]);
        assert_eq!(laravel_method(&Method::POST, &input), Ok(Method::POST));
    }

    fn method_of(
        real: &Method,
        query: Option<&str>,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Method, ParamError> {
        let input = laravel(query, &headers(content_type), body, real)?;
        laravel_method(real, &input)
    }

    #[test]
    fn laravel_method_table() {
        let patch_form = multipart(
            B,
            &[
                ("_token", None, b"t"),
                ("_method", None, b"PATCH"),
                ("name", None, b"x"),
            ],
        );
        let bad = |v: &str| Err(ParamError::BadMethodOverride(v.into()));
        let cases: Vec<MethodRow<'_>> = vec![
            (
                "PATCH in a POST multipart form",
                Method::POST,
                None,
                Some(B_FORM),
                &patch_form,
                Ok(Method::PATCH),
            ),
            (
                "urlencoded, lower case",
                Method::POST,
                None,
                Some(URLENCODED),
                b"_method=delete",
                Ok(Method::DELETE),
            ),
            (
                "query of a POST is honoured",
                Method::POST,
                Some("_method=DELETE"),
                Some(URLENCODED),
                b"a=1",
                Ok(Method::DELETE),
            ),
            (
                "body beats query",
                Method::POST,
                Some("_method=DELETE"),
                Some(URLENCODED),
                b"_method=PUT",
                Ok(Method::PUT),
            ),
            (
                "query with a text/plain body",
                Method::POST,
                Some("_method=PUT"),
                Some("text/plain"),
                b"_method=PATCH",
                Ok(Method::PUT),
            ),
            (
                "GET ignores _method",
                Method::GET,
                Some("_method=DELETE"),
                None,
                b"",
                Ok(Method::GET),
            ),
            (
                "DELETE is unchanged",
                Method::DELETE,
                Some("_method=GET"),
                None,
                b"",
                Ok(Method::DELETE),
            ),
            (
                "no override",
                Method::POST,
                None,
                None,
                b"",
                Ok(Method::POST),
            ),
            (
                "override to GET",
                Method::POST,
                None,
                Some(URLENCODED),
                b"_method=get",
                Ok(Method::GET),
            ),
            (
                "custom token",
                Method::POST,
                None,
                Some(URLENCODED),
                b"_method=FOO",
                Ok(Method::from_bytes(b"FOO").unwrap()),
            ),
            (
                "space inside",
                Method::POST,
                None,
                Some(URLENCODED),
                b"_method=DEL+ETE",
                bad("DEL ETE"),
            ),
            (
                "script",
                Method::POST,
                None,
                Some(URLENCODED),
                b"_method=%3Cscript%3E",
                bad("<script>"),
            ),
            (
                "empty",
                Method::POST,
                None,
                Some(URLENCODED),
                b"_method=",
                bad(""),
            ),
            (
                "padded",
                Method::POST,
                None,
                Some(URLENCODED),
                b"_method=+PUT",
                bad(" PUT"),
            ),
            (
                "non-ASCII letter",
                Method::POST,
                None,
                Some(URLENCODED),
                b"_method=%C5%BF",
                bad("\\u{17f}"),
            ),
            (
                "leading-space name still counts",
                Method::POST,
                None,
                Some(URLENCODED),
                b"+_method=DELETE",
                Ok(Method::DELETE),
            ),
            (
                "dot name still counts",
                Method::POST,
                Some(".method=PATCH"),
                None,
                b"",
                Ok(Method::PATCH),
            ),
            (
                "JSON string",
                Method::POST,
                None,
                Some(JSON),
                br#"{"_method":"put"}"#,
                Ok(Method::PUT),
            ),
            (
                "JSON beats query",
                Method::POST,
                Some("_method=DELETE"),
                Some(JSON),
                br#"{"_method":"PATCH"}"#,
                Ok(Method::PATCH),
            ),
            (
                "JSON number keeps POST",
                Method::POST,
                Some("_method=DELETE"),
                Some(JSON),
                br#"{"_method":5}"#,
                Ok(Method::POST),
            ),
            (
                "JSON null keeps POST",
                Method::POST,
                None,
                Some(JSON),
                br#"{"_method":null}"#,
                Ok(Method::POST),
            ),
            (
                "JSON object is a 400",
                Method::POST,
                None,
                Some(JSON),
                br#"{"_method":{"a":1}}"#,
                bad("{\\\"a\\\":1}"),
            ),
            (
                "lower-case real method",
                Method::from_bytes(b"post").unwrap(),
                Some("_method=PUT"),
                None,
                b"",
                Err(ParamError::NonCanonicalMethod("post".into())),
            ),
        ];
        for (case, real, query, content_type, body, want) in cases {
            assert_eq!(method_of(&real, query, content_type, body), want, "{case}");
        }
    }

    const B_FORM: &str = "multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW";

    #[test]
    fn php_key_table() {
        #[rustfmt::skip]
        let cases: &[(&str, Option<(&str, Shape)>)] = &[
            ("email", Some(("email", Shape::Text))),
            ("  _method", Some(("_method", Shape::Text))),
            ("\t_method", Some(("\t_method", Shape::Text))),
            ("a b.c", Some(("a_b_c", Shape::Text))),
            ("a\0b", Some(("a", Shape::Text))),
            ("\0a", None),
            ("", None),
            ("   ", None),
            ("[a]", None),
            ("a[]", Some(("a[]", Shape::Compound))),
            ("a.b[c d]", Some(("a_b[c d]", Shape::Compound))),
            ("a[b", Some(("a_b", Shape::Text))),
            ("a[b c.d[e", Some(("a_b_c_d_e", Shape::Text))),
            ("_method[", Some(("_method_", Shape::Text))),
            ("..Secure-x", None),
            ("__Secure-x", Some(("__Secure-x", Shape::Text))),
        ];
        for (raw, want) in cases {
            let got = php_key(raw);
            assert_eq!(
                got.as_ref().map(|(k, s)| (k.as_str(), *s)),
                *want,
                "{raw:?}"
            );
        }
    }

    // -----------------------------------------------------------------------------------------
    // Multipart framing: bodies that werkzeug, PHP and we could split differently
    // -----------------------------------------------------------------------------------------

    #[test]
    fn ambiguous_multipart_is_rejected() {
        let cd = |name: &str| format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n");
        #[rustfmt::skip]
        let cases: Vec<(&str, &str, String)> = vec![
            ("preamble", "data before the first boundary", format!("junk\r\n--{B}\r\n{}login\r\n--{B}--", cd("cmd"))),
            ("boundary inside a line", "boundary text inside a line", format!("--{B}\r\n{}x--{B}\r\n--{B}--", cd("cmd"))),
            ("LF-only delimiter", "boundary text inside a line", format!("--{B}\r\n{}ping\n--{B}\r\n{}login\r\n--{B}--", cd("cmd"), cd("cmd"))),
            ("LF-only part headers", "part headers do not end", format!("--{B}\r\nContent-Disposition: form-data; name=\"cmd\"\n\nlogin\r\n--{B}\r\n{}ping\r\n--{B}--", cd("x"))),
            ("a part after the close", "a delimiter line does not end in CRLF", format!("--{B}\r\n{}ping\r\n--{B}--\r\n--{B}\r\n{}login\r\n--{B}--", cd("cmd"), cd("cmd"))),
            ("text after the close", "the body does not end with the close delimiter", format!("--{B}\r\n{}ping\r\n--{B}--\r\nepilogue", cd("cmd"))),
            ("never closes", "the body does not end with the close delimiter", format!("--{B}\r\n{}ping\r\n", cd("cmd"))),
            ("close too early", "a delimiter line does not end in CRLF", format!("--{B}--\r\n{}ping\r\n--{B}--", cd("cmd"))),
            ("boundary prefix", "a delimiter line does not end in CRLF", format!("--{B}\r\n{}ping\r\n--{B}x\r\n--{B}--", cd("cmd"))),
            ("headers never end", "part headers do not end", format!("--{B}\r\nContent-Disposition: form-data; name=\"cmd\"\r\nlogin\r\n--{B}--")),
            ("empty part", "a delimiter line does not end in CRLF", format!("--{B}\r\n--{B}--")),
            ("no Content-Disposition", "part without Content-Disposition", format!("--{B}\r\nContent-Type: text/plain\r\n\r\nx\r\n--{B}--")),
            ("folded header", "malformed part header", format!("--{B}\r\nContent-Disposition: form-data;\r\n name=\"cmd\"\r\n\r\nx\r\n--{B}--")),
            ("two dispositions", "repeated part header", format!("--{B}\r\n{}\r\nContent-Disposition: form-data; name=\"b\"\r\n\r\nx\r\n--{B}--", cd("a").trim_end())),
            ("attachment", "part is not form-data", format!("--{B}\r\nContent-Disposition: attachment; name=\"cmd\"\r\n\r\nx\r\n--{B}--")),
            ("no name", "part without a name", format!("--{B}\r\nContent-Disposition: form-data\r\n\r\nx\r\n--{B}--")),
            ("two names", "repeated or quoted name", format!("--{B}\r\nContent-Disposition: form-data; name=\"a\"; name=\"cmd\"\r\n\r\nx\r\n--{B}--")),
            ("RFC 2231 name", "RFC 2231 field name", format!("--{B}\r\nContent-Disposition: form-data; name*=UTF-8''cmd\r\n\r\nx\r\n--{B}--")),
            ("name continuation", "RFC 2231 field name", format!("--{B}\r\nContent-Disposition: form-data; name=\"x\"; name*0=\"cmd\"\r\n\r\nx\r\n--{B}--")),
            ("filename* alone", "filename* without filename", format!("--{B}\r\nContent-Disposition: form-data; name=\"cmd\"; filename*=UTF-8''a.txt\r\n\r\nx\r\n--{B}--")),
            ("single-quoted name", "repeated or quoted name", format!("--{B}\r\nContent-Disposition: form-data; name='cmd'\r\n\r\nx\r\n--{B}--")),
            ("odd quote splits PHP's parse", "unreadable Content-Disposition", format!("--{B}\r\nContent-Disposition: form-data; name=_method; foo=a'; filename=\"b'\"\r\n\r\nDELETE\r\n--{B}--")),
            ("escaped quote", "unreadable Content-Disposition", format!("--{B}\r\nContent-Disposition: form-data; name=\"a\\\"b\"\r\n\r\nx\r\n--{B}--")),
            ("space before =", "unreadable Content-Disposition", format!("--{B}\r\nContent-Disposition: form-data; name =\"cmd\"\r\n\r\nx\r\n--{B}--")),
            ("base64 part", "part with a Content-Transfer-Encoding", format!("--{B}\r\n{}\r\nContent-Transfer-Encoding: base64\r\n\r\nbG9naW4=\r\n--{B}--", cd("cmd").trim_end())),
            ("duplicate part Content-Type", "repeated part header", format!("--{B}\r\n{}\r\nContent-Type: a/b\r\nContent-Type: c/d\r\n\r\nx\r\n--{B}--", cd("cmd").trim_end())),
            ("bare LF inside part headers", "bare CR or LF in part headers", format!("--{B}\r\nContent-Disposition: form-data; name=\"cmd\"\nX: y\r\n\r\nx\r\n--{B}--")),
        ];
        let content_type = headers(Some(&form_data()));
        for (case, reason, body) in cases {
            let want = Err(bad_multipart(reason));
            assert_eq!(
                frappe(None, &content_type, body.as_bytes()),
                want,
                "frappe {case}"
            );
            assert_eq!(
                laravel(None, &content_type, body.as_bytes(), &Method::POST),
                want,
                "laravel {case}"
            );
        }
    }

    #[test]
    fn well_formed_multipart_variants_are_read() {
        let content_type = headers(Some(&form_data()));
        #[rustfmt::skip]
        let cases: Vec<(&str, String, Pairs)> = vec![
            ("padding and no final CRLF", format!("--{B}  \r\nContent-Disposition: form-data; name=cmd\r\n\r\nping\r\n--{B}--"), &[("cmd", "ping")]),
            ("filename and filename* (.NET)", format!("--{B}\r\nContent-Disposition: form-data; name=file; filename=a.txt; filename*=utf-8''a.txt\r\n\r\nx\r\n--{B}\r\ncontent-disposition: FORM-DATA; name=\"a;b\"\r\n\r\n1\r\n--{B}--\r\n"), &[("a;b", "1")]),
            ("empty filename is a file", format!("--{B}\r\nContent-Disposition: form-data; name=\"cmd\"; filename=\"\"\r\n\r\nlogin\r\n--{B}--"), &[]),
            ("value with CRLFs and dashes", format!("--{B}\r\nContent-Disposition: form-data; name=\"v\"\r\n\r\n\r\n--x\r\n\r\n\r\n--{B}--"), &[("v", "\r\n--x\r\n\r\n")]),
            ("7bit part", format!("--{B}\r\nContent-Disposition: form-data; name=\"v\"\r\nContent-Transfer-Encoding: 7BIT\r\n\r\nx\r\n--{B}--"), &[("v", "x")]),
        ];
        for (case, body, want) in cases {
            let got = frappe(None, &content_type, body.as_bytes()).unwrap();
            assert_eq!(pairs(&got), want.to_vec(), "frappe {case}");
            let got = laravel(None, &content_type, body.as_bytes(), &Method::POST).unwrap();
            assert_eq!(pairs(&got), want.to_vec(), "laravel {case}");
        }
    }

    #[test]
    fn every_truncation_of_a_multipart_body_is_an_error() {
        let body = multipart(
            B,
            &[
                ("cmd", None, b"login"),
                ("usr", None, b"a"),
                ("f", Some("x.bin"), b"\r\n\r\n--"),
            ],
        );
        let content_type = headers(Some(&form_data()));
        let complete = body.len() - 2; // "--B--" without the final CRLF is still complete
        for len in 1..body.len() {
            let prefix = &body[..len];
            let frappe = frappe(None, &content_type, prefix);
            let laravel = laravel(None, &content_type, prefix, &Method::POST);
            if len < complete {
                assert!(
                    frappe.is_err() && laravel.is_err(),
                    "prefix {len}: {frappe:?} {laravel:?}"
                );
            } else {
                assert_eq!(frappe.unwrap().get("cmd"), Some("login"));
                assert_eq!(laravel.unwrap().get("usr"), Some("a"));
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Field caps
    // -----------------------------------------------------------------------------------------

    fn numbered(n: usize, sep: &str) -> String {
        (0..n)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join(sep)
    }

    #[test]
    fn field_caps() {
        for (n, ok) in [(MAX_FIELDS, true), (MAX_FIELDS + 1, false)] {
            let form = numbered(n, "&");
            let object = format!(
                "{{{}}}",
                (0..n)
                    .map(|i| format!("\"k{i}\":1"))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let array = format!("[{}]", vec!["1"; n].join(","));
            let names: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
            let parts: Vec<Part<'_>> = names
                .iter()
                .map(|k| (k.as_str(), None, &b"v"[..]))
                .collect();
            let mp = multipart(B, &parts);
            let results = [
                frappe(Some(&form), &headers(None), b""),
                frappe(None, &headers(Some(URLENCODED)), form.as_bytes()),
                frappe(None, &headers(Some(JSON)), object.as_bytes()),
                frappe(None, &headers(Some(&form_data())), &mp),
                laravel(Some(&form), &headers(None), b"", &Method::GET),
                laravel(
                    None,
                    &headers(Some(URLENCODED)),
                    form.as_bytes(),
                    &Method::POST,
                ),
                laravel(None, &headers(Some(JSON)), array.as_bytes(), &Method::POST),
                laravel(None, &headers(Some(&form_data())), &mp, &Method::POST),
            ];
            for (i, result) in results.into_iter().enumerate() {
                match result {
                    Ok(params) => assert!(ok && params.len() == n, "source {i} with {n} fields"),
                    Err(e) => assert!(
                        !ok && e == ParamError::TooManyFields,
                        "source {i} with {n} fields: {e:?}"
                    ),
                }
            }
        }
    }

    #[test]
    fn file_parts_count_toward_the_cap() {
        let names: Vec<String> = (0..=MAX_FIELDS).map(|i| format!("f{i}")).collect();
        let parts: Vec<Part<'_>> = names
            .iter()
            .map(|k| (k.as_str(), Some("a.bin"), &b"x"[..]))
            .collect();
        let body = multipart(B, &parts);
        assert_eq!(
            frappe(None, &headers(Some(&form_data())), &body),
            Err(ParamError::TooManyFields)
        );
    }

    // -----------------------------------------------------------------------------------------
    // Robustness: random and mutated input never panics
    // -----------------------------------------------------------------------------------------

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    const ALPHABET: &[u8] = b"-\r\n\"';=&%[]{}:,.+ _B0aZ\0\xff\xc3\\";

    fn random_bytes(rng: &mut Rng, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                if rng.below(4) == 0 {
                    rng.next() as u8
                } else {
                    ALPHABET[rng.below(ALPHABET.len())]
                }
            })
            .collect()
    }

    /// Runs every reader; returns how many accepted the input.
    fn run_all(query: Option<&str>, content_type: &HeaderMap, body: &[u8]) -> usize {
        let mut accepted = usize::from(frappe(query, content_type, body).is_ok());
        for method in [Method::GET, Method::POST, Method::PUT, Method::DELETE] {
            if let Ok(input) = laravel(query, content_type, body, &method) {
                accepted += 1;
                if let Ok(m) = laravel_method(&method, &input) {
                    assert!(m.as_str().bytes().all(|b| b.is_ascii_uppercase()), "{m}");
                }
            }
        }
        accepted
    }

    #[test]
    fn random_bodies_never_panic() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let types = [
            JSON,
            URLENCODED,
            "multipart/form-data; boundary=B",
            "text/plain",
            "a/b+json",
        ];
        for _ in 0..3000 {
            let len = rng.below(200);
            let body = random_bytes(&mut rng, len);
            let len = rng.below(40);
            let query = String::from_utf8_lossy(&random_bytes(&mut rng, len)).into_owned();
            let content_type = headers(Some(types[rng.below(types.len())]));
            let _ = run_all(Some(&query), &content_type, &body);
        }
    }

    #[test]
    fn mutated_multipart_never_panics() {
        let mut rng = Rng(0xDEAD_BEEF_CAFE_F00D);
        let base = multipart(
            "B",
            &[
                ("_method", None, b"PATCH"),
                ("cmd", None, b"login"),
                ("f", Some("a"), b"-B-\r\n"),
            ],
        );
        let content_type = headers(Some("multipart/form-data; boundary=B"));
        assert_eq!(run_all(None, &content_type, &base), 5);
        let mut accepted = 0;
        for _ in 0..3000 {
            let mut body = base.clone();
            for _ in 0..=rng.below(4) {
                let at = rng.below(body.len() + 1);
                match rng.below(3) {
                    0 if at < body.len() => body[at] = ALPHABET[rng.below(ALPHABET.len())],
                    1 if at < body.len() => drop(body.remove(at)),
                    _ => body.insert(at, ALPHABET[rng.below(ALPHABET.len())]),
                }
            }
            accepted += run_all(None, &content_type, &body);
        }
        // Some mutations (inside values) keep the body valid: both paths are exercised.
        assert!(accepted > 0);
    }

    #[test]
    fn hostile_boundary_scan_is_linear() {
        // A boundary of dashes against a body of dashes: quadratic search would take minutes.
        let boundary = "-".repeat(MAX_BOUNDARY_LEN);
        let content_type = headers(Some(&format!("multipart/form-data; boundary={boundary}")));
        let body = vec![b'-'; 4 << 20];
        assert!(matches!(
            frappe(None, &content_type, &body),
            Err(ParamError::InvalidMultipart(_))
        ));
    }

    #[test]
    fn matches_agrees_with_naive_search() {
        let mut rng = Rng(42);
        for _ in 0..2000 {
            let hay: Vec<u8> = (0..rng.below(40)).map(|_| b"ab"[rng.below(2)]).collect();
            let needle: Vec<u8> = (0..=rng.below(4)).map(|_| b"ab"[rng.below(2)]).collect();
            let naive: Vec<usize> = (0..hay.len())
                .filter(|&i| hay[i..].starts_with(&needle))
                .collect();
            assert_eq!(
                Matches::new(&hay, &needle).collect::<Vec<_>>(),
                naive,
                "{hay:?} {needle:?}"
            );
        }
    }

    #[test]
    fn debug_hides_values() {
        let params = frappe(Some("usr=admin&pwd=hunter2"), &headers(None), b"").unwrap();
        let shown = format!("{params:?}");
        assert!(
            shown.contains("pwd") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
