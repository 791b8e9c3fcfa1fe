"""Metadata as three real clients list it: kcat -L, confluent_kafka's AdminClient
(librdkafka) and kafka-python.  Each must show the topics the SQL side created, with
their partition counts, partition leader 0, and a single broker 0 at the advertised
127.0.0.1:$STREAM_KAFKA_PORT; a topic asked for by name that does not exist comes back
with UNKNOWN_TOPIC_OR_PARTITION; a partition added with stream.alter_topic shows up.
Also checks the ApiVersions answer advertises the versions of issue 9 and not
InitProducerId."""
import json

from kafka_util import BOOT, KPORT, TAP, api_versions, create_topic, drop_all, kcat, raw_connect, setup
from lib import kafka_node_id  # noqa: E402 (kafka_util puts test/multi on the path)

t = TAP()
admin = setup(t)
NODE = kafka_node_id(admin)
TOPICS = {"k1_meta_a": 1, "k1_meta_b": 3, "k1_meta_c": 8}
try:
    for name, n in TOPICS.items():
        create_topic(admin, name, n, value_type="jsonb")

    # ---- ApiVersions, raw ----
    with raw_connect() as s:
        apis = api_versions(s)
    want = {0: (3, 7), 1: (4, 5), 2: (1, 2), 3: (0, 4), 8: (2, 7), 9: (1, 5), 10: (0, 2),
            11: (0, 5), 12: (0, 3), 13: (0, 1), 14: (0, 3), 18: (0, 3)}
    for k, (lo, hi) in sorted(want.items()):
        got = apis.get(k)
        t.ok(got is not None and got[0] <= lo and got[1] >= hi,
             "ApiVersions advertises api %d covering %d..%d (got %s)" % (k, lo, hi, got))
    t.ok(22 not in apis, "InitProducerId (22) is not advertised")

    # ---- kcat -L ----
    r = kcat(["-L", "-J"], timeout=30)
    t.is_(r.returncode, 0, "kcat -L -J exits 0")
    md = json.loads(r.stdout) if r.returncode == 0 else {}
    brokers = [(b["id"], b["name"]) for b in md.get("brokers", [])]
    t.is_(brokers, [(NODE, BOOT)], "kcat -L: one broker, id %d (the server's timeline), at %s" % (NODE, BOOT))
    ktopics = {tp["topic"]: tp for tp in md.get("topics", [])}
    for name, n in TOPICS.items():
        parts = ktopics.get(name, {}).get("partitions", [])
        t.is_(sorted(p["partition"] for p in parts), list(range(n)), "kcat -L: %s has partitions 0..%d" % (name, n - 1))
        t.ok(parts and all(p.get("leader") == NODE for p in parts), "kcat -L: %s led by the broker" % name)
    t.ok(not [n for n in ktopics if n.startswith("k1_") and n not in TOPICS],
         "kcat -L lists no other k1_ topic")

    r = kcat(["-L", "-J", "-t", "k1_meta_b"], timeout=30)
    md = json.loads(r.stdout) if r.returncode == 0 else {}
    t.is_([(x["topic"], len(x["partitions"])) for x in md.get("topics", [])], [("k1_meta_b", 3)],
          "kcat -L -t k1_meta_b: only that topic, 3 partitions")

    # ---- confluent AdminClient ----
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import AdminClient
    ac = AdminClient({"bootstrap.servers": BOOT, "broker.address.family": "v4"})
    cm = ac.list_topics(timeout=15)
    t.is_([(b.id, b.host, b.port) for b in cm.brokers.values()], [(NODE, "127.0.0.1", KPORT)],
          "AdminClient.list_topics: the broker at 127.0.0.1:%d" % KPORT)
    for name, n in TOPICS.items():
        tm = cm.topics.get(name)
        t.ok(tm is not None and tm.error is None and sorted(tm.partitions) == list(range(n))
             and all(p.leader == NODE and p.replicas == [NODE] and p.isrs == [NODE]
                 for p in tm.partitions.values()),
             "AdminClient.list_topics: %s, %d partitions, leader/replicas/isrs = the broker" % (name, n))
    cm = ac.list_topics(topic="k1_meta_nosuch", timeout=15)
    tm = cm.topics.get("k1_meta_nosuch")
    t.ok(tm is not None and tm.error is not None and tm.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART,
         "AdminClient.list_topics(unknown topic): UNKNOWN_TOPIC_OR_PART (%s)" % (tm.error if tm else None))

    # ---- kafka-python ----
    from kafka import KafkaAdminClient, KafkaConsumer
    kc = KafkaConsumer(bootstrap_servers=BOOT, api_version_auto_timeout_ms=10000, request_timeout_ms=20000)
    try:
        topics = kc.topics()
        t.ok(set(TOPICS) <= topics, "kafka-python KafkaConsumer.topics() lists the k1_meta_* topics")
        for name, n in TOPICS.items():
            t.is_(kc.partitions_for_topic(name), set(range(n)), "kafka-python: partitions_for_topic(%s)" % name)
        t.is_(kc.partitions_for_topic("k1_meta_nosuch"), None, "kafka-python: unknown topic has no partitions")
    finally:
        kc.close()
    ka = KafkaAdminClient(bootstrap_servers=BOOT, api_version_auto_timeout_ms=10000, request_timeout_ms=20000)
    try:
        cl = ka.describe_cluster()
        t.is_([(b["node_id"], b["host"], b["port"]) for b in cl["brokers"]], [(NODE, "127.0.0.1", KPORT)],
              "kafka-python KafkaAdminClient.describe_cluster: the broker")
        t.is_(cl.get("controller_id"), NODE, "kafka-python: the controller is the broker")
        desc = {d["topic"]: d for d in ka.describe_topics(list(TOPICS))}
        t.is_({k: (v["error_code"], len(v["partitions"])) for k, v in desc.items()},
              {k: (0, n) for k, n in TOPICS.items()}, "kafka-python describe_topics: no error, partition counts")

        # a partition added from SQL is seen by a fresh metadata request
        admin.execute("SELECT stream.alter_topic('k1_meta_b', partitions => 5)")
        desc = {d["topic"]: d for d in ka.describe_topics(["k1_meta_b"])}
        t.is_(len(desc["k1_meta_b"]["partitions"]), 5, "kafka-python: k1_meta_b has 5 partitions after alter_topic")
    finally:
        ka.close()
    r = kcat(["-L", "-J", "-t", "k1_meta_b"], timeout=30)
    md = json.loads(r.stdout) if r.returncode == 0 else {}
    t.is_([len(x["partitions"]) for x in md.get("topics", [])], [5], "kcat -L: k1_meta_b has 5 partitions after alter_topic")

    # a topic dropped from SQL disappears
    admin.execute("SELECT stream.drop_topic('k1_meta_c')")
    cm = ac.list_topics(timeout=15)
    t.ok("k1_meta_c" not in cm.topics, "AdminClient: a dropped topic is no longer listed")
finally:
    drop_all(admin)
t.exit()
