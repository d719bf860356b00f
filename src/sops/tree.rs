//! The YAML document as sops walks it: keys in file order, each scalar with
//! its raw text, its style and where it sits in the text, so that values can
//! be replaced in place (the file's comments, order and formatting stay).
//!
//! serde's data model can't serve here: it sorts keys (sops' MAC is over
//! the values in file order) and forgets how a scalar was written (sops
//! types a plain `1.50` as a float, a quoted one as a string).

use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use std::ops::Range;

/// A node of the document.
#[derive(Clone, Debug)]
pub enum Node {
    Map(Vec<(Key, Node)>),
    Seq(Vec<Node>),
    Scalar(Scalar),
}

#[derive(Clone, Debug)]
pub struct Key {
    pub name: String,
    /// Byte range of the key in the text.
    pub span: Range<usize>,
    pub line: usize,
}

#[derive(Clone, Debug)]
pub struct Scalar {
    /// The value as YAML reads it (quotes and escapes resolved).
    pub value: String,
    /// Written without quotes or block indicator: typed by its text.
    pub plain: bool,
    /// Byte range to replace to change the value: the quotes of a quoted
    /// scalar and the indicator of a block scalar included. `None` for an
    /// alias' copy, which has no place of its own.
    pub span: Option<Range<usize>>,
    /// 1-based line of the value.
    pub line: usize,
    /// Inside a flow collection (`{...}`, `[...]`): a replacement must be quoted.
    pub in_flow: bool,
    /// Carries an anchor or a tag: it can't be replaced without losing it.
    pub decorated: bool,
}

/// Why a document can't be walked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub message: String,
}

/// The bound on nodes (aliases expanded) in one document: far above any
/// config file, far below what would hurt.
pub const MAX_NODES: usize = 200_000;

/// Parses the first document of `text`. Only a map at the top is a config
/// file; a second document is refused (sops would read it as another tree).
pub fn parse(text: &str) -> Result<Node, Problem> {
    let offsets = byte_offsets(text);
    let at = |i: usize| offsets.get(i).copied().unwrap_or(text.len());
    let mut parser = Parser::new_from_str(text);
    let mut anchors: std::collections::HashMap<usize, Node> = Default::default();
    // Open collections: the node being built, its anchor, whether it is flow.
    enum Open {
        Map(Vec<(Key, Node)>, Option<Key>),
        Seq(Vec<Node>),
    }
    let mut stack: Vec<(Open, usize, bool)> = Vec::new();
    let mut root: Option<Node> = None;
    let mut nodes = 0usize;
    let mut documents = 0usize;
    loop {
        let (event, span) = match parser.next_event() {
            None => break,
            Some(Ok(e)) => e,
            Some(Err(e)) => {
                return Err(Problem {
                    line: e.marker().line(),
                    message: format!("invalid YAML: {}", e.info()),
                });
            }
        };
        let line = span.start.line();
        let in_flow = stack.iter().any(|(_, _, flow)| *flow);
        let done: Option<(Node, usize)> = match event {
            Event::StreamEnd => break,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(Problem {
                        line,
                        message: "a second YAML document (`---`): a config file holds one".into(),
                    });
                }
                None
            }
            Event::Scalar(value, style, anchor, tag) => {
                let key_next = matches!(stack.last(), Some((Open::Map(_, None), _, _)));
                if key_next {
                    let start = at(span.start.index());
                    let end = at(span.end.index());
                    if let Some((Open::Map(_, pending), _, _)) = stack.last_mut() {
                        *pending = Some(Key {
                            name: value.into_owned(),
                            span: start..end,
                            line,
                        });
                    }
                    continue;
                }
                let range = value_range(text, &span, style, &at);
                Some((
                    Node::Scalar(Scalar {
                        value: value.into_owned(),
                        plain: style == ScalarStyle::Plain && tag.is_none(),
                        span: Some(range),
                        line,
                        in_flow,
                        decorated: anchor != 0 || tag.is_some(),
                    }),
                    anchor,
                ))
            }
            Event::Alias(id) => {
                if matches!(stack.last(), Some((Open::Map(_, None), _, _))) {
                    return Err(Problem {
                        line,
                        message: "an alias as a map key".into(),
                    });
                }
                let node = anchors.get(&id).cloned().ok_or(Problem {
                    line,
                    message: "an alias to an unknown anchor".into(),
                })?;
                nodes = nodes.saturating_add(count(&node));
                Some((detach(node), 0))
            }
            Event::MappingStart(anchor, _) | Event::SequenceStart(anchor, _) => {
                if matches!(stack.last(), Some((Open::Map(_, None), _, _))) {
                    return Err(Problem {
                        line,
                        message: "a map or list as a map key".into(),
                    });
                }
                let flow = text[at(span.start.index())..].starts_with(['{', '[']);
                let open = if matches!(event, Event::MappingStart(..)) {
                    Open::Map(Vec::new(), None)
                } else {
                    Open::Seq(Vec::new())
                };
                stack.push((open, anchor, flow));
                None
            }
            Event::MappingEnd | Event::SequenceEnd => match stack.pop() {
                Some((Open::Map(items, _), anchor, _)) => Some((Node::Map(items), anchor)),
                Some((Open::Seq(items), anchor, _)) => Some((Node::Seq(items), anchor)),
                None => None,
            },
            _ => None,
        };
        let Some((node, anchor)) = done else { continue };
        nodes += 1;
        if nodes > MAX_NODES {
            return Err(Problem {
                line,
                message: format!("more than {MAX_NODES} values (aliases expanded)"),
            });
        }
        if anchor != 0 {
            anchors.insert(anchor, node.clone());
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some((Open::Seq(items), _, _)) => items.push(node),
            Some((Open::Map(items, pending), _, _)) => {
                if let Some(key) = pending.take() {
                    items.push((key, node));
                }
            }
        }
    }
    match root {
        None => Ok(Node::Map(Vec::new())),
        Some(Node::Scalar(s)) if s.plain && is_null(&s.value) => Ok(Node::Map(Vec::new())),
        Some(n @ Node::Map(_)) => Ok(n),
        Some(_) => Err(Problem {
            line: 1,
            message: "expected a map at the top of the file".into(),
        }),
    }
}

/// A copy made through an alias has no text of its own to replace.
fn detach(node: Node) -> Node {
    match node {
        Node::Scalar(mut s) => {
            s.span = None;
            Node::Scalar(s)
        }
        Node::Seq(items) => Node::Seq(items.into_iter().map(detach).collect()),
        Node::Map(items) => Node::Map(items.into_iter().map(|(k, v)| (k, detach(v))).collect()),
    }
}

fn count(node: &Node) -> usize {
    match node {
        Node::Scalar(_) => 1,
        Node::Seq(items) => 1 + items.iter().map(count).sum::<usize>(),
        Node::Map(items) => 1 + items.iter().map(|(_, v)| count(v)).sum::<usize>(),
    }
}

/// Byte offset of each char index (and of the end).
fn byte_offsets(text: &str) -> Vec<usize> {
    let mut v: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    v.push(text.len());
    v
}

/// The text a replacement of this scalar covers. The parser's span of a
/// block scalar starts at its content; the indicator (`|`, `>-`) before it
/// belongs to the value too. Its final line break stays.
fn value_range(
    text: &str,
    span: &Span,
    style: ScalarStyle,
    at: &impl Fn(usize) -> usize,
) -> Range<usize> {
    let (start, mut end) = (at(span.start.index()), at(span.end.index()));
    if matches!(style, ScalarStyle::Literal | ScalarStyle::Folded) {
        let before = &text[..start];
        let indicator = before.rfind(['|', '>']).unwrap_or(start);
        let body = &text[indicator..end];
        let trimmed = body.trim_end_matches(['\n', '\r', ' ', '\t']);
        end = indicator + trimmed.len();
        return indicator..end.max(indicator);
    }
    if end < start {
        end = start;
    }
    start..end
}

/// YAML's null as yaml.v3 reads a plain scalar.
pub fn is_null(s: &str) -> bool {
    matches!(s, "" | "~" | "null" | "Null" | "NULL")
}

/// A leaf in walk order, with its sops path (keys only: sops leaves list
/// indexes out of the path, and so out of the additional data).
pub struct Leaf<'a> {
    pub path: Vec<&'a str>,
    /// JSON pointer of the value, indexes included.
    pub pointer: String,
    pub scalar: &'a Scalar,
}

/// Every scalar of `node` below `path`, in file order.
pub fn leaves<'a>(node: &'a Node, path: &mut Vec<&'a str>, pointer: &str, out: &mut Vec<Leaf<'a>>) {
    match node {
        Node::Scalar(s) => out.push(Leaf {
            path: path.clone(),
            pointer: pointer.to_string(),
            scalar: s,
        }),
        Node::Seq(items) => {
            for (i, n) in items.iter().enumerate() {
                leaves(n, path, &format!("{pointer}/{i}"), out);
            }
        }
        Node::Map(items) => {
            for (k, v) in items {
                path.push(&k.name);
                let p = format!("{pointer}/{}", escape(&k.name));
                leaves(v, path, &p, out);
                path.pop();
            }
        }
    }
}

/// RFC 6901 escaping of one pointer segment.
pub fn escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// The typed value of a plain scalar, as yaml.v3 (and so sops) reads it.
#[derive(Clone, Debug, PartialEq)]
pub enum Typed {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
}

/// yaml.v3's resolution of a scalar: quoted and block scalars are strings;
/// a plain one may be null, a bool, an int (decimal, `0x`, `0o`, `0b`, or a
/// leading `0` for octal, as Go's `ParseInt(s, 0, 64)` reads it) or a float.
pub fn resolve(s: &Scalar) -> Typed {
    if !s.plain {
        return Typed::Str(s.value.clone());
    }
    resolve_plain(&s.value)
}

pub fn resolve_plain(v: &str) -> Typed {
    if is_null(v) {
        return Typed::Null;
    }
    match v {
        "true" | "True" | "TRUE" => return Typed::Bool(true),
        "false" | "False" | "FALSE" => return Typed::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Typed::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Typed::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Typed::Float(f64::NAN),
        _ => {}
    }
    // yaml.v3 drops every underscore before it tries a number.
    let plain = v.replace('_', "");
    if let Some(i) = go_int(&plain) {
        return Typed::Int(i);
    }
    if is_yaml_float(&plain)
        && let Ok(f) = plain.parse::<f64>()
    {
        return Typed::Float(f);
    }
    Typed::Str(v.to_string())
}

/// Go's `strconv.ParseInt(s, 0, 64)`, then `ParseUint`: a sign, then a base
/// prefix (`0x`, `0o`, `0b`, or a bare leading `0` for octal).
fn go_int(v: &str) -> Option<i128> {
    let (neg, body) = match v.as_bytes().first()? {
        b'-' => (true, &v[1..]),
        b'+' => (false, &v[1..]),
        _ => (false, v),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(r) = lower.strip_prefix("0x") {
        (16, r)
    } else if let Some(r) = lower.strip_prefix("0o") {
        (8, r)
    } else if let Some(r) = lower.strip_prefix("0b") {
        (2, r)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let n = u64::from_str_radix(digits, radix).ok()? as i128;
    if neg {
        // ParseUint never takes a sign: a negative must fit an i64.
        (n <= 1i128 << 63).then_some(-n)
    } else {
        Some(n)
    }
}

/// yaml.v3's float pattern: `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`.
fn is_yaml_float(v: &str) -> bool {
    let b = v.trim_start_matches(['-', '+']);
    if b.len() + 1 < v.len() {
        return false;
    }
    let (mantissa, exp) = match b.find(['e', 'E']) {
        Some(i) => (&b[..i], Some(&b[i + 1..])),
        None => (b, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", frac)) => digits(frac),
        Some((int, frac)) => digits(int) && (frac.is_empty() || digits(frac)),
        None => digits(mantissa),
    };
    let exp_ok = exp.is_none_or(|e| {
        digits(e.trim_start_matches(['-', '+']))
            && e.len() - e.trim_start_matches(['-', '+']).len() <= 1
    });
    mantissa_ok && exp_ok
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`: the shortest digits that
/// read back the same, never an exponent.
pub fn go_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f == f64::INFINITY {
        "+Inf".into()
    } else if f == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        // Rust's Display is the same: shortest round-trip, no exponent.
        format!("{f}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_cover_what_a_replacement_must() {
        let text = "a: plain # c\nb: \"dq\"\nd: |-\n  one\n  two\ne: [x, 'y']\n";
        let Node::Map(items) = parse(text).unwrap() else {
            panic!()
        };
        let span = |i: usize| match &items[i].1 {
            Node::Scalar(s) => &text[s.span.clone().unwrap()],
            _ => panic!(),
        };
        assert_eq!(span(0), "plain");
        assert_eq!(span(1), "\"dq\"");
        assert_eq!(span(2), "|-\n  one\n  two");
        let Node::Seq(list) = &items[3].1 else {
            panic!()
        };
        let Node::Scalar(y) = &list[1] else { panic!() };
        assert!(y.in_flow && !y.plain);
        assert_eq!(&text[y.span.clone().unwrap()], "'y'");
    }

    #[test]
    fn plain_scalars_resolve_as_yaml_v3_does() {
        for (v, want) in [
            ("1", Typed::Int(1)),
            ("-0x10", Typed::Int(-16)),
            ("017", Typed::Int(15)),
            ("0o17", Typed::Int(15)),
            ("1.50", Typed::Float(1.5)),
            (".5e1", Typed::Float(5.0)),
            ("1e3", Typed::Float(1000.0)),
            ("True", Typed::Bool(true)),
            ("yes", Typed::Str("yes".into())),
            ("~", Typed::Null),
            ("2024-01-01", Typed::Str("2024-01-01".into())),
            ("1_000", Typed::Int(1000)),
            ("09", Typed::Float(9.0)),
        ] {
            assert_eq!(resolve_plain(v), want, "{v}");
        }
        assert_eq!(go_float(1000.0), "1000");
        assert_eq!(go_float(0.1), "0.1");
        assert_eq!(go_float(1e-7), "0.0000001");
    }

    #[test]
    fn aliases_are_copies_without_a_place() {
        let Node::Map(items) = parse("a: &x v\nb: *x\n").unwrap() else {
            panic!()
        };
        let Node::Scalar(b) = &items[1].1 else {
            panic!()
        };
        assert_eq!(b.value, "v");
        assert!(b.span.is_none());
    }
}
