//! minijinja with strict undefined variables, for strings in app fields and
//! for config files.

use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;

/// A failed template, located inside the template text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// 1-based line inside the template text.
    pub line: usize,
    pub message: String,
}

pub struct Templates {
    env: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

/// Only strings with template syntax pay for a template engine.
pub fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%") || s.contains("{#")
}

impl Templates {
    pub fn new() -> Self {
        let mut env = Environment::new();
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
        Templates { env }
    }

    /// Renders one string from an app field. A string that is exactly one
    /// `{{ expression }}` keeps the expression's type, so that
    /// `instances: "{{ values.instances }}"` gives a number.
    pub fn render_value(&self, s: &str, ctx: &minijinja::Value) -> Result<Value, TemplateError> {
        if let Some(expr) = whole_expression(s) {
            let compiled = self
                .env
                .compile_expression(expr)
                .map_err(|e| to_error(&e, s))?;
            let out = compiled.eval(ctx).map_err(|e| to_error(&e, s))?;
            if out.is_undefined() {
                return Err(TemplateError {
                    line: 1,
                    message: format!("undefined value: `{}`", expr.trim()),
                });
            }
            return <Value as serde::Deserialize>::deserialize(out).map_err(|e| TemplateError {
                line: 1,
                message: format!("template value can't be used here: {e}"),
            });
        }
        self.render_text("field", s, ctx).map(Value::String)
    }

    /// Renders a whole text (a config file, or a string with text around
    /// its expressions).
    pub fn render_text(
        &self,
        name: &str,
        src: &str,
        ctx: &minijinja::Value,
    ) -> Result<String, TemplateError> {
        self.env
            .render_named_str(name, src, ctx)
            .map_err(|e| to_error(&e, src))
    }
}

fn whole_expression(s: &str) -> Option<&str> {
    let t = s.trim();
    let inner = t.strip_prefix("{{")?.strip_suffix("}}")?;
    let inner = inner.strip_prefix('-').unwrap_or(inner);
    let inner = inner.strip_suffix('-').unwrap_or(inner);
    (!inner.contains("{{") && !inner.contains("}}") && !inner.contains("{%")).then_some(inner)
}

fn to_error(e: &minijinja::Error, src: &str) -> TemplateError {
    let line = e.line().unwrap_or(1);
    // Name the expression that failed when minijinja knows where it is:
    // "undefined value" alone doesn't tell which of ten variables it was.
    let snippet = e
        .range()
        .and_then(|r| src.get(r))
        .map(|s| s.trim())
        .filter(|s| !s.is_empty() && s.len() < 120);
    let kind = e.kind().to_string();
    let mut message = match e.detail() {
        Some(d) => format!("{kind}: {d}"),
        None => kind,
    };
    if let Some(snippet) = snippet.filter(|s| !message.contains(s)) {
        message.push_str(&format!(" (`{snippet}`)"));
    }
    TemplateError { line, message }
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
}
