//! Placeholder with the server's signatures, replaced by the real server.
#![allow(dead_code, unused_variables)]
pub mod metrics {
    pub struct Metrics;
    impl Default for Metrics {
        fn default() -> Self {
            Metrics
        }
    }
    impl Metrics {
        pub fn new() -> Self {
            Metrics
        }
        pub fn observe_reconcile(&self, env: &str, seconds: f64) {}
        pub fn set_apps(
            &self,
            env: &str,
            counts: &std::collections::BTreeMap<crate::reconcile::status::SyncStatus, u64>,
        ) {
        }
        pub fn deployment(&self, env: &str, outcome: crate::reconcile::status::Outcome) {}
        pub fn git_fetch_error(&self) {}
        pub fn webhook(&self, decision: &str, provider: &str) {}
        pub fn synced(&self, env: &str, unix_seconds: f64) {}
        pub fn marathon_error(&self) {}
        pub fn render(&self) -> String {
            String::new()
        }
    }
}
pub struct AppState {
    pub status: std::sync::Arc<parking_lot::RwLock<crate::reconcile::status::Status>>,
    pub metrics: std::sync::Arc<metrics::Metrics>,
    pub ready: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub triggers: tokio::sync::mpsc::Sender<Trigger>,
    pub webhook_secret: Option<crate::model::Secret<String>>,
    pub branch: String,
}
#[derive(Debug, Clone)]
pub enum Trigger {
    Poll,
    Webhook {
        provider: String,
        delivery: Option<String>,
        commit: Option<String>,
    },
    Retry {
        env: Option<String>,
        app: Option<String>,
    },
}
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    todo!()
}
