//! The inverted label index of a partition: label key → value (sorted) → systems, and the
//! evaluation of a selector over it as bitsets.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use super::ids::{Bitset, insert_sorted, remove_sorted};
use crate::select::glob::Glob;
use crate::select::selector::{Labels, Selector};

/// label key → value → ids of the systems with that label value (sorted).
#[derive(Debug, Default)]
pub(super) struct LabelIndex {
    keys: HashMap<String, BTreeMap<String, Vec<u32>>>,
}

impl LabelIndex {
    pub(super) fn insert(&mut self, id: u32, labels: &Labels) {
        for (key, value) in labels {
            let values = match self.keys.get_mut(key) {
                Some(values) => values,
                None => self.keys.entry(key.clone()).or_default(),
            };
            match values.get_mut(value) {
                Some(posting) => insert_sorted(posting, id),
                None => {
                    values.insert(value.clone(), vec![id]);
                }
            }
        }
    }

    pub(super) fn remove(&mut self, id: u32, labels: &Labels) {
        for (key, value) in labels {
            let Some(values) = self.keys.get_mut(key) else {
                continue;
            };
            if let Some(posting) = values.get_mut(value) {
                remove_sorted(posting, id);
                if posting.is_empty() {
                    values.remove(value);
                }
            }
            if values.is_empty() {
                self.keys.remove(key);
            }
        }
    }

    /// The live systems a selector matches.
    pub(super) fn select(&self, selector: &Selector, live: &Bitset) -> Bitset {
        let mut result: Option<Bitset> = None;
        for (key, globs) in selector.terms() {
            let mut hits = Bitset::with_len(live.len());
            if let Some(values) = self.keys.get(key) {
                collect_hits(values, globs, &mut hits);
            }
            match result.as_mut() {
                Some(acc) => acc.intersect(&hits),
                None => result = Some(hits),
            }
            if result.as_ref().is_some_and(Bitset::is_empty) {
                break;
            }
        }
        result.unwrap_or_else(|| live.clone())
    }
}

/// Adds to `hits` the systems whose value for a key matches one of `globs`
/// (or that have the key at all, when `globs` is empty).
pub(super) fn collect_hits(values: &BTreeMap<String, Vec<u32>>, globs: &[Glob], hits: &mut Bitset) {
    if globs.is_empty() {
        values.values().for_each(|posting| hits.extend(posting));
        return;
    }
    for glob in globs {
        if let Some(literal) = glob.as_literal() {
            if let Some(posting) = values.get(literal) {
                hits.extend(posting);
            }
            continue;
        }
        let prefix = glob.literal_prefix();
        let range = values.range::<str, _>((Bound::Included(prefix), Bound::Unbounded));
        for (value, posting) in range.take_while(|(v, _)| v.starts_with(prefix)) {
            if glob.matches(value) {
                hits.extend(posting);
            }
        }
    }
}
