//! A config file's agent-side actions: the `check` command run on the
//! staged file before it replaces the live one, and the `onReload` action
//! run once it has. Both are literal (never templates), so they read no
//! secret and can be shown as they are. Parsing is pure: the caller turns
//! an error into a diagnostic at the field. Shared by render (which parses
//! and validates), the config server (which serves it) and the agent (which
//! acts on it), so it lives with the plain data.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The longest a command may be, all its arguments together.
pub const MAX_COMMAND_BYTES: usize = 4096;
/// The most arguments a command may have, its program included.
pub const MAX_ARGS: usize = 64;
/// The longest reload URL.
pub const MAX_URL_BYTES: usize = 2048;
/// What `check` arguments say for the staged file's path.
pub const STAGED_PLACEHOLDER: &str = "{path}";

/// What the agent does around writing one file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileActions {
    /// Run on the staged file (`{path}` in an argument is its path); a
    /// non-zero exit keeps the old file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<Vec<String>>,
    /// What tells the app; `None`: the default for the file's `reload`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_reload: Option<OnReload>,
    /// Not a file but environment variables (`NAME=value` lines) the
    /// agent passes to the app it starts; never written to disk.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub env: bool,
}

impl FileActions {
    pub fn is_empty(&self) -> bool {
        self.check.is_none() && self.on_reload.is_none() && !self.env
    }
}

/// The most variables one env entry may set.
pub const MAX_ENV_VARS: usize = 256;

/// Whether `name` can be an environment variable: non-empty, letters,
/// digits and `_`, not starting with a digit (POSIX's portable names,
/// lower case allowed), at most 256 bytes.
pub fn env_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// An env entry's variables: one `NAME=value` a line (the value is the
/// rest of the line, as it is); blank lines and `#` comments skipped.
/// An error names the line (1-based) and never quotes a value.
pub fn parse_env(content: &[u8]) -> Result<Vec<(String, String)>, (usize, String)> {
    let text = std::str::from_utf8(content).map_err(|_| (1, "is not UTF-8 text".to_string()))?;
    let mut out: Vec<(String, String)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            return Err((line_no, "is not `NAME=value`".into()));
        };
        if !env_name_ok(name) {
            return Err((
                line_no,
                format!(
                    "`{:.64}` is not a variable name (letters, digits and _, not starting with a digit)",
                    name.escape_debug()
                ),
            ));
        }
        if value.contains(['\0', '\r']) {
            return Err((
                line_no,
                format!("{name}'s value holds a NUL or carriage return"),
            ));
        }
        if out.iter().any(|(n, _)| n == name) {
            return Err((line_no, format!("{name} is set twice")));
        }
        if out.len() == MAX_ENV_VARS {
            return Err((line_no, format!("more than {MAX_ENV_VARS} variables")));
        }
        out.push((name.to_string(), value.to_string()));
    }
    Ok(out)
}

/// How the agent tells the running app that a file changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OnReload {
    /// A signal to the child, by name without `SIG` (`HUP`, `USR1`).
    Signal(String),
    /// A command; it must exit 0.
    Command(Vec<String>),
    /// An HTTP call; it must answer 2xx.
    Http(HttpReload),
    /// Nothing: the app notices by itself, or the tasks are rolled.
    None,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpReload {
    pub url: String,
    #[serde(default = "post")]
    pub method: String,
}

fn post() -> String {
    "POST".into()
}

/// The signals a reload may send, by name.
pub const SIGNALS: &[&str] = &[
    "HUP", "USR1", "USR2", "INT", "QUIT", "TERM", "WINCH", "ALRM", "CONT", "TSTP",
];

/// A field that is wrong: which (`check` or `onReload`), why, and the fix.
#[derive(Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
    pub hint: String,
}

fn err(field: &'static str, message: impl Into<String>, hint: impl Into<String>) -> FieldError {
    FieldError {
        field,
        message: message.into(),
        hint: hint.into(),
    }
}

/// Reads `check` and `onReload` from a file's merged spec.
pub fn parse(spec: &Value) -> Result<FileActions, FieldError> {
    let check = match spec.get("check") {
        None | Some(Value::Null) => None,
        Some(v) => Some(command(v, "check")?),
    };
    let on_reload = match spec.get("onReload") {
        None | Some(Value::Null) => None,
        Some(v) => Some(on_reload(v)?),
    };
    let env = match spec.get("env") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => true,
        Some(_) => {
            return Err(err(
                "env",
                "must be true or false",
                "set `env: true` for environment variables",
            ));
        }
    };
    if env && (check.is_some() || on_reload.is_some()) {
        return Err(err(
            "env",
            "an env entry has no `check` or `onReload`",
            "remove them: the variables reach the app when its task (re)starts",
        ));
    }
    Ok(FileActions {
        check,
        on_reload,
        env,
    })
}

/// A command as a string (split as a shell would, no shell run) or a list.
fn command(v: &Value, field: &'static str) -> Result<Vec<String>, FieldError> {
    let hint = "give the command as a string, e.g. `nginx -t -c {path}`, or as a list of arguments";
    let args: Vec<String> = match v {
        Value::String(s) => {
            if s.len() > MAX_COMMAND_BYTES {
                return Err(err(
                    field,
                    format!("the command is over {MAX_COMMAND_BYTES} bytes"),
                    "keep it short: put a longer one in a script in the image",
                ));
            }
            shlex::split(s)
                .ok_or_else(|| err(field, "the command's quotes are not closed", hint))?
        }
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| err(field, "every argument must be a string", hint))?,
        _ => return Err(err(field, "must be a command", hint)),
    };
    if args.is_empty() || args[0].is_empty() {
        return Err(err(field, "names no program", hint));
    }
    if args.len() > MAX_ARGS {
        return Err(err(
            field,
            format!("has {} arguments, over {MAX_ARGS}", args.len()),
            "put a longer command in a script in the image",
        ));
    }
    if args.iter().map(String::len).sum::<usize>() > MAX_COMMAND_BYTES {
        return Err(err(
            field,
            format!("the command is over {MAX_COMMAND_BYTES} bytes"),
            "put a longer command in a script in the image",
        ));
    }
    if args.iter().any(|a| a.contains('\0')) {
        return Err(err(field, "an argument holds a NUL byte", "remove it"));
    }
    Ok(args)
}

fn on_reload(v: &Value) -> Result<OnReload, FieldError> {
    const F: &str = "onReload";
    let hint =
        "use `{signal: HUP}`, `{command: [...]}`, `{http: {url: ..., method: POST}}` or `none`";
    if v.as_str() == Some("none") {
        return Ok(OnReload::None);
    }
    let Some(obj) = v.as_object().filter(|o| o.len() == 1) else {
        return Err(err(F, "must name exactly one action", hint));
    };
    let (kind, inner) = obj.iter().next().expect("one entry");
    match kind.as_str() {
        "signal" => {
            let name = inner.as_str().unwrap_or("");
            let bare = name.strip_prefix("SIG").unwrap_or(name);
            if !SIGNALS.contains(&bare) {
                return Err(err(
                    F,
                    format!("`{}` is not a signal the agent sends", name.escape_debug()),
                    format!("use one of {}", SIGNALS.join(", ")),
                ));
            }
            Ok(OnReload::Signal(bare.to_string()))
        }
        "command" => Ok(OnReload::Command(command(inner, F)?)),
        "http" => {
            let url = inner.get("url").and_then(Value::as_str).unwrap_or("");
            let method = inner
                .get("method")
                .and_then(Value::as_str)
                .unwrap_or("POST");
            let url_hint = "give an http:// or https:// URL, e.g. http://127.0.0.1:8080/-/reload";
            if url.len() > MAX_URL_BYTES {
                return Err(err(
                    F,
                    format!("the URL is over {MAX_URL_BYTES} bytes"),
                    url_hint,
                ));
            }
            if !(url.starts_with("http://") || url.starts_with("https://"))
                || url.chars().any(|c| c.is_control() || c.is_whitespace())
            {
                return Err(err(F, "the reload URL is not an http(s) URL", url_hint));
            }
            if !matches!(method, "GET" | "POST" | "PUT") {
                return Err(err(
                    F,
                    format!("method `{}` is not GET, POST or PUT", method.escape_debug()),
                    "use GET, POST or PUT",
                ));
            }
            Ok(OnReload::Http(HttpReload {
                url: url.to_string(),
                method: method.to_string(),
            }))
        }
        other => Err(err(
            F,
            format!("`{}` is not a reload action", other.escape_debug()),
            hint,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn checks_split_like_a_shell_and_keep_the_placeholder() {
        let a = parse(&json!({"check": "nginx -t -c '{path}'"})).unwrap();
        assert_eq!(a.check.unwrap(), ["nginx", "-t", "-c", "{path}"]);
        let a = parse(&json!({"check": ["sh", "-c", "test -s \"$1\"", "x", "{path}"]})).unwrap();
        assert_eq!(a.check.unwrap().len(), 5);
        assert!(parse(&json!({})).unwrap().is_empty());
    }

    #[test]
    fn bad_commands_are_refused_with_their_field() {
        for bad in [
            json!({"check": ""}),
            json!({"check": "nginx 'unclosed"}),
            json!({"check": []}),
            json!({"check": [1]}),
            json!({"check": "x".repeat(MAX_COMMAND_BYTES + 1)}),
            json!({"check": vec!["a"; MAX_ARGS + 1]}),
        ] {
            assert_eq!(parse(&bad).unwrap_err().field, "check", "{bad}");
        }
    }

    #[test]
    fn reload_actions_parse() {
        let r = |v| parse(&json!({ "onReload": v })).map(|a| a.on_reload.unwrap());
        assert_eq!(
            r(json!({"signal": "USR1"})),
            Ok(OnReload::Signal("USR1".into()))
        );
        assert_eq!(
            r(json!({"signal": "SIGHUP"})),
            Ok(OnReload::Signal("HUP".into()))
        );
        assert_eq!(r(json!("none")), Ok(OnReload::None));
        assert_eq!(
            r(json!({"command": "nginx -s reload"})),
            Ok(OnReload::Command(vec![
                "nginx".into(),
                "-s".into(),
                "reload".into()
            ]))
        );
        assert_eq!(
            r(json!({"http": {"url": "http://127.0.0.1:9090/-/reload"}})),
            Ok(OnReload::Http(HttpReload {
                url: "http://127.0.0.1:9090/-/reload".into(),
                method: "POST".into()
            }))
        );
        for bad in [
            json!({"signal": "KILL"}),
            json!({"signal": 1}),
            json!({"http": {"url": "file:///etc/passwd"}}),
            json!({"http": {"url": "http://x", "method": "DELETE"}}),
            json!({"signal": "HUP", "command": ["x"]}),
            json!({"exec": "x"}),
            json!("always"),
        ] {
            assert_eq!(r(bad.clone()).unwrap_err().field, "onReload", "{bad}");
        }
    }

    #[test]
    fn env_names_are_posix_ish() {
        for good in ["PATH", "db_password", "_X1"] {
            assert!(env_name_ok(good), "{good}");
        }
        for bad in ["", "1X", "A=B", "A B", "A\0", "A\n", "Ä", &"X".repeat(257)] {
            assert!(!env_name_ok(bad), "{bad:?}");
        }
    }

    #[test]
    fn env_entries_are_name_value_lines_and_errors_quote_no_value() {
        let vars = parse_env(b"# comment\n\nDB_URL=postgres://u:p@h/db?x=1\nEMPTY=\n").unwrap();
        assert_eq!(
            vars,
            [
                ("DB_URL".to_string(), "postgres://u:p@h/db?x=1".to_string()),
                ("EMPTY".to_string(), String::new())
            ]
        );
        let (line, msg) = parse_env(b"A=1\nno equals s3cret\n").unwrap_err();
        assert_eq!(line, 2);
        assert!(!msg.contains("s3cret"), "{msg}");
        assert_eq!(parse_env(b"A=1\nA=2\n").unwrap_err().0, 2);
        assert_eq!(parse_env(b"1A=x\n").unwrap_err().0, 1);
        assert!(parse_env(b"A=x\0y\n").is_err());
        assert!(parse_env(b"\xff").is_err());
        let many: String = (0..=MAX_ENV_VARS).map(|i| format!("V{i}=x\n")).collect();
        assert!(parse_env(many.as_bytes()).is_err());
        let e = parse(&json!({"env": true, "check": "true"})).unwrap_err();
        assert_eq!(e.field, "env");
        assert!(parse(&json!({"env": true})).unwrap().env);
    }

    #[test]
    fn actions_round_trip_as_the_manifest_spells_them() {
        let a = FileActions {
            check: Some(vec!["true".into()]),
            on_reload: Some(OnReload::Signal("USR2".into())),
            env: false,
        };
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(
            v,
            json!({"check": ["true"], "onReload": {"signal": "USR2"}})
        );
        assert_eq!(serde_json::from_value::<FileActions>(v).unwrap(), a);
        let none = serde_json::to_value(OnReload::None).unwrap();
        assert_eq!(none, json!("none"));
    }
}
