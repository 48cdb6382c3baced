//! Access policy: the site allowlist, then the ordered rules.
//!
//! Pure functions over the checked config, shared by the live request path and
//! by `erpguard explain`, so what explain says is what serving does.

pub mod glob;

use std::net::IpAddr;

use http::Method;

use crate::config::{RuleAction, Site};
use crate::error::Denial;

/// Collects the steps of a decision for `erpguard explain`; free when off.
#[derive(Debug, Default)]
pub struct Trace {
    steps: Option<Vec<String>>,
}

impl Trace {
    /// A trace that records.
    pub fn recording() -> Self {
        Trace {
            steps: Some(Vec::new()),
        }
    }

    /// A trace that records nothing (the live path).
    pub fn off() -> Self {
        Trace { steps: None }
    }

    /// Records a step; the closure only runs when recording.
    pub fn note(&mut self, step: impl FnOnce() -> String) {
        if let Some(steps) = &mut self.steps {
            steps.push(step());
        }
    }

    /// The recorded steps.
    pub fn steps(&self) -> &[String] {
        self.steps.as_deref().unwrap_or(&[])
    }
}

/// Which rule let the request through, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No rule matched; the default is to allow.
    NoRule,
    /// Rule number `n` (0-based) matched and allowed.
    Rule(usize),
    /// Rule number `n` (0-based) matched and lets the request through only
    /// with a step-up grant.
    StepUp(usize),
}

/// Applies the site allowlist and then the first matching rule.
///
/// `path` is the decoded canonical path; matching ignores ASCII case.
pub fn check_access(
    site: &Site,
    method: &Method,
    path: &str,
    client: IpAddr,
    trace: &mut Trace,
) -> Result<Access, Denial> {
    if !site.allow.permits(client) {
        trace.note(|| format!("site allow list: {client} is not in {} → deny", site.allow));
        return Err(Denial::SiteAllowlist);
    }
    trace.note(|| format!("site allow list: {client} is in {}", site.allow));
    let Some((n, rule)) = site
        .rules
        .iter()
        .enumerate()
        .find(|(_, r)| r.matches(method, path))
    else {
        trace.note(|| "rules: none matched → allow (default)".to_owned());
        return Ok(Access::NoRule);
    };
    trace.note(|| format!("rules: {} matches {method} {path}", rule.name));
    if let Some(nets) = &rule.allow
        && !nets.iter().any(|net| net.contains(&client))
    {
        trace.note(|| {
            let list = crate::config::Allow::Nets(nets.clone());
            format!("  its allow list {list} does not contain {client} → deny")
        });
        return Err(Denial::RuleAllowlist {
            rule: rule.name.clone(),
        });
    }
    match rule.action {
        RuleAction::Deny => {
            trace.note(|| "  action deny".to_owned());
            Err(Denial::RuleDenied {
                rule: rule.name.clone(),
            })
        }
        RuleAction::StepUp => {
            trace.note(|| "  action step_up: a fresh TOTP grant is required".to_owned());
            Ok(Access::StepUp(n))
        }
        RuleAction::Allow => {
            trace.note(|| "  action allow".to_owned());
            Ok(Access::Rule(n))
        }
    }
}
