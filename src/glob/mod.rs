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

use std::fmt;
use std::str::FromStr;

/// Characters that `?` and `*` never match.
const SEPARATORS: [char; 3] = ['.', '_', '-'];

/// Characters that end a run of literal text outside an alternation.
const TEXT_BREAKERS: &[char] = &['?', '*', '[', '{'];

/// Characters that end a run of literal text inside an alternation.
const ALT_TEXT_BREAKERS: &[char] = &['?', '*', '[', '{', '}', ','];

/// Characters that end the character list of a class.
const CLASS_TEXT_BREAKERS: &[char] = &[']'];

/// Bitset words kept on the stack while matching (255 positions + start).
const INLINE_WORDS: usize = 4;

fn is_separator(c: char) -> bool {
    SEPARATORS.contains(&c)
}

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

// ---------------------------------------------------------------------------
// Syntax

/// One element of a parsed pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
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
struct Class {
    negated: bool,
    members: Members,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Members {
    Range(char, char),
    List(Vec<char>),
}

impl Class {
    fn contains(&self, c: char) -> bool {
        let hit = match &self.members {
            Members::Range(lo, hi) => (*lo..=*hi).contains(&c),
            Members::List(list) => list.contains(&c),
        };
        hit != self.negated
    }
}

/// Recursive-descent parser mirroring the lexer of `gobwas/glob` v0.2.3.
struct Parser<'a> {
    pattern: &'a str,
    chars: Vec<char>,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(pattern: &'a str) -> Self {
        Parser { pattern, chars: pattern.chars().collect(), pos: 0 }
    }

    fn parse(mut self) -> Result<Vec<Node>, GlobError> {
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

// ---------------------------------------------------------------------------
// Matching

/// What one automaton position consumes.
#[derive(Clone, Debug)]
enum Step {
    Char(char),
    Single,
    Any,
    Super,
    Class(Class),
}

impl Step {
    fn accepts(&self, c: char) -> bool {
        match self {
            Step::Char(x) => *x == c,
            Step::Single | Step::Any => !is_separator(c),
            Step::Super => true,
            Step::Class(class) => class.contains(c),
        }
    }
}

/// Glushkov position automaton: state `i < steps.len()` means "the last
/// character read was consumed by step `i`"; state `steps.len()` is the start.
/// Sets of states are bitsets of `words` u64 words.
#[derive(Clone, Debug)]
struct Automaton {
    words: usize,
    steps: Vec<Step>,
    /// `follow[s]`: the states that may consume the character after state `s`.
    follow: Vec<u64>,
    /// Accepting states.
    accept: Vec<u64>,
    /// `ascii[c]`: the states whose step accepts ASCII character `c`.
    ascii: Vec<u64>,
    /// The states after reading the glob's literal prefix.
    initial: Vec<u64>,
}

/// First/last positions and nullability of a sub-pattern.
struct Fragment {
    nullable: bool,
    first: Vec<usize>,
    last: Vec<usize>,
}

impl Fragment {
    fn empty() -> Self {
        Fragment { nullable: true, first: Vec::new(), last: Vec::new() }
    }
}

/// Collects steps and follow lists while walking the syntax tree.
#[derive(Default)]
struct Builder {
    steps: Vec<Step>,
    follow: Vec<Vec<usize>>,
}

impl Builder {
    fn push(&mut self, step: Step) -> usize {
        self.steps.push(step);
        self.follow.push(Vec::new());
        self.steps.len() - 1
    }

    fn sequence(&mut self, nodes: &[Node]) -> Fragment {
        nodes.iter().fold(Fragment::empty(), |acc, node| {
            let next = self.node(node);
            self.concat(acc, next)
        })
    }

    fn node(&mut self, node: &Node) -> Fragment {
        let (step, repeats) = match node {
            Node::Char(c) => (Step::Char(*c), false),
            Node::Single => (Step::Single, false),
            Node::Class(class) => (Step::Class(class.clone()), false),
            Node::Any => (Step::Any, true),
            Node::Super => (Step::Super, true),
            Node::Alternation(alternatives) => return self.alternation(alternatives),
        };
        let p = self.push(step);
        if repeats {
            self.follow[p].push(p);
        }
        Fragment { nullable: repeats, first: vec![p], last: vec![p] }
    }

    fn alternation(&mut self, alternatives: &[Vec<Node>]) -> Fragment {
        let mut out = Fragment { nullable: false, first: Vec::new(), last: Vec::new() };
        for alternative in alternatives {
            let f = self.sequence(alternative);
            out.nullable |= f.nullable;
            out.first.extend(f.first);
            out.last.extend(f.last);
        }
        out
    }

    fn concat(&mut self, a: Fragment, b: Fragment) -> Fragment {
        for &p in &a.last {
            self.follow[p].extend_from_slice(&b.first);
        }
        let mut first = a.first;
        if a.nullable {
            first.extend_from_slice(&b.first);
        }
        let mut last = b.last;
        if b.nullable {
            last.extend(a.last);
        }
        Fragment { nullable: a.nullable && b.nullable, first, last }
    }
}

fn set_bit(words: &mut [u64], bit: usize) {
    words[bit / 64] |= 1 << (bit % 64);
}

/// Calls `f` with the index of every set bit.
fn for_each_bit(words: &[u64], mut f: impl FnMut(usize)) {
    for (w, &word) in words.iter().enumerate() {
        let mut bits = word;
        while bits != 0 {
            f(w * 64 + bits.trailing_zeros() as usize);
            bits &= bits - 1;
        }
    }
}

impl Automaton {
    fn build(nodes: &[Node], prefix: &str) -> Automaton {
        let mut builder = Builder::default();
        let root = builder.sequence(nodes);
        let start = builder.steps.len();
        let words = (start + 1).div_ceil(64);
        let mut follow = vec![0; (start + 1) * words];
        for (s, targets) in builder.follow.iter().enumerate() {
            for &t in targets {
                set_bit(&mut follow[s * words..(s + 1) * words], t);
            }
        }
        for &t in &root.first {
            set_bit(&mut follow[start * words..], t);
        }
        let mut accept = vec![0; words];
        root.last.iter().for_each(|&p| set_bit(&mut accept, p));
        if root.nullable {
            set_bit(&mut accept, start);
        }
        let mut ascii = vec![0; 128 * words];
        for (p, step) in builder.steps.iter().enumerate() {
            for c in 0..128u8 {
                if step.accepts(char::from(c)) {
                    set_bit(&mut ascii[usize::from(c) * words..], p);
                }
            }
        }
        let mut automaton =
            Automaton { words, steps: builder.steps, follow, accept, ascii, initial: vec![0; words] };
        automaton.initial = automaton.after_prefix(start, prefix);
        automaton
    }

    /// The state set after reading `prefix` from the start state.
    fn after_prefix(&self, start: usize, prefix: &str) -> Vec<u64> {
        let mut current = vec![0; self.words];
        set_bit(&mut current, start);
        let mut next = vec![0; self.words];
        let mut mask = vec![0; self.words];
        for c in prefix.chars() {
            self.advance(&current, &mut next, &mut mask, c);
            std::mem::swap(&mut current, &mut next);
        }
        current
    }

    fn matches(&self, rest: &str) -> bool {
        if self.words == 1 {
            return self.matches_one_word(rest);
        }
        if self.words <= INLINE_WORDS {
            let mut buf = [0u64; 3 * INLINE_WORDS];
            return self.run(rest, &mut buf[..3 * self.words]);
        }
        self.run(rest, &mut vec![0; 3 * self.words])
    }

    /// The common case of at most 63 positions, with plain u64 state sets.
    fn matches_one_word(&self, rest: &str) -> bool {
        let mut current = self.initial[0];
        for c in rest.chars() {
            let mut next = 0;
            let mut bits = current;
            while bits != 0 {
                next |= self.follow[bits.trailing_zeros() as usize];
                bits &= bits - 1;
            }
            current = next & self.accepting_one_word(c);
            if current == 0 {
                return false;
            }
        }
        current & self.accept[0] != 0
    }

    fn accepting_one_word(&self, c: char) -> u64 {
        if c.is_ascii() {
            return self.ascii[c as usize];
        }
        let mut mask = 0;
        for (p, step) in self.steps.iter().enumerate() {
            if step.accepts(c) {
                mask |= 1 << p;
            }
        }
        mask
    }

    /// The general case; `buf` holds three state sets.
    fn run(&self, rest: &str, buf: &mut [u64]) -> bool {
        let (current, tail) = buf.split_at_mut(self.words);
        let (next, mask) = tail.split_at_mut(self.words);
        let (mut current, mut next) = (current, next);
        current.copy_from_slice(&self.initial);
        for c in rest.chars() {
            if !self.advance(current, next, mask, c) {
                return false;
            }
            std::mem::swap(&mut current, &mut next);
        }
        current.iter().zip(&self.accept).any(|(a, b)| a & b != 0)
    }

    /// `next` = states reachable from `current` by consuming `c`; returns
    /// whether any is.
    fn advance(&self, current: &[u64], next: &mut [u64], mask: &mut [u64], c: char) -> bool {
        let w = self.words;
        next.fill(0);
        for_each_bit(current, |s| {
            for (n, f) in next.iter_mut().zip(&self.follow[s * w..(s + 1) * w]) {
                *n |= f;
            }
        });
        let accepting: &[u64] = if c.is_ascii() {
            &self.ascii[c as usize * w..(c as usize + 1) * w]
        } else {
            mask.fill(0);
            for (p, step) in self.steps.iter().enumerate() {
                if step.accepts(c) {
                    set_bit(mask, p);
                }
            }
            mask
        };
        let mut any = 0;
        for (n, a) in next.iter_mut().zip(accepting) {
            *n &= a;
            any |= *n;
        }
        any != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(pattern: &str) -> Glob {
        match Glob::parse(pattern) {
            Ok(g) => g,
            Err(e) => panic!("{pattern:?} should parse: {e}"),
        }
    }

    fn check(table: &[(&str, &str, bool)]) {
        let failures: Vec<String> = table
            .iter()
            .filter(|(p, v, want)| glob(p).matches(v) != *want)
            .map(|(p, v, want)| format!("{p:?} vs {v:?}: expected {want}"))
            .collect();
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn literals_and_separators() {
        check(&[
            ("prod", "prod", true),
            ("prod", "production", false),
            ("prod", "pro", false),
            ("", "", true),
            ("", "a", false),
            ("a.b_c-d", "a.b_c-d", true),
            ("a}b]c,", "a}b]c,", true),
        ]);
    }

    #[test]
    fn star_stays_within_a_segment() {
        check(&[
            ("prod*", "production", true),
            ("prod*", "prod", true),
            ("prod*", "prod-eu", false),
            ("prod*", "prod.eu", false),
            ("prod*", "prod_eu", false),
            ("prod-*", "prod-eu", true),
            ("prod-*", "prod-eu-west", false),
            ("*", "", true),
            ("*", "-", false),
            ("*-*", "-", true),
            ("*-*", "eu-west", true),
            ("*-*", "eu-west-1", false),
            ("a*b", "a-b", false),
            ("a*b", "axxb", true),
            ("*.*", "a.b", true),
            ("*.*", "a.b.c", false),
        ]);
    }

    #[test]
    fn super_crosses_separators() {
        check(&[
            ("prod**", "prod-eu", true),
            ("**", "", true),
            ("**", "a.b-c_d", true),
            ("eu-**", "eu-west-1", true),
            ("eu-**", "us-east-1", false),
            ("a**b", "a.x.b", true),
            ("**-1", "eu-west-1", true),
            ("***", "", true),
            ("***", "a.b", true),
            ("**.*", "a.b.c", true),
            ("**.*", "a.b.c-d", false),
        ]);
    }

    #[test]
    fn single_character() {
        check(&[
            ("?", "a", true),
            ("?", "-", false),
            ("?", "", false),
            ("?", "ab", false),
            ("team-?", "team-7", true),
            ("team-?", "team-77", false),
            ("a?c", "a.c", false),
            ("*?", "a", true),
            ("*?", "", false),
            ("**?**", "-", false),
            ("**?**", "-a-", true),
            ("*?*", "a-b", false),
        ]);
    }

    #[test]
    fn classes() {
        check(&[
            ("[abc]", "b", true),
            ("[abc]", "d", false),
            ("[a-z]", "q", true),
            ("[a-z]", "Q", false),
            ("[a-z]", "-", false),
            ("[a-a]", "a", true),
            ("[!a]", "b", true),
            ("[!a]", "a", false),
            ("[!a]", "-", true),
            ("[!a]", "", false),
            ("[!a-c]", "b", false),
            ("[!a-c]", "-", true),
            ("[^a]", "^", true),
            ("[^a]", "b", false),
            ("[-a]", "-", true),
            ("[ab-c]", "-", true),
            ("[ab-c]", "b", true),
            ("[--a]", ".", true),
            ("[]-a]", "^", true),
            ("[!!]", "!", false),
            ("[!!]", "a", true),
            ("[.]", ".", true),
            ("[\\]]", "]", true),
            ("[a\\]b]", "\\", false),
            ("[\\-a]", "]", true),
            ("env-[0-9]", "env-5", true),
        ]);
    }

    #[test]
    fn alternation() {
        check(&[
            ("{a,b}", "a", true),
            ("{a,b}", "c", false),
            ("{a,b}c", "bc", true),
            ("{a,{b,c}}", "c", true),
            ("{a*,b}", "axy", true),
            ("{a*,b}", "a-x", false),
            ("{a**,b}", "a-x", true),
            ("{}", "", true),
            ("{,a}", "", true),
            ("{,a}", "a", true),
            ("{a,b", "b", true),
            ("{a", "a", true),
            ("a{b", "ab", true),
            ("{", "", true),
            ("{", "{", false),
            ("{a,b}}", "a}", true),
            ("{prod,staging}-{eu,us}-*", "staging-us-x", true),
            ("{prod,staging}-{eu,us}-*", "dev-us-x", false),
            ("app-{1??,2[0-4]?}", "app-245", true),
            ("app-{1??,2[0-4]?}", "app-255", false),
            ("{a\\,b}", "a,b", true),
            ("{a[,]b}", "a,b", true),
            ("a,b", "a,b", true),
        ]);
    }

    #[test]
    fn escapes() {
        check(&[
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("\\?", "?", true),
            ("\\[", "[", true),
            ("\\\\", "\\", true),
            ("a\\b", "ab", true),
            ("a\\", "a", true),
            ("a\\", "a\\", false),
            ("\\", "", true),
            ("{a\\}b}", "a}b", true),
        ]);
    }

    #[test]
    fn unicode_is_matched_by_character() {
        check(&[
            ("é", "é", true),
            ("?", "é", true),
            ("é?", "éü", true),
            ("?é", "aé", true),
            ("é*", "éé", true),
            ("[é-ü]", "ö", true),
            ("[!é]", "é", false),
            ("{é,ü}", "ü", true),
            ("日本*", "日本語", true),
            ("???", "日本語", true),
            ("??", "日本語", false),
        ]);
    }

    #[test]
    fn long_patterns_use_wide_state_sets() {
        let seventy = "a?".repeat(35);
        let value = "ab".repeat(35);
        assert!(glob(&seventy).matches(&value));
        assert!(!glob(&seventy).matches(&value[1..]));
        let wide = format!("{}{{x,y}}", "*-".repeat(200));
        assert!(glob(&wide).matches(&format!("{}y", "a-".repeat(200))));
        assert!(!glob(&wide).matches(&format!("{}y", "a-".repeat(199))));
    }

    #[test]
    fn pathological_patterns_stay_linear() {
        let pattern = "*a".repeat(30) + "**" + &"?".repeat(30);
        let value = "a".repeat(5000);
        let started = std::time::Instant::now();
        assert!(glob(&pattern).matches(&value));
        assert!(!glob(&pattern).matches(&format!("{value}-")));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn literal_prefix_and_literal() {
        assert_eq!(glob("prod-*").literal_prefix(), "prod-");
        assert_eq!(glob("\\*x*").literal_prefix(), "*x");
        assert_eq!(glob("{a,b}").literal_prefix(), "");
        assert_eq!(glob("app-1{2,3}").literal_prefix(), "app-1");
        assert_eq!(glob("prod").as_literal(), Some("prod"));
        assert_eq!(glob("a\\?").as_literal(), Some("a?"));
        assert_eq!(glob("a\\").as_literal(), Some("a"));
        assert_eq!(glob("prod*").as_literal(), None);
        assert_eq!(glob("").as_literal(), Some(""));
    }

    #[test]
    fn equality_is_by_pattern_text() {
        assert_eq!(glob("a*"), glob("a*"));
        assert_ne!(glob("a"), glob("a\\"));
        assert_eq!(glob("x-*").as_str(), "x-*");
        assert_eq!(glob("x-*").to_string(), "x-*");
        assert_eq!(format!("{:?}", glob("x")), "Glob(\"x\")");
    }

    fn error(pattern: &str) -> GlobError {
        match Glob::parse(pattern) {
            Ok(_) => panic!("{pattern:?} should not parse"),
            Err(e) => e,
        }
    }

    #[test]
    fn errors_name_pattern_and_position() {
        let table: &[(&str, usize, &str)] = &[
            ("prod-[a", 5, "unclosed character class"),
            ("[", 0, "unclosed character class"),
            ("a[!", 1, "unclosed character class"),
            ("x[a-", 1, "unclosed character class"),
            ("[a-]", 0, "unclosed character class"),
            ("[a\\]", 0, "unclosed character class"),
            ("{a,[b}", 3, "unclosed character class"),
            ("[]", 0, "empty character class"),
            ("[!]", 0, "empty character class"),
            ("[]]", 0, "empty character class"),
            ("ab[z-a]", 3, "invalid range z-a"),
            ("[a-]]", 1, "invalid range a-]"),
            ("[a-z0-9]", 4, "expected ']' but found '0'"),
            ("[a-c-e]", 4, "expected ']' but found '-'"),
            ("é[b", 1, "unclosed character class"),
            ("a\0b", 1, "NUL characters are not allowed"),
        ];
        for (pattern, position, reason) in table {
            let e = error(pattern);
            assert_eq!(e.pattern, *pattern);
            assert_eq!(e.position, *position, "{pattern:?}: {e}");
            assert!(e.reason.starts_with(reason), "{pattern:?}: {e}");
        }
    }

    #[test]
    fn error_display() {
        assert_eq!(
            error("prod-[a").to_string(),
            "invalid glob \"prod-[a\" at column 6: unclosed character class"
        );
        assert_eq!(
            "[z-a]".parse::<Glob>().map_err(|e| e.to_string()),
            Err("invalid glob \"[z-a]\" at column 2: invalid range z-a: 'a' comes before 'z'".into())
        );
    }
}
