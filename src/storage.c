/*-------------------------------------------------------------------------
 *
 * storage.c
 *	  Segment tables: the append path and the catalog reads behind it.
 *
 * A partition is a chain of heap tables stream_data.seg_<segment_id>, each
 * with a unique btree on "offset" (layout fixed by stream._create_segment).
 * Exactly one segment per partition takes inserts; which one is kept in the
 * partition's shared entry together with the offset counter, and both are
 * read under one spinlock, so every offset below the segment switch goes
 * to the old segment and every offset above it to the new one: segments
 * never overlap, whatever the publishers' timing.
 *
 * Appending inserts through the table AM and the index AM directly, as
 * COPY and the catalog code do: no parse, plan or executor per message.
 * Batches use table_multi_insert with a BulkInsertState, in chunks of
 * STREAM_INSERT_CHUNK slots, each chunk's garbage freed with its memory
 * context.
 *
 * Rolling a segment needs a new table that every backend can see before
 * the switch, i.e. a committed one, which a publisher's own transaction
 * cannot provide; roller.c does it in a short-lived background worker.
 *
 * Readers find a partition's segments in a backend-local cache (one list
 * per partition), so that a read costs the same with ten segments retained
 * as with ten thousand.  Every change of stream._segments sends a relcache
 * invalidation at commit (the catalog's statement trigger); the cache is
 * flushed when one arrives, and the reader processes pending invalidations
 * before using it.  That is enough: a publisher writes to a new segment
 * only after the roll that created it committed, so its invalidation is
 * queued before any commit that makes rows of the new segment readable.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "lso.h"
#include "storage.h"
#include "stream.h"
#include "topic.h"

#define STREAM_INSERT_CHUNK 1000

/* A partition's segment list in the backend-local cache. */
typedef struct SegmentCacheKey
{
	int32		topic_id;
	int32		partition;
} SegmentCacheKey;

typedef struct SegmentCacheEntry
{
	SegmentCacheKey key;
	int			nsegments;
	StreamSegment *segments;	/* oldest first, in segment_cxt */
} SegmentCacheEntry;

static HTAB *segment_cache = NULL;
static MemoryContext segment_cxt = NULL;
static Oid	segments_relid = InvalidOid;	/* stream._segments, once known */

static List *list_segments(int32 topic_id, int32 partition, Snapshot snapshot,
						   Oid *catalog_relid);

/* Insert msgs (all for one partition, offsets assigned) into one segment. */
static void
insert_into_segment(Oid relid, Oid indexid, StreamMessage **msgs, int n,
					TimestampTz now)
{
	Relation	rel;
	Relation	idx;
	IndexInfo  *indexInfo;
	CommandId	cid = GetCurrentCommandId(true);
	MemoryContext chunkcxt;
	MemoryContext oldcxt;
	TupleTableSlot **slots;
	BulkInsertState bistate = NULL;
	int			nslots = Min(n, STREAM_INSERT_CHUNK);
	int			done = 0;
	int			i;

	/*
	 * The segment may have been dropped with its topic between the offset
	 * reservation and here; say so instead of "could not open relation".
	 */
	rel = try_table_open(relid, RowExclusiveLock);
	if (rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("topic was dropped concurrently")));
	idx = index_open(indexid, RowExclusiveLock);
	indexInfo = BuildIndexInfo(idx);

	slots = palloc(sizeof(TupleTableSlot *) * nslots);
	for (i = 0; i < nslots; i++)
		slots[i] = table_slot_create(rel, NULL);
	if (n > 1)
		bistate = GetBulkInsertState();

	chunkcxt = AllocSetContextCreate(CurrentMemoryContext, "stream append",
									 ALLOCSET_DEFAULT_SIZES);

	while (done < n)
	{
		int			k = Min(n - done, nslots);

		oldcxt = MemoryContextSwitchTo(chunkcxt);
		for (i = 0; i < k; i++)
		{
			StreamMessage *m = msgs[done + i];
			TupleTableSlot *slot = slots[i];

			ExecClearTuple(slot);
			slot->tts_values[Anum_seg_offset - 1] = Int64GetDatum(m->offset);
			slot->tts_isnull[Anum_seg_offset - 1] = false;
			slot->tts_values[Anum_seg_key - 1] = m->key;
			slot->tts_isnull[Anum_seg_key - 1] = m->key_null;
			slot->tts_values[Anum_seg_value - 1] = m->value;
			slot->tts_isnull[Anum_seg_value - 1] = m->value_null;
			slot->tts_values[Anum_seg_headers - 1] = m->headers;
			slot->tts_isnull[Anum_seg_headers - 1] = m->headers_null;
			slot->tts_values[Anum_seg_published_at - 1] = TimestampTzGetDatum(now);
			slot->tts_isnull[Anum_seg_published_at - 1] = false;
			ExecStoreVirtualTuple(slot);
		}

		if (k == 1)
			table_tuple_insert(rel, slots[0], cid, 0, bistate);
		else
			table_multi_insert(rel, slots, k, cid, 0, bistate);

		for (i = 0; i < k; i++)
		{
			Datum		key = Int64GetDatum(msgs[done + i]->offset);
			bool		isnull = false;

			index_insert(idx, &key, &isnull, &slots[i]->tts_tid, rel,
						 UNIQUE_CHECK_YES, false, indexInfo);
		}
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(chunkcxt);
		done += k;
	}

	if (bistate)
		FreeBulkInsertState(bistate);
	for (i = 0; i < nslots; i++)
		ExecDropSingleTupleTableSlot(slots[i]);
	MemoryContextDelete(chunkcxt);
	pfree(slots);

	/* locks stay until the end of the transaction, as for any DML */
	index_close(idx, NoLock);
	table_close(rel, NoLock);
}

/* Stored size of a message, as counted against segment_bytes. */
static int64
message_bytes(StreamMessage *m)
{
	int64		size = 32;		/* offset, timestamp and tuple header, roughly */

	if (!m->key_null)
		size += VARSIZE_ANY(DatumGetPointer(m->key));
	if (!m->value_null)
		size += VARSIZE_ANY(DatumGetPointer(m->value));
	if (!m->headers_null)
		size += VARSIZE_ANY(DatumGetPointer(m->headers));
	return size;
}

/*
 * Append messages to a topic.  Each message carries its partition; offsets
 * are assigned per partition in array order (so call order is offset
 * order) and written back into the messages.
 */
void
stream_append(StreamTopic *topic, StreamMessage *msgs, int n)
{
	StreamMessage **bypart;
	int		   *counts;
	int		   *starts;
	int			p;
	int			i;
	TimestampTz now = GetCurrentTimestamp();

	if (n == 0)
		return;

	/* bucket the messages by partition, keeping their order */
	counts = palloc0(sizeof(int) * (topic->partitions + 1));
	for (i = 0; i < n; i++)
		counts[msgs[i].partition + 1]++;
	starts = palloc(sizeof(int) * (topic->partitions + 1));
	starts[0] = 0;
	for (p = 0; p < topic->partitions; p++)
		starts[p + 1] = starts[p] + counts[p + 1];
	bypart = palloc(sizeof(StreamMessage *) * n);
	for (i = 0; i < n; i++)
		bypart[starts[msgs[i].partition]++] = &msgs[i];
	/* starts[p] is now the end of bucket p; its start is starts[p] - counts[p+1] */

	for (p = 0; p < topic->partitions; p++)
	{
		int			k = counts[p + 1];
		StreamMessage **bucket;
		StreamPartition *part;
		int64		first;
		int64		segment;
		int64		nbytes = 0;
		Oid			relid;
		Oid			indexid;
		bool		roll;

		if (k == 0)
			continue;
		bucket = &bypart[starts[p] - k];
		for (i = 0; i < k; i++)
			nbytes += message_bytes(bucket[i]);

		part = stream_partition_lock(topic, p);
		first = stream_reserve_offsets(part, k, nbytes, topic->segment_bytes,
									   &segment, &relid, &indexid, &roll);
		stream_partition_unlock();

		for (i = 0; i < k; i++)
			bucket[i]->offset = first + i;

		insert_into_segment(relid, indexid, bucket, k, now);

		if (roll && !stream_launch_roller(MyDatabaseId, topic, p, segment))
		{
			part = stream_partition_lock(topic, p);
			stream_partition_roll_failed(part);
			stream_partition_unlock();
		}
	}

	pfree(bypart);
	pfree(starts);
	pfree(counts);
}

/*
 * Read the tail of a partition from disk: its newest segment (which takes
 * inserts), the next offset to hand out and the newest segment's size.
 * Reads with a fresh snapshot whatever the isolation level: a stale view
 * here would hand out offsets twice.  *provisional is set when the newest
 * segment was created by the current transaction (create_topic or
 * alter_topic earlier in it), which may still roll back.
 */
void
stream_load_tail(int32 topic_id, int32 partition, int64 *segment, Oid *relid,
				 Oid *indexid, int64 *next_offset, int64 *bytes, bool *provisional)
{
	StreamInternalState internal;
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[2] = {INT4OID, INT4OID};
	Datum		args[2];
	Snapshot	snap;
	int			ret;
	bool		isnull;
	HeapTuple	tup;
	TupleDesc	desc;

	stream_internal_begin(&internal);
	SPI_connect();
	if (plan == NULL)
	{
		plan = SPI_prepare("SELECT segment_id, relid, indexid, next_offset, bytes, segment_xmin "
						   "FROM stream._partition_tail($1, $2)", 2, argtypes);
		if (plan == NULL)
			elog(ERROR, "stream: SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
	}
	args[0] = Int32GetDatum(topic_id);
	args[1] = Int32GetDatum(partition);
	snap = RegisterSnapshot(GetLatestSnapshot());
	ret = SPI_execute_snapshot(plan, args, NULL, snap, InvalidSnapshot, true, false, 1);
	UnregisterSnapshot(snap);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "stream: could not read the tail of partition %d of topic %d",
			 partition, topic_id);
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	*segment = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("partition %d of topic %d has no segment", partition, topic_id),
				 errhint("The topic may have been dropped concurrently.")));
	*relid = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
	*indexid = DatumGetObjectId(SPI_getbinval(tup, desc, 3, &isnull));
	*next_offset = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
	*bytes = DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull));
	*provisional = TransactionIdIsCurrentTransactionId(
		DatumGetTransactionId(SPI_getbinval(tup, desc, 6, &isnull)));
	SPI_finish();
	stream_internal_end(&internal);
}

/* List a partition's segments, oldest first, as seen by snapshot. */
List *
stream_list_segments(int32 topic_id, int32 partition, Snapshot snapshot)
{
	return list_segments(topic_id, partition, snapshot, NULL);
}

/* Read the segment list from stream._segments; also returns its relid. */
static List *
list_segments(int32 topic_id, int32 partition, Snapshot snapshot, Oid *catalog_relid)
{
	StreamInternalState internal;
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[2] = {INT4OID, INT4OID};
	Datum		args[2];
	MemoryContext callercxt = CurrentMemoryContext;
	List	   *result = NIL;
	uint64		i;
	int			ret;

	stream_internal_begin(&internal);
	SPI_connect();
	if (plan == NULL)
	{
		plan = SPI_prepare("SELECT segment_id, base_offset, "
						   "to_regclass('stream_data.seg_' || segment_id)::oid, "
						   "'stream._segments'::regclass::oid "
						   "FROM stream._segments WHERE topic_id = $1 AND partition = $2 "
						   "ORDER BY segment_id", 2, argtypes);
		if (plan == NULL)
			elog(ERROR, "stream: SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
	}
	args[0] = Int32GetDatum(topic_id);
	args[1] = Int32GetDatum(partition);
	ret = SPI_execute_snapshot(plan, args, NULL, snapshot, InvalidSnapshot, true, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "stream: listing segments failed: %s", SPI_result_code_string(ret));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		StreamSegment *seg = MemoryContextAlloc(callercxt, sizeof(StreamSegment));
		MemoryContext old;

		seg->segment_id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		seg->base_offset = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		if (isnull)
			seg->base_offset = -1;
		seg->relid = DatumGetObjectId(SPI_getbinval(tup, desc, 3, &isnull));
		if (isnull)
			seg->relid = InvalidOid;
		if (catalog_relid)
			*catalog_relid = DatumGetObjectId(SPI_getbinval(tup, desc, 4, &isnull));
		old = MemoryContextSwitchTo(callercxt);
		result = lappend(result, seg);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	stream_internal_end(&internal);
	return result;
}

/* Flush the segment cache when stream._segments changed (or on a reset). */
static void
segment_cache_callback(Datum arg, Oid relid)
{
	if (segment_cache == NULL)
		return;
	if (OidIsValid(relid) && OidIsValid(segments_relid) && relid != segments_relid)
		return;
	/* the hash table lives in segment_cxt too */
	MemoryContextReset(segment_cxt);
	segment_cache = NULL;
}

/* Register the cache's invalidation callback (once per backend, from _PG_init). */
void
stream_storage_init(void)
{
	CacheRegisterRelcacheCallback(segment_cache_callback, (Datum) 0);
}

/*
 * List a partition's segments for a reader, oldest first, from the cache.
 * The list is a copy in the caller's memory context: opening a segment
 * later may process invalidations that free the cached one.
 */
List *
stream_cached_segments(int32 topic_id, int32 partition)
{
	SegmentCacheKey key;
	SegmentCacheEntry *entry;
	List	   *result = NIL;
	bool		found;
	int			i;

	/* a roll or drop that committed must be seen now (see the header comment) */
	AcceptInvalidationMessages();

	key.topic_id = topic_id;
	key.partition = partition;
	if (segment_cache != NULL &&
		(entry = hash_search(segment_cache, &key, HASH_FIND, NULL)) != NULL)
	{
		for (i = 0; i < entry->nsegments; i++)
		{
			StreamSegment *seg = palloc(sizeof(StreamSegment));

			*seg = entry->segments[i];
			result = lappend(result, seg);
		}
		return result;
	}

	{
		Snapshot	snapshot = RegisterSnapshot(GetLatestSnapshot());
		Oid			relid = InvalidOid;

		result = list_segments(topic_id, partition, snapshot, &relid);
		UnregisterSnapshot(snapshot);
		if (OidIsValid(relid))
			segments_relid = relid;
	}

	/* listing may have processed invalidations; the cache is rebuilt if so */
	if (segment_cxt == NULL)
		segment_cxt = AllocSetContextCreate(CacheMemoryContext, "stream segment cache",
											ALLOCSET_SMALL_SIZES);
	if (segment_cache == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(SegmentCacheKey);
		ctl.entrysize = sizeof(SegmentCacheEntry);
		ctl.hcxt = segment_cxt;
		segment_cache = hash_create("stream segment cache", 64, &ctl,
									HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	entry = hash_search(segment_cache, &key, HASH_ENTER, &found);
	entry->nsegments = list_length(result);
	entry->segments = MemoryContextAlloc(segment_cxt,
										 sizeof(StreamSegment) * Max(entry->nsegments, 1));
	i = 0;
	{
		ListCell   *lc;

		foreach(lc, result)
			entry->segments[i++] = *(StreamSegment *) lfirst(lc);
	}
	return result;
}
