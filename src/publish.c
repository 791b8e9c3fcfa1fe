/*-------------------------------------------------------------------------
 *
 * publish.c
 *	  stream.publish() and stream.publish_batch(): the producer side.
 *
 * A publish is part of the caller's transaction: the rows go into the
 * partition's active segment with the caller's transaction id, so rollback
 * means never seen and commit means as durable as the rest of the commit.
 * The value arrives as jsonb, text or bytea (three SQL overloads sharing one
 * C function) and is converted to the topic's value type: text is parsed by
 * the type's input function, so an untyped literal works on any topic.
 *
 * Routing follows Kafka: an explicit partition wins; otherwise a non-NULL
 * key picks murmur2(key) % partitions; a NULL key spreads messages round
 * robin (a batch of NULL-keyed messages sticks to one partition, like
 * Kafka's sticky partitioner, so it is written with one multi-insert).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/tuplestore.h"

#include "partitioner.h"
#include "privileges.h"
#include "storage.h"
#include "stream.h"
#include "topic.h"

/* Backend-wide cursor spreading NULL-keyed messages over partitions. */
static uint32 spread_cursor = 0;
static bool spread_seeded = false;

/* Next partition for a NULL key. */
static int32
spread_partition(StreamTopic *topic)
{
	if (!spread_seeded)
	{
		spread_cursor = (uint32) MyProcPid;
		spread_seeded = true;
	}
	return (int32) (spread_cursor++ % (uint32) topic->partitions);
}

static const char *
value_type_name(Oid type)
{
	return format_type_be(type);
}

/* Convert a value of type argtype to the topic's value type. */
static Datum
convert_value(StreamTopic *topic, Datum value, Oid argtype)
{
	if (argtype == topic->value_type)
		return value;

	if (argtype == TEXTOID || argtype == UNKNOWNOID)
	{
		Oid			infunc;
		Oid			ioparam;
		char	   *str;

		str = (argtype == TEXTOID) ? TextDatumGetCString(value) : DatumGetCString(value);
		getTypeInputInfo(topic->value_type, &infunc, &ioparam);
		return OidInputFunctionCall(infunc, str, ioparam, -1);
	}
	if (argtype == JSONBOID && topic->value_type == TEXTOID)
	{
		/* a jsonb value on a text topic is stored as its text form */
		return CStringGetTextDatum(JsonbToCString(NULL,
												  &DatumGetJsonbP(value)->root,
												  VARSIZE_ANY(DatumGetPointer(value))));
	}
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("topic \"%s\" takes %s values, not %s",
					topic->name, value_type_name(topic->value_type),
					value_type_name(argtype)),
			 errhint("Pass the value as %s, or as text to have it parsed.",
					 value_type_name(topic->value_type))));
	return (Datum) 0;			/* keep compiler quiet */
}

/* Check headers: NULL or a jsonb object. */
static void
check_headers(StreamTopic *topic, Datum headers)
{
	Jsonb	   *jb = DatumGetJsonbP(headers);

	if (!JB_ROOT_IS_OBJECT(jb) || JB_ROOT_IS_SCALAR(jb))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("headers of a message to topic \"%s\" must be a JSON object",
						topic->name),
				 errhint("Pass headers like '{\"trace-id\": \"abc\"}'::jsonb, or NULL.")));
}

/* Size of a message as max_message_bytes counts it: key + value + headers. */
int64
stream_message_bytes(const StreamMessage *m)
{
	int64		size = 0;

	if (!m->key_null)
		size += VARSIZE_ANY_EXHDR(DatumGetPointer(m->key));
	if (!m->value_null)
		size += VARSIZE_ANY_EXHDR(DatumGetPointer(m->value));
	if (!m->headers_null)
		size += VARSIZE_ANY_EXHDR(DatumGetPointer(m->headers));
	return size;
}

/* Enforce max_message_bytes over key + value + headers. */
static void
check_size(StreamTopic *topic, StreamMessage *m)
{
	int64		size = stream_message_bytes(m);

	if (size > topic->max_message_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("message of " INT64_FORMAT " bytes exceeds the limit of topic \"%s\"",
						size, topic->name),
				 errdetail("The topic's max_message_bytes is %d; key, value and headers count.",
						   topic->max_message_bytes),
				 errhint("Raise it with stream.alter_topic('%s', max_message_bytes => ...).",
						 topic->name)));
}

/* Route a message: explicit partition, key hash, or spread. */
static void
route(StreamTopic *topic, StreamMessage *m, bool has_partition, int32 partition)
{
	if (has_partition)
	{
		stream_check_partition(topic, partition);
		m->partition = partition;
	}
	else if (!m->key_null)
	{
		text	   *key = DatumGetTextPP(m->key);

		m->partition = stream_key_partition(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key),
											topic->partitions);
	}
	else
		m->partition = spread_partition(topic);
}

static void
check_writable(const char *what)
{
	stream_require_preload();
	stream_check_primary(what);
	PreventCommandIfReadOnly(what);
	PreventCommandIfParallelMode(what);
}

/* Return (partition, offset) rows for the published messages. */
static void
return_offsets(FunctionCallInfo fcinfo, StreamMessage *msgs, int n)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	for (i = 0; i < n; i++)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};

		values[0] = Int32GetDatum(msgs[i].partition);
		values[1] = Int64GetDatum(msgs[i].offset);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
}

/*
 * Publish one message from C (the trigger): value of type valtype (NULL
 * allowed), key may be NULL, no headers, routed by key.  Checks and routes
 * exactly as stream.publish() does; fills *msg_out.
 */
void
stream_publish_value(StreamTopic *topic, Datum value, Oid valtype, bool value_null,
					 text *key, StreamMessage *msg_out)
{
	StreamMessage *msg = msg_out;

	check_writable("stream.publish_trigger()");
	memset(msg, 0, sizeof(StreamMessage));
	msg->value_null = value_null;
	if (!value_null)
		msg->value = convert_value(topic, value, valtype);
	msg->key_null = (key == NULL);
	if (key != NULL)
		msg->key = PointerGetDatum(key);
	msg->headers_null = true;
	check_size(topic, msg);
	route(topic, msg, false, 0);
	stream_append(topic, msg, 1);
}

PG_FUNCTION_INFO_V1(stream_publish);

/*
 * SQL: stream.publish(topic, value jsonb|text|bytea, key, headers, partition)
 */
Datum
stream_publish(PG_FUNCTION_ARGS)
{
	StreamTopic *topic;
	StreamMessage msg;
	Oid			argtype;

	check_writable("stream.publish()");
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("topic must not be NULL")));
	topic = stream_topic_lookup(PG_GETARG_TEXT_PP(0));
	stream_check_privilege(topic, STREAM_PRIV_PUBLISH);

	memset(&msg, 0, sizeof(msg));
	argtype = get_fn_expr_argtype(fcinfo->flinfo, 1);
	msg.value_null = PG_ARGISNULL(1);
	if (!msg.value_null)
		msg.value = convert_value(topic,
								  PointerGetDatum(PG_DETOAST_DATUM_PACKED(PG_GETARG_DATUM(1))),
								  argtype);
	msg.key_null = PG_ARGISNULL(2);
	if (!msg.key_null)
		msg.key = PointerGetDatum(PG_GETARG_TEXT_PP(2));
	msg.headers_null = PG_ARGISNULL(3);
	if (!msg.headers_null)
	{
		msg.headers = PointerGetDatum(PG_DETOAST_DATUM_PACKED(PG_GETARG_DATUM(3)));
		check_headers(topic, msg.headers);
	}
	check_size(topic, &msg);
	route(topic, &msg, !PG_ARGISNULL(4), PG_ARGISNULL(4) ? 0 : PG_GETARG_INT32(4));

	stream_append(topic, &msg, 1);

	return_offsets(fcinfo, &msg, 1);
	return (Datum) 0;
}

/* Deconstruct an optional array argument, checking its length. */
static void
get_array(FunctionCallInfo fcinfo, int argno, Oid elemtype, int expected,
		  const char *what, Datum **elems, bool **nulls)
{
	ArrayType  *arr;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			n;

	*elems = NULL;
	*nulls = NULL;
	if (PG_ARGISNULL(argno))
		return;
	arr = PG_GETARG_ARRAYTYPE_P(argno);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%s must be a one-dimensional array", what)));
	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	deconstruct_array(arr, elemtype, typlen, typbyval, typalign, elems, nulls, &n);
	if (expected >= 0 && n != expected)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%s has %d elements but values has %d", what, n, expected),
				 errhint("Pass one element per value, or NULL for none.")));
}

PG_FUNCTION_INFO_V1(stream_publish_batch);

/*
 * SQL: stream.publish_batch(topic, values jsonb[]|text[]|bytea[], keys text[],
 *							  headers jsonb[])
 */
Datum
stream_publish_batch(PG_FUNCTION_ARGS)
{
	StreamTopic *topic;
	Oid			arrtype;
	Oid			elemtype;
	Datum	   *values;
	bool	   *value_nulls;
	Datum	   *keys;
	bool	   *key_nulls;
	Datum	   *headers;
	bool	   *header_nulls;
	StreamMessage *msgs;
	int			n;
	int			i;
	int32		sticky = -1;
	MemoryContext parsecxt;
	int16		typlen;
	bool		typbyval;

	check_writable("stream.publish_batch()");
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("topic must not be NULL")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("values must not be NULL"),
				 errhint("Pass an array of values; an empty array publishes nothing.")));
	topic = stream_topic_lookup(PG_GETARG_TEXT_PP(0));
	stream_check_privilege(topic, STREAM_PRIV_PUBLISH);

	arrtype = get_fn_expr_argtype(fcinfo->flinfo, 1);
	elemtype = get_element_type(arrtype);
	if (!OidIsValid(elemtype))
		elog(ERROR, "stream.publish_batch: values is not an array");

	get_array(fcinfo, 1, elemtype, -1, "values", &values, &value_nulls);
	n = values ? (int) ArrayGetNItems(ARR_NDIM(PG_GETARG_ARRAYTYPE_P(1)),
									  ARR_DIMS(PG_GETARG_ARRAYTYPE_P(1))) : 0;
	get_array(fcinfo, 2, TEXTOID, n, "keys", &keys, &key_nulls);
	get_array(fcinfo, 3, JSONBOID, n, "headers", &headers, &header_nulls);

	msgs = palloc0(sizeof(StreamMessage) * Max(n, 1));
	parsecxt = AllocSetContextCreate(CurrentMemoryContext, "stream publish_batch parse",
									 ALLOCSET_DEFAULT_SIZES);
	get_typlenbyval(topic->value_type, &typlen, &typbyval);
	for (i = 0; i < n; i++)
	{
		StreamMessage *m = &msgs[i];

		m->value_null = value_nulls[i];
		if (!m->value_null && elemtype != topic->value_type)
		{
			/* parse in a scratch context: keep the value, not the garbage */
			MemoryContext old = MemoryContextSwitchTo(parsecxt);
			Datum		v = convert_value(topic, values[i], elemtype);

			MemoryContextSwitchTo(old);
			m->value = datumCopy(v, typbyval, typlen);
			MemoryContextReset(parsecxt);
		}
		else if (!m->value_null)
			m->value = values[i];
		m->key_null = (keys == NULL || key_nulls[i]);
		if (!m->key_null)
			m->key = keys[i];
		m->headers_null = (headers == NULL || header_nulls[i]);
		if (!m->headers_null)
		{
			m->headers = headers[i];
			check_headers(topic, m->headers);
		}
		check_size(topic, m);
		if (m->key_null)
		{
			/* sticky: all NULL-keyed messages of a batch go to one partition */
			if (sticky < 0)
				sticky = spread_partition(topic);
			m->partition = sticky;
		}
		else
			route(topic, m, false, 0);
		CHECK_FOR_INTERRUPTS();
	}

	stream_append(topic, msgs, n);

	return_offsets(fcinfo, msgs, n);
	return (Datum) 0;
}
