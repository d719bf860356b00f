//! Marathon's base URL as users write it, on the command line
//! (`--marathon`) and in pacer.yaml (`marathon:`): one rule for both, so an
//! address works or fails the same way in `pacer plan` and `pacer serve`.

/// An http(s) URL; one without a scheme (`127.0.0.1:8080`) is taken as
/// http, as curl and Marathon's own `--master`-style flags take it. The
/// error names no credentials a URL may carry.
pub fn http_url(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty URL".into());
    }
    let url = if s.contains("://") {
        s.to_string()
    } else {
        format!("http://{s}")
    };
    match reqwest::Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(url),
        Ok(u) => Err(format!(
            "`{}` is not an http(s) URL with a host (e.g. http://host:8080)",
            crate::redact::url(u.as_str())
        )),
        Err(e) => Err(format!("{e} (e.g. http://host:8080)")),
    }
}

#[cfg(test)]
mod tests {
    use super::http_url;

    #[test]
    fn a_url_without_a_scheme_is_http() {
        assert_eq!(http_url("127.0.0.1:8080").unwrap(), "http://127.0.0.1:8080");
        assert_eq!(http_url(" m.example ").unwrap(), "http://m.example");
        assert_eq!(
            http_url("https://m.example:8443").unwrap(),
            "https://m.example:8443"
        );
        assert!(http_url("ftp://m.example").is_err());
        assert!(http_url("").is_err());
        assert!(http_url("http://").is_err());
        let e = http_url("ftp://u:hunter2@m").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }
}
