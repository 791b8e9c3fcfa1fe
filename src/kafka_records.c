/*-------------------------------------------------------------------------
 *
 * kafka_records.c
 *	  Kafka RecordBatch v2 (magic 2): decoding what producers send and
 *	  encoding what Fetch returns.
 *
 * A RecordBatch is a 61-byte header followed by its records:
 *
 *	  baseOffset int64, batchLength int32 (bytes after this field),
 *	  partitionLeaderEpoch int32, magic int8 (2), crc uint32,
 *	  attributes int16, lastOffsetDelta int32, baseTimestamp int64,
 *	  maxTimestamp int64, producerId int64, producerEpoch int16,
 *	  baseSequence int32, recordCount int32, records...
 *
 * The CRC is a CRC-32C (Castagnoli) of everything from attributes to the
 * end of the batch, which is what PostgreSQL's pg_crc32c computes for its
 * WAL.  Each record is a varint length, then attributes int8,
 * timestampDelta varlong, offsetDelta varint, key and value as varint
 * length (-1 for null) plus bytes, and a varint count of headers, each a
 * varint-length key (a string) and a varint-length value (-1 for null).
 *
 * Decoding trusts nothing: every length is checked against what is left of
 * the batch, and of the record, before it is used; a record must use up
 * exactly its length, and a batch exactly its records.  gzip-compressed
 * batches (attributes & 7 == 1) are inflated with zlib, bounded by the
 * caller's limit; snappy, lz4 and zstd are refused with
 * UNSUPPORTED_COMPRESSION_TYPE.  Batches of older formats (magic 0 and 1),
 * transactional batches and control batches are refused: no client that
 * negotiated Produce v3 or later sends them unless it uses transactions,
 * which stream does not support.
 *
 * Encoding writes uncompressed batches with producerId -1, producerEpoch
 * -1 and baseSequence -1.  Timestamps are CreateTime (attributes bit 3
 * clear) and carry each message's published_at in milliseconds: with
 * LogAppendTime clients would give every record of a batch the batch's
 * maxTimestamp.  A batch's offsets may have gaps (rolled-back publishes):
 * each record carries its own offset delta, and lastOffsetDelta may reach
 * past the last record so that clients move past a rolled-back tail (they
 * continue at baseOffset + lastOffsetDelta + 1, as for compacted topics).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <zlib.h>

#include "port/pg_crc32c.h"
#include "utils/memutils.h"

#include "kafka.h"
#include "kafka_records.h"

/* Byte positions in a batch, from its first byte. */
#define BATCH_LENGTH_POS	8
#define BATCH_MAGIC_POS		16
#define BATCH_CRC_POS		17
#define BATCH_ATTR_POS		21
#define BATCH_COUNT_POS		57
#define BATCH_LOG_OVERHEAD	12	/* baseOffset and batchLength */

#define ATTR_COMPRESSION_MASK	0x07
#define ATTR_TRANSACTIONAL		0x10
#define ATTR_CONTROL			0x20

#define COMPRESSION_NONE	0
#define COMPRESSION_GZIP	1

static inline uint32
get_uint32(const char *p)
{
	const unsigned char *u = (const unsigned char *) p;

	return ((uint32) u[0] << 24) | ((uint32) u[1] << 16) | ((uint32) u[2] << 8) | u[3];
}

static inline void
put_uint32(char *p, uint32 v)
{
	p[0] = (char) (v >> 24);
	p[1] = (char) (v >> 16);
	p[2] = (char) (v >> 8);
	p[3] = (char) v;
}

/* CRC-32C of len bytes, as Kafka computes a batch's checksum. */
static uint32
kafka_crc32c(const char *data, size_t len)
{
	pg_crc32c	crc;

	INIT_CRC32C(crc);
	COMP_CRC32C(crc, data, len);
	FIN_CRC32C(crc);
	return (uint32) crc;
}

/* zlib allocators in the current memory context: an ERROR frees them too. */
static voidpf
zalloc_palloc(voidpf opaque, uInt items, uInt size)
{
	return MemoryContextAllocExtended((MemoryContext) opaque, (Size) items * size,
									  MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
}

static void
zfree_palloc(voidpf opaque, voidpf address)
{
	if (address != NULL)
		pfree(address);
}

/*
 * Inflate a gzip stream into a new buffer of at most max_out bytes.
 * Returns KAFKA_NONE, MESSAGE_TOO_LARGE or CORRUPT_MESSAGE.
 */
static int16
gunzip(const char *in, int32 in_len, int64 max_out, char **out, int32 *out_len,
	   const char **why)
{
	z_stream	zs;
	Size		cap = Max(1024, Min((Size) in_len * 4, (Size) max_out));
	char	   *buf;
	int			ret;

	memset(&zs, 0, sizeof(zs));
	zs.zalloc = zalloc_palloc;
	zs.zfree = zfree_palloc;
	zs.opaque = (voidpf) CurrentMemoryContext;
	if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)
	{
		*why = "could not initialise zlib";
		return KAFKA_CORRUPT_MESSAGE;
	}
	buf = palloc_extended(cap, MCXT_ALLOC_HUGE);
	zs.next_in = (Bytef *) in;
	zs.avail_in = (uInt) in_len;
	zs.next_out = (Bytef *) buf;
	zs.avail_out = (uInt) cap;
	for (;;)
	{
		ret = inflate(&zs, Z_NO_FLUSH);
		if (ret == Z_STREAM_END)
			break;
		if (ret != Z_OK && ret != Z_BUF_ERROR)
		{
			inflateEnd(&zs);
			*why = "the gzip data of a batch is corrupt";
			return KAFKA_CORRUPT_MESSAGE;
		}
		if (zs.avail_out == 0)
		{
			Size		used = zs.total_out;

			if ((int64) cap >= max_out)
			{
				inflateEnd(&zs);
				*why = "a gzip batch inflates beyond stream.kafka_max_request_bytes";
				return KAFKA_MESSAGE_TOO_LARGE;
			}
			cap = (Size) Min((int64) cap * 2, max_out);
			buf = repalloc_huge(buf, cap);
			zs.next_out = (Bytef *) buf + used;
			zs.avail_out = (uInt) (cap - used);
		}
		else if (ret == Z_BUF_ERROR || zs.avail_in == 0)
		{
			/* input used up before the end of the stream */
			inflateEnd(&zs);
			*why = "the gzip data of a batch is truncated";
			return KAFKA_CORRUPT_MESSAGE;
		}
	}
	if (zs.avail_in != 0)
	{
		inflateEnd(&zs);
		*why = "a gzip batch has bytes after the end of its gzip stream";
		return KAFKA_CORRUPT_MESSAGE;
	}
	*out = buf;
	*out_len = (int32) zs.total_out;
	inflateEnd(&zs);
	return KAFKA_NONE;
}

/* A varint length of bytes that must fit in what is left; -1 for null. */
static const char *
read_varbytes(KafkaReader *r, int32 *len)
{
	int32		n = kr_varint(r);

	*len = -1;
	if (r->error)
		return NULL;
	if (n < -1)
	{
		r->error = true;
		return NULL;
	}
	if (n == -1)
		return NULL;
	if (n > r->len - r->pos)
	{
		r->error = true;
		return NULL;
	}
	*len = n;
	r->pos += n;
	return r->data + r->pos - n;
}

/*
 * Parse count records from data[0..len) into recs[first..]; the records
 * must use up exactly len bytes.
 */
static int16
parse_records(const char *data, int32 len, int32 count, int64 base_timestamp,
			  KafkaRecord *recs, const char **why)
{
	KafkaReader r;
	int32		i;

	kr_init(&r, data, len);
	for (i = 0; i < count; i++)
	{
		KafkaRecord *rec = &recs[i];
		int32		rec_len = kr_varint(&r);
		KafkaReader rr;
		int32		nh;
		int32		h;

		if (r.error || rec_len < 0 || rec_len > r.len - r.pos)
		{
			*why = "a record's length runs past the end of its batch";
			return KAFKA_CORRUPT_MESSAGE;
		}
		kr_init(&rr, r.data + r.pos, rec_len);
		r.pos += rec_len;

		(void) kr_int8(&rr);	/* attributes: unused */
		rec->timestamp = base_timestamp + kr_varlong(&rr);
		rec->offset_delta = kr_varint(&rr);
		rec->key = read_varbytes(&rr, &rec->key_len);
		rec->value = read_varbytes(&rr, &rec->value_len);
		nh = kr_varint(&rr);
		if (rr.error || nh < 0 || nh > rr.len - rr.pos)
		{
			*why = "a record is malformed";
			return KAFKA_CORRUPT_MESSAGE;
		}
		rec->nheaders = nh;
		rec->headers = (nh > 0) ? palloc(sizeof(KafkaHeader) * nh) : NULL;
		for (h = 0; h < nh; h++)
		{
			KafkaHeader *hd = &rec->headers[h];

			hd->key = read_varbytes(&rr, &hd->key_len);
			hd->value = read_varbytes(&rr, &hd->value_len);
			if (!rr.error && hd->key == NULL)
			{
				*why = "a record header has a null key";
				return KAFKA_CORRUPT_MESSAGE;
			}
		}
		if (rr.error || rr.pos != rr.len)
		{
			*why = "a record is malformed or does not fill its length";
			return KAFKA_CORRUPT_MESSAGE;
		}
	}
	if (r.pos != r.len)
	{
		*why = "a batch has bytes after its last record";
		return KAFKA_CORRUPT_MESSAGE;
	}
	return KAFKA_NONE;
}

int16
kafka_records_decode(const char *data, int32 len, int64 max_inflated,
					 KafkaRecord **records, int *nrecords, const char **why)
{
	KafkaRecord *recs = NULL;
	int			n = 0;
	int			cap = 0;
	int32		pos = 0;

	*records = NULL;
	*nrecords = 0;
	*why = NULL;
	if (data == NULL || len <= 0)
	{
		*why = "the partition's record set is empty or null";
		return KAFKA_CORRUPT_MESSAGE;
	}

	while (pos < len)
	{
		const char *b = data + pos;
		int32		left = len - pos;
		int32		batch_len;
		int8		magic;
		int16		attributes;
		int64		base_timestamp;
		int32		count;
		const char *payload;
		int32		payload_len;
		KafkaReader hr;
		int16		err;

		if (left < BATCH_LOG_OVERHEAD + 5)
		{
			*why = "the record set ends inside a batch header";
			return KAFKA_CORRUPT_MESSAGE;
		}
		batch_len = (int32) get_uint32(b + BATCH_LENGTH_POS);
		magic = (int8) b[BATCH_MAGIC_POS];
		if (magic == 0 || magic == 1)
		{
			*why = "message format v0/v1 (magic 0 or 1) is not supported; use RecordBatch v2";
			return KAFKA_UNSUPPORTED_FOR_MESSAGE_FORMAT;
		}
		if (magic != 2)
		{
			*why = "a batch has an unknown magic byte";
			return KAFKA_CORRUPT_MESSAGE;
		}
		if (batch_len < KAFKA_BATCH_HEADER_SIZE - BATCH_LOG_OVERHEAD ||
			batch_len > left - BATCH_LOG_OVERHEAD)
		{
			*why = "a batch's length does not fit the record set (truncated batch)";
			return KAFKA_CORRUPT_MESSAGE;
		}
		if (get_uint32(b + BATCH_CRC_POS) !=
			kafka_crc32c(b + BATCH_ATTR_POS, batch_len + BATCH_LOG_OVERHEAD - BATCH_ATTR_POS))
		{
			*why = "a batch's CRC-32C does not match its contents";
			return KAFKA_CORRUPT_MESSAGE;
		}

		kr_init(&hr, b + BATCH_ATTR_POS, KAFKA_BATCH_HEADER_SIZE - BATCH_ATTR_POS);
		attributes = kr_int16(&hr);
		(void) kr_int32(&hr);	/* lastOffsetDelta: offsets are ours */
		base_timestamp = kr_int64(&hr);
		(void) kr_int64(&hr);	/* maxTimestamp */
		(void) kr_int64(&hr);	/* producerId: no idempotence, ignored */
		(void) kr_int16(&hr);	/* producerEpoch */
		(void) kr_int32(&hr);	/* baseSequence */
		count = kr_int32(&hr);
		Assert(!hr.error);

		if (attributes & ATTR_CONTROL)
		{
			*why = "control batches (transactions) are not supported";
			return KAFKA_INVALID_RECORD;
		}
		if (attributes & ATTR_TRANSACTIONAL)
		{
			*why = "transactional batches are not supported";
			return KAFKA_INVALID_RECORD;
		}

		payload = b + KAFKA_BATCH_HEADER_SIZE;
		payload_len = batch_len + BATCH_LOG_OVERHEAD - KAFKA_BATCH_HEADER_SIZE;
		switch (attributes & ATTR_COMPRESSION_MASK)
		{
			case COMPRESSION_NONE:
				break;
			case COMPRESSION_GZIP:
				err = gunzip(payload, payload_len, max_inflated,
							 (char **) &payload, &payload_len, why);
				if (err != KAFKA_NONE)
					return err;
				break;
			case 2:
			case 3:
			case 4:
				*why = "snappy, lz4 and zstd compression are not supported; use gzip or none";
				return KAFKA_UNSUPPORTED_COMPRESSION_TYPE;
			default:
				*why = "a batch has an unknown compression type";
				return KAFKA_CORRUPT_MESSAGE;
		}

		/* every record takes 7 bytes at least: a hostile count can't allocate much */
		if (count < 0 || count > payload_len / 7)
		{
			*why = "a batch's record count does not match its size";
			return KAFKA_CORRUPT_MESSAGE;
		}
		if (n + count > cap)
		{
			cap = Max(cap * 2, n + count);
			recs = recs ? repalloc_huge(recs, sizeof(KafkaRecord) * cap)
				: palloc_extended(sizeof(KafkaRecord) * cap, MCXT_ALLOC_HUGE);
		}
		err = parse_records(payload, payload_len, count, base_timestamp, recs + n, why);
		if (err != KAFKA_NONE)
			return err;
		n += count;
		pos += batch_len + BATCH_LOG_OVERHEAD;
	}

	*records = recs;
	*nrecords = n;
	return KAFKA_NONE;
}

/* ---- encoding ---- */

static int
uvarint_size(uint64 v)
{
	int			n = 1;

	while (v >= 0x80)
	{
		v >>= 7;
		n++;
	}
	return n;
}

static int
varint_size(int64 v)
{
	return uvarint_size(((uint64) v << 1) ^ (uint64) (v >> 63));
}

int32
kafka_record_size(int64 offset_delta, int64 timestamp_delta, int32 key_len,
				  int32 value_len, const KafkaHeader *headers, int32 nheaders)
{
	int64		body = 1;		/* attributes */
	int32		i;

	body += varint_size(timestamp_delta);
	body += varint_size(offset_delta);
	body += varint_size(key_len) + Max(key_len, 0);
	body += varint_size(value_len) + Max(value_len, 0);
	body += varint_size(nheaders);
	for (i = 0; i < nheaders; i++)
		body += varint_size(headers[i].key_len) + Max(headers[i].key_len, 0) +
			varint_size(headers[i].value_len) + Max(headers[i].value_len, 0);
	return (int32) Min(body + varint_size(body), PG_INT32_MAX);
}

void
kafka_batch_begin(KafkaBatchWriter *bw, StringInfo out, int64 base_offset)
{
	bw->out = out;
	bw->start = out->len;
	bw->base_offset = base_offset;
	bw->first_timestamp = -1;
	bw->max_timestamp = -1;
	bw->count = 0;
	bw->last_record_offset = -1;
	/* the header is filled in by kafka_batch_end */
	appendStringInfoSpaces(out, KAFKA_BATCH_HEADER_SIZE);
}

/* Write v as an unsigned varint at p; returns the bytes written. */
static inline int
put_uvarint(char *p, uint64 v)
{
	int			n = 0;

	while (v >= 0x80)
	{
		p[n++] = (char) ((v & 0x7f) | 0x80);
		v >>= 7;
	}
	p[n++] = (char) v;
	return n;
}

/* Write v as a zigzag varint at p; returns the bytes written. */
static inline int
put_varint(char *p, int64 v)
{
	return put_uvarint(p, ((uint64) v << 1) ^ (uint64) (v >> 63));
}

/*
 * The record is written straight into the output: its body's size is
 * computed first (as kafka_record_size does), the buffer enlarged once,
 * then the length and the body written in place.
 */
void
kafka_batch_add(KafkaBatchWriter *bw, int64 offset, int64 timestamp,
				const char *key, int32 key_len, const char *value, int32 value_len,
				const KafkaHeader *headers, int32 nheaders)
{
	StringInfo	out = bw->out;
	int64		timestamp_delta;
	int32		offset_delta;
	int64		body;
	int32		i;
	char	   *p;

	Assert(offset >= bw->base_offset && offset > bw->last_record_offset);
	if (bw->count == 0)
		bw->first_timestamp = timestamp;
	if (timestamp > bw->max_timestamp)
		bw->max_timestamp = timestamp;
	timestamp_delta = timestamp - bw->first_timestamp;
	offset_delta = (int32) (offset - bw->base_offset);

	body = 1;					/* attributes */
	body += varint_size(timestamp_delta);
	body += varint_size(offset_delta);
	body += varint_size(key_len) + Max(key_len, 0);
	body += varint_size(value_len) + Max(value_len, 0);
	body += varint_size(nheaders);
	for (i = 0; i < nheaders; i++)
		body += varint_size(headers[i].key_len) + Max(headers[i].key_len, 0) +
			varint_size(headers[i].value_len) + Max(headers[i].value_len, 0);
	if (body > MaxAllocSize)
		elog(ERROR, "stream: Kafka record of " INT64_FORMAT " bytes is too large", body);

	/* the length varint takes at most 5 bytes for a body below 2^35 */
	enlargeStringInfo(out, (int) body + 5);
	p = out->data + out->len;
	p += put_varint(p, body);
	*p++ = 0;					/* attributes */
	p += put_varint(p, timestamp_delta);
	p += put_varint(p, offset_delta);
	p += put_varint(p, key_len);
	if (key_len > 0)
	{
		memcpy(p, key, key_len);
		p += key_len;
	}
	p += put_varint(p, value_len);
	if (value_len > 0)
	{
		memcpy(p, value, value_len);
		p += value_len;
	}
	p += put_varint(p, nheaders);
	for (i = 0; i < nheaders; i++)
	{
		p += put_varint(p, headers[i].key_len);
		if (headers[i].key_len > 0)
		{
			memcpy(p, headers[i].key, headers[i].key_len);
			p += headers[i].key_len;
		}
		p += put_varint(p, headers[i].value_len);
		if (headers[i].value_len > 0)
		{
			memcpy(p, headers[i].value, headers[i].value_len);
			p += headers[i].value_len;
		}
	}
	out->len = p - out->data;
	out->data[out->len] = '\0';
	bw->count++;
	bw->last_record_offset = offset;
}

void
kafka_batch_end(KafkaBatchWriter *bw, int64 last_offset)
{
	StringInfoData hdr;
	char	   *b;

	Assert(last_offset >= bw->base_offset && last_offset >= bw->last_record_offset);
	initStringInfo(&hdr);
	kw_int64(&hdr, bw->base_offset);
	kw_int32(&hdr, bw->out->len - bw->start - BATCH_LOG_OVERHEAD);
	kw_int32(&hdr, -1);			/* partitionLeaderEpoch */
	kw_int8(&hdr, 2);			/* magic */
	kw_int32(&hdr, 0);			/* crc, below */
	kw_int16(&hdr, 0);			/* attributes: no compression, CreateTime */
	kw_int32(&hdr, (int32) (last_offset - bw->base_offset));
	kw_int64(&hdr, bw->first_timestamp);
	kw_int64(&hdr, bw->max_timestamp);
	kw_int64(&hdr, -1);			/* producerId */
	kw_int16(&hdr, -1);			/* producerEpoch */
	kw_int32(&hdr, -1);			/* baseSequence */
	kw_int32(&hdr, bw->count);
	Assert(hdr.len == KAFKA_BATCH_HEADER_SIZE);

	b = bw->out->data + bw->start;
	memcpy(b, hdr.data, KAFKA_BATCH_HEADER_SIZE);
	put_uint32(b + BATCH_CRC_POS,
			   kafka_crc32c(b + BATCH_ATTR_POS, bw->out->len - bw->start - BATCH_ATTR_POS));
	pfree(hdr.data);
}
