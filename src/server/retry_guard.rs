//! Checks on the writes (`POST /api/v1/retry`, an endpoint release) beside
//! the admin token (`super::auth`): only same-origin JSON requests, to a
//! host name the daemon answers writes for, naming environments and apps
//! the daemon knows. A browser never holds the token, but a tool an
//! operator points at a page might send it; these keep such a page out.
//!
//! A browser sends a cross-site form POST (`application/x-www-form-urlencoded`,
//! `multipart/form-data` or `text/plain`) without asking; a JSON body needs
//! a CORS preflight this server never grants. `Origin` and
//! `Sec-Fetch-Site` catch the rest. Command-line clients send neither.
//!
//! **DNS rebinding** gets around all three: a page at `evil.example`, whose
//! name the attacker then points at the daemon's address, is same-origin
//! with the daemon as far as the browser knows (`Host: evil.example`,
//! `Origin: http://evil.example`). So writes also need a `Host` the daemon
//! knows as its own ([`host_allowed`]):
//! - an IP address literal (`10.0.0.5:8081`, `[::1]:8081`): no name, nothing
//!   to rebind; a page at that origin is one this daemon served;
//! - `localhost`;
//! - a name the operator lists with `--allowed-host` (`PACER_ALLOWED_HOST`),
//!   e.g. `pacer.marathon.mesos`.
//!
//! The port is not compared: rebinding changes where a name points, not the
//! port, and behind Marathon's port mapping clients reach the daemon on a
//! host port it doesn't know.
//!
//! Only writes are checked. Reads (`/healthz`, `/readyz`, `/metrics`,
//! `/api/v1/status`, whose public view shows nothing secret) are scraped by
//! Prometheus and Grafana under whatever name the operator gave them;
//! webhooks are HMAC-authenticated and arrive with the forge's idea of the
//! host, so they are not checked either.

use crate::listen::origin::{self, CrossSite};
use crate::status::Status;
use axum::http::{HeaderMap, StatusCode, header};
use std::net::Ipv4Addr;

/// The host names (besides IP literals and `localhost`) writes are
/// answered for: lowercase, without a port or a trailing dot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedHosts(Vec<String>);

impl AllowedHosts {
    /// From the operator's `--allowed-host` values (`Name`, `name.:8081`
    /// and `name` are the same host).
    pub fn new<S: AsRef<str>>(names: &[S]) -> AllowedHosts {
        AllowedHosts(
            names
                .iter()
                .filter_map(|n| split_host(n.as_ref()).map(|(name, _)| name))
                .collect(),
        )
    }
}

/// A `--allowed-host` value, checked: `NAME` or `NAME:PORT`.
pub fn parse_allowed_host(value: &str) -> Result<String, String> {
    split_host(value).map(|(name, _)| name).ok_or_else(|| {
        format!("`{value}` is not a host name (e.g. pacer.marathon.mesos; no scheme or path)")
    })
}

/// `host[:port]` → the host, normalised, and whether it is an IP literal;
/// `None` if it is not a host at all.
fn split_host(value: &str) -> Option<(String, bool)> {
    let value = value.trim();
    if let Some(rest) = value.strip_prefix('[') {
        // An IPv6 literal: `[::1]` or `[::1]:8081`.
        let (addr, after) = rest.split_once(']')?;
        let port_ok = after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()));
        return (port_ok && addr.parse::<std::net::Ipv6Addr>().is_ok())
            .then(|| (format!("[{}]", addr.to_ascii_lowercase()), true));
    }
    let name = match value.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        Some(_) => return None,
        None => value,
    };
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if !valid {
        return None;
    }
    let ip = name.parse::<Ipv4Addr>().is_ok();
    Some((name, ip))
}

/// `Ok` when the request's `Host` is one the daemon answers writes for
/// (see the module doc); else why, naming the flag that allows it.
pub fn host_allowed(headers: &HeaderMap, allowed: &AllowedHosts) -> Result<(), String> {
    let Some(value) = headers.get(header::HOST) else {
        return Err(
            "a write needs a Host header (the daemon's IP address, localhost or a name given with --allowed-host)"
                .into(),
        );
    };
    let shown: String = String::from_utf8_lossy(value.as_bytes())
        .chars()
        .take(100)
        .collect();
    let host = value.to_str().ok().and_then(split_host);
    match host {
        Some((_, true)) => Ok(()),
        Some((name, false)) if name == "localhost" || allowed.0.contains(&name) => Ok(()),
        Some((name, false)) => Err(format!(
            "writes are answered only for the daemon's own host names (a guard against DNS rebinding); \
             `Host: {shown}` is not one: start pacer serve with --allowed-host {name} \
             (or PACER_ALLOWED_HOST), or call it by IP address or localhost"
        )),
        None => Err(format!("`Host: {shown}` is not a host name or address")),
    }
}

/// `Ok` unless the request says it comes from another site.
pub fn same_origin(headers: &HeaderMap) -> Result<(), String> {
    let (header, value) = match origin::cross_site(headers) {
        None => return Ok(()),
        Some(CrossSite::FetchSite(v)) => ("Sec-Fetch-Site", v),
        Some(CrossSite::Origin(v)) => ("Origin", v),
    };
    Err(format!(
        "cross-origin request refused ({header}: {value}); call the API from the same origin or the command line"
    ))
}

pub use origin::is_json;

/// `Ok` when `env` and `app` (either may be absent: all) name what the
/// daemon reconciles; else the status code and why.
pub fn known(
    status: &Status,
    env: Option<&str>,
    app: Option<&str>,
) -> Result<(), (StatusCode, String)> {
    if status.environments.is_empty() {
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "no environment is loaded yet; see /readyz".into(),
        ));
    }
    let envs: Vec<(&String, &crate::status::EnvStatus)> = match env {
        Some(name) => match status.environments.get_key_value(name) {
            Some((k, e)) => vec![(k, &**e)],
            None => {
                let names: Vec<&str> = status.environments.keys().map(String::as_str).collect();
                return Err((
                    StatusCode::NOT_FOUND,
                    format!("unknown environment `{name}`; known: {}", names.join(", ")),
                ));
            }
        },
        None => status.environments.iter().map(|(k, e)| (k, &**e)).collect(),
    };
    if let Some(app) = app
        && !envs.iter().any(|(_, e)| e.apps.contains_key(app))
    {
        let place = env.map_or("any environment".to_string(), |e| format!("`{e}`"));
        return Err((
            StatusCode::NOT_FOUND,
            format!("unknown app `{app}` in {place}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SyncStatus;
    use crate::status::{AppStatus, EnvStatus};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn cross_origin_requests_are_refused() {
        let ok = [
            vec![("host", "pacer:8081")],
            vec![("host", "pacer:8081"), ("origin", "http://pacer:8081")],
            vec![("sec-fetch-site", "same-origin")],
            vec![("sec-fetch-site", "none")],
        ];
        for h in ok {
            assert!(same_origin(&headers(&h)).is_ok(), "{h:?}");
        }
        let refused = [
            vec![("host", "pacer:8081"), ("origin", "https://evil.example")],
            vec![("host", "pacer:8081"), ("origin", "null")],
            vec![("sec-fetch-site", "cross-site")],
            vec![("sec-fetch-site", "same-site")],
        ];
        for h in refused {
            assert!(same_origin(&headers(&h)).is_err(), "{h:?}");
        }
    }

    #[test]
    fn writes_need_a_host_the_daemon_knows() {
        let allowed = AllowedHosts::new(&["Pacer.Marathon.Mesos.", "ops.example:9000"]);
        for host in [
            "127.0.0.1:8081",
            "10.0.0.5:8081",
            "10.0.0.5",
            "[::1]:8081",
            "[::1]",
            "[FE80::1]:31000",
            "localhost:8081",
            "LOCALHOST",
            "localhost.",
            "pacer.marathon.mesos:8081",
            "pacer.marathon.mesos",
            "PACER.marathon.mesos.:31234",
            "ops.example",
        ] {
            assert!(
                host_allowed(&headers(&[("host", host)]), &allowed).is_ok(),
                "{host}"
            );
        }
        for host in [
            "evil.example",
            "evil.example:8081",
            "pacer.marathon.mesos.evil.example",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "",
            "[::1",
            "[nope]:80",
            "a b",
            "pacer.marathon.mesos:x",
        ] {
            let why = host_allowed(&headers(&[("host", host)]), &allowed).unwrap_err();
            assert!(why.contains("Host"), "{host}: {why}");
        }
        let why = host_allowed(&headers(&[("host", "evil.example:8081")]), &allowed).unwrap_err();
        assert!(why.contains("--allowed-host evil.example "), "{why}");
        assert!(host_allowed(&HeaderMap::new(), &allowed).is_err());
        // Nothing listed: IP literals and localhost only.
        let none = AllowedHosts::default();
        assert!(host_allowed(&headers(&[("host", "pacer.marathon.mesos")]), &none).is_err());
        assert!(host_allowed(&headers(&[("host", "127.0.0.1:1")]), &none).is_ok());
    }

    #[test]
    fn only_json_content_types_count() {
        for ct in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/merge-patch+json",
        ] {
            assert!(is_json(&headers(&[("content-type", ct)])), "{ct}");
        }
        for ct in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
        ] {
            assert!(!is_json(&headers(&[("content-type", ct)])), "{ct}");
        }
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn unknown_names_are_not_found() {
        let mut status = Status::default();
        assert_eq!(
            known(&status, None, None).unwrap_err().0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        let mut env = EnvStatus::default();
        env.apps.insert(
            "web".into(),
            std::sync::Arc::new(AppStatus::new("/dev/web", SyncStatus::Failed)),
        );
        status
            .environments
            .insert("dev".into(), std::sync::Arc::new(env));
        assert!(known(&status, None, None).is_ok());
        assert!(known(&status, Some("dev"), Some("web")).is_ok());
        assert!(known(&status, None, Some("web")).is_ok());
        let (code, why) = known(&status, Some("prd"), None).unwrap_err();
        assert_eq!(code, StatusCode::NOT_FOUND);
        assert!(why.contains("`prd`") && why.contains("dev"), "{why}");
        let (code, why) = known(&status, Some("dev"), Some("wbe")).unwrap_err();
        assert_eq!(code, StatusCode::NOT_FOUND);
        assert!(why.contains("`wbe`"), "{why}");
    }
}
