/*-------------------------------------------------------------------------
 *
 * trigger.c
 *	  stream.publish_trigger(): publish row changes from a table trigger.
 *
 *	  CREATE TRIGGER blogs_stream AFTER INSERT OR UPDATE OR DELETE ON blogs
 *		FOR EACH ROW EXECUTE FUNCTION stream.publish_trigger('blog_events', 'author_id');
 *
 * Each row change becomes one message {"op", "schema", "table", "new",
 * "old"} with the rows as jsonb (NULL where there is none), keyed by the
 * named column's text form (a NULL column gives a NULL key, spread over the
 * partitions; without a key argument every message is unkeyed).  The
 * message is published in the transaction of the row change, so it exists
 * exactly when the change commits.  On a text topic the value is the JSON
 * text; on a bytea topic its UTF-8 bytes.  The table's owner needs the
 * publish privilege on the topic; the roles that write the table need none.
 *
 * Only AFTER ... FOR EACH ROW makes sense: a BEFORE trigger could publish
 * a row that a later trigger changes or suppresses.  Anything else is a
 * trigger protocol violation (39P01).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "privileges.h"
#include "storage.h"
#include "stream.h"
#include "topic.h"

/* to_jsonb(row): the row as a jsonb object, as SQL's to_jsonb() gives it. */
static Jsonb *
row_to_jsonb(HeapTuple tuple, TupleDesc tupdesc)
{
	Datum		row = heap_copy_tuple_as_datum(tuple, tupdesc);
	FmgrInfo	flinfo;
	FuncExpr   *expr;
	LOCAL_FCINFO(fcinfo, 1);

	/* to_jsonb() reads its argument's type from the call expression */
	expr = makeFuncExpr(F_TO_JSONB, JSONBOID,
						list_make1(makeNullConst(tupdesc->tdtypeid, -1, InvalidOid)),
						InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
	fmgr_info(F_TO_JSONB, &flinfo);
	flinfo.fn_expr = (Node *) expr;
	InitFunctionCallInfoData(*fcinfo, &flinfo, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = row;
	fcinfo->args[0].isnull = false;
	return DatumGetJsonbP(FunctionCallInvoke(fcinfo));
}

/* Add "key": string to an object being built. */
static void
push_string(JsonbParseState **state, const char *key, const char *value)
{
	JsonbValue	k;
	JsonbValue	v;

	k.type = jbvString;
	k.val.string.len = strlen(key);
	k.val.string.val = (char *) key;
	pushJsonbValue(state, WJB_KEY, &k);
	v.type = jbvString;
	v.val.string.len = strlen(value);
	v.val.string.val = (char *) value;
	pushJsonbValue(state, WJB_VALUE, &v);
}

/* Add "key": row-or-null to an object being built. */
static void
push_row(JsonbParseState **state, const char *key, Jsonb *row)
{
	JsonbValue	k;
	JsonbValue	v;

	k.type = jbvString;
	k.val.string.len = strlen(key);
	k.val.string.val = (char *) key;
	pushJsonbValue(state, WJB_KEY, &k);
	if (row == NULL)
		v.type = jbvNull;
	else
	{
		v.type = jbvBinary;
		v.val.binary.data = &row->root;
		v.val.binary.len = VARSIZE(row) - VARHDRSZ;
	}
	pushJsonbValue(state, WJB_VALUE, &v);
}

static void
protocol_error(const char *msg)
{
	ereport(ERROR,
			(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
			 errmsg("%s", msg),
			 errhint("Use CREATE TRIGGER ... AFTER INSERT OR UPDATE OR DELETE ON t FOR EACH ROW EXECUTE FUNCTION stream.publish_trigger('topic', 'key_column').")));
}

PG_FUNCTION_INFO_V1(stream_publish_trigger);

/* Trigger: publish the row change to the topic named by the first argument. */
Datum
stream_publish_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Trigger    *trigger;
	Relation	rel;
	TupleDesc	tupdesc;
	HeapTuple	newtup = NULL;
	HeapTuple	oldtup = NULL;
	HeapTuple	keytup;
	const char *op;
	StreamTopic *topic;
	JsonbParseState *state = NULL;
	JsonbValue *res;
	Jsonb	   *value;
	text	   *key = NULL;
	StreamMessage msg;

	if (!CALLED_AS_TRIGGER(fcinfo))
		protocol_error("stream.publish_trigger() must be called as a trigger");
	if (!TRIGGER_FIRED_AFTER(trigdata->tg_event) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		protocol_error("stream.publish_trigger() must be fired AFTER ... FOR EACH ROW");
	trigger = trigdata->tg_trigger;
	rel = trigdata->tg_relation;
	tupdesc = RelationGetDescr(rel);
	if (trigger->tgnargs < 1 || trigger->tgnargs > 2)
		protocol_error("stream.publish_trigger() takes a topic name and optionally a key column");

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
	{
		op = "INSERT";
		newtup = trigdata->tg_trigtuple;
	}
	else if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		op = "UPDATE";
		oldtup = trigdata->tg_trigtuple;
		newtup = trigdata->tg_newtuple;
	}
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
	{
		op = "DELETE";
		oldtup = trigdata->tg_trigtuple;
	}
	else
		protocol_error("stream.publish_trigger() fires on INSERT, UPDATE and DELETE only");

	topic = stream_topic_lookup_cstr(trigger->tgargs[0]);
	/* the table's owner set the trigger up: it is the one that publishes */
	stream_check_privilege_role(topic, STREAM_PRIV_PUBLISH, rel->rd_rel->relowner);

	/* the key: the named column of the new row, or of the old one for DELETE */
	keytup = newtup ? newtup : oldtup;
	if (trigger->tgnargs == 2)
	{
		int			attnum = SPI_fnumber(tupdesc, trigger->tgargs[1]);
		char	   *keystr;

		if (attnum == SPI_ERROR_NOATTRIBUTE || attnum <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" of relation \"%s\" does not exist",
							trigger->tgargs[1], RelationGetRelationName(rel)),
					 errhint("The second argument of stream.publish_trigger() names the key column.")));
		keystr = SPI_getvalue(keytup, tupdesc, attnum);
		if (keystr != NULL)
			key = cstring_to_text(keystr);
	}

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	push_string(&state, "op", op);
	push_string(&state, "schema", get_namespace_name(RelationGetNamespace(rel)));
	push_string(&state, "table", RelationGetRelationName(rel));
	push_row(&state, "new", newtup ? row_to_jsonb(newtup, tupdesc) : NULL);
	push_row(&state, "old", oldtup ? row_to_jsonb(oldtup, tupdesc) : NULL);
	res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	value = JsonbValueToJsonb(res);

	if (topic->value_type == BYTEAOID)
	{
		/* a bytea topic gets the JSON text's UTF-8 bytes */
		char	   *json = JsonbToCString(NULL, &value->root, VARSIZE(value));
		char	   *utf8 = pg_server_to_any(json, strlen(json), PG_UTF8);
		int			len = strlen(utf8);
		bytea	   *b = palloc(VARHDRSZ + len);

		SET_VARSIZE(b, VARHDRSZ + len);
		memcpy(VARDATA(b), utf8, len);
		stream_publish_value(topic, PointerGetDatum(b), BYTEAOID, false, key, &msg);
	}
	else
		stream_publish_value(topic, JsonbPGetDatum(value), JSONBOID, false, key, &msg);

	return PointerGetDatum(NULL);
}
