//! The login, renewal and report routes refuse what a browser sends
//! cross-site ([`crate::listen::origin`], the check the daemon's
//! `POST /api/v1/retry` uses too), worded for a task's caller.

use crate::listen::origin::{self, CrossSite};
use axum::http::HeaderMap;

pub use origin::is_json;

/// `Err(why)` when the request says it comes from another site.
pub fn same_origin(headers: &HeaderMap) -> Result<(), String> {
    let header = match origin::cross_site(headers) {
        None => return Ok(()),
        Some(CrossSite::FetchSite(_)) => "Sec-Fetch-Site",
        Some(CrossSite::Origin(_)) => "Origin",
    };
    Err(format!(
        "a cross-site request ({header}) is refused; log in from the task, not a browser"
    ))
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
