//! Live apps as Marathon sent them, parsed only as far as a cycle needs.
//!
//! A steady reconcile cycle reads every app Marathon runs but compares
//! almost none of them: an app whose `version` and desired definition are
//! unchanged since it was last found in sync needs no comparison. Parsing
//! thousands of `AppInfo`s into `serde_json::Value` trees only to drop them
//! cost the daemon more memory than its whole desired state, so a
//! `GET /v2/apps` answer is kept as text and each app is a span of it.

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use std::ops::Range;
use std::sync::Arc;

/// One app of a Marathon answer: its id and version, and the text of its
/// `AppInfo`, shared with the other apps of the same answer.
#[derive(Clone)]
pub struct RawApp {
    pub id: String,
    /// Marathon's `version` (`""` if the answer had none).
    pub version: String,
    text: Arc<String>,
    span: Range<usize>,
}

impl std::fmt::Debug for RawApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawApp")
            .field("id", &self.id)
            .field("version", &self.version)
            .field("bytes", &self.span.len())
            .finish()
    }
}

/// The fields every cycle reads, borrowed from the text where possible.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    version: Option<std::borrow::Cow<'a, str>>,
}

#[derive(Deserialize)]
struct AppList<'a> {
    #[serde(borrow)]
    apps: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct OneApp<'a> {
    #[serde(borrow)]
    app: &'a RawValue,
}

#[derive(Deserialize)]
struct Summary {
    #[serde(default)]
    labels: Option<serde_json::Map<String, Value>>,
}

impl RawApp {
    /// The apps of a `GET /v2/apps` answer. Apps without an id (or that
    /// aren't objects) are left out: nothing could address them.
    pub fn list(text: String) -> Result<Vec<RawApp>, serde_json::Error> {
        let text = Arc::new(text);
        let list: AppList<'_> = serde_json::from_str(&text)?;
        let mut out = Vec::with_capacity(list.apps.len());
        for raw in list.apps {
            out.extend(RawApp::span_of(&text, raw)?);
        }
        Ok(out)
    }

    /// The app of a `GET /v2/apps/{id}` answer (`None` without an id).
    pub fn one(text: String) -> Result<Option<RawApp>, serde_json::Error> {
        let text = Arc::new(text);
        let one: OneApp<'_> = serde_json::from_str(&text)?;
        RawApp::span_of(&text, one.app)
    }

    /// `raw`, a slice of `text`, as an app sharing `text`.
    fn span_of(text: &Arc<String>, raw: &RawValue) -> Result<Option<RawApp>, serde_json::Error> {
        let json = raw.get();
        // serde reads a struct from an array as well (`["/x"]` would be an
        // app `/x` whose text has no id): only an object is an app.
        if !json.trim_start().starts_with('{') {
            return Ok(None);
        }
        let head: Head<'_> = serde_json::from_str(json)?;
        let Some(id) = head.id else { return Ok(None) };
        // A borrowed RawValue is a slice of `text`: its offset is where it
        // starts in the answer.
        let start = json.as_ptr() as usize - text.as_ptr() as usize;
        Ok(Some(RawApp {
            id: id.into_owned(),
            version: head.version.map(|v| v.into_owned()).unwrap_or_default(),
            text: text.clone(),
            span: start..start + json.len(),
        }))
    }

    /// The `AppInfo` text.
    pub fn json(&self) -> &str {
        &self.text[self.span.clone()]
    }

    /// The whole `AppInfo`.
    pub fn parse(&self) -> Result<Value, super::client::Error> {
        serde_json::from_str(self.json()).map_err(|e| super::client::Error::Decode {
            message: format!("GET /v2/apps: app {}: {e}", self.id),
        })
    }

    /// Only `id`, `version` and `labels`: what is read of an app known to
    /// match Git (its owner, its commit, whether it is in sync).
    pub fn summary(&self) -> Value {
        let labels = serde_json::from_str::<Summary>(self.json())
            .ok()
            .and_then(|s| s.labels)
            .unwrap_or_default();
        serde_json::json!({
            "id": self.id,
            "version": self.version,
            "labels": labels,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_app_is_its_own_span_of_the_answer() {
        let body = json!({"apps": [
            {"id": "/prod/web", "version": "2026-01-01T00:00:00.000Z", "cmd": "x \"y\"",
             "labels": {"pacer.env": "prod"}, "instances": 2},
            {"version": "no id"},
            {"labels": {}, "id": "/prod/api"}
        ]})
        .to_string();
        let apps = RawApp::list(body).unwrap();
        let ids: Vec<&str> = apps.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["/prod/web", "/prod/api"]);
        assert_eq!(apps[0].version, "2026-01-01T00:00:00.000Z");
        assert_eq!(apps[1].version, "");
        assert_eq!(apps[0].parse().unwrap()["cmd"], "x \"y\"");
        assert_eq!(
            apps[1].parse().unwrap(),
            json!({"labels": {}, "id": "/prod/api"})
        );
        assert_eq!(
            apps[0].summary(),
            json!({"id": "/prod/web", "version": "2026-01-01T00:00:00.000Z",
                   "labels": {"pacer.env": "prod"}})
        );
    }

    #[test]
    fn ids_with_escapes_are_decoded() {
        let apps = RawApp::list(r#"{"apps":[{"id":"/a\u002fb"}]}"#.to_string()).unwrap();
        assert_eq!(apps[0].id, "/a/b");
    }

    #[test]
    fn an_answer_without_apps_is_an_error() {
        assert!(RawApp::list(r#"{"app": []}"#.to_string()).is_err());
        assert!(RawApp::list(r#"{"apps": [1"#.to_string()).is_err());
    }

    /// Found by fuzzing: serde reads a struct from an array too, so
    /// `["/x"]` became an app `/x` whose text has no id.
    #[test]
    fn an_app_that_is_not_an_object_is_left_out() {
        let apps = RawApp::list(r#"{"apps": [["/x"], {"id": "/y"}]}"#.into()).unwrap();
        let ids: Vec<&str> = apps.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["/y"]);
        assert!(
            RawApp::one(r#"{"app": ["/x", "v1"]}"#.into())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_single_app_answer_is_one_span() {
        let body = r#"{"app": {"id": "/x", "version": "v1", "labels": {"a": "b"}, "cpus": 0.5}}"#;
        let raw = RawApp::one(body.to_string()).unwrap().unwrap();
        assert_eq!(raw.id, "/x");
        assert_eq!(raw.version, "v1");
        assert_eq!(
            raw.parse().unwrap(),
            json!({"id": "/x", "version": "v1", "labels": {"a": "b"}, "cpus": 0.5})
        );
        assert!(
            RawApp::one(r#"{"app": {"cpus": 1}}"#.into())
                .unwrap()
                .is_none()
        );
        assert!(RawApp::one(r#"{"apps": []}"#.into()).is_err());
    }
}
