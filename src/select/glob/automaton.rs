//! Matching: the Glushkov position automaton built from the parsed pattern, run over bitsets
//! in time linear in the value's length.

use super::SEPARATORS;
use super::parser::{Class, Node};

/// Bitset words kept on the stack while matching (255 positions + start).
const INLINE_WORDS: usize = 4;

fn is_separator(c: char) -> bool {
    SEPARATORS.contains(&c)
}

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
pub(super) struct Automaton {
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
    pub(super) fn build(nodes: &[Node], prefix: &str) -> Automaton {
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

    pub(super) fn matches(&self, rest: &str) -> bool {
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
