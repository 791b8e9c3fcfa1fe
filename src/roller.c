/*-------------------------------------------------------------------------
 *
 * roller.c
 *	  Roll a partition's active segment in a short-lived background worker.
 *
 * When a publisher sees the active segment pass the topic's segment_bytes,
 * it starts one dynamic background worker for that partition (the shared
 * entry's roll_requested flag makes sure only one is asked for).  The
 * worker, in its own transaction, locks the partition's catalog row, creates
 * the next segment table and commits it; only then, with the new table
 * visible to everybody, does it switch the shared entry so that offsets
 * from the current next offset on go to the new segment.  A second short
 * transaction records that offset as the segment's base_offset.
 *
 * If the worker dies between the two steps, a committed but empty segment
 * with no base offset is left behind: the next roll switches to it instead
 * of creating another, and readers treat a missing base offset as "scan
 * this segment".  Publishers never wait for a roll: until the switch they
 * keep writing to the old segment.
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
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "lso.h"
#include "storage.h"
#include "stream.h"
#include "topic.h"

/* What a roller is asked to do, passed in bgw_extra. */
typedef struct RollRequest
{
	Oid			dbid;
	int32		topic_id;
	int32		partition;
	TimestampTz created;
	int64		segment;		/* the active segment that is full */
} RollRequest;

PGDLLEXPORT void stream_roller_main(Datum arg);

/* Start a roller for a partition; false when no worker slot is free. */
bool
stream_launch_roller(Oid dbid, StreamTopic *topic, int32 partition, int64 segment)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	RollRequest req;

	StaticAssertStmt(sizeof(RollRequest) <= BGW_EXTRALEN, "roll request too large");

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "stream");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "stream_roller_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "stream segment roller");
	snprintf(worker.bgw_type, BGW_MAXLEN, "stream segment roller");
	worker.bgw_notify_pid = 0;

	memset(&req, 0, sizeof(req));
	req.dbid = dbid;
	req.topic_id = topic->topic_id;
	req.partition = partition;
	req.created = topic->created_at;
	req.segment = segment;
	memcpy(worker.bgw_extra, &req, sizeof(req));

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		ereport(DEBUG1,
				(errmsg("could not start a segment roller for partition %d of topic \"%s\"",
						partition, topic->name),
				 errhint("The roll is retried on a later publish; consider raising max_worker_processes.")));
		return false;
	}
	return true;
}

/* Run one SQL statement with int arguments; return the first column. */
static Datum
roller_query(const char *sql, int nargs, Oid *types, Datum *args, bool *isnull)
{
	int			ret;

	ret = SPI_execute_with_args(sql, nargs, types, args, NULL, false, 1);
	if (ret < 0)
		elog(ERROR, "stream roller: query failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
	{
		*isnull = true;
		return (Datum) 0;
	}
	return SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, isnull);
}

/*
 * Roll one partition: create (or reuse) the next segment in a transaction of
 * its own, commit it, then switch the shared entry to it and record its base
 * offset.  Must be called outside any transaction, connected to the
 * partition's database.  Returns true when the switch happened.
 */
bool
stream_roll_partition(Oid dbid, int32 topic_id, int32 partition, TimestampTz created_at,
					  int64 segment)
{
	StreamPartition *part;
	Oid			types[3] = {INT4OID, INT4OID, INT8OID};
	Datum		args[3];
	bool		isnull;
	int64		newest;
	int64		target = 0;
	Oid			relid = InvalidOid;
	Oid			indexid = InvalidOid;
	int64		base = 0;
	bool		switched = false;
	bool		go = true;
	TimestampTz created;
	Oid			catalog;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());

	args[0] = Int32GetDatum(topic_id);
	args[1] = Int32GetDatum(partition);

	/* serialise with other rollers, alter_topic and drop_topic */
	created = DatumGetTimestampTz(roller_query(
		"SELECT t.created_at FROM stream._partitions p JOIN stream._topics t USING (topic_id) "
		"WHERE p.topic_id = $1 AND p.partition = $2 FOR NO KEY UPDATE OF p",
		2, types, args, &isnull));
	if (isnull || created != created_at)
		go = false;				/* topic dropped meanwhile */
	catalog = stream_topics_catalog_oid();

	if (go)
	{
		newest = DatumGetInt64(roller_query(
			"SELECT max(segment_id) FROM stream._segments WHERE topic_id = $1 AND partition = $2",
			2, types, args, &isnull));
		if (isnull || newest < segment)
			go = false;			/* the entry is behind the catalog: nothing to do */
		else if (newest > segment)
			target = newest;	/* reuse a segment a previous roll never switched to */
		else
		{
			args[2] = (Datum) 0;
			target = DatumGetInt64(roller_query(
				"SELECT stream._create_segment($1, $2, NULL)",
				2, types, args, &isnull));
		}
	}
	if (go)
	{
		args[0] = Int64GetDatum(target);
		relid = DatumGetObjectId(roller_query(
			"SELECT to_regclass('stream_data.seg_' || $1)::oid", 1, &types[2], args, &isnull));
		indexid = DatumGetObjectId(roller_query(
			"SELECT to_regclass('stream_data.seg_' || $1 || '_pkey')::oid", 1, &types[2], args, &isnull));
	}

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();

	/* the new table is committed: now publishers may be pointed at it */
	part = stream_partition_find(dbid, topic_id, partition, created_at, catalog);
	if (part != NULL)
	{
		if (go)
			switched = stream_partition_switch(part, segment, target, relid, indexid, &base);
		else
			stream_partition_roll_failed(part);
		stream_partition_unlock();
	}

	if (switched)
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		args[0] = Int64GetDatum(target);
		args[1] = Int64GetDatum(base);
		types[0] = INT8OID;
		types[1] = INT8OID;
		SPI_execute_with_args("UPDATE stream._segments SET base_offset = $2 "
							  "WHERE segment_id = $1 AND base_offset IS NULL",
							  2, types, args, NULL, false, 0);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		ereport(DEBUG1,
				(errmsg("stream: partition %d of topic %d rolled to segment " INT64_FORMAT " at offset " INT64_FORMAT,
						partition, topic_id, target, base)));
	}
	return switched;
}

/* Background worker entry point: roll the partition it was started for. */
void
stream_roller_main(Datum arg)
{
	RollRequest req;

	memcpy(&req, MyBgworkerEntry->bgw_extra, sizeof(req));
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(req.dbid, InvalidOid, 0);
	pgstat_report_activity(STATE_RUNNING, "stream: rolling segment");
	(void) stream_roll_partition(req.dbid, req.topic_id, req.partition, req.created,
								 req.segment);
	pgstat_report_activity(STATE_IDLE, NULL);
	proc_exit(0);
}
