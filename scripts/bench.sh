#!/usr/bin/env bash
# Runs edict's benchmarks and collects their summaries.
#
#   scripts/bench.sh                  # bundle, fanout, ingest, local_latency, operator, publish and replay
#                                     # (ingest, publish and replay start the test servers)
#   scripts/bench.sh bundle fanout    # some of them
#   QUICK=1 scripts/bench.sh          # shorter criterion runs for `bundle`
#   EDICT_BENCH_SYSTEMS=2000 scripts/bench.sh fanout
#
# Full output goes to target/bench/<name>.txt; the summary blocks are printed at the end.
# The OPA comparison in `bundle` needs the venv from scripts/setup.sh (skipped without it).
# Figures depend on what else runs on the machine: note the load average printed first.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="$ROOT/target/bench"
mkdir -p "$OUT"

benches=("$@")
[ ${#benches[@]} -gt 0 ] || benches=(bundle fanout ingest local_latency operator publish replay)

# The ingest, publish and replay benches talk to the local S3/DynamoDB servers.
for b in "${benches[@]}"; do
    if [ "$b" = ingest ] || [ "$b" = publish ] || [ "$b" = replay ]; then
        trap 'scripts/servers.sh stop >/dev/null 2>&1 || true' EXIT
        eval "$(scripts/servers.sh start)"
        break
    fi
done

# As the edict binary runs (see main.rs): no stack traces captured for regorus's internal parse
# errors, which RUST_BACKTRACE=1 would otherwise turn on and which double the cost of parsing.
export RUST_LIB_BACKTRACE="${RUST_LIB_BACKTRACE:-0}"

extra=()
[ -n "${QUICK:-}" ] && extra=(--quick)

printf 'bench: %s cores, load average %s, RUST_LIB_BACKTRACE=%s\n' "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" "$RUST_LIB_BACKTRACE"
for b in "${benches[@]}"; do
    printf 'bench: running %s (output in %s)\n' "$b" "${OUT#"$ROOT"/}/$b.txt"
    args=()
    [ "$b" = bundle ] && args=("${extra[@]}")
    start=$SECONDS
    if ! cargo bench --bench "$b" -- "${args[@]}" >"$OUT/$b.txt" 2>&1; then
        tail -n 30 "$OUT/$b.txt" >&2
        printf 'bench: %s FAILED\n' "$b" >&2
        exit 1
    fi
    printf 'bench: %s done in %ss\n' "$b" "$((SECONDS - start))"
done

printf '\nbench: summaries\n'
for b in "${benches[@]}"; do
    sed -n '/^=\{10,\} .* =\{10,\}$/,/^=\{10,\}$/p' "$OUT/$b.txt"
done
