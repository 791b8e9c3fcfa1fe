/*-------------------------------------------------------------------------
 *
 * storage.h
 *	  Segment tables: append messages, list a partition's segments, roll.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAM_STORAGE_H
#define STREAM_STORAGE_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "utils/snapshot.h"

struct StreamTopic;

/* One message to append, already converted to the topic's value type. */
typedef struct StreamMessage
{
	Datum		key;			/* text */
	Datum		value;			/* topic's value type */
	Datum		headers;		/* jsonb */
	bool		key_null;
	bool		value_null;
	bool		headers_null;
	int32		partition;		/* chosen partition */
	int64		offset;			/* filled by stream_append */
} StreamMessage;

/* A segment of a partition as listed in stream._segments. */
typedef struct StreamSegment
{
	int64		segment_id;
	int64		base_offset;	/* -1 when not yet recorded */
	Oid			relid;
} StreamSegment;

extern void stream_append(struct StreamTopic *topic, StreamMessage *msgs, int n);
extern List *stream_list_segments(int32 topic_id, int32 partition, Snapshot snapshot);
extern List *stream_cached_segments(int32 topic_id, int32 partition);
extern void stream_storage_init(void);
extern void stream_load_tail(int32 topic_id, int32 partition, int64 *segment,
							 Oid *relid, Oid *indexid, int64 *next_offset, int64 *bytes,
							 bool *provisional);

/* publish.c */
extern int64 stream_message_bytes(const StreamMessage *m);
extern void stream_publish_value(struct StreamTopic *topic, Datum value, Oid valtype,
								 bool value_null, text *key, StreamMessage *msg_out);

/* roller.c */
extern bool stream_launch_roller(Oid dbid, struct StreamTopic *topic, int32 partition,
								 int64 segment);
extern bool stream_roll_partition(Oid dbid, int32 topic_id, int32 partition,
								  TimestampTz created_at, int64 segment);

#endif							/* STREAM_STORAGE_H */
