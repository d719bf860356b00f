//! Rendering one app in one environment: merging its layers, expanding
//! its templates (within the repo's budgets) and checking the result.

use super::secrets::{SecretsObject, Shown};
use super::services::{ServiceUse, Site};
use super::*;
use std::cell::Cell;

pub(super) struct AppContext<'a> {
    pub(super) repo: &'a Repo,
    pub(super) settings: &'a EnvSettings,
    pub(super) app: &'a str,
    pub(super) id: &'a str,
    pub(super) layers: &'a [&'a Layer],
    /// Bytes of template output and files so far, against `Budgets::app_bytes`.
    pub(super) spent: Cell<usize>,
    /// Template fuel used so far, against `Budgets::app_fuel`.
    pub(super) fuel: Cell<u64>,
    /// Config-file sources read so far, by path: shared by the app's
    /// environments, so each is read from Git once.
    pub(super) sources: &'a std::cell::RefCell<BTreeMap<String, Vec<u8>>>,
    /// Templates compiled so far, shared by the app's environments.
    pub(super) compiled: &'a template::TemplateCache,
}

impl AppContext<'_> {
    /// Output bytes the app may still produce.
    pub(super) fn left(&self) -> usize {
        self.repo.budgets.app_bytes.saturating_sub(self.spent.get())
    }

    /// Whether the app may not render another template: the whole render
    /// passed its deadline, or the app's templates used up its fuel. Says
    /// why. Checked before every template: each is bounded by its own fuel,
    /// but an app may hold thousands.
    pub(super) fn past_deadline(&self, diags: &mut Diagnostics) -> bool {
        let budgets = &self.repo.budgets;
        let late = self
            .repo
            .deadline
            .is_some_and(|d| std::time::Instant::now() >= d);
        let spent = self.fuel.get() > budgets.app_fuel;
        if !late && !spent {
            return false;
        }
        let Some(base) = self.layers.iter().find(|l| l.file.ends_with("/app.yaml")) else {
            return true;
        };
        let d = if late {
            let secs = budgets.deadline.unwrap_or_default().as_secs();
            Diagnostic::file(&base.file, format!("app `{}` in `{}` was not rendered: the whole render passed its deadline of {secs} s", self.app, self.settings.name))
                .with_hint("simplify the templates of this app and those rendered before it")
        } else {
            Diagnostic::file(&base.file, format!("app `{}` in `{}`: its templates used more than {} steps together (their budget of time and memory)", self.app, self.settings.name, budgets.app_fuel))
                .with_hint("simplify the app's templates: fewer loops, fewer iterations")
        };
        diags.push(d);
        true
    }

    pub(super) fn spend(&self, n: usize) {
        self.spent.set(self.spent.get().saturating_add(n));
    }
    /// The layer that set the value at `pointer` (the topmost one that has
    /// it or, failing that, its nearest ancestor), and the diagnostic there.
    pub(super) fn diag_at(
        &self,
        pointer: &str,
        target: Target,
        message: impl Into<String>,
    ) -> Diagnostic {
        let mut probe = pointer.to_string();
        loop {
            if let Some(layer) = self.layers.iter().rev().find(|l| l.get(&probe).is_some()) {
                return layer.diag(pointer, target, message);
            }
            match probe.rsplit_once('/') {
                Some((parent, _)) => probe = parent.to_string(),
                None => break,
            }
        }
        // The base always exists; point at it.
        let base = self
            .layers
            .iter()
            .find(|l| l.file.ends_with("/app.yaml"))
            .unwrap_or(&self.layers[0]);
        Diagnostic::file(&base.file, message)
    }

    pub(super) fn merged(&self, key: &str) -> Value {
        let mut out = Value::Object(Map::new());
        for l in self.layers {
            if let Some(v) = l.data.get(key) {
                merge::merge(&mut out, v);
            }
        }
        out
    }

    /// The app's secrets, as strings; anything else is an error. A layer
    /// whose sealed secrets can't be opened fails the app.
    fn secrets(&self, diags: &mut Diagnostics) -> Vec<(String, Secret<String>)> {
        for l in self.layers {
            if let Some(p) = &l.sealing.problem {
                diags.push(p.clone());
            }
        }
        let mut secrets = Vec::new();
        if let Value::Object(m) = self.merged("secrets") {
            for (name, v) in m {
                match v {
                    Value::String(s) => secrets.push((name, Secret::new(s))),
                    _ => diags.push(
                        self.diag_at(
                            &format!("/secrets/{}", schema::escape(&name)),
                            Target::Value,
                            format!("secret `{name}` is not a string"),
                        )
                        .with_hint("give the value as a string (sealed with sops or not)"),
                    ),
                }
            }
        }
        secrets
    }

    /// The secrets whose values are placeholders: the topmost layer that
    /// sets each could not be opened.
    fn unreadable(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for l in self.layers.iter() {
            let Some(Value::Object(m)) = l.get("/secrets") else {
                continue;
            };
            for name in m.keys() {
                if l.sealing.unreadable.contains(name) {
                    out.insert(name.clone());
                } else {
                    out.remove(name);
                }
            }
        }
        out
    }

    /// `secretsInMarathon`, the last layer that sets it.
    fn secrets_in_marathon(&self) -> bool {
        self.layers
            .iter()
            .rev()
            .find_map(|l| l.get("/secretsInMarathon")?.as_bool())
            .unwrap_or(false)
    }

    fn context(
        &self,
        values: &Value,
        secrets: &Arc<SecretsObject>,
        services: &Arc<ServiceUse>,
    ) -> minijinja::Value {
        use minijinja::Value as V;
        let mut map: BTreeMap<&str, V> = BTreeMap::from([
            ("env", V::from(self.settings.name.as_str())),
            ("app", V::from(self.app)),
            ("id", V::from(self.id)),
            ("group", V::from(self.settings.group.as_str())),
            ("values", V::from(minijinja::value::Serde(values))),
            ("secrets", V::from_dyn_object(secrets.clone())),
        ]);
        map.extend(services.callables());
        V::from_object(map)
    }

    /// The app definition from every layer's `marathon`, templates expanded
    /// layer by layer so that an error points into the file that holds it.
    fn expand_spec(&self, pass: &Pass<'_>, diags: &mut Diagnostics) -> Value {
        let mut spec = Value::Object(Map::new());
        pass.services.set_site(Site::Field);
        for layer in self.layers {
            if let Some(m) = layer.get("/marathon") {
                let mut m = m.clone();
                let mut pointer = String::from("/marathon");
                self.expand(layer, &mut pointer, &mut m, pass, diags);
                merge::merge_owned(&mut spec, m);
            }
        }
        stringify_scalars(&mut spec, "env");
        stringify_scalars(&mut spec, "labels");
        spec
    }

    pub(super) fn render(&self, diags: &mut Diagnostics) -> Option<RenderedApp> {
        let before = diags.len();
        let values = self.merged("values");
        let secrets = self.secrets(diags);
        let real = SecretsObject::real(&secrets);
        let placeholders = SecretsObject::placeholders(&secrets);
        // One for both passes: they name the same services.
        let services = ServiceUse::new(
            self.repo.catalog.clone(),
            self.repo.endpoints.clone(),
            self.settings,
        );
        let real_pass = Pass {
            ctx: self.context(&values, &real, &services),
            secrets: real.clone(),
            shown_ctx: Some((&values, &placeholders)),
            services: services.clone(),
        };
        let mut spec = self.expand_spec(&real_pass, diags);
        let spec_used = real.take_used();
        let (files, file_used) = self.render_files(&real_pass, diags);

        // The rendering people see: only for apps that read a secret.
        let mut shown = None;
        if !spec_used.is_empty() || file_used.values().any(|u| !u.is_empty()) {
            let spent = self.spent.replace(0);
            let fuel = self.fuel.replace(0);
            let pass = Pass {
                ctx: self.context(&values, &placeholders, &services),
                secrets: placeholders.clone(),
                shown_ctx: None,
                services: services.clone(),
            };
            let mut ignored = Diagnostics::default();
            let shown_spec = self.expand_spec(&pass, &mut ignored);
            let (shown_files, _) = self.render_files(&pass, &mut ignored);
            self.spent.set(spent);
            self.fuel.set(fuel);
            let mut secret_digests = BTreeMap::new();
            if !spec_used.is_empty() {
                secret_digests.insert(String::new(), secrets::digest_of(&spec_used, &secrets));
            }
            for (name, used) in &file_used {
                if !used.is_empty() {
                    secret_digests.insert(name.clone(), secrets::digest_of(used, &secrets));
                }
            }
            shown = Some(Shown {
                marathon: shown_spec,
                files: shown_files
                    .into_iter()
                    .map(|(n, f)| (n, f.content))
                    .collect(),
                secret_digests,
            });
        }
        let shown_spec = shown.as_ref().map(|s| &s.marathon);
        // Marathon shows every field of an app to all its readers: a secret
        // goes to the app's own tasks, in a file or an env entry, unless the
        // app says otherwise.
        if !spec_used.is_empty() && !self.secrets_in_marathon() {
            let at = shown_spec
                .and_then(|sh| sealed::first_difference(&spec, sh, ""))
                .unwrap_or_default();
            let names: Vec<String> = spec_used.iter().map(|n| format!("`{n}`")).collect();
            let field = if at.is_empty() {
                "the app definition".to_string()
            } else {
                format!("`{}`", at.trim_start_matches('/').replace('/', "."))
            };
            diags.push(
                self.diag_at(&format!("/marathon{at}"), Target::Value, format!("{field} reads secret {}: Marathon shows every field of an app to all its readers", names.join(", ")))
                    .with_hint("deliver it in a file or an `env: true` entry under `files:` (only the app's own tasks get those), or set `secretsInMarathon: true` in the app's YAML to allow it"),
            );
        }

        // The placeholder rendering is checked only to word an error.
        let shown_schema = std::cell::OnceCell::new();
        for v in schema::check(schema::Kind::MarathonApp, &spec) {
            let target = if v.unknown_key {
                Target::Key
            } else {
                Target::Value
            };
            let message = safe_message(&spec, shown_spec, &v.pointer, v.message, || {
                let shown = shown_spec?;
                shown_schema
                    .get_or_init(|| schema::check(schema::Kind::MarathonApp, shown))
                    .iter()
                    .find(|s| s.pointer == v.pointer && s.unknown_key == v.unknown_key)
                    .map(|s| s.message.clone())
            });
            let mut d = self.diag_at(&format!("/marathon{}", v.pointer), target, message);
            d.hint = v.hint;
            diags.push(d);
        }
        if let Some(Value::Object(env)) = spec.get("env") {
            for k in env.keys() {
                if let Some(problem) = checks::env_name_problem(k) {
                    diags.push(
                        self.diag_at(
                            &format!("/marathon/env/{}", schema::escape(k)),
                            Target::Key,
                            format!("environment variable name `{k}` {problem}"),
                        )
                        .with_hint(checks::ENV_NAME_RULE),
                    );
                }
            }
        }
        if let Some(Value::Object(l)) = spec.get("labels") {
            for k in l.keys().filter(|k| k.starts_with(labels::PREFIX)) {
                diags.push(
                    self.diag_at(
                        &format!("/marathon/labels/{}", schema::escape(k)),
                        Target::Key,
                        format!("label `{k}` is reserved: pacer sets the `pacer.*` labels itself"),
                    )
                    .with_hint("rename the label"),
                );
            }
            for (k, v) in l {
                let Some(problem) = checks::label_problem(k, v.as_str().unwrap_or("")) else {
                    continue;
                };
                let at = format!("/marathon/labels/{}", schema::escape(k));
                let shown: String = k.escape_default().collect();
                diags.push(
                    self.diag_at(&at, Target::Value, format!("label `{shown}` {problem}"))
                        .with_hint(checks::LABEL_RULE),
                );
            }
        }

        let restart_parts: Vec<(String, Vec<u8>)> = files
            .iter()
            .filter(|(_, f)| f.reload == Reload::Restart)
            .map(|(name, f)| (format!("{name}\0{}", f.path), f.content.clone()))
            .collect();
        let config_hash = Digest::of_parts(
            restart_parts
                .iter()
                .map(|(n, c)| (n.as_str(), c.as_slice())),
        );
        let revision = self.repo.snapshot.revision.label();
        let add_labels = |spec: &mut Value| {
            let Some(obj) = spec.as_object_mut() else {
                return;
            };
            obj.insert("id".into(), Value::String(self.id.to_string()));
            let labels_map = obj
                .entry("labels")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(l) = labels_map {
                l.insert(labels::ENV.into(), self.settings.name.clone().into());
                l.insert(labels::SOURCE.into(), format!("apps/{}", self.app).into());
                l.insert(labels::COMMIT.into(), revision.clone().into());
                l.insert(labels::CONFIG_HASH.into(), config_hash.to_string().into());
            }
        };
        spec.as_object()?;
        add_labels(&mut spec);
        if let Some(s) = shown.as_mut() {
            add_labels(&mut s.marathon);
        }
        let shown_spec = shown.as_ref().map(|s| &s.marathon);
        if diags.len() == before {
            // Marathon's own rules, on the app as it would be sent.
            let both = spec.get("cmd").is_some() && spec.get("args").is_some();
            if both {
                diags.push(
                    self.diag_at(
                        "/marathon/args",
                        Target::Key,
                        "both `cmd` and `args` are set: Marathon takes one or the other",
                    )
                    .with_hint("keep `cmd` (run by a shell) or `args` (run directly), not both"),
                );
            }
            let shown_rules = std::cell::OnceCell::new();
            for v in marathon_rules::validate_app(&spec) {
                if both && v.path.is_empty() {
                    continue;
                }
                let pointer = if v.path == "/id" {
                    String::new()
                } else {
                    v.path.clone()
                };
                // Name the secret a reference points at: "undefined secret"
                // alone leaves the reader to find which.
                let secret = spec
                    .pointer(&v.path)
                    .and_then(|x| x.get("secret"))
                    .and_then(Value::as_str)
                    .map(|name| format!(" `{name}`"));
                for (i, e) in v.errors.iter().enumerate() {
                    let field = if v.path.is_empty() {
                        String::new()
                    } else {
                        format!("`{}`: ", v.path.trim_start_matches('/'))
                    };
                    let message = format!("{field}{e}{}", secret.clone().unwrap_or_default());
                    let message = safe_message(&spec, shown_spec, &v.path, message, || {
                        let shown = shown_spec?;
                        let s = shown_rules
                            .get_or_init(|| marathon_rules::validate_app(shown))
                            .iter()
                            .find(|s| s.path == v.path)?;
                        Some(format!("{field}{}", s.errors.get(i)?))
                    });
                    let mut d =
                        self.diag_at(&format!("/marathon{pointer}"), Target::Value, message);
                    if secret.is_some() {
                        d = d.with_hint("declare it under `marathon.secrets`, e.g. `secrets: {name: {source: path/in/store}}`");
                    }
                    diags.push(d);
                }
            }
        }
        let mut ignore: Vec<String> = Vec::new();
        for l in self.layers {
            if let Some(Value::Array(list)) = l.get("/ignore") {
                for (i, p) in list.iter().enumerate() {
                    let Some(p) = p.as_str() else { continue };
                    if checks::ignore_hides_pacer_labels(p) {
                        diags.push(
                            l.diag(&format!("/ignore/{i}"), Target::Value, format!("`ignore: {p}` would hide pacer's own `pacer.*` labels, which it needs to tell its apps and their versions apart"))
                                .with_hint("ignore single fields instead, e.g. `/instances` or `/labels/team`"),
                        );
                    }
                    ignore.push(p.to_string());
                }
            }
        }
        ignore.sort();
        ignore.dedup();
        for p in &ignore {
            merge::remove_pointer(&mut spec, p);
            if let Some(s) = shown.as_mut() {
                merge::remove_pointer(&mut s.marathon, p);
            }
        }
        // The schema bounds it; the last layer that sets it wins.
        let deploy_timeout_seconds = self
            .layers
            .iter()
            .rev()
            .find_map(|l| l.get("/deployTimeoutSeconds")?.as_u64());
        let read: BTreeSet<&String> = spec_used
            .iter()
            .chain(file_used.values().flatten())
            .collect();
        let unreadable_secrets: BTreeSet<String> = self
            .unreadable()
            .into_iter()
            .filter(|n| read.contains(n))
            .collect();
        if !self.repo.keys.placeholders {
            for l in self.layers {
                if let Some(d) = &l.sealing.locked
                    && l.sealing
                        .unreadable
                        .iter()
                        .any(|n| unreadable_secrets.contains(n))
                {
                    diags.push(d.clone());
                }
            }
        }
        if diags.len() > before {
            return None;
        }
        Some(RenderedApp {
            id: self.id.to_string(),
            app: self.app.to_string(),
            env: self.settings.name.clone(),
            marathon: spec,
            files,
            ignore,
            deploy_timeout_seconds,
            secrets,
            shown: shown.map(Arc::new),
            inputs: self.repo.inputs(&self.settings.name, self.app),
            services: services.used(),
            unreadable_secrets,
        })
    }

    /// A template's error, safe to print. In the real pass, an error from a
    /// template that read a secret may quote it: the same template rendered
    /// with placeholders gives the message instead.
    pub(super) fn template_error(
        &self,
        pass: &Pass<'_>,
        reads_before: usize,
        e: template::TemplateError,
        again: impl FnOnce(&minijinja::Value) -> Result<(), template::TemplateError>,
    ) -> template::TemplateError {
        let Some((values, placeholders)) = pass.shown_ctx else {
            return e;
        };
        if pass.secrets.reads() == reads_before {
            return e;
        }
        // Built only here, on an error: most apps never need it.
        match again(&self.context(values, placeholders, &pass.services)) {
            Err(shown) => shown,
            Ok(()) => template::TemplateError {
                message: "this template fails with the real value of a secret it reads (the message is withheld, as it could quote the secret)".into(),
                ..e
            },
        }
    }

    /// Expands templates in every string under `value`, in place. In a
    /// shown pass (placeholders), a template that fails keeps its text.
    /// `pointer` is where `value` is in `layer`, for diagnostics; it is one
    /// buffer for the whole walk (each level appends its key and takes it
    /// off again), as most values are no template and need none.
    fn expand(
        &self,
        layer: &Layer,
        pointer: &mut String,
        value: &mut Value,
        pass: &Pass<'_>,
        diags: &mut Diagnostics,
    ) {
        match value {
            Value::String(s) if template::is_template(s) => {
                if self.past_deadline(diags) {
                    return;
                }
                let reads = pass.secrets.reads();
                let templates = &self.repo.templates;
                match templates.render_value_within(
                    s,
                    &pass.ctx,
                    self.left(),
                    &self.fuel,
                    Some(self.compiled),
                ) {
                    Ok(v) => {
                        // A whole-expression field can yield a list or map
                        // that never passed the output cap: count its JSON.
                        let n = match &v {
                            Value::String(s) => s.len(),
                            other => budget::json_len(other),
                        };
                        let cap = self.left().min(self.repo.budgets.file_bytes);
                        if n > cap {
                            diags.push(
                                layer
                                    .diag(
                                        pointer,
                                        Target::Value,
                                        format!(
                                            "template error: this value renders to more than {cap} bytes (its budget of output)"
                                        ),
                                    )
                                    .with_hint("a field of an app definition needs far less: check the template"),
                            );
                            self.spend(n);
                            return;
                        }
                        self.spend(n);
                        *value = v;
                    }
                    Err(_) if pass.shown_ctx.is_none() && pass.secrets.is_placeholders() => {}
                    Err(e) => {
                        let e = self.template_error(pass, reads, e, |ctx| {
                            templates
                                .render_value_within(s, ctx, usize::MAX, &Cell::new(0), None)
                                .map(|_| ())
                        });
                        let mut d = layer.diag(
                            pointer,
                            Target::Value,
                            format!("template error: {}", e.message),
                        );
                        if let (Some(line), Some(column)) = (d.line, d.column) {
                            let (l, c) =
                                template_position(&layer.text, (line, column), (e.line, e.column));
                            d.line = Some(l);
                            d.column = Some(c);
                        }
                        diags.push(d.with_hint(e.hint.unwrap_or_else(|| {
                            "templates see `env`, `app`, `id`, `group`, `values.*` and `secrets.*` (and, in files with `reload: hot`, `service()`)".into()
                        })));
                    }
                }
            }
            Value::Object(m) => {
                let len = pointer.len();
                for (k, v) in m.iter_mut() {
                    pointer.push('/');
                    schema::push_escaped(pointer, k);
                    self.expand(layer, pointer, v, pass, diags);
                    pointer.truncate(len);
                }
            }
            Value::Array(a) => {
                let len = pointer.len();
                for (i, v) in a.iter_mut().enumerate() {
                    use std::fmt::Write;
                    let _ = write!(pointer, "/{i}");
                    self.expand(layer, pointer, v, pass, diags);
                    pointer.truncate(len);
                }
            }
            _ => {}
        }
    }
}

/// One rendering of an app: with the real secrets, or with placeholders.
pub(super) struct Pass<'a> {
    pub(super) ctx: minijinja::Value,
    pub(super) secrets: Arc<SecretsObject>,
    /// In the real pass: the placeholder context, to re-render a failing
    /// template that read a secret for a message that can't quote it.
    pub(super) shown_ctx: Option<(&'a Value, &'a Arc<SecretsObject>)>,
    /// `service()` and its helpers, and the services they named.
    pub(super) services: Arc<ServiceUse>,
}

/// A message about the value at `pointer` of the app definition that is
/// safe to print. Where that value came from a secret (it differs in the
/// placeholder rendering), the message comes from the placeholder rendering
/// instead, or is a generic one: a message may quote the value.
fn safe_message(
    real: &Value,
    shown: Option<&Value>,
    pointer: &str,
    message: String,
    shown_message: impl FnOnce() -> Option<String>,
) -> String {
    let Some(shown) = shown else { return message };
    if real.pointer(pointer) == shown.pointer(pointer) {
        return message;
    }
    shown_message().unwrap_or_else(|| {
        "this value, rendered from a secret, is not valid here (the message is withheld, as it could quote the secret)".into()
    })
}

/// Where in the YAML file a template error is: `value` is where the string
/// starts (its quote, if quoted), `at` the error's line and column inside
/// the template text.
fn template_position(
    text: &str,
    value: (usize, usize),
    at: (usize, Option<usize>),
) -> (usize, usize) {
    let (line, column) = value;
    let (e_line, e_col) = at;
    if e_line <= 1 {
        // A one-line string: count from its first character.
        let quoted = text
            .lines()
            .nth(line.saturating_sub(1))
            .and_then(|l| l.chars().nth(column.saturating_sub(1)))
            .is_some_and(|c| c == '"' || c == '\'');
        let col = column + e_col.unwrap_or(1).saturating_sub(1) + usize::from(quoted);
        return (line, col);
    }
    // A block scalar starts on the line after its key (`|`), indented.
    let l = line + e_line;
    let indent = text
        .lines()
        .nth(l.saturating_sub(1))
        .map_or(0, |t| t.len() - t.trim_start().len());
    (l, indent + e_col.unwrap_or(1))
}

/// Marathon wants strings in `env` and `labels`; YAML authors write
/// `PORT: 8080`. Numbers and booleans there become strings.
fn stringify_scalars(spec: &mut Value, key: &str) {
    if let Some(Value::Object(m)) = spec.get_mut(key) {
        for v in m.values_mut() {
            match v {
                Value::Number(n) => *v = Value::String(n.to_string()),
                Value::Bool(b) => *v = Value::String(b.to_string()),
                _ => {}
            }
        }
    }
}
