/*-------------------------------------------------------------------------
 *
 * consumer.h
 *	  Consumer groups: membership, partition ownership, positions, poll.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAM_CONSUMER_H
#define STREAM_CONSUMER_H

#include "postgres.h"

#define STREAM_GROUP_MAXLEN 200

/* objsubid of stream's ownership locks in pg_locks ('ST') */
#define STREAM_LOCK_FIELD4 0x5354

extern Size stream_consumer_shmem_size(void);
extern void stream_consumer_shmem_init(void);
extern void stream_check_group_name(const char *name);
extern bool stream_group_has_sql_members(const char *group);

#endif							/* STREAM_CONSUMER_H */
