#!/usr/bin/env bash
# The upgrade chain. Checks that stream.control's default_version is the newest version
# the committed scripts reach, and that every committed install script reaches it; then
# installs the oldest supported version with data (topics of each value type, keyed
# messages with headers, a rolled segment, committed group offsets, a grant), runs
# ALTER EXTENSION stream UPDATE, and checks that the upgraded install is object for
# object the same as a fresh one (test/upgrade/describe.sql) and that the data still
# works: messages read back, publishing continues at the right offsets, the group resumes
# from its committed offsets, the grant still holds.
# Runs in databases stream_upg_old and stream_upg_new on the cluster of PGHOST/PGPORT.
set -uo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/../../scripts/lib.sh"
[ -n "${PGPORT:-}" ] || stream_env
export PGHOST=${PGHOST:-127.0.0.1} PGUSER=${PGUSER:-postgres}
cd "$STREAM_ROOT"
psql=("$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1)
old=stream_upg_old new=stream_upg_new
tmp=$(mktemp -d /tmp/stream-upgrade.XXXXXX)
drop_dbs() {
    "${psql[@]}" -d postgres -c "DROP DATABASE IF EXISTS $old WITH (FORCE)" \
        -c "DROP DATABASE IF EXISTS $new WITH (FORCE)" >/dev/null 2>&1
}
cleanup() { rm -rf "$tmp"; drop_dbs; }
trap cleanup EXIT

n=0
ok() {  # ok STATUS DESCRIPTION
    n=$((n + 1))
    if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi
}
is() {  # is GOT EXPECTED DESCRIPTION
    if [ "$1" = "$2" ]; then ok 0 "$3"; else ok 1 "$3"; echo "#   got:      '$1'"; echo "#   expected: '$2'"; fi
}
q() { local db=$1; shift; "${psql[@]}" -d "$db" -c "$@" 2>&1; }
# save DB FILE SQL: write a query's output to FILE; a failing query ends the test.
save() {
    "${psql[@]}" -d "$1" -c "$3" >"$2" 2>&1 || { echo "Bail out! query failed: $(cat "$2")"; exit 1; }
}

echo "1..15"

# --- the chain of scripts ------------------------------------------------------------
default=$(sed -nE "s/^default_version *= *'(.*)'/\1/p" stream.control)
newest=$(ls sql/stream--*--*.sql | sed -E 's/.*--([^-]+)\.sql$/\1/' | sort -V | tail -n 1)
is "$newest" "$default" "default_version ($default) is the newest upgrade target"
# the oldest install script (the one of default_version is built from sql/stream.sql)
oldest=$(ls sql/stream--*.sql | grep -v -- '--.*--' | sed -E 's/.*--(.*)\.sql$/\1/' | sort -V | head -n 1)

drop_dbs
q postgres "CREATE DATABASE $old" >/dev/null
q postgres "CREATE DATABASE $new" >/dev/null
paths=$(q postgres "SELECT string_agg(v.version, ' ') FROM (SELECT DISTINCT version FROM pg_available_extension_versions WHERE name = 'stream') v
                   WHERE v.version <> '$default' AND NOT EXISTS (SELECT 1 FROM pg_extension_update_paths('stream')
                         WHERE source = v.version AND target = '$default' AND path IS NOT NULL)")
is "$paths" "" "every installed version has an update path to $default"

# --- the oldest version, with data ------------------------------------------------------
out=$(q $old "CREATE EXTENSION stream VERSION '$oldest'")
ok $? "CREATE EXTENSION stream VERSION '$oldest'${out:+: $out}"
q $old "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'stream_upg_reader') THEN CREATE ROLE stream_upg_reader; END IF; END \$\$" >/dev/null
# one transaction per statement: the roller works only on a committed topic
out=$(q $old "SELECT stream.create_topic('upg.events', 3, retention => '7 days', segment_bytes => 8192)" \
    -c "SELECT stream.create_topic('upg.text', 1, value_type => 'text')" \
    -c "SELECT stream.create_topic('upg.bytes', 1, value_type => 'bytea')" \
    -c "SELECT count(*) FROM stream.publish_batch('upg.events',
          (SELECT array_agg(jsonb_build_object('i', i, 'pad', repeat('x', 200)) ORDER BY i) FROM generate_series(1, 300) i),
          (SELECT array_agg('k' || (i % 17) ORDER BY i) FROM generate_series(1, 300) i),
          (SELECT array_agg(jsonb_build_object('h', i) ORDER BY i) FROM generate_series(1, 300) i))" \
    -c "SELECT count(*) FROM stream.publish('upg.text', 'hello', 'k')" \
    -c "SELECT count(*) FROM stream.publish('upg.bytes', '\\x00ff'::bytea)" \
    -c "SELECT stream.grant('upg.events', 'stream_upg_reader', 'consume')" >/dev/null)
ok $? "topics, messages and a grant on $oldest${out:+: $out}"
# wait (bounded) for the roller to have rolled at least one segment
for _ in $(seq 1 100); do
    segs=$(q $old "SELECT max(segments) FROM stream.partitions WHERE topic = 'upg.events'")
    [ "${segs:-0}" -gt 1 ] && break
    sleep 0.1
done
ok $([ "${segs:-0}" -gt 1 ]; echo $?) "a segment rolled before the upgrade ($segs segments)"
# the group consumes 100 messages and commits
got=$(q $old "SELECT count(*) FROM stream.poll('g', 'upg.events', 100)" -c "SELECT stream.commit('g', 'upg.events')" -c "SELECT stream.leave('g', 'upg.events')" | head -n 1)
is "$got" 100 "the group polled 100 messages and committed"
read_all="SELECT m.topic, m.partition, m.\"offset\", m.key, m.value, m.headers, m.published_at
          FROM stream.partitions p, stream.read_text(p.topic, p.partition, 0, 100000) m ORDER BY 1, 2, 3"
save $old "$tmp/msgs_before" "$read_all"
save $old "$tmp/offsets_before" "SELECT \"group\", topic, partition, committed_offset FROM stream.consumer_lag ORDER BY 1, 2, 3"

# --- the update -----------------------------------------------------------------------
out=$(q $old "ALTER EXTENSION stream UPDATE")
ok $? "ALTER EXTENSION stream UPDATE${out:+: $out}"
is "$(q $old "SELECT extversion FROM pg_extension WHERE extname = 'stream'")" "$default" "the installed version is $default"

# --- same objects as a fresh install ----------------------------------------------------
q $new "CREATE EXTENSION stream" >/dev/null
save $old "$tmp/upgraded" "\\i test/upgrade/describe.sql"
save $new "$tmp/fresh" "\\i test/upgrade/describe.sql"
if diff -u "$tmp/fresh" "$tmp/upgraded" >"$tmp/diff"; then
    ok 0 "the upgraded install has the same objects as a fresh one ($(grep -c '^member' "$tmp/fresh") members)"
else
    ok 1 "the upgraded install has the same objects as a fresh one"
    head -n 60 "$tmp/diff" | sed 's/^/# /'
fi

# --- the data still works -----------------------------------------------------------------
is "$(q $old "SELECT count(*) FROM stream.verify()")" 0 "stream.verify() finds nothing"
save $old "$tmp/msgs_after" "$read_all"
cmp -s "$tmp/msgs_before" "$tmp/msgs_after"; ok $? "every message reads back the same ($(wc -l <"$tmp/msgs_after") messages)"
save $old "$tmp/offsets_after" "SELECT \"group\", topic, partition, committed_offset FROM stream.consumer_lag ORDER BY 1, 2, 3"
cmp -s "$tmp/offsets_before" "$tmp/offsets_after"; ok $? "committed offsets are unchanged"
# a publish to each partition lands exactly at the old end offset
got=$(q $old "SELECT string_agg(format('%s/%s', p.partition, (SELECT \"offset\" FROM stream.publish('upg.events', '{\"after\": true}', partition => p.partition)) = p.end_offset), ' ' ORDER BY p.partition)
             FROM stream.partitions p WHERE p.topic = 'upg.events'")
is "$got" "0/t 1/t 2/t" "publishing continues at each partition's end offset"
# the group resumes exactly after its committed offsets: 300 - 100 + 3 new messages remain
got=$(q $old "SELECT count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM stream.consumer_lag l WHERE l.\"group\" = 'g' AND l.topic = 'upg.events' AND l.partition = m.partition AND l.committed_offset > m.\"offset\")), count(*)
             FROM stream.poll('g', 'upg.events', 1000) m")
is "$got" "203|203" "the group resumes from its committed offsets"
got=$(q $old "SET ROLE stream_upg_reader; SELECT count(*) FROM stream.read('upg.events', 0, 0, 1); SELECT stream.publish('upg.events', '{}')" 2>&1 | tr '\n' ' ')
case $got in *"permission denied"*) ok 0 "the grant still holds (consume yes, publish no)";;
            *) ok 1 "the grant still holds (consume yes, publish no)"; echo "# $got";; esac
