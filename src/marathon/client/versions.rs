//! An app's version history: the list, one version, the newest few.

use reqwest::Method;
use serde_json::Value;

use super::apps::{app_path, encode_segment};
use super::error::{decode, status_error};
use super::transport::Retry;
use super::{Error, MarathonClient};

impl MarathonClient {
    /// `GET /v2/apps/{id}/versions`: newest first, as Marathon lists them.
    pub async fn app_versions(&self, id: &str) -> Result<Vec<String>, Error> {
        let path = format!("/v2/apps{}/versions", app_path(id));
        let a = self
            .call(Method::GET, &path, None, Retry::Transient)
            .await?;
        if !a.status.is_success() {
            return Err(status_error(&a));
        }
        let body: Value = decode(&a)?;
        match body.get("versions").and_then(Value::as_array) {
            Some(vs) => Ok(vs
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()),
            None => Err(Error::Decode {
                message: format!("GET {path}: no \"versions\" array"),
            }),
        }
    }

    /// `GET /v2/apps/{id}/versions/{version}`: the bare app definition.
    pub async fn app_version(&self, id: &str, version: &str) -> Result<Value, Error> {
        let path = format!(
            "/v2/apps{}/versions/{}",
            app_path(id),
            encode_segment(version)
        );
        let a = self
            .call(Method::GET, &path, None, Retry::Transient)
            .await?;
        if !a.status.is_success() {
            return Err(status_error(&a));
        }
        decode(&a)
    }

    /// The newest `limit` versions of an app, oldest first, each as
    /// `(version, definition)`: the list, then one GET per version kept.
    pub async fn newest_versions(
        &self,
        id: &str,
        limit: usize,
    ) -> Result<Vec<(String, Value)>, Error> {
        let mut list = self.app_versions(id).await?;
        // Marathon lists newest first; its timestamps sort as text.
        list.sort();
        let skip = list.len().saturating_sub(limit);
        let mut out = Vec::with_capacity(list.len() - skip);
        for v in list.into_iter().skip(skip) {
            let spec = self.app_version(id, &v).await?;
            out.push((v, spec));
        }
        Ok(out)
    }
}
