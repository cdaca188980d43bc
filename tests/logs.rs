//! What the operator and `run --local` write to their logs: one line per event an operator
//! acts on, JSON lines with `--log-format json`, no colour codes when stderr is not a terminal.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Start `edict run --local` on a copy of the examples; return the process and the first
/// `lines` lines of its stderr (it is killed when they are read).
fn first_lines(format: Option<&str>, lines: usize) -> Vec<String> {
    let work = tempfile::tempdir().expect("tempdir");
    common::copy_examples(work.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edict"));
    if let Some(f) = format {
        cmd.args(["--log-format", f]);
    }
    cmd.args(["run", "--local"])
        .arg(work.path())
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .env_remove("RUST_LOG")
        .env_remove("EDICT_LOG_FORMAT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child: Child = cmd.spawn().expect("start edict run --local");
    let stderr = child.stderr.take().expect("stderr");
    let out: Vec<String> = BufReader::new(stderr).lines().map_while(Result::ok).take(lines).collect();
    let _ = child.kill();
    let _ = child.wait();
    out
}

#[test]
fn json_lines_for_log_collectors() {
    // One line per publish (the three Systems of the examples), then the summary.
    let lines = first_lines(Some("json"), 4);
    assert_eq!(lines.len(), 4, "{lines:?}");
    let parsed: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let published = parsed
        .iter()
        .find(|v| v["fields"]["message"] == "initial build published")
        .unwrap_or_else(|| panic!("{parsed:#?}"));
    assert_eq!(published["level"], "INFO");
    assert_eq!(published["fields"]["systems"], 3, "{published}");
    let each: Vec<&serde_json::Value> =
        parsed.iter().filter(|v| v["fields"]["message"] == "published").collect();
    assert_eq!(each.len(), 3, "{parsed:#?}");
    assert!(
        each.iter().all(|v| v["fields"]["system"].is_string() && v["fields"]["revision"].is_string()),
        "{each:#?}"
    );
}

#[test]
fn text_without_colour_codes_off_a_terminal() {
    let lines = first_lines(None, 4);
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("initial build published")), "{lines:?}");
    assert!(lines.iter().all(|l| !l.contains('\u{1b}')), "colour codes in {lines:?}");
}
