#!/usr/bin/env python3
"""Compile sets of Rego v1 modules in OPA's own engine (OPA v1.20.2, through the
opa-golib-python-bindings package that scripts/setup.sh installs) and report
OPA's verdict: accepted, or the errors its parser / compiler gives.

Usage:
  opa_compile.py [CASES.json | -]
      CASES.json (stdin when absent or "-"): a JSON list of
      {"name": str, "modules": [[label, rego text], ...]}
      stdout: a JSON list, one entry per case, in order (errors sorted by
      file and line):
      {"name": str, "ok": bool,
       "errors": [{"code": "rego_type_error", "file": label, "line": int,
                   "message": OPA's message (without the details),
                   "details": the tab-indented lines OPA adds below it,
                              without the tab, joined by newlines ("" when
                              none)}, ...]}
  opa_compile.py --corpus DIR [--text]
      The cases of a corpus directory (the format of tests/data/rego_gate,
      described in its README.md) instead of CASES.json. With --text, one
      human-readable line per case (and per error) instead of JSON.

Each case gets a fresh engine. Its modules are parsed one by one (add_policy):
the parse errors of every module are reported (as `opa check` does; OPA's
bundle reader stops at the first module that fails). When all parse, the whole
set is compiled together by preparing a query, which runs every compiler
stage on every module, reachable from the query or not. Like OPA's compiler,
only the errors of the first stage that finds any are reported, at most 10
(OPA's default error limit; a further "error limit reached" entry has no file
and line 0). OPA prints file and line only, no column. An error whose text
cannot be read has the code "unparsed" and OPA's whole text as message.

Exit status:
  0  every case was compiled (its verdict is in the output)
  4  the OPA binding is not installed (run scripts/setup.sh)
  64 usage error, or unreadable cases / corpus
"""

import argparse
import json
import os
import re
import signal
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

try:
    from opa_bindings import OpaEngine, OpaError
except ImportError:
    _venv_python = os.path.join(ROOT, ".cache", "venv", "bin", "python")
    if os.path.exists(_venv_python) and os.path.realpath(sys.prefix) != os.path.realpath(
        os.path.join(ROOT, ".cache", "venv")
    ):
        os.execv(_venv_python, [_venv_python, os.path.abspath(__file__), *sys.argv[1:]])
    print("opa_compile: the OPA binding is not installed: run scripts/setup.sh", file=sys.stderr)
    sys.exit(4)


class Failure(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


# --- OPA's error text -----------------------------------------------------------------

# ast.Errors.Error(): "N errors occurred:\n<err>\n<err>" or "1 error occurred: <err>";
# ast.Error.Error(): "file:row: code: message" then "\n\t<detail line>" per detail line. A
# message may itself span lines (the rule-conflict ones do); those lines are not indented
# with a tab and do not start a new "file:row: code:".
_PREFIXES = ("bundle activation failed: ",)
_COUNT = re.compile(r"^\d+ errors? occurred:\s*")
_LOCATED = re.compile(r"^(?P<file>.+?):(?P<line>\d+): (?P<code>rego_[a-z_]+): (?P<message>.*)$")
_UNLOCATED = re.compile(r"^(?P<code>rego_[a-z_]+): (?P<message>.*)$")


def parse_errors(text):
    """OPA's error text as a list of {"code", "file", "line", "message", "details"}."""
    for prefix in _PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix) :]
    text = _COUNT.sub("", text, count=1)
    errors = []
    for raw in text.split("\n"):
        if raw.startswith("\t") and errors:
            errors[-1]["_details"].append(raw[1:])
            continue
        m = _LOCATED.match(raw) or _UNLOCATED.match(raw)
        if m is None:
            if errors:  # a message of several lines ("rule x conflicts with:\n  rule y at ...")
                errors[-1]["message"] += "\n" + raw
            elif raw.strip():
                errors.append(_error("unparsed", None, 0, raw))
            continue
        g = m.groupdict()
        errors.append(_error(g["code"], g.get("file"), int(g.get("line") or 0), g["message"]))
    for e in errors:
        e["details"] = "\n".join(e.pop("_details"))
    if not errors:
        errors.append(_error("unparsed", None, 0, text))
        errors[-1]["details"] = "\n".join(errors[-1].pop("_details"))
    # OPA's order varies from run to run (recursion errors across modules): sort.
    errors.sort(key=lambda e: (e["file"] is None, e["file"] or "", e["line"], e["code"], e["message"]))
    return errors


def _error(code, file, line, message):
    return {"code": code, "file": file, "line": line, "message": message, "_details": []}


# --- compiling one case ---------------------------------------------------------------


def compile_case(modules):
    """(ok, errors) for one set of (label, text) modules compiled together."""
    with OpaEngine() as engine:
        errors = []
        for label, text in modules:
            try:
                engine.add_policy(label, text)
            except OpaError as e:
                errors.extend(parse_errors(e.message))
        if errors:
            return False, errors
        try:
            # Preparing any query compiles every module (all stages, all rules).
            engine.eval_query("true")
        except OpaError as e:
            return False, parse_errors(e.message)
    return True, []


# --- the corpus directory -------------------------------------------------------------

_MODULE_MARK = re.compile(r"^# module: (\S+)\s*$")


def read_corpus(directory):
    """The cases of a corpus directory: every `*.rego` file below it, sorted by path.
    A case is named by its path without `.rego`; its modules are the file split at
    `# module: LABEL` lines (anything before the first is dropped), or the whole file
    under its base name when it has no such line."""
    cases = []
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames.sort()
        for fn in sorted(filenames):
            if not fn.endswith(".rego"):
                continue
            path = os.path.join(dirpath, fn)
            rel = os.path.relpath(path, directory).replace(os.sep, "/")
            try:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
            except (OSError, UnicodeDecodeError) as e:
                raise Failure(64, f"cannot read {path}: {e}") from None
            cases.append({"name": rel[: -len(".rego")], "modules": split_modules(fn, text)})
    cases.sort(key=lambda c: c["name"])
    return cases


def split_modules(file_name, text):
    modules, label, lines = [], None, []
    parts = text.split("\n")
    for line in [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else []):
        m = _MODULE_MARK.match(line.rstrip())
        if m:
            if label is not None:
                modules.append([label, "".join(lines)])
            label, lines = m.group(1), []
        else:
            lines.append(line)
    if label is None:
        return [[file_name, text]]
    modules.append([label, "".join(lines)])
    return modules


def read_cases(source):
    try:
        if source in (None, "-"):
            raw = sys.stdin.read()
        else:
            with open(source, encoding="utf-8") as f:
                raw = f.read()
        cases = json.loads(raw)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise Failure(64, f"cannot read cases from {source or 'stdin'}: {e}") from None
    ok = isinstance(cases, list) and all(
        isinstance(c, dict)
        and isinstance(c.get("name"), str)
        and isinstance(c.get("modules"), list)
        and all(
            isinstance(m, list) and len(m) == 2 and all(isinstance(x, str) for x in m) for m in c["modules"]
        )
        for c in cases
    )
    if not ok:
        raise Failure(64, 'want a JSON list of {"name": str, "modules": [[label, text], ...]}')
    return cases


# --- main -----------------------------------------------------------------------------


def _text_line(result):
    if result["ok"]:
        return f"{result['name']}: accepted"
    lines = [f"{result['name']}: rejected"]
    for e in result["errors"]:
        lines.append(f"    {e['file']}:{e['line']}: {e['code']}: {e['message']}")
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(64)


def main(argv=None):
    ap = _Parser(prog="opa_compile.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("cases", nargs="?", help="CASES.json, or - for stdin (the default)")
    ap.add_argument("--corpus", metavar="DIR", help="read the cases of a corpus directory")
    ap.add_argument("--text", action="store_true", help="human-readable output")
    args = ap.parse_args(argv)
    if args.corpus is not None and args.cases is not None:
        ap.error("give CASES.json or --corpus DIR, not both")
    try:
        cases = read_corpus(args.corpus) if args.corpus is not None else read_cases(args.cases)
    except Failure as f:
        print(f"opa_compile: {f}", file=sys.stderr)
        return f.code
    results = []
    for case in cases:
        ok, errors = compile_case([tuple(m) for m in case["modules"]])
        results.append({"name": case["name"], "ok": ok, "errors": errors})
    if args.text:
        for r in results:
            print(_text_line(r))
        rejected = sum(not r["ok"] for r in results)
        print(f"{len(results)} cases: {len(results) - rejected} accepted, {rejected} rejected")
    else:
        json.dump(results, sys.stdout, indent=1)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `... | head` is not an error
    sys.exit(main())
