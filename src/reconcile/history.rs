//! An app's history for its dashboard page: the same entries as
//! `pacer history` (Marathon's versions joined with the Git log and the
//! deployment records), read from the daemon's mirror.
//!
//! Unlike everything else on the dashboard this is not in the published
//! state: it reads Marathon and renders old commits. So the page loads it
//! afterwards, for a read or admin session only; here it is read two at a
//! time, within a deadline, and an answer is kept for a few seconds per app
//! and commit.

use crate::marathon::client::Auth;
use crate::reconcile::clients::Clients;
use crate::record;
use crate::server::dashboard::HistorySource;
use crate::source::RepoLocation;
use crate::status::published::Published;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Versions shown.
pub const LIMIT: usize = 20;
/// The longest a history read may take.
pub const DEADLINE: Duration = Duration::from_secs(15);
/// How long an answer is served again.
const FRESH: Duration = Duration::from_secs(5);
/// The most answers kept.
const MAX_CACHED: usize = 256;

type Key = (String, String, String);
type Cache = HashMap<Key, (Instant, Arc<Vec<serde_json::Value>>)>;

/// Reads histories from the mirror and each environment's Marathon.
pub struct MirrorHistory {
    clients: Mutex<Clients>,
    git_dir: PathBuf,
    prefix: String,
    /// Held by each read until it ends, even past its deadline: a read
    /// that overran still counts against the two.
    permits: Arc<tokio::sync::Semaphore>,
    cache: Mutex<Cache>,
}

impl MirrorHistory {
    /// `url`: `--marathon`, every environment's Marathon when set.
    pub fn new(
        url: Option<String>,
        auth: Auth,
        timeout: Duration,
        git_dir: PathBuf,
        prefix: String,
    ) -> MirrorHistory {
        MirrorHistory {
            clients: Mutex::new(Clients::new(url, auth, timeout, false)),
            git_dir,
            prefix,
            permits: Arc::new(tokio::sync::Semaphore::new(2)),
            cache: Mutex::new(HashMap::new()),
        }
    }

    async fn read(
        &self,
        snap: &Published,
        env: &str,
        app: &str,
    ) -> Result<Arc<Vec<serde_json::Value>>, String> {
        let settings = &snap
            .desired
            .get(env)
            .ok_or("the environment is not rendered yet")?
            .settings;
        let key = (
            env.to_string(),
            app.to_string(),
            snap.commit.clone().unwrap_or_default(),
        );
        if let Some((at, e)) = self.cache.lock().get(&key)
            && at.elapsed() < FRESH
        {
            return Ok(e.clone());
        }
        let client = {
            let mut c = self.clients.lock();
            let url = c
                .url_for(settings.marathon.as_deref())
                .ok_or("the environment names no Marathon")?;
            c.get(&url)
                .ok_or("no Marathon client for the environment")?
        };
        let permit = tokio::time::timeout(DEADLINE, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| "busy reading other histories; try again".to_string())?
            .map_err(|_| "shutting down".to_string())?;
        let loc = RepoLocation::bare(&self.git_dir, &self.prefix);
        let id = settings.app_id(app);
        let (env_name, app_name) = (env.to_string(), app.to_string());
        // Git is read synchronously inside: on a blocking thread, so the
        // runtime's workers keep serving.
        let handle = tokio::runtime::Handle::current();
        let read = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            handle.block_on(record::history(
                &client, &loc, &id, &env_name, &app_name, LIMIT,
            ))
        });
        let entries = tokio::time::timeout(DEADLINE, read)
            .await
            .map_err(|_| format!("it took longer than {}s", DEADLINE.as_secs()))?
            .map_err(|_| "the read failed".to_string())?
            .map_err(|e| crate::redact::text(&e.to_string()))?;
        let entries: Vec<serde_json::Value> = entries
            .iter()
            .filter_map(|e| serde_json::to_value(e).ok())
            .collect();
        let entries = Arc::new(entries);
        let mut cache = self.cache.lock();
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, (at, _)| at.elapsed() < FRESH);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(key, (Instant::now(), entries.clone()));
        Ok(entries)
    }
}

impl HistorySource for MirrorHistory {
    fn of<'a>(
        &'a self,
        snap: Arc<Published>,
        env: &'a str,
        app: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Arc<Vec<serde_json::Value>>, String>> {
        Box::pin(async move { self.read(&snap, env, app).await })
    }
}
