//! Who may log in: the checks of `POST /v1/login`, as a pure function of
//! what Marathon says about the task, the clock, the caller's address and
//! the ids already used; and every refusal the config server answers.
//!
//! The caller's word is only a claim: the task, its app, its state, its
//! start and its host come from Marathon, read by the daemon's own client.

use serde_json::Value;
use std::net::IpAddr;
use std::time::Duration;

/// The longest task or app id accepted (Marathon's ids are far shorter).
pub const MAX_ID_BYTES: usize = 256;

/// A login request, its ids checked for size and characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginRequest {
    pub task_id: String,
    pub app_id: String,
}

/// Task and app ids are printed in logs and answers: printable ASCII of
/// Marathon's id alphabet only, bounded.
pub fn check_id(what: &str, id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(format!("{what} is longer than {MAX_ID_BYTES} bytes"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-/:+".contains(&b))
    {
        return Err(format!(
            "{what} holds a character Marathon ids never have (letters, digits and . _ - / : + only)"
        ));
    }
    Ok(())
}

/// Whether `task` can be a task id of `app` at all: Marathon names a task
/// `<app id, leading / dropped, / as _>.<…>` (1.10:
/// `dev_web.instance-<uuid>._app.1`, 1.4: `dev_web.<uuid>`). Checked before
/// Marathon is asked, so a made-up id costs no Marathon read.
pub fn task_fits_app(task: &str, app: &str) -> bool {
    let safe = app.trim_start_matches('/').replace('/', "_");
    !safe.is_empty()
        && task
            .strip_prefix(safe.as_str())
            .and_then(|rest| rest.strip_prefix('.'))
            .is_some_and(|rest| !rest.is_empty())
}

/// What Marathon says about one task of the app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskFacts {
    /// The app Marathon says the task belongs to.
    pub app_id: String,
    /// Mesos state (`TASK_RUNNING`).
    pub state: String,
    /// The agent's host name or address.
    pub host: String,
    /// The task's own addresses (`ipAddresses`).
    pub ip_addresses: Vec<IpAddr>,
    /// When it started (`startedAt`, else `stagedAt`), Unix ms.
    pub started_ms: Option<i64>,
}

/// What Marathon says about the app a task claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppFacts {
    /// Its `pacer.env` label: which environment pacer deployed it to.
    pub env_label: Option<String>,
    /// The claimed task, if it is one of the app's.
    pub task: Option<TaskFacts>,
    /// Whether the app's tasks have addresses of their own (a `container`
    /// network: USER networking). On `host` and `container/bridge` networks
    /// a task's `ipAddresses` are the agent's or a private bridge address
    /// that another host may hold too: only its `host` counts then.
    pub ip_per_task: bool,
}

/// Reads [`AppFacts`] out of `GET /v2/apps/{id}`'s app (which embeds its tasks).
pub fn app_facts(app: &Value, task_id: &str) -> AppFacts {
    let env_label = app
        .pointer("/labels/pacer.env")
        .and_then(Value::as_str)
        .map(str::to_string);
    let task = app
        .get("tasks")
        .and_then(Value::as_array)
        .and_then(|ts| ts.iter().find(|t| t["id"].as_str() == Some(task_id)))
        .map(task_facts);
    AppFacts {
        env_label,
        task,
        ip_per_task: ip_per_task(app),
    }
}

/// A `container` network (1.5+ `networks[].mode`), or 1.4's IP-per-task
/// `ipAddress` / Docker `USER` network.
fn ip_per_task(app: &Value) -> bool {
    let container_network = app
        .get("networks")
        .and_then(Value::as_array)
        .is_some_and(|ns| ns.iter().any(|n| n["mode"] == "container"));
    container_network
        || app.get("ipAddress").is_some_and(Value::is_object)
        || app.pointer("/container/docker/network") == Some(&Value::from("USER"))
}

/// The addresses a login of `task` may come from: its host's (resolved)
/// and, with IP-per-task networking only, the task's own.
pub fn task_addresses(app: &AppFacts, task: &TaskFacts, host: &[IpAddr]) -> Vec<IpAddr> {
    let mut addrs: Vec<IpAddr> = host.iter().map(|ip| ip.to_canonical()).collect();
    if app.ip_per_task {
        addrs.extend(task.ip_addresses.iter().map(|ip| ip.to_canonical()));
    }
    addrs
}

fn task_facts(t: &Value) -> TaskFacts {
    let s = |k: &str| t.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let time = |k: &str| {
        t.get(k)
            .and_then(Value::as_str)
            .and_then(|v| chrono::DateTime::parse_from_rfc3339(v).ok())
            .map(|d| d.timestamp_millis())
    };
    TaskFacts {
        app_id: s("appId"),
        state: s("state"),
        host: s("host"),
        ip_addresses: t
            .get("ipAddresses")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|ip| ip["ipAddress"].as_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default(),
        started_ms: time("startedAt").or_else(|| time("stagedAt")),
    }
}

/// An earlier login of the same task id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriorUse {
    pub at_ms: i64,
    pub addr: IpAddr,
}

/// Everything a login decision reads.
#[derive(Debug)]
pub struct LoginFacts<'a> {
    pub request: &'a LoginRequest,
    /// The environment whose desired state holds the claimed app.
    pub env: &'a str,
    /// `None`: Marathon has no such app.
    pub app: Option<&'a AppFacts>,
    pub now_ms: i64,
    pub caller: IpAddr,
    /// The task host's addresses (resolved) and the task's own.
    pub task_addrs: &'a [IpAddr],
    pub prior: Option<&'a PriorUse>,
    pub grace: Duration,
    pub check_address: bool,
}

/// Why a request is refused; each is counted by its [`Refusal::reason`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The body is not a login request.
    BadRequest(String),
    /// No app of that id in a known environment, or Marathon has none.
    UnknownApp,
    /// Marathon has the app but not that task.
    UnknownTask,
    /// The app is not pacer's in that environment (its `pacer.env` label).
    Unmanaged,
    /// The task is not staging, starting or running.
    TaskNotRunning(String),
    /// The task started longer ago than the grace window.
    GraceExpired { age_s: i64 },
    /// The caller's address is not the task's.
    AddressMismatch,
    /// The task id has logged in before.
    Replay,
    /// No `Authorization: Bearer` token.
    MissingToken,
    /// A token that is not ours.
    BadToken,
    /// A token past its expiry.
    ExpiredToken,
    /// Marathon no longer runs the token's task.
    TaskGone,
    /// The token is good but not for what was asked.
    OtherApp,
    /// Too many logins are asking Marathon now, or Marathon is not
    /// answering: try again (503).
    Busy(String),
    /// This address sent too many logins or renewals (429).
    RateLimited,
    /// No operator-given Marathon for the environment (503: the operator
    /// must set a flag).
    NoTrustedMarathon(String),
    /// The task, or the server, has as many watches waiting as it may (429).
    TooManyWatches,
    /// A login body not declared `application/json` (415).
    NotJson,
    /// A request a browser sent from another site.
    CrossSite(String),
}

impl Refusal {
    /// The `reason` label of `pacer_config_refusals_total` (camelCase).
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::BadRequest(_) => "badRequest",
            Refusal::UnknownApp => "unknownApp",
            Refusal::UnknownTask => "unknownTask",
            Refusal::Unmanaged => "unmanaged",
            Refusal::TaskNotRunning(_) => "taskNotRunning",
            Refusal::GraceExpired { .. } => "graceExpired",
            Refusal::AddressMismatch => "addressMismatch",
            Refusal::Replay => "replay",
            Refusal::MissingToken => "missingToken",
            Refusal::BadToken => "badToken",
            Refusal::ExpiredToken => "expiredToken",
            Refusal::TaskGone => "taskGone",
            Refusal::OtherApp => "otherApp",
            Refusal::Busy(_) => "busy",
            Refusal::RateLimited => "rateLimited",
            Refusal::NoTrustedMarathon(_) => "noTrustedMarathon",
            Refusal::TooManyWatches => "tooManyWatches",
            Refusal::NotJson => "notJson",
            Refusal::CrossSite(_) => "crossSite",
        }
    }

    /// Every reason, for metrics that show 0 before the first refusal.
    pub const REASONS: [&'static str; 19] = [
        "badRequest",
        "unknownApp",
        "unknownTask",
        "unmanaged",
        "taskNotRunning",
        "graceExpired",
        "addressMismatch",
        "replay",
        "missingToken",
        "badToken",
        "expiredToken",
        "taskGone",
        "otherApp",
        "busy",
        "rateLimited",
        "noTrustedMarathon",
        "tooManyWatches",
        "notJson",
        "crossSite",
    ];

    /// 400 for a malformed request, 401 for a missing or dead token, 403
    /// for a caller who is not who or where it says; 503 and 429 to try
    /// again later.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::BadRequest(_) => 400,
            Refusal::Busy(_) | Refusal::NoTrustedMarathon(_) => 503,
            Refusal::RateLimited | Refusal::TooManyWatches => 429,
            Refusal::NotJson => 415,
            Refusal::MissingToken
            | Refusal::BadToken
            | Refusal::ExpiredToken
            | Refusal::TaskGone => 401,
            _ => 403,
        }
    }

    /// The answer's `message`: what is wrong and what to do. Never a token.
    pub fn message(&self) -> String {
        match self {
            Refusal::BadRequest(why) => {
                format!("{why}; send {{\"taskId\": $MESOS_TASK_ID, \"appId\": $MARATHON_APP_ID}}")
            }
            Refusal::UnknownApp => {
                "no app of that id is deployed by pacer in a known environment".into()
            }
            Refusal::UnknownTask => "Marathon has no such task of that app".into(),
            Refusal::Unmanaged => {
                "the app in Marathon is not pacer's in its environment (its pacer.env label)".into()
            }
            Refusal::TaskNotRunning(state) => {
                format!("the task is {state}, not staging or running")
            }
            Refusal::GraceExpired { age_s } => format!(
                "the task started {age_s} s ago, past the login grace window: a task logs in once, as it starts; restart the task"
            ),
            Refusal::AddressMismatch => "the request does not come from the task's host".into(),
            Refusal::Replay => {
                "this task has logged in before; a task logs in once (renew its token instead)"
                    .into()
            }
            Refusal::MissingToken => {
                "send the token from POST /v1/login as `Authorization: Bearer <token>`".into()
            }
            Refusal::BadToken => "the token is not valid; log in again".into(),
            Refusal::ExpiredToken => {
                "the token has expired; renew tokens before they expire".into()
            }
            Refusal::TaskGone => "Marathon no longer runs the token's task".into(),
            Refusal::OtherApp => "the token is for another app's config".into(),
            Refusal::Busy(why) => format!("{why}; try again"),
            Refusal::NoTrustedMarathon(env) => format!(
                "the config server is disabled for environment {env}: no Marathon the operator vouches for; \
                 start pacer serve with --marathon URL or --config-server-marathon {env}=URL \
                 (pacer.yaml's marathon is not trusted for logins)"
            ),
            Refusal::NotJson => {
                "send the body as JSON, with `Content-Type: application/json`".into()
            }
            Refusal::CrossSite(why) => why.clone(),
            Refusal::TooManyWatches => format!(
                "a task watches its bundle on one connection ({} at most), and the server has its fill of watches; try again after Retry-After seconds",
                super::watches::PER_TASK
            ),
            Refusal::RateLimited => {
                "too many logins or renewals from this address; try again after Retry-After seconds"
                    .into()
            }
        }
    }
}

const LIVE_STATES: [&str; 3] = ["TASK_STAGING", "TASK_STARTING", "TASK_RUNNING"];

/// Whether a Mesos task state is one a task logs in or renews from.
pub fn is_live(state: &str) -> bool {
    LIVE_STATES.contains(&state)
}

/// The login decision. Checks run from what Marathon says to what the
/// caller does, so a refusal names the first thing wrong.
pub fn decide(f: &LoginFacts<'_>) -> Result<(), Refusal> {
    let app = f.app.ok_or(Refusal::UnknownApp)?;
    if app.env_label.as_deref() != Some(f.env) {
        return Err(Refusal::Unmanaged);
    }
    let task = app.task.as_ref().ok_or(Refusal::UnknownTask)?;
    if task.app_id != f.request.app_id {
        return Err(Refusal::UnknownTask);
    }
    if !is_live(&task.state) {
        return Err(Refusal::TaskNotRunning(task.state.clone()));
    }
    let Some(started) = task.started_ms else {
        // A live task always has one; without it the age is unknown.
        return Err(Refusal::GraceExpired { age_s: -1 });
    };
    let age_ms = f.now_ms.saturating_sub(started);
    if age_ms > i64::try_from(f.grace.as_millis()).unwrap_or(i64::MAX) {
        return Err(Refusal::GraceExpired {
            age_s: age_ms / 1000,
        });
    }
    if f.check_address && !f.task_addrs.contains(&f.caller.to_canonical()) {
        return Err(Refusal::AddressMismatch);
    }
    if f.prior.is_some() {
        return Err(Refusal::Replay);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TASK: &str = "dev_web.instance-1._app.1";

    fn app(state: &str, started: &str) -> AppFacts {
        app_facts(
            &json!({"id": "/dev/web", "labels": {"pacer.env": "dev"}, "tasks": [
                {"id": "other", "appId": "/dev/web", "state": "TASK_RUNNING", "host": "h"},
                {"id": TASK, "appId": "/dev/web", "state": state, "host": "agent-1",
                 "ipAddresses": [{"ipAddress": "10.0.0.1", "protocol": "IPv4"}, {"ipAddress": "junk"}],
                 "stagedAt": "2026-12-03T10:00:00.000Z", "startedAt": started}]}),
            TASK,
        )
    }

    fn request() -> LoginRequest {
        LoginRequest {
            task_id: TASK.into(),
            app_id: "/dev/web".into(),
        }
    }

    /// 10:00:30: 30 s after the task started at 10:00:00.
    const NOW: i64 = 1_796_292_030_000;

    fn check(
        app: Option<&AppFacts>,
        caller: &str,
        prior: Option<&PriorUse>,
    ) -> Result<(), Refusal> {
        let req = request();
        let addrs: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap(), "192.168.1.9".parse().unwrap()];
        decide(&LoginFacts {
            request: &req,
            env: "dev",
            app,
            now_ms: NOW,
            caller: caller.parse().unwrap(),
            task_addrs: &addrs,
            prior,
            grace: Duration::from_secs(120),
            check_address: true,
        })
    }

    #[test]
    fn facts_come_from_the_app_and_its_task() {
        let a = app("TASK_RUNNING", "2026-12-03T10:00:00.000Z");
        assert_eq!(a.env_label.as_deref(), Some("dev"));
        let t = a.task.unwrap();
        assert_eq!(t.host, "agent-1");
        assert_eq!(t.ip_addresses, vec!["10.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(t.started_ms, Some(NOW - 30_000));
        assert!(app_facts(&json!({"tasks": "junk"}), TASK).task.is_none());
    }

    #[test]
    fn a_fresh_running_task_on_its_host_logs_in_once() {
        let a = app("TASK_RUNNING", "2026-12-03T10:00:00.000Z");
        assert_eq!(check(Some(&a), "10.0.0.1", None), Ok(()));
        // A resolved host address, and the IPv4-mapped spelling of one.
        assert_eq!(check(Some(&a), "192.168.1.9", None), Ok(()));
        assert_eq!(check(Some(&a), "::ffff:10.0.0.1", None), Ok(()));
        let prior = PriorUse {
            at_ms: NOW - 1000,
            addr: "10.0.0.1".parse().unwrap(),
        };
        assert_eq!(
            check(Some(&a), "10.0.0.1", Some(&prior)),
            Err(Refusal::Replay)
        );
        // A staging task has no startedAt yet: its stagedAt counts.
        let staging = app("TASK_STAGING", "");
        assert_eq!(check(Some(&staging), "10.0.0.1", None), Ok(()));
    }

    #[test]
    fn each_check_refuses_on_its_own() {
        let good = app("TASK_RUNNING", "2026-12-03T10:00:00.000Z");
        assert_eq!(check(None, "10.0.0.1", None), Err(Refusal::UnknownApp));
        let mut unmanaged = good.clone();
        unmanaged.env_label = Some("prod".into());
        assert_eq!(
            check(Some(&unmanaged), "10.0.0.1", None),
            Err(Refusal::Unmanaged)
        );
        unmanaged.env_label = None;
        assert_eq!(
            check(Some(&unmanaged), "10.0.0.1", None),
            Err(Refusal::Unmanaged)
        );
        let forged = app_facts(&json!({"labels": {"pacer.env": "dev"}, "tasks": []}), TASK);
        assert_eq!(
            check(Some(&forged), "10.0.0.1", None),
            Err(Refusal::UnknownTask)
        );
        let mut other_app = good.clone();
        other_app.task.as_mut().unwrap().app_id = "/dev/api".into();
        assert_eq!(
            check(Some(&other_app), "10.0.0.1", None),
            Err(Refusal::UnknownTask)
        );
        let dead = app("TASK_KILLED", "2026-12-03T10:00:00.000Z");
        assert_eq!(
            check(Some(&dead), "10.0.0.1", None),
            Err(Refusal::TaskNotRunning("TASK_KILLED".into()))
        );
        let old = app("TASK_RUNNING", "2026-12-03T09:58:00.000Z");
        assert_eq!(
            check(Some(&old), "10.0.0.1", None),
            Err(Refusal::GraceExpired { age_s: 150 })
        );
        assert_eq!(
            check(Some(&good), "10.0.0.2", None),
            Err(Refusal::AddressMismatch)
        );
    }

    #[test]
    fn the_address_check_can_be_turned_off() {
        let a = app("TASK_RUNNING", "2026-12-03T10:00:00.000Z");
        let req = request();
        let f = LoginFacts {
            request: &req,
            env: "dev",
            app: Some(&a),
            now_ms: NOW,
            caller: "172.16.0.1".parse().unwrap(),
            task_addrs: &[],
            prior: None,
            grace: Duration::from_secs(120),
            check_address: false,
        };
        assert_eq!(decide(&f), Ok(()));
    }

    #[test]
    fn task_ids_name_their_app() {
        assert!(task_fits_app(TASK, "/dev/web"));
        assert!(task_fits_app(
            "dev_payments_ledger.5f1e",
            "/dev/payments/ledger"
        ));
        assert!(!task_fits_app(TASK, "/dev/api"));
        assert!(!task_fits_app("dev_webx.instance-1._app.1", "/dev/web"));
        assert!(!task_fits_app("dev_web.", "/dev/web"));
        assert!(!task_fits_app("dev_web", "/dev/web"));
    }

    #[test]
    fn ids_are_bounded_and_printable() {
        assert!(check_id("taskId", TASK).is_ok());
        assert!(check_id("appId", "/dev/payments/ledger").is_ok());
        assert!(check_id("taskId", "").is_err());
        assert!(check_id("taskId", "a\nb").is_err());
        assert!(check_id("taskId", "a b").is_err());
        assert!(check_id("taskId", &"a".repeat(MAX_ID_BYTES + 1)).is_err());
    }

    #[test]
    fn a_tasks_own_addresses_count_on_container_networks_only() {
        let host: Vec<IpAddr> = vec!["192.168.1.9".parse().unwrap()];
        let own: IpAddr = "10.0.0.1".parse().unwrap();
        for (networks, counts) in [
            (json!([{"mode": "container", "name": "dcos"}]), true),
            (json!([{"mode": "container/bridge"}]), false),
            (json!([{"mode": "host"}]), false),
            (json!(null), false),
        ] {
            let a = app_facts(
                &json!({"networks": networks, "tasks": [{"id": TASK, "appId": "/dev/web", "state": "TASK_RUNNING",
                    "host": "agent-1", "ipAddresses": [{"ipAddress": "10.0.0.1", "protocol": "IPv4"}]}]}),
                TASK,
            );
            let addrs = task_addresses(&a, a.task.as_ref().unwrap(), &host);
            assert_eq!(addrs.contains(&own), counts, "{networks}");
            assert!(addrs.contains(&host[0]));
        }
        // 1.4: IP-per-task is the app's ipAddress.
        let a = app_facts(&json!({"ipAddress": {"networkName": "dcos"}}), TASK);
        assert!(a.ip_per_task);
        let a = app_facts(&json!({"ipAddress": null}), TASK);
        assert!(!a.ip_per_task);
    }

    #[test]
    fn only_ids_of_the_apps_form_can_be_its_tasks() {
        assert!(task_fits_app(TASK, "/dev/web"));
        assert!(task_fits_app("dev_web.1f2e3d4c-aaaa", "/dev/web"));
        assert!(task_fits_app("pay_ledger_db.x", "/pay/ledger/db"));
        for (task, app) in [
            ("dev_api.instance-1._app.1", "/dev/web"),
            ("dev_webx.instance-1._app.1", "/dev/web"),
            ("dev_web.", "/dev/web"),
            ("dev_web", "/dev/web"),
            ("made-up-123", "/dev/web"),
            ("x.y", "/"),
        ] {
            assert!(!task_fits_app(task, app), "{task} of {app}");
        }
    }

    #[test]
    fn reasons_are_camel_case_and_statuses_401_or_403() {
        for r in [
            Refusal::Replay,
            Refusal::BadToken,
            Refusal::GraceExpired { age_s: 1 },
        ] {
            assert!(Refusal::REASONS.contains(&r.reason()));
            assert!(matches!(r.status(), 401 | 403));
            assert!(!r.message().is_empty());
        }
    }
}
