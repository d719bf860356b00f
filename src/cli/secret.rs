//! `pacer secret`: seal, edit, re-seal and show the secrets of the repo's
//! YAML files, in sops' format. The identities come from the environment
//! (read here, at the edge); everything else is `crate::sops`.

use super::args::{Format, FormatArgs, RepoArgs};
use super::exit;
use crate::render::{self, Scope, SecretKeys};
use crate::sops::{self, Identities, IdentitySources, Rules};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct SecretArgs {
    #[command(subcommand)]
    pub command: SecretCommand,
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Seal a file's `secrets` in place, for the age recipients its
    /// .sops.yaml rule names (or --age). Comments and formatting stay.
    Encrypt(EncryptArgs),
    /// Edit a sealed file's plaintext in $EDITOR, then seal it again.
    ///
    /// Keeps the file's comments, key order and formatting, and re-seals
    /// only the values that changed: the others keep their ciphertext, so
    /// unrelated edits don't conflict in Git.
    Edit(FileArgs),
    /// Seal files again under a new data key, for the recipients their
    /// .sops.yaml rule names now (after adding or removing a key).
    Rotate(RotateArgs),
    /// Print one app's merged, decrypted secrets in one environment.
    ///
    /// The only command that prints a secret's value: for whoever holds
    /// the environment's key.
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub struct FileArgs {
    /// The YAML file (an environment file, an app.yaml or an overlay).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct EncryptArgs {
    /// The YAML file (an environment file, an app.yaml or an overlay).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Seal for this age recipient (repeatable) instead of the .sops.yaml rule's.
    #[arg(long = "age", value_name = "RECIPIENT")]
    pub age: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The sealed YAML files.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// The environment.
    #[arg(long, env = "PACER_ENV", value_name = "ENV")]
    pub env: String,
    /// The app (its path under apps/).
    #[arg(long, value_name = "APP")]
    pub app: String,
    /// Read a Git revision instead of the working tree.
    #[arg(long, value_name = "REV", help_heading = "Source")]
    pub rev: Option<String>,
    #[command(flatten)]
    pub format: FormatArgs,
}

pub fn run(a: SecretArgs) -> anyhow::Result<u8> {
    match a.command {
        SecretCommand::Encrypt(a) => encrypt(a),
        SecretCommand::Edit(a) => edit(a),
        SecretCommand::Rotate(a) => rotate(a),
        SecretCommand::Show(a) => show(a),
    }
}

/// The identities of the environment; an error names what was looked at.
pub fn identities() -> anyhow::Result<Identities> {
    Identities::load(&IdentitySources::from_env()).map_err(anyhow::Error::msg)
}

/// The nearest `.sops.yaml` at or above `file`'s directory, as sops looks,
/// and `file`'s path relative to it.
fn rules_for(file: &Path) -> anyhow::Result<Option<(Rules, String, PathBuf)>> {
    let abs = std::path::absolute(file)?;
    let mut dir = abs.parent();
    while let Some(d) = dir {
        let candidate = d.join(sops::rules::RULES_FILE);
        if candidate.is_file() {
            let text = std::fs::read_to_string(&candidate)?;
            let rules =
                Rules::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", candidate.display()))?;
            let rel = abs
                .strip_prefix(d)
                .unwrap_or(&abs)
                .to_string_lossy()
                .replace('\\', "/");
            return Ok(Some((rules, rel, candidate)));
        }
        dir = d.parent();
    }
    Ok(None)
}

/// The recipients `file` is sealed for by its rule.
fn rule_recipients(file: &Path) -> anyhow::Result<Option<Vec<String>>> {
    let Some((rules, rel, at)) = rules_for(file)? else {
        return Ok(None);
    };
    let Some(rule) = rules.for_path(&rel) else {
        bail!(
            "no creation rule of {} matches `{rel}`: add one that names its recipients",
            at.display()
        );
    };
    Ok(Some(
        rule.pacer_recipients()
            .map_err(|e| anyhow::anyhow!("{}: {e}", at.display()))?
            .to_vec(),
    ))
}

fn read(file: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("reading `{}`", file.display()))
}

/// Replaces `file` whole or not at all, keeping its permissions.
fn write(file: &Path, text: &str) -> anyhow::Result<()> {
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, text.as_bytes())?;
    if let Ok(meta) = std::fs::metadata(file) {
        let _ = std::fs::set_permissions(tmp.path(), meta.permissions());
    }
    tmp.persist(file)
        .with_context(|| format!("writing `{}`", file.display()))?;
    Ok(())
}

fn sops_err(file: &Path, e: sops::Error) -> anyhow::Error {
    anyhow::anyhow!("{}: {e}", file.display())
}

fn encrypt(a: EncryptArgs) -> anyhow::Result<u8> {
    let text = read(&a.file)?;
    let recipients = if a.age.is_empty() {
        rule_recipients(&a.file)?.with_context(|| {
            format!(
                "no .sops.yaml above `{}` names its recipients: add one, or give --age RECIPIENT",
                a.file.display()
            )
        })?
    } else {
        a.age.clone()
    };
    let sealed = sops::encrypt(
        &text,
        &recipients,
        sops::rules::PACER_REGEX,
        chrono::Utc::now(),
    )
    .map_err(|e| sops_err(&a.file, e))?;
    write(&a.file, &sealed)?;
    eprintln!(
        "sealed `{}` for {}",
        a.file.display(),
        recipients.join(", ")
    );
    Ok(exit::OK)
}

fn open(file: &Path, ids: &Identities) -> anyhow::Result<(String, sops::Opened)> {
    let text = read(file)?;
    let opened = sops::file::open(&text, ids)
        .map_err(|e| sops_err(file, e))?
        .with_context(|| {
            format!(
                "`{}` is not sealed: use `pacer secret encrypt`",
                file.display()
            )
        })?;
    Ok((text, opened))
}

fn edit(a: FileArgs) -> anyhow::Result<u8> {
    let ids = identities()?;
    let (text, opened) = open(&a.file, &ids)?;
    if let Ok(Some(want)) = rule_recipients(&a.file) {
        let mut have = opened.meta.recipients();
        let mut want = want;
        have.sort();
        want.sort();
        if have != want {
            eprintln!(
                "note: `{}` is sealed for other recipients than its .sops.yaml rule names; run `pacer secret rotate` after this edit",
                a.file.display()
            );
        }
    }
    let view = opened.view(&text);
    // The plaintext lives on disk only while the editor runs: in a private
    // directory, removed however this ends.
    let dir = tempfile::Builder::new().prefix("pacer-secret-").tempdir()?;
    let name = a.file.file_name().unwrap_or_default();
    let tmp = dir.path().join(name);
    std::fs::write(&tmp, &view)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    }
    let editor = std::env::var("VISUAL")
        .ok()
        .filter(|v| !v.is_empty())
        .or_else(|| std::env::var("EDITOR").ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "vi".into());
    let mut argv = shlex::split(&editor)
        .filter(|v| !v.is_empty())
        .with_context(|| format!("cannot split the editor command `{editor}`"))?;
    let program = argv.remove(0);
    let status = std::process::Command::new(&program)
        .args(argv)
        .arg(&tmp)
        .status()
        .with_context(|| format!("running the editor `{program}`"))?;
    if !status.success() {
        bail!(
            "the editor exited with {status}: `{}` is unchanged",
            a.file.display()
        );
    }
    let edited = std::fs::read_to_string(&tmp)?;
    drop(dir);
    if edited == view {
        eprintln!("no change: `{}` is unchanged", a.file.display());
        return Ok(exit::OK);
    }
    let sealed = opened
        .reseal(&edited, chrono::Utc::now())
        .map_err(|e| anyhow::anyhow!("the edit was not saved: {}: {e}", a.file.display()))?;
    write(&a.file, &sealed)?;
    eprintln!("sealed `{}` again", a.file.display());
    Ok(exit::OK)
}

fn rotate(a: RotateArgs) -> anyhow::Result<u8> {
    let ids = identities()?;
    for file in &a.files {
        let (text, opened) = open(file, &ids)?;
        let recipients = rule_recipients(file)?.unwrap_or_else(|| opened.meta.recipients());
        let sealed = sops::rotate(&opened, &text, &recipients, chrono::Utc::now())
            .map_err(|e| sops_err(file, e))?;
        write(file, &sealed)?;
        eprintln!(
            "sealed `{}` under a new data key for {}",
            file.display(),
            recipients.join(", ")
        );
    }
    Ok(exit::OK)
}

fn show(a: ShowArgs) -> anyhow::Result<u8> {
    let ids = identities()?;
    let loc = crate::source::RepoLocation::discover(&a.repo.repo)
        .with_context(|| format!("opening the config repo `{}`", a.repo.repo.display()))?;
    let snap = std::sync::Arc::new(match a.rev.as_deref() {
        Some(r) => loc.at_rev(r)?,
        None => loc.working_tree()?,
    });
    let scope = Scope {
        envs: Some([a.env.clone()].into()),
        apps: Some([a.app.clone()].into()),
    };
    let keys = SecretKeys::new(ids, false);
    let desired = match render::render_keyed(snap, &scope, &render::Budgets::default(), None, &keys)
    {
        Ok(d) => d,
        Err(diags) => {
            for d in &diags {
                eprintln!("{d}");
            }
            bail!("`{}` in `{}` did not render", a.app, a.env);
        }
    };
    let Some(app) = desired.envs.get(&a.env).and_then(|e| e.apps.get(&a.app)) else {
        bail!("app `{}` does not run in `{}`", a.app, a.env);
    };
    let values: Vec<(&String, &String)> =
        app.secrets.iter().map(|(n, s)| (n, s.expose())).collect();
    let out = match a.format.format {
        Format::Json => {
            let m: serde_json::Map<String, serde_json::Value> = values
                .iter()
                .map(|(n, v)| ((*n).clone(), serde_json::Value::String((*v).clone())))
                .collect();
            format!("{}\n", serde_json::to_string_pretty(&m)?)
        }
        Format::Text | Format::Markdown => {
            let body: String = values
                .iter()
                .map(|(n, v)| format!("{n}: {}\n", serde_json::to_string(v).unwrap_or_default()))
                .collect();
            if a.format.format == Format::Markdown {
                format!("```yaml\n{body}```\n")
            } else {
                body
            }
        }
    };
    out!("{out}")?;
    Ok(exit::OK)
}
