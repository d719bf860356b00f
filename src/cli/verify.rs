//! `pacer verify`: the signed-commit check of an environment's `verify:`
//! policy, run in CI. The trust list never comes from the commit being
//! checked: it is read from `--signers-from REV` (a trusted base) or from
//! `--signers FILE` outside the repo.

use super::args::{Format, FormatArgs, RepoArgs};
use super::exit;
use super::output::Problems;
use crate::render::{VerifyPolicy, verify_policies};
use crate::source::RepoLocation;
use crate::source::verify::{
    At, CommitCheck, MAX_RANGE_COMMITS, MAX_TRUST_BYTES, Mode, TrustList, verify_range,
};
use anyhow::{Context, bail};
use clap::Args;
use git2::{Oid, Repository};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// The commit to check (the newest of the range in mode all).
    #[arg(long, value_name = "REV", default_value = "HEAD")]
    pub rev: String,
    /// Check this environment's `verify:` policy. Default: every
    /// environment that has one.
    #[arg(long, env = "PACER_ENV", value_name = "ENV")]
    pub env: Option<String>,
    /// The trust list, a file outside the repo (allowed_signers lines and
    /// armored OpenPGP keys); replaces the policy's `signers`.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "signers_from",
        help_heading = "Trust"
    )]
    pub signers: Option<PathBuf>,
    /// A trusted base revision (e.g. the last deployed commit): its
    /// pacer.yaml policy and trust list are used, and in mode all the
    /// range starts after it.
    #[arg(long, value_name = "REV", help_heading = "Trust")]
    pub signers_from: Option<String>,
    /// Mode all: check the commits after this one (default: --signers-from).
    #[arg(long, value_name = "REV")]
    pub since: Option<String>,
    /// Override the policy's mode.
    #[arg(long, value_enum, value_name = "MODE")]
    pub mode: Option<Mode>,
    #[command(flatten)]
    pub format: FormatArgs,
}

/// One check: the environments that share a policy, and what it found.
struct Check {
    envs: Vec<String>,
    mode: Mode,
    signers: String,
    commits: Vec<CommitCheck>,
}

fn resolve(repo: &Repository, rev: &str) -> anyhow::Result<Oid> {
    let obj = repo
        .revparse_single(rev)
        .with_context(|| format!("revision `{rev}` not found"))?;
    Ok(obj
        .peel_to_commit()
        .with_context(|| format!("`{rev}` is not a commit"))?
        .id())
}

pub(crate) fn read_file(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let f = std::fs::File::open(path)
        .with_context(|| format!("opening the trust list `{}`", path.display()))?;
    let mut bytes = Vec::new();
    // One byte over the budget is enough for the parser to refuse it.
    f.take(MAX_TRUST_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading `{}`", path.display()))?;
    Ok(bytes)
}

pub(crate) fn parse_trust(name: &str, bytes: &[u8]) -> anyhow::Result<TrustList> {
    let list = TrustList::parse(name, bytes).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("the trust list cannot be used:\n  {}", lines.join("\n  "))
    })?;
    for note in &list.notes {
        eprintln!("note: {note}");
    }
    Ok(list)
}

pub fn verify_cmd(a: VerifyArgs) -> anyhow::Result<u8> {
    let loc = RepoLocation::discover(&a.repo.repo)
        .with_context(|| format!("opening the config repo `{}`", a.repo.repo.display()))?;
    let git = loc.open_git()?;
    let head = resolve(&git, &a.rev)?;
    let base = match &a.signers_from {
        Some(r) => Some((resolve(&git, r)?, r.as_str())),
        None => None,
    };
    let since = match (&a.since, base) {
        (Some(r), _) => Some(resolve(&git, r)?),
        (None, Some((b, _))) => Some(b),
        (None, None) => None,
    };
    // The policy is the base's too: the checked commit must not be able
    // to switch its own check off.
    let policy_rev = base.map(|(_, r)| r).unwrap_or(&a.rev);
    let policy_snap = loc.at_rev(policy_rev)?;
    let policies =
        verify_policies(&policy_snap).map_err(|d| Problems::new(d, "nothing was verified"))?;
    let mut selected: Vec<(String, Option<VerifyPolicy>)> = match &a.env {
        Some(env) => {
            let p = policies.get(env).cloned();
            if p.is_none() && a.signers.is_none() {
                bail!(
                    "environment `{env}` has no `verify:` policy in pacer.yaml at `{policy_rev}`; give --signers FILE to check anyway"
                );
            }
            vec![(env.clone(), p)]
        }
        None => policies.into_iter().map(|(e, p)| (e, Some(p))).collect(),
    };
    if selected.is_empty() {
        match &a.signers {
            Some(_) => selected.push(("(--signers)".into(), None)),
            None => bail!(
                "no environment has a `verify:` policy in pacer.yaml at `{policy_rev}`; give --signers FILE"
            ),
        }
    }
    // Environments with the same policy are checked once.
    let mut groups: BTreeMap<(Mode, String), Vec<String>> = BTreeMap::new();
    for (env, p) in selected {
        let mode = a.mode.or(p.as_ref().map(|p| p.mode)).unwrap_or(Mode::Head);
        let signers = match (&a.signers, &p) {
            (Some(f), _) => f.display().to_string(),
            (None, Some(p)) => p.signers.trim_start_matches("./").to_string(),
            (None, None) => unreachable!("an environment without a policy needs --signers"),
        };
        groups.entry((mode, signers)).or_default().push(env);
    }
    let mut checks = Vec::new();
    for ((mode, signers), envs) in groups {
        let trust = match (&a.signers, base) {
            (Some(f), _) => parse_trust(&signers, &read_file(f)?)?,
            (None, Some((_, r))) => {
                let snap = loc.at_rev(r)?;
                let bytes = snap
                    .read_bytes(&signers)
                    .with_context(|| format!("reading the trust list `{signers}` at `{r}`"))?;
                parse_trust(&signers, &bytes)?
            }
            (None, None) => bail!(
                "give --signers-from REV (a trusted base, e.g. the last deployed commit) or --signers FILE: \
                 the trust list at --rev could have been edited by the very commit it checks"
            ),
        };
        if mode == Mode::All && since.is_none() {
            bail!(
                "mode `all` checks every commit since a base: give --since REV or --signers-from REV"
            );
        }
        let commits = verify_range(
            &git,
            mode,
            since,
            head,
            &trust,
            At::CommitTime,
            MAX_RANGE_COMMITS,
        )?;
        let signers = match base {
            Some((_, r)) if a.signers.is_none() => format!("{signers} at {r}"),
            _ => signers,
        };
        checks.push(Check {
            envs,
            mode,
            signers,
            commits,
        });
    }
    let ok = checks
        .iter()
        .all(|c| c.commits.iter().all(|c| c.result.is_ok()));
    print(a.format.format, &checks, ok)?;
    Ok(if ok { exit::OK } else { exit::ERROR })
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Head => "head",
        Mode::All => "all",
    }
}

fn print(format: Format, checks: &[Check], ok: bool) -> anyhow::Result<()> {
    let refused: usize = checks
        .iter()
        .flat_map(|c| &c.commits)
        .filter(|c| c.result.is_err())
        .count();
    let total: usize = checks.iter().map(|c| c.commits.len()).sum();
    match format {
        Format::Json => {
            let body = json!({
                "verified": ok,
                "checks": checks.iter().map(|c| json!({
                    "environments": c.envs,
                    "mode": mode_name(c.mode),
                    "signers": c.signers,
                    "commits": c.commits,
                })).collect::<Vec<_>>(),
            });
            outln!("{}", serde_json::to_string_pretty(&body)?)?;
        }
        Format::Text => {
            for c in checks {
                outln!(
                    "{}: mode {}, trust list {}",
                    c.envs.join(", "),
                    mode_name(c.mode),
                    c.signers
                )?;
                for cc in &c.commits {
                    let short = &cc.commit[..cc.commit.len().min(12)];
                    match &cc.result {
                        Ok(v) => outln!(
                            "  ok       {short} signed by {} ({:?} {}): {}",
                            v.principal,
                            v.kind,
                            v.fingerprint,
                            cc.summary
                        )?,
                        Err(r) => {
                            outln!("  REFUSED  {short} by {}: {r}: {}", cc.author, cc.summary)?
                        }
                    }
                }
            }
            outln!(
                "{} of {total} commits verified, {refused} refused",
                total - refused
            )?;
        }
        Format::Markdown => {
            let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
            let mut out = format!(
                "### pacer verify\n\n**{}**: {} of {total} commits verified\n",
                if ok { "ok" } else { "refused" },
                total - refused
            );
            for c in checks {
                out.push_str(&format!(
                    "\n{} (mode {}, trust list `{}`)\n\n| commit | author | result |\n|---|---|---|\n",
                    cell(&c.envs.join(", ")),
                    mode_name(c.mode),
                    cell(&c.signers)
                ));
                for cc in &c.commits {
                    let result = match &cc.result {
                        Ok(v) => format!("signed by {} (`{}`)", v.principal, v.fingerprint),
                        Err(r) => format!("**refused**: {r}"),
                    };
                    out.push_str(&format!(
                        "| `{}` | {} | {} |\n",
                        &cc.commit[..cc.commit.len().min(12)],
                        cell(&cc.author),
                        cell(&result)
                    ));
                }
            }
            out!("{out}")?;
        }
    }
    Ok(())
}
