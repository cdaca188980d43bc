//! OPA-compatible glob patterns over label values.
//!
//! A [`Glob`] follows OPA's `glob.match(pattern, [".", "_", "-"], value)`,
//! which is implemented by `gobwas/glob` v0.2.3, with `.`, `_` and `-` as
//! separators:
//!
//! | syntax    | matches                                                        |
//! |-----------|----------------------------------------------------------------|
//! | `?`       | exactly one character that is not a separator                   |
//! | `*`       | zero or more characters within one segment (no separator)      |
//! | `**`      | zero or more characters of any kind, separators included        |
//! | `[abc]`   | one character of the list (separators allowed: `[-.]`)          |
//! | `[a-z]`   | one character in the inclusive range                            |
//! | `[!…]`    | one character NOT in the list or range (it may be a separator)  |
//! | `{a,b*}`  | any of the alternatives, which may hold patterns and nest       |
//! | `\c`      | the character `c` literally                                     |
//!
//! The syntax is the one OPA accepts, quirks included: a class holds either
//! ONE range or a list of characters (`[a-z0-9]` is an error), `^` does not
//! negate, a `-` is a range only in second position (`[ab-c]` is the list
//! `a`, `b`, `-`, `c`), `]` and `}` outside a class or alternation are
//! literals, an alternation left open at the end of the pattern is closed
//! implicitly (`{a,b` is `{a,b}`) and a trailing `\` is ignored. A pattern
//! OPA rejects is rejected here too, with a [`GlobError`] that gives the
//! column of the offending character.
//!
//! Matching runs a position automaton (Glushkov construction) over bitsets:
//! time is linear in the value's length whatever the pattern, and a match
//! allocates nothing for patterns of up to 255 positions.

mod automaton;
mod parser;
#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

use self::automaton::Automaton;
use self::parser::{Node, Parser};

/// Characters that `?` and `*` never match.
const SEPARATORS: [char; 3] = ['.', '_', '-'];

/// A pattern that does not parse, with the 0-based character index of the
/// offending character.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("invalid glob {pattern:?} at column {}: {reason}", .position + 1)]
pub struct GlobError {
    /// The pattern as written.
    pub pattern: String,
    /// 0-based character (not byte) index of the offending character.
    pub position: usize,
    /// What is wrong there.
    pub reason: String,
}

/// A compiled glob pattern. Two globs are equal when their pattern texts are.
#[derive(Clone)]
pub struct Glob {
    pattern: String,
    prefix: String,
    kind: Kind,
}

/// How a glob is matched, from the cheapest to the general case.
#[derive(Clone, Debug)]
enum Kind {
    /// No metacharacter: the value must equal the literal.
    Exact,
    /// Literal prefix then stars including a `**`: any value with the prefix.
    Prefix,
    /// Literal prefix then `*` only: the rest holds no separator.
    PrefixSegment,
    /// Anything else.
    Automaton(Box<Automaton>),
}

impl Glob {
    /// Parses and compiles a pattern.
    pub fn parse(pattern: &str) -> Result<Glob, GlobError> {
        let nodes = Parser::new(pattern).parse()?;
        let literal_len = nodes.iter().take_while(|n| matches!(n, Node::Char(_))).count();
        let prefix: String = nodes[..literal_len]
            .iter()
            .filter_map(|n| match n {
                Node::Char(c) => Some(*c),
                _ => None,
            })
            .collect();
        let kind = classify(&nodes, literal_len, &prefix);
        Ok(Glob { pattern: pattern.to_owned(), prefix, kind })
    }

    /// Whether `value` matches the whole pattern.
    pub fn matches(&self, value: &str) -> bool {
        let Some(rest) = value.strip_prefix(self.prefix.as_str()) else {
            return false;
        };
        match &self.kind {
            Kind::Exact => rest.is_empty(),
            Kind::Prefix => true,
            Kind::PrefixSegment => !rest.contains(SEPARATORS),
            Kind::Automaton(automaton) => automaton.matches(rest),
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// The longest literal (unescaped) prefix every matching value starts with.
    pub fn literal_prefix(&self) -> &str {
        &self.prefix
    }

    /// The one value the pattern matches, when it has no metacharacter.
    pub fn as_literal(&self) -> Option<&str> {
        match self.kind {
            Kind::Exact => Some(&self.prefix),
            _ => None,
        }
    }
}

/// Picks the cheapest matcher for the parsed pattern.
fn classify(nodes: &[Node], literal_len: usize, prefix: &str) -> Kind {
    let tail = &nodes[literal_len..];
    if tail.is_empty() {
        return Kind::Exact;
    }
    if tail.iter().all(|n| matches!(n, Node::Super | Node::Any)) {
        return if tail.iter().any(|n| matches!(n, Node::Super)) {
            Kind::Prefix
        } else {
            Kind::PrefixSegment
        };
    }
    Kind::Automaton(Box::new(Automaton::build(nodes, prefix)))
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Glob").field(&self.pattern).finish()
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

impl PartialEq for Glob {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern
    }
}

impl Eq for Glob {}

impl std::hash::Hash for Glob {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.pattern.hash(state);
    }
}

impl FromStr for Glob {
    type Err = GlobError;

    fn from_str(pattern: &str) -> Result<Self, Self::Err> {
        Glob::parse(pattern)
    }
}
