/*-------------------------------------------------------------------------
 *
 * kafka_wire.c
 *	  The Kafka protocol's primitive types: big-endian integers, zig-zag
 *	  varints, strings, bytes, arrays, and the compact (flexible-version)
 *	  forms with tagged fields.
 *
 * Readers are bounds-checked cursors over one received frame: a field that
 * does not fit sets the reader's error flag and reads as zero/NULL, so the
 * frame is never read past its end whatever a client sends.  Array lengths
 * are checked against the bytes left (every element takes at least one), so
 * a hostile count cannot make a handler allocate or loop much.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "kafka.h"

void
kr_init(KafkaReader *r, const char *data, int32 len)
{
	r->data = data;
	r->len = len;
	r->pos = 0;
	r->error = false;
}

/* Claim n bytes; NULL (and the error flag) when they are not there. */
static inline const unsigned char *
take(KafkaReader *r, int32 n)
{
	const unsigned char *p;

	if (r->error || n < 0 || r->len - r->pos < n)
	{
		r->error = true;
		return NULL;
	}
	p = (const unsigned char *) r->data + r->pos;
	r->pos += n;
	return p;
}

void
kr_skip(KafkaReader *r, int32 n)
{
	(void) take(r, n);
}

int8
kr_int8(KafkaReader *r)
{
	const unsigned char *p = take(r, 1);

	return p ? (int8) p[0] : 0;
}

int16
kr_int16(KafkaReader *r)
{
	const unsigned char *p = take(r, 2);

	return p ? (int16) ((p[0] << 8) | p[1]) : 0;
}

int32
kr_int32(KafkaReader *r)
{
	const unsigned char *p = take(r, 4);

	if (p == NULL)
		return 0;
	return (int32) (((uint32) p[0] << 24) | ((uint32) p[1] << 16) |
					((uint32) p[2] << 8) | (uint32) p[3]);
}

int64
kr_int64(KafkaReader *r)
{
	const unsigned char *p = take(r, 8);
	uint64		v = 0;
	int			i;

	if (p == NULL)
		return 0;
	for (i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return (int64) v;
}

/* Unsigned LEB128 of at most maxbytes bytes. */
static uint64
read_unsigned_varint(KafkaReader *r, int maxbytes)
{
	uint64		v = 0;
	int			shift = 0;
	int			i;

	for (i = 0; i < maxbytes; i++)
	{
		const unsigned char *p = take(r, 1);

		if (p == NULL)
			return 0;
		v |= (uint64) (p[0] & 0x7f) << shift;
		if ((p[0] & 0x80) == 0)
			return v;
		shift += 7;
	}
	r->error = true;			/* too long for its type */
	return 0;
}

uint32
kr_uvarint(KafkaReader *r)
{
	uint64		v = read_unsigned_varint(r, 5);

	if (v > PG_UINT32_MAX)
	{
		r->error = true;
		return 0;
	}
	return (uint32) v;
}

int32
kr_varint(KafkaReader *r)
{
	uint32		v = kr_uvarint(r);

	return (int32) ((v >> 1) ^ (~(v & 1) + 1));
}

int64
kr_varlong(KafkaReader *r)
{
	uint64		v = read_unsigned_varint(r, 10);

	return (int64) ((v >> 1) ^ (~(v & 1) + 1));
}

static char *
copy_string(KafkaReader *r, int32 len)
{
	const unsigned char *p;
	char	   *s;

	if (len < 0)
		return NULL;
	p = take(r, len);
	if (p == NULL)
		return NULL;
	s = palloc(len + 1);
	memcpy(s, p, len);
	s[len] = '\0';
	return s;
}

char *
kr_string(KafkaReader *r)
{
	int16		len = kr_int16(r);

	if (len < -1)
		r->error = true;
	return copy_string(r, len);
}

char *
kr_compact_string(KafkaReader *r)
{
	uint32		n = kr_uvarint(r);

	if (n == 0 || r->error)
		return NULL;
	if (n - 1 > (uint32) PG_INT32_MAX)
	{
		r->error = true;
		return NULL;
	}
	return copy_string(r, (int32) (n - 1));
}

const char *
kr_bytes(KafkaReader *r, int32 *len)
{
	int32		n = kr_int32(r);

	*len = -1;
	if (n < -1)
		r->error = true;
	if (n < 0 || r->error)
		return NULL;
	*len = n;
	return (const char *) take(r, n);
}

const char *
kr_compact_bytes(KafkaReader *r, int32 *len)
{
	uint32		n = kr_uvarint(r);

	*len = -1;
	if (n == 0 || r->error)
		return NULL;
	if (n - 1 > (uint32) PG_INT32_MAX)
	{
		r->error = true;
		return NULL;
	}
	*len = (int32) (n - 1);
	return (const char *) take(r, *len);
}

/* An element count can't exceed the bytes left: each takes one at least. */
static int32
check_count(KafkaReader *r, int64 n)
{
	if (r->error)
		return 0;
	if (n < -1 || n > r->len - r->pos)
	{
		r->error = true;
		return 0;
	}
	return (int32) n;
}

int32
kr_array_len(KafkaReader *r)
{
	return check_count(r, kr_int32(r));
}

int32
kr_compact_array_len(KafkaReader *r)
{
	uint32		n = kr_uvarint(r);

	return check_count(r, (int64) n - 1);
}

void
kr_skip_tagged_fields(KafkaReader *r)
{
	uint32		n = kr_uvarint(r);
	uint32		i;

	for (i = 0; i < n && !r->error; i++)
	{
		(void) kr_uvarint(r);	/* tag */
		kr_skip(r, (int32) Min(kr_uvarint(r), (uint32) PG_INT32_MAX));
	}
}

void
kw_int8(StringInfo w, int8 v)
{
	appendStringInfoCharMacro(w, (char) v);
}

void
kw_int16(StringInfo w, int16 v)
{
	char		b[2];

	b[0] = (char) ((uint16) v >> 8);
	b[1] = (char) v;
	appendBinaryStringInfo(w, b, 2);
}

void
kw_int32(StringInfo w, int32 v)
{
	char		b[4];
	uint32		u = (uint32) v;

	b[0] = (char) (u >> 24);
	b[1] = (char) (u >> 16);
	b[2] = (char) (u >> 8);
	b[3] = (char) u;
	appendBinaryStringInfo(w, b, 4);
}

void
kw_int64(StringInfo w, int64 v)
{
	char		b[8];
	uint64		u = (uint64) v;
	int			i;

	for (i = 7; i >= 0; i--)
	{
		b[i] = (char) u;
		u >>= 8;
	}
	appendBinaryStringInfo(w, b, 8);
}

static void
write_unsigned_varint(StringInfo w, uint64 v)
{
	char		b[10];
	int			n = 0;

	while (v >= 0x80)
	{
		b[n++] = (char) ((v & 0x7f) | 0x80);
		v >>= 7;
	}
	b[n++] = (char) v;
	appendBinaryStringInfo(w, b, n);
}

void
kw_uvarint(StringInfo w, uint32 v)
{
	write_unsigned_varint(w, v);
}

void
kw_varint(StringInfo w, int32 v)
{
	write_unsigned_varint(w, ((uint32) v << 1) ^ (uint32) (v >> 31));
}

void
kw_varlong(StringInfo w, int64 v)
{
	write_unsigned_varint(w, ((uint64) v << 1) ^ (uint64) (v >> 63));
}

void
kw_string(StringInfo w, const char *s)
{
	int			len;

	if (s == NULL)
	{
		kw_int16(w, -1);
		return;
	}
	len = strlen(s);
	if (len > PG_INT16_MAX)
		elog(ERROR, "stream: string of %d bytes is too long for the Kafka protocol", len);
	kw_int16(w, (int16) len);
	appendBinaryStringInfo(w, s, len);
}

void
kw_compact_string(StringInfo w, const char *s)
{
	int			len;

	if (s == NULL)
	{
		kw_uvarint(w, 0);
		return;
	}
	len = strlen(s);
	kw_uvarint(w, (uint32) len + 1);
	appendBinaryStringInfo(w, s, len);
}

void
kw_bytes(StringInfo w, const char *data, int32 len)
{
	if (len < 0)
	{
		kw_int32(w, -1);
		return;
	}
	kw_int32(w, len);
	appendBinaryStringInfo(w, data, len);
}

void
kw_empty_tagged_fields(StringInfo w)
{
	kw_uvarint(w, 0);
}

int
kw_reserve_int32(StringInfo w)
{
	int			pos = w->len;

	kw_int32(w, 0);
	return pos;
}

void
kw_patch_int32(StringInfo w, int pos, int32 v)
{
	uint32		u = (uint32) v;

	Assert(pos >= 0 && pos + 4 <= w->len);
	w->data[pos] = (char) (u >> 24);
	w->data[pos + 1] = (char) (u >> 16);
	w->data[pos + 2] = (char) (u >> 8);
	w->data[pos + 3] = (char) u;
}
