//! Path patterns for rules: `*` matches any run of characters, `/` included;
//! every other character matches itself, ASCII case-insensitively.
//!
//! Written by hand rather than with `globset` on purpose: operators write these
//! patterns, and a syntax where `?`, `[` and `{` are special would turn a literal
//! path into a surprise. Matching is linear in practice (greedy with one
//! backtrack point, the classic wildcard algorithm) and allocation-free.

use std::fmt;

/// A compiled path pattern.
#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    /// The pattern as the operator wrote it.
    source: String,
    /// Lower-cased pattern bytes.
    lower: Vec<u8>,
}

impl Glob {
    /// Compiles a pattern; it must start with `/` (patterns match canonical paths).
    pub fn new(pattern: &str) -> Result<Glob, String> {
        if !pattern.starts_with('/') {
            return Err(format!(
                "path pattern {pattern:?} must start with '/'; write e.g. \"/app/user*\""
            ));
        }
        if pattern.contains("**") {
            return Err(format!(
                "path pattern {pattern:?} has \"**\"; a single '*' already matches any run of characters, '/' included"
            ));
        }
        Ok(Glob {
            source: pattern.to_owned(),
            lower: pattern.to_ascii_lowercase().into_bytes(),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `path` (a decoded canonical path) matches, ignoring ASCII case.
    pub fn matches(&self, path: &str) -> bool {
        wildcard_match(&self.lower, path.as_bytes())
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.source)
    }
}

/// Greedy wildcard match with a single backtrack point: on a mismatch after a
/// `*`, retry with the star absorbing one more byte.
fn wildcard_match(pat: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pat.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == text[t].to_ascii_lowercase() => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, t: &str) -> bool {
        Glob::new(p).unwrap().matches(t)
    }

    #[test]
    fn exact_patterns_match_only_themselves() {
        assert!(m("/api/method/login", "/api/method/login"));
        assert!(!m("/api/method/login", "/api/method/login/"));
        assert!(!m("/api/method/login", "/api/method/logins"));
    }

    #[test]
    fn star_crosses_slashes() {
        assert!(m("/app/*", "/app/user/new"));
        assert!(m("/app/system-settings*", "/app/system-settings"));
        assert!(m("/app/system-settings*", "/app/system-settings/x"));
        assert!(m("/*/auth/users*", "/1/auth/users/5/edit"));
        assert!(!m("/app/*", "/api/x"));
        assert!(m("/*", "/anything"));
    }

    #[test]
    fn matching_ignores_ascii_case() {
        assert!(m("/app/User*", "/APP/user"));
        assert!(m("/api/resource/user*", "/api/resource/User"));
    }

    #[test]
    fn several_stars_and_backtracking() {
        assert!(m("/a*b*c", "/aXbYbZc"));
        assert!(!m("/a*b*c", "/aXbYbZ"));
        assert!(m("/a*a*a", "/aaaaaaaaaaaaaaa"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(Glob::new("app/*").is_err());
        assert!(Glob::new("/app/**").is_err());
    }
}
