/*-------------------------------------------------------------------------
 *
 * topic.c
 *	  Backend-local cache of topic metadata, keyed by topic name.
 *
 * Publishing resolves the topic on every call, so the catalog row is read
 * once and kept in a hash table in CacheMemoryContext.  The catalog tables
 * carry a statement trigger (stream._catalog_changed) that sends a relcache
 * invalidation for the changed table at commit; our relcache callback
 * flushes the whole cache when it sees one for stream._topics or
 * stream._acl, the two tables a topic is read from (or a full reset).
 * Misses are read with a fresh snapshot, not the transaction's: a cache
 * filled from an old REPEATABLE READ snapshot would outlive the
 * invalidation that should have replaced it.  The cache holds at most
 * stream.topic_cache_size topics (about 600 bytes each); a backend that touches
 * more starts over with an empty one, so its memory stays bounded however
 * many topics the database has.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/sinval.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "stream.h"
#include "topic.h"

static HTAB *topic_cache = NULL;
/*
 * stream._topics and stream._acl: what a cached topic is read from.  Changes
 * of the other catalogs (segment rolls, retention) must not flush the cache:
 * every backend would reload every topic it uses after every roll.
 */
static Oid	catalog_relids[2] = {InvalidOid, InvalidOid};

static void topic_cache_callback(Datum arg, Oid relid);
static bool load_topic(const char *name, StreamTopic *out);
static void create_topic_cache(void);

/* Register the invalidation callback (once per backend, from _PG_init). */
void
stream_topic_init(void)
{
	CacheRegisterRelcacheCallback(topic_cache_callback, (Datum) 0);
}

/* Flush the cache when one of our catalogs changed. */
static void
topic_cache_callback(Datum arg, Oid relid)
{
	int			i;
	bool		ours = !OidIsValid(relid);

	for (i = 0; i < lengthof(catalog_relids) && !ours; i++)
		ours = (relid == catalog_relids[i] || !OidIsValid(catalog_relids[i]));
	if (!ours || topic_cache == NULL)
		return;
	hash_destroy(topic_cache);
	topic_cache = NULL;
	for (i = 0; i < lengthof(catalog_relids); i++)
		catalog_relids[i] = InvalidOid;
}

/* Is this a valid topic or group name: [A-Za-z0-9._-]{1,200}? */
bool
stream_name_is_valid(const char *name)
{
	size_t		len = strlen(name);
	const char *p;

	if (len < 1 || len > STREAM_TOPIC_MAXLEN)
		return false;
	for (p = name; *p; p++)
		if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
			  (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-'))
			return false;
	return true;
}

/* Error 22023 unless name is a valid name; kind is "topic" or "group". */
void
stream_check_name(const char *kind, const char *name)
{
	size_t		len = strlen(name);

	if (stream_name_is_valid(name))
		return;
	if (len < 1 || len > STREAM_TOPIC_MAXLEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s name \"%s\"", kind, len > 64 ? "(too long)" : name),
				 errdetail("%c%s names are 1 to %d characters long.",
						   pg_toupper((unsigned char) kind[0]), kind + 1, STREAM_TOPIC_MAXLEN)));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid %s name \"%s\"", kind, name),
			 errhint("%c%s names may contain only letters A-Z and a-z, digits, '.', '_' and '-'.",
					 pg_toupper((unsigned char) kind[0]), kind + 1)));
}

/* Check a topic name. */
void
stream_check_topic_name(const char *name)
{
	stream_check_name("topic", name);
}

/* Read a topic's grants into its cache entry (inside load_topic's SPI). */
static void
load_grants(StreamTopic *out)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1];
	Snapshot	snap;
	uint64		i;
	int			ret;

	if (plan == NULL)
	{
		plan = SPI_prepare("SELECT role::oid, bit_or(CASE privilege WHEN 'publish' THEN 1 "
						   "WHEN 'consume' THEN 2 ELSE 4 END) "
						   "FROM stream._acl WHERE topic_id = $1 GROUP BY role",
						   1, argtypes);
		if (plan == NULL)
			elog(ERROR, "stream: SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
	}
	args[0] = Int32GetDatum(out->topic_id);
	snap = RegisterSnapshot(GetLatestSnapshot());
	ret = SPI_execute_snapshot(plan, args, NULL, snap, InvalidSnapshot, true, false, 0);
	UnregisterSnapshot(snap);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "stream: grant lookup failed: %s", SPI_result_code_string(ret));
	out->ngrants = 0;
	for (i = 0; i < SPI_processed && i < STREAM_MAX_GRANTEES; i++)
	{
		bool		isnull;

		out->grant_roles[i] = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
															 SPI_tuptable->tupdesc, 1, &isnull));
		out->grant_privs[i] = (uint8) DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i],
																  SPI_tuptable->tupdesc, 2, &isnull));
		out->ngrants++;
	}
}

/* Does a topic of that name exist (no error for bad or missing names)? */
bool
stream_topic_exists_by_name(const char *name)
{
	StreamTopic loaded;

	if (!stream_name_is_valid(name))
		return false;
	AcceptInvalidationMessages();
	if (topic_cache != NULL && hash_search(topic_cache, name, HASH_FIND, NULL) != NULL)
		return true;
	return load_topic(name, &loaded);
}

/* The OID of stream._topics (in a transaction, with the extension installed). */
Oid
stream_topics_catalog_oid(void)
{
	return get_relname_relid("_topics", get_namespace_oid("stream", false));
}

/* Read one topic's catalog row; false if it does not exist. */
static bool
load_topic(const char *name, StreamTopic *out)
{
	StreamInternalState internal;
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	Snapshot	snap;
	int			ret;
	bool		found = false;

	stream_internal_begin(&internal);
	SPI_connect();
	if (plan == NULL)
	{
		plan = SPI_prepare("SELECT topic_id, partitions, value_type::oid, max_message_bytes, "
						   "segment_bytes, created_at, "
						   "'stream._topics'::regclass::oid, 'stream._acl'::regclass::oid "
						   "FROM stream._topics WHERE topic = $1",
						   1, argtypes);
		if (plan == NULL)
			elog(ERROR, "stream: SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
	}
	args[0] = CStringGetTextDatum(name);
	snap = RegisterSnapshot(GetLatestSnapshot());
	ret = SPI_execute_snapshot(plan, args, NULL, snap, InvalidSnapshot, true, false, 1);
	UnregisterSnapshot(snap);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "stream: topic lookup failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		strlcpy(out->name, name, sizeof(out->name));
		out->topic_id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		out->partitions = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
		out->value_type = DatumGetObjectId(SPI_getbinval(tup, desc, 3, &isnull));
		out->max_message_bytes = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
		out->segment_bytes = DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull));
		out->created_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 6, &isnull));
		catalog_relids[0] = DatumGetObjectId(SPI_getbinval(tup, desc, 7, &isnull));
		out->catalog_oid = catalog_relids[0];
		catalog_relids[1] = DatumGetObjectId(SPI_getbinval(tup, desc, 8, &isnull));
		found = true;
	}
	if (found)
		load_grants(out);
	SPI_finish();
	stream_internal_end(&internal);
	return found;
}

/*
 * Return a copy in the caller's memory context: any lock taken later in the
 * caller may process invalidations and destroy the cache under it.
 */
static StreamTopic *
copy_topic(StreamTopic *entry)
{
	StreamTopic *copy = palloc(sizeof(StreamTopic));

	memcpy(copy, entry, sizeof(StreamTopic));
	return copy;
}

/* Create the empty cache. */
static void
create_topic_cache(void)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = STREAM_TOPIC_MAXLEN + 1;
	ctl.entrysize = sizeof(StreamTopic);
	ctl.hcxt = CacheMemoryContext;
	topic_cache = hash_create("stream topic cache", Min(64, stream_topic_cache_size), &ctl,
							  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
}

/* The cached topic of a valid name, loading it on a miss; NULL if none. */
static StreamTopic *
find_topic(const char *name)
{
	StreamTopic *entry;
	StreamTopic loaded;
	bool		found;

	/* a concurrent alter/drop that committed must be seen now */
	AcceptInvalidationMessages();

	if (topic_cache == NULL)
		create_topic_cache();

	entry = hash_search(topic_cache, name, HASH_FIND, NULL);
	if (entry != NULL)
		return copy_topic(entry);

	memset(&loaded, 0, sizeof(loaded));
	if (!load_topic(name, &loaded))
		return NULL;

	/* loading may have processed invalidations that destroyed the cache */
	if (topic_cache == NULL)
		return find_topic(name);
	if (hash_get_num_entries(topic_cache) >= stream_topic_cache_size)
	{
		hash_destroy(topic_cache);
		create_topic_cache();
	}

	entry = hash_search(topic_cache, name, HASH_ENTER, &found);
	memcpy(entry, &loaded, sizeof(StreamTopic));
	return copy_topic(entry);
}

/* Look a topic up by name (C string), erroring if it does not exist. */
StreamTopic *
stream_topic_lookup_cstr(const char *name)
{
	StreamTopic *topic;

	stream_check_topic_name(name);
	topic = find_topic(name);
	if (topic == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("topic \"%s\" does not exist", name),
				 errhint("Create it with stream.create_topic('%s').", name)));
	return topic;
}

/* Look a topic up by name (C string); NULL for a missing topic or a bad name. */
StreamTopic *
stream_topic_find_cstr(const char *name)
{
	if (name == NULL || !stream_name_is_valid(name))
		return NULL;
	return find_topic(name);
}

/* Look a topic up by name (text). */
StreamTopic *
stream_topic_lookup(text *name)
{
	char	   *cname = text_to_cstring(name);

	return stream_topic_lookup_cstr(cname);
}

/* Check that a partition number exists in the topic. */
void
stream_check_partition(StreamTopic *topic, int32 partition)
{
	if (partition < 0 || partition >= topic->partitions)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("partition %d of topic \"%s\" does not exist", partition, topic->name),
				 errdetail("Topic \"%s\" has %d partition%s, numbered from 0.",
						   topic->name, topic->partitions,
						   topic->partitions == 1 ? "" : "s")));
}

PG_FUNCTION_INFO_V1(stream_catalog_changed);

/* Trigger: send a relcache invalidation for the changed catalog table. */
Datum
stream_catalog_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "stream._catalog_changed() must be called as a trigger");
	CacheInvalidateRelcache(trigdata->tg_relation);
	return PointerGetDatum(NULL);
}
