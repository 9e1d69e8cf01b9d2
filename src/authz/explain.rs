//! Why a request gets the decision it gets, in lines an operator reads: each route tried in
//! order with the condition that did not cover the request, the route that did with each of
//! its conditions and its rule's parts with their values. The decision itself is the one
//! [`super::AuthzPolicy::judge_request`] takes; this only says how it came about.

use super::facts::{Facts, RequestFacts};
use super::routes::{Fallback, PathMatch, Route, Routes};
use crate::tokens::ValidToken;

/// The lines that explain how `routes` judge `request`, its token verified as `token` (None:
/// no valid token).
pub fn explain(routes: &Routes, request: &RequestFacts, token: Option<&ValidToken>) -> Vec<String> {
    let mut lines = Vec::new();
    if !routes.in_use() {
        lines.push("no routes: a valid token is enough (with the scopes the proxy names)".into());
        return lines;
    }
    for route in &routes.routes {
        match why_not(route, request) {
            Some(why) => lines.push(format!("route {}: does not cover it: {why}", route.name)),
            None => {
                lines.push(format!(
                    "route {}: covers it ({})",
                    route.name,
                    covered(route, request)
                ));
                lines.extend(
                    asks(route, request, token)
                        .into_iter()
                        .map(|line| format!("  {line}")),
                );
                return lines;
            }
        }
    }
    lines.push(format!(
        "no route covers it: [policy] default = {}",
        match routes.fallback {
            Fallback::Authenticated => "\"authenticated\": a valid token is enough",
            Fallback::Deny => "\"deny\"",
        }
    ));
    lines
}

/// The first of `route`'s conditions that does not cover `request`, if one does not.
fn why_not(route: &Route, request: &RequestFacts) -> Option<String> {
    if !route.covers_host(&request.host) {
        return Some(format!(
            "host {} is not one of {}",
            request.host,
            route.hosts.join(" ")
        ));
    }
    if !route.covers_path(&request.path) {
        return Some(match &route.path {
            PathMatch::Exact(path) => format!("path {} is not {path}", request.path),
            PathMatch::Prefix(prefix) => {
                format!("path {} does not start with {prefix}", request.path)
            }
            PathMatch::Any => format!("path {}", request.path),
        });
    }
    if !route.covers_method(&request.method) {
        return Some(format!(
            "method {} is not one of {}",
            request.method,
            route.methods.join(" ")
        ));
    }
    None
}

/// How `route` covers `request`: its host, path and method conditions, each with the value.
fn covered(route: &Route, request: &RequestFacts) -> String {
    let host = if route.hosts.is_empty() {
        format!("host {}: any host", request.host)
    } else {
        format!("host {} in {}", request.host, route.hosts.join(" "))
    };
    let path = match &route.path {
        PathMatch::Any => format!("path {}: every path", request.path),
        PathMatch::Exact(path) => format!("path {} is {path}", request.path),
        PathMatch::Prefix(prefix) => format!("path {} starts with {prefix}", request.path),
    };
    let method = if route.methods.is_empty() {
        format!("method {}: any method", request.method)
    } else {
        format!("method {} in {}", request.method, route.methods.join(" "))
    };
    format!("{host}; {path}; {method}")
}

/// What `route` asks of the request, each with what the request has.
fn asks(route: &Route, request: &RequestFacts, token: Option<&ValidToken>) -> Vec<String> {
    if route.public {
        return vec!["public: no token read, the identity headers removed".to_owned()];
    }
    let mut lines = Vec::new();
    lines.push(match (token, route.token_optional) {
        (Some(_), _) => "token: required, valid".to_owned(),
        (None, true) => "token: optional; without a valid one the rule alone decides".to_owned(),
        (None, false) => "token: required, and there is no valid one".to_owned(),
    });
    if !route.scopes.is_empty() {
        let held = |scope: &String| token.is_some_and(|t| t.scopes.iter().any(|s| s == scope));
        let missing: Vec<&str> = route
            .scopes
            .iter()
            .filter(|scope| !held(scope))
            .map(String::as_str)
            .collect();
        lines.push(if missing.is_empty() {
            format!("scopes {}: held", route.scopes.join(" "))
        } else {
            format!(
                "scopes {}: missing {}",
                route.scopes.join(" "),
                missing.join(" ")
            )
        });
    }
    let Some(rule) = &route.rule else {
        lines.push("rule: none".to_owned());
        return lines;
    };
    let facts = Facts { token, request };
    let value = match rule.evaluate(&facts) {
        Ok(value) => value.to_string(),
        Err(failure) => format!("fails, taken as false: {}", failure.0),
    };
    let shadow = if route.shadow {
        " (shadow: logged and counted, never enforced)"
    } else {
        ""
    };
    lines.push(format!("rule{shadow}: {}", rule.source()));
    let parts = rule.parts(&facts);
    if parts.parts.len() > 1 {
        for (at, part) in parts.parts.iter().enumerate() {
            let joined = if at == 0 { "  " } else { parts.joined_by };
            let value = match &part.value {
                Ok(value) => value.clone(),
                Err(failure) => format!("fails: {}", failure.0),
            };
            lines.push(format!("  {joined} {} = {value}", part.text));
        }
    }
    lines.push(format!("rule = {value}"));
    lines
}
