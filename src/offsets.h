/*-------------------------------------------------------------------------
 *
 * offsets.h
 *	  Committed offsets of consumer groups (stream._offsets).
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAM_OFFSETS_H
#define STREAM_OFFSETS_H

#include "postgres.h"

#include "storage/itemptr.h"

#include "datatype/timestamp.h"

struct StreamTopic;

/* Committed offset of (group, topic, partition); false when none. */
extern bool stream_load_committed(const char *group, int32 topic_id, int32 partition,
								  int64 *offset, ItemPointer tid);
/* Store a committed offset in the current transaction. */
extern void stream_store_committed(const char *group, int32 topic_id, int32 partition,
								   int64 offset, ItemPointer tid);
/* Does the group have any committed offset? */
extern bool stream_group_has_offsets(const char *group);
/* Does this incarnation of a topic still exist? */
extern bool stream_topic_exists(int32 topic_id, TimestampTz created);
/* Offsets used by resets: first retained, latest stable, first at a time. */
extern int64 stream_earliest_offset(struct StreamTopic *topic, int32 partition);
extern int64 stream_latest_offset(struct StreamTopic *topic, int32 partition);
extern int64 stream_offset_for_time(struct StreamTopic *topic, int32 partition,
									TimestampTz ts);

#endif							/* STREAM_OFFSETS_H */
