//! Placeholder with the client's signatures, replaced by the real client.
#![allow(dead_code, unused_variables)]
use crate::model::Secret;
use serde_json::Value;
use std::time::Duration;

pub enum Auth {
    None,
    Basic {
        user: String,
        password: Secret<String>,
    },
    Token(Secret<String>),
}
pub struct ClientConfig {
    pub url: String,
    pub auth: Auth,
    pub timeout: Duration,
    pub max_retries: u32,
    pub backoff: Duration,
    pub lock_wait: Duration,
}
impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            url: "http://127.0.0.1:8080".into(),
            auth: Auth::None,
            timeout: Duration::from_secs(10),
            max_retries: 4,
            backoff: Duration::from_millis(200),
            lock_wait: Duration::from_secs(300),
        }
    }
}
#[derive(Clone)]
pub struct MarathonClient;
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct DeploymentRef {
    pub deployment_id: String,
    pub version: String,
}
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct Deployment {
    pub id: String,
    pub version: String,
    pub affected_apps: Vec<String>,
    pub current_step: u32,
    pub total_steps: u32,
}
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("x")]
    X,
}
impl Error {
    pub fn is_transient(&self) -> bool {
        false
    }
}
impl MarathonClient {
    pub fn new(cfg: ClientConfig) -> Result<Self, Error> {
        todo!()
    }
    pub fn url(&self) -> &str {
        todo!()
    }
    pub async fn ping(&self) -> Result<(), Error> {
        todo!()
    }
    pub async fn list_apps(&self, group: &str) -> Result<Vec<Value>, Error> {
        todo!()
    }
    pub async fn get_app(&self, id: &str) -> Result<Option<Value>, Error> {
        todo!()
    }
    pub async fn put_app(
        &self,
        id: &str,
        app: &Value,
        force: bool,
    ) -> Result<DeploymentRef, Error> {
        todo!()
    }
    pub async fn scale_app(&self, id: &str, instances: u64) -> Result<DeploymentRef, Error> {
        todo!()
    }
    pub async fn delete_app(&self, id: &str) -> Result<DeploymentRef, Error> {
        todo!()
    }
    pub async fn deployments(&self) -> Result<Vec<Deployment>, Error> {
        todo!()
    }
    pub async fn rollback_deployment(&self, id: &str) -> Result<Option<DeploymentRef>, Error> {
        todo!()
    }
    pub async fn app_versions(&self, id: &str) -> Result<Vec<String>, Error> {
        todo!()
    }
    pub async fn app_version(&self, id: &str, version: &str) -> Result<Value, Error> {
        todo!()
    }
}
