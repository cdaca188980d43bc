//! Containers of dense `u32` ids: the [`Slab`] that hands them out, the [`Bitset`], and the
//! helpers over sorted id lists.

use std::ops::{Index, IndexMut};

/// A vector of slots with reusable `u32` ids.
#[derive(Debug)]
pub(super) struct Slab<T> {
    slots: Vec<Option<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab { slots: Vec::new(), free: Vec::new(), len: 0 }
    }
}

impl<T> Slab<T> {
    pub(super) fn next_id(&self) -> u32 {
        match self.free.last() {
            Some(&id) => id,
            None => u32::try_from(self.slots.len()).expect("fewer than 2^32 objects per partition"),
        }
    }

    pub(super) fn insert(&mut self, value: T) -> u32 {
        let id = self.next_id();
        match self.free.pop() {
            Some(_) => self.slots[id as usize] = Some(value),
            None => self.slots.push(Some(value)),
        }
        self.len += 1;
        id
    }

    pub(super) fn remove(&mut self, id: u32) -> T {
        let value = self.slots[id as usize].take().expect("removing a live id");
        self.free.push(id);
        self.len -= 1;
        value
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Live entries in ascending id order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.slots.iter().enumerate().filter_map(|(i, slot)| Some((i as u32, slot.as_ref()?)))
    }
}

impl<T> Index<u32> for Slab<T> {
    type Output = T;

    fn index(&self, id: u32) -> &T {
        self.slots[id as usize].as_ref().expect("a live id")
    }
}

impl<T> IndexMut<u32> for Slab<T> {
    fn index_mut(&mut self, id: u32) -> &mut T {
        self.slots[id as usize].as_mut().expect("a live id")
    }
}

/// A growable set of small integers.
#[derive(Clone, Debug, Default)]
pub(super) struct Bitset {
    words: Vec<u64>,
}

impl Bitset {
    /// An empty set sized like a set of `words` words.
    pub(super) fn with_len(words: usize) -> Self {
        Bitset { words: vec![0; words] }
    }

    /// The number of words.
    pub(super) fn len(&self) -> usize {
        self.words.len()
    }

    pub(super) fn insert(&mut self, bit: u32) {
        let w = bit as usize / 64;
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        self.words[w] |= 1 << (bit % 64);
    }

    pub(super) fn remove(&mut self, bit: u32) {
        if let Some(word) = self.words.get_mut(bit as usize / 64) {
            *word &= !(1 << (bit % 64));
        }
    }

    pub(super) fn extend(&mut self, bits: &[u32]) {
        bits.iter().for_each(|&b| self.insert(b));
    }

    pub(super) fn intersect(&mut self, other: &Bitset) {
        self.words.truncate(other.words.len());
        self.words.iter_mut().zip(&other.words).for_each(|(a, b)| *a &= b);
    }

    pub(super) fn subtract(&mut self, other: &Bitset) {
        self.words.iter_mut().zip(&other.words).for_each(|(a, b)| *a &= !b);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    /// Set bits, ascending.
    pub(super) fn ones(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(w, &word)| {
            let mut bits = word;
            std::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let bit = bits.trailing_zeros();
                bits &= bits - 1;
                Some(w as u32 * 64 + bit)
            })
        })
    }
}

pub(super) fn insert_sorted(ids: &mut Vec<u32>, id: u32) {
    if let Err(at) = ids.binary_search(&id) {
        ids.insert(at, id);
    }
}

pub(super) fn remove_sorted(ids: &mut Vec<u32>, id: u32) {
    if let Ok(at) = ids.binary_search(&id) {
        ids.remove(at);
    }
}

pub(super) fn toggle(ids: &mut Vec<u32>, id: u32, present: bool) {
    if present {
        insert_sorted(ids, id);
    } else {
        remove_sorted(ids, id);
    }
}

/// Calls `f(id, true)` for ids only in `new`, `f(id, false)` for ids only in `old`.
pub(super) fn for_each_change(old: &[u32], new: &[u32], mut f: impl FnMut(u32, bool)) {
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(&a), Some(&b)) if a < b => {
                f(a, false);
                i += 1;
            }
            (Some(&a), None) => {
                f(a, false);
                i += 1;
            }
            (_, Some(&b)) => {
                f(b, true);
                j += 1;
            }
            (None, None) => unreachable!("loop condition"),
        }
    }
}

/// The sorted union of two sorted id lists.
pub(super) fn union(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}
