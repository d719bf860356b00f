//! A problem found in the config repo, located at `file:line:column`.

use serde::Serialize;
use std::borrow::Cow;
use std::fmt;

/// A path as Git prints it: as is when it is plain, else C-style quoted in
/// `"…"` (`"apps/\033[31mweb"`), so a name with a newline or a terminal
/// escape can't forge output lines or repaint the terminal.
pub fn quote_path(path: &str) -> Cow<'_, str> {
    if !path
        .chars()
        .any(|c| c.is_control() || c == '"' || c == '\\')
    {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len() + 2);
    out.push('"');
    out.push_str(&escape_controls(path, true));
    out.push('"');
    Cow::Owned(out)
}

/// Control characters as C escapes (`\n`, `\t`, `\033`); with `quotes`,
/// `"` and `\` are escaped too.
fn escape_controls(text: &str, quotes: bool) -> Cow<'_, str> {
    let special = |c: char| c.is_control() || (quotes && (c == '"' || c == '\\'));
    if !text.chars().any(special) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '"' if quotes => out.push_str("\\\""),
            '\\' if quotes => out.push_str("\\\\"),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\{b:03o}"));
                }
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, PartialOrd, Ord)]
pub struct Diagnostic {
    /// The repo-relative path (`apps/web/app.yaml`).
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
    /// How to fix it, when pacer can tell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn file(file: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.into(),
            line: None,
            column: None,
            message: message.into(),
            hint: None,
        }
    }

    pub fn at(
        file: impl Into<String>,
        line: usize,
        column: usize,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            line: Some(line),
            column: Some(column),
            ..Diagnostic::file(file, message)
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_position(mut self, pos: Option<(usize, usize)>) -> Self {
        if let Some((line, column)) = pos {
            self.line = Some(line);
            self.column = Some(column);
        }
        self
    }
}

/// `path:line:column: message`, the form editors and CI annotators parse,
/// followed by an indented hint line. Control characters never reach the
/// terminal raw: the path is quoted as Git does, the text escaped.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&quote_path(&self.file))?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        write!(f, ": {}", escape_controls(&self.message, false))?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {}", escape_controls(hint, false))?;
        }
        Ok(())
    }
}

/// Every problem found in one run, in file order.
#[derive(Debug, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Sorted by file and position, without repeats, so output is stable.
    pub fn finish(mut self) -> Vec<Diagnostic> {
        self.0.sort();
        self.0.dedup();
        self.0
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_with_control_characters_are_quoted_as_git_does() {
        assert_eq!(quote_path("apps/web/app.yaml"), "apps/web/app.yaml");
        assert_eq!(
            quote_path("apps/\x1b[31mweb/app.yaml"),
            "\"apps/\\033[31mweb/app.yaml\""
        );
        assert_eq!(quote_path("apps/a\nok: b"), "\"apps/a\\nok: b\"");
        assert_eq!(quote_path("apps/a\"b\\c"), "\"apps/a\\\"b\\\\c\"");
        assert_eq!(quote_path("apps/é"), "apps/é");
    }

    #[test]
    fn a_diagnostic_prints_no_raw_control_characters() {
        let d = Diagnostic::at("apps/x\n/app.yaml", 1, 2, "bad `apps/x\n`\x1b[2J")
            .with_hint("rename\r");
        let text = d.to_string();
        assert_eq!(
            text,
            "\"apps/x\\n/app.yaml\":1:2: bad `apps/x\\n`\\033[2J\n  hint: rename\\r"
        );
        assert_eq!(text.lines().count(), 2, "{text}");
    }
}
