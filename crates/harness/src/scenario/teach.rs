//! YAML errors that teach: the parser's error rewritten where a common slip
//! explains it better than the parser can (a tab in the indentation, an
//! unquoted `*`, a `{` or `[` never closed, a document over the parser's limits).

use super::error::{At, Diagnostic};
use serde_saphyr::Error as YamlError;
use serde_saphyr::budget::BudgetBreach;

/// Rewrites `d`, the diagnostic made of the parser's error `err` (its innermost
/// error `inner`), when the source shows a slip that explains it; otherwise
/// returns it unchanged.
pub(crate) fn rewrite(inner: &YamlError, mut d: Diagnostic, source: &str) -> Diagnostic {
    if let YamlError::Budget { breach, .. } = inner {
        d.message = over_limit(breach);
        d.label = Some("the parser stopped here".into());
        d.help =
            Some("a scenario is a few hundred steps at most: split it into several files".into());
        return d;
    }
    let error_line = d.at.as_ref().map(|at| at.line);
    if let Some(opened) = unclosed_flow(source).filter(|o| error_line.is_none_or(|l| o.line <= l)) {
        let close = if opened.open == '{' { '}' } else { ']' };
        let what = if opened.open == '{' {
            "mapping"
        } else {
            "list"
        };
        d.message = format!(
            "this `{}` (a flow {what}) is never closed: `{close}` is missing",
            opened.open
        );
        d.label = Some(format!("`{}` opened here", opened.open));
        d.help = Some(format!(
            "close it with `{close}`; a flow {what} may go on over several lines, \
             but must end before the next key or list item"
        ));
        d.at = Some(At::new(source, opened.line, opened.column, 1));
        return d;
    }
    if d.message.to_ascii_lowercase().contains("tab")
        && let Some((line, column)) = indentation_tab(source, error_line)
    {
        d.message = format!("line {line} is indented with a tab: YAML indents with spaces only");
        d.label = Some("tab".into());
        d.help =
            Some("replace the tab with spaces (set your editor to indent YAML with spaces)".into());
        d.at = Some(At::new(source, line, column, 1));
        return d;
    }
    if let Some(at) = &d.at {
        let rest = &at.text[at.range.start..];
        if rest.starts_with('*') || matches!(inner, YamlError::UnknownAnchor { .. }) {
            let token: String = rest
                .chars()
                .take_while(|c| !c.is_whitespace() && !",]}".contains(*c))
                .collect();
            if token.starts_with('*') {
                d.message = format!(
                    "`{token}` is read as a YAML alias (`*name` refers to an anchor `&name`): quote it"
                );
                d.label = Some("an alias, not text".into());
                d.help = Some(format!(
                    "write it in quotes: `\"{token}\"`; a plain value cannot start with `*`"
                ));
                let len = token.chars().count();
                d.at = Some(At::new(source, at.line, at.column, len));
            }
        }
    }
    d
}

/// What limit the document broke, in words, with the limit's value.
fn over_limit(breach: &BudgetBreach) -> String {
    let limits = serde_saphyr::Budget::default();
    let what = match breach {
        BudgetBreach::Nodes { .. } => format!(
            "{} YAML nodes (keys, values and list items)",
            limits.max_nodes
        ),
        BudgetBreach::Events { .. } => {
            format!("{} YAML parser events", limits.max_events)
        }
        BudgetBreach::Depth { .. } => {
            format!("{} levels of nesting", limits.max_depth)
        }
        BudgetBreach::ScalarBytes { .. } => format!(
            "{} of text in values",
            bytes(limits.max_total_scalar_bytes as u64)
        ),
        BudgetBreach::InputBytes { .. } => format!(
            "{} of input",
            bytes(limits.max_reader_input_bytes.unwrap_or(0) as u64)
        ),
        BudgetBreach::Documents { .. } => {
            format!("{} YAML documents", limits.max_documents)
        }
        BudgetBreach::Aliases { .. } => {
            format!("{} aliases (`*name`)", limits.max_aliases)
        }
        BudgetBreach::Anchors { .. } => {
            format!("{} anchors (`&name`)", limits.max_anchors)
        }
        _ => return "the scenario file is too large or too complex for the YAML parser".into(),
    };
    format!("the scenario file is too large: the YAML parser reads at most {what}")
}

/// `n` bytes, in MiB when whole.
fn bytes(n: u64) -> String {
    if n > 0 && n.is_multiple_of(1024 * 1024) {
        format!("{} MiB", n / (1024 * 1024))
    } else {
        format!("{n} bytes")
    }
}

/// The tab in the indentation nearest to `line` (1-based; the parser may
/// report the scalar before it): that line, else the lines after it, else those
/// before. (line, column), both 1-based.
fn indentation_tab(source: &str, line: Option<usize>) -> Option<(usize, usize)> {
    let lines: Vec<&str> = source.lines().collect();
    let tab_in = |n: usize| {
        let text = lines[n - 1];
        let indent: String = text
            .chars()
            .take_while(|c| *c == ' ' || *c == '\t')
            .collect();
        indent.find('\t').map(|i| (n, i + 1))
    };
    let from = line.unwrap_or(1).clamp(1, lines.len().max(1));
    (from..=lines.len()).chain((1..from).rev()).find_map(tab_in)
}

/// Where a flow collection was opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Opened {
    /// `{` or `[`.
    pub open: char,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// The indentation of its line.
    indent: usize,
}

/// The first `{` or `[` still open when a line starts at or left of the
/// indentation of the line that opened it (a new key or list item), or at the
/// end of the file. Quotes, comments and block scalars (`|`, `>`) are skipped.
pub(crate) fn unclosed_flow(source: &str) -> Option<Opened> {
    let mut stack: Vec<Opened> = Vec::new();
    let mut quote: Option<char> = None;
    let mut block_indent: Option<usize> = None;
    for (n, text) in source.lines().enumerate() {
        let indent = text.chars().take_while(|c| *c == ' ').count();
        let blank = text.trim().is_empty();
        if let Some(b) = block_indent {
            if blank || indent > b {
                continue;
            }
            block_indent = None;
        }
        if quote.is_none()
            && !blank
            && !text.trim_start().starts_with('#')
            && stack.last().is_some_and(|o| indent <= o.indent)
        {
            return stack.last().copied();
        }
        // The last character that was not a blank, outside quotes: a value
        // (and so a flow collection or a quote) can start after these only.
        let mut before = None;
        let mut chars = text.chars().enumerate().peekable();
        while let Some((i, c)) = chars.next() {
            if let Some(q) = quote {
                if q == '"' && c == '\\' {
                    chars.next();
                } else if c == q {
                    if q == '\'' && chars.peek().is_some_and(|(_, c)| *c == '\'') {
                        chars.next();
                    } else {
                        quote = None;
                        before = Some(c);
                    }
                }
                continue;
            }
            let at_value = before.is_none_or(|b| ":-,[{?".contains(b));
            match c {
                ' ' | '\t' => continue,
                '#' if i == 0
                    || text[..text.char_indices().nth(i).map_or(0, |(b, _)| b)]
                        .ends_with([' ', '\t']) =>
                {
                    break;
                }
                '{' | '[' if at_value => stack.push(Opened {
                    open: c,
                    line: n + 1,
                    column: i + 1,
                    indent,
                }),
                '}' | ']' if !stack.is_empty() => {
                    stack.pop();
                }
                '"' | '\'' if at_value => quote = Some(c),
                _ => {}
            }
            before = Some(c);
        }
        if quote.is_none() && stack.is_empty() {
            let code = text.split(" #").next().unwrap_or("").trim_end();
            let last = code.rsplit(' ').next().unwrap_or("");
            let starts_block = !last.is_empty()
                && (last.starts_with('|') || last.starts_with('>'))
                && last[1..]
                    .chars()
                    .all(|c| c == '-' || c == '+' || c.is_ascii_digit());
            if starts_block {
                block_indent = Some(indent);
            }
        }
    }
    stack.last().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(source: &str) -> Option<(char, usize, usize)> {
        unclosed_flow(source).map(|o| (o.open, o.line, o.column))
    }

    #[test]
    fn balanced_flow_collections_are_not_flagged() {
        assert_eq!(at("a: { b: 1 }\nc: [1, 2]\n"), None);
        assert_eq!(at("a: [{ b: 1 },\n     { b: 2 }]\nc: 1\n"), None);
        assert_eq!(at("a: \"{ not\"\nb: '[ nor '' this'\nc: x{y\n"), None);
        assert_eq!(
            at("a: 1 # { a comment\nb: |\n  { text\n  [ more\nc: 2\n"),
            None
        );
    }

    #[test]
    fn an_unclosed_collection_is_found_where_it_opened() {
        assert_eq!(at("a: { b: 1\nc: 2\n"), Some(('{', 1, 4)));
        assert_eq!(at("steps:\n  - x: { b: 1\n  - y: 2\n"), Some(('{', 2, 8)));
        assert_eq!(at("claims: [KB-3\nprofile: x\n"), Some(('[', 1, 9)));
        assert_eq!(at("a: [1, 2\n"), Some(('[', 1, 4)));
    }

    #[test]
    fn the_tab_is_found_in_the_indentation() {
        assert_eq!(indentation_tab("a:\n\t- b\n", Some(2)), Some((2, 1)));
        assert_eq!(
            indentation_tab("a:\n  \tb: 1\nc: 2\n", Some(3)),
            Some((2, 3))
        );
        assert_eq!(indentation_tab("a: b\tc\n", Some(1)), None);
        assert_eq!(
            indentation_tab("a:\n  - b: c\n  \t- d\n", Some(2)),
            Some((3, 3))
        );
    }
}
