//! `tick`: tasks move staging → running → healthy, deployments step forward.

use serde_json::{Value, json};

use super::model::{ActionKind, Deployment, Millis, Restart, Task, TaskState};
use super::state::{SimState, host_port_count, service_ports};
use crate::marathon::ids::safe_id;

/// Rolling-restart numbers (TaskReplaceActor `computeRestartStrategy`, SEMANTICS §4):
/// how many old instances to kill at once and the maximum instance count.
pub fn restart_strategy(
    instances: usize,
    mhc: f64,
    moc: f64,
    considered_healthy: usize,
    running: usize,
    resident: bool,
) -> (usize, usize) {
    let min_healthy = (instances as f64 * mhc).ceil() as usize;
    let mut max_capacity = (instances as f64 * (1.0 + moc)).floor() as usize;
    let mut kill_now = considered_healthy.saturating_sub(min_healthy);
    if min_healthy == max_capacity && max_capacity <= considered_healthy {
        if resident {
            kill_now += 1;
        } else {
            max_capacity += 1;
        }
    }
    // Surplus beyond the target count goes at once.
    kill_now = kill_now.max(running.saturating_sub(instances));
    (kill_now, max_capacity)
}

/// Launches per app per tick, so an absurd `instances` cannot stall the
/// simulator (Marathon throttles launches too: `launch_token`).
const MAX_LAUNCH_PER_TICK: usize = 1000;

pub fn ip_of(host: &str) -> String {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return host.to_string();
    }
    let n = host
        .trim_start_matches("agent-")
        .split('.')
        .next()
        .unwrap_or("1");
    format!("10.0.0.{n}")
}

impl SimState {
    pub fn tick(&mut self, now: Millis) {
        self.advance_deployments(now);
        let pending: Vec<String> = self.pending.iter().cloned().collect();
        for app in pending {
            self.advance_tasks(&app, now);
        }
    }

    fn status_event(&mut self, t: &Task, status: &str, now: Millis) {
        if !self.record_events {
            return;
        }
        self.emit(
            "status_update_event",
            now,
            json!({"slaveId": t.slave_id, "taskId": t.id, "taskStatus": status, "message": "",
                "appId": t.app_id, "host": t.host,
                "ipAddresses": [{"ipAddress": ip_of(&t.host), "protocol": "IPv4"}],
                "ports": t.ports, "version": t.version}),
        );
    }

    fn instance_event(&mut self, t: &Task, condition: &str, now: Millis) {
        if !self.record_events {
            return;
        }
        self.emit(
            "instance_changed_event",
            now,
            json!({"instanceId": t.instance_id, "condition": condition, "runSpecId": t.app_id,
                "agentId": t.slave_id, "host": t.host, "runSpecVersion": t.version}),
        );
    }

    pub fn emit_task_gone(&mut self, t: &Task, status: &str, now: Millis) {
        self.status_event(t, status, now);
        let cond = if status == "TASK_KILLED" {
            "Killed"
        } else {
            "Failed"
        };
        self.instance_event(t, cond, now);
    }

    /// Launch one task of `app` with its current version. Ids use the 1.10
    /// instance format `<safeId>.instance-<uuid>._app.1` (1.4: `<safeId>.<uuid>`).
    pub fn launch(&mut self, app: &str, now: Millis) {
        let Some(rec) = self.apps.get(app) else {
            return;
        };
        let def = rec.app.clone();
        let avoid = rec.avoid_host.clone();
        let version = rec.version().to_string();
        // The new version is broken, not the app: a revert to (or a scale
        // of) the definition that ran when the fault was set comes up, as
        // the old definition's tasks do in Marathon after a rollback.
        let doomed = self.settings.never_healthy.get(app).is_some_and(|from| {
            from.is_empty()
                || (version.as_str() > from.as_str()
                    && rec
                        .at_version(from)
                        .is_none_or(|good| !same_definition(&good, &def)))
        });
        let instance_id = format!("{}.instance-{}", safe_id(app), self.uuid());
        let host = self.random_host(avoid.as_deref());
        let ports = (0..host_port_count(&def))
            .map(|_| self.random_host_port())
            .collect();
        let slave = format!(
            "sim-agent-{}",
            host.trim_start_matches("agent-")
                .split('.')
                .next()
                .unwrap_or("1")
        );
        let t = Task {
            id: format!("{instance_id}._app.1"),
            instance_id,
            app_id: app.to_string(),
            host: host.to_string(),
            slave_id: slave,
            ports,
            service_ports: service_ports(&def),
            state: TaskState::Staging,
            staged_at: now,
            started_at: None,
            version,
            healthy: None,
            first_success: None,
            doomed,
            role: def
                .get("role")
                .and_then(Value::as_str)
                .unwrap_or("*")
                .to_string(),
        };
        self.status_event(&t, "TASK_STAGING", now);
        self.instance_event(&t, "Staging", now);
        if let Some(mut rec) = self.apps.get_mut(app) {
            rec.tasks.push(t);
            rec.avoid_host = None;
        }
        self.pending.insert(app.to_string());
    }

    /// Kill a task. `failed` marks it as lost (chaos) rather than killed on request.
    pub fn kill_task(
        &mut self,
        app: &str,
        task_id: &str,
        failed: bool,
        now: Millis,
    ) -> Option<Task> {
        let mut rec = self.apps.get_mut(app)?;
        let idx = rec
            .tasks
            .iter()
            .position(|t| t.id == task_id || t.instance_id == task_id)?;
        let t = rec.tasks.remove(idx);
        if failed {
            rec.avoid_host = Some(t.host.clone());
            rec.last_task_failure = Some(
                json!({"appId": app, "host": t.host, "message": "Simulated task failure",
                "state": "TASK_FAILED", "taskId": t.id, "timestamp": super::model::iso(now), "version": t.version,
                "slaveId": t.slave_id}),
            );
        }
        drop(rec);
        self.emit_task_gone(&t, if failed { "TASK_FAILED" } else { "TASK_KILLED" }, now);
        self.pending.insert(app.to_string());
        Some(t)
    }

    /// Order in which tasks are picked for killing (killSelection).
    fn kill_order(&self, app: &str, candidates: &mut [Task]) {
        let oldest_first = self
            .apps
            .get(app)
            .and_then(|r| r.app.get("killSelection"))
            .and_then(Value::as_str)
            == Some("OLDEST_FIRST");
        candidates.sort_by_key(|t| (t.state == TaskState::Running, t.staged_at));
        if !oldest_first {
            candidates.sort_by_key(|t| {
                (
                    t.state == TaskState::Running,
                    std::cmp::Reverse(t.staged_at),
                )
            });
        }
    }

    fn advance_tasks(&mut self, app: &str, now: Millis) {
        let (start, healthy_after) = (self.settings.start_delay_ms, self.settings.healthy_delay_ms);
        let Some(mut rec) = self.apps.get_mut(app) else {
            self.pending.remove(app);
            return;
        };
        let has_hc = rec.has_health_checks();
        let mut changes: Vec<(Task, &str)> = Vec::new();
        for t in rec.tasks.iter_mut() {
            if t.state == TaskState::Staging && now >= t.staged_at + start && (has_hc || !t.doomed)
            {
                t.state = TaskState::Running;
                t.started_at = Some(now);
                changes.push((t.clone(), "running"));
            }
            if t.state == TaskState::Running
                && has_hc
                && t.healthy.is_none()
                && now >= t.started_at.unwrap_or(now) + healthy_after
            {
                t.healthy = Some(!t.doomed);
                if !t.doomed {
                    t.first_success = Some(now);
                }
                changes.push((t.clone(), "health"));
            }
        }
        let stable = rec
            .tasks
            .iter()
            .all(|t| t.state == TaskState::Running && (!has_hc || t.healthy.is_some()) || t.doomed);
        let short = rec.tasks.len() < rec.instances();
        drop(rec);
        for (t, what) in changes {
            if what == "running" {
                self.status_event(&t, "TASK_RUNNING", now);
                self.instance_event(&t, "Running", now);
            } else {
                let alive = t.healthy == Some(true);
                self.emit("health_status_changed_event", now,
                    json!({"appId": t.app_id, "instanceId": t.instance_id, "taskId": t.id, "version": t.version, "alive": alive}));
                self.emit("instance_health_changed_event", now,
                    json!({"instanceId": t.instance_id, "runSpecId": t.app_id, "healthy": alive, "runSpecVersion": t.version}));
                if !alive && self.record_events {
                    let hc = self
                        .apps
                        .get(app)
                        .and_then(|r| r.app.pointer("/healthChecks/0").cloned())
                        .unwrap_or(Value::Null);
                    // `taskId` carries the instance id here, as in Marathon's EventFormats.
                    self.emit("failed_health_check_event", now,
                        json!({"appId": t.app_id, "taskId": t.instance_id, "instanceId": t.instance_id, "healthCheck": hc, "version": t.version}));
                }
            }
        }
        let in_deployment = self
            .deployments
            .iter()
            .any(|d| d.affected_apps.iter().any(|a| a == app));
        if short && !in_deployment {
            // The launch queue replaces lost tasks outside deployments.
            self.launch(app, now);
        } else if stable && !in_deployment {
            self.pending.remove(app);
        }
    }

    fn advance_deployments(&mut self, now: Millis) {
        // Stepping never adds or reads deployments, so they can be taken out.
        let mut deps = std::mem::take(&mut self.deployments);
        deps.retain_mut(|d| !self.advance_one(d, now));
        self.deployments = deps;
    }

    /// Start a just-submitted deployment at once, as Marathon does.
    pub fn kick_off(&mut self, now: Millis) {
        if let Some(mut d) = self.deployments.pop()
            && !self.advance_one(&mut d, now)
        {
            self.deployments.push(d);
        }
    }

    /// Returns true when the deployment is over (success or failure).
    fn advance_one(&mut self, d: &mut Deployment, now: Millis) -> bool {
        if let Some(limit) = self.settings.deployment_timeout_ms
            && now - d.started_at > limit
        {
            self.emit(
                "deployment_step_failure",
                now,
                json!({"plan": d.plan_json(), "currentStep": d.current_step_json()}),
            );
            self.emit("deployment_failed", now,
                json!({"id": d.id, "plan": d.plan_json(), "reason": format!("Deployment timed out after {limit} ms")}));
            return true;
        }
        loop {
            let idx = d.current.unwrap_or_default();
            if idx >= d.steps.len() {
                self.emit(
                    "deployment_success",
                    now,
                    json!({"id": d.id, "plan": d.plan_json()}),
                );
                return true;
            }
            if d.current.is_none() {
                self.start_step(d, 0, now);
            }
            let actions = d.steps[idx].clone();
            let mut all_done = true;
            for a in &actions {
                self.pending.insert(a.app.clone());
                let done = match a.kind {
                    ActionKind::StartApplication | ActionKind::StopApplication => true,
                    ActionKind::ScaleApplication => self.drive_scale(&a.app, now),
                    ActionKind::RestartApplication => {
                        let mut r = d.restarts.remove(&a.app).unwrap_or_default();
                        let done = self.drive_restart(&a.app, &mut r, now);
                        d.restarts.insert(a.app.clone(), r);
                        done
                    }
                };
                all_done &= done;
            }
            if !all_done {
                return false;
            }
            self.emit(
                "deployment_step_success",
                now,
                json!({"plan": d.plan_json(), "currentStep": d.current_step_json()}),
            );
            if idx + 1 >= d.steps.len() {
                self.emit(
                    "deployment_success",
                    now,
                    json!({"id": d.id, "plan": d.plan_json()}),
                );
                return true;
            }
            self.start_step(d, idx + 1, now);
        }
    }

    fn start_step(&mut self, d: &mut Deployment, idx: usize, now: Millis) {
        d.current = Some(idx);
        d.restarts.clear();
        self.emit(
            "deployment_info",
            now,
            json!({"plan": d.plan_json(), "currentStep": d.current_step_json()}),
        );
        for a in d.steps[idx].clone() {
            match a.kind {
                ActionKind::StopApplication => {
                    self.emit("app_terminated_event", now, json!({"appId": a.app}))
                }
                ActionKind::RestartApplication => {
                    let r = self.plan_restart(&a.app);
                    d.restarts.insert(a.app.clone(), r);
                }
                _ => {}
            }
        }
    }

    /// Scale to the target count; done once every task is considered healthy.
    fn drive_scale(&mut self, app: &str, now: Millis) -> bool {
        let Some(rec) = self.apps.get(app) else {
            return true;
        };
        let n = rec.instances();
        let have = rec.tasks.len();
        if have > n {
            let mut c = rec.tasks.clone();
            self.kill_order(app, &mut c);
            for t in c.into_iter().take(have - n) {
                self.kill_task(app, &t.id, false, now);
            }
        }
        for _ in have..n.min(have + MAX_LAUNCH_PER_TICK) {
            self.launch(app, now);
        }
        let rec = &self.apps[app];
        rec.tasks.len() == n && rec.tasks.iter().all(|t| rec.considered_healthy(t))
    }

    fn plan_restart(&self, app: &str) -> Restart {
        let Some(rec) = self.apps.get(app) else {
            return Restart::default();
        };
        let n = rec.instances();
        let us = rec.app.get("upgradeStrategy");
        let f = |k: &str, d: f64| {
            us.and_then(|u| u.get(k))
                .and_then(Value::as_f64)
                .unwrap_or(d)
        };
        let resident =
            rec.app.get("unreachableStrategy").and_then(Value::as_str) == Some("disabled");
        let healthy = rec
            .tasks
            .iter()
            .filter(|t| rec.considered_healthy(t))
            .count();
        let (kill, max) = restart_strategy(
            n,
            f("minimumHealthCapacity", 1.0),
            f("maximumOverCapacity", 1.0),
            healthy,
            rec.tasks.len(),
            resident,
        );
        Restart {
            old: rec.tasks.iter().map(|t| t.id.clone()).collect(),
            kill_immediately: kill,
            max_capacity: max,
            old_killed: 0,
        }
    }

    /// One rolling-restart round: kill old instances as new ones turn healthy,
    /// start new ones while under `max_capacity`.
    fn drive_restart(&mut self, app: &str, r: &mut Restart, now: Millis) -> bool {
        let Some(rec) = self.apps.get(app) else {
            return true;
        };
        let n = rec.instances();
        let old_total = r.old.len();
        let new_healthy = rec
            .tasks
            .iter()
            .filter(|t| !r.old.contains(&t.id) && rec.considered_healthy(t))
            .count();
        let kill_target = old_total.min(r.kill_immediately + new_healthy);
        if r.old_killed < kill_target {
            let mut old: Vec<Task> = rec
                .tasks
                .iter()
                .filter(|t| r.old.contains(&t.id))
                .cloned()
                .collect();
            self.kill_order(app, &mut old);
            for t in old.into_iter().take(kill_target - r.old_killed) {
                self.kill_task(app, &t.id, false, now);
                r.old_killed += 1;
            }
        }
        let rec = &self.apps[app];
        let old_alive = rec.tasks.iter().filter(|t| r.old.contains(&t.id)).count();
        // Old tasks lost for other reasons count as gone.
        r.old_killed = r.old_killed.max(old_total - old_alive);
        let new_started = rec.tasks.len() - old_alive;
        let room = r.max_capacity.saturating_sub(old_alive + new_started);
        for _ in 0..room
            .min(n.saturating_sub(new_started))
            .min(MAX_LAUNCH_PER_TICK)
        {
            self.launch(app, now);
        }
        let rec = &self.apps[app];
        old_alive == 0
            && rec.tasks.len() == n
            && rec.tasks.iter().all(|t| rec.considered_healthy(t))
    }
}

/// Equal but for the version fields and the instance count.
fn same_definition(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            for k in ["version", "versionInfo", "instances"] {
                o.remove(k);
            }
        }
        v
    };
    strip(a) == strip(b)
}
