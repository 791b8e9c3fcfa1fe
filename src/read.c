/*-------------------------------------------------------------------------
 *
 * read.c
 *	  Reading a partition up to its last stable offset.
 *
 * stream_scan_partition() is the one read path (under read and poll
 * through stream_read_partition(), which fills a tuplestore, and under
 * Kafka's Fetch, which encodes each row as the scan returns it): compute
 * the partition's LSO from shared memory, then take a
 * fresh snapshot, then range-scan the segments' offset indexes from the
 * requested offset, stopping below the LSO.  The order matters (see
 * lso.c): every offset below an LSO computed first belongs to a
 * transaction that has ended, so a snapshot taken afterwards sees all the
 * committed ones.  The fresh snapshot is used at every isolation level: a
 * REPEATABLE READ transaction's own snapshot could predate commits below
 * the LSO and return a gap the reader would then skip forever.
 *
 * Values come back as jsonb (stream.read), text (read_text: the value's
 * text form, whatever the topic's type) or bytea (read_bytea, bytea topics).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/genam.h"
#include "access/relscan.h"
#include "access/skey.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "lso.h"
#include "privileges.h"
#include "read.h"
#include "storage.h"
#include "stream.h"
#include "topic.h"

/* Fail unless this session may compute LSOs (not on a standby). */
void
stream_check_readable(void)
{
	stream_require_preload();
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("streams cannot be read on a standby server"),
				 errdetail("The last stable offset is known only to the primary, where the publishing transactions run."),
				 errhint("Connect to the primary server.")));
}

/* Check a value mode against the topic's value type. */
void
stream_check_value_mode(StreamTopic *topic, StreamValueMode mode)
{
	if (mode == STREAM_VALUE_JSONB && topic->value_type != JSONBOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("topic \"%s\" holds %s values, not jsonb", topic->name,
						format_type_be(topic->value_type)),
				 errhint("Use the %s variant of this function.",
						 topic->value_type == BYTEAOID ? "_bytea" : "_text")));
	if (mode == STREAM_VALUE_BYTEA && topic->value_type != BYTEAOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("topic \"%s\" holds %s values, not bytea", topic->name,
						format_type_be(topic->value_type)),
				 errhint("Use the %s variant of this function.",
						 topic->value_type == JSONBOID ? "jsonb" : "_text")));
}

/* Compute end offset and LSO of a partition. */
int64
stream_partition_bounds(StreamTopic *topic, int32 partition, int64 *end_offset)
{
	StreamPartition *part;
	int64		lso;

	part = stream_partition_lock(topic, partition);
	lso = stream_partition_lso(part, end_offset);
	stream_partition_unlock();
	return lso;
}

/* Detoast an external varlena: values leave the scan's lifetime. */
static Datum
own_varlena(Datum d)
{
	if (VARATT_IS_EXTERNAL(DatumGetPointer(d)))
		return PointerGetDatum(detoast_external_attr((struct varlena *) DatumGetPointer(d)));
	return d;
}

/* Convert a stored value to the requested output type. */
static Datum
output_value(StreamTopic *topic, StreamValueMode mode, Datum value, FmgrInfo *outfn)
{
	value = own_varlena(value);
	if (mode == STREAM_VALUE_TEXT && topic->value_type != TEXTOID)
		return CStringGetTextDatum(OutputFunctionCall(outfn, value));
	return value;
}

/*
 * Call callback for the messages of one partition from offset on, below
 * its LSO, at most max_messages, in offset order.  The row handed to the
 * callback points into the scan's current tuple: its values (possibly
 * still toasted) are valid during the call only.  A callback returning
 * false refuses that message and ends the scan: the message is not
 * counted and *next stays at it.  Returns the number of messages taken
 * and sets *next to the offset after the last one taken (or offset),
 * and *lso_out (if not NULL) to the LSO the read stopped at.  When the
 * scan took everything below the LSO (fewer than max_messages, no
 * refusal), *next is the LSO: the offsets of rolled-back publishes at the
 * end are passed.  With log_start_out, the partition's log start offset is
 * returned there (-1 when unknown) and nothing is read when offset is
 * below it: the caller applies its reset policy.  Without it, a read below
 * the log start simply starts at the first retained message.
 */
int
stream_scan_partition(StreamTopic *topic, int32 partition, int64 offset,
					  int max_messages, StreamScanCallback callback, void *arg,
					  int64 *next, int64 *lso_out, int64 *log_start_out)
{
	int64		lso;
	int64		end_offset;
	Snapshot	snapshot;
	List	   *segments;
	ListCell   *lc;
	int			count = 0;
	bool		refused = false;

	stream_check_readable();
	*next = offset;

	/* LSO first, snapshot second: see the header comment */
	lso = stream_partition_bounds(topic, partition, &end_offset);
	if (lso_out)
		*lso_out = lso;
	if (log_start_out)
		*log_start_out = -1;
	/* the log start never passes the LSO: nothing to check up there */
	if (offset >= lso || max_messages <= 0)
		return 0;
	snapshot = RegisterSnapshot(GetLatestSnapshot());

	segments = stream_cached_segments(topic->topic_id, partition);
	if (log_start_out && segments != NIL)
	{
		*log_start_out = ((StreamSegment *) linitial(segments))->base_offset;
		if (offset < *log_start_out)
		{
			UnregisterSnapshot(snapshot);
			return 0;
		}
	}
	foreach(lc, segments)
	{
		StreamSegment *seg = (StreamSegment *) lfirst(lc);
		StreamSegment *nextseg = lnext(segments, lc) ? (StreamSegment *) lfirst(lnext(segments, lc)) : NULL;
		Relation	rel;
		Relation	idx;
		IndexScanDesc scan;
		TupleTableSlot *slot;
		ScanKeyData key;
		bool		stop = false;
		Oid			indexid;

		/* every offset of this segment is below the next one's base */
		if (nextseg != NULL && nextseg->base_offset >= 0 && nextseg->base_offset <= offset)
			continue;
		if (seg->base_offset >= lso)
			break;
		if (!OidIsValid(seg->relid))
			continue;
		/* retention may have dropped it since we listed it */
		rel = try_table_open(seg->relid, AccessShareLock);
		if (rel == NULL)
			continue;
#if PG_VERSION_NUM >= 170000
		indexid = RelationGetPrimaryKeyIndex(rel, false);
#else
		indexid = RelationGetPrimaryKeyIndex(rel);
#endif
		if (!OidIsValid(indexid))
			elog(ERROR, "stream: segment %s has no offset index", RelationGetRelationName(rel));
		idx = index_open(indexid, AccessShareLock);

		slot = table_slot_create(rel, NULL);
		ScanKeyInit(&key, 1, BTGreaterEqualStrategyNumber, F_INT8GE, Int64GetDatum(offset));
		scan = index_beginscan(rel, idx, snapshot, 1, 0);
		index_rescan(scan, &key, 1, NULL, 0);

		while (index_getnext_slot(scan, ForwardScanDirection, slot))
		{
			StreamScanRow row;

			slot_getallattrs(slot);
			row.offset = DatumGetInt64(slot->tts_values[Anum_seg_offset - 1]);
			if (row.offset >= lso)
			{
				stop = true;
				break;
			}
			row.key_null = slot->tts_isnull[Anum_seg_key - 1];
			row.key = slot->tts_values[Anum_seg_key - 1];
			row.value_null = slot->tts_isnull[Anum_seg_value - 1];
			row.value = slot->tts_values[Anum_seg_value - 1];
			row.headers_null = slot->tts_isnull[Anum_seg_headers - 1];
			row.headers = slot->tts_values[Anum_seg_headers - 1];
			row.published_at = DatumGetTimestampTz(slot->tts_values[Anum_seg_published_at - 1]);
			if (!callback(&row, arg))
			{
				refused = true;
				stop = true;
				break;
			}

			*next = row.offset + 1;
			if (++count >= max_messages)
			{
				stop = true;
				break;
			}
			CHECK_FOR_INTERRUPTS();
		}

		index_endscan(scan);
		ExecDropSingleTupleTableSlot(slot);
		index_close(idx, AccessShareLock);
		table_close(rel, AccessShareLock);
		if (stop)
			break;
	}

	/*
	 * Everything below the LSO is committed and was returned, or rolled back:
	 * a reader that got all it asked for up to the LSO may move past the
	 * rolled-back offsets at the end (lso.c keeps them from being reused).
	 */
	if (!refused && count < max_messages && *next < lso)
		*next = lso;

	UnregisterSnapshot(snapshot);
	return count;
}

/* What stream_read_partition's callback needs. */
typedef struct ReadToStore
{
	StreamTopic *topic;
	int32		partition;
	StreamValueMode mode;
	Datum		topic_datum;
	FmgrInfo	outfn;
	Tuplestorestate *tupstore;
	TupleDesc	tupdesc;
} ReadToStore;

/* Append one message to the tuplestore, its values detoasted. */
static bool
read_to_store(const StreamScanRow *row, void *arg)
{
	ReadToStore *rs = (ReadToStore *) arg;
	Datum		values[7];
	bool		nulls[7];

	values[0] = rs->topic_datum;
	nulls[0] = false;
	values[1] = Int32GetDatum(rs->partition);
	nulls[1] = false;
	values[2] = Int64GetDatum(row->offset);
	nulls[2] = false;
	nulls[3] = row->key_null;
	values[3] = nulls[3] ? (Datum) 0 : own_varlena(row->key);
	nulls[4] = row->value_null;
	values[4] = nulls[4] ? (Datum) 0 :
		output_value(rs->topic, rs->mode, row->value, &rs->outfn);
	nulls[5] = row->headers_null;
	values[5] = nulls[5] ? (Datum) 0 : own_varlena(row->headers);
	values[6] = TimestampTzGetDatum(row->published_at);
	nulls[6] = false;
	tuplestore_putvalues(rs->tupstore, rs->tupdesc, values, nulls);
	return true;
}

/*
 * Append to tupstore the messages of one partition from offset on, below
 * its LSO, at most max_messages: stream_scan_partition() (which see for
 * *next, *lso_out and log_start_out) with values detoasted and converted
 * per mode, as the SQL functions return them.
 */
int
stream_read_partition(StreamTopic *topic, int32 partition, int64 offset,
					  int max_messages, StreamValueMode mode,
					  Tuplestorestate *tupstore, TupleDesc tupdesc, int64 *next,
					  int64 *lso_out, int64 *log_start_out)
{
	ReadToStore rs;

	rs.topic = topic;
	rs.partition = partition;
	rs.mode = mode;
	rs.topic_datum = CStringGetTextDatum(topic->name);
	rs.tupstore = tupstore;
	rs.tupdesc = tupdesc;
	if (mode == STREAM_VALUE_TEXT && topic->value_type != TEXTOID)
	{
		Oid			func;
		bool		varlena;

		getTypeOutputInfo(topic->value_type, &func, &varlena);
		fmgr_info(func, &rs.outfn);
	}
	return stream_scan_partition(topic, partition, offset, max_messages,
								 read_to_store, &rs, next, lso_out, log_start_out);
}

/* Validate max_messages for read and poll. */
void
stream_check_max_messages(int max_messages)
{
	if (max_messages < 1 || max_messages > stream_max_read_messages)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_messages must be between 1 and %d, got %d",
						stream_max_read_messages, max_messages),
				 errhint("The upper bound is set by \"stream.max_read_messages\".")));
}

/* Shared body of read, read_text and read_bytea. */
static Datum
read_common(FunctionCallInfo fcinfo, StreamValueMode mode)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	StreamTopic *topic;
	int32		partition;
	int64		offset;
	int32		max_messages;
	int64		end_offset;
	int64		next;
	static const char *const names[] = {"topic", "partition", "offset", "max_messages"};

	stream_check_readable();
	stream_check_args_not_null(fcinfo, names, 4);
	topic = stream_topic_lookup(PG_GETARG_TEXT_PP(0));
	stream_check_privilege(topic, STREAM_PRIV_CONSUME);
	partition = PG_GETARG_INT32(1);
	offset = PG_GETARG_INT64(2);
	max_messages = PG_GETARG_INT32(3);
	stream_check_partition(topic, partition);
	stream_check_value_mode(topic, mode);
	stream_check_max_messages(max_messages);
	if (offset < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("offset must not be negative, got " INT64_FORMAT, offset)));

	(void) stream_partition_bounds(topic, partition, &end_offset);
	if (offset > end_offset)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("offset " INT64_FORMAT " is beyond the end of partition %d of topic \"%s\"",
						offset, partition, topic->name),
				 errdetail("The end offset is " INT64_FORMAT ".", end_offset)));

	InitMaterializedSRF(fcinfo, 0);
	stream_read_partition(topic, partition, offset, max_messages, mode,
						  rsinfo->setResult, rsinfo->setDesc, &next, NULL, NULL);
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(stream_read);
PG_FUNCTION_INFO_V1(stream_read_text);
PG_FUNCTION_INFO_V1(stream_read_bytea);

/* SQL: stream.read(topic, partition, offset, max_messages), jsonb values */
Datum
stream_read(PG_FUNCTION_ARGS)
{
	return read_common(fcinfo, STREAM_VALUE_JSONB);
}

/* SQL: stream.read_text(...), values in their text form */
Datum
stream_read_text(PG_FUNCTION_ARGS)
{
	return read_common(fcinfo, STREAM_VALUE_TEXT);
}

/* SQL: stream.read_bytea(...), bytea topics */
Datum
stream_read_bytea(PG_FUNCTION_ARGS)
{
	return read_common(fcinfo, STREAM_VALUE_BYTEA);
}

PG_FUNCTION_INFO_V1(stream_partition_state);

/*
 * SQL: stream._partition_state(topic text, partition int)
 *		RETURNS (end_offset bigint, last_stable_offset bigint)
 */
Datum
stream_partition_state(PG_FUNCTION_ARGS)
{
	StreamTopic *topic;
	int32		partition = PG_GETARG_INT32(1);
	TupleDesc	tupdesc;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	int64		end_offset;
	int64		lso;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	stream_check_readable();
	topic = stream_topic_lookup(PG_GETARG_TEXT_PP(0));
	if (!stream_has_privilege(topic, STREAM_PRIV_ANY, GetUserId()))
		stream_check_privilege(topic, STREAM_PRIV_CONSUME);
	stream_check_partition(topic, partition);
	lso = stream_partition_bounds(topic, partition, &end_offset);
	values[0] = Int64GetDatum(end_offset);
	values[1] = Int64GetDatum(lso);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}
