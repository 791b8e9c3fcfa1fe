/*-------------------------------------------------------------------------
 *
 * privileges.c
 *	  Per-topic privileges: publish, consume, admin.
 *
 * Grants live in stream._acl (topic, role, privilege) and are cached with
 * the topic's metadata (topic.c), so checking them costs no query.  A role
 * holds a privilege on a topic when it is a superuser, when it has the
 * privilege of a role (itself, or one it is a member of with INHERIT) that
 * was granted it or 'admin' on the topic, or when it has the privileges of
 * the database owner or of the role stream_admin, which administer every
 * topic.  Creating a topic takes superuser, database owner or stream_admin;
 * the creator is granted 'admin' on it.
 *
 * Every SQL entry point checks before touching data: publish and the
 * trigger need 'publish' (the trigger checks the table's owner, so that the
 * application roles writing the table need no right on the topic), reads,
 * polls, commits, seeks, resets and leaves need 'consume', alter, drop,
 * grant and revoke need 'admin'.  A missing privilege is 42501 and nothing
 * is read or written.
 *
 * The administration functions are C wrappers: they check as the caller,
 * then run the PL/pgSQL body (stream._create_topic, ...) in the internal
 * context (stream_internal_begin), because the catalogs and the stream_data
 * schema belong to the extension, not to the caller.
 *
 * Dropping a role that holds grants is refused like for ordinary grants
 * ("cannot be dropped because some objects depend on it"), and DROP OWNED
 * BY removes its grants; see the utility hook in stream.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_database.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "privileges.h"
#include "stream.h"
#include "topic.h"

static const char *const priv_names[] = {"", "publish", "consume", "", "admin"};

/* Parse a privilege name; 'any' only where allow_any. */
int
stream_parse_privilege(const char *name, bool allow_any)
{
	if (pg_strcasecmp(name, "publish") == 0)
		return STREAM_PRIV_PUBLISH;
	if (pg_strcasecmp(name, "consume") == 0)
		return STREAM_PRIV_CONSUME;
	if (pg_strcasecmp(name, "admin") == 0)
		return STREAM_PRIV_ADMIN;
	if (allow_any && pg_strcasecmp(name, "any") == 0)
		return STREAM_PRIV_ANY;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unrecognized stream privilege \"%s\"", name),
			 errhint("Use 'publish', 'consume' or 'admin'%s.", allow_any ? " (or 'any')" : "")));
	return 0;					/* keep compiler quiet */
}

/* Does roleid administer every topic (superuser, database owner, stream_admin)? */
static bool
is_stream_admin(Oid roleid)
{
	Oid			admin;

	if (superuser_arg(roleid))
		return true;
#if PG_VERSION_NUM >= 160000
	if (object_ownercheck(DatabaseRelationId, MyDatabaseId, roleid))
		return true;
#else
	if (pg_database_ownercheck(MyDatabaseId, roleid))
		return true;
#endif
	admin = get_role_oid("stream_admin", true);
	return OidIsValid(admin) && has_privs_of_role(roleid, admin);
}

/* Does roleid hold priv (a STREAM_PRIV_* mask; any bit counts) on the topic? */
bool
stream_has_privilege(StreamTopic *topic, int priv, Oid roleid)
{
	int			i;

	if (is_stream_admin(roleid))
		return true;
	for (i = 0; i < topic->ngrants; i++)
	{
		int			granted = topic->grant_privs[i];

		/* admin implies the others */
		if ((granted & STREAM_PRIV_ADMIN) != 0)
			granted = STREAM_PRIV_ANY;
		if ((granted & priv) != 0 && has_privs_of_role(roleid, topic->grant_roles[i]))
			return true;
	}
	return false;
}

/* Error 42501 unless roleid holds priv on the topic. */
void
stream_check_privilege_role(StreamTopic *topic, int priv, Oid roleid)
{
	const char *what = (priv == STREAM_PRIV_PUBLISH) ? "publish" :
		(priv == STREAM_PRIV_CONSUME) ? "consume" : "admin";

	if (stream_has_privilege(topic, priv, roleid))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied for topic \"%s\"", topic->name),
			 errdetail("Role \"%s\" does not have the %s privilege on the topic.",
					   GetUserNameFromId(roleid, false), what),
			 errhint("A topic administrator can run stream.grant('%s', '%s', '%s').",
					 topic->name, GetUserNameFromId(roleid, false), what)));
}

/* Error 42501 unless the current user holds priv on the topic. */
void
stream_check_privilege(StreamTopic *topic, int priv)
{
	stream_check_privilege_role(topic, priv, GetUserId());
}

/*
 * Run stream.<internal>(the caller's arguments) in the internal context and
 * return its first column (or NULL).
 */
static Datum
call_internal(FunctionCallInfo fcinfo, const char *internal, Oid caller, bool *isnull)
{
	StreamInternalState state;
	Oid		   *argtypes;
	int			nargs;
	Datum	   *values;
	char	   *nulls;
	StringInfoData sql;
	int			i;
	int			ret;
	Datum		result = (Datum) 0;
	MemoryContext callercxt = CurrentMemoryContext;

	get_func_signature(fcinfo->flinfo->fn_oid, &argtypes, &nargs);
	values = palloc(sizeof(Datum) * (nargs + 1));
	nulls = palloc(nargs + 2);
	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT stream.%s(", internal);
	for (i = 0; i < nargs; i++)
	{
		values[i] = PG_ARGISNULL(i) ? (Datum) 0 : PG_GETARG_DATUM(i);
		nulls[i] = PG_ARGISNULL(i) ? 'n' : ' ';
		appendStringInfo(&sql, "%s$%d", i ? ", " : "", i + 1);
	}
	if (OidIsValid(caller))
	{
		/* the internal body records who did it */
		Oid		   *types = palloc(sizeof(Oid) * (nargs + 1));

		memcpy(types, argtypes, sizeof(Oid) * nargs);
		types[nargs] = OIDOID;
		argtypes = types;
		values[nargs] = ObjectIdGetDatum(caller);
		nulls[nargs] = ' ';
		appendStringInfo(&sql, ", $%d", nargs + 1);
		nargs++;
	}
	nulls[nargs] = '\0';
	appendStringInfoChar(&sql, ')');

	stream_internal_begin(&state);
	SPI_connect();
	ret = SPI_execute_with_args(sql.data, nargs, argtypes, values, nulls, false, 1);
	if (ret < 0)
		elog(ERROR, "stream: %s failed: %s", internal, SPI_result_code_string(ret));
	*isnull = true;
	if (SPI_processed == 1)
	{
		result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, isnull);
		if (!*isnull)
		{
			Form_pg_attribute att = TupleDescAttr(SPI_tuptable->tupdesc, 0);

			result = SPI_datumTransfer(result, att->attbyval, att->attlen);
		}
	}
	SPI_finish();
	stream_internal_end(&state);
	MemoryContextSwitchTo(callercxt);
	return result;
}

/* Look up the topic named by argument 0 for an admin check. */
static StreamTopic *
admin_topic(FunctionCallInfo fcinfo)
{
	StreamTopic *topic;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("topic must not be NULL")));
	topic = stream_topic_lookup(PG_GETARG_TEXT_PP(0));
	stream_check_privilege(topic, STREAM_PRIV_ADMIN);
	return topic;
}

PG_FUNCTION_INFO_V1(stream_create_topic);

/* SQL: stream.create_topic(...): superuser, database owner or stream_admin */
Datum
stream_create_topic(PG_FUNCTION_ARGS)
{
	Oid			creator = GetUserId();
	bool		isnull;
	Datum		topic_id;

	stream_require_preload();
	stream_check_primary("stream.create_topic()");
	if (!is_stream_admin(creator))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to create topic"),
				 errdetail("Creating topics takes a superuser, the database owner or a member of stream_admin."),
				 errhint("GRANT stream_admin TO %s;", GetUserNameFromId(creator, false))));
	topic_id = call_internal(fcinfo, "_create_topic", InvalidOid, &isnull);
	/* the creator administers what it created, even after leaving stream_admin */
	if (!isnull && !superuser_arg(creator))
	{
		StreamInternalState state;
		Oid			types[2] = {INT4OID, OIDOID};
		Datum		args[2];

		args[0] = topic_id;
		args[1] = ObjectIdGetDatum(creator);
		stream_internal_begin(&state);
		SPI_connect();
		SPI_execute_with_args("INSERT INTO stream._acl (topic_id, role, privilege, granted_by) "
							  "VALUES ($1, $2::regrole, 'admin', $2::regrole)",
							  2, types, args, NULL, false, 0);
		SPI_finish();
		stream_internal_end(&state);
	}
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(stream_alter_topic);

/* SQL: stream.alter_topic(...): admin on the topic */
Datum
stream_alter_topic(PG_FUNCTION_ARGS)
{
	bool		isnull;

	stream_require_preload();
	stream_check_primary("stream.alter_topic()");
	(void) admin_topic(fcinfo);
	(void) call_internal(fcinfo, "_alter_topic", InvalidOid, &isnull);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(stream_drop_topic);

/* SQL: stream.drop_topic(topic, if_exists): admin on the topic */
Datum
stream_drop_topic(PG_FUNCTION_ARGS)
{
	bool		isnull;

	stream_require_preload();
	stream_check_primary("stream.drop_topic()");
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("topic must not be NULL")));
	/* a missing topic with if_exists gives the notice without any right */
	if (!(!PG_ARGISNULL(1) && PG_GETARG_BOOL(1)) ||
		stream_topic_exists_by_name(text_to_cstring(PG_GETARG_TEXT_PP(0))))
		(void) admin_topic(fcinfo);
	(void) call_internal(fcinfo, "_drop_topic", InvalidOid, &isnull);
	PG_RETURN_VOID();
}

/* Shared body of grant and revoke. */
static void
grant_or_revoke(FunctionCallInfo fcinfo, const char *internal)
{
	bool		isnull;
	static const char *const names[] = {"topic", "role", "privilege"};

	stream_require_preload();
	stream_check_primary(internal[1] == 'g' ? "stream.grant()" : "stream.revoke()");
	stream_check_args_not_null(fcinfo, names, 3);
	(void) admin_topic(fcinfo);
	(void) stream_parse_privilege(text_to_cstring(PG_GETARG_TEXT_PP(2)), false);
	/* regrole accepts '-' and bare numbers: only real roles get grants */
	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(PG_GETARG_OID(1))))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role with OID %u does not exist", PG_GETARG_OID(1))));
	(void) call_internal(fcinfo, internal, GetUserId(), &isnull);
}

PG_FUNCTION_INFO_V1(stream_grant);

/* SQL: stream.grant(topic, role, privilege): admin on the topic */
Datum
stream_grant(PG_FUNCTION_ARGS)
{
	grant_or_revoke(fcinfo, "_grant");
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(stream_revoke);

/* SQL: stream.revoke(topic, role, privilege): admin on the topic */
Datum
stream_revoke(PG_FUNCTION_ARGS)
{
	grant_or_revoke(fcinfo, "_revoke");
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(stream_has_topic_privilege);

/* SQL: stream.has_topic_privilege(topic, privilege): for the current user */
Datum
stream_has_topic_privilege(PG_FUNCTION_ARGS)
{
	StreamTopic *topic = stream_topic_lookup(PG_GETARG_TEXT_PP(0));
	int			priv = stream_parse_privilege(text_to_cstring(PG_GETARG_TEXT_PP(1)), true);

	PG_RETURN_BOOL(stream_has_privilege(topic, priv, GetUserId()));
}

/* Name of a topic by id (NULL when none), read as the extension. */
static char *
topic_name_by_id(int32 topic_id)
{
	StreamInternalState state;
	Oid			types[1] = {INT4OID};
	Datum		args[1];
	char	   *name = NULL;
	MemoryContext callercxt = CurrentMemoryContext;

	args[0] = Int32GetDatum(topic_id);
	stream_internal_begin(&state);
	SPI_connect();
	if (SPI_execute_with_args("SELECT topic FROM stream._topics WHERE topic_id = $1",
							  1, types, args, NULL, true, 1) == SPI_OK_SELECT &&
		SPI_processed == 1)
		name = MemoryContextStrdup(callercxt,
								   SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
	SPI_finish();
	stream_internal_end(&state);
	return name;
}

/* May the current user see anything of the topic with this id? */
bool
stream_may_see_topic_id(int32 topic_id)
{
	char	   *name;

	if (is_stream_admin(GetUserId()))
		return true;
	name = topic_name_by_id(topic_id);
	return name != NULL &&
		stream_has_privilege(stream_topic_lookup_cstr(name), STREAM_PRIV_ANY, GetUserId());
}

PG_FUNCTION_INFO_V1(stream_check_may_see);

/*
 * SQL: stream._check_may_see(topic_id, role): 42501 unless the role holds a
 * privilege on the topic.  The internal bodies of the monitoring helpers
 * call it with the role their C wrapper was called by.
 */
Datum
stream_check_may_see(PG_FUNCTION_ARGS)
{
	int32		topic_id = PG_GETARG_INT32(0);
	Oid			roleid = PG_GETARG_OID(1);
	char	   *name = topic_name_by_id(topic_id);
	StreamTopic *topic;

	if (name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("topic with id %d does not exist", topic_id)));
	topic = stream_topic_lookup_cstr(name);
	if (!stream_has_privilege(topic, STREAM_PRIV_ANY, roleid))
		stream_check_privilege_role(topic, STREAM_PRIV_CONSUME, roleid);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(stream_partition_storage);

/* SQL: stream._partition_storage(topic_id, partition): the view helper */
Datum
stream_partition_storage(PG_FUNCTION_ARGS)
{
	bool		isnull;
	Datum		result = call_internal(fcinfo, "_partition_storage_body", GetUserId(), &isnull);

	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}

PG_FUNCTION_INFO_V1(stream_partition_start);

/* SQL: stream._partition_start(topic_id, partition): first retained offset */
Datum
stream_partition_start(PG_FUNCTION_ARGS)
{
	bool		isnull;
	Datum		result = call_internal(fcinfo, "_partition_start_body", GetUserId(), &isnull);

	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}

const char *
stream_privilege_name(int priv)
{
	return (priv >= 0 && priv < lengthof(priv_names)) ? priv_names[priv] : "";
}

/* Topics on which a role holds grants in this database, or NULL. */
static char *
topics_granted_to(Oid roleid)
{
	StreamInternalState state;
	Oid			types[1] = {OIDOID};
	Datum		args[1];
	char	   *result = NULL;
	MemoryContext callercxt = CurrentMemoryContext;

	args[0] = ObjectIdGetDatum(roleid);
	stream_internal_begin(&state);
	SPI_connect();
	if (SPI_execute_with_args("SELECT string_agg(DISTINCT t.topic, ', ') FROM stream._acl a "
							  "JOIN stream._topics t USING (topic_id) "
							  "WHERE a.role = $1::regrole OR a.granted_by = $1::regrole",
							  1, types, args, NULL, true, 1) == SPI_OK_SELECT &&
		SPI_processed == 1)
	{
		char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (v != NULL)
			result = MemoryContextStrdup(callercxt, v);
	}
	SPI_finish();
	stream_internal_end(&state);
	return result;
}

/* Remove a role's grants in this database (DROP OWNED BY). */
static void
drop_grants_of(Oid roleid)
{
	StreamInternalState state;
	Oid			types[1] = {OIDOID};
	Datum		args[1];

	args[0] = ObjectIdGetDatum(roleid);
	stream_internal_begin(&state);
	SPI_connect();
	SPI_execute_with_args("DELETE FROM stream._acl WHERE role = $1::regrole",
						  1, types, args, NULL, false, 0);
	/* what it granted to others stays granted, with no grantor (as REVOKE would not) */
	SPI_execute_with_args("UPDATE stream._acl SET granted_by = NULL WHERE granted_by = $1::regrole",
						  1, types, args, NULL, false, 0);
	SPI_finish();
	stream_internal_end(&state);
}

/*
 * Before DROP ROLE and DROP OWNED: a role with grants on topics cannot be
 * dropped, as with ordinary grants; DROP OWNED BY removes its grants.
 * Only the current database's grants are seen, as for DROP OWNED itself.
 */
void
stream_utility_roles(Node *parsetree)
{
	ListCell   *lc;

	Oid			nsp;

	/* only where the extension (at a version with grants) is installed */
	if (!IsTransactionState() || !OidIsValid(get_extension_oid("stream", true)))
		return;
	nsp = get_namespace_oid("stream", true);
	if (!OidIsValid(nsp) || !OidIsValid(get_relname_relid("_acl", nsp)))
		return;
	if (IsA(parsetree, DropRoleStmt))
	{
		foreach(lc, ((DropRoleStmt *) parsetree)->roles)
		{
			RoleSpec   *spec = lfirst(lc);
			Oid			roleid;
			char	   *topics;

			if (spec->roletype != ROLESPEC_CSTRING)
				continue;
			roleid = get_role_oid(spec->rolename, true);
			if (!OidIsValid(roleid))
				continue;
			topics = topics_granted_to(roleid);
			if (topics != NULL)
				ereport(ERROR,
						(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
						 errmsg("role \"%s\" cannot be dropped because some objects depend on it",
								spec->rolename),
						 errdetail("privileges on stream topics: %s", topics),
						 errhint("Revoke them with stream.revoke(), or run DROP OWNED BY %s first.",
								 spec->rolename)));
		}
	}
	else if (IsA(parsetree, DropOwnedStmt))
	{
		foreach(lc, ((DropOwnedStmt *) parsetree)->roles)
		{
			RoleSpec   *spec = lfirst(lc);
			Oid			roleid = get_rolespec_oid(spec, true);

			if (OidIsValid(roleid))
				drop_grants_of(roleid);
		}
	}
}
