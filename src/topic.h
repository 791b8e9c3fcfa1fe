/*-------------------------------------------------------------------------
 *
 * topic.h
 *	  Backend-local cache of topic metadata.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAM_TOPIC_H
#define STREAM_TOPIC_H

#include "postgres.h"

#include "datatype/timestamp.h"

#define STREAM_TOPIC_MAXLEN 200
#define STREAM_MAX_GRANTEES 64

typedef struct StreamTopic
{
	char		name[STREAM_TOPIC_MAXLEN + 1];	/* hash key */
	int32		topic_id;
	int32		partitions;
	Oid			value_type;		/* JSONBOID, TEXTOID or BYTEAOID */
	int32		max_message_bytes;
	int64		segment_bytes;
	TimestampTz created_at;
	Oid			catalog_oid;	/* of stream._topics: a new one after the
								 * extension was dropped and created again */
	int			ngrants;		/* roles with grants on the topic */
	Oid			grant_roles[STREAM_MAX_GRANTEES];
	uint8		grant_privs[STREAM_MAX_GRANTEES];	/* STREAM_PRIV_* masks */
} StreamTopic;

extern void stream_topic_init(void);
extern bool stream_name_is_valid(const char *name);
extern void stream_check_name(const char *kind, const char *name);
extern void stream_check_topic_name(const char *name);
/* Lookups return a palloc'd copy, safe across cache invalidation. */
extern StreamTopic *stream_topic_lookup(text *name);
extern StreamTopic *stream_topic_lookup_cstr(const char *name);
extern StreamTopic *stream_topic_find_cstr(const char *name);
extern void stream_check_partition(StreamTopic *topic, int32 partition);
extern bool stream_topic_exists_by_name(const char *name);
extern Oid	stream_topics_catalog_oid(void);

#endif							/* STREAM_TOPIC_H */
