#!/usr/bin/env bash
# Run every test suite against the private cluster: pg_regress, pgTAP, multi-session
# (Python, TAP) and shell tests, then scan the server log for crashes. A failing suite
# does not stop the others; the last line is "N passed, M failed" (suites).
# STREAM_SUITE_TIMEOUT (seconds, default 1800) bounds each suite so a hang cannot eat CI.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$STREAM_ROOT"

ensure_packages
build_install || die "build failed"
ensure_cluster
log_start=$(stat -c %s "$STREAM_PGLOG")

psql=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1)
export PYTHONDONTWRITEBYTECODE=1
timeout=${STREAM_SUITE_TIMEOUT:-1800}
passed=0 failed=0 results=()

header() { printf '\n==== %s ====\n' "$*"; }
record() {  # record NAME STATUS
    results+=("$(printf '%-16s %s' "$1" "$2")")
    if [ "$2" = ok ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
}
# run NAME COMMAND...: run one suite under the time limit and record its result.
run() {
    local name=$1; shift
    ensure_cluster  # a previous suite may have stopped or restarted the server
    local rc=0
    timeout "$timeout" "$@" || rc=$?
    [ $rc -ne 124 ] || echo "$name: timed out after ${timeout}s (STREAM_SUITE_TIMEOUT)"
    if [ $rc -eq 0 ]; then record "$name" ok; else record "$name" FAILED; return 1; fi
}
recreate_db() {  # recreate_db NAME EXTENSION...
    local db=$1 ext; shift
    "${psql[@]}" -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
    for ext; do "${psql[@]}" -d "$db" -c "CREATE EXTENSION $ext"; done
}
shopt -s nullglob

header "pg_regress (make installcheck)"
if [ -n "$(echo test/sql/*.sql)" ]; then
    rm -f test/regression.diffs
    if ! run pg_regress make -s PG_CONFIG="$PG_CONFIG" installcheck && [ -f test/regression.diffs ]; then
        head -n 200 test/regression.diffs
    fi
else
    echo "skipped: no test/sql/*.sql"
fi

header "pgTAP (pg_prove, database stream_tap)"
pgtap=(test/pgtap/*.sql)
if [ ${#pgtap[@]} -gt 0 ]; then
    if recreate_db stream_tap pgtap stream; then
        run pgtap pg_prove --psql-bin "$PG_BIN/psql" -d stream_tap "${pgtap[@]}" || true
    else
        record pgtap FAILED
    fi
else
    echo "skipped: no test/pgtap/*.sql"
fi

header "multi-session (prove, test/multi/t_*.py, database stream_multi)"
multi=(test/multi/t_*.py)
if [ ${#multi[@]} -gt 0 ]; then
    if recreate_db stream_multi stream; then
        run multi prove -v --exec /usr/bin/python3 "${multi[@]}" || true
    else
        record multi FAILED
    fi
else
    echo "skipped: no test/multi/t_*.py"
fi

header "Kafka clients (prove, test/kafka/t_*.py, kcat/librdkafka/kafka-python on 127.0.0.1:$STREAM_KAFKA_PORT, database postgres)"
kafka=(test/kafka/t_*.py)
if [ ${#kafka[@]} -gt 0 ]; then
    # the listener serves stream.database (postgres); the tests drop their own topics
    if "${psql[@]}" -d postgres -c "SET client_min_messages = warning" -c "CREATE EXTENSION IF NOT EXISTS stream"; then
        run kafka prove -v --exec /usr/bin/python3 "${kafka[@]}" || true
    else
        record kafka FAILED
    fi
else
    echo "skipped: no test/kafka/t_*.py"
fi

header "shell (prove, test/shell/*.sh)"
shell=(test/shell/*.sh)
if [ ${#shell[@]} -gt 0 ]; then
    run shell prove -v --exec bash "${shell[@]}" || true
else
    echo "skipped: no test/shell/*.sh"
fi

# The short sanitizer run: pg_regress, pgTAP and the tests that drive the C code hardest
# against a stream.so built with ASan and UBSan, on a cluster of its own (make sanitize
# runs every suite). STREAM_SKIP_SANITIZE=1 leaves it out.
header "sanitizers (scripts/sanitize.sh, short)"
if [ -z "${STREAM_SKIP_SANITIZE:-}" ]; then
    run sanitize env STREAM_SANITIZE_MULTI="t_050_storm.py t_130_exactly_once.py t_170_commit_writes.py t_400_fuzz.py" \
        STREAM_SANITIZE_SHELL="" STREAM_SANITIZE_KAFKA="t_010_listener.py t_050_records.py t_185_frames.py t_200_group_protocol.py" FUZZ_CALLS=2000 bash scripts/sanitize.sh || true
else
    echo "skipped: STREAM_SKIP_SANITIZE is set"
fi

# Crashes show up only in the server log. Backends killed with signal 9 on purpose by
# crash tests are expected; any other signal, a PANIC or a failed assertion is not.
# Counted as a suite only when it finds something.
header "server log ($STREAM_PGLOG, this run only)"
size=$(stat -c %s "$STREAM_PGLOG")
[ "$size" -ge "$log_start" ] || log_start=0
crashes=$(tail -c +"$((log_start + 1))" "$STREAM_PGLOG" |
          grep -aE '(^|\] )(PANIC|TRAP):|terminated by signal [0-9]+' |
          grep -avE 'terminated by signal 9:' || true)
if [ -z "$crashes" ]; then
    echo "ok: no PANIC, failed assertion or crash"
else
    printf '%s\n' "$crashes" | head -n 50
    record "server log" FAILED
fi

header "summary"
printf '%s\n' "${results[@]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
