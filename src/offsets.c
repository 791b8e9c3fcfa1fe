/*-------------------------------------------------------------------------
 *
 * offsets.c
 *	  Committed offsets of consumer groups, and the offsets resets use.
 *
 * A committed offset is the offset of the NEXT message the group will read
 * (Kafka's convention), one row per (group, topic, partition) in
 * stream._offsets.  It is written in the caller's transaction, so a
 * consumer that polls, writes its own results and commits in one
 * transaction gets exactly-once effects: all of it or none of it.  The
 * table is updated in place (fillfactor 50, no indexed column changes) so
 * that constant commits stay HOT and the table small.
 *
 * Reads of committed offsets use a fresh snapshot: a new owner of a
 * partition must see the offset its previous owner committed a moment ago,
 * whatever its own isolation level.
 *
 * The owner of a partition is the only writer of its row, so it remembers
 * where the row's newest version is (its ctid, returned by every read and
 * write) and updates that version directly, by TID.  A keyed update would
 * walk every version of the row that a long-running snapshot keeps from
 * being pruned, at every commit; the TID update costs the same however many
 * there are.  When the remembered version is gone (seek or reset_offsets of
 * an idle partition, VACUUM FULL), the TID update finds no row and the
 * keyed one runs.  A TID fetch does not prune the page as an index fetch
 * does, so we prune it first ourselves (heap_page_prune_opt, which does
 * nothing unless the page is filling up and has versions to remove):
 * otherwise HOT chains would grow until autovacuum came by.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "storage/bufmgr.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "offsets.h"
#include "read.h"
#include "stream.h"
#include "topic.h"

/*
 * Run a cached one-row, one-column int8 query as the extension, with a
 * fresh snapshot when fresh or write.  A write (the offset upsert) runs in
 * the caller's transaction but sees the latest committed row: under
 * REPEATABLE READ the transaction snapshot could predate the commit of the
 * partition's previous owner and fail with a serialization error, although
 * only the owner ever writes the row.
 */
static bool
run_int8_tid(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types, Datum *args,
			 bool fresh, bool write, int64 *out, ItemPointer tid)
{
	StreamInternalState internal;
	bool		isnull = true;
	int			ret;

	stream_internal_begin(&internal);
	SPI_connect();
	if (*plan == NULL)
	{
		*plan = SPI_prepare(sql, nargs, types);
		if (*plan == NULL)
			elog(ERROR, "stream: SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(*plan);
	}
	if (fresh || write)
	{
		Snapshot	snap = RegisterSnapshot(GetLatestSnapshot());

		ret = SPI_execute_snapshot(*plan, args, NULL, snap, InvalidSnapshot, !write, write, 1);
		UnregisterSnapshot(snap);
	}
	else
		ret = SPI_execute_plan(*plan, args, NULL, true, 1);
	if (ret < 0)
		elog(ERROR, "stream: offset query failed: %s", SPI_result_code_string(ret));
	if (SPI_processed > 0 && SPI_tuptable != NULL)
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			*out = DatumGetInt64(d);
		if (tid != NULL)
		{
			bool		tidnull;

			d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &tidnull);
			if (tidnull)
				ItemPointerSetInvalid(tid);
			else
				ItemPointerCopy((ItemPointer) DatumGetPointer(d), tid);
		}
	}
	SPI_finish();
	stream_internal_end(&internal);
	return !isnull;
}

/* run_int8_tid for queries of one int8 column. */
static bool
run_int8(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types, Datum *args,
		 bool fresh, bool write, int64 *out)
{
	return run_int8_tid(plan, sql, nargs, types, args, fresh, write, out, NULL);
}

/*
 * Committed offset of (group, topic, partition); false when none.  *tid is
 * where the row's newest version is (invalid when there is none).
 */
bool
stream_load_committed(const char *group, int32 topic_id, int32 partition, int64 *offset,
					  ItemPointer tid)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[3] = {TEXTOID, INT4OID, INT4OID};
	Datum		args[3];

	args[0] = CStringGetTextDatum(group);
	args[1] = Int32GetDatum(topic_id);
	args[2] = Int32GetDatum(partition);
	ItemPointerSetInvalid(tid);
	return run_int8_tid(&plan,
						"SELECT committed_offset, ctid FROM stream._offsets "
						"WHERE group_name = $1 AND topic_id = $2 AND partition = $3",
						3, types, args, true, false, offset, tid);
}

/* Prune the page of stream._offsets that holds tid, if it needs it. */
static void
prune_offsets_page(ItemPointer tid)
{
	Oid			relid = get_relname_relid("_offsets", get_namespace_oid("stream", false));
	Relation	rel;
	BlockNumber block = ItemPointerGetBlockNumber(tid);

	if (!OidIsValid(relid))
		return;
	/* the lock the UPDATE takes next anyway */
	rel = table_open(relid, RowExclusiveLock);
	if (block < RelationGetNumberOfBlocks(rel))
	{
		Buffer		buf = ReadBuffer(rel, block);

		heap_page_prune_opt(rel, buf);
		ReleaseBuffer(buf);
	}
	table_close(rel, NoLock);
}

/*
 * Store a committed offset in the current transaction.  *tid: where the
 * row's newest version was (or invalid), and on return where it is now.
 * The catalog has no foreign keys (see stream._partitions in
 * sql/stream.sql): a new row locks its partition row FOR KEY SHARE as a key
 * would, so that it cannot outlive a concurrent drop_topic; an update of an
 * existing row needs no lock (the drop deletes that row, which the update
 * waits for).
 */
void
stream_store_committed(const char *group, int32 topic_id, int32 partition, int64 offset,
					   ItemPointer tid)
{
	static SPIPlanPtr tid_plan = NULL;
	static SPIPlanPtr update_plan = NULL;
	static SPIPlanPtr insert_plan = NULL;
	Oid			types[5] = {TEXTOID, INT4OID, INT4OID, INT8OID, TIDOID};
	Datum		args[5];
	int64		dummy;

	args[0] = CStringGetTextDatum(group);
	args[1] = Int32GetDatum(topic_id);
	args[2] = Int32GetDatum(partition);
	args[3] = Int64GetDatum(offset);
	if (ItemPointerIsValid(tid))
	{
		prune_offsets_page(tid);
		args[4] = PointerGetDatum(tid);
		/* the key columns too: a TID alone could name a reused slot */
		if (run_int8_tid(&tid_plan,
						 "UPDATE stream._offsets "
						 "SET committed_offset = $4, committed_at = clock_timestamp() "
						 "WHERE ctid = $5 AND group_name = $1 AND topic_id = $2 AND partition = $3 "
						 "RETURNING 1::int8, ctid",
						 5, types, args, false, true, &dummy, tid))
			return;
	}
	if (run_int8_tid(&update_plan,
					 "UPDATE stream._offsets "
					 "SET committed_offset = $4, committed_at = clock_timestamp() "
					 "WHERE group_name = $1 AND topic_id = $2 AND partition = $3 "
					 "RETURNING 1::int8, ctid",
					 4, types, args, false, true, &dummy, tid))
		return;
	if (!run_int8_tid(&insert_plan,
					  "INSERT INTO stream._offsets AS o "
					  "(group_name, topic_id, partition, committed_offset, committed_at) "
					  "SELECT $1, $2, $3, $4, clock_timestamp() FROM stream._partitions p "
					  "WHERE p.topic_id = $2 AND p.partition = $3 FOR KEY SHARE "
					  "ON CONFLICT (group_name, topic_id, partition) DO UPDATE "
					  "SET committed_offset = excluded.committed_offset, "
					  "committed_at = excluded.committed_at "
					  "RETURNING 1::int8, o.ctid",
					  4, types, args, false, true, &dummy, tid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("partition %d of the topic was dropped while the offset was committed",
						partition)));
}

/* Does the group have any committed offset (in any topic)? */
bool
stream_group_has_offsets(const char *group)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {TEXTOID};
	Datum		args[1];
	int64		one;

	args[0] = CStringGetTextDatum(group);
	return run_int8(&plan,
					"SELECT 1::int8 FROM stream._offsets WHERE group_name = $1 LIMIT 1",
					1, types, args, true, false, &one);
}

/* First retained offset of a partition. */
int64
stream_earliest_offset(StreamTopic *topic, int32 partition)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {INT4OID, INT4OID};
	Datum		args[2];
	int64		offset = 0;

	args[0] = Int32GetDatum(topic->topic_id);
	args[1] = Int32GetDatum(partition);
	(void) run_int8(&plan, "SELECT stream._partition_start($1, $2)",
					2, types, args, true, false, &offset);
	return offset;
}

/*
 * The "latest" position: the last stable offset, but never above the offset
 * after the last stored message.  Offsets handed out to transactions that
 * rolled back at the very end of a partition may be handed out again after a
 * restart (lso.c), so a position beyond the stored data could skip them.
 */
int64
stream_latest_offset(StreamTopic *topic, int32 partition)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {INT4OID, INT4OID};
	Datum		args[2];
	int64		end_offset;
	int64		lso;
	int64		tail = 0;

	lso = stream_partition_bounds(topic, partition, &end_offset);
	args[0] = Int32GetDatum(topic->topic_id);
	args[1] = Int32GetDatum(partition);
	(void) run_int8(&plan, "SELECT next_offset FROM stream._partition_tail($1, $2)",
					2, types, args, true, false, &tail);
	return Min(lso, tail);
}

/* First offset published at or after ts; the latest offset when none. */
int64
stream_offset_for_time(StreamTopic *topic, int32 partition, TimestampTz ts)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[3] = {INT4OID, INT4OID, TIMESTAMPTZOID};
	Datum		args[3];
	int64		offset;
	int64		latest = stream_latest_offset(topic, partition);

	args[0] = Int32GetDatum(topic->topic_id);
	args[1] = Int32GetDatum(partition);
	args[2] = TimestampTzGetDatum(ts);
	if (run_int8(&plan, "SELECT stream._offset_for_time($1, $2, $3)",
				 3, types, args, true, false, &offset))
		return Min(offset, latest);
	return latest;
}

/* Does the topic incarnation (id, creation time) still exist? */
bool
stream_topic_exists(int32 topic_id, TimestampTz created)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {INT4OID, TIMESTAMPTZOID};
	Datum		args[2];
	int64		one;

	args[0] = Int32GetDatum(topic_id);
	args[1] = TimestampTzGetDatum(created);
	return run_int8(&plan,
					"SELECT 1::int8 FROM stream._topics WHERE topic_id = $1 AND created_at = $2",
					2, types, args, true, false, &one);
}
