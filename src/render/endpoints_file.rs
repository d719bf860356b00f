//! `--endpoints FILE`: the services templates see in an offline render,
//! fixed by hand or captured from a cluster, instead of placeholders.

use super::services::check_name;
use super::*;
use crate::model::endpoints::{Endpoints, Mode, ServiceSet};

/// The largest `--endpoints` file read.
pub const ENDPOINTS_FILE_LIMIT: u64 = 1024 * 1024;

/// `--endpoints FILE`: fixed sets for an offline render (YAML or JSON, a
/// map of Marathon id → `{portNames, tasks}`). Services the file doesn't
/// list still get placeholders.
pub fn read_endpoints(path: &std::path::Path) -> Result<Endpoints, String> {
    use std::io::Read;
    let shown = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| format!("{shown}: {e}"))?;
    let mut bytes = Vec::new();
    file.take(ENDPOINTS_FILE_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{shown}: {e}"))?;
    if bytes.len() as u64 > ENDPOINTS_FILE_LIMIT {
        return Err(format!(
            "{shown}: over the {} limit for an endpoints file",
            budget::bytes(ENDPOINTS_FILE_LIMIT as usize)
        ));
    }
    let text = String::from_utf8(bytes).map_err(|_| format!("{shown}: not valid UTF-8"))?;
    let data = yaml::parse_within(&shown, &text, ENDPOINTS_FILE_LIMIT as usize * 4)
        .map_err(|d| d.to_string())?;
    let sets: BTreeMap<String, ServiceSet> = serde_json::from_value(data).map_err(|e| {
        format!("{shown}: expected a map of Marathon id → {{portNames: [...], tasks: [{{host, ips, ports, taskId, version, startedAt}}]}}: {e}")
    })?;
    let mut services = BTreeMap::new();
    for (id, set) in sets {
        if !id.starts_with('/') {
            return Err(format!(
                "{shown}: `{id}`: name each service by its absolute Marathon id, e.g. `/prod/db`"
            ));
        }
        if let Err(why) = check_name(&id) {
            return Err(format!("{shown}: `{id}`: {why}"));
        }
        services.insert(id, Arc::new(ServiceSet::new(set.port_names, set.tasks)));
    }
    Ok(Endpoints {
        mode: Mode::Placeholders,
        services,
    })
}
