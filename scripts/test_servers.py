#!/usr/bin/env python3
"""Smoke test of the local AWS-protocol servers started by scripts/servers.sh.

    scripts/servers.sh start
    .cache/venv/bin/python scripts/test_servers.py      # -v: print every response

Reads EDICT_MOTO_ENDPOINT, EDICT_SEAWEED_ENDPOINT, EDICT_SEAWEED_ACCESS_KEY and
EDICT_SEAWEED_SECRET_KEY from the environment, or, when they are unset, from
.cache/servers/env. Checks what edict relies on:

  moto      S3 conditional writes (If-None-Match: *, If-Match), SSE-KMS headers
            with a moto KMS key, DynamoDB GSI + TransactWriteItems + conditional
            puts, KMS envelope encryption with an encryption context, KMS
            ECC_NIST_P256 signing (verified locally too), POST /moto-api/reset.
  SeaweedFS bucket + object round trip with the configured credentials, wrong
            credentials refused, conditional writes, SSE-KMS headers.

"INFO" lines document server behaviour that differs between the two (or from
AWS) without failing. Prints "N passed, M failed"; exit status 1 on failure.
Uses unique names, so it can run beside other users of the servers; the reset
check runs last and wipes moto's state (all of it, by design of moto).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
import uuid
from pathlib import Path

for _v in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
    os.environ.pop(_v, None)
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
VERBOSE = "-v" in sys.argv[1:]
REGION = "us-east-1"
CFG = Config(
    retries={"max_attempts": 1},
    connect_timeout=2,
    read_timeout=15,
    s3={"addressing_style": "path"},
    max_pool_connections=32,
)


def load_env() -> dict[str, str]:
    keys = (
        "EDICT_MOTO_ENDPOINT",
        "EDICT_SEAWEED_ENDPOINT",
        "EDICT_SEAWEED_ACCESS_KEY",
        "EDICT_SEAWEED_SECRET_KEY",
    )
    env = {k: os.environ[k] for k in keys if os.environ.get(k)}
    env_file = Path(os.environ.get("EDICT_SERVERS_DIR", ROOT / ".cache" / "servers")) / "env"
    if len(env) < len(keys) and env_file.is_file():
        for line in env_file.read_text().splitlines():
            m = re.fullmatch(r"\s*export\s+(\w+)=(.*)", line)
            if m and m.group(1) in keys:
                env.setdefault(m.group(1), m.group(2).strip().strip("'\""))
    missing = [k for k in keys if k not in env]
    if missing:
        sys.exit(f"test_servers: missing {', '.join(missing)}: run scripts/servers.sh start first")
    return env


ENV = load_env()
MOTO = ENV["EDICT_MOTO_ENDPOINT"]
WEED = ENV["EDICT_SEAWEED_ENDPOINT"]
WEED_AK = ENV["EDICT_SEAWEED_ACCESS_KEY"]
WEED_SK = ENV["EDICT_SEAWEED_SECRET_KEY"]


def moto(service: str):
    return boto3.client(
        service,
        endpoint_url=MOTO,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=CFG,
    )


def weed(ak: str = WEED_AK, sk: str = WEED_SK):
    return boto3.client(
        "s3",
        endpoint_url=WEED,
        region_name=REGION,
        aws_access_key_id=ak,
        aws_secret_access_key=sk,
        config=CFG,
    )


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# --- tiny harness -------------------------------------------------------------

RESULTS: list[tuple[str, bool]] = []
INFO: list[str] = []


def info(msg: str) -> None:
    INFO.append(msg)
    print(f"  INFO {msg}", flush=True)


CHECKS: list = []


def check(fn):
    """Register fn as a check; main() runs them in definition order."""
    CHECKS.append(fn)
    return fn


def run_check(fn) -> None:
    name = fn.__name__
    t0 = time.monotonic()
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - report every failure the same way
        RESULTS.append((name, False))
        print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
        if VERBOSE:
            traceback.print_exc()
    else:
        RESULTS.append((name, True))
        print(f"PASS {name} ({time.monotonic() - t0:.2f}s)", flush=True)


def error_of(call) -> tuple[int, str]:
    """Run call, expect a ClientError; return (HTTP status, error code)."""
    try:
        r = call()
    except ClientError as e:
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        code = e.response.get("Error", {}).get("Code", "?")
        if VERBOSE:
            print(f"    -> {status} {code}: {e.response.get('Error', {}).get('Message', '')}")
        return status, code
    raise AssertionError(f"expected an error, got HTTP {r['ResponseMetadata']['HTTPStatusCode']}")


def outcome(call) -> str:
    """'200' or 'STATUS Code' of a call, for INFO lines."""
    try:
        r = call()
        return str(r["ResponseMetadata"]["HTTPStatusCode"])
    except ClientError as e:
        return f"{e.response['ResponseMetadata']['HTTPStatusCode']} {e.response['Error'].get('Code')}"


def expect(cond: bool, what: str) -> None:
    if not cond:
        raise AssertionError(what)


MD5_ETAG = re.compile(r'^"[0-9a-f]{32}"$')


def s3_conditional_writes(s3, bucket: str, label: str) -> None:
    """Shared by both servers: If-None-Match: * and If-Match semantics."""
    key = f"bundles/{uniq('b')}.tar.gz"
    r = s3.put_object(Bucket=bucket, Key=key, Body=b"first", IfNoneMatch="*")
    etag = r["ETag"]
    expect(bool(MD5_ETAG.match(etag)), f"ETag {etag!r} is not a quoted hex md5")
    expect(etag.strip('"') == hashlib.md5(b"first").hexdigest(), "ETag is not md5(body)")
    status, code = error_of(lambda: s3.put_object(Bucket=bucket, Key=key, Body=b"second", IfNoneMatch="*"))
    expect((status, code) == (412, "PreconditionFailed"), f"second If-None-Match put: {status} {code}")
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    expect(body == b"first", f"object overwritten despite 412: {body!r}")
    info(f"{label}: put If-None-Match:* on existing key -> 412 PreconditionFailed; ETag = quoted md5 ({etag})")

    status, code = error_of(lambda: s3.put_object(Bucket=bucket, Key=key, Body=b"x", IfMatch='"0123456789abcdef0123456789abcdef"'))
    expect((status, code) == (412, "PreconditionFailed"), f"If-Match wrong ETag: {status} {code}")
    r = s3.put_object(Bucket=bucket, Key=key, Body=b"third", IfMatch=etag)
    expect(r["ETag"].strip('"') == hashlib.md5(b"third").hexdigest(), "If-Match put: bad new ETag")
    expect(s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"third", "If-Match put not applied")
    missing = outcome(lambda: s3.put_object(Bucket=bucket, Key=uniq("missing"), Body=b"x", IfMatch=etag))
    expect(missing in ("404 NoSuchKey", "412 PreconditionFailed"), f"If-Match on a missing key: {missing}")
    info(f"{label}: put If-Match wrong ETag -> 412 PreconditionFailed, right ETag -> 200; "
         f"If-Match on a missing key -> {missing} (AWS: 404 NoSuchKey)")
    star = outcome(lambda: s3.put_object(Bucket=bucket, Key=key, Body=b"x", IfMatch="*"))
    etag_inm = outcome(lambda: s3.put_object(
        Bucket=bucket, Key=key, Body=b"y", IfNoneMatch=s3.head_object(Bucket=bucket, Key=key)["ETag"]))
    del_wrong = outcome(lambda: s3.delete_object(Bucket=bucket, Key=key, IfMatch='"0123456789abcdef0123456789abcdef"'))
    info(f"{label}: put If-Match:* on existing key -> {star}; put If-None-Match:<current ETag> -> {etag_inm}; "
         f"delete If-Match wrong ETag -> {del_wrong}")

    # Atomicity: N racing creators of one key, exactly one wins.
    key = uniq("race")
    n = 6
    barrier = threading.Barrier(n)
    clients = [_same_client(s3) for _ in range(n)]
    wins: list[int] = []
    codes: list[str] = []
    lock = threading.Lock()

    waited: list[float] = []

    def racer(i: int) -> None:
        barrier.wait()
        t0 = time.monotonic()
        try:
            clients[i].put_object(Bucket=bucket, Key=key, Body=f"racer {i}".encode(), IfNoneMatch="*")
            with lock:
                wins.append(i)
        except ClientError as e:
            with lock:
                codes.append(e.response["Error"]["Code"])
        with lock:
            waited.append(time.monotonic() - t0)

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expect(len(wins) == 1, f"{len(wins)} of {n} racing If-None-Match puts won (codes {sorted(set(codes))})")
    expect(set(codes) == {"PreconditionFailed"}, f"losers got {sorted(set(codes))}")
    got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    expect(got == f"racer {wins[0]}".encode(), "stored body is not the winner's")
    info(f"{label}: {n} concurrent If-None-Match:* puts -> exactly 1 winner, {n - 1}x 412; "
         f"slowest answer after {max(waited):.2f}s")


def _same_client(s3):
    """A fresh client with the same endpoint and credentials (one per thread)."""
    creds = s3._request_signer._credentials  # noqa: SLF001 - test helper
    return boto3.client(
        "s3",
        endpoint_url=s3.meta.endpoint_url,
        region_name=REGION,
        aws_access_key_id=creds.access_key,
        aws_secret_access_key=creds.secret_key,
        config=CFG,
    )


# --- moto -----------------------------------------------------------------------


@check
def moto_s3_conditional_put():
    s3 = moto("s3")
    bucket = uniq("edict-test")
    s3.create_bucket(Bucket=bucket)
    s3_conditional_writes(s3, bucket, "moto")


@check
def moto_s3_sse_kms():
    s3, kms = moto("s3"), moto("kms")
    key = kms.create_key(Description="edict bundle key")["KeyMetadata"]
    bucket = uniq("edict-test")
    s3.create_bucket(Bucket=bucket)
    r = s3.put_object(Bucket=bucket, Key="b", Body=b"bundle", ServerSideEncryption="aws:kms", SSEKMSKeyId=key["KeyId"])
    expect(r.get("ServerSideEncryption") == "aws:kms", f"put response SSE: {r.get('ServerSideEncryption')}")
    h = s3.head_object(Bucket=bucket, Key="b")
    expect(h.get("ServerSideEncryption") == "aws:kms", "head: no SSE aws:kms")
    expect(key["KeyId"] in h.get("SSEKMSKeyId", ""), f"head SSEKMSKeyId {h.get('SSEKMSKeyId')!r}")
    expect(s3.get_object(Bucket=bucket, Key="b")["Body"].read() == b"bundle", "SSE-KMS get body")
    bogus = outcome(lambda: s3.put_object(Bucket=bucket, Key="c", Body=b"x", ServerSideEncryption="aws:kms",
                                          SSEKMSKeyId="no-such-key"))
    info(f"moto: SSE-KMS put with a moto KMS key id -> 200, echoed in put/head/get; "
         f"with a non-existent key id -> {bogus} (moto does not validate the key, nothing is encrypted)")


@check
def moto_dynamodb_gsi_transactions():
    ddb = moto("dynamodb")
    table = uniq("edict-index")
    ddb.create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "gsi1pk", "AttributeType": "S"},
            {"AttributeName": "gsi1sk", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[{
            "IndexName": "gsi1",
            "KeySchema": [{"AttributeName": "gsi1pk", "KeyType": "HASH"},
                          {"AttributeName": "gsi1sk", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "ALL"},
        }],
    )
    ddb.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 0.2, "MaxAttempts": 25})
    item = lambda pk, sk, **kw: {"pk": {"S": pk}, "sk": {"S": sk}, **{k: {"S": v} for k, v in kw.items()}}  # noqa: E731
    ddb.transact_write_items(TransactItems=[
        {"Put": {"TableName": table, "Item": item("bundle#a", "rev#1", gsi1pk="tenant#t1", gsi1sk="a#1"),
                 "ConditionExpression": "attribute_not_exists(pk)"}},
        {"Put": {"TableName": table, "Item": item("bundle#a", "head", gsi1pk="tenant#t1", gsi1sk="a#head", rev="1"),
                 "ConditionExpression": "attribute_not_exists(pk)"}},
    ])
    q = ddb.query(TableName=table, IndexName="gsi1", KeyConditionExpression="gsi1pk = :p",
                  ExpressionAttributeValues={":p": {"S": "tenant#t1"}})
    expect(q["Count"] == 2, f"GSI query found {q['Count']} items")

    # A conditional put on an existing key fails.
    status, code = error_of(lambda: ddb.put_item(
        TableName=table, Item=item("bundle#a", "head", rev="2"), ConditionExpression="attribute_not_exists(pk)"))
    expect(code == "ConditionalCheckFailedException" and status == 400, f"conditional put: {status} {code}")
    # Optimistic update on the right revision works, on a stale one fails.
    ddb.put_item(TableName=table, Item=item("bundle#a", "head", gsi1pk="tenant#t1", gsi1sk="a#head", rev="2"),
                 ConditionExpression="rev = :r", ExpressionAttributeValues={":r": {"S": "1"}})
    status, code = error_of(lambda: ddb.put_item(
        TableName=table, Item=item("bundle#a", "head", rev="3"),
        ConditionExpression="rev = :r", ExpressionAttributeValues={":r": {"S": "1"}}))
    expect(code == "ConditionalCheckFailedException", f"stale conditional put: {code}")

    # A transaction whose condition fails is cancelled as a whole.
    try:
        ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": table, "Item": item("bundle#a", "rev#2")}},
            {"ConditionCheck": {"TableName": table, "Key": {"pk": {"S": "bundle#a"}, "sk": {"S": "head"}},
                                "ConditionExpression": "rev = :r",
                                "ExpressionAttributeValues": {":r": {"S": "1"}}}},
        ])
        raise AssertionError("transaction with a failing condition succeeded")
    except ClientError as e:
        code = e.response["Error"]["Code"]
        expect(code == "TransactionCanceledException", f"cancelled transaction: {code}")
        reasons = [r.get("Code") for r in e.response.get("CancellationReasons", [])]
        info(f"moto: failed TransactWriteItems -> TransactionCanceledException, CancellationReasons {reasons}")
    got = ddb.get_item(TableName=table, Key={"pk": {"S": "bundle#a"}, "sk": {"S": "rev#2"}})
    expect("Item" not in got, "cancelled transaction wrote an item")
    ddb.delete_table(TableName=table)


@check
def moto_kms_envelope():
    kms = moto("kms")
    key_id = kms.create_key(KeySpec="SYMMETRIC_DEFAULT", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["KeyId"]
    alias = f"alias/{uniq('edict')}"
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    ctx = {"edict:bundle": "tenant-1/authz", "edict:rev": "7"}
    dk = kms.generate_data_key(KeyId=alias, KeySpec="AES_256", EncryptionContext=ctx)
    expect(len(dk["Plaintext"]) == 32, "data key is not 32 bytes")
    pt = kms.decrypt(CiphertextBlob=dk["CiphertextBlob"], EncryptionContext=ctx)
    expect(pt["Plaintext"] == dk["Plaintext"], "decrypt returned another key")
    expect(key_id in pt["KeyId"], f"decrypt KeyId {pt['KeyId']!r}")
    status, code = error_of(lambda: kms.decrypt(CiphertextBlob=dk["CiphertextBlob"],
                                                EncryptionContext={"edict:bundle": "other"}))
    expect(code == "InvalidCiphertextException", f"wrong context: {status} {code}")
    no_ctx = outcome(lambda: kms.decrypt(CiphertextBlob=dk["CiphertextBlob"]))
    info(f"moto: KMS Decrypt with a wrong encryption context -> {status} {code}; with none -> {no_ctx}")


@check
def moto_kms_ecdsa_sign():
    kms = moto("kms")
    key = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
    msg = b"edict bundle manifest"
    sig = kms.sign(KeyId=key["KeyId"], Message=msg, MessageType="RAW", SigningAlgorithm="ECDSA_SHA_256")
    expect(sig["SigningAlgorithm"] == "ECDSA_SHA_256", "signing algorithm")
    pub = kms.get_public_key(KeyId=key["KeyId"])
    spec = pub.get("KeySpec") or pub.get("CustomerMasterKeySpec")
    expect(spec == "ECC_NIST_P256" and pub["KeyUsage"] == "SIGN_VERIFY", f"public key metadata {spec}")
    if "KeySpec" not in pub:
        info("moto: GetPublicKey returns only the deprecated CustomerMasterKeySpec, no KeySpec "
             "(AWS returns both): read either")
    expect("ECDSA_SHA_256" in pub.get("SigningAlgorithms", []), "SigningAlgorithms")
    v = kms.verify(KeyId=key["KeyId"], Message=msg, MessageType="RAW", Signature=sig["Signature"],
                   SigningAlgorithm="ECDSA_SHA_256")
    expect(v["SignatureValid"], "kms.verify said invalid")
    # Verify locally: DER SubjectPublicKeyInfo + DER ECDSA signature.
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    pk = serialization.load_der_public_key(pub["PublicKey"])
    expect(isinstance(pk, ec.EllipticCurvePublicKey) and pk.curve.name == "secp256r1", "not a P-256 key")
    pk.verify(sig["Signature"], msg, ec.ECDSA(hashes.SHA256()))
    try:
        pk.verify(sig["Signature"], msg + b"!", ec.ECDSA(hashes.SHA256()))
        raise AssertionError("signature verified over another message")
    except InvalidSignature:
        pass
    info(f"moto: ECC_NIST_P256 Sign RAW -> DER ECDSA signature ({len(sig['Signature'])} bytes) that verifies "
         f"locally against GetPublicKey's DER SPKI ({len(pub['PublicKey'])} bytes)")
    # MessageType=DIGEST: AWS signs the given digest as is. Report what moto does.
    digest = hashlib.sha256(msg).digest()
    sig2 = kms.sign(KeyId=key["KeyId"], Message=digest, MessageType="DIGEST", SigningAlgorithm="ECDSA_SHA_256")

    def verifies(data: bytes) -> bool:
        try:
            pk.verify(sig2["Signature"], data, ec.ECDSA(hashes.SHA256()))
            return True
        except InvalidSignature:
            return False

    if verifies(msg):
        info("moto: Sign MessageType=DIGEST signs the digest as given (as AWS does)")
    elif verifies(digest):
        info("moto: Sign MessageType=DIGEST hashes the digest AGAIN (signs sha256(digest), unlike AWS): "
             "use MessageType=RAW against moto")
    else:
        raise AssertionError("MessageType=DIGEST signature verifies neither way")


# --- SeaweedFS ------------------------------------------------------------------


@check
def seaweed_bucket_and_objects():
    s3 = weed()
    bucket = uniq("edict-test")
    s3.create_bucket(Bucket=bucket)
    expect(bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]], "bucket not listed")
    body = os.urandom(5 * 1024 * 1024 + 123)  # > filer chunk size (4 MiB)
    r = s3.put_object(Bucket=bucket, Key="dir/bundle.tar.gz", Body=body, ContentType="application/gzip",
                      Metadata={"edict-rev": "1"})
    expect(r["ETag"] == f'"{hashlib.md5(body).hexdigest()}"', f"ETag {r['ETag']} is not the quoted md5")
    g = s3.get_object(Bucket=bucket, Key="dir/bundle.tar.gz")
    expect(g["Body"].read() == body, "body differs")
    expect(g["Metadata"].get("edict-rev") == "1", f"user metadata {g['Metadata']}")
    expect(g["ETag"] == r["ETag"], "GET ETag differs from PUT ETag")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="dir/")["Contents"]]
    expect(keys == ["dir/bundle.tar.gz"], f"listing {keys}")
    status, code = error_of(lambda: s3.get_object(Bucket=bucket, Key="nope"))
    expect((status, code) == (404, "NoSuchKey"), f"missing key: {status} {code}")
    s3.delete_object(Bucket=bucket, Key="dir/bundle.tar.gz")
    s3.delete_bucket(Bucket=bucket)
    expect(bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]], "bucket still listed after delete")
    bad = outcome(lambda: s3.create_bucket(Bucket="Bad_Name"))
    info(f"seaweed: 5 MiB put/get OK, ETag = quoted md5 of the whole body (single PUT); "
         f"create bucket 'Bad_Name' -> {bad} (moto accepts it)")


@check
def seaweed_wrong_credentials_refused():
    bucket = uniq("edict-test")
    weed().create_bucket(Bucket=bucket)
    status, code = error_of(lambda: weed("no-such-key", "whatever").list_buckets())
    expect(status == 403 and code == "InvalidAccessKeyId", f"unknown access key: {status} {code}")
    status, code = error_of(lambda: weed(WEED_AK, WEED_SK + "x").put_object(Bucket=bucket, Key="k", Body=b"x"))
    expect(status == 403 and code == "SignatureDoesNotMatch", f"wrong secret: {status} {code}")
    try:
        urllib.request.urlopen(f"{WEED}/{bucket}/", timeout=5)
        raise AssertionError("anonymous listing allowed")
    except urllib.error.HTTPError as e:
        expect(e.code == 403, f"anonymous request: HTTP {e.code}")
    weed().delete_bucket(Bucket=bucket)
    info("seaweed: unknown access key -> 403 InvalidAccessKeyId; wrong secret -> 403 SignatureDoesNotMatch; "
         "unsigned -> 403")


@check
def seaweed_conditional_put():
    s3 = weed()
    bucket = uniq("edict-test")
    s3.create_bucket(Bucket=bucket)
    s3_conditional_writes(s3, bucket, "seaweed")


@check
def seaweed_sse_kms_headers():
    s3 = weed()
    bucket = uniq("edict-test")
    s3.create_bucket(Bucket=bucket)
    kms_key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    res = outcome(lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"x", ServerSideEncryption="aws:kms",
                                        SSEKMSKeyId=kms_key))
    stored = outcome(lambda: s3.head_object(Bucket=bucket, Key="k"))
    aes = outcome(lambda: s3.put_object(Bucket=bucket, Key="k2", Body=b"x", ServerSideEncryption="AES256"))
    info(f"seaweed: put with SSE aws:kms + SSEKMSKeyId -> {res} (object stored: {stored}); "
         f"SSE AES256 -> {aes}")
    expect(res != "200" or stored == "200", "inconsistent SSE-KMS outcome")


# --- moto reset (last: it wipes moto's state) -----------------------------------


@check
def moto_reset():
    s3 = moto("s3")
    bucket = uniq("edict-reset")
    s3.create_bucket(Bucket=bucket)
    req = urllib.request.Request(f"{MOTO}/moto-api/reset", method="POST", data=b"")
    with urllib.request.urlopen(req, timeout=10) as r:
        expect(r.status == 200, f"reset: HTTP {r.status}")
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    expect(bucket not in names, "bucket survived the reset")
    expect(moto("kms").list_keys()["Keys"] == [], "KMS keys survived the reset")
    expect(moto("dynamodb").list_tables()["TableNames"] == [], "tables survived the reset")


def main() -> int:
    print(f"moto at {MOTO}, SeaweedFS at {WEED}", flush=True)
    for fn in CHECKS:
        run_check(fn)
    passed = sum(ok for _, ok in RESULTS)
    failed = len(RESULTS) - passed
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
