/*-------------------------------------------------------------------------
 *
 * kafka_records.h
 *	  Kafka RecordBatch v2 (magic 2): decoding what producers send and
 *	  encoding what Fetch returns.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAM_KAFKA_RECORDS_H
#define STREAM_KAFKA_RECORDS_H

#include "postgres.h"

#include "lib/stringinfo.h"

/* One record header: key is UTF-8 text for Kafka, value bytes or NULL. */
typedef struct KafkaHeader
{
	const char *key;
	int32		key_len;
	const char *value;			/* NULL when value_len < 0 */
	int32		value_len;
} KafkaHeader;

/* One decoded record; pointers into the request frame or an inflated copy. */
typedef struct KafkaRecord
{
	int64		offset_delta;
	int64		timestamp;		/* absolute, ms since the Unix epoch */
	const char *key;			/* NULL when key_len < 0 */
	int32		key_len;
	const char *value;			/* NULL when value_len < 0 */
	int32		value_len;
	int32		nheaders;
	KafkaHeader *headers;
} KafkaRecord;

/*
 * Decode a Produce request's records (one or more RecordBatch v2).  Returns
 * KAFKA_NONE and the records, or an error code with *why saying what was
 * wrong (for the server log).  Allocates in the current memory context;
 * never raises for bad input.  max_inflated bounds the size of one
 * decompressed batch.
 */
extern int16 kafka_records_decode(const char *data, int32 len, int64 max_inflated,
								  KafkaRecord **records, int *nrecords,
								  const char **why);

/*
 * Encode one uncompressed RecordBatch v2 for Fetch: begin, add records in
 * offset order (gaps allowed), end.  end with last_offset >= the last
 * record's offset makes the batch cover the offsets up to it (clients
 * continue from last_offset + 1); with no record added the batch is an
 * empty one that only moves the client past [base_offset, last_offset].
 */
typedef struct KafkaBatchWriter
{
	StringInfo	out;
	int			start;			/* position of baseOffset in out */
	int64		base_offset;
	int64		first_timestamp;
	int64		max_timestamp;
	int32		count;
	int64		last_record_offset;
} KafkaBatchWriter;

extern void kafka_batch_begin(KafkaBatchWriter *bw, StringInfo out, int64 base_offset);
extern void kafka_batch_add(KafkaBatchWriter *bw, int64 offset, int64 timestamp,
							const char *key, int32 key_len,
							const char *value, int32 value_len,
							const KafkaHeader *headers, int32 nheaders);
/* Bytes the record would take in the batch (for fetch size limits). */
extern int32 kafka_record_size(int64 offset_delta, int64 timestamp_delta,
							   int32 key_len, int32 value_len,
							   const KafkaHeader *headers, int32 nheaders);
extern void kafka_batch_end(KafkaBatchWriter *bw, int64 last_offset);

/* Size of a RecordBatch v2 header, records excluded. */
#define KAFKA_BATCH_HEADER_SIZE 61

#endif							/* STREAM_KAFKA_RECORDS_H */
