//! The daemon's Marathon clients: one per Marathon URL, built on first use
//! from the command line's settings (credentials, timeout, event stream) and
//! shared by every environment on that Marathon, so they share its
//! connections and its event stream too.
//!
//! Which URL an environment uses: `--marathon` when given, else the
//! environment's own `marathon:`.

use crate::marathon::client::{Auth, ClientConfig, MarathonClient};
use crate::model::Secret;
use std::collections::BTreeMap;
use std::time::Duration;

/// Clients by Marathon URL.
#[derive(Debug)]
pub struct Clients {
    /// `--marathon`: every environment's Marathon when set.
    url: Option<String>,
    auth: Auth,
    timeout: Duration,
    events: bool,
    /// Every client's writes check it (see `model::fence`).
    fence: crate::model::fence::Fence,
    by_url: BTreeMap<String, MarathonClient>,
}

/// The credentials the settings name: a token wins over a user, a user
/// without a password sends an empty one.
pub fn auth(
    token: Option<&Secret<String>>,
    user: Option<&str>,
    password: Option<&Secret<String>>,
) -> Auth {
    match (token, user) {
        (Some(t), _) => Auth::Token(t.clone()),
        (None, Some(u)) => Auth::Basic {
            user: u.to_string(),
            password: password.cloned().unwrap_or_default(),
        },
        (None, None) => Auth::None,
    }
}

impl Clients {
    /// `url`: the override of every environment's Marathon URL.
    pub fn new(url: Option<String>, auth: Auth, timeout: Duration, events: bool) -> Self {
        Clients {
            url,
            auth,
            timeout,
            events,
            fence: crate::model::fence::Fence::open(),
            by_url: BTreeMap::new(),
        }
    }

    /// Writes of every client built from now on check `fence`.
    pub fn fenced(mut self, fence: crate::model::fence::Fence) -> Self {
        self.fence = fence;
        self
    }

    /// The URL of an environment's Marathon: the override, else `own` (the
    /// environment's `marathon:`). `None`: the environment names none.
    pub fn url_for(&self, own: Option<&str>) -> Option<String> {
        self.url.as_deref().or(own).map(str::to_string)
    }

    /// The client for `url`, built on first use; `None` when the URL is not
    /// one a client can be built for.
    pub fn get(&mut self, url: &str) -> Option<MarathonClient> {
        if let Some(c) = self.by_url.get(url) {
            return Some(c.clone());
        }
        let client = MarathonClient::new(ClientConfig {
            url: url.to_string(),
            auth: self.auth.clone(),
            timeout: self.timeout,
            events: self.events,
            fence: self.fence.clone(),
            ..ClientConfig::default()
        })
        .ok()?;
        self.by_url.insert(url.to_string(), client.clone());
        Some(client)
    }

    /// How many clients are kept.
    pub fn len(&self) -> usize {
        self.by_url.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_url.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_wins_over_a_user() {
        let t = Secret::new("tok".to_string());
        let p = Secret::new("pw".to_string());
        assert!(
            matches!(auth(Some(&t), Some("u"), Some(&p)), Auth::Token(x) if x.expose() == "tok")
        );
        assert!(matches!(
            auth(None, Some("u"), Some(&p)),
            Auth::Basic { user, password } if user == "u" && password.expose() == "pw"
        ));
        assert!(matches!(
            auth(None, Some("u"), None),
            Auth::Basic { password, .. } if password.expose().is_empty()
        ));
        assert!(matches!(auth(None, None, Some(&p)), Auth::None));
    }

    #[test]
    fn the_override_wins_over_the_environments_url() {
        let c = Clients::new(None, Auth::None, Duration::from_secs(1), false);
        assert_eq!(c.url_for(Some("http://m1")).as_deref(), Some("http://m1"));
        assert_eq!(c.url_for(None), None);
        let c = Clients::new(
            Some("http://all".into()),
            Auth::None,
            Duration::from_secs(1),
            false,
        );
        assert_eq!(c.url_for(Some("http://m1")).as_deref(), Some("http://all"));
        assert_eq!(c.url_for(None).as_deref(), Some("http://all"));
    }

    #[test]
    fn one_client_per_url_and_none_for_a_bad_one() {
        let mut c = Clients::new(None, Auth::None, Duration::from_secs(1), false);
        let a = c.get("http://m1:8080").unwrap();
        let again = c.get("http://m1:8080").unwrap();
        assert_eq!(a.url(), again.url());
        c.get("http://m2:8080").unwrap();
        assert_eq!(c.len(), 2);
        assert!(c.get("ftp://m3").is_none());
        assert!(c.get("not a url").is_none());
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn credentials_reach_the_client_but_not_its_debug() {
        let t = Secret::new("s3cret-token".to_string());
        let mut c = Clients::new(
            None,
            auth(Some(&t), None, None),
            Duration::from_secs(1),
            false,
        );
        c.get("http://m1").unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cret-token"), "{dbg}");
    }
}
