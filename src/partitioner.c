/*-------------------------------------------------------------------------
 *
 * partitioner.c
 *	  Kafka's default partitioner, so a key lands where a Kafka producer
 *	  would put it.
 *
 * Kafka hashes the key's bytes with its variant of murmur2 (seed
 * 0x9747b28c) and takes toPositive(hash) % partitions, where toPositive
 * clears the sign bit.  Keys are hashed as UTF-8 whatever the database
 * encoding.  An empty key is hashed like any other; a NULL key is not
 * hashed at all (publish.c spreads those over the partitions).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"

#include "partitioner.h"

/* Kafka's murmur2 of a byte string, as a signed 32-bit value. */
int32
stream_murmur2(const char *data, int len)
{
	const uint32 m = 0x5bd1e995;
	const int	r = 24;
	const unsigned char *d = (const unsigned char *) data;
	uint32		h = 0x9747b28c ^ (uint32) len;
	int			nblocks = len / 4;
	int			tail = len & ~3;
	int			i;

	for (i = 0; i < nblocks; i++)
	{
		uint32		k = (uint32) d[i * 4] |
			((uint32) d[i * 4 + 1] << 8) |
			((uint32) d[i * 4 + 2] << 16) |
			((uint32) d[i * 4 + 3] << 24);

		k *= m;
		k ^= k >> r;
		k *= m;
		h *= m;
		h ^= k;
	}

	switch (len % 4)
	{
		case 3:
			h ^= (uint32) d[tail + 2] << 16;
			/* FALLTHROUGH */
		case 2:
			h ^= (uint32) d[tail + 1] << 8;
			/* FALLTHROUGH */
		case 1:
			h ^= (uint32) d[tail];
			h *= m;
	}

	h ^= h >> 13;
	h *= m;
	h ^= h >> 15;
	return (int32) h;
}

/* Partition of a key given in the server encoding. */
int32
stream_key_partition(const char *key, int len, int32 partitions)
{
	char	   *utf8 = pg_server_to_any(key, len, PG_UTF8);
	int			ulen = (utf8 == key) ? len : (int) strlen(utf8);
	int32		h = stream_murmur2(utf8, ulen);

	if (utf8 != key)
		pfree(utf8);
	return (int32) (((uint32) h & 0x7fffffff) % (uint32) partitions);
}

PG_FUNCTION_INFO_V1(stream_murmur2_sql);

/* SQL: stream.murmur2(key text) returns Kafka's hash of the key. */
Datum
stream_murmur2_sql(PG_FUNCTION_ARGS)
{
	text	   *key = PG_GETARG_TEXT_PP(0);
	char	   *utf8 = pg_server_to_any(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key), PG_UTF8);
	int			len = (utf8 == VARDATA_ANY(key)) ? VARSIZE_ANY_EXHDR(key) : (int) strlen(utf8);

	PG_RETURN_INT32(stream_murmur2(utf8, len));
}

PG_FUNCTION_INFO_V1(stream_partition_for);

/* SQL: stream.partition_for(key text, partitions int) */
Datum
stream_partition_for(PG_FUNCTION_ARGS)
{
	text	   *key = PG_GETARG_TEXT_PP(0);
	int32		partitions = PG_GETARG_INT32(1);

	if (partitions < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("partitions must be at least 1, got %d", partitions)));
	PG_RETURN_INT32(stream_key_partition(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key),
										 partitions));
}
