"""Segment rolls do not flush the sessions' topic caches (only changes of stream._topics
and stream._acl do): a publisher's next publish after another topic rolled reads no
catalog row, while after alter_topic it does, and sees the new partition count. The
reads of stream._topics are counted with pg_stat_xact_user_tables.
"""
from lib import TAP, connect, wait_until

t = TAP()
admin = connect()
pub = connect()
for name in ("cr_x", "cr_y"):
    admin.execute("SELECT stream.drop_topic(%s, true)", (name,))
admin.execute("SELECT stream.create_topic('cr_x')")
admin.execute("SELECT stream.create_topic('cr_y', segment_bytes => 8192)")

SCANS = ("SELECT coalesce(sum(coalesce(seq_scan, 0) + coalesce(idx_scan, 0)), 0) "
         "FROM pg_stat_xact_user_tables WHERE relid = 'stream._topics'::regclass")


def topic_reads_of_publish(partition=None):
    """Publish to cr_x in a transaction; return how many times it read stream._topics."""
    pub.execute("BEGIN")
    base = pub.execute(SCANS).fetchone()[0]
    pub.execute("SELECT stream.publish('cr_x', '{}', partition => %s)", (partition,))
    n = pub.execute(SCANS).fetchone()[0] - base
    pub.execute("COMMIT")
    return n


pub.execute("SELECT stream.publish('cr_x', '{}')")   # warm the cache
t.is_(topic_reads_of_publish(), 0, "a publish with a warm cache reads no catalog row")

segs = lambda: admin.execute("SELECT segments FROM stream.partitions WHERE topic = 'cr_y'").fetchone()[0]
before = segs()
admin.execute("SELECT count(*) FROM stream.publish_batch('cr_y', (SELECT array_agg(jsonb_build_object('pad', repeat('x', 500))) FROM generate_series(1, 40)))")
admin.execute("SELECT stream.publish('cr_y', '{}')")
wait_until(lambda: segs() > before, what="cr_y to roll")
t.ok(segs() > before, "another topic rolled a segment")
t.is_(topic_reads_of_publish(), 0, "the next publish still reads no catalog row (the roll did not flush the cache)")

admin.execute("SELECT stream.alter_topic('cr_x', partitions => 2)")
t.ok(topic_reads_of_publish(partition=1) >= 1, "after alter_topic the publish reloads the topic and sees partition 1")

for name in ("cr_x", "cr_y"):
    admin.execute("SELECT stream.drop_topic(%s)", (name,))
t.exit()
