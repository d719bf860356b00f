//! pacer's own rules on rendered values, beyond Marathon's: pure functions
//! the renderer calls with what a layer holds.

use super::labels;

/// Why an environment variable name can't be used, if it can't. Marathon
/// 1.10 takes any key, but a name that is empty, holds `=` or a control
/// character can't be set in a process's environment (or forges another
/// variable), so the task would start without it or not at all.
pub fn env_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name.contains('=') {
        Some("contains `=`")
    } else if name.chars().any(char::is_control) {
        Some("contains a control character (a newline, tab or NUL)")
    } else {
        None
    }
}

/// The rule an environment variable name breaks, for hints.
pub const ENV_NAME_RULE: &str = "names are letters, digits and `_` (e.g. `LOG_LEVEL`); never empty, without `=` or control characters";

/// Why a label can't be sent, if it can't. Marathon 1.10 takes any
/// string, but a label name with a space or a control character, or a
/// value with a carriage return, NUL or another control character, is a
/// header or a line forged into whatever reads labels (Marathon-LB's
/// HAProxy config, the task's `MARATHON_APP_LABEL_*` variables, a proxy
/// copying them into headers). A value may hold `\n` and `\t`: Marathon-LB's
/// `HAPROXY_{n}_*` templates are multi-line. The value is never quoted:
/// it may be a secret's.
pub fn label_problem(name: &str, value: &str) -> Option<&'static str> {
    if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        Some("has a name with a space or a control character")
    } else if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        Some("has a value with a carriage return, NUL or another control character")
    } else {
        None
    }
}

/// The rule a label breaks, for hints.
pub const LABEL_RULE: &str = "label names are printable without spaces; values may hold newlines and tabs but no other control character (a `\\r\\n` would forge a header or a line in whatever reads the label)";

/// A task path with `.` and `..` resolved, or why it is refused: it must be
/// absolute and stay under `/`, and hold no control characters.
pub fn normalise_task_path(path: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!("path `{path}` is not absolute"));
    }
    if path.chars().any(char::is_control) {
        return Err("path contains a control character".into());
    }
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!("path `{path}` climbs above `/` through `..`"));
                }
            }
            s => parts.push(s),
        }
    }
    if parts.is_empty() {
        return Err(format!("path `{path}` names the root, not a file"));
    }
    Ok(format!("/{}", parts.join("/")))
}

/// An `ignore` pointer that would hide pacer's own `pacer.*` labels: the
/// whole app (`""`, `/`), all labels (`/labels`) or one of pacer's.
pub fn ignore_hides_pacer_labels(pointer: &str) -> bool {
    if pointer.is_empty() || pointer == "/" || pointer == "/labels" {
        return true;
    }
    pointer.strip_prefix("/labels/").is_some_and(|key| {
        key.replace("~1", "/")
            .replace("~0", "~")
            .starts_with(labels::PREFIX)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_must_be_settable() {
        assert_eq!(env_name_problem("LOG_LEVEL"), None);
        assert_eq!(env_name_problem("x.y-z"), None);
        assert_eq!(env_name_problem(""), Some("is empty"));
        assert_eq!(env_name_problem("A=B"), Some("contains `=`"));
        for bad in ["A\nB", "A\0", "A\tB", "\u{1b}[2J"] {
            assert!(
                env_name_problem(bad).unwrap().contains("control"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn task_paths_are_normalised_and_stay_under_root() {
        assert_eq!(
            normalise_task_path("/etc/app.conf").unwrap(),
            "/etc/app.conf"
        );
        assert_eq!(
            normalise_task_path("/etc/./nginx/../app.conf").unwrap(),
            "/etc/app.conf"
        );
        assert_eq!(normalise_task_path("//etc//a").unwrap(), "/etc/a");
        for bad in [
            "/../../root/.ssh/authorized_keys",
            "/etc/../../x",
            "/..",
            "/",
            "/etc/..",
            "etc/a",
            "/etc/a\nb",
        ] {
            assert!(normalise_task_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn labels_forge_no_header_or_line() {
        assert_eq!(label_problem("HAPROXY_0_VHOST", "www.example.com"), None);
        // Marathon-LB's templates are multi-line.
        assert_eq!(
            label_problem(
                "HAPROXY_0_BACKEND_HEAD",
                "\nbackend {backend}\n\tbalance {balance}\n"
            ),
            None
        );
        for (name, value) in [
            ("HAPROXY_0_VHOST", "www.example.com\r\nX-Injected: yes"),
            ("HAPROXY_0_VHOST", "a\rb"),
            ("team", "a\0b"),
            ("team", "a\u{1b}[31m"),
            ("X-Team\r\nX-Injected", "yes"),
            ("two words", "x"),
            ("tab\tname", "x"),
        ] {
            let p = label_problem(name, value);
            assert!(p.is_some(), "{name:?}: {value:?}");
            assert!(!p.unwrap().contains("Injected"));
        }
    }

    #[test]
    fn pacer_labels_cant_be_ignored() {
        for p in [
            "",
            "/",
            "/labels",
            "/labels/pacer.env",
            "/labels/pacer.config-hash",
        ] {
            assert!(ignore_hides_pacer_labels(p), "{p:?}");
        }
        for p in ["/instances", "/labels/team", "/labelsx", "/env/pacer.x"] {
            assert!(!ignore_hides_pacer_labels(p), "{p:?}");
        }
    }
}
