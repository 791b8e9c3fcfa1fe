#!/usr/bin/env bash
# bench/scale.sh: performance at scale (issue 8). Builds and installs the extension,
# starts the private cluster (as scripts/test.sh and bench/run.sh do), then runs
# bench/scale.py with the arguments given (see its --help: sections topics, poll, size,
# retained, groups, concurrency; --quick for a smoke run). The output also goes to
# bench/results/scale-<UTC time>.txt and scale-latest.txt; every run's figures to
# bench/results/scale.json (per section: a section run replaces its previous figures);
# plots to bench/plots/scale-*.png.
#
#   bash bench/scale.sh                           # topics,poll,size,groups,concurrency
#   bash bench/scale.sh --quick                   # smoke run, a few minutes
#   bash bench/scale.sh --only retained --retained 10000000
#   bash bench/scale.sh report                    # tables and plots from scale.json
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/../scripts/lib.sh"
cd "$STREAM_ROOT"

ensure_packages
# the plots; perf for the profile of section concurrency
for p in python3-matplotlib linux-perf; do
    dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' ||
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p" ||
        note "could not install $p"
done
if [ "${1:-}" = report ]; then
    exec /usr/bin/python3 bench/scale.py "$@"
fi
build_install || die "build failed"
ensure_cluster
# make install replaces stream.so even when unchanged (ensure_cluster then keeps the
# server running): the server maps a deleted file, whose symbols perf cannot read.
pm=$(as_pg head -n 1 "$STREAM_PGDATA/postmaster.pid")
if grep -q 'stream\.so (deleted)' "/proc/$pm/maps" 2>/dev/null; then
    note "== restarting PostgreSQL (it maps a replaced stream.so; perf needs the current file)"
    pg_ctl -w -m fast restart >/dev/null
fi
mkdir -p bench/results
# one log per invocation (sections are often run separately), scale-latest.txt the last
log=bench/results/scale-$(date -u +%Y%m%d-%H%M%S).txt
echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src sql 2>/dev/null || echo ' (src/sql modified)')" \
    | tee "$log"
/usr/bin/python3 bench/scale.py "$@" 2>&1 | tee -a "$log"
status=${PIPESTATUS[0]}
cp "$log" bench/results/scale-latest.txt
exit "$status"
