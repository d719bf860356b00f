//! minijinja with strict undefined variables, for strings in app fields and
//! for config files.

use minijinja::{Environment, UndefinedBehavior};
use std::cell::Cell;

/// A whole-expression field is evaluated as `{% set <name> = (<expr>) %}`.
const EVAL_NAME: &str = "__pacer_value";
const EVAL_PREFIX: &str = "{% set __pacer_value = (";
const EVAL_SUFFIX: &str = ") %}";
use serde_json::Value;

/// A failed template, located inside the template text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// 1-based line inside the template text.
    pub line: usize,
    /// 1-based column (in characters) inside that line, when known.
    pub column: Option<usize>,
    pub message: String,
    /// How to fix it, when known (`did you mean `values.port`?`).
    pub hint: Option<String>,
}

impl TemplateError {
    fn new(line: usize, message: impl Into<String>) -> Self {
        TemplateError {
            line,
            column: None,
            message: message.into(),
            hint: None,
        }
    }
}

pub struct Templates {
    env: Environment<'static>,
    fuel: u64,
    max_output: usize,
    max_app_output: usize,
}

/// Templates compiled for one app, kept while it renders: its environments
/// render the same field and file templates, and compiling one costs about
/// as much as rendering it. Dropped with the app, so memory follows one app,
/// not the repo.
pub struct TemplateCache(std::cell::RefCell<Environment<'static>>);

impl Templates {
    /// An empty cache with these templates' settings.
    pub fn cache(&self) -> TemplateCache {
        TemplateCache(std::cell::RefCell::new(self.env.clone()))
    }

    /// Runs `f` on `src` compiled: from `cache` (compiled into it the first
    /// time), or compiled for this call alone.
    fn with_template<R>(
        &self,
        cache: Option<&TemplateCache>,
        name: &str,
        src: &str,
        f: impl FnOnce(&minijinja::Template<'_, '_>) -> R,
    ) -> Result<R, minijinja::Error> {
        // `debug()` prints the environment, with every template compiled
        // into it: a template that calls it gets an environment of its own,
        // so that its output doesn't depend on what rendered before it.
        let cache = cache.filter(|_| !src.contains("debug"));
        let Some(cache) = cache else {
            let t = self.env.template_from_named_str(name, src)?;
            return Ok(f(&t));
        };
        // Keyed by its text: equal texts compile equal.
        if cache.0.borrow().get_template(src).is_err() {
            cache
                .0
                .borrow_mut()
                .add_template_owned(src.to_string(), src.to_string())?;
        }
        let env = cache.0.borrow();
        let t = env.get_template(src)?;
        Ok(f(&t))
    }
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

/// Collects a template's output and fails the render once it passes `limit`
/// bytes, so an output cap holds while the template runs, not after.
struct CappedOutput {
    buf: Vec<u8>,
    limit: usize,
    over: bool,
}

impl std::io::Write for CappedOutput {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.limit {
            self.over = true;
            return Err(std::io::Error::other("output limit"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Only strings with template syntax pay for a template engine.
pub fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%") || s.contains("{#")
}

impl Templates {
    /// Templates with the default budgets.
    pub fn new() -> Self {
        Self::with_budgets(&super::Budgets::default())
    }

    /// Templates whose every render stops at `budgets.template_fuel` and
    /// `budgets.file_bytes` of output.
    pub fn with_budgets(budgets: &super::Budgets) -> Self {
        let mut env = Environment::new();
        env.set_fuel(Some(budgets.template_fuel));
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Config files end with a newline more often than not; keep it, so
        // the rendered bytes are what the author wrote.
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
            .expect("the default syntax is valid");
        env.set_syntax(syntax);
        // minijinja escapes by file extension (.html, .json, .yaml); config
        // files want their values as written. `|tojson` is there when quoting
        // is wanted.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        // Config files are YAML, JSON, INI, nginx: they spell booleans
        // `true`/`false`, not Python's `True`/`False`.
        env.set_formatter(|out, state, value| {
            if value.kind() == minijinja::value::ValueKind::Bool {
                let text = if value.is_true() { "true" } else { "false" };
                out.write_str(text).map_err(|_| {
                    minijinja::Error::new(minijinja::ErrorKind::WriteFailure, "writing output")
                })
            } else {
                minijinja::escape_formatter(out, state, value)
            }
        });
        Templates {
            env,
            fuel: budgets.template_fuel,
            max_output: budgets.file_bytes,
            max_app_output: budgets.app_bytes,
        }
    }

    /// Renders one string from an app field. A string that is exactly one
    /// `{{ expression }}` keeps the expression's type, so that
    /// `instances: "{{ values.instances }}"` gives a number.
    pub fn render_value(&self, s: &str, ctx: &minijinja::Value) -> Result<Value, TemplateError> {
        self.render_value_within(s, ctx, usize::MAX, &Cell::new(0), None)
    }

    /// [`render_value`](Self::render_value) with at most `app_left` bytes
    /// of output left in the app's budget; adds the fuel it used to `fuel`.
    /// With `cache`, compiles through it.
    pub fn render_value_within(
        &self,
        s: &str,
        ctx: &minijinja::Value,
        app_left: usize,
        fuel: &Cell<u64>,
        cache: Option<&TemplateCache>,
    ) -> Result<Value, TemplateError> {
        if let Some(expr) = whole_expression(s) {
            // Evaluated as a template that assigns it, so that the fuel it
            // used can be read back (an expression's evaluation hides it).
            let src = format!("{EVAL_PREFIX}{expr}{EVAL_SUFFIX}");
            // minijinja's ranges count from `src`; errors are shown in `s`.
            let shift = (expr.as_ptr() as usize - s.as_ptr() as usize) as isize
                - EVAL_PREFIX.len() as isize;
            let rendered = self.with_template(cache, "field", &src, |t| {
                let captured = t.render_captured_to(ctx, std::io::sink())?;
                let state = captured.state();
                let used = state.fuel_levels().map(|(used, _)| used);
                Ok::<_, minijinja::Error>((used, state.lookup(EVAL_NAME)))
            });
            let (used, out) = match rendered.and_then(|r| r) {
                Ok(r) => r,
                Err(e) => {
                    if e.kind() == minijinja::ErrorKind::OutOfFuel {
                        fuel.set(fuel.get().saturating_add(self.fuel));
                    }
                    return Err(self.to_error(&e, s, ctx, shift));
                }
            };
            if let Some(used) = used {
                fuel.set(fuel.get().saturating_add(used));
            }
            let out = out.unwrap_or_default();
            if out.is_undefined() {
                let mut e = TemplateError::new(1, format!("undefined value: `{}`", expr.trim()));
                e.column = s.find(expr.trim()).map(|i| s[..i].chars().count() + 1);
                e.hint = suggest(expr.trim(), ctx);
                return Err(e);
            }
            return <Value as serde::Deserialize>::deserialize(out).map_err(|e| {
                TemplateError::new(1, format!("template value can't be used here: {e}"))
            });
        }
        self.render_text_within("field", s, ctx, app_left, fuel, cache)
            .map(Value::String)
    }

    /// Renders a whole text (a config file, or a string with text around
    /// its expressions).
    pub fn render_text(
        &self,
        name: &str,
        src: &str,
        ctx: &minijinja::Value,
    ) -> Result<String, TemplateError> {
        self.render_text_within(name, src, ctx, usize::MAX, &Cell::new(0), None)
    }

    /// [`render_text`](Self::render_text) with at most `app_left` bytes of
    /// output left in the app's budget; adds the fuel it used to `fuel`.
    /// With `cache`, compiles through it.
    pub fn render_text_within(
        &self,
        name: &str,
        src: &str,
        ctx: &minijinja::Value,
        app_left: usize,
        fuel: &Cell<u64>,
        cache: Option<&TemplateCache>,
    ) -> Result<String, TemplateError> {
        let app_limited = app_left < self.max_output;
        let mut out = CappedOutput {
            buf: Vec::new(),
            limit: self.max_output.min(app_left),
            over: false,
        };
        let result = self.with_template(cache, name, src, |t| {
            let r = t.render_captured_to(ctx, &mut out);
            r.map(|c| c.state().fuel_levels().map_or(0, |(used, _)| used))
        });
        let result = match result {
            Ok(r) => r,
            // A template that doesn't compile.
            Err(e) => return Err(self.to_error(&e, src, ctx, 0)),
        };
        let used = match &result {
            Ok(used) => *used,
            Err(e) if e.kind() == minijinja::ErrorKind::OutOfFuel => self.fuel,
            Err(_) => 0,
        };
        fuel.set(fuel.get().saturating_add(used));
        match result {
            Ok(_) => String::from_utf8(out.buf)
                .map_err(|_| TemplateError::new(1, "template output is not valid UTF-8")),
            Err(e) if out.over && app_limited => Err(TemplateError::new(
                e.line().unwrap_or(1),
                format!(
                    "template output takes the app over its {} limit for all its rendered files and fields: write less",
                    super::budget::bytes(self.max_app_output)
                ),
            )),
            Err(e) if out.over => Err(TemplateError::new(
                e.line().unwrap_or(1),
                format!(
                    "template output is over the {} limit for one file: write less, or split the file",
                    super::budget::bytes(self.max_output)
                ),
            )),
            Err(e) => Err(self.to_error(&e, src, ctx, 0)),
        }
    }

    /// `shift`: where in `src` the text minijinja saw starts.
    fn to_error(
        &self,
        e: &minijinja::Error,
        src: &str,
        ctx: &minijinja::Value,
        shift: isize,
    ) -> TemplateError {
        if e.kind() == minijinja::ErrorKind::OutOfFuel {
            let mut out = TemplateError::new(
                e.line().unwrap_or(1),
                format!(
                    "template used more than {} steps (its budget of time and memory)",
                    self.fuel
                ),
            );
            out.hint = Some("simplify its loops: a config file needs few iterations".into());
            return out;
        }
        let mut out = to_error(e, src, shift);
        if let Some(hint) = super::services::hint_of(e).filter(|h| !h.is_empty()) {
            out.hint = Some(hint.to_string());
        }
        if e.kind() == minijinja::ErrorKind::UndefinedError
            && let Some(snippet) = shifted(e.range(), shift).and_then(|r| src.get(r))
        {
            out.hint = suggest(snippet, ctx);
        }
        out
    }
}

fn whole_expression(s: &str) -> Option<&str> {
    let t = s.trim();
    let inner = t.strip_prefix("{{")?.strip_suffix("}}")?;
    let inner = inner.strip_prefix('-').unwrap_or(inner);
    let inner = inner.strip_suffix('-').unwrap_or(inner);
    (!inner.contains("{{") && !inner.contains("}}") && !inner.contains("{%")).then_some(inner)
}

/// "did you mean `values.port`?" for an undefined `values.prot`: the first
/// name along the dotted path that the context lacks, matched against the
/// names it has there.
fn suggest(expr: &str, ctx: &minijinja::Value) -> Option<String> {
    let path: String = expr
        .trim()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
        .collect();
    let mut here = ctx.clone();
    let mut done: Vec<String> = Vec::new();
    for seg in path.split('.') {
        let next = here.get_attr(seg).ok().filter(|v| !v.is_undefined());
        match next {
            Some(v) => {
                done.push(seg.to_string());
                here = v;
            }
            None => {
                let names: Vec<String> = here
                    .try_iter()
                    .ok()?
                    .filter_map(|k| k.as_str().map(String::from))
                    .collect();
                let best = super::schema::suggest(seg, &names)?;
                done.push(best.to_string());
                return Some(format!("did you mean `{}`?", done.join(".")));
            }
        }
    }
    None
}

/// The 1-based line and column of byte `at` in `src`.
fn position(src: &str, at: usize) -> (usize, usize) {
    let before = src.get(..at).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

/// A range of the text minijinja saw, as a range of the text shown.
fn shifted(r: Option<std::ops::Range<usize>>, shift: isize) -> Option<std::ops::Range<usize>> {
    let r = r?;
    let start = r.start.checked_add_signed(shift)?;
    let end = r.end.checked_add_signed(shift)?;
    Some(start..end)
}

fn to_error(e: &minijinja::Error, src: &str, shift: isize) -> TemplateError {
    let mut line = e.line().unwrap_or(1);
    let mut column = None;
    let range = shifted(e.range(), shift);
    if let Some(r) = range.clone() {
        let (l, c) = position(src, r.start);
        line = l;
        column = Some(c);
    }
    // Name the expression that failed when minijinja knows where it is:
    // "undefined value" alone doesn't tell which of ten variables it was.
    let snippet = range
        .and_then(|r| src.get(r))
        .map(|s| s.trim())
        .filter(|s| !s.is_empty() && s.len() < 120);
    let kind = e.kind().to_string();
    let mut message = match e.detail() {
        // `service()`'s errors say what went wrong without minijinja's kind.
        Some(d) if super::services::hint_of(e).is_some() => d.to_string(),
        Some(d) => format!("{kind}: {d}"),
        None => kind,
    };
    if let Some(snippet) = snippet.filter(|s| !message.contains(s)) {
        message.push_str(&format!(" (`{snippet}`)"));
    }
    TemplateError {
        line,
        column,
        message,
        hint: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> minijinja::Value {
        minijinja::Value::from(minijinja::value::Serde(
            json!({"values": {"n": 3, "host": "db", "flag": true}}),
        ))
    }

    #[test]
    fn whole_expressions_keep_their_type() {
        let t = Templates::new();
        assert_eq!(t.render_value("{{ values.n }}", &ctx()), Ok(json!(3)));
        assert_eq!(
            t.render_value(" {{ values.flag }} ", &ctx()),
            Ok(json!(true))
        );
        assert_eq!(
            t.render_value("{{ values.host }}:{{ values.n }}", &ctx()),
            Ok(json!("db:3"))
        );
    }

    #[test]
    fn undefined_variables_are_errors() {
        let t = Templates::new();
        let e = t.render_value("{{ values.nope }}", &ctx()).unwrap_err();
        assert!(e.message.contains("values.nope"), "{}", e.message);
        let e = t
            .render_text("f", "a\nb {{ values.nope }}\n", &ctx())
            .unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("undefined"), "{}", e.message);
    }

    #[test]
    fn syntax_errors_name_their_line() {
        let t = Templates::new();
        let e = t
            .render_text("f", "ok\n{{ values.n \n", &ctx())
            .unwrap_err();
        assert!(e.line >= 2, "{e:?}");
        assert!(e.message.contains("syntax"), "{}", e.message);
    }

    #[test]
    fn the_same_inputs_render_the_same_bytes() {
        let t = Templates::new();
        let src = "{% for k, v in values|items %}{{ k }}={{ v }}\n{% endfor %}";
        let a = t.render_text("f", src, &ctx()).unwrap();
        let b = Templates::new().render_text("f", src, &ctx()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, "flag=true\nhost=db\nn=3\n");
    }

    #[test]
    fn a_cached_template_renders_as_a_fresh_one_in_every_context() {
        let t = Templates::new();
        let cache = t.cache();
        let other = minijinja::Value::from(minijinja::value::Serde(
            json!({"values": {"n": 7, "host": "web", "flag": false}}),
        ));
        let fuel = Cell::new(0);
        for ctx in [ctx(), other, ctx()] {
            for src in [
                "{{ values.n }}",
                "{{ values.host }}:{{ values.n }}",
                "{{ values.nope }}",
                "{{ values.n ",
                "{{ debug() }}",
            ] {
                let fresh = t.render_value(src, &ctx);
                let cached = t.render_value_within(src, &ctx, usize::MAX, &fuel, Some(&cache));
                assert_eq!(fresh, cached, "{src}");
            }
            let src = "{% for i in range(values.n) %}{{ i }}{% endfor %}\n";
            let fresh = t.render_text("f", src, &ctx);
            let cached = t.render_text_within("f", src, &ctx, usize::MAX, &fuel, Some(&cache));
            assert_eq!(fresh, cached);
        }
        assert!(fuel.get() > 0);
    }
}
