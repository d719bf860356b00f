//! End-to-end tests: the real `pacer` binary against real Git repos and the simulator.

/// TestRepo (a Git repo in a temp dir) and the pacer runner.
mod util;

/// `validate` and `render` on the example repo.
mod validate;

/// The bad-input corpus in tests/fixtures/bad: every case fails with its file:line.
mod bad_input;

/// `diff` between real Git revisions: classes, formats, exit codes, secrets.
mod diff;

/// The command line without Marathon: exit codes, formats, a closed stdout, completions, man.
mod cli;

/// plan, apply, retry, status and history against the simulator: writes only when they should.
mod cli_live;

/// `pacer demo` from a copied binary, prod left to a human, commits reported.
mod cli_demo;

/// Sealed secrets through a whole run: only the owning task sees one.
mod sealed_e2e;

/// Several replicas on a real ZooKeeper: one writer, failover, fencing.
mod ha;

/// `pacer serve`'s signed-commit gate with real SSH and OpenPGP signatures.
mod verify_gate;

/// The README's commands still work.
mod readme;

/// `pacer sim` against Marathon's own examples, SEMANTICS.md's rules, content negotiation and real clients (a library and a deploy CLI).
mod sim;

/// `marathon::client` against the in-process simulator: status codes, retries, locks, timeouts, auth, events.
mod marathon_client;

/// `observe` against the in-process simulator: PUT then GET never diffs (proptest, the example repo); real changes do.
mod observe;

/// `source::remote::Mirror` against real remotes over file:// and git daemon; the deploy/ app definition.
mod remote;

/// `source::remote::Mirror` against real servers it must authenticate to and verify: https with a token, ssh with a deploy key.
mod remote_auth;

/// `pacer serve` end to end: git daemon, the real sim, a signed webhook, then `plan` and `history`.
mod reconcile_e2e;

/// `pacer serve` under Marathon faults: rollbacks, flaky/restarting/dead/answer-losing Marathon, kills, drift.
mod reconcile_faults;

/// `pacer serve` under repo faults: broken commits, a lost or hanging Git server, rewinds, refused records, secrets.
mod reconcile_faults_repo;

/// apply then plan in-process: always in sync (proptest); a failed definition stays failed while Marathon can't tell.
mod reconcile_inprocess;

/// plan, apply and history semantics: a commit reaches a hand-edited app, mass deletes are held, no-op writes, progress, history credit.
mod plan_e2e;

/// `pacer serve` against hostile input: a template that never ends, a broken first commit, an undone rewind, an outage behind credentials, slow HTTP clients.
mod reconcile_hardening;

/// The module layering: the allowed imports of each top-level module, no cycles.
mod layering;

/// The daemon's writes paused and resumed while its HTTP side serves.
mod reconcile_writer;

/// The config server in `pacer serve`: task logins checked with Marathon, tokens, bundles, watches.
mod delivery;
/// The config server's limits: rate limits, watch caps, browsers refused, tokens bound to their address.
mod delivery_limits;
/// The HTTP listeners' budgets (a client that stops reading, an idle keep-alive) and the daemon's Host guard on writes.
mod http_budgets;
/// `pacer serve` against hostile requests: tampered, unsigned, oversized and flooding webhooks, the API without its tokens, files outside the bundle, a header forged through a label.
mod security;

/// `pacer agent` against the real daemon: files written, the app started and reloaded on a hot change.
mod agent;
/// A hot change followed to the tasks: agents report, the status says delivering, delivered or failed, the history records it.
mod delivery_status;

/// Live endpoints in templates: a moved task reaches the dependent file with no deployment; holds; rolling restarts; a broken stream.
mod endpoints;

/// Signed commits: `pacer verify` on commits signed by ssh-keygen and gpg keys; tampered, unsigned, untrusted, merges, mode all.
mod verify;

/// Secrets sealed in Git, both ways against the real `sops` binary: edit, rotate, wrong keys, tampering, and no output but `secret show` prints one.
mod secrets;

/// The web dashboard over HTTP.
mod dashboard;

/// The dashboard in a real headless Chromium.
mod dashboard_browser;
