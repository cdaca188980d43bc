//! Rego source as OPA reads it. regorus's parser refuses some Rego that OPA 1.x accepts and
//! refuses some that OPA refuses at another stage; these corrections run on a module's text
//! before regorus parses it, each keeping line numbers where they were.

use super::{CompileError, ErrorCode};

/// An `import` line as written: its path and where it is.
struct ImportLine {
    line: usize,
    col: usize,
    path: String,
    alias: Option<String>,
}

fn import_lines(text: &str) -> Vec<ImportLine> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let trimmed = l.trim_start();
            let rest = trimmed.strip_prefix("import ")?;
            let rest = rest.split('#').next().unwrap_or_default();
            let mut words = rest.split_whitespace();
            let path = words.next()?.to_string();
            let alias = match (words.next(), words.next()) {
                (Some("as"), Some(a)) => Some(a.to_string()),
                _ => None,
            };
            Some(ImportLine { line: i + 1, col: l.len() - trimmed.len() + 1, path, alias })
        })
        .collect()
}

/// The keywords `import future.keywords.X` may name.
const FUTURE_KEYWORDS: [&str; 4] = ["contains", "every", "if", "in"];

/// Read a module's imports before regorus does, and blank the ones that mean nothing in Rego v1.
///
/// regorus refuses what OPA 1.x accepts and refuses differently what OPA refuses: it rejects
/// `import future.keywords.if` beside `import rego.v1` and `import rego.v1 as x` (OPA takes
/// both as no-ops in v1), and reports a shadowing import as a parse error at the first import
/// where OPA's compiler reports `import must not shadow import …` at the second. edict checks
/// `future`, `rego` and duplicate imports here, as OPA does, and hides from regorus the lines
/// it would misjudge (blanked, so every other position stays where it was).
pub(super) fn pre_imports(label: &str, text: &str) -> Result<(String, Vec<CompileError>), CompileError> {
    let mut out = text.to_string();
    let mut shadowing = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let error = |i: &ImportLine, code, message: String| CompileError {
        file: label.to_string(),
        line: i.line,
        col: i.col,
        code,
        message,
    };
    for i in import_lines(text) {
        let parts: Vec<&str> = i.path.split('.').collect();
        let key = match parts[0] {
            "future" => {
                if i.alias.is_some() {
                    return Err(error(
                        &i,
                        ErrorCode::Parse,
                        "`future` imports cannot be aliased".to_string(),
                    ));
                }
                let ok = parts.len() <= 3
                    && parts.get(1) == Some(&"keywords")
                    && parts.get(2).is_none_or(|k| FUTURE_KEYWORDS.contains(k));
                if !ok {
                    return Err(error(
                        &i,
                        ErrorCode::Parse,
                        format!(
                            "unexpected import path, must be one of: {}",
                            FUTURE_KEYWORDS.map(|k| format!("future.keywords.{k}")).join(", ")
                        ),
                    ));
                }
                i.path.clone()
            }
            "rego" => {
                if i.path != "rego.v1" {
                    return Err(error(
                        &i,
                        ErrorCode::Parse,
                        format!("invalid import `{}`, must be `rego.v1`", i.path),
                    ));
                }
                i.path.clone()
            }
            "data" | "input" => {
                if let Some(alias) = i.alias.as_deref().filter(|a| matches!(*a, "input" | "data")) {
                    return Err(error(
                        &i,
                        ErrorCode::Parse,
                        format!("'{alias}' keyword cannot be used as an import alias"),
                    ));
                }
                i.alias.clone().unwrap_or_else(|| parts.last().map(|p| p.to_string()).unwrap_or_default())
            }
            _ => continue,
        };
        let shown = match &i.alias {
            Some(a) => format!("{} as {a}", i.path),
            None => i.path.clone(),
        };
        let duplicate = seen.contains(&key);
        if duplicate {
            shadowing.push(error(&i, ErrorCode::Compile, format!("import must not shadow import {shown}")));
        }
        seen.push(key);
        if duplicate || matches!(parts[0], "future" | "rego") {
            blank_line(&mut out, i.line);
        }
    }
    Ok((out, shadowing))
}

/// `default p` with no value is `default p := true` to OPA; regorus's parser wants the value,
/// so edict writes it in (at the end of the line, so no position moves).
pub(super) fn default_values(text: &str) -> String {
    if !text.contains("default") {
        return text.to_string();
    }
    text.split_inclusive('\n')
        .map(|l| {
            let body = l.trim_end_matches(['\n', '\r']);
            let words: Vec<&str> = body.split('#').next().unwrap_or_default().split_whitespace().collect();
            let bare = words.len() == 2
                && words[0] == "default"
                && words[1].chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
            if !bare {
                return l.to_string();
            }
            // Before a trailing comment, if there is one.
            let end = body.find('#').unwrap_or(body.len());
            format!("{} := true {}{}", &body[..end], &body[end..], &l[body.len()..])
        })
        .collect()
}

/// Template strings (`$"hello {input.user}"`, OPA 1.19 and later) do not parse in regorus:
/// each becomes `sprintf("", [<expr>, …])`, a string built from the same expressions, so their
/// variables, calls and types are still checked. Lines keep their number; columns after a
/// template on its line move by a few characters.
pub(super) fn template_strings(text: &str) -> String {
    if !text.contains("$\"") {
        return text.to_string();
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut in_string = false;
    while i < chars.len() {
        let c = chars[i];
        if in_string {
            out.push(c);
            if c == '\\' && i + 1 < chars.len() {
                out.push(chars[i + 1]);
                i += 1;
            } else if c == '"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        if c == '#' {
            // A comment runs to the end of the line.
            while i < chars.len() && chars[i] != '\n' {
                out.push(chars[i]);
                i += 1;
            }
            continue;
        }
        if c == '"' {
            in_string = true;
            out.push(c);
            i += 1;
            continue;
        }
        if c == '$'
            && chars.get(i + 1) == Some(&'"')
            && let Some((exprs, end)) = template_parts(&chars, i + 2)
        {
            out.push_str(&format!("sprintf(\"\", [{}])", exprs.join(", ")));
            i = end;
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

/// regorus's parser takes only constant keys in a `with` target (`with input[k] as v` fails
/// with "expected string"), where OPA accepts a variable index. edict checks such a target as
/// the constant key of the same name (`with input["k"] as v`): the target stays an `input`
/// or `data` reference, which is what OPA requires of it.
pub(super) fn with_var_indexes(text: &str) -> String {
    if !text.contains("with ") {
        return text.to_string();
    }
    text.split_inclusive('\n')
        .map(|line| {
            let code = line.split('#').next().unwrap_or_default();
            let Some(at) = code.find(" with ").map(|i| i + 6) else { return line.to_string() };
            if code[..at].matches('"').count() % 2 == 1 {
                return line.to_string();
            }
            let end = line[at..].find(char::is_whitespace).map(|e| at + e).unwrap_or(line.len());
            let target = &line[at..end];
            let mut fixed = String::new();
            let mut rest = target;
            while let Some(open) = rest.find('[') {
                let Some(close) = rest[open..].find(']').map(|c| open + c) else { break };
                let index = &rest[open + 1..close];
                fixed.push_str(&rest[..open]);
                if !index.is_empty()
                    && index.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !index.starts_with(|c: char| c.is_ascii_digit())
                {
                    fixed.push_str(&format!("[\"{index}\"]"));
                } else {
                    fixed.push_str(&rest[open..=close]);
                }
                rest = &rest[close + 1..];
            }
            fixed.push_str(rest);
            format!("{}{fixed}{}", &line[..at], &line[end..])
        })
        .collect()
}

/// The expressions of a template string whose text starts at `start`, and the index after its
/// closing quote; `None` when it does not close on its line.
fn template_parts(chars: &[char], start: usize) -> Option<(Vec<String>, usize)> {
    let mut exprs = Vec::new();
    let mut i = start;
    while i < chars.len() {
        match chars[i] {
            '\n' => return None,
            '\\' => i += 2,
            '"' => return Some((exprs, i + 1)),
            '{' => {
                let mut depth = 1;
                let mut j = i + 1;
                let mut quoted = false;
                while j < chars.len() && depth > 0 {
                    match chars[j] {
                        '\n' => return None,
                        '\\' if quoted => j += 1,
                        '"' => quoted = !quoted,
                        '{' if !quoted => depth += 1,
                        '}' if !quoted => depth -= 1,
                        _ => {}
                    }
                    j += 1;
                }
                exprs.push(chars[i + 1..j - 1].iter().collect());
                i = j;
            }
            _ => i += 1,
        }
    }
    None
}

fn blank_line(text: &mut String, line: usize) {
    let mut start = 0;
    for (n, l) in text.split_inclusive('\n').enumerate() {
        if n + 1 == line {
            let len = l.trim_end_matches('\n').len();
            text.replace_range(start..start + len, &" ".repeat(len));
            return;
        }
        start += l.len();
    }
}
