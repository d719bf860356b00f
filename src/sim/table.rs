//! The simulator's apps, with a running total of their `instances`.
//!
//! The capacity check ([`super::capacity`]) needs the sum of every app's
//! `instances` on each create; summing 10,000 apps per create made loading
//! them quadratic. The table keeps the sum as apps change instead, so the
//! check is O(1). Every way to change an app goes through here: [`insert`],
//! [`remove`] and [`get_mut`] (whose guard settles the total when dropped,
//! whatever the caller did to the record), and loading a saved state
//! recomputes it. Reads borrow the map itself through `Deref`.
//!
//! [`insert`]: AppTable::insert
//! [`remove`]: AppTable::remove
//! [`get_mut`]: AppTable::get_mut

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::model::AppRecord;

/// App id → record, and the sum of their `instances`.
#[derive(Debug, Default)]
pub struct AppTable {
    map: BTreeMap<String, AppRecord>,
    instances: u64,
}

fn count(rec: &AppRecord) -> u64 {
    rec.instances() as u64
}

impl AppTable {
    /// The sum of every app's `instances`, kept up to date on each change.
    pub fn total_instances(&self) -> u64 {
        self.instances
    }

    /// The sum recomputed from the records (what the total must equal).
    pub fn recount(&self) -> u64 {
        self.map.values().map(count).sum()
    }

    /// Stores `rec` under `id`, returning the record it replaces.
    pub fn insert(&mut self, id: String, rec: AppRecord) -> Option<AppRecord> {
        self.instances += count(&rec);
        let old = self.map.insert(id, rec);
        if let Some(o) = &old {
            self.instances -= count(o);
        }
        old
    }

    /// Drops the app `id`.
    pub fn remove(&mut self, id: &str) -> Option<AppRecord> {
        let old = self.map.remove(id)?;
        self.instances -= count(&old);
        Some(old)
    }

    /// The record of `id` to change; the total follows when the guard drops.
    pub fn get_mut(&mut self, id: &str) -> Option<AppMut<'_>> {
        let rec = self.map.get_mut(id)?;
        let before = count(rec);
        Some(AppMut {
            rec,
            total: &mut self.instances,
            before,
        })
    }

    /// The record of `id`, created by `new` if missing.
    pub fn get_or_insert_with(
        &mut self,
        id: String,
        new: impl FnOnce() -> AppRecord,
    ) -> AppMut<'_> {
        let rec = self.map.entry(id).or_insert_with(|| {
            let rec = new();
            self.instances += count(&rec);
            rec
        });
        let before = count(rec);
        AppMut {
            rec,
            total: &mut self.instances,
            before,
        }
    }
}

impl Deref for AppTable {
    type Target = BTreeMap<String, AppRecord>;
    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl FromIterator<(String, AppRecord)> for AppTable {
    fn from_iter<I: IntoIterator<Item = (String, AppRecord)>>(iter: I) -> Self {
        let map: BTreeMap<String, AppRecord> = iter.into_iter().collect();
        let instances = map.values().map(count).sum();
        AppTable { map, instances }
    }
}

/// A record being changed; settles the table's total when dropped.
pub struct AppMut<'a> {
    rec: &'a mut AppRecord,
    total: &'a mut u64,
    before: u64,
}

impl Deref for AppMut<'_> {
    type Target = AppRecord;
    fn deref(&self) -> &AppRecord {
        self.rec
    }
}

impl DerefMut for AppMut<'_> {
    fn deref_mut(&mut self) -> &mut AppRecord {
        self.rec
    }
}

impl Drop for AppMut<'_> {
    fn drop(&mut self) {
        *self.total = *self.total - self.before + count(self.rec);
    }
}

// Saved as the plain map (the state file's format is unchanged); the total
// is recomputed on load.
impl Serialize for AppTable {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.map.serialize(s)
    }
}

impl<'de> Deserialize<'de> for AppTable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(BTreeMap::<String, AppRecord>::deserialize(d)?
            .into_iter()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::super::commands::Command;
    use super::super::state::{Settings, SimState};
    use proptest::prelude::*;
    use serde_json::json;

    const IDS: [&str; 4] = ["/a", "/b", "/g/c", "/g/d"];

    /// One API call (or a tick, or a restart from the saved state).
    #[derive(Debug, Clone)]
    enum Op {
        Put {
            app: usize,
            instances: u64,
            force: bool,
        },
        Delete {
            app: usize,
            force: bool,
        },
        KillAndScale {
            app: usize,
            force: bool,
        },
        FailTask {
            app: usize,
        },
        PutGroup {
            instances: u64,
            force: bool,
        },
        DeleteGroup {
            force: bool,
        },
        /// `DELETE /v2/deployments/{id}`: a rollback unless forced.
        CancelDeployment {
            force: bool,
        },
        Tick {
            ms: i64,
        },
        Restore,
    }

    fn op() -> impl Strategy<Value = Op> {
        let app = 0..IDS.len();
        prop_oneof![
            (app.clone(), 0..6u64, any::<bool>()).prop_map(|(app, instances, force)| Op::Put {
                app,
                instances,
                force
            }),
            (app.clone(), any::<bool>()).prop_map(|(app, force)| Op::Delete { app, force }),
            (app.clone(), any::<bool>()).prop_map(|(app, force)| Op::KillAndScale { app, force }),
            app.prop_map(|app| Op::FailTask { app }),
            (0..6u64, any::<bool>())
                .prop_map(|(instances, force)| Op::PutGroup { instances, force }),
            any::<bool>().prop_map(|force| Op::DeleteGroup { force }),
            any::<bool>().prop_map(|force| Op::CancelDeployment { force }),
            (1..400i64).prop_map(|ms| Op::Tick { ms }),
            Just(Op::Restore),
        ]
    }

    fn run(s: &mut SimState, op: Op, now: i64) {
        let cmd = match op {
            Op::Put {
                app,
                instances,
                force,
            } => Command::PutApp {
                id: IDS[app].into(),
                body: json!({"cmd": "sleep 1", "instances": instances}),
                partial: true,
                force,
                allow_create: true,
            },
            Op::Delete { app, force } => Command::DeleteApp {
                id: IDS[app].into(),
                force,
            },
            Op::KillAndScale { app, force } => Command::KillTasks {
                app: Some(IDS[app].into()),
                ids: Vec::new(),
                host: None,
                scale: true,
                force,
            },
            Op::FailTask { app } => {
                let Some(t) = s.apps.get(IDS[app]).and_then(|r| r.tasks.first()) else {
                    return;
                };
                Command::FailTask { id: t.id.clone() }
            }
            Op::PutGroup { instances, force } => Command::PutGroup {
                id: Some("/g".into()),
                body: json!({"apps": [
                    {"id": "c", "cmd": "sleep 1", "instances": instances},
                    {"id": "d", "cmd": "sleep 2", "instances": instances + 1},
                ]}),
                create: false,
                force,
            },
            Op::DeleteGroup { force } => Command::DeleteGroup {
                id: "/g".into(),
                force,
            },
            Op::CancelDeployment { force } => {
                let Some(d) = s.deployments.first() else {
                    return;
                };
                Command::DeleteDeployment {
                    id: d.id.clone(),
                    force,
                }
            }
            Op::Tick { .. } => {
                s.tick(now);
                return;
            }
            Op::Restore => {
                let text = serde_json::to_string(&*s).unwrap();
                let back: SimState = serde_json::from_str(&text).unwrap();
                *s = back;
                return;
            }
        };
        // Refusals (a locked app, an unknown id) are part of the sequence.
        let _ = s.apply(cmd, now);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn the_running_total_is_the_sum_after_any_sequence(ops in proptest::collection::vec(op(), 1..40)) {
            let settings = Settings { start_delay_ms: 50, healthy_delay_ms: 50, ..Settings::default() };
            let mut s = SimState::seeded(1_000_000, settings, 3);
            let mut now = 1_000_000;
            for op in ops {
                now += match op { Op::Tick { ms } => ms, _ => 1 };
                let what = format!("{op:?}");
                run(&mut s, op, now);
                prop_assert_eq!(s.apps.total_instances(), s.apps.recount(), "after {}", what);
            }
        }
    }

    #[test]
    fn capacity_counts_what_is_stored() {
        let settings = Settings {
            max_tasks: 10,
            ..Settings::default()
        };
        let mut s = SimState::seeded(1_000_000, settings, 3);
        let put = |s: &mut SimState, id: &str, n: u64| {
            s.apply(
                Command::PutApp {
                    id: id.into(),
                    body: json!({"cmd": "x", "instances": n}),
                    partial: true,
                    force: true,
                    allow_create: true,
                },
                1_000_001,
            )
        };
        put(&mut s, "/a", 6).unwrap();
        assert!(put(&mut s, "/b", 5).is_err(), "11 tasks > 10");
        put(&mut s, "/b", 4).unwrap();
        put(&mut s, "/a", 1).unwrap();
        put(&mut s, "/b", 9).unwrap();
        assert_eq!(s.apps.total_instances(), 10);
    }
}
