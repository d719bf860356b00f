//! The daemon's Marathon clients: one per Marathon URL, made on first use
//! and kept, so every environment on one Marathon shares its connections
//! (and its event stream).

use crate::marathon::client::{Auth, ClientConfig, MarathonClient};
use std::collections::BTreeMap;
use std::time::Duration;

/// How every client is made.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub auth: Auth,
    pub timeout: Duration,
    /// Follow deployments through Marathon's event stream.
    pub events: bool,
}

/// Marathon URL → its client.
pub struct Clients {
    settings: Settings,
    by_url: BTreeMap<String, MarathonClient>,
}

impl Clients {
    pub fn new(settings: Settings) -> Clients {
        Clients {
            settings,
            by_url: BTreeMap::new(),
        }
    }

    /// The client for `url` (a cheap clone of the kept one); `None` when
    /// the URL is not a Marathon URL (nothing is kept for it).
    pub fn get(&mut self, url: &str) -> Option<MarathonClient> {
        if let Some(c) = self.by_url.get(url) {
            return Some(c.clone());
        }
        let client = MarathonClient::new(ClientConfig {
            url: url.to_string(),
            auth: self.settings.auth.clone(),
            timeout: self.settings.timeout,
            events: self.settings.events,
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
    fn one_client_per_url_and_none_for_a_bad_one() {
        let mut c = Clients::new(Settings {
            timeout: Duration::from_secs(5),
            ..Settings::default()
        });
        assert!(c.is_empty());
        assert!(c.get("http://marathon-a:8080").is_some());
        assert!(c.get("http://marathon-a:8080").is_some());
        assert!(c.get("http://marathon-b:8080").is_some());
        assert_eq!(c.len(), 2);
        assert!(c.get("ftp://marathon").is_none());
        assert!(c.get("not a url").is_none());
        assert_eq!(c.len(), 2, "a bad URL is not kept");
    }
}
