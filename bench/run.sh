#!/usr/bin/env bash
# bench/run.sh: stream.publish against a plain INSERT, stream.publish_batch against COPY.
#
# One command builds and installs the extension, starts the private cluster (as
# scripts/test.sh does), recreates the database stream_bench and measures, in alternation
# (baseline, stream, baseline, stream, ...), each run on an empty topic and table after
# VACUUM and CHECKPOINT:
#   a   1 message per transaction, 8 clients (pgbench -c 8 -j 2 -M prepared):
#       INSERT of one row into bench_insert (insert.sql) vs stream.publish (publish.sql)
#   b1  1000 messages per transaction, 1 client (bench.py batch):
#       COPY FROM STDIN of 1000 rows vs stream.publish_batch of the same 1000 rows
#   b2  the same with 2 clients
# and prints median, min and max messages/s and the ratio stream/baseline (medians).
# Results: bench/results/latest.txt (per-run figures and the table).
#
# Environment: BENCH_RUNS (runs per series, default 5), BENCH_SECONDS (per run, default
# 10), BENCH_WARMUP (seconds of unrecorded warm-up per series, default 2),
# BENCH_PARTITIONS (default 8), BENCH_CLIENTS (section a, default 8), BENCH_ONLY (the
# sections to run, default "a b1 b2"), BENCH_QUICK=1 (smoke run: 2 runs of 3 seconds,
# no warm-up; explicit settings still win).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/../scripts/lib.sh"
cd "$STREAM_ROOT"

if [ "${BENCH_QUICK:-0}" = 1 ]; then d_runs=2 d_secs=3 d_warm=0; else d_runs=5 d_secs=10 d_warm=2; fi
runs=${BENCH_RUNS:-$d_runs}
secs=${BENCH_SECONDS:-$d_secs}
warm=${BENCH_WARMUP:-$d_warm}
parts=${BENCH_PARTITIONS:-8}
clients=${BENCH_CLIENTS:-8}
db=stream_bench
results=bench/results
tsv=$results/runs.tsv
latest=$results/latest.txt
python=/usr/bin/python3

ensure_packages
build_install || die "build failed"
ensure_cluster

psql=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1)
mkdir -p "$results"
: >"$tsv"
exec > >(tee "$latest") 2>&1  # everything below also goes to latest.txt

echo "stream benchmark  $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src sql 2>/dev/null || echo ' (src/sql modified)')," \
     "$("$PG_BIN/postgres" --version), $(nproc) CPUs"
echo "runs=$runs seconds=$secs warmup=$warm partitions=$parts clients(a)=$clients" \
     "(BENCH_RUNS BENCH_SECONDS BENCH_WARMUP BENCH_PARTITIONS BENCH_CLIENTS)"
"${psql[@]}" -d postgres -Atc "SELECT string_agg(name || '=' || setting || coalesce(unit, ''), ' ' ORDER BY name)
    FROM pg_settings WHERE name IN ('shared_buffers', 'synchronous_commit', 'fsync', 'max_wal_size',
                                    'full_page_writes', 'wal_level')"

# (Re)create the database: at the start, and after a failed run, since the failure may
# come from a new build installed meanwhile (the SQL of the extension must match it).
setup_db() {
    "${psql[@]}" -d postgres -c "SET client_min_messages = warning" \
        -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
    "${psql[@]}" -d "$db" -c "CREATE EXTENSION stream"
}
setup_db

reset() { "${psql[@]}" -d "$db" -v partitions="$parts" -f bench/reset.sql >/dev/null; }

# Messages now stored by the baseline table or the topic.
stored() {
    if [ "$1" = base ]; then
        "${psql[@]}" -d "$db" -Atc "SELECT count(*) FROM bench_insert"
    else
        "${psql[@]}" -d "$db" -Atc "SELECT sum(messages) FROM stream.partitions WHERE topic = 'bench'"
    fi
}

# Transactions counted so far in the other databases of the cluster, which is shared
# with the test suites: a difference over a run means that the run was disturbed.
others() {
    "${psql[@]}" -d "$db" -Atc "SELECT coalesce(sum(xact_commit + xact_rollback), 0)
        FROM pg_stat_database WHERE datname IS NOT NULL AND datname <> current_database()"
}

# measure KIND SECONDS: print "<msgs/s> <messages committed>".
measure() {
    local kind=$1 s=$2 out
    case $kind in
        insert|publish)
            out=$("$PG_BIN/pgbench" -n -M prepared -c "$clients" -j 2 -T "$s" -f "bench/$kind.sql" "$db" 2>&1) || {
                printf '%s\n' "$out" | tail -n 5 >&2; return 1; }
            # one message per transaction: messages/s is pgbench's tps
            printf '%s\n' "$out" | awk '
                /^number of transactions actually processed:/ { split($NF, a, "/"); n = a[1] }
                /^tps = / { tps = $3 }
                END { if (tps == "") exit 1; print tps, n }'
            ;;
        copy-*|publish_batch-*)  # KIND-CLIENTS
            local mode=${kind%-*}
            [ "$mode" = copy ] || mode=publish
            "$python" bench/bench.py batch "$mode" "${kind##*-}" "$s" 1000
            ;;
    esac
}

# series SECTION BASE_KIND BASE_NAME STREAM_KIND STREAM_NAME
series() {
    local section=$1 bkind=$2 bname=$3 skind=$4 sname=$5 i kind name r try out rate n rows busy
    echo
    echo "== $section: $bname  vs  $sname"
    if [ "$warm" != 0 ]; then
        for kind in "$bkind" "$skind"; do
            reset
            measure "$kind" "$warm" >/dev/null || true
        done
    fi
    for ((i = 1; i <= runs; i++)); do
        for r in base stream; do
            if [ $r = base ]; then kind=$bkind name=$bname; else kind=$skind name=$sname; fi
            for try in 1 2 3; do
                reset
                busy=$(others)
                if out=$(measure "$kind" "$secs"); then break; fi
                # Another session may have restarted the shared server or installed a
                # new build: wait for the server, recreate the database and retry.
                [ $try -lt 3 ] || die "$section $name failed 3 times"
                echo "   (run failed, retrying on a fresh database)"
                ensure_cluster
                setup_db
            done
            read -r rate n <<<"$out"
            rows=$(stored $r)
            busy=$(( $(others) - busy ))
            [ "$rows" = "$n" ] || echo "   warning: $n messages reported but $rows stored"
            printf '%s\t%s\t%s\t%d\t%s\t%s\n' "$section" "$r" "$name" "$i" "$rate" "$rows" >>"$tsv"
            printf '   run %d/%d  %-40s %10.0f msg/s  (%s messages%s)\n' "$i" "$runs" "$name" "$rate" "$rows" \
                "$([ "$busy" -le 10 ] || echo ", $busy transactions in other databases meanwhile")"
        done
    done
}

start=$SECONDS
only=" ${BENCH_ONLY:-a b1 b2} "
only=${only//,/ }
[[ $only != *" a "* ]] ||
series a insert "INSERT, 1 row/xact, $clients clients" \
         publish "publish, 1 msg/xact, $clients clients"
[[ $only != *" b1 "* ]] ||
series b1 copy-1 "COPY, 1000 rows/xact, 1 client" \
          publish_batch-1 "publish_batch, 1000 msgs/xact, 1 client"
[[ $only != *" b2 "* ]] ||
series b2 copy-2 "COPY, 1000 rows/xact, 2 clients" \
          publish_batch-2 "publish_batch, 1000 msgs/xact, 2 clients"

echo
"$python" bench/bench.py report "$tsv"
echo "($((SECONDS - start)) s; ratio = median stream / median baseline of the section)"
