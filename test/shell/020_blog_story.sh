#!/usr/bin/env bash
# The blog story (examples/blog) at a small size: 500 posts, 4 writers with rolled-back
# transactions, 2 workers per group, one SIGKILLed halfway and replaced. It must end with
# "consistent" and exit 0, and the tables must agree when checked here in SQL too.
# Then the worker on its own: it reconnects when its backend is terminated, resumes from
# the committed offsets, and leaves and exits 0 on SIGTERM; and the story's check fails
# when a counter is wrong.
# Runs in its own database, stream_blog_test, on the cluster of PGHOST/PGPORT/PGUSER
# (scripts/test.sh exports them; without them, the private cluster of scripts/lib.sh).
set -uo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/../../scripts/lib.sh"
[ -n "${PGPORT:-}" ] || stream_env
export PGHOST=${PGHOST:-127.0.0.1} PGUSER=${PGUSER:-postgres} PGDATABASE=stream_blog_test
story=$STREAM_ROOT/examples/blog/run.sh
worker=$STREAM_ROOT/examples/blog/worker.py
psql=("$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1)
tmp=$(mktemp -d /tmp/stream-blog-test.XXXXXX)
worker_pid=
cleanup() {
    [ -z "$worker_pid" ] || kill -9 "$worker_pid" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

n=0 failed=0
ok() {  # ok STATUS DESCRIPTION: a TAP line; returns STATUS
    n=$((n + 1))
    if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; failed=$((failed + 1)); fi
    return "$1"
}
diag() { sed 's/^/# /' "$@"; }
bail() { echo "Bail out! $*"; exit 1; }
q() { "${psql[@]}" -c "$1"; }
# wait_for SECONDS SQL: until the query returns t
wait_for() {
    local deadline=$((SECONDS + $1))
    while [ "$(q "$2")" != t ]; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.1
    done
}

echo "1..12"

"${psql[@]}" -d postgres -c "SET client_min_messages = warning" \
    -c "DROP DATABASE IF EXISTS stream_blog_test WITH (FORCE)" -c "CREATE DATABASE stream_blog_test" ||
    bail "cannot create database stream_blog_test"
q "CREATE EXTENSION stream" || bail "CREATE EXTENSION stream failed"

# 1-4: the story
rc=0
BLOG_POSTS=500 BLOG_TIMEOUT=60 "$story" >"$tmp/story.out" 2>&1 || rc=$?
ok $rc "the story exits 0"
[ "$(tail -n 1 "$tmp/story.out")" = consistent ]
ok $? "its last line is 'consistent'"
grep -q '^  the kill:  SIGKILL of search-1 .*search-3 had its share' "$tmp/story.out"
ok $? "one worker was SIGKILLed halfway and a replacement took its share"
grep -q '^  writers:   500 posts in .* [1-9][0-9,]* transactions rolled back on purpose' "$tmp/story.out"
ok $? "writers published 500 posts and rolled some transactions back"
[ $failed -eq 0 ] || diag "$tmp/story.out"

# 5-7: the tables, checked here without the story's code
r=$(q "SELECT count(*) > 0 AND count(*) = (SELECT count(*) FROM blog_search)
              AND NOT EXISTS (SELECT FROM blogs b FULL JOIN blog_search s ON s.blog_id = b.id
                              WHERE s.blog_id IS NULL OR b.id IS NULL OR s.title <> b.title
                                 OR s.document <> to_tsvector('english', b.title || ' ' || b.body))
       FROM blogs")
[ "$r" = t ]; ok $? "blog_search has exactly the posts of blogs, with their text vectors"
r=$(q "SELECT count(*) = 0 FROM users u
       WHERE total_blogs <> (SELECT count(*) FROM blogs b WHERE b.author_id = u.id)")
[ "$r" = t ]; ok $? "every author's total_blogs is the number of their posts"
r=$(q "SELECT count(*) = 8 AND bool_and(lag = 0 AND owner_pid IS NULL)
       FROM stream.consumer_lag WHERE topic = 'blog_published'")
[ "$r" = t ]; ok $? "both groups committed every partition to its end and left"

# 8: the story's own check agrees
"$story" --check >"$tmp/check.out" 2>&1
ok $? "run.sh --check finds the database consistent" || diag "$tmp/check.out"

# 9-11: a worker counts a new post, loses its backend to pg_terminate_backend,
# reconnects and resumes from its committed offsets: the next post is counted, nothing
# is counted twice; on SIGTERM it leaves the group and exits 0
f0=$failed
"$worker" --group counter --name t-counter 2>"$tmp/worker.log" &
worker_pid=$!
backend_sql="SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'blog-t-counter'"
owns_all="SELECT count(*) = 4 FROM stream.consumer_lag WHERE \"group\" = 'counter' AND owner_pid = ($backend_sql)"
before=$(q "SELECT total_blogs FROM users WHERE id = 1")
wait_for 30 "$owns_all" || echo "# the worker did not take the 4 partitions"
q "INSERT INTO blogs (author_id, title, body) VALUES (1, 'Before the reconnect', 'counted once')"
wait_for 30 "SELECT total_blogs = $before + 1 FROM users WHERE id = 1" || echo "# post 1 not counted"
first=$(q "$backend_sql")
q "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'blog-t-counter'" >/dev/null
wait_for 30 "$owns_all AND ($backend_sql) <> ${first:-0}" || echo "# the worker did not come back"
q "INSERT INTO blogs (author_id, title, body) VALUES (1, 'After the reconnect', 'counted once too')"
wait_for 30 "SELECT total_blogs = $before + 2 FROM users WHERE id = 1" || echo "# post 2 not counted"
grep -q 'connection lost' "$tmp/worker.log"
ok $? "the worker reconnects after pg_terminate_backend and goes on counting"
kill -TERM "$worker_pid"
rc=0
for _ in $(seq 1 300); do kill -0 "$worker_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$worker_pid" 2>/dev/null; then rc=timeout; else wait "$worker_pid" || rc=$?; fi
worker_pid=
[ "$rc" = 0 ]; ok $? "on SIGTERM it exits 0 (status: $rc)"
r=$(q "SELECT (SELECT total_blogs FROM users WHERE id = 1) = $before + 2
              AND NOT EXISTS (SELECT FROM stream.consumer_lag
                              WHERE \"group\" = 'counter' AND (owner_pid IS NOT NULL OR lag <> 0))")
[ "$r" = t ]; ok $? "each post counted once, every offset committed, partitions given back"
[ $failed -eq $f0 ] || diag "$tmp/worker.log"

# 12: the story's check fails when a counter is wrong
q "UPDATE users SET total_blogs = total_blogs + 1 WHERE id = 2"
rc=0
"$story" --check >"$tmp/check.out" 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -q 'author 2: total_blogs' "$tmp/check.out"
ok $? "run.sh --check exits 1 and names the author whose counter is wrong" || diag "$tmp/check.out"

if [ $failed -eq 0 ]; then
    "${psql[@]}" -d postgres -c "DROP DATABASE stream_blog_test WITH (FORCE)"
fi
