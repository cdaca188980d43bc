#!/usr/bin/env python3
"""Load an OPA bundle (.tar.gz) the way OPA's bundle loader does and evaluate
queries against it in OPA's own engine (OPA v1.20.2, through the
opa-golib-python-bindings package that scripts/setup.sh installs).

Usage:
  opa_bundle.py BUNDLE.tar.gz CASES.json
      CASES.json: {"queries": ["data.main.outcome", ...], "inputs": [{...}, ...]}
      stdout: {"manifest": {...}, "modules": [...], "signed": bool,
               "results": [{"input_index": i, "query": q,
                            "result": <value, or null if undefined>,
                            "error": <string or null>}, ...]}
  opa_bundle.py BUNDLE.tar.gz --mask INPUT.json
      stdout: data.system.log.mask evaluated with INPUT as input, as a sorted
              JSON list ([] when undefined).

Options: --bundle-name NAME also mounts the manifest at
data.system.bundles.NAME.manifest, as an OPA server does on activation.

Queries starting with "data" are evaluated as documents (like OPA's Data API:
the first result's value); any other query must be a single expression.
Results are ordered input by input, then query by query.

Exit status:
  0  evaluated (per-case evaluation errors are in the "error" fields)
  1  OPA rejected the policies: parse or compile error (message on stderr)
  2  OPA's bundle loader would reject the bundle: unreadable archive, bad
     .manifest, overlapping roots, module or data outside the roots, bad data
  3  valid bundle this tool cannot evaluate: Rego v0 modules (the binding only
     parses Rego v1), Wasm modules, delta (patch.json) bundles
  4  the OPA binding is not installed (run scripts/setup.sh)
  64 usage error or unreadable CASES / INPUT file

Each run uses one fresh engine. The bundle's .signatures.json is read but not
verified; note that an OPA configured without verification keys rejects a
signed bundle ("verification key not provided").
"""

import argparse
import json
import os
import re
import signal
import sys
import tarfile
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

try:
    from opa_bindings import OpaEngine, OpaError, OpaUndefinedError
except ImportError:
    _venv_python = os.path.join(ROOT, ".cache", "venv", "bin", "python")
    if os.path.exists(_venv_python) and os.path.realpath(sys.prefix) != os.path.realpath(
        os.path.join(ROOT, ".cache", "venv")
    ):
        os.execv(_venv_python, [_venv_python, os.path.abspath(__file__), *sys.argv[1:]])
    print("opa_bundle: the OPA binding is not installed: run scripts/setup.sh", file=sys.stderr)
    sys.exit(4)


class Failure(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def opa_failure(msg):
    return Failure(1, msg)


def bundle_invalid(msg):
    return Failure(2, msg)


def unsupported(msg):
    return Failure(3, msg)


# --- reading the tarball (bundle.Reader.Read) ----------------------------------------

MANIFEST_FIELDS = ("revision", "roots", "wasm", "rego_version", "file_rego_versions", "metadata")
INT64 = (-(2**63), 2**63 - 1)


def _json_strict(raw, what):
    """Parse JSON as Go does: no NaN/Infinity, UTF-8 only."""

    def reject(c):
        raise ValueError(f"invalid character {c!r}")

    try:
        return json.loads(raw.decode("utf-8"), parse_constant=reject)
    except (UnicodeDecodeError, ValueError) as e:
        raise bundle_invalid(f"bundle load failed on {what}: {e}") from None


def _go_type(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


class _Pairs(list):
    """A JSON object as its (key, value) pairs, in document order."""


def _decode_manifest(raw, manifest):
    """Decode a .manifest into `manifest` the way Go's encoding/json decodes
    into bundle.Manifest: keys matched case-insensitively, unknown keys
    ignored, null leaves a field unset (nil), wrong types are errors."""

    def err(detail):
        return bundle_invalid(f"bundle load failed on manifest decode: json: {detail}")

    def want_int(v, field):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise err(f"cannot unmarshal {_go_type(v)} into Go struct field Manifest.{field} of type int")
        if isinstance(v, float) or not INT64[0] <= v <= INT64[1]:
            raise err(f"cannot unmarshal number {v} into Go struct field Manifest.{field} of type int")
        return v

    def want(v, typ, field, gotype):
        if not isinstance(v, typ) or isinstance(v, bool) and typ is not bool:
            raise err(f"cannot unmarshal {_go_type(v)} into Go struct field Manifest.{field} of type {gotype}")
        return v

    try:
        pairs = json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_Pairs,
            parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f"invalid character {c!r}")),
        )
    except (UnicodeDecodeError, ValueError) as e:
        raise err(str(e)) from None
    if not isinstance(pairs, _Pairs):
        raise err(f"cannot unmarshal {_go_type(pairs)} into Go value of type bundle.Manifest")

    def to_obj(v):  # nested objects: plain dicts, last duplicate key wins
        if isinstance(v, _Pairs):
            return {k: to_obj(x) for k, x in v}
        if isinstance(v, list):
            return [to_obj(x) for x in v]
        return v

    for key, value in pairs:
        field = key if key in MANIFEST_FIELDS else next(
            (f for f in MANIFEST_FIELDS if f.lower() == key.lower()), None
        )
        if field is None:
            continue
        value = to_obj(value)
        if value is None:
            if field != "revision":  # pointer, slice and map fields become nil
                manifest.pop(field, None)
            continue
        if field == "revision":
            manifest["revision"] = want(value, str, "revision", "string")
        elif field == "roots":
            want(value, list, "roots", "[]string")
            for r in value:
                want(r, str, "roots", "string")
            manifest["roots"] = list(value)
        elif field == "rego_version":
            manifest["rego_version"] = want_int(value, "rego_version")
        elif field == "file_rego_versions":
            want(value, dict, "file_rego_versions", "map[string]int")
            manifest["file_rego_versions"] = {
                k: want_int(v, "file_rego_versions") for k, v in value.items()
            }
        elif field == "metadata":
            manifest["metadata"] = want(value, dict, "metadata", "map[string]interface {}")
        elif field == "wasm":
            want(value, list, "wasm", "[]bundle.WasmResolver")
            resolvers = []
            for w in value:
                want(w, dict, "wasm", "bundle.WasmResolver")
                resolvers.append(
                    {
                        "entrypoint": want(w.get("entrypoint", ""), str, "wasm.entrypoint", "string"),
                        "module": want(w.get("module", ""), str, "wasm.module", "string"),
                    }
                )
            manifest["wasm"] = resolvers


def _normalized_dir_key(path):
    """bundle.getNormalizedPath: the directory of a data file as a key list."""
    d = os.path.dirname(path).lstrip("/.")
    return d.split("/") if d else []


def _has_conflicts(a, b):
    for k, add in b.items():
        if k in a:
            exist = a[k]
            if not isinstance(exist, dict) or not isinstance(add, dict):
                return True
            if _has_conflicts(exist, add):
                return True
    return False


def _merge(a, b):
    for k, add in b.items():
        if k in a:
            _merge(a[k], add)
        else:
            a[k] = add
    return a


def _insert_data(data, path, value):
    """bundle.insertValue: mount `value` at the data file's directory."""
    key = _normalized_dir_key(path)
    if not key:
        if not isinstance(value, dict):
            raise bundle_invalid(f"bundle load failed on {path}: root value must be object")
        obj = value
    else:
        obj = value
        for seg in reversed(key):
            obj = {seg: obj}
    if _has_conflicts(data, obj):
        raise bundle_invalid(
            f"bundle load failed on {path}: failed to insert data file from path {'/'.join(key)}"
        )
    _merge(data, obj)


def read_bundle(path):
    try:
        tf = tarfile.open(path, "r:gz")
    except FileNotFoundError:
        raise Failure(64, f"{path}: no such file") from None
    except (tarfile.TarError, OSError, EOFError) as e:
        raise bundle_invalid(f"archive read failed: {e}") from None

    bundle = {
        "manifest": {},
        "modules": [],  # (path, source)
        "data": {},
        "signatures": None,
        "wasm": [],
        "patch": None,
    }
    with tf:
        try:
            members = [m for m in tf if m.isreg()]
            files = [(m.name, tf.extractfile(m).read()) for m in members]
        except (tarfile.TarError, OSError, EOFError) as e:
            raise bundle_invalid(f"bundle read failed: {e}") from None

    for name, raw in files:
        base = name.rsplit("/", 1)[-1]
        if name.endswith("signatures.json"):
            sig = _json_strict(raw, "signatures decode")
            if not isinstance(sig, dict) or not isinstance(sig.get("signatures", []), (list, type(None))):
                raise bundle_invalid("bundle load failed on signatures decode: not a signatures object")
            bundle["signatures"] = sig
        elif base == "patch.json":
            patch = _json_strict(raw, "patch decode")
            if not isinstance(patch, dict) or not isinstance(patch.get("data") or [], list):
                raise bundle_invalid("bundle load failed on patch decode: not a patch object")
            bundle["patch"] = patch
        elif name.endswith(".rego"):
            try:
                bundle["modules"].append((name, raw.decode("utf-8")))
            except UnicodeDecodeError as e:
                raise opa_failure(f"{name}: not UTF-8: {e}") from None
        elif base == "policy.wasm":
            bundle["wasm"].append(name)
        elif base == "plan.json":
            pass  # opaque to OPA's evaluator
        elif base == "data.json":
            _insert_data(bundle["data"], name, _json_strict(raw, name))
        elif base in ("data.yaml", "data.yml"):
            try:
                import yaml
            except ImportError:
                raise unsupported(f"{name}: YAML data needs PyYAML in the venv") from None
            try:
                value = json.loads(json.dumps(yaml.safe_load(raw), default=str))
            except yaml.YAMLError as e:
                raise bundle_invalid(f"bundle load failed on {name}: {e}") from None
            _insert_data(bundle["data"], name, value)
        elif name.endswith(".manifest"):
            _decode_manifest(raw, bundle["manifest"])
    return bundle


# --- Rego versions (Manifest.numericRegoVersionForFile) -------------------------------


def _glob_regex(pattern):
    """gobwas/glob without separators: * and ** match anything (also '/'),
    ? one character, [..] / [!..] classes, {a,b} alternatives, \\ escapes."""
    out, i, depth = [], 0, 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if c == "*":
            while i + 1 < len(pattern) and pattern[i + 1] == "*":
                i += 1
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                raise ValueError("unexpected end of input")
            body = pattern[i + 1 : j]
            neg = body.startswith("!")
            body = body[1:] if neg else body
            out.append("[" + ("^" if neg else "") + body.replace("\\", "\\\\") + "]")
            i = j
        elif c == "{":
            depth += 1
            out.append("(?:")
        elif c == "}" and depth:
            depth -= 1
            out.append(")")
        elif c == "," and depth:
            out.append("|")
        else:
            out.append(re.escape(c))
        i += 1
    if depth:
        raise ValueError("unexpected end of input")
    return re.compile("".join(out), re.S)


def rego_version_for_file(manifest, path):
    for pattern, version in manifest.get("file_rego_versions", {}).items():
        try:
            rx = _glob_regex(pattern)
        except (ValueError, re.error) as e:
            raise bundle_invalid(f"failed to compile glob pattern {pattern}: {e}") from None
        if rx.fullmatch(path):
            return version
    return manifest.get("rego_version")


# --- manifest validation (Manifest.validateAndInjectDefaults) ------------------------


def _root_contains(root, other):
    if root == [""]:
        return True
    return len(root) <= len(other) and other[: len(root)] == root


def root_paths_overlap(a, b):
    a, b = a.split("/"), b.split("/")
    return _root_contains(a, b) or _root_contains(b, a)


def root_paths_contain(roots, path):
    segs = path.split("/")
    return any(_root_contains(r.split("/"), segs) for r in roots)


def _go_list(xs):
    return "[" + " ".join(xs) + "]"


def _package_ptr(pkg_path):
    """ast.Ref.Ptr for a package path: string terms after `data`, each
    url.PathEscape'd and joined by '/'. None if a term is not a string."""
    parts = []
    for term in pkg_path[1:]:
        if term.get("type") != "string":
            return None
        parts.append(urllib.parse.quote(term["value"], safe="$&+:=@"))
    return "/".join(parts)


def _package_text(pkg_path):
    """The package clause as OPA prints it, e.g. `package x.y["a-b"]`."""
    out = ""
    for term in pkg_path[1:]:
        v = term.get("value")
        if term.get("type") == "string" and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v):
            out += ("." if out else "") + v
        else:
            out += "[" + json.dumps(v) + "]"
    return "package " + out


def validate(bundle, packages):
    m = bundle["manifest"]
    roots = [r.strip("/") for r in m.get("roots", [""])]  # Init(): no roots means [""]
    m["roots"] = roots
    m.setdefault("revision", "")

    for i in range(len(roots) - 1):
        for j in range(i + 1, len(roots)):
            if root_paths_overlap(roots[i], roots[j]):
                raise bundle_invalid(f"manifest has overlapped roots: '{roots[i]}' and '{roots[j]}'")

    for (path, _), pkg in zip(bundle["modules"], packages):
        ptr = _package_ptr(pkg)
        if ptr is None or not root_paths_contain(roots, ptr):
            raise bundle_invalid(
                f"manifest roots {_go_list(roots)} do not permit '{_package_text(pkg)}' in module '{path}'"
            )

    wasm_paths = set(bundle["wasm"])
    seen = set()
    for w in m.get("wasm", []):
        if w["module"] not in wasm_paths:
            raise bundle_invalid(
                f"manifest references wasm module '{w['module']}' but the module file does not exist"
            )
        if not root_paths_contain(roots, w["entrypoint"]):
            raise bundle_invalid(
                f"manifest roots {_go_list(roots)} do not permit '{w['entrypoint']}' entrypoint "
                f"for wasm module '{w['module']}'"
            )
        if w["entrypoint"] in seen:
            raise bundle_invalid(f"entrypoint '{w['entrypoint']}' cannot be used by more than one wasm module")
        seen.add(w["entrypoint"])

    def dfs(value, path):
        p = path.strip("/")
        if root_paths_contain(roots, p):
            return
        if isinstance(value, dict) and any(root_paths_contain(p.split("/"), r) for r in roots):
            for k in sorted(value):
                dfs(value[k], path + "/" + k)
            return
        raise bundle_invalid(
            f"manifest roots {_go_list(roots)} do not permit data at path '/{p}' "
            "(hint: check bundle directory structure)"
        )

    dfs(bundle["data"], "")


def data_at_roots(data, roots):
    """What activation writes to the store: the data found at each root
    (root segments are path-escaped), with parent objects created."""
    store = {}
    for root in roots:
        if root == "":
            return data
        segs = [urllib.parse.unquote(s) for s in root.split("/")]
        node = data
        for s in segs:
            if not isinstance(node, dict) or s not in node:
                break
            node = node[s]
        else:
            parent = store
            for s in segs[:-1]:
                parent = parent.setdefault(s, {})
            parent[segs[-1]] = node
    return store


# --- loading into the engine ----------------------------------------------------------


def _opa_message(e):
    msg = e.message if isinstance(e, OpaError) else str(e)
    return msg.replace("bundle activation failed: ", "", 1)


def load(bundle_path, bundle_name=None):
    """Read, check and load a bundle. Returns (engine, bundle, packages)."""
    bundle = read_bundle(bundle_path)
    m = bundle["manifest"]

    rv = m.get("rego_version")
    if rv is not None and rv not in (0, 1):
        raise bundle_invalid(f"unknown bundle rego-version {rv} (rego_version must be 0 or 1)")

    # Rego version per module, then parse (as OPA's reader does before validating).
    for path, _ in bundle["modules"]:
        v = rego_version_for_file(m, path)
        if v is not None and v not in (0, 1):
            raise bundle_invalid(f"unknown bundle rego-version {v} for file '{path}'")
        if v == 0:
            raise unsupported(
                f"{path}: Rego v0 module (rego_version 0); the OPA binding only parses Rego v1"
            )

    packages = []
    with OpaEngine() as parser:
        for path, source in bundle["modules"]:
            try:
                rs = parser.eval_query(
                    "m := rego.parse_module(input.path, input.source)", {"path": path, "source": source}
                )
            except OpaError as e:
                msg = e.message.split("rego.parse_module: ", 1)[-1]
                raise opa_failure(msg) from None
            packages.append(rs[0]["m"]["package"]["path"])

    if bundle["patch"] is not None and bundle["patch"].get("data"):
        if bundle["data"] or bundle["modules"] or bundle["wasm"]:
            raise bundle_invalid("delta bundle expected to contain only patch file but other files found")
        raise unsupported("delta bundle (patch.json): evaluation not supported")

    validate(bundle, packages)

    if bundle["wasm"]:
        raise unsupported("bundle contains Wasm modules: evaluation not supported")

    engine = OpaEngine()
    try:
        for path, source in bundle["modules"]:
            engine.add_policy(path, source)
        data = data_at_roots(bundle["data"], m["roots"])
        if bundle_name is not None:
            manifest_doc = {k: m[k] for k in MANIFEST_FIELDS if k in m}
            extra = {"system": {"bundles": {bundle_name: {"manifest": manifest_doc}}}}
            data = json.loads(json.dumps(data))
            if _has_conflicts(data, extra):
                raise opa_failure(f"bundle data conflicts with data.system.bundles.{bundle_name}.manifest")
            _merge(data, extra)
        if data:
            engine.add_data(data)
        engine.eval_query("true")  # compiles every module: surfaces compile errors now
    except OpaError as e:
        engine.close()
        raise opa_failure(_opa_message(e)) from None
    return engine, bundle, packages


def evaluate(engine, query, inp):
    q = query.strip()
    if q == "data":
        return engine.eval_document("", inp)
    if q.startswith("data."):
        return engine.eval_document(q[len("data.") :], inp)
    rs = engine.eval_query(f"__edict_result__ = ({q})", inp)
    if not rs:
        raise OpaUndefinedError(q)
    return rs[0]["__edict_result__"]


def _sort_key(v):
    return (0, v, "") if isinstance(v, str) else (1, "", json.dumps(v, sort_keys=True))


def _load_json_file(path, what):
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError) as e:
        raise Failure(64, f"cannot read {what} {path}: {e}") from None


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(64)


def main(argv=None):
    ap = _Parser(prog="opa_bundle.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", help="bundle .tar.gz")
    ap.add_argument("cases", nargs="?", help='CASES.json: {"queries": [...], "inputs": [...]}')
    ap.add_argument("--mask", metavar="INPUT.json", help="print data.system.log.mask for this input")
    ap.add_argument("--bundle-name", help="mount the manifest at data.system.bundles.NAME.manifest")
    args = ap.parse_args(argv)
    if (args.cases is None) == (args.mask is None):
        ap.error("give exactly one of CASES.json or --mask INPUT.json")

    try:
        if args.mask is not None:
            inp = _load_json_file(args.mask, "mask input")
        else:
            cases = _load_json_file(args.cases, "cases file")
            if not isinstance(cases, dict) or not isinstance(cases.get("queries"), list) or not all(
                isinstance(q, str) for q in cases["queries"]
            ):
                raise Failure(64, f'{args.cases}: want {{"queries": [strings], "inputs": [values]}}')
            inputs = cases.get("inputs", [None])
            if not isinstance(inputs, list):
                raise Failure(64, f'{args.cases}: "inputs" must be a list')

        engine, bundle, packages = load(args.bundle, args.bundle_name)
        if bundle["signatures"] is not None:
            print("opa_bundle: note: .signatures.json present but not verified", file=sys.stderr)
        with engine:
            if args.mask is not None:
                try:
                    mask = engine.eval_document("system.log.mask", inp)
                except OpaUndefinedError:
                    mask = []
                except OpaError as e:
                    raise opa_failure(_opa_message(e)) from None
                if not isinstance(mask, list):
                    raise opa_failure(f"data.system.log.mask is not a set: {json.dumps(mask)}")
                json.dump(sorted(mask, key=_sort_key), sys.stdout)
                sys.stdout.write("\n")
                return 0

            results = []
            for i, inp in enumerate(inputs):
                for q in cases["queries"]:
                    result, error = None, None
                    try:
                        result = evaluate(engine, q, inp)
                    except OpaUndefinedError:
                        pass
                    except OpaError as e:
                        error = _opa_message(e)
                    results.append({"input_index": i, "query": q, "result": result, "error": error})
        out = {
            "manifest": {k: bundle["manifest"][k] for k in MANIFEST_FIELDS if k in bundle["manifest"]},
            "modules": [
                {"path": p, "package": _package_text(pkg)} for (p, _), pkg in zip(bundle["modules"], packages)
            ],
            "signed": bundle["signatures"] is not None,
            "results": results,
        }
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    except Failure as f:
        print(f"opa_bundle: {f}", file=sys.stderr)
        return f.code


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `... | head` is not an error
    sys.exit(main())
