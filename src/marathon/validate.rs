//! Placeholder until the simulator's validation lands.
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Violation {
    pub path: String,
    pub errors: Vec<String>,
}

pub fn validate_app(_app: &serde_json::Value) -> Vec<Violation> {
    Vec::new()
}

pub fn validate_path_id(id: &str) -> Result<(), String> {
    let re = regex::Regex::new(
        r"^(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])$",
    )
    .unwrap();
    for seg in id.trim_start_matches('/').split('/') {
        if !re.is_match(seg) {
            return Err(format!("path contains invalid segment `{seg}`"));
        }
    }
    Ok(())
}
