#!/usr/bin/env python3
"""Check glob cases against OPA's own engine.

Usage: opa_glob.py CASES.json

CASES.json is a list of {"pattern", "value", "matches"} (OPA's
`glob.match(pattern, [".", "_", "-"], value)` must return `matches`) and
{"pattern", "error": true} (OPA must reject the pattern). Other fields
("edict", "note") are for edict's own test and ignored here. Needs the
`opa-golib-python-bindings` package (module `opa_bindings`).

Prints each mismatch, then "N passed, M failed"; exits 1 on any mismatch.
"""

import json
import sys

QUERY = 'result := glob.match(input.pattern, [".", "_", "-"], input.value)'


def load_engine():
    try:
        from opa_bindings import OpaEngine, OpaError
    except ImportError as e:
        sys.exit(f"cannot import opa_bindings ({e}): pip install opa-golib-python-bindings")
    return OpaEngine(), OpaError


def check(engine, opa_error, case):
    """None when OPA agrees with the case, else a description of the mismatch."""
    pattern = case["pattern"]
    value = case.get("value", "")
    try:
        rows = engine.eval_query(QUERY, {"pattern": pattern, "value": value})
    except opa_error as e:
        if case.get("error"):
            return None
        return f"{pattern!r} vs {value!r}: OPA raised {e}"
    got = rows[0]["result"] if rows else None
    if case.get("error"):
        return f"{pattern!r}: expected an error, OPA returned {got!r}"
    if got != case["matches"]:
        return f"{pattern!r} vs {value!r}: expected {case['matches']!r}, OPA returned {got!r}"
    return None


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    with open(sys.argv[1], encoding="utf-8") as f:
        cases = json.load(f)
    engine, opa_error = load_engine()
    failures = [m for m in (check(engine, opa_error, c) for c in cases) if m]
    for message in failures:
        print("MISMATCH " + message)
    print(f"{len(cases) - len(failures)} passed, {len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
