//! Source locations of every node of a scenario file, for semantic errors.
//!
//! The scenario types hold plain values, so after they are deserialized the file is
//! read a second time into a [`Tree`] of [`Spanned`] nodes (same parser, so the same
//! positions), which the checks query by path: `steps[3].fault.errno.op`.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};
use std::fmt;

/// One segment of a path into the document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seg {
    /// A mapping key.
    Key(String),
    /// A 0-based sequence index.
    Index(usize),
}

impl From<&str> for Seg {
    fn from(key: &str) -> Seg {
        Seg::Key(key.to_string())
    }
}

impl From<usize> for Seg {
    fn from(index: usize) -> Seg {
        Seg::Index(index)
    }
}

/// Whether to point at a mapping entry's key or at its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Key,
    Value,
}

/// A line, column and length (in characters) in the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
    pub len: usize,
}

impl Pos {
    fn of(location: Location) -> Option<Pos> {
        (location.line() > 0).then(|| Pos {
            line: location.line() as usize,
            column: location.column() as usize,
            len: location.span().len() as usize,
        })
    }
}

/// The located document.
#[derive(Debug, Default)]
pub(crate) struct Tree {
    root: Option<Spanned<Node>>,
}

#[derive(Debug)]
enum Node {
    Null,
    Scalar,
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
}

impl Tree {
    /// Reads `source`; an unreadable document gives an empty tree (no locations).
    pub(crate) fn parse(source: &str) -> Tree {
        Tree {
            root: serde_saphyr::from_str::<Spanned<Node>>(source).ok(),
        }
    }

    /// The position of the node at `path` (its key or its value), or of its deepest
    /// ancestor present in the document.
    pub(crate) fn find(&self, path: &[Seg], target: Target) -> Option<Pos> {
        let mut node = self.root.as_ref()?;
        let mut best = Pos::of(node.referenced);
        for (i, seg) in path.iter().enumerate() {
            let last = i + 1 == path.len();
            match (&node.value, seg) {
                (Node::Map(entries), Seg::Key(key)) => {
                    let Some((k, v)) = entries.iter().find(|(k, _)| &k.value == key) else {
                        break;
                    };
                    if last && target == Target::Key {
                        return Pos::of(k.referenced).or(best);
                    }
                    // A null value has no position of its own: point at its key.
                    best = match v.value {
                        Node::Null => Pos::of(k.referenced),
                        _ => Pos::of(v.referenced).or(Pos::of(k.referenced)),
                    }
                    .or(best);
                    node = v;
                }
                (Node::Seq(items), Seg::Index(index)) => {
                    let Some(item) = items.get(*index) else { break };
                    best = Pos::of(item.referenced).or(best);
                    node = item;
                }
                _ => break,
            }
        }
        best
    }

    /// True if the mapping at `path` has the key `key`, with a null value.
    pub(crate) fn is_null(&self, path: &[Seg], key: &str) -> bool {
        let Some(mut node) = self.root.as_ref() else {
            return false;
        };
        for seg in path {
            node = match (&node.value, seg) {
                (Node::Map(entries), Seg::Key(k)) => {
                    match entries.iter().find(|(key, _)| &key.value == k) {
                        Some((_, v)) => v,
                        None => return false,
                    }
                }
                (Node::Seq(items), Seg::Index(i)) => match items.get(*i) {
                    Some(item) => item,
                    None => return false,
                },
                _ => return false,
            };
        }
        match &node.value {
            Node::Map(entries) => entries
                .iter()
                .any(|(k, v)| k.value == key && matches!(v.value, Node::Null)),
            _ => false,
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NodeVisitor;
        impl<'de> Visitor<'de> for NodeVisitor {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML node")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i128<E>(self, _: i128) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u128<E>(self, _: u128) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_str<E>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_bytes<E>(self, _: &[u8]) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
                Node::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<Node>>()? {
                    items.push(item);
                }
                Ok(Node::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    let value = map.next_value::<Spanned<Node>>()?;
                    entries.push((key, value));
                }
                Ok(Node::Map(entries))
            }
        }
        deserializer.deserialize_any(NodeVisitor)
    }
}

/// The 1-based line of each step of a scenario's source (`steps[i]`), for
/// reports that point at the step a failure belongs to. Steps the parser cannot
/// place (an unreadable document) get no line.
pub fn step_lines(source: &str) -> Vec<Option<usize>> {
    let tree = Tree::parse(source);
    let Some(Node::Map(entries)) = tree.root.as_ref().map(|r| &r.value) else {
        return Vec::new();
    };
    let Some((_, steps)) = entries.iter().find(|(k, _)| k.value == "steps") else {
        return Vec::new();
    };
    match &steps.value {
        Node::Seq(items) => items
            .iter()
            .map(|item| Pos::of(item.referenced).map(|p| p.line))
            .collect(),
        _ => Vec::new(),
    }
}
