#!/usr/bin/env bash
# Long crash-cycles run: test/multi/t_910_crash_cycles.py with many cycles (default 20)
# against the private cluster (scripts/lib.sh), in database stream_multi (created with
# the extension when missing). The test command runs the same test with 3 cycles.
#
#   bash test/long/crash_cycles.sh [CYCLES]        # STREAM_CRASH_SEED picks the seed
#
# Prints the TAP output, then one summary line with the figures; exits non-zero when a
# check failed. The cluster's server is killed and restarted many times: do not point
# it at a server that other work uses.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/../../scripts/lib.sh"
cd "$STREAM_ROOT"

cycles=${1:-20}
case $cycles in ''|*[!0-9]*) die "usage: $0 [CYCLES] (a positive number)";; esac
ensure_cluster
psql=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1)
if [ "$("${psql[@]}" -d postgres -Atc "SELECT count(*) FROM pg_database WHERE datname = 'stream_multi'")" = 0 ]; then
    "${psql[@]}" -d postgres -c "CREATE DATABASE stream_multi"
fi
"${psql[@]}" -d stream_multi -c "SET client_min_messages = warning" -c "CREATE EXTENSION IF NOT EXISTS stream"

out=$(mktemp)
trap 'rm -f "$out"' EXIT
start=$(date +%s)
rc=0
STREAM_CRASH_CYCLES=$cycles PYTHONDONTWRITEBYTECODE=1 \
    /usr/bin/python3 test/multi/t_910_crash_cycles.py 2>&1 | tee "$out" || rc=$?
elapsed=$(( $(date +%s) - start ))
tests=$(grep -cE '^(not )?ok ' "$out" || true)
failed=$(grep -cE '^not ok ' "$out" || true)
figures=$(sed -n 's/^# crash cycles: //p' "$out")
echo
if [ "$rc" -eq 0 ] && [ "$failed" -eq 0 ] && grep -q '^1\.\.' "$out"; then
    echo "crash cycles: PASS, $tests checks; ${figures:-no figures}; wall ${elapsed}s"
else
    echo "crash cycles: FAIL ($failed of $tests checks failed, exit $rc); ${figures:-no figures}; wall ${elapsed}s"
    exit 1
fi
