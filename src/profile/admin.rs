//! Administrative-request detection for step-up (issue 4, item 1).
//!
//! Decides whether a request to ERPNext (Frappe) or Akaunting is administrative, and why, so that
//! the gateway can ask for a fresh TOTP code first. Pure functions over the method, the decoded
//! canonical path and the app's own reading of the parameters ([`crate::params`]); no I/O.
//!
//! What this module promises:
//! - **Fail closed** wherever the app could read a request as administrative: every method name
//!   the app might run is checked (`cmd`, the path, and the `method` indirection), a document
//!   parameter whose JSON does not parse counts as administrative, DocType names compare
//!   case-insensitively after trimming, and paths are matched with empty segments dropped and
//!   fixed words compared case-insensitively. The price is the odd false positive on a request
//!   the app would refuse anyway.
//! - **ERPNext ignores the HTTP method**: whitelisted functions accept GET, and reads of admin
//!   DocTypes count. The one exception is `OPTIONS`, which Frappe answers before looking at
//!   `cmd` or the path (`upstreams/erpnext.md` §0 item 7).
//! - Akaunting is judged on the path and the *effective* method (after `_method`).
//! - No panics on any input; no `unwrap`/`expect` outside tests.
//!
//! The built-in lists come from `upstreams/erpnext.md` and `upstreams/akaunting.md` (each list
//! cites its section) and are extended, never replaced, by [`Extra`].

use http::Method;
use serde_json::Value;

use crate::params::Params;

/// Why a request is administrative (for the audit log and `erpguard explain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminReason {
    /// Which rule matched, e.g. `"erpnext.rpc-doctype"`.
    pub rule: &'static str,
    /// What matched, e.g. `frappe.client.set_value on DocType "User"`. Request text in it is
    /// escaped and truncated.
    pub detail: String,
}

/// Extra admin DocTypes / paths / methods from config, added to the built-in lists.
#[derive(Debug, Clone, Default)]
pub struct Extra {
    /// ERPNext DocType names (compared like the built-in ones: case-insensitive, trimmed). They
    /// count in Desk routes, REST paths and RPC parameters alike.
    pub doctypes: Vec<String>,
    /// ERPNext method names privileged whatever their parameters: exact names, prefix patterns
    /// ending in `.*` (`my_app.admin.*`), or suffix patterns starting with `*.` (`*.take_backup`).
    pub methods: Vec<String>,
    /// Path globs for either app, matched against the whole decoded path (ASCII letters
    /// case-insensitive): `*` matches any run of characters, `/` included.
    pub paths: Vec<String>,
}

// upstreams/erpnext.md §6 "DocTypes a gateway should treat as admin (Frappe core, v14–dev)", every
// name listed there except the two optional tiers (see ERPNEXT_OPTIONAL_DOCTYPES).
/// The built-in ERPNext admin DocTypes.
#[rustfmt::skip]
pub const ERPNEXT_ADMIN_DOCTYPES: &[&str] = &[
    // Identity and permissions.
    "User", "Role", "Role Profile", "Module Profile", "Has Role", "Block Module", "User Email",
    "User Social Login", "User Permission", "User Type", "User Group", "Custom Role",
    "Custom DocPerm", "DocPerm", "Role Permission for Page and Report", "Permission Inspector",
    "DocShare", "Document Share Key", "Session Default Settings", "Role Replication",
    "User Role Profile", "Permission Log", "User Invitation",
    // Schema and code.
    "DocType", "DocField", "DocType Action", "DocType Link", "DocType State", "DocType Layout",
    "Customize Form", "Custom Field", "Property Setter", "Client Script", "Server Script",
    "Module Def", "Page", "Report", "Print Format", "Print Style", "Web Template", "Web Page",
    "Website Script", "Website Theme", "Notification", "Email Template", "Address Template",
    "System Console", "Package", "Package Import", "Package Release",
    // Settings.
    "System Settings", "Print Settings", "Website Settings", "Portal Settings",
    "Navbar Settings", "Domain Settings", "Log Settings", "Document Naming Settings",
    "Amended Document Naming Settings", "Document Naming Rule", "Global Search Settings",
    "SMS Settings", "Push Notification Settings", "Installed Applications",
    "Installed Application",
    // Authentication integrations.
    "OAuth Client", "OAuth Provider Settings", "OAuth Bearer Token", "OAuth Authorization Code",
    "OAuth Scope", "Connected App", "Token Cache", "Social Login Key", "LDAP Settings",
    "LDAP Group Mapping", "Google Settings",
    // Outbound and integrations.
    "Webhook", "Webhook Header", "Webhook Data", "Slack Webhook URL", "Integration Request",
    "Email Account", "Email Domain", "Auto Email Report", "Email Queue", "S3 Backup Settings",
    "Dropbox Settings", "Google Drive",
    // Jobs and operations.
    "Scheduled Job Type", "Scheduled Job Log", "RQ Job", "RQ Worker", "Recorder",
    "System Health Report", "Submission Queue", "Prepared Report", "Patch Log",
    // Data movement.
    "Data Import", "Data Import Log", "Data Export", "Bulk Update", "Deleted Document",
    "Personal Data Deletion Request",
    // Audit data (read-sensitive).
    "Activity Log", "Access Log", "Error Log", "Version", "Transaction Log", "Audit Trail",
    "API Request Log",
];

// upstreams/erpnext.md §6: "Workspace (optional)" and "ERPNext business settings (optional second
// tier)". Not built in: ordinary ERPNext forms read Company and these settings all the time, so
// every sales clerk would meet the challenge. Add them through `Extra::doctypes` to opt in.
/// ERPNext DocTypes the notes call optional; not admin unless configured.
pub const ERPNEXT_OPTIONAL_DOCTYPES: &[&str] = &[
    "Workspace",
    "Company",
    "Accounts Settings",
    "Global Defaults",
    "Stock Settings",
    "Selling Settings",
    "Buying Settings",
    "Payment Gateway Account",
];

// upstreams/erpnext.md §6 "Not DocTypes" (and §8 a): Desk pages that are admin screens.
const ERPNEXT_ADMIN_PAGES: &[&str] = &["permission-manager", "backups", "setup-wizard"];

// Old Desk routes put a view word before the DocType (`/app/List/User`, `/app/Form/User/x`);
// the router still converts them (upstreams/erpnext.md §6, "The Desk is a single-page app").
const DESK_VIEW_WORDS: &[&str] = &["form", "list", "tree"];

// upstreams/erpnext.md §6 "Where the DocType travels, per endpoint" (generic document access,
// document methods, list/report/search), §9 (upload_file, attach_file): functions that act on the
// document or DocType named in their parameters. Prefixes are deliberately whole modules: rule (c)
// also needs an admin DocType in the parameters, so a broad prefix costs little.
const DOCUMENT_FUNCTIONS: &[&str] = &[
    "frappe.client.*",
    "frappe.desk.form.*",
    "frappe.desk.reportview.*",
    "frappe.desk.listview.*",
    "frappe.desk.search.*",
    "frappe.model.*",
    "frappe.desk.doctype.bulk_update.bulk_update.*",
    "frappe.handler.*",
];

// upstreams/erpnext.md §8 item 8 ("Writes are methods whose name ends in ...") plus the read
// functions of §6: Frappe checks the whitelist on the function object, so the same function
// re-exported under another module path runs too. Matched on the last dotted component.
#[rustfmt::skip]
const DOCUMENT_FUNCTION_NAMES: &[&str] = &[
    "set_value", "insert", "insert_many", "save", "submit", "cancel", "delete", "rename_doc",
    "bulk_update", "savedocs", "delete_items", "run_doc_method", "runserverobj", "attach_file",
    "upload_file", "uploadfile", "get", "getdoc", "getdoctype", "get_docinfo", "get_list",
    "get_count", "get_value", "get_single_value", "get_password", "search_link",
    "search_widget", "update_document_title", "submit_cancel_or_update_docs",
];

// Parameters naming the target DocType: upstreams/erpnext.md §8 item 8 c) and §6.
const DOCTYPE_PARAMS: &[&str] = &["doctype", "dt", "parent", "reference_doctype", "doc_type"];

// Parameters carrying documents as JSON (object, or array of objects): §6 and §8 item 8 c); a
// top-level JSON array body arrives as `data` (§0 item 3).
const DOCUMENT_PARAMS: &[&str] = &["doc", "docs", "data"];

// Keys of a JSON document naming a DocType it writes to: `doctype`; `parenttype` for a child row
// inserted on its own, which saves the parent (§6); `reference_doctype` (Data Import, §8 c) and
// `doc_type` (Customize Form, §8 c).
const DOCUMENT_KEYS: &[&str] = &["doctype", "parenttype", "reference_doctype", "doc_type"];

// upstreams/erpnext.md §8 item 8 d) "Privileged by name, whatever the parameters", with its
// alternations spelled out. Additions: `frappe.recorder.*` (the Recorder list in Desk starts and
// reads recordings through it) and `*.` suffixes for the key, impersonation and OTP functions so
// that a re-export under another module path is caught (see DOCUMENT_FUNCTION_NAMES).
const PRIVILEGED_METHODS: &[&str] = &[
    "frappe.core.page.permission_manager.permission_manager.*",
    "frappe.core.doctype.user_permission.user_permission.add_user_permissions",
    "frappe.core.doctype.user_permission.user_permission.clear_user_permissions",
    "frappe.core.doctype.user.user.generate_keys",
    "frappe.core.doctype.user.user.impersonate",
    "frappe.twofactor.reset_otp_secret",
    "frappe.client.get_password",
    "frappe.desk.doctype.system_console.system_console.*",
    "frappe.core.doctype.scheduled_job_type.scheduled_job_type.execute_event",
    "frappe.core.doctype.rq_job.rq_job.*",
    "frappe.core.doctype.recorder.recorder.*",
    "frappe.recorder.*",
    "frappe.core.doctype.data_import.data_import.*",
    "frappe.core.doctype.data_export.exporter.export_data",
    "frappe.desk.page.backups.backups.*",
    "frappe.utils.backups.*",
    "*.take_backup",
    "*.take_backups_s3",
    "frappe.core.doctype.installed_applications.installed_applications.*",
    "*.generate_keys",
    "*.impersonate",
    "*.reset_otp_secret",
    "*.get_password",
];

// upstreams/akaunting.md "What a gateway must match" item 8, API equivalents.
const AKAUNTING_API_ADMIN: &[&str] = &["users", "companies", "settings"];

// ---------------------------------------------------------------------------------------------
// ERPNext
// ---------------------------------------------------------------------------------------------

/// ERPNext. `path` is the decoded canonical path; `params` is `params::frappe(...)` of the same
/// request.
///
/// Rules, first match wins (upstreams/erpnext.md "What a gateway must match" item 8):
/// `erpnext.desk` (a), `erpnext.rest` (b), `erpnext.rpc-doctype` (c), `erpnext.rpc-method` (d,
/// and `Extra::methods`), `erpnext.backups` (e), `erpnext.config-path` (`Extra::paths`).
pub fn erpnext(method: &Method, path: &str, params: &Params, extra: &Extra) -> Option<AdminReason> {
    // §0 item 7: OPTIONS gets an empty answer before `cmd` or the path are looked at.
    if *method == Method::OPTIONS {
        return None;
    }
    let segs = segments(path);
    let candidates = rpc_candidates(&segs, params);
    desk_screen(&segs, extra)
        .or_else(|| rest_doctype(&segs, extra))
        .or_else(|| rpc_doctype(&candidates, params, extra))
        .or_else(|| rpc_privileged(&candidates, extra))
        .or_else(|| backups(&segs))
        .or_else(|| extra_path("erpnext.config-path", path, &segs, extra))
}

/// (a) Desk screens `^/(app|desk)/<admin slug>(/|$)` (§6, §8 a). Informational in the notes (the
/// data travels by RPC) but cheap to hold.
fn desk_screen(segs: &[&str], extra: &Extra) -> Option<AdminReason> {
    let [root, screen, rest @ ..] = segs else {
        return None;
    };
    if !(eq_ic(root, "app") || eq_ic(root, "desk")) {
        return None;
    }
    let target = match rest.first() {
        Some(next) if DESK_VIEW_WORDS.iter().any(|w| eq_ic(screen, w)) => next,
        _ => screen,
    };
    let what = admin_screen(target, extra)?;
    let route = segs.iter().take(3).copied().collect::<Vec<_>>().join("/");
    Some(reason(
        "erpnext.desk",
        format!("desk screen /{} ({what})", shown(&route)),
    ))
}

/// The admin page or DocType a Desk route slug names: DocType names lower-cased with spaces
/// turned into `-` (router.js `slug()`); `_` is taken as `-` too.
fn admin_screen(slug: &str, extra: &Extra) -> Option<String> {
    if let Some(page) = ERPNEXT_ADMIN_PAGES.iter().find(|p| same_slug(slug, p)) {
        return Some(format!("page \"{page}\""));
    }
    all_doctypes(extra)
        .find(|dt| same_slug(slug, dt))
        .map(|dt| format!("DocType \"{dt}\""))
}

/// (b) REST with the DocType in the path, reads included (§5 "Base paths", §6, §8 b).
fn rest_doctype(segs: &[&str], extra: &Extra) -> Option<AdminReason> {
    let (api, named) = match segs {
        [a, r, dt, ..] if eq_ic(a, "api") && eq_ic(r, "resource") => ("/api/resource", dt),
        [a, v, r, dt, ..] if eq_ic(a, "api") && eq_ic(v, "v1") && eq_ic(r, "resource") => {
            ("/api/v1/resource", dt)
        }
        [a, v, kind, dt, ..] if eq_ic(a, "api") && eq_ic(v, "v2") => match kind {
            k if eq_ic(k, "document") => ("/api/v2/document", dt),
            k if eq_ic(k, "doctype") => ("/api/v2/doctype", dt),
            k if eq_ic(k, "method") => ("/api/v2/method", dt),
            _ => return None,
        },
        _ => return None,
    };
    let dt = admin_doctype(named, extra)?;
    Some(reason("erpnext.rest", format!("{api} on DocType \"{dt}\"")))
}

/// Every method name Frappe might run for this request (§0 item 7, §8 item 2): the `cmd`
/// parameter, which wins on any path when truthy (we cannot tell Python truthiness from text,
/// so the path method is kept as well), the `/api/(v1/|v2/)method/<name>` path, and the `method`
/// parameter that `upload_file`, `uploadfile` and `frappe.model.mapper.make_mapped_doc` call
/// (§6 "Upload indirection"). Dotless names are also tried as `frappe.handler.<name>`.
fn rpc_candidates(segs: &[&str], params: &Params) -> Vec<String> {
    let from_path = match segs {
        [a, m, name, ..] if eq_ic(a, "api") && eq_ic(m, "method") => Some(*name),
        [a, v, m, name, ..]
            if eq_ic(a, "api") && (eq_ic(v, "v1") || eq_ic(v, "v2")) && eq_ic(m, "method") =>
        {
            Some(*name)
        }
        _ => None,
    };
    let mut names = Vec::new();
    for raw in [params.get("cmd"), from_path, params.get("method")]
        .into_iter()
        .flatten()
    {
        let name = raw.trim();
        if name.is_empty() {
            continue;
        }
        if !name.contains('.') {
            names.push(format!("frappe.handler.{name}"));
        }
        names.push(name.to_owned());
    }
    names
}

/// Every RPC method name Frappe might run for this ERPNext request (see
/// `rpc_candidates`); empty when the request is not an RPC.
pub(crate) fn erpnext_rpc_methods(path: &str, params: &Params) -> Vec<String> {
    rpc_candidates(&segments(path), params)
}

/// Every DocType the request's parameters name (plain DocType parameters and
/// the DocType keys of JSON documents), trimmed; `Err` when a document
/// parameter's JSON does not parse (nothing can then be cleared).
pub(crate) fn erpnext_named_doctypes(params: &Params) -> Result<Vec<String>, ()> {
    let mut out: Vec<String> = DOCTYPE_PARAMS
        .iter()
        .filter_map(|p| params.get(p))
        .map(|d| d.trim().to_owned())
        .filter(|d| !d.is_empty())
        .collect();
    for param in DOCUMENT_PARAMS {
        let Some(raw) = params.get(param).map(str::trim).filter(|r| !r.is_empty()) else {
            continue;
        };
        let value: Value = serde_json::from_str(raw).map_err(|_| ())?;
        collect_doctypes(&value, &mut out);
    }
    Ok(out)
}

fn collect_doctypes(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(name) => out.push(name.trim().to_owned()),
        Value::Array(items) => items.iter().for_each(|i| collect_doctypes(i, out)),
        Value::Object(map) => DOCUMENT_KEYS
            .iter()
            .filter_map(|k| map.get(*k)?.as_str())
            .for_each(|d| out.push(d.trim().to_owned())),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// (c) A document function whose parameters name an admin DocType (§6, §8 c).
fn rpc_doctype(candidates: &[String], params: &Params, extra: &Extra) -> Option<AdminReason> {
    let function = candidates.iter().find(|m| is_document_function(m))?;
    let found = param_doctype(params, extra).or_else(|| json_doctype(params, extra))?;
    let function = shown(function);
    let detail = match found {
        Found::Param(dt) => format!("{function} on DocType \"{dt}\""),
        Found::Json(dt, param) => format!("{function} on DocType \"{dt}\" in \"{param}\""),
        Found::Unreadable(param) => format!("{function} with unreadable JSON in \"{param}\""),
    };
    Some(reason("erpnext.rpc-doctype", detail))
}

/// What names an admin DocType in an RPC's parameters.
enum Found<'a> {
    /// A plain DocType parameter.
    Param(&'a str),
    /// A key inside the JSON of a document parameter.
    Json(&'a str, &'static str),
    /// A document parameter whose JSON does not parse: it cannot be cleared.
    Unreadable(&'static str),
}

fn is_document_function(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    DOCUMENT_FUNCTIONS.iter().any(|p| method_matches(p, name))
        || DOCUMENT_FUNCTION_NAMES.contains(&last)
}

fn param_doctype<'a>(params: &Params, extra: &'a Extra) -> Option<Found<'a>> {
    DOCTYPE_PARAMS
        .iter()
        .find_map(|p| admin_doctype(params.get(p)?, extra))
        .map(Found::Param)
}

/// The first admin DocType named inside `doc`, `docs` or `data`. Python's `json.loads` accepts a
/// little more than serde_json (NaN, lone surrogates, deeper nesting): such input is unreadable
/// here, hence admin, which only errs on the closed side. An empty value names nothing.
fn json_doctype<'a>(params: &Params, extra: &'a Extra) -> Option<Found<'a>> {
    DOCUMENT_PARAMS.iter().find_map(|&param| {
        let raw = params.get(param)?.trim();
        if raw.is_empty() {
            return None;
        }
        match serde_json::from_str::<Value>(raw) {
            Err(_) => Some(Found::Unreadable(param)),
            Ok(value) => value_doctype(&value, extra).map(|dt| Found::Json(dt, param)),
        }
    })
}

/// A JSON string is taken as a DocType name (`frappe.get_doc("System Settings")` loads a
/// Single); an object by its DocType keys; an array by each item. Numbers, booleans and null
/// name nothing. Depth is bounded by serde_json's recursion limit.
fn value_doctype<'a>(value: &Value, extra: &'a Extra) -> Option<&'a str> {
    match value {
        Value::String(name) => admin_doctype(name, extra),
        Value::Array(items) => items.iter().find_map(|item| value_doctype(item, extra)),
        Value::Object(map) => DOCUMENT_KEYS
            .iter()
            .find_map(|key| admin_doctype(map.get(*key)?.as_str()?, extra)),
        Value::Null | Value::Bool(_) | Value::Number(_) => None,
    }
}

/// (d) Methods privileged by name, built in and configured (§8 d).
fn rpc_privileged(candidates: &[String], extra: &Extra) -> Option<AdminReason> {
    let configured = extra.methods.iter().map(String::as_str);
    let (name, pattern) = candidates.iter().find_map(|name| {
        PRIVILEGED_METHODS
            .iter()
            .copied()
            .chain(configured.clone())
            .find(|p| method_matches(p, name))
            .map(|p| (name, p))
    })?;
    let name = shown(name);
    let detail = if PRIVILEGED_METHODS.contains(&pattern) {
        format!("privileged method {name}")
    } else {
        format!("privileged method {name} (configured {})", shown(pattern))
    };
    Some(reason("erpnext.rpc-method", detail))
}

/// (e) Backup downloads. Frappe tests `request.path.startswith("/backups")` (§0 item 7.4, §9),
/// which is wider than `^/backups/`.
fn backups(segs: &[&str]) -> Option<AdminReason> {
    let first = segs.first()?;
    if !first.get(..7)?.eq_ignore_ascii_case("backups") {
        return None;
    }
    Some(reason("erpnext.backups", "backup download".to_owned()))
}

/// An exact name, a `prefix.*` pattern (something must follow the prefix) or a `*.suffix`
/// pattern. Names compare exactly: Python imports are case-sensitive. Patterns are not
/// trimmed: the built-in ones have no spaces and `erpguard check` refuses configured ones
/// that do (this runs for every RPC, so it does no more than compare).
fn method_matches(pattern: &str, name: &str) -> bool {
    if let Some(suffix) = pattern.strip_prefix('*') {
        return suffix.len() > 1 && suffix.starts_with('.') && name.ends_with(suffix);
    }
    if let Some(prefix) = pattern.strip_suffix('*') {
        return prefix.len() > 1
            && prefix.ends_with('.')
            && name.len() > prefix.len()
            && name.starts_with(prefix);
    }
    !pattern.is_empty() && name == pattern
}

/// The built-in admin DocTypes by folded name (see [`same_doctype`]): one
/// hash lookup per named DocType instead of a folding scan of the whole list,
/// which showed in profiles of form posts.
static BUILT_IN: std::sync::LazyLock<std::collections::HashMap<String, &'static str>> =
    std::sync::LazyLock::new(|| {
        ERPNEXT_ADMIN_DOCTYPES
            .iter()
            .map(|dt| (fold(dt).collect(), *dt))
            .collect()
    });

/// The admin DocType (as listed) that `name` names, if any.
fn admin_doctype<'a>(name: &str, extra: &'a Extra) -> Option<&'a str> {
    let folded: String = fold(name).collect();
    if let Some(dt) = BUILT_IN.get(&folded) {
        return Some(dt);
    }
    configured_doctypes(extra).find(|dt| same_doctype(name, dt))
}

/// The operator's extra admin DocTypes (`step_up.extra_doctypes`), blanks skipped.
fn configured_doctypes(extra: &Extra) -> impl Iterator<Item = &str> + Clone {
    extra
        .doctypes
        .iter()
        .map(String::as_str)
        .filter(|d| !d.trim().is_empty())
}

fn all_doctypes(extra: &Extra) -> impl Iterator<Item = &str> + Clone {
    ERPNEXT_ADMIN_DOCTYPES
        .iter()
        .copied()
        .chain(configured_doctypes(extra))
}

/// DocType names match without regard to case (MariaDB collation) and surrounding whitespace
/// (§6 "REST with the DocType in the path"; §8 item 1).
fn same_doctype(a: &str, b: &str) -> bool {
    fold(a).eq(fold(b))
}

fn same_slug(slug: &str, doctype: &str) -> bool {
    fold(slug).map(dash).eq(fold(doctype).map(dash))
}

fn fold(s: &str) -> impl Iterator<Item = char> + '_ {
    s.trim().chars().flat_map(char::to_lowercase)
}

fn dash(c: char) -> char {
    if c == ' ' || c == '_' { '-' } else { c }
}

// ---------------------------------------------------------------------------------------------
// Akaunting
// ---------------------------------------------------------------------------------------------

/// Akaunting. `effective` is `params::laravel_method(...)` (POST + `_method` already applied).
/// Akaunting routes on the path alone, so the parameters add nothing beyond `effective`.
///
/// Rules, first match wins (upstreams/akaunting.md "What a gateway must match" item 8):
/// `akaunting.api-admin`, `akaunting.api-write`, `akaunting.admin-path`,
/// `akaunting.config-path` (`Extra::paths`).
///
/// The caller must fold an `X-HTTP-Method-Override` header into `effective` (Symfony honours it
/// on POST before `_method`); `DELETE uploads/<id>` is held for any non-read method anyway.
pub fn akaunting(
    effective: &Method,
    path: &str,
    _params: &Params,
    extra: &Extra,
) -> Option<AdminReason> {
    let segs = segments(path);
    akaunting_api(effective, &segs)
        .or_else(|| akaunting_company(effective, &segs))
        .or_else(|| extra_path("akaunting.config-path", path, &segs, extra))
}

/// `^/api/(users|companies|settings)(/.*)?$`, any method; any other `/api/*` but GET, HEAD (which
/// runs the GET route) and OPTIONS (CORS preflight, `config/cors.php`; no controller runs).
fn akaunting_api(effective: &Method, segs: &[&str]) -> Option<AdminReason> {
    let (api, rest) = segs.split_first()?;
    if !eq_ic(api, "api") {
        return None;
    }
    if let Some(resource) = rest.first()
        && let Some(admin) = AKAUNTING_API_ADMIN.iter().find(|a| eq_ic(resource, a))
    {
        return Some(reason("akaunting.api-admin", format!("API /api/{admin}")));
    }
    if is_read(effective) {
        return None;
    }
    let detail = format!("{} on the API", shown(effective.as_str()));
    Some(reason("akaunting.api-write", detail))
}

/// Company-prefixed admin paths `^/\d+/...` (`Route::pattern('company_id', '[0-9]+')`).
fn akaunting_company(effective: &Method, segs: &[&str]) -> Option<AdminReason> {
    let (company, rest) = segs.split_first()?;
    if !is_digits(company) {
        return None;
    }
    let lower: Vec<String> = rest.iter().map(|s| s.to_ascii_lowercase()).collect();
    let rest: Vec<&str> = lower.iter().map(String::as_str).collect();
    let what = company_admin_path(&rest).or_else(|| upload_delete(effective, &rest))?;
    let detail = format!(
        "{} /{{company}}/{} ({what})",
        shown(effective.as_str()),
        shown(&rest.join("/"))
    );
    Some(reason("akaunting.admin-path", detail))
}

/// upstreams/akaunting.md item 8 (and §3 for the detail), on the lower-cased segments after the
/// company id. Wider than the notes where that is free: `roles`, `auth/profile` and every
/// `settings/...` (the notes list ten, all admin) without a required tail. The dashboard
/// (`/{cid}`), the customer portal and signed links are not admin (§3, §5).
fn company_admin_path(rest: &[&str]) -> Option<&'static str> {
    match rest {
        [] | ["portal", ..] | ["signed", ..] => None,
        ["auth", "users", ..] => Some("users"),
        ["auth", "profile", ..] => Some("user profile"),
        ["roles", ..] => Some("roles"),
        ["common", "companies", ..] => Some("companies"),
        ["settings", ..] | [_, "settings", ..] => Some("settings"),
        ["apps", ..] => Some("apps"),
        ["install", "updates", ..] => Some("updates"),
        ["wizard", ..] => Some("setup wizard"),
        ["common", "bulk-actions", ..] => Some("bulk actions"),
        ["common", "import", ..] | [.., "import"] => Some("import"),
        [.., "export"] => Some("export"),
        _ => None,
    }
}

/// `DELETE uploads/\d+`. No other method has a route there, so POST/PUT/PATCH are either a 405
/// or a DELETE in disguise (a method override the caller did not apply): held too.
fn upload_delete(effective: &Method, rest: &[&str]) -> Option<&'static str> {
    match rest {
        ["uploads", id] if is_digits(id) && !is_read(effective) => Some("attachment delete"),
        _ => None,
    }
}

fn is_read(method: &Method) -> bool {
    *method == Method::GET || *method == Method::HEAD || *method == Method::OPTIONS
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

// ---------------------------------------------------------------------------------------------
// Shared
// ---------------------------------------------------------------------------------------------

/// The non-empty path segments: `//` and a trailing `/` do not hide a route from us.
fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

/// `Extra::paths`, against the path as given and with empty segments dropped.
fn extra_path(rule: &'static str, path: &str, segs: &[&str], extra: &Extra) -> Option<AdminReason> {
    if extra.paths.is_empty() {
        return None;
    }
    let normal = format!("/{}", segs.join("/"));
    let glob = extra
        .paths
        .iter()
        .find(|g| !g.is_empty() && (glob_match(g, path) || glob_match(g, &normal)))?;
    Some(reason(
        rule,
        format!("path matches configured {}", shown(glob)),
    ))
}

/// Whole-string glob match; `*` matches any run of bytes, ASCII letters match either case.
/// Backtracks to the last `*` only, so the cost is at most pattern × text.
fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while let Some(&c) = t.get(ti) {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(pc) if pc.eq_ignore_ascii_case(&c) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    star = Some((sp, st + 1));
                    pi = sp + 1;
                    ti = st + 1;
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|&b| b == b'*'))
}

fn eq_ic(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn reason(rule: &'static str, detail: String) -> AdminReason {
    AdminReason { rule, detail }
}

/// A short, escaped copy of request text for a detail line.
fn shown(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(100)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(100).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;
    use http::header::{CONTENT_TYPE, HeaderValue};

    use super::*;
    use crate::params;

    const FORM: &str = "application/x-www-form-urlencoded";
    const JSON: &str = "application/json";
    const USER_DOC: &str = r#"{"doctype":"User","name":"a@example.com","enabled":0,"roles":[{"doctype":"Has Role","role":"System Manager"}]}"#;
    const SINV_DOC: &str = r#"{"doctype":"Sales Invoice","name":"new-sales-invoice-1","customer":"ACME","items":[{"doctype":"Sales Invoice Item","item_code":"X","qty":1}]}"#;

    fn headers(content_type: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(ct) = content_type {
            h.insert(CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        }
        h
    }

    fn enc(pairs: &[(&str, &str)]) -> String {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish()
    }

    /// How a test request carries its parameters (`Multipart` takes urlencoded pairs and sends
    /// them as multipart/form-data text parts).
    #[derive(Clone, Copy)]
    enum Via<'a> {
        None,
        Query(&'a str),
        Form(&'a str),
        Json(&'a str),
        Multipart(&'a str),
    }

    fn multipart(pairs: &str) -> Vec<u8> {
        let mut body = String::new();
        for (name, value) in form_urlencoded::parse(pairs.as_bytes()) {
            body.push_str(&format!(
                "--XB\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            ));
        }
        body.push_str("--XB--\r\n");
        body.into_bytes()
    }

    fn frappe_params(via: Via<'_>) -> Params {
        let (query, ct, body) = match via {
            Via::None => (None, None, Vec::new()),
            Via::Query(q) => (Some(q), None, Vec::new()),
            Via::Form(b) => (None, Some(FORM), b.as_bytes().to_vec()),
            Via::Json(b) => (None, Some(JSON), b.as_bytes().to_vec()),
            Via::Multipart(pairs) => (
                None,
                Some("multipart/form-data; boundary=XB"),
                multipart(pairs),
            ),
        };
        params::frappe(query, &headers(ct), &body).unwrap()
    }

    fn erp(method: &Method, path: &str, via: Via<'_>, extra: &Extra) -> Option<AdminReason> {
        erpnext(method, path, &frappe_params(via), extra)
    }

    fn rule(got: Option<&AdminReason>) -> Option<&'static str> {
        got.map(|r| r.rule)
    }

    const RPC: Option<&str> = Some("erpnext.rpc-doctype");
    const METHOD: Option<&str> = Some("erpnext.rpc-method");
    const REST: Option<&str> = Some("erpnext.rest");
    const DESK: Option<&str> = Some("erpnext.desk");

    // -----------------------------------------------------------------------------------------
    // ERPNext: the Done-when cases
    // -----------------------------------------------------------------------------------------

    /// How a `set_value` request is encoded.
    #[derive(Clone, Copy)]
    enum Enc {
        Query,
        Form,
        Json,
        Multipart,
    }

    /// `frappe.client.set_value` on a DocType, every way the issue lists: urlencoded form, JSON
    /// body, `cmd` on `/`, `cmd` on another method's path, GET with a query string, plus the v1 and
    /// v2 method paths and multipart. Yields (how, method, path, encoding, parameters).
    fn set_value_variants(doctype: &str) -> Vec<(&'static str, Method, &'static str, Enc, String)> {
        let fields = [
            ("doctype", doctype),
            ("name", doctype),
            ("fieldname", "app_name"),
            ("value", "x"),
        ];
        let form = enc(&fields);
        let json = serde_json::json!({
            "doctype": doctype, "name": doctype, "fieldname": {"app_name": "x"}, "value": null,
        })
        .to_string();
        let cmd_form = format!("cmd=frappe.client.set_value&{form}");
        let cmd_json = serde_json::json!({
            "cmd": "frappe.client.set_value", "doctype": doctype, "name": "x",
        })
        .to_string();
        let m = "/api/method/frappe.client.set_value";
        #[rustfmt::skip]
        let variants = vec![
            ("form", Method::POST, m, Enc::Form, form.clone()),
            ("json", Method::POST, m, Enc::Json, json.clone()),
            ("multipart", Method::POST, m, Enc::Multipart, form.clone()),
            ("GET query", Method::GET, m, Enc::Query, form.clone()),
            ("DELETE query", Method::DELETE, m, Enc::Query, form.clone()),
            ("v1 path", Method::POST, "/api/v1/method/frappe.client.set_value", Enc::Form, form.clone()),
            ("v2 path", Method::POST, "/api/v2/method/frappe.client.set_value", Enc::Json, json),
            ("path with a tail", Method::POST, "/api/method/frappe.client.set_value/x", Enc::Form, form),
            ("cmd on /", Method::POST, "/", Enc::Form, cmd_form.clone()),
            ("cmd on / by GET", Method::GET, "/", Enc::Query, cmd_form.clone()),
            ("cmd on /login", Method::POST, "/login", Enc::Form, cmd_form.clone()),
            ("cmd on another method", Method::POST, "/api/method/ping", Enc::Form, cmd_form.clone()),
            ("cmd in JSON on another method", Method::POST, "/api/method/frappe.auth.get_logged_user", Enc::Json, cmd_json),
            ("cmd on a desk page", Method::GET, "/app/sales-invoice", Enc::Query, cmd_form),
        ];
        variants
    }

    fn via(enc: Enc, text: &str) -> Via<'_> {
        match enc {
            Enc::Query => Via::Query(text),
            Enc::Form => Via::Form(text),
            Enc::Json => Via::Json(text),
            Enc::Multipart => Via::Multipart(text),
        }
    }

    #[test]
    fn set_value_on_admin_doctypes_is_held_every_way_it_can_arrive() {
        for doctype in ["User", "Role", "System Settings"] {
            for (how, method, path, enc, text) in set_value_variants(doctype) {
                let got = erp(&method, path, via(enc, &text), &Extra::default());
                assert_eq!(rule(got.as_ref()), RPC, "{doctype} {how}: {got:?}");
                let detail = got.map(|r| r.detail).unwrap_or_default();
                assert!(
                    detail.contains(&format!("on DocType \"{doctype}\"")),
                    "{doctype} {how}: {detail}"
                );
            }
        }
    }

    #[test]
    fn set_value_on_sales_invoice_passes_every_way() {
        for (how, method, path, enc, text) in set_value_variants("Sales Invoice") {
            let got = erp(&method, path, via(enc, &text), &Extra::default());
            assert_eq!(got, None, "Sales Invoice {how}");
        }
    }

    #[test]
    fn detail_names_the_function_and_the_listed_doctype() {
        let body = enc(&[("doctype", " system SETTINGS "), ("name", "x")]);
        let got = erp(
            &Method::POST,
            "/api/method/frappe.client.set_value",
            Via::Form(&body),
            &Extra::default(),
        );
        assert_eq!(
            got,
            Some(AdminReason {
                rule: "erpnext.rpc-doctype",
                detail: "frappe.client.set_value on DocType \"System Settings\"".into(),
            })
        );
    }

    #[test]
    fn savedocs_is_judged_by_the_doctype_inside_doc() {
        let path = "/api/method/frappe.desk.form.save.savedocs";
        let user_form = enc(&[("doc", USER_DOC), ("action", "Save")]);
        let sinv_form = enc(&[("doc", SINV_DOC), ("action", "Save")]);
        let user_obj = format!(r#"{{"doc":{USER_DOC},"action":"Save"}}"#);
        let sinv_obj = format!(r#"{{"doc":{SINV_DOC},"action":"Save"}}"#);
        let user_str = serde_json::json!({"doc": USER_DOC, "action": "Save"}).to_string();
        let sinv_str = serde_json::json!({"doc": SINV_DOC, "action": "Save"}).to_string();
        let user_cmd = enc(&[
            ("cmd", "frappe.desk.form.save.savedocs"),
            ("doc", USER_DOC),
            ("action", "Save"),
        ]);
        let sinv_cmd = enc(&[
            ("cmd", "frappe.desk.form.save.savedocs"),
            ("doc", SINV_DOC),
            ("action", "Submit"),
        ]);
        #[rustfmt::skip]
        let cases: Vec<(&str, &str, Via<'_>, Option<&str>)> = vec![
            ("form, User", path, Via::Form(&user_form), RPC),
            ("JSON object, User", path, Via::Json(&user_obj), RPC),
            ("JSON string, User", path, Via::Json(&user_str), RPC),
            ("cmd on /, User", "/", Via::Form(&user_cmd), RPC),
            ("GET query, User", path, Via::Query(&user_form), RPC),
            ("form, Sales Invoice", path, Via::Form(&sinv_form), None),
            ("JSON object, Sales Invoice", path, Via::Json(&sinv_obj), None),
            ("JSON string, Sales Invoice", path, Via::Json(&sinv_str), None),
            ("cmd on /, Sales Invoice", "/", Via::Form(&sinv_cmd), None),
        ];
        for (how, path, via, want) in cases {
            let got = erp(&Method::POST, path, via, &Extra::default());
            assert_eq!(rule(got.as_ref()), want, "savedocs {how}: {got:?}");
        }
        let got = erp(
            &Method::POST,
            path,
            Via::Form(&user_form),
            &Extra::default(),
        );
        assert_eq!(
            got.map(|r| r.detail).as_deref(),
            Some("frappe.desk.form.save.savedocs on DocType \"User\" in \"doc\"")
        );
    }

    // -----------------------------------------------------------------------------------------
    // ERPNext: one table per rule
    // -----------------------------------------------------------------------------------------

    #[test]
    fn desk_screens() {
        #[rustfmt::skip]
        let cases: &[(&str, Option<&str>)] = &[
            ("/app/user", DESK),
            ("/app/user/", DESK),
            ("/app/user/a@example.com", DESK),
            ("/app/user/new-user-1", DESK),
            ("/app/user/view/report", DESK),
            ("/app/system-settings", DESK),
            ("/desk/role", DESK),
            ("/desk/role-profile/x", DESK),
            ("/app/User", DESK),
            ("/APP/Role-Profile", DESK),
            ("/app/System Settings", DESK),
            ("/app/system_settings", DESK),
            ("/app//user", DESK),
            ("/app/List/User", DESK),
            ("/app/Form/User/a@example.com", DESK),
            ("/app/doctype/Sales Invoice", DESK),
            ("/app/permission-manager", DESK),
            ("/app/backups", DESK),
            ("/app/setup-wizard/0", DESK),
            ("/app/server-script/new", DESK),
            ("/app/oauth-client", DESK),
            ("/app/sales-invoice", None),
            ("/app/sales-invoice/SINV-0001", None),
            ("/app/List/Sales Invoice", None),
            ("/app", None),
            ("/app/", None),
            ("/app/home", None),
            ("/app/users", None),
            ("/app/user-profile", None),
            ("/app/query-report/General Ledger", None),
            ("/apps", None),
            ("/user", None),
            ("/me", None),
            ("/application/user", None),
        ];
        for &(path, want) in cases {
            let got = erp(&Method::GET, path, Via::None, &Extra::default());
            assert_eq!(rule(got.as_ref()), want, "{path}: {got:?}");
        }
        let got = erp(
            &Method::GET,
            "/app/system-settings",
            Via::None,
            &Extra::default(),
        );
        assert_eq!(
            got.map(|r| r.detail).as_deref(),
            Some("desk screen /app/system-settings (DocType \"System Settings\")")
        );
    }

    #[test]
    fn rest_paths_reads_included() {
        #[rustfmt::skip]
        let cases: &[(Method, &str, Option<&str>)] = &[
            (Method::GET, "/api/resource/User", REST),
            (Method::GET, "/api/resource/User/Administrator", REST),
            (Method::GET, "/api/resource/User/", REST),
            (Method::GET, "/api/resource/user", REST),
            (Method::GET, "/api/resource/USER PERMISSION", REST),
            (Method::GET, "/api/resource/ User ", REST),
            (Method::PUT, "/api/resource/System Settings/System Settings", REST),
            (Method::POST, "/api/resource/Server Script", REST),
            (Method::DELETE, "/api/v1/resource/Role/Accounts User", REST),
            (Method::GET, "/api/v2/document/Role Profile", REST),
            (Method::PATCH, "/api/v2/document/OAuth Client/abc", REST),
            (Method::GET, "/api/v2/doctype/User/meta", REST),
            (Method::GET, "/api/v2/doctype/Error Log/count", REST),
            (Method::POST, "/api/v2/method/User/generate_keys", REST),
            (Method::GET, "/API/Resource/User", REST),
            (Method::GET, "/api//resource//User", REST),
            (Method::GET, "/api/resource/Sales Invoice", None),
            (Method::POST, "/api/resource/Sales Invoice", None),
            (Method::GET, "/api/resource/Sales Invoice/SINV-0001", None),
            (Method::GET, "/api/v2/document/Customer", None),
            (Method::GET, "/api/v2/method/Sales Invoice/make_payment", None),
            (Method::GET, "/api/resource", None),
            (Method::GET, "/api/resource/Users", None),
            (Method::GET, "/api/v3/document/User", None),
            (Method::GET, "/api/method/ping", None),
        ];
        for (method, path, want) in cases {
            let got = erp(method, path, Via::None, &Extra::default());
            assert_eq!(rule(got.as_ref()), *want, "{method} {path}: {got:?}");
        }
        let got = erp(
            &Method::GET,
            "/api/resource/user",
            Via::None,
            &Extra::default(),
        );
        assert_eq!(
            got.map(|r| r.detail).as_deref(),
            Some("/api/resource on DocType \"User\"")
        );
    }

    #[test]
    fn rpc_with_a_doctype_parameter() {
        let user_docs = format!("[{SINV_DOC},{USER_DOC}]");
        let sinv_docs = format!("[{SINV_DOC},{SINV_DOC}]");
        let customize = r#"{"doctype":"Customize Form","doc_type":"Sales Invoice"}"#;
        let child = r#"{"doctype":"Dynamic Link","parenttype":"User","parent":"a@example.com"}"#;
        let import = r#"{"doctype":"Comment","reference_doctype":"User"}"#;
        let array_body = format!("[{USER_DOC}]");
        let m = |name: &str| format!("/api/method/{name}");
        #[rustfmt::skip]
        let cases: Vec<(&str, String, String, bool, Option<&str>)> = vec![
            // (what, path, urlencoded parameters or JSON body, is JSON, want)
            ("get_list User (reads count)", m("frappe.client.get_list"), enc(&[("doctype", "User"), ("fields", "[\"name\"]")]), false, RPC),
            ("get_list Sales Invoice", m("frappe.client.get_list"), enc(&[("doctype", "Sales Invoice")]), false, None),
            ("get_value System Settings lower case", m("frappe.client.get_value"), r#"{"doctype":"system settings","fieldname":"app_name"}"#.into(), true, RPC),
            ("get Role, padded", m("frappe.client.get"), enc(&[("doctype", "  Role\t"), ("name", "x")]), false, RPC),
            ("get_password", m("frappe.client.get_password"), enc(&[("doctype", "Email Account"), ("name", "x"), ("fieldname", "password")]), false, RPC),
            ("get_count Error Log", m("frappe.client.get_count"), enc(&[("doctype", "Error Log")]), false, RPC),
            ("delete Webhook", m("frappe.client.delete"), enc(&[("doctype", "Webhook"), ("name", "x")]), false, RPC),
            ("rename_doc Role", m("frappe.client.rename_doc"), enc(&[("doctype", "Role"), ("old_name", "a"), ("new_name", "b")]), false, RPC),
            ("insert User", m("frappe.client.insert"), enc(&[("doc", USER_DOC)]), false, RPC),
            ("insert child row of User", m("frappe.client.insert"), enc(&[("doc", child)]), false, RPC),
            ("insert Comment on a User", m("frappe.client.insert"), enc(&[("doc", import)]), false, RPC),
            ("insert Sales Invoice", m("frappe.client.insert"), enc(&[("doc", SINV_DOC)]), false, None),
            ("save, doc as a JSON object", m("frappe.client.save"), format!(r#"{{"doc":{USER_DOC}}}"#), true, RPC),
            ("submit Sales Invoice", m("frappe.client.submit"), format!(r#"{{"doc":{SINV_DOC}}}"#), true, None),
            ("insert_many, one admin doc among others", m("frappe.client.insert_many"), enc(&[("docs", &user_docs)]), false, RPC),
            ("insert_many, no admin doc", m("frappe.client.insert_many"), enc(&[("docs", &sinv_docs)]), false, None),
            ("bulk_update JSON", m("frappe.client.bulk_update"), format!(r#"{{"docs":[{SINV_DOC},{{"doctype":"Server Script","docname":"x"}}]}}"#), true, RPC),
            ("top-level JSON array is data", m("frappe.client.insert_many"), array_body, true, RPC),
            ("attach_file to a User", m("frappe.client.attach_file"), enc(&[("doctype", "User"), ("docname", "x"), ("filedata", "AA==")]), false, RPC),
            ("savedocs cancel", m("frappe.desk.form.save.cancel"), enc(&[("doctype", "Data Import"), ("name", "x")]), false, RPC),
            ("getdoc", m("frappe.desk.form.load.getdoc"), enc(&[("doctype", "User"), ("name", "Administrator")]), false, RPC),
            ("getdoctype", m("frappe.desk.form.load.getdoctype"), enc(&[("doctype", "Server Script")]), false, RPC),
            ("getdoc Sales Invoice", m("frappe.desk.form.load.getdoc"), enc(&[("doctype", "Sales Invoice"), ("name", "x")]), false, None),
            ("form utils", m("frappe.desk.form.utils.get_next"), enc(&[("doctype", "Role"), ("value", "x")]), false, RPC),
            ("reportview.get", m("frappe.desk.reportview.get"), enc(&[("doctype", "Access Log")]), false, RPC),
            ("reportview.delete_items", m("frappe.desk.reportview.delete_items"), enc(&[("doctype", "Version"), ("items", "[\"a\"]")]), false, RPC),
            ("reportview.get Sales Invoice", m("frappe.desk.reportview.get"), enc(&[("doctype", "Sales Invoice")]), false, None),
            ("search_link User", m("frappe.desk.search.search_link"), enc(&[("doctype", "User"), ("txt", "a")]), false, RPC),
            ("search_link Customer from a User form", m("frappe.desk.search.search_link"), enc(&[("doctype", "Customer"), ("reference_doctype", "User")]), false, RPC),
            ("search_link Customer from a Sales Invoice form", m("frappe.desk.search.search_link"), enc(&[("doctype", "Customer"), ("reference_doctype", "Sales Invoice")]), false, None),
            ("model delete_doc", m("frappe.model.delete_doc.delete_doc"), enc(&[("doctype", "Custom Field"), ("name", "x")]), false, RPC),
            ("model rename_doc", m("frappe.model.rename_doc.update_document_title"), enc(&[("doctype", "Role"), ("docname", "x")]), false, RPC),
            ("bulk submit", m("frappe.desk.doctype.bulk_update.bulk_update.submit_cancel_or_update_docs"), enc(&[("doctype", "Property Setter"), ("docnames", "[]")]), false, RPC),
            ("get_list child table via parent", m("frappe.client.get_list"), enc(&[("doctype", "Dynamic Link"), ("parent", "Role")]), false, RPC),
            ("doc_type", m("frappe.client.get_list"), enc(&[("doctype", "Note"), ("doc_type", "Client Script")]), false, RPC),
            ("run_doc_method, Customize Form docs", m("run_doc_method"), enc(&[("docs", customize), ("method", "save_customization")]), false, RPC),
            ("run_doc_method, dt", "/".into(), enc(&[("cmd", "run_doc_method"), ("dt", "User"), ("dn", "x"), ("method", "x")]), false, RPC),
            ("runserverobj v2 path", "/api/v2/method/runserverobj".into(), enc(&[("dt", "System Settings"), ("dn", "System Settings"), ("method", "x")]), false, RPC),
            ("run_doc_method Sales Invoice", m("run_doc_method"), enc(&[("dt", "Sales Invoice"), ("dn", "x"), ("method", "make_payment")]), false, None),
            ("upload_file for a Data Import", m("upload_file"), enc(&[("doctype", "Data Import"), ("docname", "x")]), false, RPC),
            ("upload_file for a Sales Invoice", m("upload_file"), enc(&[("doctype", "Sales Invoice"), ("docname", "x")]), false, None),
            ("a re-exported savedocs", m("some_app.api.savedocs"), enc(&[("doc", USER_DOC)]), false, RPC),
            ("JSON cmd that is falsy in Python", m("frappe.client.set_value"), r#"{"cmd":0,"doctype":"User","name":"x"}"#.into(), true, RPC),
            ("doc as a JSON string naming a Single", m("frappe.desk.form.save.savedocs"), enc(&[("doc", "\"System Settings\"")]), false, RPC),
            ("duplicate keys: Python keeps the last", m("frappe.client.insert"), enc(&[("doc", r#"{"doctype":"Sales Invoice","doctype":"User"}"#)]), false, RPC),
            ("doc is null", m("frappe.client.insert"), enc(&[("doc", "null")]), false, None),
            ("doc is empty", m("frappe.client.insert"), enc(&[("doc", ""), ("doctype", "Sales Invoice")]), false, None),
            ("doctype not a string", m("frappe.client.get_list"), r#"{"doctype":["User"]}"#.into(), true, None),
            ("admin doctype on a function that takes none", m("frappe.desk.notifications.get_open_count"), enc(&[("doctype", "ToDo")]), false, None),
            ("admin doctype on ping", m("ping"), enc(&[("doctype", "Sales Invoice")]), false, None),
        ];
        for (what, path, params, is_json, want) in cases {
            let via = if is_json {
                Via::Json(&params)
            } else {
                Via::Form(&params)
            };
            let got = erp(&Method::POST, &path, via, &Extra::default());
            assert_eq!(rule(got.as_ref()), want, "{what}: {got:?}");
        }
    }

    #[test]
    fn unreadable_json_in_a_document_parameter_is_admin() {
        #[rustfmt::skip]
        let cases: &[(&str, &str)] = &[
            ("doc", r#"{"doctype":"User""#),
            ("doc", "User"),
            ("doc", r#"{"doctype":"Sales Invoice","grand_total":NaN}"#),
            ("doc", r#"{"doctype":"Sales Invoice"} trailing"#),
            ("docs", r#"[{"doctype":"Sales Invoice"},"#),
            ("data", "{not json}"),
        ];
        for &(param, value) in cases {
            let body = enc(&[(param, value)]);
            let got = erp(
                &Method::POST,
                "/api/method/frappe.desk.form.save.savedocs",
                Via::Form(&body),
                &Extra::default(),
            );
            assert_eq!(
                got.map(|r| (r.rule, r.detail)),
                Some((
                    "erpnext.rpc-doctype",
                    format!("frappe.desk.form.save.savedocs with unreadable JSON in \"{param}\"")
                )),
                "{param}={value}"
            );
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let body = enc(&[("docs", &deep)]);
        let got = erp(
            &Method::POST,
            "/api/method/frappe.client.insert_many",
            Via::Form(&body),
            &Extra::default(),
        );
        assert_eq!(rule(got.as_ref()), RPC, "nesting past serde_json's limit");
    }

    #[test]
    fn methods_privileged_by_name_whatever_the_parameters() {
        #[rustfmt::skip]
        let names: &[&str] = &[
            "frappe.core.doctype.user.user.generate_keys",
            "frappe.core.doctype.user.user.impersonate",
            "frappe.twofactor.reset_otp_secret",
            "frappe.client.get_password",
            "frappe.core.page.permission_manager.permission_manager.add",
            "frappe.core.page.permission_manager.permission_manager.reset",
            "frappe.core.doctype.user_permission.user_permission.add_user_permissions",
            "frappe.core.doctype.user_permission.user_permission.clear_user_permissions",
            "frappe.desk.doctype.system_console.system_console.execute_code",
            "frappe.core.doctype.scheduled_job_type.scheduled_job_type.execute_event",
            "frappe.core.doctype.rq_job.rq_job.stop_job",
            "frappe.core.doctype.recorder.recorder.add_indexes",
            "frappe.recorder.start",
            "frappe.core.doctype.data_import.data_import.form_start_import",
            "frappe.core.doctype.data_import.data_import.download_template",
            "frappe.core.doctype.data_export.exporter.export_data",
            "frappe.desk.page.backups.backups.schedule_files_backup",
            "frappe.utils.backups.fetch_latest_backups",
            "frappe.utils.backups.get_backup_encryption_key",
            "frappe.integrations.doctype.s3_backup_settings.s3_backup_settings.take_backups_s3",
            "frappe.integrations.doctype.dropbox_settings.dropbox_settings.take_backup",
            "frappe.integrations.doctype.google_drive.google_drive.take_backup",
            "frappe.core.doctype.installed_applications.installed_applications.update_installed_apps_order",
            "some_app.reexport.generate_keys",
        ];
        for name in names {
            let form = enc(&[("user", "Administrator")]);
            let cmd = enc(&[("cmd", name), ("user", "Administrator")]);
            let mapped = enc(&[("method", name), ("source_name", "Administrator")]);
            #[rustfmt::skip]
            let ways: Vec<(&str, Method, String, Via<'_>)> = vec![
                ("path", Method::POST, format!("/api/method/{name}"), Via::Form(&form)),
                ("GET path", Method::GET, format!("/api/method/{name}"), Via::None),
                ("v2 path", Method::POST, format!("/api/v2/method/{name}"), Via::None),
                ("cmd on /", Method::POST, "/".into(), Via::Form(&cmd)),
                ("upload_file indirection", Method::POST, "/api/method/upload_file".into(), Via::Form(&mapped)),
                ("make_mapped_doc indirection", Method::POST, "/api/method/frappe.model.mapper.make_mapped_doc".into(), Via::Form(&mapped)),
            ];
            for (how, method, path, via) in ways {
                let got = erp(&method, &path, via, &Extra::default());
                assert_eq!(rule(got.as_ref()), METHOD, "{name} {how}: {got:?}");
            }
        }
        let got = erp(
            &Method::POST,
            "/api/method/frappe.core.doctype.user.user.generate_keys",
            Via::Form("user=Administrator"),
            &Extra::default(),
        );
        assert_eq!(
            got.map(|r| r.detail).as_deref(),
            Some("privileged method frappe.core.doctype.user.user.generate_keys")
        );
    }

    #[test]
    fn ordinary_requests_are_not_admin() {
        let login = enc(&[("cmd", "login"), ("usr", "Administrator"), ("pwd", "x")]);
        let sinv = enc(&[("doc", SINV_DOC), ("action", "Save")]);
        #[rustfmt::skip]
        let cases: Vec<(Method, &str, Via<'_>)> = vec![
            (Method::GET, "/", Via::None),
            (Method::POST, "/login", Via::Form(&login)),
            (Method::POST, "/api/method/login", Via::Form(&login)),
            (Method::GET, "/api/method/logout", Via::None),
            (Method::GET, "/api/method/ping", Via::None),
            (Method::GET, "/api/method/frappe.auth.get_logged_user", Via::None),
            (Method::GET, "/api/method/frappe.realtime.get_user_info", Via::Query("sid=abc")),
            (Method::POST, "/api/method/frappe.desk.form.save.savedocs", Via::Form(&sinv)),
            (Method::GET, "/api/method/frappe.core.doctype.user.user.get_all_roles", Via::None),
            (Method::GET, "/api/method/frappe.client.get_passwordx", Via::None),
            (Method::GET, "/api/method/frappe.recorderx.start", Via::None),
            (Method::GET, "/app/home", Via::None),
            (Method::GET, "/files/logo.png", Via::None),
            (Method::GET, "/private/files/a.pdf", Via::Query("fid=x")),
            (Method::GET, "/api/method/ping", Via::Query("next=/backups/x")),
            (Method::GET, "/assets/frappe/backups.js", Via::None),
        ];
        for (method, path, via) in cases {
            let got = erp(&method, path, via, &Extra::default());
            assert_eq!(got, None, "{method} {path}");
        }
    }

    #[test]
    fn backup_downloads() {
        for (method, path) in [
            (Method::GET, "/backups/20260101_site-database.sql.gz"),
            (Method::HEAD, "/backups/x"),
            (Method::POST, "/backups/x"),
            (Method::GET, "/backups"),
            (Method::GET, "/backupsx/y"),
            (Method::GET, "//backups/x"),
            (Method::GET, "/BACKUPS/x"),
        ] {
            let got = erp(&method, path, Via::None, &Extra::default());
            assert_eq!(
                rule(got.as_ref()),
                Some("erpnext.backups"),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn options_is_answered_by_frappe_before_dispatch() {
        let cmd = enc(&[("cmd", "frappe.core.doctype.user.user.generate_keys")]);
        for path in ["/api/resource/User", "/app/user", "/backups/x", "/"] {
            let got = erp(&Method::OPTIONS, path, Via::Form(&cmd), &Extra::default());
            assert_eq!(got, None, "OPTIONS {path}");
        }
    }

    #[test]
    fn configured_doctypes_methods_and_paths_are_added() {
        let extra = Extra {
            doctypes: vec!["Company".into(), "  ".into(), "Payroll Settings".into()],
            methods: vec![
                "my_app.admin.*".into(),
                "my_app.api.wipe".into(),
                "*.purge_all".into(),
                String::new(),
            ],
            paths: vec![
                "/api/method/my_app.reports.*".into(),
                "/custom/*/admin".into(),
            ],
        };
        let company = enc(&[("doctype", "company"), ("fieldname", "x")]);
        let blank = enc(&[("doctype", " "), ("fieldname", "x")]);
        #[rustfmt::skip]
        let cases: Vec<(&str, Via<'_>, Option<&str>, Option<&str>)> = vec![
            // (path, parameters, with extra, without)
            ("/api/method/frappe.client.get_value", Via::Form(&company), RPC, None),
            ("/api/method/frappe.client.get_value", Via::Form(&blank), None, None),
            ("/app/company/ACME", Via::None, DESK, None),
            ("/app/payroll-settings", Via::None, DESK, None),
            ("/api/resource/Company", Via::None, REST, None),
            ("/api/method/my_app.admin.reset", Via::None, METHOD, None),
            ("/api/method/my_app.admin", Via::None, None, None),
            ("/api/method/my_app.api.wipe", Via::None, METHOD, None),
            ("/api/method/other.purge_all", Via::None, METHOD, None),
            ("/api/method/my_app.api.wipe_not", Via::None, None, None),
            ("/api/method/my_app.reports.run", Via::None, Some("erpnext.config-path"), None),
            ("/custom/a/b/admin", Via::None, Some("erpnext.config-path"), None),
            ("/CUSTOM//x//admin/", Via::None, Some("erpnext.config-path"), None),
            ("/custom/a/admin/more", Via::None, None, None),
        ];
        for (path, via, with, without) in cases {
            let got = erp(&Method::GET, path, via, &extra);
            assert_eq!(rule(got.as_ref()), with, "with extra: {path}: {got:?}");
            let got = erp(&Method::GET, path, via, &Extra::default());
            assert_eq!(
                rule(got.as_ref()),
                without,
                "without extra: {path}: {got:?}"
            );
        }
        let got = erp(&Method::GET, "/api/method/x.purge_all", Via::None, &extra);
        assert_eq!(
            got.map(|r| r.detail).as_deref(),
            Some("privileged method x.purge_all (configured *.purge_all)")
        );
    }

    // -----------------------------------------------------------------------------------------
    // ERPNext: the lists themselves
    // -----------------------------------------------------------------------------------------

    #[test]
    fn every_desk_slug_in_the_notes_is_admin() {
        // upstreams/erpnext.md "What a gateway must match" item 8 a), verbatim.
        let slugs = "user|role|role-profile|module-profile|user-permission|user-type|permission-manager|role-replication|system-settings|server-script|client-script|custom-field|property-setter|customize-form|doctype|module-def|oauth-client|oauth-provider-settings|social-login-key|ldap-settings|webhook|scheduled-job-type|rq-job|email-account|email-domain|installed-applications|data-import|data-export|backups|system-console|recorder|package-import|error-log|access-log|activity-log|website-settings|portal-settings|print-format|report|notification|deleted-document";
        for slug in slugs.split('|') {
            for root in ["app", "desk"] {
                let path = format!("/{root}/{slug}");
                let got = erp(&Method::GET, &path, Via::None, &Extra::default());
                assert_eq!(rule(got.as_ref()), DESK, "{path}");
            }
        }
    }

    #[test]
    fn every_listed_doctype_is_admin_on_every_route() {
        for dt in ERPNEXT_ADMIN_DOCTYPES {
            let slug = dt.to_lowercase().replace(' ', "-");
            let upper = dt.to_uppercase();
            let query = enc(&[("doctype", &upper)]);
            #[rustfmt::skip]
            let cases: Vec<(String, Via<'_>, Option<&str>)> = vec![
                (format!("/app/{slug}"), Via::None, DESK),
                (format!("/api/resource/{dt}"), Via::None, REST),
                (format!("/api/v2/document/{}", dt.to_lowercase()), Via::None, REST),
                ("/api/method/frappe.client.get_list".into(), Via::Query(&query), RPC),
            ];
            for (path, via, want) in cases {
                let got = erp(&Method::GET, &path, via, &Extra::default());
                assert_eq!(rule(got.as_ref()), want, "{dt}: {path}");
            }
        }
    }

    #[test]
    fn lists_are_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for dt in ERPNEXT_ADMIN_DOCTYPES
            .iter()
            .chain(ERPNEXT_OPTIONAL_DOCTYPES)
        {
            assert_eq!(dt.trim(), *dt, "{dt:?} is padded");
            assert!(seen.insert(dt.to_lowercase()), "{dt} listed twice");
        }
        for p in PRIVILEGED_METHODS.iter().chain(DOCUMENT_FUNCTIONS) {
            let inner = p.trim_start_matches("*.").trim_end_matches(".*");
            assert!(!inner.is_empty() && !inner.contains('*'), "{p}");
            assert!(!inner.contains(char::is_whitespace), "{p}");
        }
        for name in DOCUMENT_FUNCTION_NAMES {
            assert!(!name.contains('.') && !name.is_empty(), "{name}");
        }
    }

    #[test]
    fn method_patterns() {
        #[rustfmt::skip]
        let cases: &[(&str, &str, bool)] = &[
            ("a.b", "a.b", true),
            ("a.b", "a.b.c", false),
            ("a.b", "A.B", false),
            ("a.b.*", "a.b.c", true),
            ("a.b.*", "a.b.c.d", true),
            ("a.b.*", "a.b", false),
            ("a.b.*", "a.b.", false),
            ("a.b.*", "a.bc.d", false),
            ("*.x", "a.x", true),
            ("*.x", "a.b.x", true),
            ("*.x", "ax", false),
            ("*.x", "x", false),
            (".*", "anything", false),
            ("*", "anything", false),
            ("*.", "a.", false),
            ("", "", false),
            (" a.b ", "a.b", false),
        ];
        for &(pattern, name, want) in cases {
            assert_eq!(method_matches(pattern, name), want, "{pattern:?} {name:?}");
        }
    }

    #[test]
    fn globs() {
        #[rustfmt::skip]
        let cases: &[(&str, &str, bool)] = &[
            ("/a/*", "/a/b/c", true),
            ("/a/*", "/a/", true),
            ("/a/*", "/a", false),
            ("*", "", true),
            ("", "", true),
            ("/x", "/X", true),
            ("/a*b*c", "/aXbYbZc", true),
            ("/a*b*c", "/aXbYbZ", false),
            ("/é", "/é", true),
            ("**/admin", "/deep/admin", true),
        ];
        for &(pattern, text, want) in cases {
            assert_eq!(glob_match(pattern, text), want, "{pattern:?} {text:?}");
        }
        // Backtracking is bounded: a hostile pattern against a long text finishes at once.
        let text = "a".repeat(20_000);
        assert!(!glob_match("*a*a*a*a*a*b", &text));
    }

    // -----------------------------------------------------------------------------------------
    // Akaunting
    // -----------------------------------------------------------------------------------------

    fn ak(real: &Method, path: &str, body: Option<&str>) -> Option<AdminReason> {
        let (ct, bytes) = match body {
            Some(b) => (Some(FORM), b.as_bytes()),
            None => (None, &b""[..]),
        };
        let (path, query) = path
            .split_once('?')
            .map_or((path, None), |(p, q)| (p, Some(q)));
        let input = params::laravel(query, &headers(ct), bytes, real).unwrap();
        let effective = params::laravel_method(real, &input).unwrap();
        akaunting(&effective, path, &input, &Extra::default())
    }

    const ADMIN: Option<&str> = Some("akaunting.admin-path");
    const API_ADMIN: Option<&str> = Some("akaunting.api-admin");
    const API_WRITE: Option<&str> = Some("akaunting.api-write");

    #[test]
    fn akaunting_paths() {
        let patch = Some("_token=t&_method=PATCH&name=ACME");
        let delete = Some("_token=t&_method=DELETE");
        #[rustfmt::skip]
        let cases: &[(Method, &str, Option<&str>, Option<&str>)] = &[
            (Method::GET, "/1/auth/users", None, ADMIN),
            (Method::GET, "/1/auth/users/create", None, ADMIN),
            (Method::POST, "/1/auth/users", Some("_token=t&email=a@b.c"), ADMIN),
            (Method::GET, "/1/auth/users/2/edit", None, ADMIN),
            (Method::GET, "/1/auth/users/2/disable", None, ADMIN),
            (Method::GET, "/1/auth/users/2/invite", None, ADMIN),
            (Method::DELETE, "/1/auth/users/2", None, ADMIN),
            (Method::GET, "/1/auth/profile/2/edit", None, ADMIN),
            (Method::POST, "/1/auth/profile/2", patch, ADMIN),
            (Method::GET, "/1/roles/roles", None, ADMIN),
            (Method::GET, "/1/common/companies", None, ADMIN),
            (Method::GET, "/1/common/companies/2/switch", None, ADMIN),
            (Method::POST, "/1/settings/company", patch, ADMIN),
            (Method::GET, "/1/settings/email", None, ADMIN),
            (Method::GET, "/1/settings/email-templates/get", None, ADMIN),
            (Method::GET, "/1/settings/taxes/3/edit", None, ADMIN),
            (Method::GET, "/1/settings", None, ADMIN),
            (Method::GET, "/1/offline-payments/settings", None, ADMIN),
            (Method::POST, "/1/offline-payments/settings", patch, ADMIN),
            (Method::GET, "/1/apps/paypal/uninstall", None, ADMIN),
            (Method::GET, "/1/apps/paypal/disable", None, ADMIN),
            (Method::POST, "/1/apps/install", Some("_token=t&path=x"), ADMIN),
            (Method::GET, "/1/apps/api-key/create", None, ADMIN),
            (Method::GET, "/1/apps/home", None, ADMIN),
            (Method::GET, "/1/install/updates", None, ADMIN),
            (Method::GET, "/1/install/updates/run/core/3.2.3", None, ADMIN),
            (Method::GET, "/1/wizard", None, ADMIN),
            (Method::POST, "/1/wizard/companies", Some("_token=t"), ADMIN),
            (Method::POST, "/1/common/bulk-actions/sales/invoices", Some("_token=t"), ADMIN),
            (Method::POST, "/1/sales/invoices/import", Some("_token=t"), ADMIN),
            (Method::GET, "/1/common/import/sales/invoices", None, ADMIN),
            (Method::GET, "/1/sales/invoices/export", None, ADMIN),
            (Method::GET, "/1/common/reports/4/export", None, ADMIN),
            (Method::DELETE, "/1/uploads/5", None, ADMIN),
            (Method::POST, "/1/uploads/5", delete, ADMIN),
            (Method::POST, "/1/uploads/5", Some("_token=t"), ADMIN),
            (Method::GET, "/12/auth/users/", None, ADMIN),
            (Method::GET, "/1/AUTH/Users", None, ADMIN),
            (Method::GET, "/1//auth//users", None, ADMIN),
            (Method::GET, "/01/auth/users", None, ADMIN),
            (Method::GET, "/1/sales/invoices/export/", None, ADMIN),
            (Method::GET, "/1/sales/invoices", None, None),
            (Method::GET, "/1/sales/invoices/5", None, None),
            (Method::POST, "/1/sales/invoices/5", patch, None),
            (Method::DELETE, "/1/sales/invoices/5", None, None),
            (Method::GET, "/1", None, None),
            (Method::GET, "/1/", None, None),
            (Method::GET, "/1/portal", None, None),
            (Method::GET, "/1/portal/invoices", None, None),
            (Method::GET, "/1/portal/invoices/5/pdf", None, None),
            (Method::GET, "/1/portal/profile/3/edit", None, None),
            (Method::GET, "/1/portal/settings", None, None),
            (Method::GET, "/1/signed/invoices/5?signature=abc", None, None),
            (Method::GET, "/1/preview/invoices/5", None, None),
            (Method::GET, "/1/uploads/5", None, None),
            (Method::GET, "/1/uploads/5/download", None, None),
            (Method::GET, "/1/auth/logout", None, None),
            (Method::GET, "/1/common/items", None, None),
            (Method::GET, "/1/banking/transactions", None, None),
            (Method::GET, "/1/common/reports/4", None, None),
            (Method::GET, "/auth/login", None, None),
            (Method::POST, "/auth/login", Some("email=a@b.c&password=x"), None),
            (Method::GET, "/", None, None),
            (Method::GET, "/abc/auth/users", None, None),
            (Method::GET, "/public/img/settings", None, None),
        ];
        for (method, path, body, want) in cases {
            let got = ak(method, path, *body);
            assert_eq!(
                rule(got.as_ref()),
                *want,
                "{method} {path} {body:?}: {got:?}"
            );
        }
        assert_eq!(
            ak(&Method::POST, "/1/settings/company", patch)
                .map(|r| r.detail)
                .as_deref(),
            Some("PATCH /{company}/settings/company (settings)")
        );
    }

    #[test]
    fn akaunting_api() {
        #[rustfmt::skip]
        let cases: &[(Method, &str, Option<&str>, Option<&str>)] = &[
            (Method::POST, "/api/users", None, API_ADMIN),
            (Method::GET, "/api/users", None, API_ADMIN),
            (Method::GET, "/api/users/2/enable", None, API_ADMIN),
            (Method::GET, "/api/companies/1", None, API_ADMIN),
            (Method::GET, "/api/settings", None, API_ADMIN),
            (Method::GET, "/API/Settings/", None, API_ADMIN),
            (Method::POST, "/api/items", None, API_WRITE),
            (Method::PUT, "/api/items/3", None, API_WRITE),
            (Method::PATCH, "/api/items/3", None, API_WRITE),
            (Method::DELETE, "/api/items/3", None, API_WRITE),
            (Method::POST, "/api/documents/3", Some("_method=PATCH"), API_WRITE),
            (Method::POST, "/api/double-entry/accounts", None, API_WRITE),
            (Method::GET, "/api/items", None, None),
            (Method::HEAD, "/api/items", None, None),
            (Method::OPTIONS, "/api/items", None, None),
            (Method::GET, "/api/ping", None, None),
            (Method::GET, "/api/documents?search=type:invoice", None, None),
            (Method::GET, "/api/items/3/disable", None, None),
            (Method::GET, "/apiusers", None, None),
        ];
        for (method, path, body, want) in cases {
            let got = ak(method, path, *body);
            assert_eq!(rule(got.as_ref()), *want, "{method} {path}: {got:?}");
        }
    }

    #[test]
    fn akaunting_configured_paths() {
        let extra = Extra {
            paths: vec!["/*/double-entry/chart-of-accounts*".into(), String::new()],
            ..Extra::default()
        };
        let p = Params::default();
        let hit = akaunting(
            &Method::GET,
            "/1/double-entry/chart-of-accounts/4",
            &p,
            &extra,
        );
        assert_eq!(rule(hit.as_ref()), Some("akaunting.config-path"));
        let miss = akaunting(&Method::GET, "/1/double-entry/journal-entry", &p, &extra);
        assert_eq!(miss, None);
        let miss = akaunting(&Method::GET, "/1/sales/invoices", &p, &extra);
        assert_eq!(miss, None);
    }

    // -----------------------------------------------------------------------------------------
    // Robustness
    // -----------------------------------------------------------------------------------------

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[(self.next() % items.len() as u64) as usize]
        }
    }

    #[test]
    fn random_requests_never_panic() {
        let words = [
            "",
            "api",
            "app",
            "desk",
            "resource",
            "v1",
            "v2",
            "method",
            "document",
            "doctype",
            "User",
            "user ",
            "System Settings",
            "backups",
            "1",
            "auth",
            "users",
            "settings",
            "uploads",
            "5",
            "portal",
            "import",
            "export",
            "*",
            "é",
            "İ",
            "\u{212A}",
            "%",
            ".",
            "frappe.client.set_value",
            "a.b.*",
            "\0",
            "\u{feff}",
            "{",
            "[",
        ];
        let values = [
            "",
            "User",
            "[",
            "{\"doctype\":\"User\"}",
            "[[[]]]",
            "null",
            "\"Role\"",
            "1e999",
            "{\"doctype\":{}}",
            "frappe.client.get_list",
            "upload_file",
            " ",
            "\u{0}",
        ];
        let methods = [
            Method::GET,
            Method::POST,
            Method::DELETE,
            Method::OPTIONS,
            Method::PATCH,
        ];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let names = [
            "cmd", "method", "doctype", "doc", "docs", "data", "dt", "_method",
        ];
        for i in 0..4000 {
            let path: String = (0..(rng.next() % 6))
                .map(|_| format!("/{}", rng.pick(&words)))
                .collect();
            let pairs: Vec<(&str, &str)> = (0..(rng.next() % 4))
                .map(|_| (rng.pick(&names), rng.pick(&values)))
                .collect();
            let params = frappe_params(Via::Query(&enc(&pairs)));
            let extra = Extra {
                doctypes: vec![rng.pick(&words).to_owned()],
                methods: vec![rng.pick(&words).to_owned()],
                paths: vec![format!("{}*{}", rng.pick(&words), rng.pick(&words))],
            };
            let method = &methods[i % methods.len()];
            let _ = erpnext(method, &path, &params, &extra);
            let _ = akaunting(method, &path, &params, &extra);
        }
    }
}
