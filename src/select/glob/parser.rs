//! The syntax of a pattern: the parsed [`Node`]s and the recursive-descent [`Parser`] that
//! mirrors the lexer of `gobwas/glob` v0.2.3, quirks and errors included.

use super::GlobError;

/// Characters that end a run of literal text outside an alternation.
const TEXT_BREAKERS: &[char] = &['?', '*', '[', '{'];

/// Characters that end a run of literal text inside an alternation.
const ALT_TEXT_BREAKERS: &[char] = &['?', '*', '[', '{', '}', ','];

/// Characters that end the character list of a class.
const CLASS_TEXT_BREAKERS: &[char] = &[']'];

/// One element of a parsed pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Node {
    /// A literal character.
    Char(char),
    /// `?`
    Single,
    /// `*`
    Any,
    /// `**`
    Super,
    /// `[...]`
    Class(Class),
    /// `{a,b,...}`: each alternative is a sequence.
    Alternation(Vec<Vec<Node>>),
}

/// A character class: one range or a list, possibly negated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Class {
    negated: bool,
    members: Members,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Members {
    Range(char, char),
    List(Vec<char>),
}

impl Class {
    pub(super) fn contains(&self, c: char) -> bool {
        let hit = match &self.members {
            Members::Range(lo, hi) => (*lo..=*hi).contains(&c),
            Members::List(list) => list.contains(&c),
        };
        hit != self.negated
    }
}

/// Recursive-descent parser mirroring the lexer of `gobwas/glob` v0.2.3.
pub(super) struct Parser<'a> {
    pattern: &'a str,
    chars: Vec<char>,
    pos: usize,
}

impl<'a> Parser<'a> {
    pub(super) fn new(pattern: &'a str) -> Self {
        Parser { pattern, chars: pattern.chars().collect(), pos: 0 }
    }

    pub(super) fn parse(mut self) -> Result<Vec<Node>, GlobError> {
        if let Some(nul) = self.chars.iter().position(|&c| c == '\0') {
            return Err(self.error(nul, "NUL characters are not allowed"));
        }
        self.sequence(false)
    }

    fn error(&self, position: usize, reason: impl Into<String>) -> GlobError {
        GlobError { pattern: self.pattern.to_owned(), position, reason: reason.into() }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_second(&self) -> Option<char> {
        self.chars.get(self.pos + 1).copied()
    }

    /// A sequence, up to the end or (inside an alternation) `,` or `}`.
    fn sequence(&mut self, in_alternation: bool) -> Result<Vec<Node>, GlobError> {
        let mut nodes = Vec::new();
        while let Some(c) = self.peek() {
            match c {
                ',' | '}' if in_alternation => break,
                '{' => {
                    self.pos += 1;
                    nodes.push(self.alternation()?);
                }
                '[' => nodes.push(self.class()?),
                '?' => {
                    self.pos += 1;
                    nodes.push(Node::Single);
                }
                '*' => nodes.push(self.star()),
                _ => {
                    let breakers = if in_alternation { ALT_TEXT_BREAKERS } else { TEXT_BREAKERS };
                    nodes.extend(self.text(breakers).into_iter().map(Node::Char));
                }
            }
        }
        Ok(nodes)
    }

    fn star(&mut self) -> Node {
        self.pos += 1;
        if self.peek() == Some('*') {
            self.pos += 1;
            Node::Super
        } else {
            Node::Any
        }
    }

    /// The alternatives after a `{`; the end of the pattern closes it.
    fn alternation(&mut self) -> Result<Node, GlobError> {
        let mut alternatives = Vec::new();
        loop {
            alternatives.push(self.sequence(true)?);
            match self.peek() {
                Some(',') => self.pos += 1,
                Some('}') => {
                    self.pos += 1;
                    break;
                }
                _ => break,
            }
        }
        Ok(Node::Alternation(alternatives))
    }

    /// Literal characters up to a breaker; `\` escapes the next character
    /// and a trailing `\` is dropped.
    fn text(&mut self, breakers: &[char]) -> Vec<char> {
        let mut text = Vec::new();
        let mut escaped = false;
        while let Some(c) = self.peek() {
            if !escaped {
                if c == '\\' {
                    escaped = true;
                    self.pos += 1;
                    continue;
                }
                if breakers.contains(&c) {
                    break;
                }
            }
            escaped = false;
            text.push(c);
            self.pos += 1;
        }
        text
    }

    /// A class starting at the current `[`.
    fn class(&mut self) -> Result<Node, GlobError> {
        let open = self.pos;
        self.pos += 1;
        let negated = self.peek() == Some('!');
        if negated {
            self.pos += 1;
        }
        if self.peek().is_none() {
            return Err(self.error(open, "unclosed character class"));
        }
        let members = if self.peek_second() == Some('-') {
            self.range(open)?
        } else {
            let list = self.text(CLASS_TEXT_BREAKERS);
            self.close_class(open)?;
            if list.is_empty() {
                return Err(self.error(open, "empty character class"));
            }
            Members::List(list)
        };
        Ok(Node::Class(Class { negated, members }))
    }

    /// `lo-hi]`: the characters are taken raw (no escapes), as OPA does.
    fn range(&mut self, open: usize) -> Result<Members, GlobError> {
        let lo_pos = self.pos;
        let lo = self.chars[lo_pos];
        self.pos += 2;
        let Some(hi) = self.peek() else {
            return Err(self.error(open, "unclosed character class"));
        };
        self.pos += 1;
        self.close_class(open)?;
        if hi < lo {
            return Err(self.error(lo_pos, format!("invalid range {lo}-{hi}: {hi:?} comes before {lo:?}")));
        }
        Ok(Members::Range(lo, hi))
    }

    fn close_class(&mut self, open: usize) -> Result<(), GlobError> {
        match self.peek() {
            Some(']') => {
                self.pos += 1;
                Ok(())
            }
            None => Err(self.error(open, "unclosed character class")),
            Some(c) => Err(self.error(
                self.pos,
                format!(
                    "expected ']' but found {c:?}: a character class holds one range \
                     or one list of characters, e.g. [a-z] or [abc]"
                ),
            )),
        }
    }
}
