/*
 * kafka_bench.c: a librdkafka producer and consumer for bench/kafka.sh.
 *
 *   kafka_bench produce BROKER TOPIC MESSAGES SIZE
 *       Produces MESSAGES values of SIZE bytes (no key: librdkafka's default
 *       partitioner spreads them) with acks=1 and librdkafka's default batching,
 *       waits until every one is acknowledged, and prints
 *       "<seconds> <messages> <payload bytes>" (from the first produce call to the
 *       last delivery report).  Exits 1 if a delivery failed.
 *
 *   kafka_bench consume BROKER TOPIC PARTITIONS MESSAGES
 *       Assigns partitions 0..PARTITIONS-1 at offset 0 (no group, no
 *       commits) and consumes until MESSAGES messages arrived; prints the same
 *       line (from the assign to the last message).
 *
 * Built by bench/kafka.sh:  cc -O2 -o ... bench/kafka_bench.c -lrdkafka
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

static long delivered;
static long failed;

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
die(const char *what, const char *detail)
{
	fprintf(stderr, "kafka_bench: %s: %s\n", what, detail);
	exit(1);
}

static void
set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
	char		err[512];

	if (rd_kafka_conf_set(conf, name, value, err, sizeof(err)) != RD_KAFKA_CONF_OK)
		die(name, err);
}

static void
dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	if (m->err)
	{
		if (failed++ == 0)
			fprintf(stderr, "kafka_bench: delivery failed: %s\n", rd_kafka_err2str(m->err));
	}
	else
		delivered++;
}

static int
produce(const char *broker, const char *topic, long n, int size)
{
	char		err[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk;
	char	   *buf = malloc(size);
	double		t0;
	long		i;

	set(conf, "bootstrap.servers", broker);
	set(conf, "acks", "1");
	set(conf, "queue.buffering.max.messages", "1000000");
	rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
	if (!(rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err))))
		die("rd_kafka_new", err);
	for (i = 0; i < size; i++)
		buf[i] = 'a' + i % 26;

	t0 = now();
	for (i = 0; i < n; i++)
	{
		rd_kafka_resp_err_t e;

		/* vary the first bytes so that rows differ */
		snprintf(buf, size < 12 ? size : 12, "%011ld", i);
		while ((e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
									  RD_KAFKA_V_VALUE(buf, size),
									  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
									  RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
			rd_kafka_poll(rk, 10);
		if (e)
			die("produce", rd_kafka_err2str(e));
		rd_kafka_poll(rk, 0);
	}
	rd_kafka_flush(rk, 120 * 1000);
	printf("%.6f %ld %ld\n", now() - t0, delivered, delivered * (long) size);
	rd_kafka_destroy(rk);
	free(buf);
	return (failed || delivered != n) ? 1 : 0;
}

static int
consume(const char *broker, const char *topic, int partitions, long n)
{
	char		err[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk;
	rd_kafka_topic_partition_list_t *tps;
	long		got = 0,
				bytes = 0;
	double		t0,
				t1,
				deadline;
	int			p;

	set(conf, "bootstrap.servers", broker);
	set(conf, "group.id", "k1_bench_unused");
	set(conf, "enable.auto.commit", "false");
	if (!(rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err))))
		die("rd_kafka_new", err);
	tps = rd_kafka_topic_partition_list_new(partitions);
	for (p = 0; p < partitions; p++)
		rd_kafka_topic_partition_list_add(tps, topic, p)->offset = 0;	/* fresh topics: the log starts at 0 */

	t0 = t1 = now();
	deadline = t0 + 120;
	if (rd_kafka_assign(rk, tps))
		die("assign", "failed");
	while (got < n && now() < deadline)
	{
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);

		if (!m)
			continue;
		if (m->err)
			fprintf(stderr, "kafka_bench: consumer: %s\n", rd_kafka_message_errstr(m));
		else
		{
			got++;
			bytes += m->len;
			t1 = now();
		}
		rd_kafka_message_destroy(m);
	}
	printf("%.6f %ld %ld\n", t1 - t0, got, bytes);
	rd_kafka_topic_partition_list_destroy(tps);
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	return got == n ? 0 : 1;
}

int
main(int argc, char **argv)
{
	if (argc == 6 && strcmp(argv[1], "produce") == 0)
		return produce(argv[2], argv[3], atol(argv[4]), atoi(argv[5]));
	if (argc == 6 && strcmp(argv[1], "consume") == 0)
		return consume(argv[2], argv[3], atoi(argv[4]), atol(argv[5]));
	fprintf(stderr, "usage: kafka_bench produce BROKER TOPIC MESSAGES SIZE\n"
			"       kafka_bench consume BROKER TOPIC PARTITIONS MESSAGES\n");
	return 2;
}
