//! Rendering an app's config files: each template under
//! `apps/<app>/files/`, within the app's budgets, noting the secrets it read.

use super::app::{AppContext, Pass};
use super::*;

impl AppContext<'_> {
    /// Renders the app's config files, with the names of the secrets each read.
    #[allow(clippy::type_complexity)]
    pub(super) fn render_files(
        &self,
        pass: &Pass<'_>,
        diags: &mut Diagnostics,
    ) -> (
        BTreeMap<String, RenderedFile>,
        BTreeMap<String, BTreeSet<String>>,
    ) {
        let mut out = BTreeMap::new();
        let mut used = BTreeMap::new();
        let Value::Object(specs) = self.merged("files") else {
            return (out, used);
        };
        for (name, spec) in specs {
            let ptr = format!("/files/{}", schema::escape(&name));
            let source = spec.get("source").and_then(Value::as_str).unwrap_or(&name);
            // Names are printed in diffs and plans: no terminal escapes.
            if name.chars().chain(source.chars()).any(char::is_control) {
                diags.push(
                    self.diag_at(
                        &ptr,
                        Target::Key,
                        format!(
                            "file {}: its name or source holds a control character",
                            quote_path(&name)
                        ),
                    )
                    .with_hint("name files with printable characters only"),
                );
                continue;
            }
            let actions = match file_actions::parse(&spec) {
                Ok(a) => a,
                Err(e) => {
                    diags.push(
                        self.diag_at(
                            &format!("{ptr}/{}", e.field),
                            Target::Value,
                            format!("file `{name}`: `{}` {}", e.field, e.message),
                        )
                        .with_hint(e.hint),
                    );
                    continue;
                }
            };
            let env_path = format!("env:{name}");
            if actions.env {
                if spec.get("path").is_some_and(|p| !p.is_null()) {
                    diags.push(
                        self.diag_at(&format!("{ptr}/path"), Target::Key, format!("file `{name}`: an env entry is not written to disk and has no `path`"))
                            .with_hint("remove `path:`, or remove `env: true` to deliver a file"),
                    );
                    continue;
                }
                if spec.get("reload").and_then(Value::as_str) == Some("hot") {
                    diags.push(
                        self.diag_at(&format!("{ptr}/reload"), Target::Value, format!("file `{name}`: an env entry can't be `hot`: a running app's environment can't change"))
                            .with_hint("remove `reload: hot`: a change rolls the tasks, which start with the new variables"),
                    );
                    continue;
                }
            }
            let path = if actions.env {
                env_path
            } else {
                let Some(path) = spec.get("path").and_then(Value::as_str) else {
                    diags.push(
                        self.diag_at(&ptr, Target::Key, format!("file `{name}` has no `path`"))
                            .with_hint("set `path:` to where the agent should write it in the task, e.g. /etc/app/config.yaml (or `env: true` for environment variables)"),
                    );
                    continue;
                };
                match checks::normalise_task_path(path) {
                    Ok(p) => p,
                    Err(why) => {
                        diags.push(
                            self.diag_at(&format!("{ptr}/path"), Target::Value, format!("file `{name}`: {why}"))
                                .with_hint("give the absolute path the agent writes to inside the task, without `..`, e.g. /etc/app/config.yaml"),
                        );
                        continue;
                    }
                }
            };
            let reload = match spec.get("reload").and_then(Value::as_str) {
                Some("hot") => Reload::Hot,
                _ => Reload::Restart,
            };
            let templated = spec
                .get("template")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            let file = format!("apps/{}/files/{source}", self.app);
            if source.split('/').any(|s| s == "..") || source.starts_with('/') {
                diags.push(self.diag_at(
                    &format!("{ptr}/source"),
                    Target::Value,
                    format!(
                        "file `{name}`: source `{}` must stay inside apps/{}/files/",
                        quote_path(source),
                        self.app
                    ),
                ));
                continue;
            }
            let cached = self.sources.borrow().get(&file).cloned();
            let read = match cached {
                Some(b) => Ok(b),
                None => self.repo.snapshot.read_bytes(&file).inspect(|b| {
                    self.sources.borrow_mut().insert(file.clone(), b.clone());
                }),
            };
            let bytes = match read {
                Ok(b) => b,
                Err(source::Error::NotFound { .. }) => {
                    diags.push(
                        self.diag_at(
                            &format!("{ptr}/source"),
                            Target::Value,
                            format!("file `{name}`: `{}` does not exist", quote_path(&file)),
                        )
                        .with_hint(format!(
                            "add the template at `{}`, or set `source:` to its name",
                            quote_path(&file)
                        )),
                    );
                    continue;
                }
                Err(e) => {
                    diags.push(source_diag(&file, &e));
                    continue;
                }
            };
            pass.secrets.take_used();
            pass.services.set_site(match reload {
                Reload::Hot => services::Site::HotFile,
                Reload::Restart => services::Site::RestartFile,
            });
            let content = if templated {
                let text = match String::from_utf8(bytes) {
                    Ok(t) => t,
                    Err(_) => match self.repo.snapshot.read_text(&file) {
                        Err(e) => {
                            diags.push(source_diag(&file, &e));
                            continue;
                        }
                        Ok(t) => t,
                    },
                };
                if self.past_deadline(diags) {
                    continue;
                }
                let reads = pass.secrets.reads();
                let templates = &self.repo.templates;
                match templates.render_text_within(
                    &file,
                    &text,
                    &pass.ctx,
                    self.left(),
                    &self.fuel,
                    Some(self.compiled),
                ) {
                    Ok(s) => s.into_bytes(),
                    // Placeholders where a template needs the real value:
                    // show the template itself.
                    Err(_) if pass.shown_ctx.is_none() && pass.secrets.is_placeholders() => {
                        text.into_bytes()
                    }
                    Err(e) => {
                        let e = self.template_error(pass, reads, e, |ctx| {
                            templates
                                .render_text_within(
                                    &file,
                                    &text,
                                    ctx,
                                    usize::MAX,
                                    &std::cell::Cell::new(0),
                                    None,
                                )
                                .map(|_| ())
                        });
                        diags.push(
                            Diagnostic::at(&file, e.line, e.column.unwrap_or(1), format!("template error: {}", e.message))
                                .with_hint(e.hint.unwrap_or_else(|| "templates see `env`, `app`, `id`, `group`, `values.*`, `secrets.*` and, in files with `reload: hot`, `service()`; set `template: false` to deliver the file as it is".into())),
                        );
                        continue;
                    }
                }
            } else {
                bytes
            };
            if actions.env
                && let Err((line, why)) = file_actions::parse_env(&content)
            {
                diags.push(
                    Diagnostic::at(&file, line, 1, format!("env entry `{name}`, rendered line {line}: {why}"))
                        .with_hint("write one `NAME=value` a line; names are letters, digits and _, not starting with a digit"),
                );
                continue;
            }
            used.insert(name.clone(), pass.secrets.take_used());
            self.spend(content.len());
            if self.spent.get() > self.repo.budgets.app_bytes {
                diags.push(
                    self.diag_at(&ptr, Target::Key, format!("file `{name}` takes the app over its {} limit for all its rendered files and fields", budget::bytes(self.repo.budgets.app_bytes)))
                        .with_hint("keep large artifacts out of the config repo, or split the app"),
                );
                continue;
            }
            out.insert(
                name.clone(),
                RenderedFile {
                    path,
                    reload,
                    digest: Digest::of(&content),
                    content,
                    actions,
                },
            );
        }
        (out, used)
    }
}
