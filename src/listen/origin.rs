//! What a browser's request says about where it comes from. A page on
//! another site can make a browser POST anywhere it reaches: a form POST
//! needs no permission, a JSON body needs a CORS preflight that pacer never
//! grants, and `Origin` and `Sec-Fetch-Site` catch the rest. Command-line
//! clients and `pacer agent` send neither header. The daemon's retry route
//! and the config server's login, renewal and report word their refusals
//! from this one check.

use axum::http::{HeaderMap, header};

/// Why a request counts as cross-site, with the header's value (lower
/// case, trimmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrossSite {
    /// `Sec-Fetch-Site` is neither `same-origin` nor `none`.
    FetchSite(String),
    /// `Origin` names another host than `Host`.
    Origin(String),
}

/// `Some(why)` when the request says it comes from another site.
pub fn cross_site(headers: &HeaderMap) -> Option<CrossSite> {
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
        return Some(CrossSite::FetchSite(site));
    }
    let origin = text(header::ORIGIN)?;
    let host = text(header::HOST).unwrap_or_default();
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest.trim_end_matches('/'))
        .unwrap_or("");
    (origin_host.is_empty() || origin_host != host).then_some(CrossSite::Origin(origin))
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
