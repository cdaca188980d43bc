//! Label selectors built from [`Glob`] patterns.
//!
//! A [`Selector`] maps a label key to a list of patterns. A system's labels
//! match when, for every key, the label exists and either the list is empty
//! (the key only has to exist) or one of the patterns matches its value. An
//! empty selector matches everything. A [`StackSelector`] adds an `exclude`
//! selector of the same form; an empty exclude removes nothing.

use std::collections::BTreeMap;
use std::fmt;

use crate::select::glob::{Glob, GlobError};

/// A system's labels.
pub type Labels = BTreeMap<String, String>;

/// A selector as written in a resource: label key to glob patterns.
pub type Terms = BTreeMap<String, Vec<String>>;

/// Which selector of a Stack a [`SelectorError`] is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SelectorField {
    /// `spec.selector`
    Include,
    /// `spec.exclude`
    Exclude,
    /// A Tenant's `spec.namespaceSelector`
    Namespace,
}

impl SelectorField {
    /// The field path in the Stack resource.
    pub fn path(self) -> &'static str {
        match self {
            SelectorField::Include => "spec.selector",
            SelectorField::Exclude => "spec.exclude",
            SelectorField::Namespace => "spec.namespaceSelector",
        }
    }
}

/// An invalid pattern in a selector, located by field, key and list index.
///
/// Displays as `spec.selector["env"][1]: invalid glob "prod-[a" at column 6:
/// unclosed character class`.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("{}: {source}", self.field())]
pub struct SelectorError {
    /// The selector the pattern is in.
    pub selector: SelectorField,
    /// The label key.
    pub key: String,
    /// The index of the pattern in the key's list.
    pub index: usize,
    /// Why the pattern does not parse.
    #[source]
    pub source: GlobError,
}

impl SelectorError {
    /// The path of the offending pattern, e.g. `spec.exclude["tier"][0]`.
    pub fn field(&self) -> String {
        format!("{}[{:?}][{}]", self.selector.path(), self.key, self.index)
    }
}

/// A parsed selector: label key to compiled patterns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    terms: BTreeMap<String, Vec<Glob>>,
}

impl Selector {
    /// Parses a `spec.selector`; see [`Selector::parse_field`].
    pub fn parse(terms: &Terms) -> Result<Selector, SelectorError> {
        Selector::parse_field(terms, SelectorField::Include)
    }

    /// Parses every pattern, naming `field` in the error of the first invalid one.
    pub fn parse_field(terms: &Terms, field: SelectorField) -> Result<Selector, SelectorError> {
        let mut parsed = BTreeMap::new();
        for (key, patterns) in terms {
            let globs = patterns
                .iter()
                .enumerate()
                .map(|(index, pattern)| {
                    Glob::parse(pattern).map_err(|source| SelectorError {
                        selector: field,
                        key: key.clone(),
                        index,
                        source,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            parsed.insert(key.clone(), globs);
        }
        Ok(Selector { terms: parsed })
    }

    /// Whether the labels satisfy every key of the selector.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.terms.iter().all(|(key, globs)| labels.get(key).is_some_and(|value| value_matches(globs, value)))
    }

    /// Whether the selector has no key (and so matches everything).
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.terms.len()
    }

    /// The keys with their patterns, in key order.
    pub fn terms(&self) -> impl Iterator<Item = (&str, &[Glob])> {
        self.terms.iter().map(|(k, g)| (k.as_str(), g.as_slice()))
    }
}

/// Whether a label value satisfies a key's pattern list (empty: any value).
pub fn value_matches(globs: &[Glob], value: &str) -> bool {
    globs.is_empty() || globs.iter().any(|g| g.matches(value))
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (key, globs)) in self.terms.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let patterns: Vec<&str> = globs.iter().map(Glob::as_str).collect();
            write!(f, "{sep}{key:?}: {patterns:?}")?;
        }
        f.write_str("}")
    }
}

/// A Stack's selection: systems matching `include` and not `exclude`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StackSelector {
    /// `spec.selector`
    pub include: Selector,
    /// `spec.exclude`; empty excludes nothing.
    pub exclude: Selector,
}

impl StackSelector {
    /// Parses both selectors.
    pub fn parse(include: &Terms, exclude: &Terms) -> Result<Self, SelectorError> {
        Ok(StackSelector {
            include: Selector::parse_field(include, SelectorField::Include)?,
            exclude: Selector::parse_field(exclude, SelectorField::Exclude)?,
        })
    }

    /// Whether the labels are selected: included and not excluded.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.include.matches(labels) && !(self.excludes_any() && self.exclude.matches(labels))
    }

    /// Whether the exclude selector removes anything at all.
    pub fn excludes_any(&self) -> bool {
        !self.exclude.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(pairs: &[(&str, &[&str])]) -> Terms {
        pairs.iter().map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect())).collect()
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn selector(pairs: &[(&str, &[&str])]) -> Selector {
        match Selector::parse(&terms(pairs)) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn every_key_must_match() {
        let s = selector(&[("env", &["prod-*", "staging"]), ("tier", &["backend"])]);
        assert!(s.matches(&labels(&[("env", "prod-eu"), ("tier", "backend")])));
        assert!(s.matches(&labels(&[("env", "staging"), ("tier", "backend"), ("x", "y")])));
        assert!(!s.matches(&labels(&[("env", "dev"), ("tier", "backend")])));
        assert!(!s.matches(&labels(&[("env", "prod-eu"), ("tier", "frontend")])));
    }

    #[test]
    fn missing_key_never_matches() {
        let s = selector(&[("env", &["**"])]);
        assert!(!s.matches(&labels(&[("tier", "backend")])));
        assert!(!s.matches(&Labels::new()));
        assert!(s.matches(&labels(&[("env", "")])));
    }

    #[test]
    fn empty_list_requires_only_the_key() {
        let s = selector(&[("tier", &[])]);
        assert!(s.matches(&labels(&[("tier", "")])));
        assert!(s.matches(&labels(&[("tier", "anything")])));
        assert!(!s.matches(&labels(&[("env", "prod")])));
    }

    #[test]
    fn empty_selector_matches_everything() {
        let s = selector(&[]);
        assert!(s.is_empty());
        assert!(s.matches(&Labels::new()));
        assert!(s.matches(&labels(&[("env", "prod")])));
    }

    #[test]
    fn exclude_removes_systems() {
        let s = match StackSelector::parse(&terms(&[("env", &["prod-*"])]), &terms(&[("region", &["eu-**"])]))
        {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert!(s.matches(&labels(&[("env", "prod-us"), ("region", "us-east-1")])));
        assert!(!s.matches(&labels(&[("env", "prod-eu"), ("region", "eu-west-1")])));
        assert!(s.matches(&labels(&[("env", "prod-eu")])), "exclude key missing");
        assert!(!s.matches(&labels(&[("env", "dev")])));
    }

    #[test]
    fn empty_exclude_excludes_nothing() {
        let s = match StackSelector::parse(&Terms::new(), &Terms::new()) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert!(!s.excludes_any());
        assert!(s.matches(&Labels::new()));
        let all_excluded = match StackSelector::parse(&Terms::new(), &terms(&[("env", &[])])) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert!(all_excluded.matches(&labels(&[("tier", "x")])));
        assert!(!all_excluded.matches(&labels(&[("env", "x")])));
    }

    #[test]
    fn errors_name_field_key_and_index() {
        let e = Selector::parse(&terms(&[("env", &["prod", "prod-[a"])]));
        let e = e.expect_err("invalid pattern is an error");
        assert_eq!(e.field(), "spec.selector[\"env\"][1]");
        assert_eq!(
            e.to_string(),
            "spec.selector[\"env\"][1]: invalid glob \"prod-[a\" at column 6: unclosed character class"
        );
        let e = StackSelector::parse(&terms(&[("env", &["a"])]), &terms(&[("tier", &["[]"])]));
        let e = e.expect_err("invalid exclude is an error");
        assert_eq!(e.selector, SelectorField::Exclude);
        assert_eq!(e.field(), "spec.exclude[\"tier\"][0]");
        assert_eq!(e.source.position, 0);
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn display_lists_terms() {
        let s = selector(&[("env", &["prod-*"]), ("tier", &[])]);
        assert_eq!(s.to_string(), "{\"env\": [\"prod-*\"], \"tier\": []}");
        assert_eq!(s.len(), 2);
    }
}
