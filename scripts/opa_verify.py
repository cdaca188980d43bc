#!/usr/bin/env python3
"""Verify a signed OPA bundle the way OPA's bundle loader does, with OPA's own JWT verification.

    opa_verify.py BUNDLE.tar.gz PUBLIC_KEY.pem KEY_ID SCOPE

OPA's Python binding (opa-golib-python-bindings) has no bundle loader, so this script follows
OPA's DefaultVerifier and VerifyBundleFile (v1/bundle/verify.go) step by step, and delegates the
cryptographic check to OPA's engine (`io.jwt.verify_es256`):

1. `.signatures.json` holds exactly one JWT;
2. its key id (the JWT `kid`) is the configured one, and the signature verifies with that public key;
3. the `scope` claim equals the configured scope;
4. every file of the bundle (other than `.signatures.json`) is listed, with a matching SHA-256:
   raw bytes for policies, OPA's canonical JSON hash for `.manifest` and `data.json`;
5. every listed file exists.

Prints `{"verified": true, "files": N}` and exits 0, or prints the reason on stderr and exits 1.
"""

import hashlib
import json
import os
import sys
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
try:
    from opa_bindings import OpaEngine
except ImportError:
    venv = os.path.join(ROOT, ".cache", "venv", "bin", "python")
    if os.path.exists(venv) and os.path.realpath(sys.executable) != os.path.realpath(venv):
        os.execv(venv, [venv, *sys.argv])
    sys.exit("opa_verify.py: OPA's Python binding is not installed: run scripts/setup.sh")

STRUCTURED = (".manifest", "data.json", "data.yaml", "data.yml", "patch.json")


def fail(msg):
    print(f"bundle verification failed: {msg}", file=sys.stderr)
    sys.exit(1)


class _Number:
    """A JSON number kept as written, as OPA decodes with UseNumber."""

    def __init__(self, text):
        self.text = text


def go_primitive(v):
    if isinstance(v, _Number):
        return v.text
    # json.Encoder with SetEscapeHTML(false); U+2028/2029 are escaped by Go in any case.
    s = json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    return s.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def walk(v, out):
    """OPA's hasher.walk: objects with sorted keys, arrays in order, primitives as Go encodes them."""
    if isinstance(v, dict):
        out.append("{")
        for i, k in enumerate(sorted(v)):
            if i:
                out.append(",")
            out.append(go_primitive(k))
            out.append(":")
            walk(v[k], out)
        out.append("}")
    elif isinstance(v, list):
        out.append("[")
        for i, e in enumerate(v):
            if i:
                out.append(",")
            walk(e, out)
        out.append("]")
    else:
        out.append(go_primitive(v))


def file_hash(name, raw):
    if name.endswith(STRUCTURED):
        value = json.loads(raw, parse_float=_Number, parse_int=_Number)
        out = []
        walk(value, out)
        return hashlib.sha256("".join(out).encode("utf-8")).hexdigest()
    return hashlib.sha256(raw).hexdigest()


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    path, pem_path, key_id, scope = sys.argv[1:]
    with open(pem_path) as f:
        pem = f.read()
    with tarfile.open(path, "r:gz") as tf:
        files = {m.name.lstrip("/"): tf.extractfile(m).read() for m in tf if m.isreg()}
    raw = files.pop(".signatures.json", None)
    if raw is None:
        fail("bundle has no .signatures.json")
    tokens = json.loads(raw).get("signatures") or []
    if len(tokens) != 1:
        fail(f".signatures.json: expected exactly one JWT, found {len(tokens)}")
    token = tokens[0]
    with OpaEngine() as engine:
        rs = engine.eval_query(
            "ok := io.jwt.verify_es256(input.token, input.cert); [header, claims, _] := io.jwt.decode(input.token)",
            {"token": token, "cert": pem},
        )
    if not rs:
        fail("OPA could not decode the JWT")
    header, claims, ok = rs[0]["header"], rs[0]["claims"], rs[0]["ok"]
    if header.get("kid", claims.get("keyid", "")) != key_id:
        fail(f"verification key {header.get('kid')!r} is not the configured key {key_id!r}")
    if ok is not True:
        fail("signature does not verify with the configured public key")
    if claims.get("scope", "") != scope:
        fail("scope mismatch")
    listed = {f["name"]: f for f in claims.get("files", [])}
    for name, content in sorted(files.items()):
        entry = listed.pop(name, None)
        if entry is None:
            fail(f"file {name} not included in bundle signature")
        if entry.get("algorithm") != "SHA-256":
            fail(f"{name}: unsupported hashing algorithm {entry.get('algorithm')!r}")
        got = file_hash(name, content)
        if got != entry.get("hash"):
            fail(f"{name}: digest mismatch (want: {entry.get('hash')}, got: {got})")
    if listed:
        fail(f"files in the signature but not in the bundle: {sorted(listed)}")
    print(json.dumps({"verified": True, "files": len(files)}))


if __name__ == "__main__":
    main()
