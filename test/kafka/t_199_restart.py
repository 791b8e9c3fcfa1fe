"""A server restart (pg_ctl restart -m fast): Kafka clients reconnect by themselves,
group consumers resume from their committed offsets and produce continues at the end.

Before: ten messages on a 2-partition topic; a confluent producer P (kept) produces
"pre" to partition 0; consumer L (group k1_rs_live, kept open across the restart)
drains all 11 and commits; group k1_rs consumes 6, commits and closes.
After the restart (the listener answers again): a new k1_rs consumer gets exactly
the 5 that were not committed; P produces "post" to partition 0 and its delivery
report names offset 6 (the end), read back from SQL; L, which never closed, gets
"post" and nothing it had committed; consumer_lag shows both groups at the end.
Runs last in the suite: the whole server restarts."""
import psycopg
from confluent_kafka import KafkaException, TopicPartition

from kafka_util import TAP, ck_consumer, ck_drain, ck_produce, ck_producer, connect, create_topic, drop_all, \
    group_lag, pg_ctl, setup, sql_rows, wait_serving, wait_until

t = TAP()
admin = setup(t)
T = "k1_restart"
try:
    create_topic(admin, T, 2, value_type="text")
    for i in range(10):
        admin.execute("SELECT stream.publish(%s, %s::text, partition => %s)", (T, "r%d" % i, i % 2))
    p = ck_producer()
    res = ck_produce(p, T, [(None, b"pre", None, 0)])
    t.is_(res[0], (None, 0, 5), "P: 'pre' delivered at partition 0 offset 5")

    conf = {"auto.offset.reset": "earliest", "enable.partition.eof": False, "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 500, "reconnect.backoff.max.ms": 1000}
    live = ck_consumer(**dict(conf, **{"group.id": "k1_rs_live"}))
    live.subscribe([T])
    msgs, _ = ck_drain(live, want=11, timeout=60)
    t.is_(len(msgs), 11, "L drained all 11")
    live.commit(asynchronous=False)

    g = ck_consumer(**dict(conf, **{"group.id": "k1_rs"}))
    g.subscribe([T])
    first, _ = ck_drain(g, want=6, timeout=60)
    first = first[:6]
    offs = {}
    for m in first:
        offs[m.partition()] = max(offs.get(m.partition(), -1), m.offset())
    g.commit(offsets=[TopicPartition(T, q, o + 1) for q, o in offs.items()], asynchronous=False)
    g.close()
    before = group_lag(admin, "k1_rs", T)
    t.is_({q: c for q, (c, _, _) in before.items() if c is not None}, {q: o + 1 for q, o in offs.items()},
          "consumer_lag: k1_rs committed after the 6 it consumed")

    admin.close()
    pg_ctl("restart", "-m", "fast")
    wait_serving(120)
    t.ok(True, "the listener answers again after pg_ctl restart")

    def reconnect():
        try:
            return connect()
        except psycopg.OperationalError:
            return None
    admin = wait_until(reconnect, 60, what="the server to accept connections")

    g = ck_consumer(**dict(conf, **{"group.id": "k1_rs"}))
    g.subscribe([T])
    rest, _ = ck_drain(g, want=5, timeout=90)
    seen = {(m.partition(), m.offset()) for m in first}
    allk = {(q, o) for q in range(2) for o in range(6 if q == 0 else 5)}
    t.is_(sorted((m.partition(), m.offset()) for m in rest), sorted(allk - seen),
          "k1_rs after the restart: exactly the 5 it had not committed")
    g.commit(asynchronous=False)
    g.close()

    res = ck_produce(p, T, [(None, b"post", None, 0)], timeout=90)
    t.is_(res[0], (None, 0, 6), "P (same producer object) after the restart: 'post' at partition 0 offset 6")
    t.is_([(o, v) for o, _, v, _ in sql_rows(admin, T, 0, 5, fn="read_text")], [(5, "pre"), (6, "post")],
          "SQL: 'pre' and 'post' at 5 and 6")

    got = []

    def live_has_post():
        m = live.poll(0.2)
        if m is not None and not m.error():
            got.append((m.partition(), m.offset(), m.value().decode()))
        return any(v == "post" for _, _, v in got)
    wait_until(live_has_post, 90, 0, what="L to get 'post'")
    # The group coordinator's members live in the listener's memory: after the restart
    # L's member id is unknown until librdkafka rejoins, so a commit may fail with
    # UNKNOWN_MEMBER_ID meanwhile; L retries, polling (which rejoins).  'post' may then
    # come again (it was not committed: at-least-once), nothing committed before may.
    def committed():
        m = live.poll(0.2)
        if m is not None and not m.error():
            got.append((m.partition(), m.offset(), m.value().decode()))
        try:
            live.commit(offsets=[TopicPartition(T, 0, 7), TopicPartition(T, 1, 5)], asynchronous=False)
            return True
        except KafkaException as e:
            t.diag("L's commit: %s" % e)
            return False
    wait_until(committed, 90, 0, what="L's commit after the restart")
    t.is_(sorted(set(got)), [(0, 6, "post")], "L (open across the restart) gets 'post' and nothing it had committed")
    live.close()
    t.is_(group_lag(admin, "k1_rs_live", T), {0: (7, 7, 0), 1: (5, 5, 0)}, "consumer_lag: k1_rs_live at the end")
    t.is_(group_lag(admin, "k1_rs", T), {0: (6, 7, 1), 1: (5, 5, 0)},
          "consumer_lag: k1_rs at the end of what it read before 'post'")
finally:
    try:
        drop_all(admin)
    except psycopg.Error:
        drop_all(connect())
t.exit()
