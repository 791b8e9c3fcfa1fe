/*-------------------------------------------------------------------------
 *
 * read.h
 *	  Reading a partition up to its last stable offset.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAM_READ_H
#define STREAM_READ_H

#include "postgres.h"

#include "access/tupdesc.h"
#include "datatype/timestamp.h"
#include "utils/tuplestore.h"

struct StreamTopic;

/* How values are returned to SQL. */
typedef enum StreamValueMode
{
	STREAM_VALUE_JSONB,			/* jsonb topics, as jsonb */
	STREAM_VALUE_TEXT,			/* any topic, the value's text form */
	STREAM_VALUE_BYTEA			/* bytea topics, as bytea */
} StreamValueMode;

extern void stream_check_readable(void);
extern void stream_check_value_mode(struct StreamTopic *topic, StreamValueMode mode);
extern void stream_check_max_messages(int max_messages);
extern int64 stream_partition_bounds(struct StreamTopic *topic, int32 partition,
									 int64 *end_offset);
/*
 * One message as stream_scan_partition() hands it to its callback: the
 * values point into the scan's current tuple (they may be toasted) and are
 * valid during the call only.
 */
typedef struct StreamScanRow
{
	int64		offset;
	Datum		key;			/* text */
	Datum		value;			/* the topic's value type */
	Datum		headers;		/* jsonb */
	bool		key_null;
	bool		value_null;
	bool		headers_null;
	TimestampTz published_at;
} StreamScanRow;

/* Take the message (true), or refuse it and end the scan (false). */
typedef bool (*StreamScanCallback) (const StreamScanRow *row, void *arg);

extern int	stream_scan_partition(struct StreamTopic *topic, int32 partition,
								  int64 offset, int max_messages,
								  StreamScanCallback callback, void *arg,
								  int64 *next, int64 *lso_out, int64 *log_start_out);
extern int	stream_read_partition(struct StreamTopic *topic, int32 partition,
								  int64 offset, int max_messages, StreamValueMode mode,
								  Tuplestorestate *tupstore, TupleDesc tupdesc,
								  int64 *next, int64 *lso_out, int64 *log_start_out);

#endif							/* STREAM_READ_H */
