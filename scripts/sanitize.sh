#!/usr/bin/env bash
# scripts/sanitize.sh: run the test suites against a stream.so built with
# AddressSanitizer and UndefinedBehaviorSanitizer; fail when a sanitizer reports.
#
#   bash scripts/sanitize.sh              (as root or with sudo, like scripts/test.sh)
#
# What it does
#   1. Copies the system PostgreSQL 15 (/usr/lib/postgresql/15, /usr/share/postgresql/15,
#      /usr/include/postgresql) to $STREAM_SANITIZE_DIR/pg, once (again when the Debian
#      packages change), so that neither the normal build nor the normal cluster is
#      touched. STREAM_SANITIZE_PG_CONFIG names another installation to use instead: it
#      becomes a sanitizer installation (its postgres is replaced by the wrapper below).
#   2. Replaces that copy's postgres with a wrapper that preloads the ASan runtime and
#      test/sanitize/preload.c (which works around a start-up hang and lets UBSan find
#      its options) and sets ASAN_OPTIONS/UBSAN_OPTIONS. PostgreSQL forks its backends
#      without exec, so the preload covers every process; and every start goes through
#      the wrapper (initdb, pg_ctl, tests that restart the server).
#   3. Builds stream.so from a copy of the sources ($STREAM_SANITIZE_DIR/build) with gcc
#      -fsanitize=address,undefined,bounds-strict -fno-omit-frame-pointer -fno-wrapv and
#      installs it into the copy; the work tree's objects stay those of the normal build.
#   4. initdb's a throwaway cluster ($STREAM_SANITIZE_DIR/data, with the configuration of
#      scripts/lib.sh) and checks that the sanitizers report from a backend: the canary
#      module test/sanitize/canary.c commits one UB and one heap overflow, on purpose.
#   5. Runs pg_regress, pgTAP, the multi-session tests (STREAM_SANITIZE_MULTI: "all", the
#      default, or names such as "t_050_storm.py t_400_fuzz.py"; the fuzzer makes 10000
#      calls) and the shell tests named by STREAM_SANITIZE_SHELL (020_blog_story.sh).
#   6. Fails when a suite fails, when ASan wrote a report ($STREAM_SANITIZE_DIR/reports/
#      asan.<pid>) or when the server log shows a UBSan "runtime error" (UBSan cannot
#      write its own files next to ASan: its reports go to stderr, the log) or a crash.
#      Every report is printed with its stack.
#
# Variables: STREAM_SANITIZE_DIR (default /tmp/stream-sanitize-<hash of the work tree>),
# STREAM_SANITIZE_PORT (default: first free port from 5497), STREAM_SANITIZE_PG_CONFIG,
# STREAM_SANITIZE_MULTI, STREAM_SANITIZE_SHELL, STREAM_SANITIZE_KEEP=1 (leave the server
# running to explore; stop it with runuser -u postgres -- <bin>/pg_ctl -D <dir>/data
# stop), FUZZ_CALLS and FUZZ_SEED (t_400), STREAM_SUITE_TIMEOUT (seconds per suite).
# Suppressions: test/sanitize/asan.supp and test/sanitize/ubsan.supp.
#
# Why ASan and not valgrind: under valgrind memcheck every backend runs some 30 times
# slower (pg_regress: 2 min 45 s instead of 5 s; here it takes 7-16 s), too slow for the
# multi-session tests and their timeouts on a small machine, and every report it made
# was inside PostgreSQL or glibc (Debian ships no valgrind.supp). ASan needs only our
# module rebuilt. valgrind would see uninitialised reads, which ASan does not
# (MemorySanitizer would need PostgreSQL itself rebuilt).
#
# What it can find
#   - in our code (src/*.c, instrumented): out-of-bounds reads and writes of stack
#     arrays and globals, use of a local after its scope or after its function returned;
#     UB: shifts out of range, signed overflow (built with -fno-wrapv so that it is
#     reported; the normal build has -fwrapv, where an overflow silently wraps),
#     misaligned or NULL pointer use, array indexes out of declared bounds, invalid
#     bool/enum values, division by zero. Also in PostgreSQL's inline functions and
#     macros compiled into stream.so;
#   - in heap memory, anywhere (malloc is intercepted in every process): accesses
#     outside a malloc'd block or after its free. PostgreSQL's palloc carves small
#     chunks out of 8 kB+ blocks, so for palloc'd memory this means: an overflow past a
#     chunk of more than 8 kB (which gets its own malloc block), a use of such a chunk
#     after pfree, a use of memory in a block that a context reset or delete freed (a
#     context keeps its first block, and small deleted contexts are recycled), and an
#     overflow off the end of a whole block;
#   - in uninstrumented PostgreSQL code, only what its calls to libc interceptors
#     (memcpy, strlen, ...) do with such memory, and segfaults anywhere (stack printed).
# What it cannot find
#   - overflows between palloc chunks inside a block, use of a small chunk after pfree
#     (it stays inside a live block): Debian's postgres has no USE_VALGRIND,
#     MEMORY_CONTEXT_CHECKING or CLOBBER_FREED_MEMORY, whose sentinels would catch them;
#   - anything in shared memory or shared buffers (not malloc'd), e.g. our shmem state;
#   - uninitialised reads, leaks (PostgreSQL frees by memory context, detect_leaks=0),
#     data races (ThreadSanitizer does not apply to processes);
#   - failed Asserts: Debian's postgres is built without USE_ASSERT_CHECKING;
#   - code the suites do not run.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$STREAM_ROOT"
started=$(date +%s)

SAN_DIR=${STREAM_SANITIZE_DIR:-/tmp/stream-sanitize-$(echo "$STREAM_ROOT" | md5sum | cut -c1-8)}
SAN_MULTI=${STREAM_SANITIZE_MULTI:-all}
SAN_SHELL=${STREAM_SANITIZE_SHELL-020_blog_story.sh}  # empty: none
SAN_KAFKA=${STREAM_SANITIZE_KAFKA-all}  # test/kafka/t_*.py to run, "all", or empty: none
# t_400 (the SQL fuzzer) is the suite that sends odd values into the C code: more calls
# than its default 3000 under the sanitizers.
export FUZZ_CALLS=${FUZZ_CALLS:-10000}
SAN_CC=${STREAM_SANITIZE_CC:-gcc}
# bounds-strict: also the bounds of trailing arrays (PostgreSQL's flexible arrays are
# declared [], which it leaves alone).
SAN_CFLAGS="-fsanitize=address,undefined,bounds-strict -fno-omit-frame-pointer -fno-optimize-sibling-calls -fno-wrapv -g"
REPORTS=$SAN_DIR/reports
SUPP=$SAN_DIR/supp  # copies of test/sanitize/*, which postgres may not reach in the work tree
# detect_leaks=0: PostgreSQL frees by memory context and leaves the rest to exit.
# abort_on_error=1: a report ends the backend with SIGABRT, so the postmaster logs
# "terminated by signal 6" and reinitializes, and the client sees the failure.
# quarantine_size_mb: freed memory kept unusable per process (default 256 MB) times
# the number of backends; 64 MB still holds far more than one test frees.
# detect_stack_use_after_return=1: a pointer to a local of ours used after its function
# returned (a Datum pointing into a dead frame, say).
ASAN_OPTS="log_path=$REPORTS/asan detect_stack_use_after_return=1 detect_leaks=0 abort_on_error=1 disable_coredump=1 quarantine_size_mb=64 malloc_context_size=20 suppressions=$SUPP/asan.supp"
# halt_on_error=0: undefined behaviour is reported and the backend goes on, so one run
# lists every case. Each place is reported once per process. log_path: UBSan writes
# to stderr anyway, but its initialization sets the report path it shares with ASan.
UBSAN_OPTS="log_path=$REPORTS/asan print_stacktrace=1 halt_on_error=0 report_error_type=1 suppressions=$SUPP/ubsan.supp"

ensure_packages
# a server left over from an interrupted run (any PostgreSQL 15 pg_ctl can stop it)
if as_pg test -f "$SAN_DIR/data/postmaster.pid"; then
    as_pg "$PG_BIN/pg_ctl" -D "$SAN_DIR/data" -m immediate stop >/dev/null 2>&1 || true
fi
# the port now, to fail before the build
if [ -n "${STREAM_SANITIZE_PORT:-}" ]; then
    port_busy "$STREAM_SANITIZE_PORT" && die "port $STREAM_SANITIZE_PORT is in use"
    STREAM_PORT=$STREAM_SANITIZE_PORT
else
    STREAM_PORT=5497
    while port_busy "$STREAM_PORT"; do
        STREAM_PORT=$((STREAM_PORT + 1))
        [ "$STREAM_PORT" -le 5599 ] || die "no free port up to 5599; set STREAM_SANITIZE_PORT"
    done
fi
command -v "$SAN_CC" >/dev/null || die "$SAN_CC is not installed"
asan_lib=$(readlink -f "$("$SAN_CC" -print-file-name=libasan.so)")
[ -f "$asan_lib" ] || die "no ASan runtime for $SAN_CC (Debian: libasan8, a dependency of gcc-12)"

as_root mkdir -p "$SUPP"
as_root chmod 755 "$SAN_DIR" "$SUPP"
as_root install -m 644 test/sanitize/asan.supp test/sanitize/ubsan.supp "$SUPP/"
preload=$SUPP/preload.so
as_root "$SAN_CC" -shared -fPIC -O2 -o "$preload" test/sanitize/preload.c || die "cannot build $preload"

# 1. The PostgreSQL installation: a copy of the system one unless one was given.
if [ -n "${STREAM_SANITIZE_PG_CONFIG:-}" ]; then
    SAN_PG_CONFIG=$STREAM_SANITIZE_PG_CONFIG
else
    SAN_PG_CONFIG=$SAN_DIR/pg/usr/lib/postgresql/15/bin/pg_config
    stamp=$(dpkg-query -W postgresql-15 postgresql-server-dev-15 postgresql-15-pgtap 2>/dev/null || true)
    stamp+=$'\n'$(md5sum </usr/lib/postgresql/15/bin/postgres)
    if [ "$stamp" != "$(cat "$SAN_DIR/pg/.stamp" 2>/dev/null)" ]; then
        note "== copying PostgreSQL 15 to $SAN_DIR/pg"
        as_root rm -rf "$SAN_DIR/pg"
        as_root mkdir -p "$SAN_DIR/pg/usr/lib/postgresql" "$SAN_DIR/pg/usr/share/postgresql" \
                         "$SAN_DIR/pg/usr/include"
        as_root cp -a /usr/lib/postgresql/15 "$SAN_DIR/pg/usr/lib/postgresql/"
        as_root cp -a /usr/share/postgresql/15 "$SAN_DIR/pg/usr/share/postgresql/"
        as_root cp -a /usr/include/postgresql "$SAN_DIR/pg/usr/include/"
        printf '%s\n' "$stamp" | as_root tee "$SAN_DIR/pg/.stamp" >/dev/null
    fi
fi
SAN_BIN=$("$SAN_PG_CONFIG" --bindir)
[ "$(readlink -f "$SAN_BIN")" != /usr/lib/postgresql/15/bin ] ||
    die "STREAM_SANITIZE_PG_CONFIG must name a copy, not the system PostgreSQL (its postgres would be replaced)"
SAN_PKGLIB=$("$SAN_PG_CONFIG" --pkglibdir)

# 2. The postgres wrapper. Rewritten every run: it carries the options above.
postgres=$SAN_BIN/postgres
if ! head -c 2 "$postgres" | grep -q '^#!'; then
    as_root mv "$postgres" "$postgres.bin"
fi
as_root tee "$postgres" >/dev/null <<EOF
#!/bin/bash
# Written by scripts/sanitize.sh: run postgres with the ASan runtime preloaded (the
# sanitized stream.so cannot load without it). The real binary is postgres.bin.
export LD_PRELOAD=$asan_lib:$preload\${LD_PRELOAD:+:\$LD_PRELOAD}
export ASAN_OPTIONS='$ASAN_OPTS'
export UBSAN_OPTIONS='$UBSAN_OPTS'
exec -a "\$0" '$postgres.bin' "\$@"
EOF
as_root chmod 755 "$postgres"
timeout 60 "$postgres" -V >/dev/null || die "$postgres -V failed with the ASan runtime preloaded"

# 3. Build from a copy of the sources, and the canary module.
build=$SAN_DIR/build
note "== building stream.so with $SAN_CFLAGS"
as_root rm -rf "$build"
as_root mkdir -p "$build/test"
as_root cp -a Makefile stream.control src sql "$build/"
as_root cp -a test/sql test/expected "$build/test/"
as_root chown -R "$(id -u):$(id -g)" "$build"
make -s -C "$build" PG_CONFIG="$SAN_PG_CONFIG" clean
make -s -C "$build" -j"$(nproc)" PG_CONFIG="$SAN_PG_CONFIG" CC="$SAN_CC" COPT="$SAN_CFLAGS" ||
    die "sanitized build failed"
readelf -d "$build/stream.so" | grep -q 'NEEDED.*libasan' || die "stream.so is not linked with ASan"
as_root make -s -C "$build" PG_CONFIG="$SAN_PG_CONFIG" install
# shellcheck disable=SC2086  # SAN_CFLAGS is a list of flags
"$SAN_CC" $SAN_CFLAGS -O1 -fPIC -shared -I"$("$SAN_PG_CONFIG" --includedir-server)" \
    -o "$build/sanitize_canary.so" test/sanitize/canary.c || die "canary build failed"
as_root install -m 755 "$build/sanitize_canary.so" "$SAN_PKGLIB/"

# 4. A throwaway cluster with the configuration of the normal one (stream_conf).
STREAM_CLUSTER_DIR=$SAN_DIR
export STREAM_CLUSTER_DIR STREAM_PGDATA=$SAN_DIR/data STREAM_PGLOG=$SAN_DIR/postgres.log
export PGHOST=127.0.0.1 PGPORT=$STREAM_PORT PGUSER=postgres PG_BIN=$SAN_BIN
# its Kafka listener, beside the main cluster's (stream_conf reads it)
STREAM_KAFKA_PORT=$((STREAM_PORT + 4000))
port_busy "$STREAM_KAFKA_PORT" && die "Kafka port $STREAM_KAFKA_PORT is in use"
export STREAM_KAFKA_PORT
san_pg_ctl() { as_pg "$SAN_BIN/pg_ctl" -D "$STREAM_PGDATA" -l "$STREAM_PGLOG" "$@"; }
as_root rm -rf "$STREAM_PGDATA" "$REPORTS" "$SAN_DIR/run" "$STREAM_PGLOG"
as_root mkdir -p "$REPORTS" "$SAN_DIR/run" "$STREAM_PGDATA"
as_root chown postgres:postgres "$REPORTS" "$SAN_DIR/run" "$STREAM_PGDATA"
as_root chmod 755 "$REPORTS"
as_root chmod 700 "$STREAM_PGDATA"
as_root install -o postgres -g postgres -m 644 /dev/null "$STREAM_PGLOG"
note "== initdb $STREAM_PGDATA"
locale=C
locale -a 2>/dev/null | grep -qix 'c\.utf-\?8' && locale=C.UTF-8
out=$(as_pg "$SAN_BIN/initdb" -D "$STREAM_PGDATA" -A trust -U postgres --encoding UTF8 \
      --locale "$locale" 2>&1) || { printf '%s\n' "$out" >&2; die "initdb failed"; }
echo "include_if_exists = 'stream_test.conf'" | as_pg tee -a "$STREAM_PGDATA/postgresql.conf" >/dev/null
stream_conf | as_pg tee "$STREAM_PGDATA/stream_test.conf" >/dev/null
cleanup() {
    if [ "${STREAM_SANITIZE_KEEP:-0}" = 1 ]; then return 0; fi
    san_pg_ctl -m fast stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
san_pg_ctl -w -t 120 start >/dev/null || { tail -n 30 "$STREAM_PGLOG" >&2; die "PostgreSQL did not start"; }
note "== sanitized PostgreSQL running on 127.0.0.1:$STREAM_PORT (log: $STREAM_PGLOG)"
psql=("$SAN_BIN/psql" -X -q -v ON_ERROR_STOP=1)
# Wait until the server accepts connections: after a report aborted a backend, the
# postmaster restarts all of them and recovers.
wait_ready() {
    local _
    for _ in $(seq 600); do
        "$SAN_BIN/pg_isready" -q && return 0
        sleep 0.2
    done
    return 1
}

# The canary: a backend's UB must reach the log with its stack, and its heap overflow
# must leave an ASan report naming it (then the postmaster restarts the backends).
note "== canary: one UB and one heap overflow on purpose"
ready_lines() { grep -ac 'database system is ready to accept connections' "$STREAM_PGLOG" || true; }
ready_before=$(ready_lines)
"${psql[@]}" -d postgres >/dev/null 2>&1 <<SQL || true
CREATE FUNCTION pg_temp.canary(text, int) RETURNS int
    AS '$SAN_PKGLIB/sanitize_canary', 'sanitize_canary' LANGUAGE C STRICT;
SELECT pg_temp.canary('ub', 40);
SELECT pg_temp.canary('heap', 16384);
SQL
# the crash restart is over when the log says ready once more
for _ in $(seq 600); do
    [ "$(ready_lines)" -gt "$ready_before" ] && break
    sleep 0.2
done
if [ "$(ready_lines)" -le "$ready_before" ] || ! wait_ready; then
    die "the server did not restart after the canary's abort (see $STREAM_PGLOG)"
fi
grep -aA3 'runtime error: shift exponent 40' "$STREAM_PGLOG" | grep -q 'in sanitize_canary' ||
    die "UBSan did not report the canary's shift with a stack (see $STREAM_PGLOG)"
canary=$(grep -l 'heap-buffer-overflow' "$REPORTS"/asan.* 2>/dev/null | head -n 1) || true
if [ -z "$canary" ] || ! grep -q 'in sanitize_canary' "$canary"; then
    die "ASan did not report the canary's heap overflow in $REPORTS"
fi
as_root rm -f "$canary"
log_start=$(stat -c %s "$STREAM_PGLOG")
echo "canary: UBSan and ASan both reported from a backend"

# 5. The suites, as scripts/test.sh runs them.
export PYTHONDONTWRITEBYTECODE=1
timeout=${STREAM_SUITE_TIMEOUT:-1800}
passed=0 failed=0 results=()
header() { printf '\n==== %s ====\n' "$*"; }
record() {  # record NAME STATUS
    results+=("$(printf '%-16s %s' "$1" "$2")")
    if [ "$2" = ok ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
}
run() {  # run NAME COMMAND...
    local name=$1 rc=0 t0=$SECONDS; shift
    # a report aborts a backend and the server restarts: wait until it is back
    wait_ready || true
    timeout "$timeout" "$@" || rc=$?
    [ $rc -ne 124 ] || echo "$name: timed out after ${timeout}s (STREAM_SUITE_TIMEOUT)"
    echo "$name: $((SECONDS - t0)) s"
    if [ $rc -eq 0 ]; then record "$name" ok; else record "$name" FAILED; fi
}
recreate_db() {  # recreate_db NAME EXTENSION...
    local db=$1 ext; shift
    wait_ready || true
    "${psql[@]}" -d postgres -c "SET client_min_messages = warning" \
        -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
    for ext; do "${psql[@]}" -d "$db" -c "CREATE EXTENSION $ext"; done
}
shopt -s nullglob

header "pg_regress (make installcheck)"
run pg_regress make -s -C "$build" PG_CONFIG="$SAN_PG_CONFIG" installcheck
[ ! -f "$build/test/regression.diffs" ] || head -n 200 "$build/test/regression.diffs"

header "pgTAP (pg_prove, database stream_tap)"
if recreate_db stream_tap pgtap stream; then
    run pgtap pg_prove --psql-bin "$SAN_BIN/psql" -d stream_tap test/pgtap/*.sql
else
    record pgtap FAILED
fi

header "multi-session (database stream_multi): $SAN_MULTI"
if [ "$SAN_MULTI" = all ]; then
    multi=(test/multi/t_*.py)
else
    multi=()
    for t in $SAN_MULTI; do multi+=("test/multi/$t"); done
fi
if recreate_db stream_multi stream; then
    run multi prove -v --exec /usr/bin/python3 "${multi[@]}"
else
    record multi FAILED
fi

header "Kafka clients (database postgres): $SAN_KAFKA"
if [ "$SAN_KAFKA" = all ]; then
    kafka=(test/kafka/t_*.py)
else
    kafka=()
    for t in $SAN_KAFKA; do kafka+=("test/kafka/$t"); done
fi
if [ ${#kafka[@]} -gt 0 ]; then
    wait_ready || true
    if "${psql[@]}" -d postgres -c "SET client_min_messages = warning" -c "CREATE EXTENSION IF NOT EXISTS stream"; then
        run kafka prove -v --exec /usr/bin/python3 "${kafka[@]}"
    else
        record kafka FAILED
    fi
fi

header "shell (prove, test/shell): $SAN_SHELL"
shell=()
for t in $SAN_SHELL; do shell+=("test/shell/$t"); done
if [ ${#shell[@]} -gt 0 ]; then
    run shell prove -v --exec bash "${shell[@]}"
fi

wait_ready || true
cleanup

header "ASan reports ($REPORTS)"
reports=("$REPORTS"/*)
if [ ${#reports[@]} -eq 0 ]; then
    echo "ok: no report"
else
    for f in "${reports[@]}"; do
        printf -- '--- %s\n' "$f"
        head -n 100 "$f"
    done
    echo "${#reports[@]} report file(s)"
    record asan FAILED
fi

header "UBSan reports and crashes (server log $STREAM_PGLOG, after the canary)"
# a report line and the stack below it; ASan writes to stderr when it cannot write a file
found=$(tail -c +"$((log_start + 1))" "$STREAM_PGLOG" | awk '
    / runtime error: |ERROR: AddressSanitizer|(^|\] )(PANIC|TRAP):|terminated by signal [0-9]+/ &&
        !/terminated by signal 9:/ { print; stack = 1; n++; next }
    stack && /^ +#[0-9]+ / { print; next }
    { stack = 0 }
    END { exit n == 0 }') || true
if [ -z "$found" ]; then
    echo "ok: no UBSan report, crash or PANIC"
else
    printf '%s\n' "$found" | head -n 300
    record "server log" FAILED
fi

header "summary ($(($(date +%s) - started)) s)"
printf '%s\n' "${results[@]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
