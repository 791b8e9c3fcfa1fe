/*-------------------------------------------------------------------------
 *
 * lso.h
 *	  Per-partition shared state: next offset, active segment and the
 *	  offsets held by open transactions (the last stable offset).
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAM_LSO_H
#define STREAM_LSO_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "lib/ilist.h"
#include "storage/spin.h"

struct StreamTopic;

typedef struct StreamPartKey
{
	Oid			dbid;
	int32		topic_id;
	int32		partition;
} StreamPartKey;

typedef struct StreamPartition
{
	StreamPartKey key;			/* hash key, must be first */
	slock_t		mutex;			/* protects every field below */
	TimestampTz topic_created;	/* which incarnation of topic_id this is, */
	Oid			topic_catalog;	/* ... of which install of the extension */
	int64		next_offset;	/* next offset to hand out */
	int64		committed_high; /* offset after the highest committed one */
	int64		active_segment; /* segment taking inserts */
	Oid			active_relid;
	Oid			active_indexid;
	int64		active_bytes;	/* bytes appended to the active segment */
	TimestampTz roll_requested; /* 0 or when a roll was asked for */
	int			nopen;			/* length of "open" */
	int			npinned;		/* length of "waiters" */
	dlist_head	open;			/* StreamOpenSlot of open transactions */
	dlist_head	waiters;		/* StreamWaitSlot of consumers in a long poll */
} StreamPartition;

/* Size and initialisation of the shared state (called from stream.c). */
extern Size stream_lso_shmem_size(void);
extern void stream_lso_shmem_init(void);
extern void stream_lso_backend_init(void);

/*
 * Find (or load) the shared entry of a partition.  Returns with the
 * partition map lock held in shared mode; call stream_partition_unlock().
 */
extern StreamPartition *stream_partition_lock(struct StreamTopic *topic, int32 partition);
extern void stream_partition_unlock(void);

/*
 * Reserve n consecutive offsets for this transaction; also returns the
 * segment that must receive them.  Caller holds the map lock (shared).
 */
extern int64 stream_reserve_offsets(StreamPartition *part, int n, int64 nbytes,
									int64 segment_bytes, int64 *segment, Oid *relid,
									Oid *indexid, bool *roll);

/* End offset and last stable offset of a partition (map lock held). */
extern int64 stream_partition_lso(StreamPartition *part, int64 *end_offset);

/* Switch the active segment (roller); false if the entry moved on. */
extern bool stream_partition_switch(StreamPartition *part, int64 old_segment,
									int64 new_segment, Oid relid, Oid indexid,
									int64 *base_offset);
extern void stream_partition_roll_failed(StreamPartition *part);

/*
 * Long poll: register this backend's latch to be set when a transaction
 * holding offsets in part ends (map lock held shared); unregister all.
 */
extern bool stream_wait_register(StreamPartition *part);
extern void stream_wait_unregister_all(void);
extern bool stream_waits_outlive_xact;

/* Find an existing entry only (no loading); map lock held shared on success. */
extern StreamPartition *stream_partition_find(Oid dbid, int32 topic_id, int32 partition,
											  TimestampTz created, Oid catalog);

#endif							/* STREAM_LSO_H */
