#!/usr/bin/env python3
"""Self-test for scripts/opa_bundle.py (no pytest needed).

Builds small bundles with tarfile in a temp dir, runs opa_bundle.py on each
and checks its output and exit status. Needs scripts/setup.sh to have run
(opa_bundle.py finds .cache/venv by itself). Ends with 'N passed, N failed'.
"""

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TOOL = os.path.join(HERE, "opa_bundle.py")
if not os.path.exists(os.path.join(os.path.dirname(HERE), ".cache", "venv", "bin", "python")):
    try:
        import opa_bindings  # noqa: F401
    except ImportError:
        sys.exit("test_opa_bundle: OPA binding missing: run scripts/setup.sh first")
TMP = tempfile.mkdtemp(prefix="opa_bundle_test.")
passed, failed = 0, 0


def make_bundle(name, files, manifest=None):
    """files: {tar entry name: str | bytes | JSON value}. manifest: dict or raw str."""
    path = os.path.join(TMP, name + ".tar.gz")
    entries = dict(files)
    if manifest is not None:
        entries["/.manifest"] = manifest if isinstance(manifest, str) else json.dumps(manifest)
    with tarfile.open(path, "w:gz") as tf:
        for entry, content in entries.items():
            if isinstance(content, str):
                raw = content.encode()
            elif isinstance(content, bytes):
                raw = content
            else:
                raw = json.dumps(content).encode()
            info = tarfile.TarInfo(entry)
            info.size = len(raw)
            tf.addfile(info, io.BytesIO(raw))
    return path


def run(bundle, cases=None, mask=None):
    args = [sys.executable, TOOL, bundle]
    if cases is not None:
        cpath = os.path.join(TMP, "cases.json")
        with open(cpath, "w") as f:
            json.dump(cases, f)
        args.append(cpath)
    if mask is not None:
        mpath = os.path.join(TMP, "mask-input.json")
        with open(mpath, "w") as f:
            json.dump(mask, f)
        args += ["--mask", mpath]
    p = subprocess.run(args, capture_output=True, text=True)
    out = json.loads(p.stdout) if p.returncode == 0 and p.stdout.strip() else None
    return p.returncode, out, p.stderr


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name}\n     {detail}")


def expect_reject(name, bundle, code, needle, cases=None):
    rc, _, err = run(bundle, cases or {"queries": ["data"], "inputs": [{}]})
    check(name, rc == code and needle in err, f"rc={rc} (want {code}), stderr={err.strip()!r}, want {needle!r}")


POLICY = """package x

import rego.v1

default allow := false

allow if input.user in data.x.cfg.admins

level := data.x.cfg.levels[input.user]
"""

# 1. A good bundle: manifest, policy in package x, data.json at x/cfg.
good = make_bundle(
    "good",
    {
        "/x/policy.rego": POLICY,
        "/x/cfg/data.json": {"admins": ["alice"], "levels": {"alice": 3}},
    },
    {"revision": "r1", "roots": ["x"], "rego_version": 1, "metadata": {"by": "test"}},
)
rc, out, err = run(
    good,
    {
        "queries": ["data.x.allow", "data.x.level", "data.x.enforce", "data.x.cfg.admins", "input.user"],
        "inputs": [{"user": "alice"}, {"user": "bob"}],
    },
)
check("good bundle exits 0", rc == 0, err)
if out:
    got = {(r["input_index"], r["query"]): (r["result"], r["error"]) for r in out["results"]}
    check("manifest echoed", out["manifest"]["revision"] == "r1" and out["manifest"]["roots"] == ["x"], out["manifest"])
    check("module package reported", out["modules"] == [{"path": "/x/policy.rego", "package": "package x"}], out["modules"])
    check("alice allowed", got[(0, "data.x.allow")] == (True, None), got)
    check("bob denied (default)", got[(1, "data.x.allow")] == (False, None), got)
    check("data.json mounted at data.x.cfg", got[(0, "data.x.cfg.admins")] == (["alice"], None), got)
    check("rule over data", got[(0, "data.x.level")] == (3, None), got)
    check("undefined is null", got[(1, "data.x.level")] == (None, None), got)
    check("undefined rule of existing package is null, not an error", got[(0, "data.x.enforce")] == (None, None), got)
    check("non-data query", got[(1, "input.user")] == ("bob", None), got)
    check("results ordered input-major", [(r["input_index"], r["query"]) for r in out["results"]][:2]
          == [(0, "data.x.allow"), (0, "data.x.level")], out["results"][:2])

# 2. Overlapping roots are rejected, segment-wise.
expect_reject("overlapping roots x and x/y rejected",
              make_bundle("overlap", {"/x/policy.rego": POLICY}, {"roots": ["x", "x/y"]}), 2, "overlapped roots")
expect_reject("duplicate roots rejected",
              make_bundle("dup", {"/x/policy.rego": POLICY}, {"roots": ["x", "/x/"]}), 2, "overlapped roots")
rc, out, err = run(
    make_bundle("nooverlap", {"a.rego": "package a\nv := 1\n", "ab.rego": "package ab\nv := 2\n"},
                {"roots": ["a", "ab"]}),
    {"queries": ["data.a.v", "data.ab.v"], "inputs": [None]},
)
check("roots a and ab do not overlap", rc == 0 and [r["result"] for r in out["results"]] == [1, 2], err)

# 3. Everything must lie under a root.
expect_reject("module outside roots rejected",
              make_bundle("modout", {"/y/p.rego": "package y\nv := 1\n"}, {"roots": ["x"]}), 2, "do not permit 'package y'")
expect_reject("data outside roots rejected",
              make_bundle("dataout", {"/y/data.json": {"k": 1}}, {"roots": ["x"]}), 2, "do not permit data at path '/y'")
expect_reject("root data.json outside roots rejected",
              make_bundle("rootdata", {"/data.json": {"x": {}, "z": 1}}, {"roots": ["x"]}), 2, "'/z'")
expect_reject("empty roots list permits nothing",
              make_bundle("noroots", {"/x/policy.rego": POLICY}, {"roots": []}), 2, "do not permit")
rc, out, err = run(make_bundle("nomanifest", {"p.rego": "package q\nv := 1\n", "data.json": {"d": 2}}),
                   {"queries": ["data.q.v", "data.d"], "inputs": [None]})
check("no manifest: root '' permits everything", rc == 0 and [r["result"] for r in out["results"]] == [1, 2], err)

# 4. Manifest fields.
expect_reject("rego_version 2 rejected",
              make_bundle("rv2", {"/x/policy.rego": POLICY}, {"roots": ["x"], "rego_version": 2}), 2, "rego-version 2")
expect_reject("rego_version 0 cannot be evaluated (binding is Rego v1 only)",
              make_bundle("rv0", {"/x/p.rego": "package x\nallow { true }\n"}, {"roots": ["x"], "rego_version": 0}),
              3, "Rego v0")
expect_reject("roots of the wrong type rejected",
              make_bundle("rootsstr", {}, {"roots": "x"}), 2, "manifest decode")
expect_reject("invalid manifest JSON rejected", make_bundle("badjson", {}, "{not json"), 2, "manifest decode")

# 5. Data merging.
expect_reject("conflicting data files rejected",
              make_bundle("conflict", {"/x/data.json": {"k": 1}, "/data.json": {"x": {"k": 2}}}, {"roots": ["x"]}),
              2, "failed to insert data file")
rc, out, err = run(
    make_bundle("merge", {"x/a/data.json": {"k": 1}, "./x/data.json": {"b": 2}}, {"roots": ["x"]}),
    {"queries": ["data.x"], "inputs": [None]},
)
check("data files merge; tar names with and without / or ./", rc == 0 and out["results"][0]["result"] == {"a": {"k": 1}, "b": 2}, (err, out))

# 6. Errors from OPA itself.
expect_reject("compile error reported, exit 1",
              make_bundle("unsafe", {"/x/p.rego": "package x\nallow if { y }\n"}, {"roots": ["x"]}), 1, "rego_unsafe_var_error")
expect_reject("v0 syntax is a parse error under Rego v1",
              make_bundle("v0syntax", {"/x/p.rego": "package x\nallow { true }\n"}, {"roots": ["x"], "rego_version": 1}),
              1, "rego_parse_error")
expect_reject("type error reported",
              make_bundle("typeerr", {"/x/p.rego": "package x\nb := true\nc := data.x.b.foo\n"}, {"roots": ["x"]}),
              1, "rego_type_error")
rc, out, err = run(
    make_bundle("multi", {"/x/p.rego": "package x\nv := input.a\nv := input.b\n"}, {"roots": ["x"]}),
    {"queries": ["data.x.v"], "inputs": [{"a": 1, "b": 2}, {"a": 1, "b": 1}]},
)
check("eval error is per case, exit 0",
      rc == 0 and out["results"][0]["error"] and "eval_conflict_error" in out["results"][0]["error"]
      and out["results"][1] == {"input_index": 1, "query": "data.x.v", "result": 1, "error": None}, (err, out))
rc, out, err = run(
    make_bundle("crossref", {"/x/p.rego": "package x\nallow := true\n",
                             "/y/p.rego": "package y\nimport rego.v1\nenf := data.x.enforce\nok if not data.x.enforce\n"},
                {"roots": ["x", "y"]}),
    {"queries": ["data.y.enf", "data.y.ok"], "inputs": [None]},
)
check("referencing an undefined rule of an existing package compiles",
      rc == 0 and [(r["result"], r["error"]) for r in out["results"]] == [(None, None), (True, None)], (err, out))

# 7. Decision masking.
MASK = """package system.log

import rego.v1

mask contains "/input/password"
mask contains "/input/token" if input.input.token
mask contains {"op": "upsert", "path": "/input/user", "value": "***"} if input.input.user
"""
mb = make_bundle("mask", {"/system/log/mask.rego": MASK, "/x/policy.rego": POLICY},
                 {"roots": ["x", "system/log"], "rego_version": 1})
rc, out, err = run(mb, mask={"input": {"token": "t", "password": "p"}})
check("mask sorted list", rc == 0 and out == ["/input/password", "/input/token"], (rc, out, err))
rc, out, err = run(mb, mask={"input": {"user": "u"}})
check("mask with object entries", rc == 0 and out == ["/input/password", {"op": "upsert", "path": "/input/user", "value": "***"}], (rc, out, err))
rc, out, err = run(good, mask={"input": {}})
check("no mask rule: empty list", rc == 0 and out == [], (rc, out, err))
expect_reject("mask policy outside roots rejected",
              make_bundle("maskout", {"/system/log/mask.rego": MASK}, {"roots": ["x"]}), 2, "package system.log")

# 8. Usage.
rc, _, err = run(good)
check("missing CASES is a usage error (64)", rc == 64, err)

shutil.rmtree(TMP, ignore_errors=True)
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
