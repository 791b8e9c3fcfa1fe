/*-------------------------------------------------------------------------
 *
 * retention.c
 *	  The retention background worker: drops whole expired segments.
 *
 * Like Kafka deleting log segments and PgQ rotating tables, retention never
 * deletes rows: it drops a partition's oldest segment tables, which costs
 * the same whatever they hold and leaves no dead tuples behind.  Each cycle
 * (every stream.naptime) the worker, connected to stream.database, looks at
 * the partitions of topics with a retention, oldest segment first:
 *
 *	- a segment expires by time when its newest message is older than the
 *	  topic's retention, and by size when the partition would still hold at
 *	  least retention_bytes without it (Kafka's rule);
 *	- only closed segments go: never the newest one, and only when every
 *	  offset below the next segment's base is below the partition's last
 *	  stable offset, so no open transaction still writes into it;
 *	- it takes the segment's AccessExclusiveLock without waiting: a segment
 *	  that a reader (or any user transaction) has open is skipped and
 *	  retried next cycle, so the worker never queues behind a long
 *	  transaction and never makes publishers wait.
 *
 * A topic with a time retention also has its active segment rolled once its
 * first message is older than half the retention, so that a segment holds
 * at most half a retention of messages and nothing older than about 1.5 x
 * retention + naptime survives.
 *
 * Every partition is handled in its own transaction, and an error (a topic
 * dropped mid-cycle, say) is logged and skipped.  Each cycle that did
 * something, or failed, leaves a row in stream._retention_runs (the last
 * 1000 are kept).  When the extension is not installed in stream.database
 * the worker says so once and keeps waiting.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "read.h"
#include "retention.h"
#include "storage.h"
#include "stream.h"
#include "topic.h"

PGDLLEXPORT void stream_retention_main(Datum arg);

/* One partition of a topic with a retention. */
typedef struct RetentionTarget
{
	int32		topic_id;
	char		topic[STREAM_TOPIC_MAXLEN + 1];
	TimestampTz created_at;
	int64		retention_us;	/* 0: no time retention */
	int64		retention_bytes;	/* 0: no size retention */
	int32		partition;
} RetentionTarget;

/* Totals of one cycle. */
typedef struct RetentionStats
{
	int			partitions;
	int			dropped;
	int64		bytes;
	int			rolled;
	int			skipped;
	int			errors;
	StringInfoData errmsgs;
} RetentionStats;

/* Register the static worker (from _PG_init, when preloaded). */
void
stream_retention_register(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "stream");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "stream_retention_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "stream retention worker");
	snprintf(worker.bgw_type, BGW_MAXLEN, "stream retention worker");
	RegisterBackgroundWorker(&worker);
}

/* Start a transaction with a snapshot and SPI, for one unit of work. */
static void
begin_unit(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

/* Commit the unit started by begin_unit. */
static void
end_unit(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* Is the extension installed here?  Also lists the partitions to check. */
static List *
list_targets(bool *installed)
{
	List	   *targets = NIL;
	MemoryContext callercxt = CurrentMemoryContext;
	uint64		i;

	begin_unit("stream: listing topics with retention");
	SPI_execute("SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'stream'", true, 1);
	*installed = (SPI_processed == 1);
	if (*installed)
	{
		if (SPI_execute("SELECT t.topic_id, t.topic, t.created_at, "
						"coalesce((extract(epoch FROM t.retention) * 1000000)::int8, 0), "
						"coalesce(t.retention_bytes, 0), p.partition "
						"FROM stream._topics t JOIN stream._partitions p USING (topic_id) "
						"WHERE t.retention IS NOT NULL OR t.retention_bytes IS NOT NULL "
						"ORDER BY t.topic_id, p.partition", true, 0) != SPI_OK_SELECT)
			elog(ERROR, "stream retention: listing topics failed");
		for (i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			RetentionTarget *t = MemoryContextAllocZero(callercxt, sizeof(RetentionTarget));
			MemoryContext old;
			char	   *name;

			t->topic_id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
			name = SPI_getvalue(tup, desc, 2);
			strlcpy(t->topic, name, sizeof(t->topic));
			t->created_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 3, &isnull));
			t->retention_us = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
			t->retention_bytes = DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull));
			t->partition = DatumGetInt32(SPI_getbinval(tup, desc, 6, &isnull));
			old = MemoryContextSwitchTo(callercxt);
			targets = lappend(targets, t);
			MemoryContextSwitchTo(old);
		}
	}
	end_unit();
	return targets;
}

/*
 * Drop the expired segments of one partition, in the current transaction.
 * Returns the active segment to roll (0 for none) through *roll_segment.
 */
static void
expire_partition(RetentionTarget *t, RetentionStats *stats, int64 *roll_segment)
{
	Oid			types[2] = {INT4OID, INT4OID};
	Datum		args[2];
	StreamTopic *topic;
	SPITupleTable *segs;
	int64		lso;
	int64		end_offset;
	int64		total = 0;
	uint64		n;
	uint64		i;
	TimestampTz now = GetCurrentTimestamp();
	int			dropped = 0;
	int64		dropped_bytes = 0;
	int64		first_dropped = -1;
	int64		new_start = -1;

	*roll_segment = 0;
	args[0] = Int32GetDatum(t->topic_id);
	args[1] = Int32GetDatum(t->partition);

	/* serialise with rollers, alter_topic and drop_topic; skip if busy */
	if (SPI_execute_with_args("SELECT 1 FROM stream._partitions p JOIN stream._topics t USING (topic_id) "
							  "WHERE p.topic_id = $1 AND p.partition = $2 "
							  "FOR NO KEY UPDATE OF p SKIP LOCKED",
							  2, types, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "stream retention: locking the partition failed");
	if (SPI_processed == 0)
	{
		stats->skipped++;
		return;
	}

	topic = stream_topic_lookup_cstr(t->topic);
	if (topic->topic_id != t->topic_id || topic->created_at != t->created_at)
		return;					/* dropped and created again meanwhile */
	lso = stream_partition_bounds(topic, t->partition, &end_offset);

	if (SPI_execute_with_args("SELECT segment_id, base_offset, next_base, relid, bytes, "
							  "newest_at, oldest_at FROM stream._segment_ages($1, $2)",
							  2, types, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "stream retention: listing segments failed");
	/* keep the list: the statements below replace SPI_tuptable */
	segs = SPI_tuptable;
	n = SPI_processed;
	for (i = 0; i < n; i++)
	{
		bool		isnull;

		total += DatumGetInt64(SPI_getbinval(segs->vals[i], segs->tupdesc, 5, &isnull));
	}

	for (i = 0; i + 1 < n; i++)
	{
		HeapTuple	tup = segs->vals[i];
		TupleDesc	desc = segs->tupdesc;
		bool		isnull;
		bool		base_null;
		bool		next_null;
		bool		newest_null;
		int64		segment_id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		int64		base = DatumGetInt64(SPI_getbinval(tup, desc, 2, &base_null));
		int64		next_base = DatumGetInt64(SPI_getbinval(tup, desc, 3, &next_null));
		Oid			relid = DatumGetObjectId(SPI_getbinval(tup, desc, 4, &isnull));
		int64		bytes = DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull));
		TimestampTz newest = DatumGetTimestampTz(SPI_getbinval(tup, desc, 6, &newest_null));
		bool		by_time;
		bool		by_size;
		char		sql[128];

		/* every offset of the segment must be settled */
		if (next_null || next_base > lso || !OidIsValid(relid))
			break;
		by_time = t->retention_us > 0 &&
			(newest_null || newest < now - t->retention_us);
		by_size = t->retention_bytes > 0 && total - bytes >= t->retention_bytes;
		if (!by_time && !by_size)
			break;
		/* never wait for a reader or a user's long transaction */
		if (!ConditionalLockRelationOid(relid, AccessExclusiveLock))
		{
			stats->skipped++;
			break;
		}
		snprintf(sql, sizeof(sql), "DELETE FROM stream._segments WHERE segment_id = " INT64_FORMAT,
				 segment_id);
		if (SPI_execute(sql, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "stream retention: deleting segment " INT64_FORMAT " failed", segment_id);
		snprintf(sql, sizeof(sql), "DROP TABLE stream_data.seg_" INT64_FORMAT, segment_id);
		if (SPI_execute(sql, false, 0) != SPI_OK_UTILITY)
			elog(ERROR, "stream retention: dropping segment " INT64_FORMAT " failed", segment_id);
		if (first_dropped < 0)
			first_dropped = base_null ? 0 : base;
		new_start = next_base;
		total -= bytes;
		dropped++;
		dropped_bytes += bytes;
	}

	if (dropped > 0)
	{
		ereport(LOG,
				(errmsg("stream: removed %d expired segment%s (offsets " INT64_FORMAT " to " INT64_FORMAT ", " INT64_FORMAT " bytes) of partition %d of topic \"%s\"",
						dropped, dropped == 1 ? "" : "s", first_dropped, new_start - 1,
						dropped_bytes, t->partition, t->topic),
				 errdetail("The log start offset is now " INT64_FORMAT ".", new_start)));
		stats->dropped += dropped;
		stats->bytes += dropped_bytes;
	}

	/* roll the active segment once its first message is half a retention old */
	if (t->retention_us > 0 && n > 0)
	{
		HeapTuple	tup = segs->vals[n - 1];
		TupleDesc	desc = segs->tupdesc;
		bool		isnull;
		bool		oldest_null;
		int64		segment_id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		TimestampTz oldest = DatumGetTimestampTz(SPI_getbinval(tup, desc, 7, &oldest_null));

		if (!oldest_null && oldest < now - t->retention_us / 2)
			*roll_segment = segment_id;
	}
}

/* Append a row to the run log and keep only the last 1000. */
static void
log_run(TimestampTz started, RetentionStats *stats)
{
	Oid			types[8] = {TIMESTAMPTZOID, INT4OID, INT4OID, INT8OID, INT4OID, INT4OID, INT4OID, TEXTOID};
	Datum		args[8];
	char		nulls[8];

	memset(nulls, ' ', sizeof(nulls));
	args[0] = TimestampTzGetDatum(started);
	args[1] = Int32GetDatum(stats->partitions);
	args[2] = Int32GetDatum(stats->dropped);
	args[3] = Int64GetDatum(stats->bytes);
	args[4] = Int32GetDatum(stats->rolled);
	args[5] = Int32GetDatum(stats->skipped);
	args[6] = Int32GetDatum(stats->errors);
	if (stats->errmsgs.len > 0)
		args[7] = CStringGetTextDatum(stats->errmsgs.data);
	else
		nulls[7] = 'n';

	begin_unit("stream: logging the retention cycle");
	SPI_execute_with_args("INSERT INTO stream._retention_runs (started_at, finished_at, partitions, "
						  "segments_dropped, bytes_dropped, segments_rolled, skipped, errors, error) "
						  "VALUES ($1, clock_timestamp(), $2, $3, $4, $5, $6, $7, $8)",
						  8, types, args, nulls, false, 0);
	SPI_execute("DELETE FROM stream._retention_runs WHERE run_id <= "
				"(SELECT max(run_id) - 1000 FROM stream._retention_runs)", false, 0);
	end_unit();
}

/* One cycle over every partition of every topic with a retention. */
static void
run_cycle(bool *warned)
{
	List	   *targets;
	ListCell   *lc;
	bool		installed;
	RetentionStats stats;
	TimestampTz started = GetCurrentTimestamp();

	targets = list_targets(&installed);
	if (!installed)
	{
		if (!*warned)
			ereport(LOG,
					(errmsg("stream retention worker: extension \"stream\" is not installed in database \"%s\", waiting",
							stream_database),
					 errhint("Run CREATE EXTENSION stream there, or set stream.database to the database that has it.")));
		*warned = true;
		return;
	}
	*warned = false;

	memset(&stats, 0, sizeof(stats));
	initStringInfo(&stats.errmsgs);
	foreach(lc, targets)
	{
		RetentionTarget *t = (RetentionTarget *) lfirst(lc);
		MemoryContext cxt = CurrentMemoryContext;
		int64		roll_segment = 0;

		CHECK_FOR_INTERRUPTS();
		stats.partitions++;
		PG_TRY();
		{
			begin_unit("stream: enforcing retention");
			expire_partition(t, &stats, &roll_segment);
			end_unit();
			if (roll_segment > 0 &&
				stream_roll_partition(MyDatabaseId, t->topic_id, t->partition,
									  t->created_at, roll_segment))
				stats.rolled++;
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			/* log it, count it, and go on with the next partition */
			MemoryContextSwitchTo(cxt);
			edata = CopyErrorData();
			FlushErrorState();
			AbortCurrentTransaction();
			ereport(LOG,
					(errmsg("stream retention worker: partition %d of topic \"%s\" skipped: %s",
							t->partition, t->topic, edata->message)));
			if (stats.errmsgs.len < 1000)
				appendStringInfo(&stats.errmsgs, "%s%s/%d: %s", stats.errmsgs.len ? "; " : "",
								 t->topic, t->partition, edata->message);
			FreeErrorData(edata);
			stats.errors++;
		}
		PG_END_TRY();
	}

	if (stats.dropped > 0 || stats.rolled > 0 || stats.errors > 0)
		log_run(started, &stats);
}

/* Background worker entry point. */
void
stream_retention_main(Datum arg)
{
	MemoryContext cycle_cxt;
	bool		warned = false;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(stream_database, NULL, 0);
	pgstat_report_appname("stream retention worker");

	cycle_cxt = AllocSetContextCreate(TopMemoryContext, "stream retention cycle",
									  ALLOCSET_DEFAULT_SIZES);
	ereport(LOG,
			(errmsg("stream retention worker started in database \"%s\" (naptime %d ms)",
					stream_database, stream_naptime)));

	for (;;)
	{
		MemoryContext old;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		old = MemoryContextSwitchTo(cycle_cxt);
		run_cycle(&warned);
		MemoryContextSwitchTo(old);
		MemoryContextReset(cycle_cxt);
		pgstat_report_stat(true);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 stream_naptime, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
