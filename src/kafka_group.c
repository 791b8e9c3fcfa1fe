/*-------------------------------------------------------------------------
 *
 * kafka_group.c
 *	  PLACEHOLDER during development of issue 9: replaced entirely by its
 *	  implementation before anything lands.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "kafka.h"

KafkaResult
kafka_find_coordinator(KafkaRequest *req, StringInfo out, TimestampTz *wake_at)
{
	elog(ERROR, "stream: kafka_find_coordinator is not implemented yet");
	return KAFKA_CLOSE;
}

void
kafka_find_coordinator_error(KafkaRequest *req, StringInfo out, int16 error)
{
	kw_int16(out, error);
}

KafkaResult
kafka_join_group(KafkaRequest *req, StringInfo out, TimestampTz *wake_at)
{
	elog(ERROR, "stream: kafka_join_group is not implemented yet");
	return KAFKA_CLOSE;
}

void
kafka_join_group_error(KafkaRequest *req, StringInfo out, int16 error)
{
	kw_int16(out, error);
}

KafkaResult
kafka_sync_group(KafkaRequest *req, StringInfo out, TimestampTz *wake_at)
{
	elog(ERROR, "stream: kafka_sync_group is not implemented yet");
	return KAFKA_CLOSE;
}

void
kafka_sync_group_error(KafkaRequest *req, StringInfo out, int16 error)
{
	kw_int16(out, error);
}

KafkaResult
kafka_heartbeat(KafkaRequest *req, StringInfo out, TimestampTz *wake_at)
{
	elog(ERROR, "stream: kafka_heartbeat is not implemented yet");
	return KAFKA_CLOSE;
}

void
kafka_heartbeat_error(KafkaRequest *req, StringInfo out, int16 error)
{
	kw_int16(out, error);
}

KafkaResult
kafka_leave_group(KafkaRequest *req, StringInfo out, TimestampTz *wake_at)
{
	elog(ERROR, "stream: kafka_leave_group is not implemented yet");
	return KAFKA_CLOSE;
}

void
kafka_leave_group_error(KafkaRequest *req, StringInfo out, int16 error)
{
	kw_int16(out, error);
}

KafkaResult
kafka_offset_commit(KafkaRequest *req, StringInfo out, TimestampTz *wake_at)
{
	elog(ERROR, "stream: kafka_offset_commit is not implemented yet");
	return KAFKA_CLOSE;
}

void
kafka_offset_commit_error(KafkaRequest *req, StringInfo out, int16 error)
{
	kw_int16(out, error);
}

KafkaResult
kafka_offset_fetch(KafkaRequest *req, StringInfo out, TimestampTz *wake_at)
{
	elog(ERROR, "stream: kafka_offset_fetch is not implemented yet");
	return KAFKA_CLOSE;
}

void
kafka_offset_fetch_error(KafkaRequest *req, StringInfo out, int16 error)
{
	kw_int16(out, error);
}

void
kafka_group_conn_closed(int conn_id)
{
}

void
kafka_group_tick(TimestampTz now)
{
}

