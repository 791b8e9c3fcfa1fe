#!/usr/bin/env bash
# bench/run.sh: the stream against plain PostgreSQL doing the same work.
#
# One command builds and installs the extension, starts the private cluster (as
# scripts/test.sh does), recreates the database stream_bench and measures, in alternation
# (baseline, stream, baseline, stream, ...):
#   a   1 message per transaction, 8 clients (pgbench -c 8 -j 2 -M prepared):
#       INSERT of one row into bench_insert (insert.sql) vs stream.publish (publish.sql)
#   b1  1000 messages per transaction, 1 client (bench.py batch):
#       COPY FROM STDIN of 1000 rows vs stream.publish_batch of the same 1000 rows
#   b2  the same with 2 clients
#   (a and b: each run on an empty topic and table after VACUUM and CHECKPOINT)
#   c1  one session reads a 1-partition topic of BENCH_SCAN_MESSAGES messages
#       BENCH_SCAN_PASSES times, 1000 per call: the prepared range scan of the same rows
#       in a plain table vs stream.poll
#   c2  the same with a commit of the offset in every transaction: range scan + upsert
#       of an offsets row vs stream.poll + stream.commit
#   d1  latency from publish commit to poll return, 1 publisher at BENCH_LAT_RATE msg/s
#       (1 message per transaction), 1 consumer in a long poll; 1 partition (no baseline)
#   d2  the same with 4 partitions and 2 consumers of one group
#   e   BENCH_MEMBERS sessions drain a BENCH_MEMBERS-partition topic of
#       BENCH_MEMBERS_MESSAGES messages BENCH_MEMBERS_PASSES times, 1000 messages +
#       commit per transaction: each session scanning its own table + upsert vs members
#       of one group polling; checks that every message was read exactly once
#   (c and e: the topic and the tables are filled once per section; the runs only read,
#   each pass as a new group)
# and prints median, min and max messages/s and the ratio stream/baseline (medians), and
# for d the medians over the runs of p50, p99 and max latency.
# Results: bench/results/latest.txt (per-run figures and the tables).
#
# Environment: BENCH_RUNS (runs per series, default 5), BENCH_SECONDS (per run of a
# and b, default 10), BENCH_WARMUP (seconds of unrecorded warm-up per series of a and b,
# default 2; c and e warm up with one unrecorded run of each side unless it is 0),
# BENCH_PARTITIONS (a and b, default 8), BENCH_CLIENTS (a, default 8),
# BENCH_SCAN_MESSAGES (c, default 200000), BENCH_SCAN_PASSES (c, reads of the topic per
# run, default 3), BENCH_LAT_RUNS (d, default 3), BENCH_LAT_SECONDS (d, measured seconds
# per run after 1 s of warm-up, default 10), BENCH_LAT_RATE (d, default 1000),
# BENCH_MEMBERS (e, default 8), BENCH_MEMBERS_MESSAGES (e, default 400000),
# BENCH_MEMBERS_PASSES (e, drains per run, default 3), BENCH_ONLY (the sections to run,
# default "a b1 b2 c1 c2 d1 d2 e"; a letter selects all its sections: "c" is "c1 c2"),
# BENCH_QUICK=1 (smoke run: 2 runs of 3 seconds, no warm-up, c and e read 50000 and
# 100000 messages once per run, d measures 3 s per run; explicit settings still win).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/../scripts/lib.sh"
cd "$STREAM_ROOT"

if [ "${BENCH_QUICK:-0}" = 1 ]; then
    d_runs=2 d_secs=3 d_warm=0 d_scan=50000 d_passes=1 d_lat_runs=2 d_lat_secs=3 d_members_msgs=100000 d_mpasses=1
else
    d_runs=5 d_secs=10 d_warm=2 d_scan=200000 d_passes=3 d_lat_runs=3 d_lat_secs=10 d_members_msgs=400000 d_mpasses=3
fi
runs=${BENCH_RUNS:-$d_runs}
secs=${BENCH_SECONDS:-$d_secs}
warm=${BENCH_WARMUP:-$d_warm}
parts=${BENCH_PARTITIONS:-8}
clients=${BENCH_CLIENTS:-8}
scan_msgs=${BENCH_SCAN_MESSAGES:-$d_scan}
scan_passes=${BENCH_SCAN_PASSES:-$d_passes}
lat_runs=${BENCH_LAT_RUNS:-$d_lat_runs}
lat_secs=${BENCH_LAT_SECONDS:-$d_lat_secs}
lat_rate=${BENCH_LAT_RATE:-1000}
nmembers=${BENCH_MEMBERS:-8}
members_msgs=${BENCH_MEMBERS_MESSAGES:-$d_members_msgs}
members_passes=${BENCH_MEMBERS_PASSES:-$d_mpasses}
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
echo "scan_messages(c)=$scan_msgs scan_passes(c)=$scan_passes lat_runs(d)=$lat_runs lat_seconds(d)=$lat_secs lat_rate(d)=$lat_rate" \
     "members(e)=$nmembers members_messages(e)=$members_msgs members_passes(e)=$members_passes (BENCH_SCAN_MESSAGES BENCH_SCAN_PASSES" \
     "BENCH_LAT_RUNS BENCH_LAT_SECONDS BENCH_LAT_RATE BENCH_MEMBERS BENCH_MEMBERS_MESSAGES" \
     "BENCH_MEMBERS_PASSES)"
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

# The topic and the tables that the runs of a consumer section read, filled once (the
# runs only read them: each run reads as a new group).
prepare() {
    case $1 in
        c*) "$python" bench/bench.py prepare benchc 1 "$scan_msgs" >/dev/null ;;
        e) "$python" bench/bench.py prepare benche "$nmembers" "$members_msgs" >/dev/null ;;
    esac
}

# before_run SECTION: bring the state every run of the section starts from.
before_run() {
    case $1 in a|b*) reset ;; esac
}

# stored SECTION ROLE: the messages a run must have committed (a, b: counted in the
# baseline table or the topic) or read (c, e: all those prepared).
stored() {
    case $1 in
        c*) echo "$scan_msgs" ;;
        e) echo "$members_msgs" ;;
        *)
            if [ "$2" = base ]; then
                "${psql[@]}" -d "$db" -Atc "SELECT count(*) FROM bench_insert"
            else
                "${psql[@]}" -d "$db" -Atc "SELECT sum(messages) FROM stream.partitions WHERE topic = 'bench'"
            fi
            ;;
    esac
}

# Transactions counted so far in the other databases of the cluster, which is shared
# with the test suites: a difference over a run means that the run was disturbed.
others() {
    "${psql[@]}" -d "$db" -Atc "SELECT coalesce(sum(xact_commit + xact_rollback), 0)
        FROM pg_stat_database WHERE datname IS NOT NULL AND datname <> current_database()"
}

# measure KIND SECONDS: print "<msgs/s> <messages committed or read> [<check>]".
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
        drain-*)  # drain-{scan,poll}[-commit]: whole reads of the topic, SECONDS unused
            "$python" bench/bench.py drain "${kind#drain-}" "$scan_msgs" "$scan_passes"
            ;;
        members-*)  # members-{scan,poll}
            "$python" bench/bench.py members "${kind#members-}" "$nmembers" "$members_msgs" "$members_passes"
            ;;
    esac
}

# series SECTION BASE_KIND BASE_NAME STREAM_KIND STREAM_NAME
series() {
    local section=$1 bkind=$2 bname=$3 skind=$4 sname=$5 i kind name r try out rate n check rows busy
    echo
    echo "== $section: $bname  vs  $sname"
    if [ "$warm" != 0 ]; then
        for kind in "$bkind" "$skind"; do
            before_run "$section"
            measure "$kind" "$warm" >/dev/null || true
        done
    fi
    for ((i = 1; i <= runs; i++)); do
        for r in base stream; do
            if [ $r = base ]; then kind=$bkind name=$bname; else kind=$skind name=$sname; fi
            for try in 1 2 3; do
                before_run "$section"
                busy=$(others)
                if out=$(measure "$kind" "$secs"); then break; fi
                # Another session may have restarted the shared server or installed a
                # new build: wait for the server, recreate the database and retry.
                [ $try -lt 3 ] || die "$section $name failed 3 times"
                echo "   (run failed, retrying on a fresh database)"
                ensure_cluster
                setup_db
                prepare "$section"
            done
            read -r rate n check <<<"$out"
            rows=$(stored "$section" $r)
            busy=$(( $(others) - busy ))
            [ "$rows" = "$n" ] || echo "   warning: $n messages reported but $rows stored"
            [ -z "$check" ] || [[ $check == exactly-once-ok* ]] || echo "   WARNING: $check"
            printf '%s\t%s\t%s\t%d\t%s\t%s\n' "$section" "$r" "$name" "$i" "$rate" "$rows" >>"$tsv"
            printf '   run %d/%d  %-40s %10.0f msg/s  (%s messages%s%s)\n' "$i" "$runs" "$name" "$rate" "$rows" \
                "${check:+, ${check//-/ }}" \
                "$([ "$busy" -le 10 ] || echo ", $busy transactions in other databases meanwhile")"
        done
    done
}

# latency_series SECTION PARTITIONS CONSUMERS NAME: section d, no baseline.
latency_series() {
    local section=$1 np=$2 nc=$3 name=$4 i try out busy
    local p50 p99 max sp50 sp99 smax n rate shares
    echo
    echo "== $section: $name"
    for ((i = 1; i <= lat_runs; i++)); do
        for try in 1 2 3; do
            busy=$(others)
            if out=$("$python" bench/bench.py latency "$np" "$nc" "$lat_secs" "$lat_rate" 1); then break; fi
            [ $try -lt 3 ] || die "$section failed 3 times"
            echo "   (run failed, retrying on a fresh database)"
            ensure_cluster
            setup_db
        done
        read -r p50 p99 max sp50 sp99 smax n rate shares <<<"$out"
        busy=$(( $(others) - busy ))
        printf '%s\tlat\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$section" "$name" "$i" \
            "$p50" "$p99" "$max" "$sp50" "$sp99" "$smax" "$n" "$rate" >>"$tsv"
        printf '   run %d/%d  commit->poll p50 %s p99 %s max %s ms, send->poll p50 %s p99 %s max %s ms' \
            "$i" "$lat_runs" "$p50" "$p99" "$max" "$sp50" "$sp99" "$smax"
        printf '  (%s messages at %.0f/s; partitions per consumer %s%s)\n' "$n" "$rate" "$shares" \
            "$([ "$busy" -le 10 ] || echo ", $busy transactions in other databases meanwhile")"
        [[ $shares != *:* ]] || echo "   WARNING: messages missing or duplicated: $shares"
    done
}

# want SECTION: is the section selected? (by its name, or by its letter: "c" = c1 c2)
want() { [[ $only == *" $1 "* || $only == *" ${1:0:1} "* ]]; }

start=$SECONDS
only=" ${BENCH_ONLY:-a b1 b2 c1 c2 d1 d2 e} "
only=${only//,/ }
! want a ||
series a insert "INSERT, 1 row/xact, $clients clients" \
         publish "publish, 1 msg/xact, $clients clients"
! want b1 ||
series b1 copy-1 "COPY, 1000 rows/xact, 1 client" \
          publish_batch-1 "publish_batch, 1000 msgs/xact, 1 client"
! want b2 ||
series b2 copy-2 "COPY, 1000 rows/xact, 2 clients" \
          publish_batch-2 "publish_batch, 1000 msgs/xact, 2 clients"
if want c1 || want c2; then prepare c; fi
! want c1 ||
series c1 drain-scan "range scan, 1000 rows/call, 1 session" \
          drain-poll "poll, 1000 msgs/call, 1 session"
! want c2 ||
series c2 drain-scan-commit "range scan + upsert offset, 1000/xact" \
          drain-poll-commit "poll + commit, 1000 msgs/xact"
! want d1 ||
latency_series d1 1 1 "1 partition, 1 consumer, $lat_rate msg/s"
! want d2 ||
latency_series d2 4 2 "4 partitions, 2 consumers, $lat_rate msg/s"
if want e; then prepare e; fi
! want e ||
series e members-scan "$nmembers sessions: scan + upsert, 1000/xact" \
         members-poll "$nmembers members: poll + commit, 1000/xact"

echo
"$python" bench/bench.py report "$tsv"
echo "($((SECONDS - start)) s; ratio = median stream / median baseline of the section)"
