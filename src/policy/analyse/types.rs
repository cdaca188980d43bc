//! Rego types as OPA's type checker knows them, reduced to what decides a verdict.
//!
//! OPA's types also carry the static keys of objects and the static items of arrays. edict
//! keeps the element types only: it may miss a mismatch hidden in one key, never invent one.

use std::fmt;

/// A type. `Any` is what a value read from `input` or an unknown reference has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ty {
    /// Anything.
    Any,
    /// `null`
    Null,
    /// `boolean`
    Bool,
    /// `number`
    Num,
    /// `string`
    Str,
    /// An array of elements of this type.
    Arr(Box<Ty>),
    /// An object whose values have this type.
    Obj(Box<Ty>),
    /// A set of this type.
    Set(Box<Ty>),
    /// One of these types.
    Union(Vec<Ty>),
}

impl Ty {
    /// Read a type from a capabilities `decl`.
    pub fn from_decl(decl: &serde_json::Value) -> Ty {
        let of = |key: &str| decl.get(key).map(Ty::from_decl);
        match decl["type"].as_str().unwrap_or("any") {
            "null" => Ty::Null,
            "boolean" => Ty::Bool,
            "number" => Ty::Num,
            "string" => Ty::Str,
            "set" => Ty::Set(Box::new(of("of").unwrap_or(Ty::Any))),
            "array" => {
                let mut items: Vec<Ty> = decl["static"]
                    .as_array()
                    .map(|s| s.iter().map(Ty::from_decl).collect())
                    .unwrap_or_default();
                items.extend(of("dynamic"));
                Ty::Arr(Box::new(Ty::union(items)))
            }
            "object" => {
                let mut values: Vec<Ty> = decl["static"]
                    .as_array()
                    .map(|s| s.iter().map(|kv| Ty::from_decl(&kv["value"])).collect())
                    .unwrap_or_default();
                values.extend(decl.get("dynamic").map(|d| Ty::from_decl(&d["value"])));
                Ty::Obj(Box::new(Ty::union(values)))
            }
            _ => match decl.get("of").and_then(|o| o.as_array()) {
                Some(members) => Ty::union(members.iter().map(Ty::from_decl).collect()),
                None => Ty::Any,
            },
        }
    }

    /// The union of several types (`Any` for none, or when one of them is `Any`).
    pub fn union(members: Vec<Ty>) -> Ty {
        let mut out: Vec<Ty> = Vec::new();
        for m in members {
            let flat = match m {
                Ty::Union(inner) => inner,
                Ty::Any => return Ty::Any,
                other => vec![other],
            };
            for t in flat {
                if !out.contains(&t) {
                    out.push(t);
                }
            }
        }
        match out.len() {
            0 => Ty::Any,
            1 => out.pop().unwrap_or(Ty::Any),
            _ => Ty::Union(out),
        }
    }

    /// Whether a value of type `self` may be passed where `want` is expected: OPA refuses an
    /// argument only when no value could have both types.
    pub fn fits(&self, want: &Ty) -> bool {
        match (self, want) {
            (Ty::Any, _) | (_, Ty::Any) => true,
            (Ty::Union(members), _) => members.iter().any(|m| m.fits(want)),
            (_, Ty::Union(members)) => members.iter().any(|m| self.fits(m)),
            (Ty::Arr(a), Ty::Arr(b)) | (Ty::Set(a), Ty::Set(b)) | (Ty::Obj(a), Ty::Obj(b)) => a.fits(b),
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }

    /// Whether the type is known well enough to refuse a comparison with another.
    pub fn is_known(&self) -> bool {
        !matches!(self, Ty::Any)
    }

    /// The type of `x[_]` for a value `x` of this type.
    pub fn element(&self) -> Ty {
        match self {
            Ty::Arr(t) | Ty::Obj(t) | Ty::Set(t) => (**t).clone(),
            _ => Ty::Any,
        }
    }
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::Any => f.write_str("any"),
            Ty::Null => f.write_str("null"),
            Ty::Bool => f.write_str("boolean"),
            Ty::Num => f.write_str("number"),
            Ty::Str => f.write_str("string"),
            Ty::Arr(t) => write!(f, "array[{t}]"),
            Ty::Obj(t) => write!(f, "object[any: {t}]"),
            Ty::Set(t) => write!(f, "set[{t}]"),
            Ty::Union(members) => {
                f.write_str("any<")?;
                for (i, m) in members.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{m}")?;
                }
                f.write_str(">")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_argument_fits_unless_no_value_has_both_types() {
        let collection = Ty::union(vec![Ty::Str, Ty::Arr(Box::new(Ty::Any)), Ty::Set(Box::new(Ty::Any))]);
        assert!(!Ty::Num.fits(&collection));
        assert!(Ty::Str.fits(&collection));
        assert!(Ty::Any.fits(&collection));
        assert!(Ty::union(vec![Ty::Num, Ty::Str]).fits(&Ty::Str));
        assert!(!Ty::Arr(Box::new(Ty::Num)).fits(&Ty::Arr(Box::new(Ty::Str))));
        assert!(Ty::Arr(Box::new(Ty::Any)).fits(&Ty::Arr(Box::new(Ty::Str))));
        assert_eq!(Ty::union(vec![Ty::Num, Ty::Num]), Ty::Num);
        assert_eq!(Ty::union(vec![Ty::Num, Ty::Any]), Ty::Any);
    }
}
