//! Checks on `POST /api/v1/retry` until it has tokens: only same-origin
//! JSON requests naming environments and apps the daemon knows.
//!
//! A browser sends a cross-site form POST (`application/x-www-form-urlencoded`,
//! `multipart/form-data` or `text/plain`) without asking; a JSON body needs
//! a CORS preflight this server never grants. `Origin` and
//! `Sec-Fetch-Site` catch the rest. Command-line clients send neither.

use crate::status::Status;
use axum::http::{HeaderMap, StatusCode, header};

/// `Ok` unless the request says it comes from another site.
pub fn same_origin(headers: &HeaderMap) -> Result<(), String> {
    let text = |name: header::HeaderName| {
        headers.get(name).map(|v| {
            v.to_str()
                .unwrap_or("(not text)")
                .trim()
                .to_ascii_lowercase()
        })
    };
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site"))
        && site != "same-origin"
        && site != "none"
    {
        return Err(format!(
            "cross-origin request refused (Sec-Fetch-Site: {site}); call the API from the same origin or the command line"
        ));
    }
    if let Some(origin) = text(header::ORIGIN) {
        let host = text(header::HOST).unwrap_or_default();
        let origin_host = origin
            .split_once("://")
            .map(|(_, rest)| rest.trim_end_matches('/'))
            .unwrap_or("");
        if origin_host.is_empty() || origin_host != host {
            return Err(format!(
                "cross-origin request refused (Origin: {origin}); call the API from the same origin or the command line"
            ));
        }
    }
    Ok(())
}

/// Whether the body is declared JSON (`application/json`, `…+json`).
pub fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

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
            std::sync::Arc::new(AppStatus {
                id: "/dev/web".into(),
                sync: SyncStatus::Failed,
                live_commit: None,
                last: None,
                errors: Vec::new(),
            }),
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
