/*-------------------------------------------------------------------------
 *
 * partitioner.h
 *	  Kafka's default partitioner (murmur2 of the key's UTF-8 bytes).
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAM_PARTITIONER_H
#define STREAM_PARTITIONER_H

#include "postgres.h"

extern int32 stream_murmur2(const char *data, int len);
extern int32 stream_key_partition(const char *key, int len, int32 partitions);

#endif							/* STREAM_PARTITIONER_H */
