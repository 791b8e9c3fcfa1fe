#!/usr/bin/env bash
# The blog story: a trigger publishes every post, two consumer groups (search, counter)
# keep their tables in step, one worker is SIGKILLed halfway, and at the end both tables
# are checked against blogs ("consistent", exit 0). See examples/blog/README.md.
# Connection: the libpq environment (PGHOST, PGPORT, PGUSER, PGDATABASE); scripts/demo.sh
# sets it for the private cluster. Size: BLOG_POSTS, BLOG_WRITERS, BLOG_WORKERS.
set -euo pipefail
exec /usr/bin/python3 "$(dirname "$0")/story.py" "$@"
