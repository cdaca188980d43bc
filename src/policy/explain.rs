//! Human-readable explanation of an outcome (`edict eval`).

use std::fmt::Write;

use crate::model::ObjectKey;

/// Describe `data.main.outcome` for a person.
pub fn explain(system: &ObjectKey, outcome: &serde_json::Value) -> String {
    let mut out = String::new();
    let allowed = outcome["allowed"].as_bool().unwrap_or(false);
    let _ = writeln!(out, "System {system}: {}", if allowed { "ALLOWED" } else { "DENIED" });
    let deciders: Vec<String> = outcome["decided_by"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| {
                    format!("{} {}", d["source"].as_str().unwrap_or(""), d["name"].as_str().unwrap_or(""))
                })
                .collect()
        })
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "decided at tier {} ({}){}",
        outcome["tier"],
        outcome["reason"].as_str().unwrap_or(""),
        if deciders.is_empty() { String::new() } else { format!(" by {}", deciders.join(", ")) }
    );
    for m in outcome["messages"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "  - {}", m.as_str().unwrap_or(""));
    }
    for (title, key) in [("enforced decisions", "enforced"), ("monitored (not enforced)", "monitored")] {
        let list = outcome[key].as_array().cloned().unwrap_or_default();
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{title}:");
        for d in list {
            let _ = writeln!(
                out,
                "  {} {:<5} {}{}: {}",
                d["source"].as_str().unwrap_or(""),
                if d["allowed"].as_bool().unwrap_or(false) { "allow" } else { "deny" },
                d["name"].as_str().unwrap_or(""),
                if d["priority_maximum"].as_bool().unwrap_or(false) { " (priority maximum)" } else { "" },
                d["message"].as_str().unwrap_or("")
            );
        }
    }
    out
}
