//! Token scopes in ERP terms, and the check of one request against them.
//!
//! Written forms (as `erpguard token create --scope` takes them):
//! - `Item:read`, `Sales Invoice:read+write`, `Customer:write`: an ERPNext
//!   DocType, or an Akaunting API resource (`invoices:read`);
//! - `path:/api/method/my_app.sync.*` or `path:GET,POST:/api/method/x`:
//!   methods (default any) and a canonical path glob;
//! - `company:1`: Akaunting only; every request must name this company
//!   (`company_id` parameter or `X-Company` header).
//!
//! The check fails closed: an RPC method erpguard cannot place as a read or
//! a write of the DocTypes it names, a document whose JSON does not parse, a
//! request that names no DocType, or anything that is not an API call, is
//! refused unless a `path:` scope names it explicitly.

use http::{HeaderMap, Method};

use crate::config::AppKind;
use crate::params::Params;
use crate::policy::glob::Glob;
use crate::profile::admin;

/// What a request does to a DocType or resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads.
    Read,
    /// Creates, changes or deletes.
    Write,
}

impl Access {
    fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
        }
    }
}

#[derive(Debug, Clone)]
enum Entry {
    Resource {
        name: String,
        read: bool,
        write: bool,
    },
    Path {
        methods: Vec<Method>,
        glob: Glob,
    },
}

/// A token's parsed scopes.
#[derive(Debug, Clone, Default)]
pub struct Scopes {
    entries: Vec<Entry>,
    company: Option<String>,
}

/// Parses the written scopes; the error names the bad one.
pub fn parse(written: &[String]) -> Result<Scopes, String> {
    let mut scopes = Scopes::default();
    for w in written {
        let w = w.trim();
        if let Some(rest) = w.strip_prefix("company:") {
            let id = rest.trim();
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("scope {w:?}: a company id is digits"));
            }
            scopes.company = Some(id.to_owned());
        } else if let Some(rest) = w.strip_prefix("path:") {
            scopes.entries.push(path_entry(w, rest)?);
        } else {
            scopes.entries.push(resource_entry(w)?);
        }
    }
    if scopes.entries.is_empty() {
        return Err("a token needs at least one DocType, resource or path scope".into());
    }
    Ok(scopes)
}

fn path_entry(w: &str, rest: &str) -> Result<Entry, String> {
    let (methods, pattern) = match rest.split_once(":/") {
        Some((m, p)) => (m, format!("/{p}")),
        None => ("", rest.to_owned()),
    };
    let methods = methods
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| format!("scope {w:?}: bad method list"))?;
    if !pattern.starts_with('/') {
        return Err(format!("scope {w:?}: the path must start with '/'"));
    }
    let glob = Glob::new(&pattern).map_err(|e| format!("scope {w:?}: {e}"))?;
    Ok(Entry::Path { methods, glob })
}

fn resource_entry(w: &str) -> Result<Entry, String> {
    let Some((name, rights)) = w.rsplit_once(':') else {
        return Err(format!(
            "scope {w:?}: write DocType:read, DocType:write, DocType:read+write, path:/glob or company:ID"
        ));
    };
    let (mut read, mut write) = (false, false);
    for r in rights.split(['+', ',']) {
        match r.trim() {
            "read" => read = true,
            "write" => write = true,
            "rw" => (read, write) = (true, true),
            other => {
                return Err(format!(
                    "scope {w:?}: unknown right {other:?} (read or write)"
                ));
            }
        }
    }
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("scope {w:?}: no DocType or resource name"));
    }
    Ok(Entry::Resource {
        name: fold(name),
        read,
        write,
    })
}

fn fold(s: &str) -> String {
    s.trim().to_lowercase()
}

/// What a request needs, for the check and the refusal.
struct Need {
    name: String,
    access: Access,
}

impl Scopes {
    /// Checks a request. `Err` names the scope that is missing (for the
    /// caller's 403 body); it never names another token's anything.
    ///
    /// `query` is the raw query string: Akaunting reads `company_id` from the
    /// query before the body, `params` (body over query) gives the other
    /// reading, and both must name the token's company.
    pub fn check(
        &self,
        app: AppKind,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        params: &Params,
    ) -> Result<(), String> {
        // On ERPNext `cmd` (and the `method` indirection) run another
        // function than the path names: a path scope cannot vouch for it.
        let redirected = app == AppKind::Erpnext
            && ["cmd", "method"]
                .iter()
                .any(|p| params.get(p).is_some_and(|v| !v.trim().is_empty()));
        if !redirected && self.path_allows(method, path) {
            return self.company_ok(app, query, headers, params);
        }
        let needs = match app {
            AppKind::Erpnext => erpnext_needs(method, path, params)?,
            AppKind::Akaunting => akaunting_needs(method, path)?,
            AppKind::Generic => return Err(format!("path:{method}:{path}")),
        };
        for need in needs {
            if !self.grants(&need) {
                return Err(format!("{}:{}", need.name, need.access.as_str()));
            }
        }
        self.company_ok(app, query, headers, params)
    }

    fn path_allows(&self, method: &Method, path: &str) -> bool {
        self.entries.iter().any(|e| match e {
            Entry::Path { methods, glob } => {
                (methods.is_empty() || methods.contains(method)) && glob.matches(path)
            }
            Entry::Resource { .. } => false,
        })
    }

    fn grants(&self, need: &Need) -> bool {
        let want = fold(&need.name);
        self.entries.iter().any(|e| match e {
            Entry::Resource { name, read, write } => {
                *name == want
                    && match need.access {
                        Access::Read => *read,
                        Access::Write => *write,
                    }
            }
            Entry::Path { .. } => false,
        })
    }

    /// Akaunting: a company-bound token's every request names that company.
    fn company_ok(
        &self,
        app: AppKind,
        query: Option<&str>,
        headers: &HeaderMap,
        params: &Params,
    ) -> Result<(), String> {
        let Some(want) = &self.company else {
            return Ok(());
        };
        if app != AppKind::Akaunting {
            return Ok(());
        }
        let header = headers.get("x-company").and_then(|v| v.to_str().ok());
        let param = params.get("company_id");
        let in_query: Vec<String> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .filter(|(k, _)| k == "company_id")
            .map(|(_, v)| v.into_owned())
            .collect();
        // Every place a company can be named must name this one.
        let named: Vec<&str> = [header, param]
            .into_iter()
            .flatten()
            .chain(in_query.iter().map(String::as_str))
            .map(str::trim)
            .collect();
        match !named.is_empty() && named.iter().all(|c| c == want) {
            true => Ok(()),
            false => Err(format!(
                "company:{}",
                named.first().copied().unwrap_or("(none)")
            )),
        }
    }
}

// Read-only document functions of Frappe, by full name (upstreams/erpnext.md §5, §6).
const ERPNEXT_READS: &[&str] = &[
    "frappe.client.get",
    "frappe.client.get_list",
    "frappe.client.get_value",
    "frappe.client.get_single_value",
    "frappe.client.get_count",
    "frappe.client.validate_link",
    "frappe.desk.reportview.get",
    "frappe.desk.reportview.get_count",
    "frappe.desk.reportview.get_list",
    "frappe.desk.form.load.getdoc",
    "frappe.desk.form.load.getdoctype",
    "frappe.desk.search.search_link",
];

// Document functions that write the DocTypes they name.
const ERPNEXT_WRITES: &[&str] = &[
    "frappe.client.set_value",
    "frappe.client.insert",
    "frappe.client.insert_many",
    "frappe.client.save",
    "frappe.client.submit",
    "frappe.client.cancel",
    "frappe.client.delete",
    "frappe.client.rename_doc",
    "frappe.client.bulk_update",
    "frappe.desk.form.save.savedocs",
    "frappe.desk.form.save.cancel",
    "frappe.desk.reportview.delete_items",
    "frappe.handler.run_doc_method",
    "run_doc_method",
];

/// What an ERPNext request needs: REST by path, RPC by method and the
/// DocTypes its parameters name.
fn erpnext_needs(method: &Method, path: &str, params: &Params) -> Result<Vec<Need>, String> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let by_method = match *method {
        Method::GET | Method::HEAD => Access::Read,
        _ => Access::Write,
    };
    let rest = match segs.as_slice() {
        [a, r, dt, ..] if eq(a, "api") && eq(r, "resource") => Some(dt),
        [a, v, r, dt, ..] if eq(a, "api") && eq(v, "v1") && eq(r, "resource") => Some(dt),
        [a, v, k, dt, ..]
            if eq(a, "api") && eq(v, "v2") && (eq(k, "document") || eq(k, "doctype")) =>
        {
            Some(dt)
        }
        _ => None,
    };
    let rpc = admin::erpnext_rpc_methods(path, params);
    if let Some(dt) = rest
        && rpc.is_empty()
    {
        return Ok(vec![Need {
            name: (*dt).to_owned(),
            access: by_method,
        }]);
    }
    if rpc.is_empty() {
        return Err(format!("path:{method}:{path}"));
    }
    let doctypes =
        admin::erpnext_named_doctypes(params).map_err(|()| "readable parameters".to_owned())?;
    let mut needs = Vec::new();
    for name in rpc.iter().filter(|n| !is_handler_alias(n, &rpc)) {
        let access = if ERPNEXT_READS.contains(&name.as_str()) {
            Access::Read
        } else if ERPNEXT_WRITES.contains(&name.as_str()) {
            Access::Write
        } else {
            return Err(format!("path:{method}:/api/method/{name}"));
        };
        if doctypes.is_empty() {
            return Err(format!("a DocType for {name}"));
        }
        needs.extend(doctypes.iter().map(|d| Need {
            name: d.clone(),
            access,
        }));
    }
    Ok(needs)
}

/// `rpc_methods` lists a dotless name both bare and as `frappe.handler.x`;
/// only the second is judged when both are present.
fn is_handler_alias(name: &str, all: &[String]) -> bool {
    !name.contains('.') && all.iter().any(|n| n == &format!("frappe.handler.{name}"))
}

/// Akaunting: `/api/<resource>[/...]`, read for GET/HEAD, write otherwise.
fn akaunting_needs(method: &Method, path: &str) -> Result<Vec<Need>, String> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        [api, resource, ..] if eq(api, "api") => Ok(vec![Need {
            name: (*resource).to_owned(),
            access: match *method {
                Method::GET | Method::HEAD => Access::Read,
                _ => Access::Write,
            },
        }]),
        _ => Err(format!("path:{method}:{path}")),
    }
}

fn eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(w: &[&str]) -> Scopes {
        parse(&w.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap()
    }

    fn frappe(query: &str, body: &str, ctype: &str) -> Params {
        let mut h = HeaderMap::new();
        if !ctype.is_empty() {
            h.insert(http::header::CONTENT_TYPE, ctype.parse().unwrap());
        }
        crate::params::frappe(Some(query), &h, body.as_bytes()).unwrap()
    }

    fn check(s: &Scopes, method: Method, path: &str, p: &Params) -> Result<(), String> {
        #[allow(clippy::needless_pass_by_value)]
        let m = method;
        s.check(AppKind::Erpnext, &m, path, None, &HeaderMap::new(), p)
    }

    #[test]
    fn item_read_reads_items_and_nothing_else() {
        let s = scopes(&["Item:read"]);
        let none = Params::default();
        assert!(check(&s, Method::GET, "/api/resource/Item", &none).is_ok());
        assert!(check(&s, Method::GET, "/api/resource/item/ITEM-1", &none).is_ok());
        assert_eq!(
            check(&s, Method::PUT, "/api/resource/Item/ITEM-1", &none),
            Err("Item:write".into())
        );
        assert_eq!(
            check(&s, Method::GET, "/api/resource/User", &none),
            Err("User:read".into())
        );
        let get_list = frappe("", "doctype=Item", "application/x-www-form-urlencoded");
        assert!(
            check(
                &s,
                Method::POST,
                "/api/method/frappe.client.get_list",
                &get_list
            )
            .is_ok()
        );
        let form = frappe(
            "",
            "doctype=User&name=x&fieldname=enabled&value=0",
            "application/x-www-form-urlencoded",
        );
        assert_eq!(
            check(
                &s,
                Method::POST,
                "/api/method/frappe.client.set_value",
                &form
            ),
            Err("User:write".into())
        );
        let json = frappe("", r#"{"doctype":"User","name":"x"}"#, "application/json");
        assert!(
            check(
                &s,
                Method::POST,
                "/api/method/frappe.client.set_value",
                &json
            )
            .is_err()
        );
        let cmd = frappe(
            "cmd=frappe.client.set_value",
            "doctype=User",
            "application/x-www-form-urlencoded",
        );
        assert!(check(&s, Method::POST, "/api/method/frappe.client.get_list", &cmd).is_err());
        let savedocs = frappe(
            "",
            "doc=%7B%22doctype%22%3A%22User%22%7D",
            "application/x-www-form-urlencoded",
        );
        assert!(
            check(
                &s,
                Method::POST,
                "/api/method/frappe.desk.form.save.savedocs",
                &savedocs
            )
            .is_err()
        );
        let broken = frappe("", "doc=%7Bnot-json", "application/x-www-form-urlencoded");
        assert!(check(&s, Method::POST, "/api/method/frappe.client.get", &broken).is_err());
        assert!(
            check(&s, Method::GET, "/app/item", &none).is_err(),
            "desk is not API"
        );
        assert!(
            check(
                &s,
                Method::GET,
                "/api/method/frappe.auth.get_logged_user",
                &none
            )
            .is_err()
        );
    }

    #[test]
    fn a_cmd_override_is_not_covered_by_a_path_scope() {
        let s = scopes(&["path:POST:/api/method/ping"]);
        let plain = Params::default();
        assert!(check(&s, Method::POST, "/api/method/ping", &plain).is_ok());
        let cmd = frappe(
            "",
            "cmd=frappe.client.set_value&doctype=User",
            "application/x-www-form-urlencoded",
        );
        // Frappe may run either name; neither is covered (ping has no DocType).
        assert!(check(&s, Method::POST, "/api/method/ping", &cmd).is_err());
    }

    #[test]
    fn every_company_named_must_be_the_tokens() {
        let s = scopes(&["items:read", "company:1"]);
        let mut h = HeaderMap::new();
        h.insert("x-company", "1".parse().unwrap());
        h.insert(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        let body = crate::params::laravel(None, &h, b"company_id=2", &Method::POST).unwrap();
        let r = s.check(
            AppKind::Akaunting,
            &Method::GET,
            "/api/items",
            None,
            &h,
            &body,
        );
        assert_eq!(r, Err("company:1".into()), "the body names company 2");
        let none = Params::default();
        let r = s.check(
            AppKind::Akaunting,
            &Method::GET,
            "/api/items",
            Some("company_id=2"),
            &h,
            &none,
        );
        assert!(r.is_err(), "the query names company 2");
    }

    #[test]
    fn path_scopes_and_rights_combine() {
        let s = scopes(&["Sales Invoice:read+write", "path:GET:/api/method/ping"]);
        let none = Params::default();
        assert!(check(&s, Method::POST, "/api/resource/Sales Invoice", &none).is_ok());
        assert!(check(&s, Method::GET, "/api/method/ping", &none).is_ok());
        assert!(check(&s, Method::POST, "/api/method/ping", &none).is_err());
        assert!(parse(&["Item:delete".into()]).is_err());
        assert!(
            parse(&["company:1".into()]).is_err(),
            "a company alone scopes nothing"
        );
    }

    #[test]
    fn akaunting_resources_and_company() {
        let s = scopes(&["invoices:read", "company:1"]);
        let mut h = HeaderMap::new();
        let none = Params::default();
        let ak = |h: &HeaderMap, m: Method, p: &str| {
            let (path, query) = match p.split_once('?') {
                Some((path, q)) => (path, Some(q)),
                None => (p, None),
            };
            s.check(AppKind::Akaunting, &m, path, query, h, &none)
        };
        assert_eq!(
            ak(&h, Method::GET, "/api/invoices"),
            Err("company:(none)".into())
        );
        h.insert("x-company", "1".parse().unwrap());
        assert!(ak(&h, Method::GET, "/api/invoices").is_ok());
        assert_eq!(
            ak(&h, Method::POST, "/api/invoices"),
            Err("invoices:write".into())
        );
        assert_eq!(ak(&h, Method::GET, "/api/users"), Err("users:read".into()));
        h.insert("x-company", "2".parse().unwrap());
        assert_eq!(
            ak(&h, Method::GET, "/api/invoices"),
            Err("company:2".into())
        );
        assert!(ak(&h, Method::GET, "/1/sales/invoices").is_err());
    }
}
