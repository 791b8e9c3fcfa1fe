/*-------------------------------------------------------------------------
 *
 * kafka_data.c
 *	  The data APIs of the Kafka listener: Metadata (v0-4), Produce (v3-7),
 *	  Fetch (v4-5) and ListOffsets (v1-2).
 *
 * Each handler runs in the listener's transaction for the request, as the
 * role stream.kafka_role, and calls the extension's C paths directly:
 * stream_append() to publish, stream_scan_partition() to read below the
 * LSO (Fetch encodes each row as the scan returns it), the offset helpers of offsets.c for ListOffsets.  The role gets
 * exactly its topic privileges: Metadata lists the topics it holds any
 * privilege on, Produce needs publish, Fetch and ListOffsets consume
 * (TOPIC_AUTHORIZATION_FAILED otherwise).  Topics are never created
 * implicitly: an unknown topic is UNKNOWN_TOPIC_OR_PARTITION.
 *
 * Produce.  Records go to the partition the client chose (its partitioner
 * decides, as with a Kafka broker).  Each partition of a request is written
 * in its own subtransaction, so a refused record refuses its whole
 * partition and nothing else: the other partitions of the request are
 * stored.  Keys are stored as text and must be UTF-8 without NUL bytes;
 * values are mapped to the topic's type (bytea: the bytes as they came;
 * text: UTF-8 checked; jsonb: parsed) and a NULL value is a NULL value.
 * Produce before v8 has no error message, so why a record was refused is
 * written to the server log (LOG).  The broker stamps records with its own
 * time (published_at): producers' timestamps are not kept, and the response
 * carries log_append_time -1.
 *
 * Record headers map to the jsonb headers column as an object, one member
 * per distinct header key, in a form that round-trips:
 *	  - a value that is UTF-8 text without NUL bytes: a JSON string;
 *	  - a null value: JSON null;
 *	  - any other value: {"base64": "<the bytes in base64>"};
 *	  - a key that occurs more than once: an array of those forms, in the
 *	    record's order.
 * No headers is SQL NULL.  Fetch maps back: string -> its UTF-8 bytes,
 * null -> null value, array -> one header per element, an object with the
 * single member "base64" holding a string -> the decoded bytes, anything
 * else (numbers, booleans, other objects, as SQL publishers may write) ->
 * its JSON text.  Header keys must be UTF-8 without NUL bytes.  The order
 * of distinct keys is jsonb's, not the producer's.
 *
 * Fetch returns, per partition, one uncompressed batch of the records from
 * fetch_offset below the LSO, bounded by partition_max_bytes and max_bytes
 * (a partition's first record ignores partition_max_bytes and the
 * response's first record ignores max_bytes, so a consumer always makes
 * progress).  The batch's baseOffset is fetch_offset and its
 * lastOffsetDelta covers everything the read went over, including offsets
 * of rolled-back publishes before the LSO: librdkafka and kafka-python
 * continue at baseOffset + lastOffsetDelta + 1 (the rule Kafka clients use
 * for compacted batches), so a consumer never re-fetches a rolled-back
 * tail.  When only rolled-back offsets lie between fetch_offset and the
 * LSO, the batch is empty (recordCount 0), as Kafka's are when compaction
 * removed every record of one; librdkafka moves past it.  kafka-python
 * 2.0.2 raises IndexError on such a batch, so clients whose id starts with
 * "kafka-python" get no batch there: they wait at the gap until the next
 * message is published, whose batch then starts at the gap.  Values of jsonb topics are sent as their
 * text form.  When less than min_bytes is available the request parks:
 * it registers a wait on each of its partitions (the shared-memory signal
 * that wakes SQL long polls) and asks to be called again at its deadline;
 * then re-checks the LSO so that a commit between the read and the
 * registration is not missed.
 *
 * ListOffsets: -2 is the log start; -1 the latest stable position, for
 * both isolation levels (stream never returns records above the LSO, and a
 * consumer placed at the end offset above an open transaction's offsets
 * would skip them when they commit); a timestamp gives the first offset
 * published at or after it (the latest position when none is).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/tupdesc.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "common/base64.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "kafka.h"
#include "kafka_records.h"
#include "lso.h"
#include "offsets.h"
#include "privileges.h"
#include "read.h"
#include "storage.h"
#include "stream.h"
#include "topic.h"

/* A Fetch that could not register its waits polls at this interval. */
#define FETCH_FALLBACK_POLL_MS 100

/* Microseconds between the Unix epoch and PostgreSQL's. */
#define UNIX_TO_PG_EPOCH_USECS \
	((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY)

static int64
timestamptz_to_ms(TimestampTz ts)
{
	int64		us = ts + UNIX_TO_PG_EPOCH_USECS;

	/* floor division: times before 1970 stay ordered */
	return (us >= 0) ? us / 1000 : -((-us + 999) / 1000);
}

static TimestampTz
ms_to_timestamptz(int64 ms)
{
	return ms * 1000 - UNIX_TO_PG_EPOCH_USECS;
}

StreamTopic *
kafka_find_topic(const char *name, int priv, int16 *error)
{
	StreamTopic *topic = stream_topic_find_cstr(name);

	if (topic == NULL)
		*error = KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
	else if (!stream_has_privilege(topic, priv, GetUserId()))
	{
		*error = KAFKA_TOPIC_AUTHORIZATION_FAILED;
		topic = NULL;
	}
	else
		*error = KAFKA_NONE;
	return topic;
}

/*
 * First offset of a partition still retained, cheaply: the oldest
 * segment's recorded base, or 0 for a partition whose first segment never
 * rolled (only the segment made with the partition has no recorded base).
 */
static int64
log_start_offset(StreamTopic *topic, int32 partition)
{
	List	   *segments = stream_cached_segments(topic->topic_id, partition);
	int64		base = 0;

	if (segments != NIL && ((StreamSegment *) linitial(segments))->base_offset >= 0)
		base = ((StreamSegment *) linitial(segments))->base_offset;
	list_free_deep(segments);
	return base;
}

/* An array length where null counts as empty (Max() would read it twice). */
static int32
array_len(KafkaReader *r)
{
	int32		n = kr_array_len(r);

	return n < 0 ? 0 : n;
}

/* ================================================================
 * Metadata
 * ================================================================ */

/* Names of every topic, read as the extension (visibility checked later). */
static List *
all_topic_names(void)
{
	StreamInternalState internal;
	MemoryContext callercxt = CurrentMemoryContext;
	List	   *names = NIL;
	uint64		i;
	int			ret;

	stream_internal_begin(&internal);
	SPI_connect();
	ret = SPI_execute("SELECT topic FROM stream._topics ORDER BY topic", true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "stream: listing topics failed: %s", SPI_result_code_string(ret));
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		MemoryContext spicxt = MemoryContextSwitchTo(callercxt);

		/* the list must outlive SPI_finish too */
		names = lappend(names, pstrdup(name));
		MemoryContextSwitchTo(spicxt);
	}
	SPI_finish();
	stream_internal_end(&internal);
	return names;
}

/* Write the response up to and including the brokers and controller. */
static void
metadata_header(KafkaRequest *req, StringInfo out)
{
	int16		v = req->api_version;

	if (v >= 3)
		kw_int32(out, 0);		/* throttle_time_ms */
	kw_int32(out, 1);			/* brokers: just this one */
	kw_int32(out, KAFKA_NODE_ID);
	kw_string(out, kafka_advertised_host());
	kw_int32(out, kafka_advertised_port());
	if (v >= 1)
		kw_string(out, NULL);	/* rack */
	if (v >= 2)
	{
		char		cluster_id[64];

		snprintf(cluster_id, sizeof(cluster_id), "stream-" UINT64_FORMAT,
				 GetSystemIdentifier());
		kw_string(out, cluster_id);
	}
	if (v >= 1)
		kw_int32(out, KAFKA_NODE_ID);	/* controller_id */
}

static void
metadata_topic(KafkaRequest *req, StringInfo out, const char *name, int16 error,
			   int32 partitions)
{
	int32		p;

	kw_int16(out, error);
	kw_string(out, name);
	if (req->api_version >= 1)
		kw_int8(out, 0);		/* is_internal */
	kw_int32(out, partitions);
	for (p = 0; p < partitions; p++)
	{
		kw_int16(out, KAFKA_NONE);
		kw_int32(out, p);
		kw_int32(out, KAFKA_NODE_ID);	/* leader */
		kw_int32(out, 1);		/* replicas */
		kw_int32(out, KAFKA_NODE_ID);
		kw_int32(out, 1);		/* isr */
		kw_int32(out, KAFKA_NODE_ID);
	}
}

/* Parse a Metadata request: the topic names, or all = true. */
static bool
metadata_parse(KafkaRequest *req, List **names, bool *all)
{
	KafkaReader r = req->body;
	int32		n = kr_array_len(&r);
	int32		i;

	*names = NIL;
	for (i = 0; i < n && !r.error; i++)
		*names = lappend(*names, kr_string(&r));
	if (req->api_version >= 4)
		(void) kr_int8(&r);		/* allow_auto_topic_creation: never */
	/* v0: an empty list means all topics; v1+: a null list does */
	*all = (n < 0) || (req->api_version == 0 && n == 0);
	return !r.error;
}

KafkaResult
kafka_metadata(KafkaRequest *req, StringInfo out, TimestampTz *wake_at)
{
	List	   *names;
	bool		all;
	ListCell   *lc;
	int			count_pos;
	int32		count = 0;

	if (!metadata_parse(req, &names, &all))
		return KAFKA_CLOSE;

	metadata_header(req, out);
	count_pos = kw_reserve_int32(out);
	if (all)
	{
		foreach(lc, all_topic_names())
		{
			const char *name = lfirst(lc);
			StreamTopic *topic;
			int16		error;

			/* dropped since it was listed, or not the role's to see: skip it */
			if ((topic = kafka_find_topic(name, STREAM_PRIV_ANY, &error)) == NULL)
				continue;
			metadata_topic(req, out, name, KAFKA_NONE, topic->partitions);
			count++;
		}
	}
	else
	{
		foreach(lc, names)
		{
			const char *name = lfirst(lc);
			StreamTopic *topic;
			int16		error;

			if (name == NULL || !stream_name_is_valid(name))
				metadata_topic(req, out, name ? name : "", KAFKA_INVALID_TOPIC_EXCEPTION, 0);
			else if ((topic = kafka_find_topic(name, STREAM_PRIV_ANY, &error)) == NULL)
				metadata_topic(req, out, name, error, 0);
			else
				metadata_topic(req, out, name, KAFKA_NONE, topic->partitions);
			count++;
		}
	}
	kw_patch_int32(out, count_pos, count);
	return KAFKA_RESPOND;
}

void
kafka_metadata_error(KafkaRequest *req, StringInfo out, int16 error)
{
	List	   *names;
	bool		all;
	ListCell   *lc;

	/* every requested topic with the error; none when all were asked for */
	if (!metadata_parse(req, &names, &all) || all)
		names = NIL;
	metadata_header(req, out);
	kw_int32(out, list_length(names));
	foreach(lc, names)
		metadata_topic(req, out, lfirst(lc) ? (const char *) lfirst(lc) : "", error, 0);
}

/* ================================================================
 * Produce
 * ================================================================ */

typedef struct ProducePartition
{
	int32		partition;
	const char *records;
	int32		records_len;
	int16		error;
	int64		base_offset;
	int64		log_start;
} ProducePartition;

typedef struct ProduceTopic
{
	char	   *name;
	int32		npartitions;
	ProducePartition *partitions;
} ProduceTopic;

typedef struct ProduceRequest
{
	char	   *transactional_id;
	int16		acks;
	int32		ntopics;
	ProduceTopic *topics;
} ProduceRequest;

static bool
produce_parse(KafkaRequest *req, ProduceRequest *pr)
{
	KafkaReader r = req->body;
	int32		t;

	pr->transactional_id = kr_string(&r);
	pr->acks = kr_int16(&r);
	(void) kr_int32(&r);		/* timeout_ms: writes are synchronous */
	pr->ntopics = array_len(&r);
	pr->topics = palloc0(sizeof(ProduceTopic) * Max(pr->ntopics, 1));
	for (t = 0; t < pr->ntopics && !r.error; t++)
	{
		ProduceTopic *pt = &pr->topics[t];
		int32		p;

		pt->name = kr_string(&r);
		pt->npartitions = array_len(&r);
		pt->partitions = palloc0(sizeof(ProducePartition) * Max(pt->npartitions, 1));
		for (p = 0; p < pt->npartitions && !r.error; p++)
		{
			ProducePartition *pp = &pt->partitions[p];

			pp->partition = kr_int32(&r);
			pp->records = kr_bytes(&r, &pp->records_len);
			pp->error = KAFKA_NONE;
			pp->base_offset = -1;
			pp->log_start = -1;
		}
	}
	if (r.error)
	{
		pr->ntopics = 0;
		return false;
	}
	return true;
}

static void
produce_response(KafkaRequest *req, StringInfo out, ProduceRequest *pr)
{
	int32		t;
	int32		p;

	kw_int32(out, pr->ntopics);
	for (t = 0; t < pr->ntopics; t++)
	{
		ProduceTopic *pt = &pr->topics[t];

		kw_string(out, pt->name ? pt->name : "");
		kw_int32(out, pt->npartitions);
		for (p = 0; p < pt->npartitions; p++)
		{
			ProducePartition *pp = &pt->partitions[p];

			kw_int32(out, pp->partition);
			kw_int16(out, pp->error);
			kw_int64(out, pp->base_offset);
			kw_int64(out, -1);	/* log_append_time: see the header comment */
			if (req->api_version >= 5)
				kw_int64(out, pp->log_start);
		}
	}
	kw_int32(out, 0);			/* throttle_time_ms */
}

/* Raise 22021 unless len bytes are UTF-8 without NUL; what names them. */
static void
check_utf8(const char *data, int32 len, const char *what, int index)
{
	if (!pg_verify_mbstr(PG_UTF8, data, len, true))
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("the %s of record %d is not UTF-8 text without NUL bytes", what, index)));
}

/* UTF-8 bytes (checked) as a NUL-terminated string in the server encoding. */
static char *
utf8_to_server(const char *data, int32 len)
{
	char	   *s = pg_any_to_server(data, len, PG_UTF8);

	if (s == data)
		s = pnstrdup(data, len);
	return s;
}

static void
append_header_value(StringInfo json, const KafkaHeader *h)
{
	if (h->value == NULL)
		appendStringInfoString(json, "null");
	else if (pg_verify_mbstr(PG_UTF8, h->value, h->value_len, true))
		escape_json(json, utf8_to_server(h->value, h->value_len));
	else
	{
		int			cap = pg_b64_enc_len(h->value_len) + 1;
		char	   *b64 = palloc(cap);
		int			n = pg_b64_encode(h->value, h->value_len, b64, cap);

		if (n < 0)
			elog(ERROR, "stream: base64 encoding of a header value failed");
		b64[n] = '\0';
		appendStringInfoString(json, "{\"base64\": ");
		escape_json(json, b64);
		appendStringInfoChar(json, '}');
	}
}

/* The jsonb headers of a record (see the header comment); NULL for none. */
static Datum
headers_to_jsonb(const KafkaRecord *rec, int index, bool *isnull)
{
	StringInfoData json;
	bool	   *done;
	int32		i;
	int32		j;

	*isnull = (rec->nheaders == 0);
	if (*isnull)
		return (Datum) 0;
	done = palloc0(sizeof(bool) * rec->nheaders);
	initStringInfo(&json);
	appendStringInfoChar(&json, '{');
	for (i = 0; i < rec->nheaders; i++)
	{
		const KafkaHeader *h = &rec->headers[i];
		int			dups = 0;

		if (done[i])
			continue;
		check_utf8(h->key, h->key_len, "header key", index);
		for (j = i + 1; j < rec->nheaders; j++)
			if (rec->headers[j].key_len == h->key_len &&
				memcmp(rec->headers[j].key, h->key, h->key_len) == 0)
				dups++;
		if (json.len > 1)
			appendStringInfoString(&json, ", ");
		escape_json(&json, utf8_to_server(h->key, h->key_len));
		appendStringInfoString(&json, ": ");
		if (dups == 0)
			append_header_value(&json, h);
		else
		{
			appendStringInfoChar(&json, '[');
			for (j = i; j < rec->nheaders; j++)
			{
				if (rec->headers[j].key_len != h->key_len ||
					memcmp(rec->headers[j].key, h->key, h->key_len) != 0)
					continue;
				if (j > i)
					appendStringInfoString(&json, ", ");
				append_header_value(&json, &rec->headers[j]);
				done[j] = true;
			}
			appendStringInfoChar(&json, ']');
		}
	}
	appendStringInfoChar(&json, '}');
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(json.data));
}

/* Convert a record into a message for the topic; raises on a bad record. */
static void
record_to_message(StreamTopic *topic, const KafkaRecord *rec, int index,
				  int32 partition, StreamMessage *m)
{
	int64		size = 0;

	memset(m, 0, sizeof(StreamMessage));
	m->partition = partition;

	m->key_null = (rec->key == NULL);
	if (!m->key_null)
	{
		check_utf8(rec->key, rec->key_len, "key", index);
		m->key = CStringGetTextDatum(utf8_to_server(rec->key, rec->key_len));
	}

	m->value_null = (rec->value == NULL);
	if (!m->value_null)
	{
		if (topic->value_type == BYTEAOID)
		{
			bytea	   *b = palloc(VARHDRSZ + rec->value_len);

			SET_VARSIZE(b, VARHDRSZ + rec->value_len);
			memcpy(VARDATA(b), rec->value, rec->value_len);
			m->value = PointerGetDatum(b);
		}
		else
		{
			char	   *s;

			check_utf8(rec->value, rec->value_len, "value", index);
			s = utf8_to_server(rec->value, rec->value_len);
			if (topic->value_type == TEXTOID)
				m->value = CStringGetTextDatum(s);
			else
				m->value = DirectFunctionCall1(jsonb_in, CStringGetDatum(s));
		}
	}

	m->headers = headers_to_jsonb(rec, index, &m->headers_null);

	/* the topic's limit, counted as stream.publish() counts it */
	size = stream_message_bytes(m);
	if (size > topic->max_message_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("record %d of " INT64_FORMAT " bytes exceeds the limit of topic \"%s\"",
						index, size, topic->name),
				 errdetail("The topic's max_message_bytes is %d; key, value and headers count.",
						   topic->max_message_bytes)));
}

/* Kafka's code for an error raised while storing a partition's records. */
static int16
produce_error_code(int sqlerrcode)
{
	switch (sqlerrcode)
	{
		case ERRCODE_PROGRAM_LIMIT_EXCEEDED:
			return KAFKA_MESSAGE_TOO_LARGE;
		case ERRCODE_INSUFFICIENT_PRIVILEGE:
			return KAFKA_TOPIC_AUTHORIZATION_FAILED;
		case ERRCODE_UNDEFINED_OBJECT:
			return KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
	}
	if (ERRCODE_TO_CATEGORY(sqlerrcode) == ERRCODE_DATA_EXCEPTION)
		return KAFKA_INVALID_RECORD;
	return KAFKA_KAFKA_STORAGE_ERROR;
}

/* Log why a partition's records were refused (Produce < v8 can't say). */
static void
produce_log_refusal(KafkaRequest *req, const char *topic, int32 partition,
					int16 error, const char *why, const char *detail)
{
	ereport(LOG,
			(errmsg("stream: kafka produce to topic \"%s\" partition %d refused with error %d: %s",
					topic, partition, error, why),
			 detail ? errdetail_internal("%s", detail) : 0,
			 errcontext("Kafka client \"%s\", connection %d",
						req->client_id ? req->client_id : "", req->conn_id)));
}

/* What store_records works on, and how far it got. */
typedef struct StoreRecords
{
	StreamTopic *topic;
	ProducePartition *pp;
	KafkaRecord *recs;
	int			nrecs;
	int			current;		/* record being converted, or -1 */
} StoreRecords;

/* Convert and append one partition's records (in a subtransaction). */
static void
store_records(void *arg)
{
	StoreRecords *sr = (StoreRecords *) arg;
	StreamMessage *msgs;
	int			i;

	stream_check_primary("Kafka Produce");
	msgs = palloc(sizeof(StreamMessage) * sr->nrecs);
	for (i = 0; i < sr->nrecs; i++)
	{
		sr->current = i;
		record_to_message(sr->topic, &sr->recs[i], i, sr->pp->partition, &msgs[i]);
		CHECK_FOR_INTERRUPTS();
	}
	sr->current = -1;
	stream_append(sr->topic, msgs, sr->nrecs);
	sr->pp->base_offset = msgs[0].offset;
}

/*
 * Store one partition's records in a subtransaction of its own; fill in
 * the partition's error code and base offset.
 */
static void
produce_partition(KafkaRequest *req, StreamTopic *topic, ProducePartition *pp)
{
	StoreRecords sr = {topic, pp, NULL, 0, -1};
	const char *why;
	int16		error;
	ErrorData  *edata;

	error = kafka_records_decode(pp->records, pp->records_len,
								 Max((int64) stream_kafka_max_request_bytes,
									 (int64) topic->max_message_bytes),
								 &sr.recs, &sr.nrecs, &why);
	if (error != KAFKA_NONE)
	{
		pp->error = error;
		produce_log_refusal(req, topic->name, pp->partition, error, why, NULL);
		return;
	}
	if (sr.nrecs == 0)
		return;

	if (kafka_in_subxact(store_records, &sr, &edata))
		return;
	pp->error = produce_error_code(edata->sqlerrcode);
	pp->base_offset = -1;
	produce_log_refusal(req, topic->name, pp->partition, pp->error,
						sr.current >= 0 ?
						psprintf("record %d of %d: %s", sr.current, sr.nrecs, edata->message) :
						edata->message,
						edata->detail);
	FreeErrorData(edata);
}

KafkaResult
kafka_produce(KafkaRequest *req, StringInfo out, TimestampTz *wake_at)
{
	ProduceRequest pr;
	int32		t;
	int32		p;
	int16		global_error = KAFKA_NONE;

	if (!produce_parse(req, &pr))
		return KAFKA_CLOSE;

	if (pr.acks != 0 && pr.acks != 1 && pr.acks != -1)
		global_error = KAFKA_INVALID_REQUIRED_ACKS;
	else if (pr.transactional_id != NULL)
	{
		/* transactions are not supported (InitProducerId is not served) */
		global_error = KAFKA_INVALID_REQUEST;
		ereport(LOG,
				(errmsg("stream: kafka produce with transactional id \"%s\" refused: transactions are not supported",
						pr.transactional_id)));
	}

	for (t = 0; t < pr.ntopics; t++)
	{
		ProduceTopic *pt = &pr.topics[t];
		StreamTopic *topic = NULL;
		int16		topic_error = global_error;

		if (topic_error == KAFKA_NONE)
		{
			topic = kafka_find_topic(pt->name, STREAM_PRIV_PUBLISH, &topic_error);
		}
		for (p = 0; p < pt->npartitions; p++)
		{
			ProducePartition *pp = &pt->partitions[p];

			if (topic_error != KAFKA_NONE)
				pp->error = topic_error;
			else if (pp->partition < 0 || pp->partition >= topic->partitions)
				pp->error = KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
			else
			{
				produce_partition(req, topic, pp);
				if (pp->error == KAFKA_NONE && req->api_version >= 5)
					pp->log_start = log_start_offset(topic, pp->partition);
			}
		}
	}

	if (pr.acks == 0)
		return KAFKA_NO_RESPONSE;
	produce_response(req, out, &pr);
	return KAFKA_RESPOND;
}

void
kafka_produce_error(KafkaRequest *req, StringInfo out, int16 error)
{
	ProduceRequest pr;
	int32		t;
	int32		p;

	(void) produce_parse(req, &pr);
	/* acks = 0: the client expects no answer, whatever happened */
	if (pr.acks == 0 && pr.ntopics > 0)
		return;
	for (t = 0; t < pr.ntopics; t++)
		for (p = 0; p < pr.topics[t].npartitions; p++)
		{
			pr.topics[t].partitions[p].error = error;
			pr.topics[t].partitions[p].base_offset = -1;
			pr.topics[t].partitions[p].log_start = -1;
		}
	produce_response(req, out, &pr);
}

/* ================================================================
 * Fetch
 * ================================================================ */

typedef struct FetchPartition
{
	int32		partition;
	int64		fetch_offset;
	int32		max_bytes;
	int16		error;
	int64		high_watermark;
	int64		lso;
	int64		log_start;
	StringInfoData records;
} FetchPartition;

typedef struct FetchTopic
{
	char	   *name;
	StreamTopic *topic;
	int32		npartitions;
	FetchPartition *partitions;
} FetchTopic;

typedef struct FetchRequest
{
	int32		max_wait_ms;
	int32		min_bytes;
	int32		max_bytes;
	int8		isolation;
	int32		ntopics;
	FetchTopic *topics;
} FetchRequest;

static bool
fetch_parse(KafkaRequest *req, FetchRequest *fr)
{
	KafkaReader r = req->body;
	int32		t;

	(void) kr_int32(&r);		/* replica_id */
	fr->max_wait_ms = kr_int32(&r);
	fr->min_bytes = kr_int32(&r);
	fr->max_bytes = kr_int32(&r);
	fr->isolation = kr_int8(&r);
	fr->ntopics = array_len(&r);
	fr->topics = palloc0(sizeof(FetchTopic) * Max(fr->ntopics, 1));
	for (t = 0; t < fr->ntopics && !r.error; t++)
	{
		FetchTopic *ft = &fr->topics[t];
		int32		p;

		ft->name = kr_string(&r);
		ft->npartitions = array_len(&r);
		ft->partitions = palloc0(sizeof(FetchPartition) * Max(ft->npartitions, 1));
		for (p = 0; p < ft->npartitions && !r.error; p++)
		{
			FetchPartition *fp = &ft->partitions[p];

			fp->partition = kr_int32(&r);
			fp->fetch_offset = kr_int64(&r);
			if (req->api_version >= 5)
				(void) kr_int64(&r);	/* the follower's log start: none */
			fp->max_bytes = kr_int32(&r);
			fp->high_watermark = -1;
			fp->lso = -1;
			fp->log_start = -1;
			initStringInfo(&fp->records);
		}
	}
	if (r.error)
	{
		fr->ntopics = 0;
		return false;
	}
	return true;
}

/* Bytes of a partition's fields before its records in a Fetch response. */
static int
fetch_partition_fields_size(KafkaRequest *req)
{
	/* partition, error, high watermark, LSO, [log start], aborted, records' length */
	return 4 + 2 + 8 + 8 + (req->api_version >= 5 ? 8 : 0) + 4 + 4;
}

/*
 * Fill in the fields of a partition reserved at pos (by
 * fetch_partition_fields_size), its records having been appended after
 * them (none: empty, not null, records).
 */
static void
fetch_partition_fields(KafkaRequest *req, StringInfo out, int pos, FetchPartition *fp)
{
	int			size = fetch_partition_fields_size(req);
	int32		records_len = out->len - pos - size;
	StringInfoData f;

	initStringInfo(&f);
	kw_int32(&f, fp->partition);
	kw_int16(&f, fp->error);
	kw_int64(&f, fp->high_watermark);
	kw_int64(&f, fp->lso);
	if (req->api_version >= 5)
		kw_int64(&f, fp->log_start);
	kw_int32(&f, 0);			/* aborted_transactions: none, ever */
	kw_int32(&f, records_len);
	Assert(f.len == size);
	memcpy(out->data + pos, f.data, size);
	pfree(f.data);
}

static void
fetch_response(KafkaRequest *req, StringInfo out, FetchRequest *fr)
{
	int32		t;
	int32		p;

	kw_int32(out, 0);			/* throttle_time_ms */
	kw_int32(out, fr->ntopics);
	for (t = 0; t < fr->ntopics; t++)
	{
		FetchTopic *ft = &fr->topics[t];

		kw_string(out, ft->name ? ft->name : "");
		kw_int32(out, ft->npartitions);
		for (p = 0; p < ft->npartitions; p++)
		{
			FetchPartition *fp = &ft->partitions[p];

			kw_int32(out, fp->partition);
			kw_int16(out, fp->error);
			kw_int64(out, fp->high_watermark);
			kw_int64(out, fp->lso);
			if (req->api_version >= 5)
				kw_int64(out, fp->log_start);
			kw_int32(out, 0);	/* aborted_transactions: none, ever */
			/* empty, not null, when there is nothing */
			kw_bytes(out, fp->records.data, fp->records.len);
		}
	}
}

/* The tuple descriptor stream_read_partition() fills for a topic. */
static TupleDesc
read_tupdesc(StreamTopic *topic)
{
	TupleDesc	desc = CreateTemplateTupleDesc(7);

	TupleDescInitEntry(desc, 1, "topic", TEXTOID, -1, 0);
	TupleDescInitEntry(desc, 2, "partition", INT4OID, -1, 0);
	TupleDescInitEntry(desc, 3, "offset", INT8OID, -1, 0);
	TupleDescInitEntry(desc, 4, "key", TEXTOID, -1, 0);
	TupleDescInitEntry(desc, 5, "value",
					   topic->value_type == BYTEAOID ? BYTEAOID : TEXTOID, -1, 0);
	TupleDescInitEntry(desc, 6, "headers", JSONBOID, -1, 0);
	TupleDescInitEntry(desc, 7, "published_at", TIMESTAMPTZOID, -1, 0);
	return desc;
}

static StreamValueMode
read_mode(StreamTopic *topic)
{
	return topic->value_type == BYTEAOID ? STREAM_VALUE_BYTEA : STREAM_VALUE_TEXT;
}

/* Append one header to a growing array. */
static void
add_header(KafkaHeader **hs, int32 *n, int32 *cap, const char *key, int32 key_len,
		   const char *value, int32 value_len)
{
	if (*n >= *cap)
	{
		*cap = Max(8, *cap * 2);
		*hs = *hs ? repalloc(*hs, sizeof(KafkaHeader) * *cap)
			: palloc(sizeof(KafkaHeader) * *cap);
	}
	(*hs)[*n].key = key;
	(*hs)[*n].key_len = key_len;
	(*hs)[*n].value = value;
	(*hs)[*n].value_len = value_len;
	(*n)++;
}

/* The bytes of one header value in its jsonb form (see the header comment). */
static void
jsonb_header_value(JsonbValue *v, const char **value, int32 *len)
{
	switch (v->type)
	{
		case jbvNull:
			*value = NULL;
			*len = -1;
			return;
		case jbvString:
			*value = v->val.string.val;
			*len = v->val.string.len;
			return;
		case jbvNumeric:
			*value = DatumGetCString(DirectFunctionCall1(numeric_out,
														 NumericGetDatum(v->val.numeric)));
			*len = strlen(*value);
			return;
		case jbvBool:
			*value = v->val.boolean ? "true" : "false";
			*len = strlen(*value);
			return;
		case jbvBinary:
			{
				JsonbContainer *c = v->val.binary.data;

				if (!JsonContainerIsArray(c) && JsonContainerSize(c) == 1)
				{
					JsonbValue	b64;

					if (getKeyJsonValueFromContainer(c, "base64", 6, &b64) != NULL &&
						b64.type == jbvString)
					{
						int			cap = pg_b64_dec_len(b64.val.string.len) + 1;
						char	   *buf = palloc(cap);
						int			n = pg_b64_decode(b64.val.string.val,
													  b64.val.string.len, buf, cap);

						if (n >= 0)
						{
							*value = buf;
							*len = n;
							return;
						}
					}
				}
				*value = JsonbToCString(NULL, c, v->val.binary.len);
				*len = strlen(*value);
				return;
			}
		default:
			*value = NULL;
			*len = -1;
			return;
	}
}

/* The Kafka headers of a stored jsonb headers object. */
static int32
jsonb_to_headers(Jsonb *jb, KafkaHeader **out)
{
	KafkaHeader *hs = NULL;
	int32		n = 0;
	int32		cap = 0;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	const char *key = NULL;
	int32		key_len = 0;

	*out = NULL;
	if (!JB_ROOT_IS_OBJECT(jb) || JB_ROOT_IS_SCALAR(jb))
		return 0;
	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		const char *value;
		int32		value_len;

		if (tok == WJB_KEY)
		{
			key = v.val.string.val;
			key_len = v.val.string.len;
			continue;
		}
		if (tok != WJB_VALUE)
			continue;
		if (v.type == jbvBinary && JsonContainerIsArray(v.val.binary.data))
		{
			/* a repeated key: one header per element */
			JsonbIterator *ait = JsonbIteratorInit(v.val.binary.data);
			JsonbValue	e;
			JsonbIteratorToken etok;

			while ((etok = JsonbIteratorNext(&ait, &e, true)) != WJB_DONE)
			{
				if (etok != WJB_ELEM)
					continue;
				jsonb_header_value(&e, &value, &value_len);
				add_header(&hs, &n, &cap, key, key_len, value, value_len);
			}
			continue;
		}
		jsonb_header_value(&v, &value, &value_len);
		add_header(&hs, &n, &cap, key, key_len, value, value_len);
	}
	*out = hs;
	return n;
}

/* The state of one partition's fetch, for fetch_row. */
typedef struct FetchScan
{
	FetchPartition *fp;
	KafkaBatchWriter bw;
	int64	   *total;			/* the response's record bytes so far */
	int32		max_bytes;		/* the response's limit (0: none) */
	int64		pbytes;			/* the partition's batch bytes so far */
	int32		nrecords;
	int64		covered;		/* last offset the batch covers */
	bool		full;			/* a record did not fit */
	bool		convert;		/* values are sent in their text form */
	FmgrInfo	outfn;			/* the value type's output function */
	MemoryContext rowcxt;		/* per-row garbage: detoasted values, headers */
} FetchScan;

/*
 * Encode one message straight from the scan's tuple, or refuse it (and end
 * the scan) when it does not fit the byte limits.
 */
static bool
fetch_row(const StreamScanRow *row, void *arg)
{
	FetchScan  *fs = (FetchScan *) arg;
	FetchPartition *fp = fs->fp;
	MemoryContext oldcxt;
	const char *key = NULL;
	int32		key_len = -1;
	const char *value = NULL;
	int32		value_len = -1;
	KafkaHeader *hs = NULL;
	int32		nh = 0;
	int64		tsms;
	int32		size;

	MemoryContextReset(fs->rowcxt);
	oldcxt = MemoryContextSwitchTo(fs->rowcxt);
	if (!row->key_null)
	{
		text	   *k = DatumGetTextPP(row->key);

		key = VARDATA_ANY(k);
		key_len = VARSIZE_ANY_EXHDR(k);
	}
	if (!row->value_null)
	{
		if (fs->convert)
		{
			/* jsonb (any type but text and bytea): its text form */
			value = OutputFunctionCall(&fs->outfn, row->value);
			value_len = strlen(value);
		}
		else
		{
			/* text and bytea: the bytes as stored */
			struct varlena *val = PG_DETOAST_DATUM_PACKED(row->value);

			value = VARDATA_ANY(val);
			value_len = VARSIZE_ANY_EXHDR(val);
		}
	}
	if (!row->headers_null)
		nh = jsonb_to_headers(DatumGetJsonbP(row->headers), &hs);
	tsms = timestamptz_to_ms(row->published_at);

	size = kafka_record_size(row->offset - fp->fetch_offset,
							 fs->nrecords == 0 ? 0 : tsms - fs->bw.first_timestamp,
							 key_len, value_len, hs, nh);
	/* a partition's first record ignores its limit, the response's first max_bytes */
	if ((fs->nrecords > 0 && fs->pbytes + size > fp->max_bytes) ||
		(fs->max_bytes > 0 && *fs->total > 0 && *fs->total + size > fs->max_bytes))
	{
		MemoryContextSwitchTo(oldcxt);
		fs->full = true;
		return false;
	}
	MemoryContextSwitchTo(oldcxt);
	kafka_batch_add(&fs->bw, row->offset, tsms, key, key_len, value, value_len, hs, nh);
	fs->nrecords++;
	fs->pbytes += size;
	*fs->total += size;
	fs->covered = row->offset;
	return true;
}

/*
 * Append one partition's records to out: scan below the LSO from
 * fetch_offset, encoding each row as the scan returns it, until a record
 * does not fit the byte limits.  *total counts the response's bytes.
 */
static void
fetch_partition(StreamTopic *topic, FetchPartition *fp, StringInfo out, int64 *total,
				int32 max_bytes, bool empty_batches)
{
	FetchScan	fs;
	MemoryContext scancxt;
	MemoryContext oldcxt;
	int64		next;
	int64		lso;

	fs.fp = fp;
	fs.total = total;
	fs.max_bytes = max_bytes;
	fs.pbytes = KAFKA_BATCH_HEADER_SIZE;
	fs.nrecords = 0;
	fs.covered = -1;
	fs.full = false;
	fs.convert = (topic->value_type != BYTEAOID && topic->value_type != TEXTOID);
	if (fs.convert)
	{
		Oid			func;
		bool		varlena;

		getTypeOutputInfo(topic->value_type, &func, &varlena);
		fmgr_info(func, &fs.outfn);
	}
	scancxt = AllocSetContextCreate(CurrentMemoryContext, "stream kafka fetch scan",
									ALLOCSET_DEFAULT_SIZES);
	fs.rowcxt = AllocSetContextCreate(scancxt, "stream kafka fetch row",
									  ALLOCSET_DEFAULT_SIZES);
	kafka_batch_begin(&fs.bw, out, fp->fetch_offset);

	oldcxt = MemoryContextSwitchTo(scancxt);
	(void) stream_scan_partition(topic, fp->partition, fp->fetch_offset, PG_INT32_MAX,
								 fetch_row, &fs, &next, &lso, NULL);
	MemoryContextSwitchTo(oldcxt);
	fp->lso = Max(fp->lso, lso);
	/* reached the LSO: the batch covers rolled-back offsets up to it */
	if (!fs.full)
		fs.covered = Max(fs.covered, next - 1);
	MemoryContextDelete(scancxt);

	if (fs.covered < fp->fetch_offset || (fs.nrecords == 0 && !empty_batches))
	{
		/* nothing at all below the LSO from fetch_offset: no batch */
		out->len = fs.bw.start;
		out->data[out->len] = '\0';
		return;
	}
	kafka_batch_end(&fs.bw, fs.covered);
	if (fs.nrecords == 0)
		*total += KAFKA_BATCH_HEADER_SIZE;
}

/* Register waits on the request's partitions; false if the LSO moved. */
static bool
fetch_register_waits(FetchRequest *fr, bool *all_registered)
{
	int32		t;
	int32		p;
	bool		unchanged = true;

	*all_registered = true;
	for (t = 0; t < fr->ntopics; t++)
	{
		FetchTopic *ft = &fr->topics[t];

		if (ft->topic == NULL)
			continue;
		for (p = 0; p < ft->npartitions; p++)
		{
			FetchPartition *fp = &ft->partitions[p];
			StreamPartition *part;
			int64		lso;

			if (fp->error != KAFKA_NONE)
				continue;
			part = stream_partition_lock(ft->topic, fp->partition);
			if (!stream_wait_register(part))
				*all_registered = false;
			lso = stream_partition_lso(part, NULL);
			stream_partition_unlock();
			if (lso != fp->lso)
				unchanged = false;
		}
	}
	return unchanged;
}

KafkaResult
kafka_fetch(KafkaRequest *req, StringInfo out, TimestampTz *wake_at)
{
	FetchRequest fr;
	int32		t;
	int32		p;
	int64		total = 0;
	bool		any_error = false;
	bool		all_registered;
	bool		empty_batches;

	if (!fetch_parse(req, &fr))
		return KAFKA_CLOSE;
	stream_check_readable();

	/*
	 * kafka-python (2.0.2) fails with IndexError on a batch without records
	 * (its fetcher takes the last record of what it unpacked): it gets no
	 * batch for a rolled-back tail, and stays at its start until the next
	 * message, whose batch then covers the gap.
	 */
	empty_batches = !(req->client_id != NULL &&
					  strncmp(req->client_id, "kafka-python", 12) == 0);

	/*
	 * The response is written as the partitions are read (fetch_response's
	 * layout), each partition's records straight into out after its fixed
	 * fields, which are filled in afterwards: no copy of the records.
	 */
	kw_int32(out, 0);			/* throttle_time_ms */
	kw_int32(out, fr.ntopics);
	for (t = 0; t < fr.ntopics; t++)
	{
		FetchTopic *ft = &fr.topics[t];
		int16		topic_error;

		kw_string(out, ft->name ? ft->name : "");
		kw_int32(out, ft->npartitions);
		ft->topic = kafka_find_topic(ft->name, STREAM_PRIV_CONSUME, &topic_error);
		for (p = 0; p < ft->npartitions; p++)
		{
			FetchPartition *fp = &ft->partitions[p];
			int64		end_offset;
			int			pos = out->len;

			appendStringInfoSpaces(out, fetch_partition_fields_size(req));
			if (topic_error != KAFKA_NONE)
				fp->error = topic_error;
			else if (fp->partition < 0 || fp->partition >= ft->topic->partitions)
				fp->error = KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
			if (fp->error != KAFKA_NONE)
				any_error = true;
			else
			{
				fp->lso = stream_partition_bounds(ft->topic, fp->partition, &end_offset);
				fp->high_watermark = end_offset;
				fp->log_start = log_start_offset(ft->topic, fp->partition);
				if (fp->fetch_offset < fp->log_start || fp->fetch_offset > end_offset)
				{
					fp->error = KAFKA_OFFSET_OUT_OF_RANGE;
					any_error = true;
				}
				else if (fr.max_bytes <= 0 || total < fr.max_bytes)
					fetch_partition(ft->topic, fp, out, &total, fr.max_bytes, empty_batches);
			}
			fetch_partition_fields(req, out, pos, fp);
		}
	}

	/* long poll: not enough data, no error, time left */
	if (!req->expired && !any_error && fr.max_wait_ms > 0 && total < Max(fr.min_bytes, 1) &&
		fr.ntopics > 0)
	{
		TimestampTz deadline = TimestampTzPlusMilliseconds(req->received, fr.max_wait_ms);

		if (GetCurrentTimestamp() < deadline)
		{
			if (!fetch_register_waits(&fr, &all_registered))
				*wake_at = GetCurrentTimestamp();	/* moved meanwhile: answer now */
			else if (!all_registered)
				*wake_at = Min(deadline,
							   TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														   FETCH_FALLBACK_POLL_MS));
			else
				*wake_at = deadline;
			resetStringInfo(out);
			return KAFKA_PARK;
		}
	}

	return KAFKA_RESPOND;
}

void
kafka_fetch_error(KafkaRequest *req, StringInfo out, int16 error)
{
	FetchRequest fr;
	int32		t;
	int32		p;

	(void) fetch_parse(req, &fr);
	for (t = 0; t < fr.ntopics; t++)
		for (p = 0; p < fr.topics[t].npartitions; p++)
			fr.topics[t].partitions[p].error = error;
	fetch_response(req, out, &fr);
}

/* ================================================================
 * ListOffsets
 * ================================================================ */

typedef struct ListOffsetsPartition
{
	int32		partition;
	int64		timestamp;
	int16		error;
	int64		found_timestamp;
	int64		offset;
} ListOffsetsPartition;

typedef struct ListOffsetsTopic
{
	char	   *name;
	int32		npartitions;
	ListOffsetsPartition *partitions;
} ListOffsetsTopic;

typedef struct ListOffsetsRequest
{
	int8		isolation;
	int32		ntopics;
	ListOffsetsTopic *topics;
} ListOffsetsRequest;

static bool
list_offsets_parse(KafkaRequest *req, ListOffsetsRequest *lr)
{
	KafkaReader r = req->body;
	int32		t;

	(void) kr_int32(&r);		/* replica_id */
	lr->isolation = (req->api_version >= 2) ? kr_int8(&r) : 0;
	lr->ntopics = array_len(&r);
	lr->topics = palloc0(sizeof(ListOffsetsTopic) * Max(lr->ntopics, 1));
	for (t = 0; t < lr->ntopics && !r.error; t++)
	{
		ListOffsetsTopic *lt = &lr->topics[t];
		int32		p;

		lt->name = kr_string(&r);
		lt->npartitions = array_len(&r);
		lt->partitions = palloc0(sizeof(ListOffsetsPartition) * Max(lt->npartitions, 1));
		for (p = 0; p < lt->npartitions && !r.error; p++)
		{
			lt->partitions[p].partition = kr_int32(&r);
			lt->partitions[p].timestamp = kr_int64(&r);
			lt->partitions[p].found_timestamp = -1;
			lt->partitions[p].offset = -1;
		}
	}
	if (r.error)
	{
		lr->ntopics = 0;
		return false;
	}
	return true;
}

static void
list_offsets_response(KafkaRequest *req, StringInfo out, ListOffsetsRequest *lr)
{
	int32		t;
	int32		p;

	if (req->api_version >= 2)
		kw_int32(out, 0);		/* throttle_time_ms */
	kw_int32(out, lr->ntopics);
	for (t = 0; t < lr->ntopics; t++)
	{
		ListOffsetsTopic *lt = &lr->topics[t];

		kw_string(out, lt->name ? lt->name : "");
		kw_int32(out, lt->npartitions);
		for (p = 0; p < lt->npartitions; p++)
		{
			kw_int32(out, lt->partitions[p].partition);
			kw_int16(out, lt->partitions[p].error);
			kw_int64(out, lt->partitions[p].found_timestamp);
			kw_int64(out, lt->partitions[p].offset);
		}
	}
}

/* published_at (ms) of the message at offset, -1 if none is readable. */
static int64
message_timestamp(StreamTopic *topic, int32 partition, int64 offset)
{
	TupleDesc	desc = read_tupdesc(topic);
	Tuplestorestate *ts = tuplestore_begin_heap(false, false, work_mem);
	TupleTableSlot *slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
	int64		next;
	int64		result = -1;

	if (stream_read_partition(topic, partition, offset, 1, read_mode(topic), ts, desc,
							  &next, NULL, NULL) == 1 &&
		tuplestore_gettupleslot(ts, true, false, slot))
	{
		bool		isnull;

		if (DatumGetInt64(slot_getattr(slot, 3, &isnull)) == offset)
			result = timestamptz_to_ms(DatumGetTimestampTz(slot_getattr(slot, 7, &isnull)));
	}
	ExecDropSingleTupleTableSlot(slot);
	tuplestore_end(ts);
	return result;
}

KafkaResult
kafka_list_offsets(KafkaRequest *req, StringInfo out, TimestampTz *wake_at)
{
	ListOffsetsRequest lr;
	int32		t;
	int32		p;

	if (!list_offsets_parse(req, &lr))
		return KAFKA_CLOSE;
	stream_check_readable();

	for (t = 0; t < lr.ntopics; t++)
	{
		ListOffsetsTopic *lt = &lr.topics[t];
		int16		topic_error;
		StreamTopic *topic = kafka_find_topic(lt->name, STREAM_PRIV_CONSUME, &topic_error);

		for (p = 0; p < lt->npartitions; p++)
		{
			ListOffsetsPartition *lp = &lt->partitions[p];

			if (topic_error != KAFKA_NONE)
				lp->error = topic_error;
			else if (lp->partition < 0 || lp->partition >= topic->partitions)
				lp->error = KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
			else if (lp->timestamp == -2)
				lp->offset = stream_earliest_offset(topic, lp->partition);
			else if (lp->timestamp == -1)
				lp->offset = stream_latest_offset(topic, lp->partition);
			else if (lp->timestamp < 0)
				lp->error = KAFKA_INVALID_REQUEST;
			else
			{
				lp->offset = stream_offset_for_time(topic, lp->partition,
													ms_to_timestamptz(lp->timestamp));
				lp->found_timestamp = message_timestamp(topic, lp->partition, lp->offset);
			}
		}
	}
	list_offsets_response(req, out, &lr);
	return KAFKA_RESPOND;
}

void
kafka_list_offsets_error(KafkaRequest *req, StringInfo out, int16 error)
{
	ListOffsetsRequest lr;
	int32		t;
	int32		p;

	(void) list_offsets_parse(req, &lr);
	for (t = 0; t < lr.ntopics; t++)
		for (p = 0; p < lr.topics[t].npartitions; p++)
			lr.topics[t].partitions[p].error = error;
	list_offsets_response(req, out, &lr);
}
