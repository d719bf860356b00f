//! What pacer writes for an app: the body of a PUT, and whether a write
//! would change anything at all.

use super::Step;
use crate::diff::Class;
use crate::marathon::client::MarathonClient;
use crate::plan::Action;
use crate::render::RenderedApp;
use serde_json::Value;

/// The body pacer PUTs: the rendered definition, with the fields the app
/// leaves to others (its `ignore` pointers) taken from what runs now, so
/// that a full PUT never resets an autoscaled instance count; labelled with
/// the digest of what it is (`pacer.digest`), so that history can tell it
/// from a version made by hand with pacer's labels copied.
pub fn put_body(app: &RenderedApp, live: Option<&Value>) -> Value {
    let mut body = app.marathon.clone();
    if let Some(live) = live {
        for pointer in &app.ignore {
            if let Some(v) = live.pointer(pointer) {
                set_pointer(&mut body, pointer, v.clone());
            }
        }
    }
    let digest = crate::observe::written_digest(&body);
    if let Some(o) = body.as_object_mut() {
        let labels = o
            .entry("labels")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(l) = labels.as_object_mut() {
            l.insert(crate::render::labels::DIGEST.into(), digest.into());
        }
    }
    body
}

/// Whether `step` would write to Marathon what runs already (`live`,
/// normalised as observe compares): such a write restarts nothing useful,
/// and is neither sent nor recorded. Steps that don't write a definition
/// (hot updates, deletes, adoptions) never are.
pub fn writes_nothing(step: &Step, app: &RenderedApp, live: Option<&Value>) -> bool {
    let Some(live) = live.filter(|_| writes_definition(step)) else {
        return false;
    };
    crate::observe::app_diff(&put_body(app, Some(live)), live, &[]).is_none()
}

/// Whether the step PUTs a definition (or scales one).
fn writes_definition(step: &Step) -> bool {
    match &step.action {
        Action::Update { class, .. } => *class != Class::Hot,
        Action::Create | Action::Drifted { heal: true, .. } => true,
        _ => false,
    }
}

/// Whether what `step` would write runs already: as observed, or, since the
/// plan may be older than Marathon's state (a deployment that ended since
/// it was read), as Marathon says now. Unreadable: not known to be there.
pub(super) async fn already_there(
    client: &MarathonClient,
    step: &Step,
    app: &RenderedApp,
    observed: Option<&Value>,
) -> bool {
    if writes_nothing(step, app, observed) {
        return true;
    }
    if !writes_definition(step) {
        return false;
    }
    match client.get_app(&step.id).await {
        Ok(Some(now)) => writes_nothing(step, app, Some(&now)),
        _ => false,
    }
}

fn set_pointer(root: &mut Value, pointer: &str, value: Value) {
    let mut node = root;
    let segs: Vec<String> = pointer
        .trim_start_matches('/')
        .split('/')
        .map(crate::render::schema::unescape)
        .collect();
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        match node {
            Value::Object(m) => {
                if last {
                    m.insert(seg.clone(), value);
                    return;
                }
                node = m
                    .entry(seg.clone())
                    .or_insert_with(|| Value::Object(Default::default()));
            }
            _ => return,
        }
    }
}
