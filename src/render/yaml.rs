//! YAML in, JSON values out, and the way back from a JSON pointer to the
//! line and column it came from.
//!
//! Parsing uses serde_yaml; positions come from a second, event-level pass
//! with saphyr-parser that runs only when a diagnostic needs a location, so
//! the happy path parses each file once.

use super::Diagnostic;
use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use serde_json::Value;

/// Parses a YAML document into JSON data. An empty document is an empty map.
pub fn parse(path: &str, text: &str) -> Result<Value, Diagnostic> {
    parse_within(path, text, super::Budgets::default().yaml_expanded_bytes)
}

/// [`parse`], refusing a document that would expand to more than
/// `max_expanded` bytes (see [`expanded_size`]).
pub fn parse_within(path: &str, text: &str, max_expanded: usize) -> Result<Value, Diagnostic> {
    if text.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    // Without an anchor and an alias, a document is no bigger than its text,
    // which the source already bounds: skip the extra pass.
    if text.contains('&')
        && text.contains('*')
        && let Err(over) = expanded_size(text, max_expanded)
    {
        return Err(Diagnostic::at(
                path,
                over.line,
                over.column,
                format!(
                    "YAML aliases expand this document to more than {}",
                    super::budget::bytes(max_expanded)
                ),
            )
            .with_hint("repeat less through aliases (`*name`): write the values out, or share them through an overlay"));
    }
    // Through serde_yaml's own Value: it refuses duplicate keys, which a
    // direct parse into JSON would silently resolve to the last one.
    match serde_yaml::from_str::<serde_yaml::Value>(text) {
        Ok(serde_yaml::Value::Null) => Ok(Value::Object(Default::default())),
        Ok(v) => serde_json::to_value(&v).map_err(|e| {
            Diagnostic::file(path, format!("unsupported YAML: {e}"))
                .with_position(unsupported_key(text).map(|(l, c)| within(text, l, c)))
                .with_hint("keys must be strings, and values plain data (no tags)")
        }),
        Err(e) => {
            let (mut line, mut column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((1, 1));
            // serde_yaml points a duplicate key at the start of its map;
            // the reader wants the second occurrence.
            if let Some(key) = duplicate_key(&e.to_string())
                && let Some(at) = second_occurrence(text, &key, line, column)
            {
                (line, column) = at;
            }
            (line, column) = within(text, line, column);
            // serde_yaml appends " at line X column Y"; the location is
            // printed in front instead, so drop the duplicate.
            let msg = e.to_string();
            let msg = match msg.find(" at line ") {
                Some(i) => msg[..i].to_string(),
                None => msg,
            };
            Err(
                Diagnostic::at(path, line, column, format!("invalid YAML: {msg}"))
                    .with_hint("check the indentation and quoting around this line"),
            )
        }
    }
}

/// Where a document passed its expansion budget: the alias that did it.
#[derive(Debug, PartialEq, Eq)]
pub struct Overflow {
    pub line: usize,
    pub column: usize,
}

/// The size of a document once every alias is replaced by a copy of its
/// anchored node: the bytes of every scalar plus `YAML_NODE_BYTES` per node.
/// Stops at the first node that takes it over `limit`, so a billion-laughs
/// document costs one streaming pass, not its expansion. A document that
/// doesn't parse is left to the real parser to report.
pub fn expanded_size(text: &str, limit: usize) -> Result<usize, Overflow> {
    use super::budget::YAML_NODE_BYTES;
    let mut parser = Parser::new_from_str(text);
    // The expanded size of every anchor seen so far, by id.
    let mut anchors: std::collections::HashMap<usize, usize> = Default::default();
    // Open collections: (anchor id, size when it started).
    let mut open: Vec<(usize, usize)> = Vec::new();
    let mut total: usize = 0;
    while let Some(Ok((event, span))) = parser.next_event() {
        let node = match event {
            Event::Scalar(value, _, anchor, _) => {
                let n = value.len().saturating_add(YAML_NODE_BYTES);
                if anchor != 0 {
                    anchors.insert(anchor, n);
                }
                n
            }
            Event::Alias(id) => anchors.get(&id).copied().unwrap_or(YAML_NODE_BYTES),
            Event::MappingStart(anchor, _) | Event::SequenceStart(anchor, _) => {
                open.push((anchor, total));
                YAML_NODE_BYTES
            }
            Event::MappingEnd | Event::SequenceEnd => {
                if let Some((anchor, start)) = open.pop()
                    && anchor != 0
                {
                    anchors.insert(anchor, total - start);
                }
                0
            }
            Event::StreamEnd => break,
            _ => 0,
        };
        total = total.saturating_add(node);
        if total > limit {
            return Err(Overflow {
                line: span.start.line(),
                column: span.start.col() + 1,
            });
        }
    }
    Ok(total)
}

/// The 1-based line and column of the first mapping key JSON can't hold: a
/// list, a map or `null`.
fn unsupported_key(text: &str) -> Option<(usize, usize)> {
    // One entry per open collection: for a map, whether a key comes next.
    let mut open: Vec<Option<bool>> = Vec::new();
    fn node_done(open: &mut [Option<bool>]) {
        if let Some(Some(key_next)) = open.last_mut() {
            *key_next = !*key_next;
        }
    }
    let mut parser = Parser::new_from_str(text);
    while let Some(Ok((event, span))) = parser.next_event() {
        let at_key = matches!(open.last(), Some(Some(true)));
        let here = Some((span.start.line(), span.start.col() + 1));
        match event {
            Event::Scalar(v, ScalarStyle::Plain, ..)
                if at_key && matches!(v.as_ref(), "" | "~" | "null" | "Null" | "NULL") =>
            {
                return here;
            }
            Event::Scalar(..) | Event::Alias(_) => node_done(&mut open),
            Event::MappingStart(..) | Event::SequenceStart(..) if at_key => return here,
            Event::MappingStart(..) => open.push(Some(true)),
            Event::SequenceStart(..) => open.push(None),
            Event::MappingEnd | Event::SequenceEnd => {
                open.pop();
                node_done(&mut open);
            }
            Event::StreamEnd => break,
            _ => {}
        }
    }
    None
}

/// At the end of a file without a final line break, the parsers count one
/// line more than the file has: such a position becomes the file's end.
fn within(text: &str, line: usize, column: usize) -> (usize, usize) {
    let unix = text.replace("\r\n", "\n");
    let lines: Vec<&str> = unix.split(['\n', '\r']).collect();
    if line > lines.len() {
        let end = lines.last().map_or(0, |l| l.chars().count());
        (lines.len(), end + 1)
    } else {
        (line, column)
    }
}

fn duplicate_key(msg: &str) -> Option<String> {
    let rest = msg.split("duplicate entry with key \"").nth(1)?;
    Some(rest[..rest.find('"')?].to_string())
}

/// The line of the second `key:` at the indentation of the map that starts
/// at `line`:`column`.
fn second_occurrence(text: &str, key: &str, line: usize, column: usize) -> Option<(usize, usize)> {
    let indent = column.saturating_sub(1);
    let mut seen = 0;
    for (i, l) in text.lines().enumerate().skip(line.saturating_sub(1)) {
        let leading = l.len() - l.trim_start().len();
        if leading < indent && !l.trim().is_empty() && i + 1 > line {
            break; // the map ended
        }
        let bare = l.trim_start().trim_start_matches(['"', '\'']);
        let is_key = bare
            .strip_prefix(key)
            .is_some_and(|rest| rest.trim_start_matches(['"', '\'']).starts_with(':'));
        if leading == indent && is_key {
            seen += 1;
            if seen == 2 {
                return Some((i + 1, indent + 1));
            }
        }
    }
    None
}

/// Which part of a `key: value` pair a location should point at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Key,
    Value,
}

/// The 1-based line and column of the node at `pointer` (RFC 6901), or of its
/// nearest ancestor present in the text.
pub fn locate(text: &str, pointer: &str, target: Target) -> Option<(usize, usize)> {
    let want: Vec<String> = if pointer.is_empty() {
        Vec::new()
    } else {
        pointer
            .trim_start_matches('/')
            .split('/')
            .map(|s| s.replace("~1", "/").replace("~0", "~"))
            .collect()
    };
    let mut best: Option<Span> = None;
    let mut parser = Parser::new_from_str(text);
    // One frame per open collection: (is_mapping, next index or pending key).
    enum Frame {
        Map { key: Option<(String, Span)> },
        Seq { index: usize },
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut path: Vec<String> = Vec::new();

    // Called for each complete node start; returns the node's path segment
    // (None for a mapping key, which is not a node of the data).
    fn enter(stack: &mut [Frame], path: &[String]) -> Option<(Vec<String>, Option<Span>)> {
        match stack.last_mut() {
            None => Some((path.to_vec(), None)),
            Some(Frame::Seq { index }) => {
                let mut p = path.to_vec();
                p.push(index.to_string());
                *index += 1;
                Some((p, None))
            }
            Some(Frame::Map { key }) => match key.take() {
                Some((k, span)) => {
                    let mut p = path.to_vec();
                    p.push(k);
                    Some((p, Some(span)))
                }
                None => None,
            },
        }
    }

    while let Some(Ok((event, span))) = parser.next_event() {
        match event {
            Event::Scalar(value, ..) => match enter(&mut stack, &path) {
                None => {
                    if let Some(Frame::Map { key }) = stack.last_mut() {
                        *key = Some((value.into_owned(), span));
                    }
                }
                Some((p, key_span)) => {
                    record(&want, &p, span, key_span, target, &mut best);
                }
            },
            Event::Alias(_) => {
                if let Some((p, key_span)) = enter(&mut stack, &path) {
                    record(&want, &p, span, key_span, target, &mut best);
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_map = matches!(event, Event::MappingStart(..));
                match enter(&mut stack, &path) {
                    Some((p, key_span)) => {
                        record(&want, &p, span, key_span, target, &mut best);
                        path = p;
                    }
                    // A complex key: give it a placeholder segment.
                    None => path.push("?".into()),
                }
                stack.push(if is_map {
                    Frame::Map { key: None }
                } else {
                    Frame::Seq { index: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                path.pop();
            }
            Event::StreamEnd => break,
            _ => {}
        }
    }
    best.map(|s| within(text, s.start.line(), s.start.col() + 1))
}

/// Keeps the span of the deepest node on the way to `want`.
fn record(
    want: &[String],
    path: &[String],
    span: Span,
    key_span: Option<Span>,
    target: Target,
    best: &mut Option<Span>,
) {
    if path.len() > want.len() || want[..path.len()] != *path {
        return;
    }
    let exact = path.len() == want.len();
    let chosen = match (target, key_span) {
        (Target::Key, Some(k)) if exact => k,
        // For an ancestor, its key reads better than the start of its block.
        (_, Some(k)) if !exact => k,
        _ => span,
    };
    *best = Some(chosen);
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
marathon:
  cpus: 0.5
  env:
    A: x
  constraints:
    - [hostname, UNIQUE]
    - [rack, GROUP_BY, '3']
files:
  nginx.conf: {path: /etc/nginx.conf}
";

    #[test]
    fn locates_keys_and_values() {
        assert_eq!(locate(DOC, "/marathon/cpus", Target::Key), Some((2, 3)));
        assert_eq!(locate(DOC, "/marathon/cpus", Target::Value), Some((2, 9)));
        assert_eq!(locate(DOC, "/marathon/env/A", Target::Value), Some((4, 8)));
        assert_eq!(
            locate(DOC, "/marathon/constraints/1/2", Target::Value),
            Some((7, 24))
        );
        assert_eq!(
            locate(DOC, "/files/nginx.conf/path", Target::Value),
            Some((9, 22))
        );
    }

    #[test]
    fn falls_back_to_the_nearest_ancestor() {
        assert_eq!(locate(DOC, "/marathon/mem", Target::Value), Some((1, 1)));
        assert_eq!(locate(DOC, "/marathon/env/B", Target::Key), Some((3, 3)));
        assert_eq!(locate(DOC, "", Target::Value), Some((1, 1)));
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let d = parse("a.yaml", "m:\n  mem: 1\n  mem: 2\n").unwrap_err();
        assert_eq!((d.line, d.column), (Some(3), Some(3)));
        assert!(
            d.message.contains("duplicate entry with key \"mem\""),
            "{}",
            d.message
        );
    }

    /// Found by fuzzing: a key JSON can't hold (a list, a map, `null`)
    /// was reported without a line.
    #[test]
    fn unsupported_keys_carry_a_location() {
        for (text, at) in [
            ("a: 1\n? [complex, key]\n: v\n", (2, 3)),
            ("a:\n  b: 1\n  {x: 1}: 2\n", (3, 3)),
            ("a: 1\n~: 2\n", (2, 1)),
            // An empty key at the end of a file with no line break: the
            // parser's position is past the last line (found by fuzzing).
            ("?  ", (1, 4)),
        ] {
            let d = parse("a.yaml", text).unwrap_err();
            assert!(d.message.starts_with("unsupported YAML"), "{d:?}");
            assert_eq!((d.line, d.column), (Some(at.0), Some(at.1)), "{text:?}");
        }
    }

    /// Found by fuzzing: an error at the end of a file without a final
    /// line break pointed one line past its end.
    #[test]
    fn errors_at_the_end_point_into_the_file() {
        let d = parse("a.yaml", "- re[:\n  m").unwrap_err();
        assert_eq!((d.line, d.column), (Some(2), Some(4)), "{d:?}");
        assert_eq!(locate("? H", "/H", Target::Value), Some((1, 4)));
    }

    #[test]
    fn alias_amplification_is_refused_at_the_alias() {
        let mut doc = format!("a: &a \"{}\"\n", "x".repeat(1000));
        doc.push_str("b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n");
        doc.push_str("c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n");
        doc.push_str("d: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n");
        // 1,000 bytes behind 729 copies, plus 32 bytes a node: ~850 KB.
        let size = expanded_size(&doc, usize::MAX).unwrap();
        assert!((729_000..900_000).contains(&size), "{size}");
        assert_eq!(
            expanded_size(&doc, 100_000),
            Err(Overflow { line: 4, column: 5 })
        );
        let d = parse_within("a.yaml", &doc, 100_000).unwrap_err();
        assert_eq!((d.line, d.column), (Some(4), Some(5)));
        assert!(
            d.message
                .contains("aliases expand this document to more than"),
            "{}",
            d.message
        );
        // Within the budget, aliases are fine.
        let v = parse_within("a.yaml", "a: &x {k: 1}\nb: *x\n", 1000).unwrap();
        assert_eq!(v["b"]["k"], 1);
    }

    #[test]
    fn parse_errors_carry_a_location() {
        let d = parse("a.yaml", "a: [1, 2\nb: 3\n").unwrap_err();
        assert_eq!(d.file, "a.yaml");
        assert!(d.line.is_some());
        assert!(d.message.starts_with("invalid YAML"), "{}", d.message);
    }
}
