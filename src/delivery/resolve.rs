//! A task's `host` as addresses: an address as is, a name resolved with a
//! timeout and cached (a burst of logins from one agent asks DNS once).

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Names cached at once; past it the cache starts over.
const MAX_CACHED: usize = 10_000;

/// A name's addresses and when they were looked up.
type Entry = (Instant, Arc<Vec<IpAddr>>);

pub struct Resolver {
    cache: Mutex<HashMap<String, Entry>>,
    ttl: Duration,
    timeout: Duration,
}

impl Default for Resolver {
    fn default() -> Self {
        Resolver {
            cache: Mutex::default(),
            ttl: Duration::from_secs(60),
            timeout: Duration::from_secs(2),
        }
    }
}

impl Resolver {
    /// The addresses of `host`; none when it doesn't resolve in time.
    pub async fn addrs(&self, host: &str) -> Arc<Vec<IpAddr>> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Arc::new(vec![ip.to_canonical()]);
        }
        // A DNS name is at most 253 bytes; anything else is not a host.
        if host.is_empty() || host.len() > 253 || host.chars().any(|c| c.is_control()) {
            return Arc::default();
        }
        if let Some((at, ips)) = self.cache.lock().get(host)
            && at.elapsed() < self.ttl
        {
            return ips.clone();
        }
        let looked = tokio::time::timeout(self.timeout, tokio::net::lookup_host((host, 0))).await;
        let ips: Arc<Vec<IpAddr>> = match looked {
            Ok(Ok(addrs)) => Arc::new(addrs.map(|a| a.ip().to_canonical()).collect()),
            Ok(Err(e)) => {
                tracing::debug!(host, error = %e, "a task's host does not resolve");
                return Arc::default();
            }
            Err(_) => {
                tracing::debug!(host, "a task's host did not resolve in time");
                return Arc::default();
            }
        };
        let mut cache = self.cache.lock();
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(host.to_string(), (Instant::now(), ips.clone()));
        ips
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn addresses_pass_and_names_resolve() {
        let r = Resolver::default();
        assert_eq!(
            *r.addrs("127.0.0.2").await,
            vec![IpAddr::from([127, 0, 0, 2])]
        );
        assert!(r.addrs("localhost").await.iter().any(IpAddr::is_loopback));
        assert!(r.addrs("").await.is_empty());
        assert!(r.addrs(&"a".repeat(300)).await.is_empty());
        assert!(r.addrs("no-such-host.invalid").await.is_empty());
    }
}
