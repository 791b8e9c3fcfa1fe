/*-------------------------------------------------------------------------
 *
 * stream.c
 *	  Module entry point: GUCs, shared memory hooks, the preload check.
 *
 * The extension keeps per-partition state in shared memory (see lso.c), so
 * it must be loaded by shared_preload_libraries.  When it is not, the
 * library still loads (CREATE EXTENSION runs its script), every function
 * that needs the shared state fails with a hint, and the extension script
 * refuses to install.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "catalog/pg_authid.h"
#include "tcop/utility.h"
#include "utils/guc.h"

#include "consumer.h"
#include "kafka.h"
#include "lso.h"
#include "privileges.h"
#include "retention.h"
#include "stream.h"
#include "storage.h"
#include "topic.h"

PG_MODULE_MAGIC;

int			stream_max_partitions = 16384;
int			stream_max_xact_partitions = 256;
int			stream_max_read_messages = 100000;
int			stream_topic_cache_size = 4096;
int			stream_auto_offset_reset = STREAM_RESET_EARLIEST;
char	   *stream_database = NULL;
int			stream_naptime = 10000;

static const struct config_enum_entry offset_reset_options[] = {
	{"earliest", STREAM_RESET_EARLIEST, false},
	{"latest", STREAM_RESET_LATEST, false},
	{"error", STREAM_RESET_ERROR, false},
	{NULL, 0, false}
};

static bool preloaded = false;

#if PG_VERSION_NUM >= 150000
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;

void		_PG_init(void);
static void stream_shmem_request(void);
static void stream_shmem_startup(void);
static void stream_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
								  bool readOnlyTree, ProcessUtilityContext context,
								  ParamListInfo params, QueryEnvironment *queryEnv,
								  DestReceiver *dest, QueryCompletion *qc);

/* Refuse unknown stream.* settings; call after defining every GUC. */
static void
reserve_guc_prefix(void)
{
#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("stream");
#else
	EmitWarningsOnPlaceholders("stream");
#endif
}

/* Define GUCs and, when preloaded, ask for shared memory. */
void
_PG_init(void)
{
	DefineCustomIntVariable("stream.topic_cache_size",
							"Sets the maximum number of topics a session keeps in its topic cache.",
							"A session that uses more topics empties the cache and starts over.",
							&stream_topic_cache_size,
							4096, 1, 1000000,
							PGC_USERSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("stream.max_read_messages",
							"Sets the largest max_messages accepted by one read or poll.",
							NULL,
							&stream_max_read_messages,
							100000, 1, 10000000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomEnumVariable("stream.auto_offset_reset",
							 "Sets where a consumer resumes when its offset is below the log start.",
							 "earliest: the first retained message; latest: the last stable offset; error: poll fails.",
							 &stream_auto_offset_reset,
							 STREAM_RESET_EARLIEST, offset_reset_options,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("stream.naptime",
							"Sets the time the retention worker sleeps between cycles.",
							NULL,
							&stream_naptime,
							10000, 100, 86400000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	stream_topic_init();
	stream_storage_init();

	/* DROP ROLE and DROP OWNED look at topic grants (privileges.c) */
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = stream_ProcessUtility;

	/*
	 * Without the preload only the library is loaded (so that CREATE
	 * EXTENSION can fail with a hint); PGC_POSTMASTER settings cannot be
	 * defined after startup.
	 */
	if (!process_shared_preload_libraries_in_progress)
	{
		reserve_guc_prefix();
		return;
	}
	preloaded = true;

	DefineCustomIntVariable("stream.max_partitions",
							"Sets the number of partitions whose state is kept in shared memory at once.",
							"Idle entries are evicted and reloaded from disk when needed.",
							&stream_max_partitions,
							16384, 64, 10000000,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("stream.max_xact_partitions",
							"Sets the number of partitions one transaction may publish to.",
							NULL,
							&stream_max_xact_partitions,
							256, 1, 65536,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);

	DefineCustomStringVariable("stream.database",
							   "Sets the database the retention worker connects to.",
							   NULL,
							   &stream_database,
							   "postgres",
							   PGC_POSTMASTER, 0,
							   NULL, NULL, NULL);

	stream_kafka_define_gucs();

	reserve_guc_prefix();
	stream_retention_register();
	stream_kafka_register_worker();

#if PG_VERSION_NUM >= 150000
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = stream_shmem_request;
#else
	stream_shmem_request();
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = stream_shmem_startup;
}

/* Reserve shared memory and our LWLock tranche. */
static void
stream_shmem_request(void)
{
#if PG_VERSION_NUM >= 150000
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
#endif
	RequestAddinShmemSpace(stream_lso_shmem_size());
	RequestAddinShmemSpace(stream_consumer_shmem_size());
	/* 0: partition map (lso.c), 1: group members (consumer.c) */
	RequestNamedLWLockTranche("stream", 2);
}

/* Create or attach the shared state. */
static void
stream_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	stream_lso_shmem_init();
	stream_consumer_shmem_init();
	LWLockRelease(AddinShmemInitLock);
}

/* Fail with a useful hint unless the module was preloaded. */
void
stream_require_preload(void)
{
	if (!preloaded || !stream_shmem_ready())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("stream must be loaded via shared_preload_libraries"),
				 errhint("Add 'stream' to shared_preload_libraries in postgresql.conf and restart the server.")));
}

PG_FUNCTION_INFO_V1(stream_assert_preloaded);

/* SQL: called by the extension script so CREATE EXTENSION fails early. */
Datum
stream_assert_preloaded(PG_FUNCTION_ARGS)
{
	stream_require_preload();
	PG_RETURN_VOID();
}

/*
 * Enter the extension's internal context for catalog queries made through
 * SPI: the bootstrap superuser, as a security-restricted operation, with
 * search_path pinned to pg_catalog so that no object of the caller's can
 * be resolved by our query text.  Callers check the topic privileges
 * themselves; the catalogs are not readable by ordinary roles.  On error
 * the transaction abort restores the user and the settings.
 */
void
stream_internal_begin(StreamInternalState *state)
{
	GetUserIdAndSecContext(&state->save_userid, &state->save_sec_context);
	SetUserIdAndSecContext(BOOTSTRAP_SUPERUSERID,
						   state->save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	state->save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

/* Leave the internal context entered by stream_internal_begin. */
void
stream_internal_end(StreamInternalState *state)
{
	AtEOXact_GUC(true, state->save_nestlevel);
	SetUserIdAndSecContext(state->save_userid, state->save_sec_context);
}

/* Utility hook: let privileges.c see DROP ROLE and DROP OWNED first. */
static void
stream_ProcessUtility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					  ProcessUtilityContext context, ParamListInfo params,
					  QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;

	if (IsA(parsetree, DropRoleStmt) || IsA(parsetree, DropOwnedStmt))
		stream_utility_roles(parsetree);
	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
							queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
}

/* Error 22004 naming the first of the leading arguments that is NULL. */
void
stream_check_args_not_null(FunctionCallInfo fcinfo, const char *const *names, int nargs)
{
	int			i;

	for (i = 0; i < nargs; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not be NULL", names[i])));
}

/* Fail on a standby: what needs the primary's shared state or writes. */
void
stream_check_primary(const char *what)
{
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot execute %s on a standby server", what),
				 errhint("Connect to the primary server.")));
}
