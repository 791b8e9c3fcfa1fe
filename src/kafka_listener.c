/*-------------------------------------------------------------------------
 *
 * kafka_listener.c
 *	  The Kafka protocol listener: a background worker that accepts Kafka
 *	  clients on a TCP port and serves them from the extension's topics,
 *	  offsets and groups.
 *
 * One process, one event loop (a WaitEventSet holding the latch, the
 * listening sockets and every client socket), non-blocking sockets.  The
 * bytes of a connection are cut into frames (INT32 size, then the request);
 * the requests of one connection are handled strictly in order, each in its
 * own short transaction, by calling the extension's C code directly
 * (kafka_data.c, kafka_group.c).  The transaction runs as stream.kafka_role,
 * so Kafka clients get exactly that role's topic privileges, as an SQL
 * session of the role would.
 *
 * Failure containment: a frame that is malformed, truncated or larger than
 * stream.kafka_max_request_bytes closes its connection only.  An ERROR
 * raised while handling a request is caught around the dispatch: the
 * transaction is rolled back, the error is logged, and the request is
 * answered with a retriable error code in every part (each API's error
 * responder), so the client retries and the loop goes on.
 *
 * Long polls: a handler that must wait (a Fetch short of min_bytes, a
 * JoinGroup waiting for the other members) returns KAFKA_PARK.  The
 * connection keeps its frame and stops reading; the request is re-run when
 * the worker's latch is set (a publish to a partition the Fetch registered
 * on commits, see lso.c), when another request was handled (a group moved
 * on), or at its deadline, when it must answer.  Waits registered by
 * parked fetches outlive the transaction that registered them
 * (stream_waits_outlive_xact); every re-run pass starts by unregistering
 * them all, and parked fetches register again if they park again.
 *
 * Settings: the port, address, database and role are fixed at server
 * start (the worker is only registered when stream.kafka_port > 0); the
 * connection cap, the request size cap and the advertised host are
 * reloaded on SIGHUP.  The role is looked up again for every request, so
 * it may be dropped or renamed without leaving the worker acting as a
 * stale OID.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "libpq/pqsignal.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "kafka.h"
#include "lso.h"
#include "stream.h"

PGDLLEXPORT void stream_kafka_main(Datum arg);

/* GUCs */
int			stream_kafka_port = 0;
char	   *stream_kafka_listen_address = NULL;
char	   *stream_kafka_advertised_host = NULL;
int			stream_kafka_advertised_port = 0;
char	   *stream_kafka_database = NULL;
char	   *stream_kafka_role = NULL;
int			stream_kafka_max_connections = 100;
int			stream_kafka_max_request_bytes = 104857600;
int			stream_kafka_node_id = -1;

/* The node id told to clients, fixed when the listener starts. */
static int32 node_id = 0;

#define MAX_LISTEN_SOCKETS 8
#define RECV_CHUNK 65536
/* stop reading a connection whose answers are not being read */
#define MAX_PENDING_OUTPUT (64 * 1024 * 1024)
/* the loop wakes at least this often (group session expiry) */
#define MAX_SLEEP_MS 500

typedef struct KafkaConn
{
	int			id;
	pgsocket	sock;
	char		peer[64];
	MemoryContext cxt;			/* buffers of this connection */
	StringInfoData in;			/* received, not yet handled */
	int			in_pos;			/* start of the first unhandled byte */
	StringInfoData out;			/* to send */
	int			out_pos;		/* bytes of out already sent */
	bool		closing;		/* close once out is sent */
	/* a parked request: its frame, kept until it is answered */
	bool		parked;
	char	   *frame;
	int32		frame_len;
	TimestampTz received;
	TimestampTz wake_at;
	int			attempts;
	/* position in the wait event set and the events asked for there */
	int			wait_pos;
	uint32		wait_events;
} KafkaConn;

typedef struct KafkaApi
{
	int16		key;
	int16		min_version;
	int16		max_version;
	const char *name;
	KafkaHandler handler;
	KafkaErrorResponder error;
	bool		in_xact;		/* runs in a transaction, as stream.kafka_role */
} KafkaApi;

static KafkaResult kafka_api_versions(KafkaRequest *req, StringInfo out, TimestampTz *wake_at);
static void kafka_api_versions_error(KafkaRequest *req, StringInfo out, int16 error);

/* What we serve, in the versions Debian 12's clients need (newer ones negotiate down). */
static const KafkaApi kafka_apis[] = {
	{KAFKA_API_PRODUCE, 3, 7, "Produce", kafka_produce, kafka_produce_error, true},
	{KAFKA_API_FETCH, 4, 5, "Fetch", kafka_fetch, kafka_fetch_error, true},
	{KAFKA_API_LIST_OFFSETS, 1, 2, "ListOffsets", kafka_list_offsets, kafka_list_offsets_error, true},
	{KAFKA_API_METADATA, 0, 4, "Metadata", kafka_metadata, kafka_metadata_error, true},
	{KAFKA_API_OFFSET_COMMIT, 2, 7, "OffsetCommit", kafka_offset_commit, kafka_offset_commit_error, true},
	{KAFKA_API_OFFSET_FETCH, 1, 5, "OffsetFetch", kafka_offset_fetch, kafka_offset_fetch_error, true},
	{KAFKA_API_FIND_COORDINATOR, 0, 2, "FindCoordinator", kafka_find_coordinator, kafka_find_coordinator_error, true},
	{KAFKA_API_JOIN_GROUP, 0, 5, "JoinGroup", kafka_join_group, kafka_join_group_error, true},
	{KAFKA_API_HEARTBEAT, 0, 3, "Heartbeat", kafka_heartbeat, kafka_heartbeat_error, true},
	{KAFKA_API_LEAVE_GROUP, 0, 1, "LeaveGroup", kafka_leave_group, kafka_leave_group_error, true},
	{KAFKA_API_SYNC_GROUP, 0, 3, "SyncGroup", kafka_sync_group, kafka_sync_group_error, true},
	{KAFKA_API_API_VERSIONS, 0, 3, "ApiVersions", kafka_api_versions, kafka_api_versions_error, false},
};

static pgsocket listen_socks[MAX_LISTEN_SOCKETS];
static int	nlisten = 0;
static List *conns = NIL;		/* of KafkaConn * */
static int	next_conn_id = 1;
static WaitEventSet *wait_set = NULL;
static bool wait_set_stale = true;
static MemoryContext request_cxt = NULL;

/* Define the stream.kafka_* settings (from _PG_init, when preloaded). */
void
stream_kafka_define_gucs(void)
{
	DefineCustomIntVariable("stream.kafka_port",
							"Sets the TCP port the Kafka protocol listener accepts clients on.",
							"0 (the default) turns the listener off.",
							&stream_kafka_port,
							0, 0, 65535,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	DefineCustomStringVariable("stream.kafka_listen_address",
							   "Sets the address the Kafka protocol listener binds to.",
							   "A host name or IP address; * for every address.",
							   &stream_kafka_listen_address,
							   "127.0.0.1",
							   PGC_POSTMASTER, 0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("stream.kafka_advertised_host",
							   "Sets the host name Kafka clients are told to connect to.",
							   "Empty means stream.kafka_listen_address (or localhost when that is *).",
							   &stream_kafka_advertised_host,
							   "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("stream.kafka_advertised_port",
							"Sets the port Kafka clients are told to connect to.",
							"0 means stream.kafka_port.",
							&stream_kafka_advertised_port,
							0, 0, 65535,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomStringVariable("stream.kafka_database",
							   "Sets the database whose topics Kafka clients see.",
							   "Empty means stream.database.",
							   &stream_kafka_database,
							   "",
							   PGC_POSTMASTER, 0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("stream.kafka_role",
							   "Sets the role Kafka clients act as.",
							   "Its topic privileges are theirs. The listener does not start while it is empty.",
							   &stream_kafka_role,
							   "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("stream.kafka_node_id",
							"Sets the broker node id the Kafka listener reports.",
							"-1 (the default) uses the server's timeline, which changes when a standby is promoted.",
							&stream_kafka_node_id,
							-1, -1, PG_INT32_MAX,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("stream.kafka_max_connections",
							"Sets the maximum number of Kafka client connections.",
							"Connections past it are closed at once.",
							&stream_kafka_max_connections,
							100, 1, 10000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("stream.kafka_max_request_bytes",
							"Sets the largest Kafka request accepted.",
							"A client sending a larger one is disconnected.",
							&stream_kafka_max_request_bytes,
							104857600, 1024, MaxAllocSize - 1,
							PGC_SIGHUP, GUC_UNIT_BYTE,
							NULL, NULL, NULL);
}

/* Register the listener worker when a port is set (from _PG_init). */
void
stream_kafka_register_worker(void)
{
	BackgroundWorker worker;

	if (stream_kafka_port == 0)
		return;
	if (stream_kafka_role == NULL || stream_kafka_role[0] == '\0')
	{
		ereport(LOG,
				(errmsg("stream Kafka listener not started: stream.kafka_role is not set"),
				 errhint("Set stream.kafka_role to the role Kafka clients act as, and restart.")));
		return;
	}

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "stream");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "stream_kafka_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "stream kafka listener");
	snprintf(worker.bgw_type, BGW_MAXLEN, "stream kafka listener");
	RegisterBackgroundWorker(&worker);
}

const char *
kafka_advertised_host(void)
{
	if (stream_kafka_advertised_host && stream_kafka_advertised_host[0])
		return stream_kafka_advertised_host;
	if (strcmp(stream_kafka_listen_address, "*") == 0 ||
		strcmp(stream_kafka_listen_address, "0.0.0.0") == 0 ||
		strcmp(stream_kafka_listen_address, "::") == 0)
		return "localhost";
	return stream_kafka_listen_address;
}

int32
kafka_node_id(void)
{
	return node_id;
}

int
kafka_advertised_port(void)
{
	return stream_kafka_advertised_port > 0 ? stream_kafka_advertised_port : stream_kafka_port;
}

/* Bind and listen on every address stream.kafka_listen_address resolves to. */
static void
open_listen_sockets(void)
{
	struct addrinfo hints;
	struct addrinfo *res;
	struct addrinfo *ai;
	char		portstr[16];
	const char *host = stream_kafka_listen_address;
	int			rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	if (strcmp(host, "*") == 0 || host[0] == '\0')
		host = NULL;
	snprintf(portstr, sizeof(portstr), "%d", stream_kafka_port);
	rc = getaddrinfo(host, portstr, &hints, &res);
	if (rc != 0)
		ereport(FATAL,
				(errmsg("stream Kafka listener could not resolve \"%s\": %s",
						stream_kafka_listen_address, gai_strerror(rc))));

	for (ai = res; ai != NULL && nlisten < MAX_LISTEN_SOCKETS; ai = ai->ai_next)
	{
		pgsocket	s;
		int			one = 1;

		s = socket(ai->ai_family, SOCK_STREAM, 0);
		if (s == PGINVALID_SOCKET)
			continue;
		(void) setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
#ifdef IPV6_V6ONLY
		if (ai->ai_family == AF_INET6)
			(void) setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
#endif
		if (bind(s, ai->ai_addr, ai->ai_addrlen) < 0 || listen(s, 128) < 0 ||
			!pg_set_noblock(s))
		{
			ereport(LOG,
					(errcode_for_socket_access(),
					 errmsg("stream Kafka listener could not listen on \"%s\" port %d: %m",
							stream_kafka_listen_address, stream_kafka_port)));
			closesocket(s);
			continue;
		}
		listen_socks[nlisten++] = s;
	}
	freeaddrinfo(res);
	if (nlisten == 0)
		ereport(FATAL,
				(errmsg("stream Kafka listener could not listen on \"%s\" port %d",
						stream_kafka_listen_address, stream_kafka_port),
				 errhint("Is another program using the port? Set stream.kafka_port to a free one.")));
}

/* Close a connection and forget its state. */
static void
close_conn(KafkaConn *c, const char *why)
{
	if (why != NULL)
		ereport(LOG,
				(errmsg("stream Kafka listener closed connection %d from %s: %s",
						c->id, c->peer, why)));
	kafka_group_conn_closed(c->id);
	closesocket(c->sock);
	conns = list_delete_ptr(conns, c);
	MemoryContextDelete(c->cxt);
	pfree(c);
	wait_set_stale = true;
}

/* Accept every pending connection on a listening socket. */
static void
accept_conns(pgsocket ls)
{
	for (;;)
	{
		struct sockaddr_storage addr;
		socklen_t	addrlen = sizeof(addr);
		pgsocket	s;
		KafkaConn  *c;
		int			one = 1;
		char		host[NI_MAXHOST];
		char		serv[NI_MAXSERV];

		s = accept(ls, (struct sockaddr *) &addr, &addrlen);
		if (s == PGINVALID_SOCKET)
		{
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				ereport(LOG,
						(errcode_for_socket_access(),
						 errmsg("stream Kafka listener could not accept a connection: %m")));
			return;
		}
		if (list_length(conns) >= stream_kafka_max_connections)
		{
			ereport(LOG,
					(errmsg("stream Kafka listener refused a connection: %d connections already",
							list_length(conns)),
					 errhint("Raise stream.kafka_max_connections.")));
			closesocket(s);
			continue;
		}
		if (!pg_set_noblock(s))
		{
			closesocket(s);
			continue;
		}
		(void) setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

		c = MemoryContextAllocZero(TopMemoryContext, sizeof(KafkaConn));
		c->id = next_conn_id++;
		c->sock = s;
		if (getnameinfo((struct sockaddr *) &addr, addrlen, host, sizeof(host),
						serv, sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV) == 0)
			snprintf(c->peer, sizeof(c->peer), "%s:%s", host, serv);
		else
			strlcpy(c->peer, "?", sizeof(c->peer));
		c->cxt = AllocSetContextCreate(TopMemoryContext, "stream kafka connection",
									   ALLOCSET_SMALL_SIZES);
		{
			/* the buffers grow by repalloc, which stays in their context */
			MemoryContext old = MemoryContextSwitchTo(c->cxt);

			initStringInfo(&c->in);
			initStringInfo(&c->out);
			MemoryContextSwitchTo(old);
		}
		c->wait_pos = -1;
		conns = lappend(conns, c);
		wait_set_stale = true;
	}
}

/* Start a request's transaction, acting as stream.kafka_role. */
static void
begin_request(KafkaApi const *api, Oid *save_user, int *save_sec)
{
	Oid			role;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, api->name);
	GetUserIdAndSecContext(save_user, save_sec);
	role = get_role_oid(stream_kafka_role, true);
	if (!OidIsValid(role))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role \"%s\" named by stream.kafka_role does not exist",
						stream_kafka_role)));
	SetUserIdAndSecContext(role, *save_sec | SECURITY_LOCAL_USERID_CHANGE);
}

/* Commit a request's transaction. */
static void
end_request(Oid save_user, int save_sec)
{
	SetUserIdAndSecContext(save_user, save_sec);
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
}

bool
kafka_in_subxact(void (*fn) (void *arg), void *arg, ErrorData **error)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool ok = true;

	*error = NULL;
	BeginInternalSubTransaction(NULL);
	/* the work's allocations belong to the caller, as PL/pgSQL's do */
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		*error = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/* Append a response (header v0: the correlation id) to the connection. */
static void
queue_response(KafkaConn *c, int32 correlation_id, StringInfo body)
{
	MemoryContext old = MemoryContextSwitchTo(c->cxt);

	kw_int32(&c->out, body->len + 4);
	kw_int32(&c->out, correlation_id);
	appendBinaryStringInfo(&c->out, body->data, body->len);
	MemoryContextSwitchTo(old);
}

static const KafkaApi *
find_api(int16 key)
{
	int			i;

	for (i = 0; i < lengthof(kafka_apis); i++)
		if (kafka_apis[i].key == key)
			return &kafka_apis[i];
	return NULL;
}

/*
 * Handle one frame of c.  Returns false when the connection was closed.
 * On KAFKA_PARK the frame is kept in c (copied if it is not already c's).
 */
static bool
handle_frame(KafkaConn *c, const char *frame, int32 len, TimestampTz received, int attempt,
			 bool expired)
{
	KafkaRequest req;
	KafkaReader hdr;
	const KafkaApi *api;
	StringInfoData out;
	KafkaResult result = KAFKA_RESPOND;
	TimestampTz wake_at = 0;
	MemoryContext old;
	bool		flexible;

	MemoryContextReset(request_cxt);
	old = MemoryContextSwitchTo(request_cxt);

	memset(&req, 0, sizeof(req));
	kr_init(&hdr, frame, len);
	req.api_key = kr_int16(&hdr);
	req.api_version = kr_int16(&hdr);
	req.correlation_id = kr_int32(&hdr);
	req.client_id = kr_string(&hdr);
	req.conn = c;
	req.conn_id = c->id;
	req.attempt = attempt;
	req.received = received;
	req.expired = expired;
	if (hdr.error)
	{
		MemoryContextSwitchTo(old);
		close_conn(c, "malformed request header");
		return false;
	}
	api = find_api(req.api_key);
	if (api == NULL)
	{
		MemoryContextSwitchTo(old);
		close_conn(c, psprintf("unsupported API key %d", req.api_key));
		return false;
	}
	/* within our version ranges only ApiVersions v3 has the flexible header */
	flexible = (req.api_key == KAFKA_API_API_VERSIONS && req.api_version >= 3);
	if (flexible)
		kr_skip_tagged_fields(&hdr);
	req.body = hdr;
	req.body.data = hdr.data + hdr.pos;
	req.body.len = hdr.len - hdr.pos;
	req.body.pos = 0;

	initStringInfo(&out);
	if (req.api_version < api->min_version || req.api_version > api->max_version)
	{
		if (req.api_key != KAFKA_API_API_VERSIONS)
		{
			MemoryContextSwitchTo(old);
			close_conn(c, psprintf("unsupported version %d of %s", req.api_version, api->name));
			return false;
		}
		/* Kafka answers ApiVersions of an unknown version in v0, for the client to retry */
		req.api_version = 0;
		kafka_api_versions_error(&req, &out, KAFKA_UNSUPPORTED_VERSION);
	}
	else
	{
		Oid			save_user;
		int			save_sec;
		volatile bool failed = false;
		ErrorData  *edata = NULL;

		PG_TRY();
		{
			if (api->in_xact)
			{
				begin_request(api, &save_user, &save_sec);
				MemoryContextSwitchTo(request_cxt);
			}
			result = api->handler(&req, &out, &wake_at);
			if (api->in_xact)
				end_request(save_user, save_sec);
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(request_cxt);
			edata = CopyErrorData();
			FlushErrorState();
			failed = true;
		}
		PG_END_TRY();

		if (failed)
		{
			/* the abort restores the user id and the settings */
			AbortCurrentTransaction();
			pgstat_report_activity(STATE_IDLE, NULL);
			MemoryContextSwitchTo(request_cxt);
			ereport(LOG,
					(errmsg("stream Kafka listener: %s v%d from %s failed: %s",
							api->name, req.api_version, c->peer, edata->message),
					 edata->detail ? errdetail_internal("%s", edata->detail) : 0));
			resetStringInfo(&out);
			/* KAFKA_STORAGE_ERROR: retriable, and clients log it plainly */
			api->error(&req, &out, KAFKA_KAFKA_STORAGE_ERROR);
			/* an empty answer means none is expected (Produce with acks = 0) */
			result = (out.len > 0) ? KAFKA_RESPOND : KAFKA_NO_RESPONSE;
		}
	}

	/* an answered parked request leaves its frame for resume_answered */
	c->parked = (result == KAFKA_PARK);
	switch (result)
	{
		case KAFKA_RESPOND:
			queue_response(c, req.correlation_id, &out);
			break;
		case KAFKA_NO_RESPONSE:
			break;
		case KAFKA_PARK:
			if (c->frame == NULL)
			{
				MemoryContext cold = MemoryContextSwitchTo(c->cxt);

				c->frame = palloc(len);
				memcpy(c->frame, frame, len);
				c->frame_len = len;
				c->received = received;
				c->attempts = 0;
				MemoryContextSwitchTo(cold);
			}
			c->wake_at = wake_at;
			break;
		case KAFKA_CLOSE:
			MemoryContextSwitchTo(old);
			close_conn(c, psprintf("protocol violation in %s v%d", api->name, req.api_version));
			return false;
	}
	MemoryContextSwitchTo(old);
	return true;
}

/* Handle every complete frame received on c, until one parks. */
static bool
handle_input(KafkaConn *c)
{
	while (!c->parked && !c->closing)
	{
		int32		avail = c->in.len - c->in_pos;
		const unsigned char *p = (const unsigned char *) c->in.data + c->in_pos;
		int32		size;

		if (avail < 4)
			break;
		size = (int32) (((uint32) p[0] << 24) | ((uint32) p[1] << 16) |
						((uint32) p[2] << 8) | (uint32) p[3]);
		if (size < 8 || size > stream_kafka_max_request_bytes)
		{
			close_conn(c, psprintf("request size %d out of range (stream.kafka_max_request_bytes is %d)",
								   size, stream_kafka_max_request_bytes));
			return false;
		}
		if (avail - 4 < size)
		{
			/* make room for the whole frame at once */
			if (c->in_pos > 0)
			{
				memmove(c->in.data, c->in.data + c->in_pos, avail);
				c->in.len = avail;
				c->in_pos = 0;
			}
			break;
		}
		c->in_pos += 4 + size;
		if (!handle_frame(c, (const char *) p + 4, size, GetCurrentTimestamp(), 0, false))
			return false;
	}
	if (c->in_pos == c->in.len)
	{
		resetStringInfo(&c->in);
		c->in_pos = 0;
	}
	return true;
}

/* Read what the socket has.  Returns false when the connection was closed. */
static bool
read_conn(KafkaConn *c)
{
	for (;;)
	{
		ssize_t		n;

		enlargeStringInfo(&c->in, RECV_CHUNK);
		n = recv(c->sock, c->in.data + c->in.len, RECV_CHUNK, 0);
		if (n > 0)
		{
			c->in.len += n;
			c->in.data[c->in.len] = '\0';
			if (n < RECV_CHUNK)
				break;
			continue;
		}
		if (n == 0)
		{
			/* a clean close: half a frame left behind is the client's business */
			close_conn(c, (c->in.len > c->in_pos) ? "closed by the client in the middle of a request" : NULL);
			return false;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			break;
		close_conn(c, psprintf("receive failed: %m"));
		return false;
	}
	return handle_input(c);
}

/* Send what can be sent.  Returns false when the connection was closed. */
static bool
write_conn(KafkaConn *c)
{
	while (c->out_pos < c->out.len)
	{
		ssize_t		n = send(c->sock, c->out.data + c->out_pos, c->out.len - c->out_pos, 0);

		if (n > 0)
		{
			c->out_pos += n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return true;
		close_conn(c, psprintf("send failed: %m"));
		return false;
	}
	resetStringInfo(&c->out);
	c->out_pos = 0;
	if (c->closing)
	{
		close_conn(c, NULL);
		return false;
	}
	return true;
}

/* Re-run parked requests: every one when "all", else those past their deadline. */
static bool
run_parked(bool all)
{
	ListCell   *lc;
	TimestampTz now = GetCurrentTimestamp();
	bool		any = false;

	/*
	 * Parked fetches register again if they park again.  A pass over the
	 * expired ones only keeps the others' waits: expired ones answer, and
	 * what they leave registered costs a spurious wake-up at most.
	 */
	if (all)
		stream_wait_unregister_all();
	foreach(lc, conns)
	{
		KafkaConn  *c = (KafkaConn *) lfirst(lc);
		bool		expired;

		if (!c->parked)
			continue;
		expired = (now >= c->wake_at);
		if (!all && !expired)
			continue;
		any = true;
		c->attempts++;
		if (!handle_frame(c, c->frame, c->frame_len, c->received, c->attempts, expired))
			return true;		/* closed: the list changed, the rest next time */
		if (c->parked && expired)
		{
			/* a handler must answer once expired: do not spin on one that does not */
			elog(WARNING, "stream Kafka listener: a request parked again after its deadline");
			c->wake_at = now + 1000 * 1000;
		}
	}
	return any;
}

/* Forget the frames of answered requests and go on with the input behind them. */
static void
resume_answered(void)
{
	ListCell   *lc;

	foreach(lc, conns)
	{
		KafkaConn  *c = (KafkaConn *) lfirst(lc);

		if (c->frame == NULL || c->parked)
			continue;
		pfree(c->frame);
		c->frame = NULL;
		c->frame_len = 0;
		if (!handle_input(c))
			return;				/* list changed; the rest next time round */
	}
}

/* Rebuild the wait event set after connections came or went. */
static void
rebuild_wait_set(void)
{
	ListCell   *lc;
	int			i;

	if (wait_set != NULL)
		FreeWaitEventSet(wait_set);
	wait_set = CreateWaitEventSet(TopMemoryContext, 2 + nlisten + list_length(conns));
	AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	for (i = 0; i < nlisten; i++)
		AddWaitEventToSet(wait_set, WL_SOCKET_READABLE, listen_socks[i], NULL,
						  &listen_socks[i]);
	foreach(lc, conns)
	{
		KafkaConn  *c = (KafkaConn *) lfirst(lc);

		c->wait_events = WL_SOCKET_READABLE;
		c->wait_pos = AddWaitEventToSet(wait_set, c->wait_events, c->sock, NULL, c);
	}
	wait_set_stale = false;
}

/* What a connection waits for now: input unless busy, output while pending. */
static void
update_wait_events(KafkaConn *c)
{
	uint32		ev = 0;

	if (!c->parked && !c->closing && c->out.len - c->out_pos < MAX_PENDING_OUTPUT)
		ev |= WL_SOCKET_READABLE;
	else if (WaitEventSetCanReportClosed())
	{
		/*
		 * Busy: what the client sends next waits in the socket (watching
		 * for input would spin on it), but a close is noticed.
		 */
		ev |= WL_SOCKET_CLOSED;
	}
	if (c->out_pos < c->out.len)
		ev |= WL_SOCKET_WRITEABLE;
	if (ev != c->wait_events)
	{
		ModifyWaitEvent(wait_set, c->wait_pos, ev, NULL);
		c->wait_events = ev;
	}
}

/* Milliseconds to sleep: until the earliest parked deadline, at most MAX_SLEEP_MS. */
static long
sleep_ms(void)
{
	ListCell   *lc;
	TimestampTz now = GetCurrentTimestamp();
	long		ms = MAX_SLEEP_MS;

	foreach(lc, conns)
	{
		KafkaConn  *c = (KafkaConn *) lfirst(lc);

		if (c->parked)
		{
			long		left = (long) ((c->wake_at - now + 999) / 1000);

			ms = Max(0, Min(ms, left));
		}
	}
	return ms;
}

/* The worker's entry point. */
void
stream_kafka_main(Datum arg)
{
	const char *db;
	WaitEvent  *events;
	int			maxevents = 64;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	db = (stream_kafka_database && stream_kafka_database[0]) ? stream_kafka_database : stream_database;
	BackgroundWorkerInitializeConnection(db, NULL, 0);
	pgstat_report_appname("stream kafka listener");

	request_cxt = AllocSetContextCreate(TopMemoryContext, "stream kafka request",
										ALLOCSET_DEFAULT_SIZES);
	events = MemoryContextAlloc(TopMemoryContext, sizeof(WaitEvent) * maxevents);
	stream_waits_outlive_xact = true;
	/* the worker starts once recovery is over: the timeline is final */
	node_id = (stream_kafka_node_id >= 0) ? stream_kafka_node_id :
		(int32) GetWALInsertionTimeLine();
	kafka_group_start();
	open_listen_sockets();
	ereport(LOG,
			(errmsg("stream Kafka listener serving database \"%s\" as role \"%s\" on %s port %d (node id %d)",
					db, stream_kafka_role, stream_kafka_listen_address, stream_kafka_port, node_id)));

	for (;;)
	{
		int			n;
		int			i;
		bool		latch = false;
		ListCell   *lc;

		if (wait_set_stale)
			rebuild_wait_set();
		foreach(lc, conns)
			update_wait_events((KafkaConn *) lfirst(lc));

		n = WaitEventSetWait(wait_set, sleep_ms(), events, maxevents, PG_WAIT_EXTENSION);
		for (i = 0; i < n; i++)
		{
			WaitEvent  *ev = &events[i];

			if (ev->events & WL_LATCH_SET)
			{
				ResetLatch(MyLatch);
				latch = true;
				continue;
			}
			if (ev->user_data >= (void *) &listen_socks[0] &&
				ev->user_data < (void *) &listen_socks[MAX_LISTEN_SOCKETS])
			{
				accept_conns(ev->fd);
				continue;
			}
			if (ev->user_data == NULL || wait_set_stale)
				continue;
			if (list_member_ptr(conns, ev->user_data))
			{
				KafkaConn  *c = (KafkaConn *) ev->user_data;

				if (ev->events & WL_SOCKET_CLOSED)
				{
					close_conn(c, c->parked ? "closed by the client while its request waited" : NULL);
					continue;
				}
				if ((ev->events & WL_SOCKET_WRITEABLE) && !write_conn(c))
					continue;
				if ((ev->events & WL_SOCKET_READABLE) && !c->parked && !c->closing &&
					!read_conn(c))
					continue;
				/* answer at once what is ready: most responses fit the socket buffer */
				if (c->out.len > c->out_pos)
					(void) write_conn(c);
			}
		}

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		kafka_group_tick(GetCurrentTimestamp());
		/*
		 * The latch is set by commits to partitions parked fetches wait on,
		 * and by handlers that moved a group on (kafka_group.c).
		 */
		if (run_parked(latch))
			resume_answered();
		foreach(lc, conns)
		{
			KafkaConn  *c = (KafkaConn *) lfirst(lc);

			if (c->out.len > c->out_pos && !write_conn(c))
				break;			/* list changed; the rest next time round */
		}
		MemoryContextReset(request_cxt);
	}
}

/* ApiVersions v0-3: what we serve. */
static void
write_api_versions(KafkaRequest *req, StringInfo out, int16 error)
{
	int			i;
	bool		flexible = req->api_version >= 3;

	kw_int16(out, error);
	if (flexible)
		kw_uvarint(out, lengthof(kafka_apis) + 1);
	else
		kw_int32(out, lengthof(kafka_apis));
	for (i = 0; i < lengthof(kafka_apis); i++)
	{
		kw_int16(out, kafka_apis[i].key);
		kw_int16(out, kafka_apis[i].min_version);
		kw_int16(out, kafka_apis[i].max_version);
		if (flexible)
			kw_empty_tagged_fields(out);
	}
	if (req->api_version >= 1)
		kw_int32(out, 0);		/* throttle_time_ms */
	if (flexible)
		kw_empty_tagged_fields(out);
}

static KafkaResult
kafka_api_versions(KafkaRequest *req, StringInfo out, TimestampTz *wake_at)
{
	if (req->api_version >= 3)
	{
		/* client_software_name and _version: read to validate, not used */
		(void) kr_compact_string(&req->body);
		(void) kr_compact_string(&req->body);
		kr_skip_tagged_fields(&req->body);
		if (req->body.error)
		{
			write_api_versions(req, out, KAFKA_INVALID_REQUEST);
			return KAFKA_RESPOND;
		}
	}
	write_api_versions(req, out, KAFKA_NONE);
	return KAFKA_RESPOND;
}

static void
kafka_api_versions_error(KafkaRequest *req, StringInfo out, int16 error)
{
	write_api_versions(req, out, error);
}
