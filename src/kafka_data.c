/*-------------------------------------------------------------------------
 *
 * kafka_data.c
 *	  PLACEHOLDER during development of issue 9: replaced entirely by its
 *	  implementation before anything lands.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "kafka.h"

KafkaResult
kafka_metadata(KafkaRequest *req, StringInfo out, TimestampTz *wake_at)
{
	elog(ERROR, "stream: kafka_metadata is not implemented yet");
	return KAFKA_CLOSE;
}

void
kafka_metadata_error(KafkaRequest *req, StringInfo out, int16 error)
{
	kw_int16(out, error);
}

KafkaResult
kafka_produce(KafkaRequest *req, StringInfo out, TimestampTz *wake_at)
{
	elog(ERROR, "stream: kafka_produce is not implemented yet");
	return KAFKA_CLOSE;
}

void
kafka_produce_error(KafkaRequest *req, StringInfo out, int16 error)
{
	kw_int16(out, error);
}

KafkaResult
kafka_fetch(KafkaRequest *req, StringInfo out, TimestampTz *wake_at)
{
	elog(ERROR, "stream: kafka_fetch is not implemented yet");
	return KAFKA_CLOSE;
}

void
kafka_fetch_error(KafkaRequest *req, StringInfo out, int16 error)
{
	kw_int16(out, error);
}

KafkaResult
kafka_list_offsets(KafkaRequest *req, StringInfo out, TimestampTz *wake_at)
{
	elog(ERROR, "stream: kafka_list_offsets is not implemented yet");
	return KAFKA_CLOSE;
}

void
kafka_list_offsets_error(KafkaRequest *req, StringInfo out, int16 error)
{
	kw_int16(out, error);
}

