//! A browser on another site can be made to POST anywhere it reaches: the
//! login and renewal routes refuse what a browser sends cross-site. The
//! same rules as the daemon's `POST /api/v1/retry` (`server::retry_guard`),
//! kept here because the config server sits below the HTTP server's layer.
//!
//! A cross-site form POST cannot send a JSON content type without a CORS
//! preflight, which this server never grants; `Origin` and `Sec-Fetch-Site`
//! catch the rest. Command-line clients and `pacer agent` send neither.

use axum::http::{HeaderMap, header};

/// `Err(why)` when the request says it comes from another site.
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
        return Err(
            "a cross-site request (Sec-Fetch-Site) is refused; log in from the task, not a browser"
                .into(),
        );
    }
    if let Some(origin) = text(header::ORIGIN) {
        let host = text(header::HOST).unwrap_or_default();
        let origin_host = origin
            .split_once("://")
            .map(|(_, rest)| rest.trim_end_matches('/'))
            .unwrap_or("");
        if origin_host.is_empty() || origin_host != host {
            return Err(
                "a cross-site request (Origin) is refused; log in from the task, not a browser"
                    .into(),
            );
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

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn cross_site_requests_and_non_json_bodies_are_told_apart() {
        assert!(same_origin(&headers(&[])).is_ok());
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")])).is_ok());
        assert!(
            same_origin(&headers(&[
                ("host", "pacer:8081"),
                ("origin", "http://pacer:8081")
            ]))
            .is_ok()
        );
        assert!(same_origin(&headers(&[("sec-fetch-site", "cross-site")])).is_err());
        assert!(
            same_origin(&headers(&[
                ("host", "pacer:8081"),
                ("origin", "http://evil")
            ]))
            .is_err()
        );
        assert!(is_json(&headers(&[(
            "content-type",
            "application/json; charset=utf-8"
        )])));
        assert!(!is_json(&headers(&[("content-type", "text/plain")])));
        assert!(!is_json(&headers(&[])));
    }
}
