//! OPA's builtin declarations (its capabilities files), embedded at build time.
//!
//! The files in `capabilities/` are OPA's own, copied unchanged from the `capabilities/`
//! folder of the OPA repository (Apache License 2.0). OPA's type checker uses exactly these
//! declarations, so edict reads them instead of restating 200 signatures by hand.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;

use super::analyse::types::Ty;

/// The releases edict knows, oldest first, with their capabilities files.
const RELEASES: [(&str, &str); 2] = [
    ("v1.9.0", include_str!("capabilities/v1.9.0.json")),
    ("v1.19.1", include_str!("capabilities/v1.19.1.json")),
];

/// One builtin as the type checker sees it.
#[derive(Clone, Debug)]
pub struct Builtin {
    /// Its full name (`strings.replace_n`).
    pub name: String,
    /// Argument types.
    pub args: Vec<Ty>,
    /// Whether the last argument may repeat (`print`).
    pub variadic: bool,
    /// The result type; `None` for builtins that return nothing (`print`).
    pub result: Option<Ty>,
    /// Deprecated builtins are refused in Rego v1 modules.
    pub deprecated: bool,
    /// The infix operator it stands for (`+`, `==`), if any.
    pub infix: Option<String>,
}

/// The builtins of one OPA release.
#[derive(Debug)]
pub struct Capabilities {
    /// The release (`v1.19.1`).
    pub version: &'static str,
    builtins: HashMap<String, Builtin>,
}

#[derive(Deserialize)]
struct File {
    builtins: Vec<Decl>,
}

#[derive(Deserialize)]
struct Decl {
    name: String,
    decl: serde_json::Value,
    #[serde(default)]
    deprecated: bool,
    infix: Option<String>,
}

impl Capabilities {
    /// The releases edict knows, oldest first.
    pub fn known() -> Vec<&'static str> {
        RELEASES.iter().map(|(v, _)| *v).collect()
    }

    /// The declarations of one release, by name (`v1.19.1` or `1.19.1`).
    pub fn named(version: &str) -> Option<&'static Capabilities> {
        let wanted = if version.starts_with('v') { version.to_string() } else { format!("v{version}") };
        let index = RELEASES.iter().position(|(v, _)| *v == wanted)?;
        Some(&all()[index])
    }

    /// The newest release edict knows.
    pub fn latest() -> &'static Capabilities {
        &all()[RELEASES.len() - 1]
    }

    /// The release this process checks against unless told otherwise: what
    /// [`set_default`](Self::set_default) chose (`--opa-version`), else the newest.
    pub fn default_release() -> &'static Capabilities {
        DEFAULT.get().copied().unwrap_or_else(Capabilities::latest)
    }

    /// Choose the process's default release, once, before any check runs (the CLI's
    /// `--opa-version`). Returns false when a default was already chosen.
    pub fn set_default(caps: &'static Capabilities) -> bool {
        DEFAULT.set(caps).is_ok()
    }

    /// A builtin by its full name.
    pub fn builtin(&self, name: &str) -> Option<&Builtin> {
        self.builtins.get(name)
    }

    /// The builtin an infix operator stands for (`+` is `plus`).
    pub fn infix(&self, op: &str) -> Option<&Builtin> {
        self.builtins.values().find(|b| b.infix.as_deref() == Some(op))
    }

    /// Whether any builtin's name starts with `prefix.` (a namespace such as `strings`).
    pub fn is_namespace(&self, prefix: &str) -> bool {
        self.builtins
            .keys()
            .any(|k| k.len() > prefix.len() && k.starts_with(prefix) && k.as_bytes()[prefix.len()] == b'.')
    }

    fn parse(version: &'static str, text: &str) -> Capabilities {
        // The files are OPA's own and embedded: a parse failure is a build defect, caught by tests.
        let file: File = serde_json::from_str(text).unwrap_or(File { builtins: Vec::new() });
        let builtins = file
            .builtins
            .into_iter()
            .map(|d| {
                let args = d.decl["args"]
                    .as_array()
                    .map(|a| a.iter().map(Ty::from_decl).collect())
                    .unwrap_or_default();
                let result = d.decl.get("result").map(Ty::from_decl);
                let variadic = d.decl.get("variadic").is_some();
                let b = Builtin {
                    name: d.name.clone(),
                    args,
                    variadic,
                    result,
                    deprecated: d.deprecated,
                    infix: d.infix,
                };
                (d.name, b)
            })
            .collect();
        Capabilities { version, builtins }
    }
}

static DEFAULT: OnceLock<&'static Capabilities> = OnceLock::new();

fn all() -> &'static [Capabilities] {
    static ALL: OnceLock<Vec<Capabilities>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut all: Vec<Capabilities> =
            RELEASES.iter().map(|(v, text)| Capabilities::parse(v, text)).collect();
        // Older capabilities files do not say which builtins are deprecated (v1.9.0 has no
        // `deprecated` field), though those releases refuse them in Rego v1 as well: a
        // builtin deprecated in any release edict knows is deprecated in all of them.
        let deprecated: Vec<String> = all
            .iter()
            .flat_map(|c| c.builtins.values().filter(|b| b.deprecated).map(|b| b.name.clone()))
            .collect();
        for caps in &mut all {
            for name in &deprecated {
                if let Some(b) = caps.builtins.get_mut(name) {
                    b.deprecated = true;
                }
            }
        }
        all
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_release_loads_its_builtins() {
        for version in Capabilities::known() {
            let caps = Capabilities::named(version).expect("known");
            assert!(caps.builtins.len() > 190, "{version}: {} builtins", caps.builtins.len());
            let count = caps.builtin("count").expect("count");
            assert_eq!(count.args.len(), 1);
            assert_eq!(count.result, Some(Ty::Num));
            assert!(caps.builtin("any").expect("any").deprecated);
            assert_eq!(caps.infix("+").map(|b| b.name.as_str()), Some("plus"));
            assert!(caps.is_namespace("strings"));
        }
        assert!(Capabilities::named("1.19.1").is_some());
        assert!(Capabilities::named("v0.1.0").is_none());
        // uri.parse is newer than 1.9.
        assert!(Capabilities::named("v1.9.0").expect("known").builtin("uri.parse").is_none());
        assert!(Capabilities::latest().builtin("uri.parse").is_some());
    }
}
