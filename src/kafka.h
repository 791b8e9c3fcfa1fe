/*-------------------------------------------------------------------------
 *
 * kafka.h
 *	  The Kafka wire protocol listener: shared declarations.
 *
 * kafka_listener.c runs the background worker, its event loop and the
 * framing; kafka_wire.c reads and writes the protocol's primitive types;
 * kafka_records.c decodes and encodes RecordBatch v2; kafka_data.c serves
 * Metadata, Produce, Fetch and ListOffsets; kafka_group.c the group
 * coordinator and committed offsets.
 *
 * A handler is called inside a transaction that the listener starts and
 * commits, with CurrentMemoryContext a per-request context that lives
 * until the response is sent.  It reads the request body from req->body
 * and writes the response body (everything after the response header)
 * into out.  An ERROR escaping a handler is caught by the listener, which
 * rolls the transaction back and calls the API's error responder to
 * answer every part of the request with a retriable error code.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAM_KAFKA_H
#define STREAM_KAFKA_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"

/* API keys served */
#define KAFKA_API_PRODUCE			0
#define KAFKA_API_FETCH				1
#define KAFKA_API_LIST_OFFSETS		2
#define KAFKA_API_METADATA			3
#define KAFKA_API_OFFSET_COMMIT		8
#define KAFKA_API_OFFSET_FETCH		9
#define KAFKA_API_FIND_COORDINATOR	10
#define KAFKA_API_JOIN_GROUP		11
#define KAFKA_API_HEARTBEAT			12
#define KAFKA_API_LEAVE_GROUP		13
#define KAFKA_API_SYNC_GROUP		14
#define KAFKA_API_API_VERSIONS		18

/* Error codes used (Kafka's numbering) */
#define KAFKA_NONE								0
#define KAFKA_UNKNOWN_SERVER_ERROR				(-1)
#define KAFKA_OFFSET_OUT_OF_RANGE				1
#define KAFKA_CORRUPT_MESSAGE					2
#define KAFKA_UNKNOWN_TOPIC_OR_PARTITION		3
#define KAFKA_LEADER_NOT_AVAILABLE				5
#define KAFKA_NOT_LEADER_OR_FOLLOWER			6
#define KAFKA_REQUEST_TIMED_OUT					7
#define KAFKA_MESSAGE_TOO_LARGE					10
#define KAFKA_COORDINATOR_LOAD_IN_PROGRESS		14
#define KAFKA_COORDINATOR_NOT_AVAILABLE			15
#define KAFKA_NOT_COORDINATOR					16
#define KAFKA_INVALID_TOPIC_EXCEPTION			17
#define KAFKA_RECORD_LIST_TOO_LARGE				18
#define KAFKA_INVALID_REQUIRED_ACKS				21
#define KAFKA_ILLEGAL_GENERATION				22
#define KAFKA_INCONSISTENT_GROUP_PROTOCOL		23
#define KAFKA_INVALID_GROUP_ID					24
#define KAFKA_UNKNOWN_MEMBER_ID					25
#define KAFKA_INVALID_SESSION_TIMEOUT			26
#define KAFKA_REBALANCE_IN_PROGRESS				27
#define KAFKA_INVALID_COMMIT_OFFSET_SIZE		28
#define KAFKA_TOPIC_AUTHORIZATION_FAILED		29
#define KAFKA_GROUP_AUTHORIZATION_FAILED		30
#define KAFKA_CLUSTER_AUTHORIZATION_FAILED		31
#define KAFKA_UNSUPPORTED_VERSION				35
#define KAFKA_INVALID_REQUEST					42
#define KAFKA_UNSUPPORTED_FOR_MESSAGE_FORMAT	43
#define KAFKA_KAFKA_STORAGE_ERROR				56
#define KAFKA_UNSUPPORTED_COMPRESSION_TYPE		76
#define KAFKA_MEMBER_ID_REQUIRED				79
#define KAFKA_INVALID_RECORD					87

/* ---- reading: kafka_wire.c ---- */

/*
 * A cursor over a received frame.  Readers never read past len: on a short
 * or malformed field they set error and return a zero value, so a handler
 * may read a whole request and check error once at the end.
 */
typedef struct KafkaReader
{
	const char *data;
	int32		len;
	int32		pos;
	bool		error;
} KafkaReader;

extern void kr_init(KafkaReader *r, const char *data, int32 len);
extern int8 kr_int8(KafkaReader *r);
extern int16 kr_int16(KafkaReader *r);
extern int32 kr_int32(KafkaReader *r);
extern int64 kr_int64(KafkaReader *r);
extern uint32 kr_uvarint(KafkaReader *r);
extern int32 kr_varint(KafkaReader *r);
extern int64 kr_varlong(KafkaReader *r);
/* STRING/NULLABLE_STRING: palloc'd, NUL-terminated; NULL for a null string */
extern char *kr_string(KafkaReader *r);
extern char *kr_compact_string(KafkaReader *r);
/* BYTES/NULLABLE_BYTES: points into the frame; NULL and *len = -1 for null */
extern const char *kr_bytes(KafkaReader *r, int32 *len);
extern const char *kr_compact_bytes(KafkaReader *r, int32 *len);
/* ARRAY length: -1 for null; an error when it cannot fit in what is left */
extern int32 kr_array_len(KafkaReader *r);
extern int32 kr_compact_array_len(KafkaReader *r);
extern void kr_skip_tagged_fields(KafkaReader *r);
extern void kr_skip(KafkaReader *r, int32 n);

/* ---- writing: kafka_wire.c (big-endian, appended to a StringInfo) ---- */

extern void kw_int8(StringInfo w, int8 v);
extern void kw_int16(StringInfo w, int16 v);
extern void kw_int32(StringInfo w, int32 v);
extern void kw_int64(StringInfo w, int64 v);
extern void kw_uvarint(StringInfo w, uint32 v);
extern void kw_varint(StringInfo w, int32 v);
extern void kw_varlong(StringInfo w, int64 v);
/* STRING, or NULLABLE_STRING when s is NULL */
extern void kw_string(StringInfo w, const char *s);
extern void kw_compact_string(StringInfo w, const char *s);
/* BYTES, or NULLABLE_BYTES when len < 0 */
extern void kw_bytes(StringInfo w, const char *data, int32 len);
extern void kw_empty_tagged_fields(StringInfo w);
/* Reserve an INT32 to fill in later (lengths, counts); returns its position */
extern int	kw_reserve_int32(StringInfo w);
extern void kw_patch_int32(StringInfo w, int pos, int32 v);

/* ---- requests and handlers ---- */

struct KafkaConn;

typedef struct KafkaRequest
{
	int16		api_key;
	int16		api_version;
	int32		correlation_id;
	char	   *client_id;		/* NULL when the client sent none */
	KafkaReader body;			/* positioned after the request header */
	struct KafkaConn *conn;
	int			conn_id;		/* unique per connection, for logs and groups */
	int			attempt;		/* 0 first; n after n wake-ups while parked */
	TimestampTz received;		/* when the request was read */
	bool		expired;		/* parked and its deadline passed: answer now */
} KafkaRequest;

typedef enum KafkaResult
{
	KAFKA_RESPOND,				/* send what the handler wrote into out */
	KAFKA_NO_RESPONSE,			/* send nothing (Produce with acks = 0) */
	KAFKA_PARK,					/* answer later: call again at *wake_at or
								 * when the worker's latch is set */
	KAFKA_CLOSE					/* close the connection (protocol violation) */
} KafkaResult;

/*
 * Handle a request.  On KAFKA_PARK nothing written to out is kept and
 * *wake_at says when to call again at the latest (the call after that one
 * has req->expired set and must answer).  A parked handler is called again
 * with the same request bytes and attempt incremented; it must be safe to
 * re-run.  Parked requests are re-run when the worker's latch is set: by a
 * commit to a partition a parked Fetch registered a wait on, or by a
 * handler that changed something a parked request waits for (it calls
 * SetLatch(MyLatch)).
 */
typedef KafkaResult (*KafkaHandler) (KafkaRequest *req, StringInfo out,
									 TimestampTz *wake_at);

/*
 * Answer a request whose handler raised an ERROR: write a complete response
 * body carrying error (a retriable code) for every part of the request.
 * Runs outside of any transaction; must not raise.  Writing nothing means
 * the request expects no answer (Produce with acks = 0).
 */
typedef void (*KafkaErrorResponder) (KafkaRequest *req, StringInfo out, int16 error);

/* kafka_data.c */

/*
 * The topic a request names, if it exists and the role holds priv on it
 * (a STREAM_PRIV_* mask); else NULL and *error is UNKNOWN_TOPIC_OR_PARTITION
 * or TOPIC_AUTHORIZATION_FAILED.
 */
struct StreamTopic;
extern struct StreamTopic *kafka_find_topic(const char *name, int priv, int16 *error);
extern KafkaResult kafka_metadata(KafkaRequest *req, StringInfo out, TimestampTz *wake_at);
extern void kafka_metadata_error(KafkaRequest *req, StringInfo out, int16 error);
extern KafkaResult kafka_produce(KafkaRequest *req, StringInfo out, TimestampTz *wake_at);
extern void kafka_produce_error(KafkaRequest *req, StringInfo out, int16 error);
extern KafkaResult kafka_fetch(KafkaRequest *req, StringInfo out, TimestampTz *wake_at);
extern void kafka_fetch_error(KafkaRequest *req, StringInfo out, int16 error);
extern KafkaResult kafka_list_offsets(KafkaRequest *req, StringInfo out, TimestampTz *wake_at);
extern void kafka_list_offsets_error(KafkaRequest *req, StringInfo out, int16 error);

/* kafka_group.c */
extern KafkaResult kafka_find_coordinator(KafkaRequest *req, StringInfo out, TimestampTz *wake_at);
extern void kafka_find_coordinator_error(KafkaRequest *req, StringInfo out, int16 error);
extern KafkaResult kafka_join_group(KafkaRequest *req, StringInfo out, TimestampTz *wake_at);
extern void kafka_join_group_error(KafkaRequest *req, StringInfo out, int16 error);
extern KafkaResult kafka_sync_group(KafkaRequest *req, StringInfo out, TimestampTz *wake_at);
extern void kafka_sync_group_error(KafkaRequest *req, StringInfo out, int16 error);
extern KafkaResult kafka_heartbeat(KafkaRequest *req, StringInfo out, TimestampTz *wake_at);
extern void kafka_heartbeat_error(KafkaRequest *req, StringInfo out, int16 error);
extern KafkaResult kafka_leave_group(KafkaRequest *req, StringInfo out, TimestampTz *wake_at);
extern void kafka_leave_group_error(KafkaRequest *req, StringInfo out, int16 error);
extern KafkaResult kafka_offset_commit(KafkaRequest *req, StringInfo out, TimestampTz *wake_at);
extern void kafka_offset_commit_error(KafkaRequest *req, StringInfo out, int16 error);
extern KafkaResult kafka_offset_fetch(KafkaRequest *req, StringInfo out, TimestampTz *wake_at);
extern void kafka_offset_fetch_error(KafkaRequest *req, StringInfo out, int16 error);
/*
 * Groups with live Kafka members, in shared memory, so that an SQL session
 * joining one of them is refused (consumer.c), as a Kafka member joining a
 * group with live SQL members is (kafka_group.c).
 */
extern Size kafka_live_groups_shmem_size(void);
extern void kafka_live_groups_shmem_init(void);
extern bool stream_group_has_kafka_members(const char *group);
/* Called by the listener at start: forget what a previous listener left. */
extern void kafka_group_start(void);
/* Called by the listener when a connection closes (members it carried). */
extern void kafka_group_conn_closed(int conn_id);
/* Called by the listener once per loop: expire sessions, finish rebalances. */
extern void kafka_group_tick(TimestampTz now);

/* ---- the listener: kafka_listener.c ---- */

/* GUCs */
extern int	stream_kafka_port;
extern char *stream_kafka_listen_address;
extern char *stream_kafka_advertised_host;
extern int	stream_kafka_advertised_port;
extern char *stream_kafka_database;
extern char *stream_kafka_role;
extern int	stream_kafka_max_connections;
extern int	stream_kafka_max_request_bytes;

/*
 * The broker's node id, host and port as told to clients (Metadata,
 * FindCoordinator).  The node id is stream.kafka_node_id, or by default the
 * server's timeline, so that a promoted standby is a new broker to the
 * clients: librdkafka keeps its group coordinator connection to a node id it
 * knows, and would never reach the new primary's coordinator at node 0
 * again.
 */
#define KAFKA_NODE_ID (kafka_node_id())
extern int32 kafka_node_id(void);
extern int	stream_kafka_node_id;
extern const char *kafka_advertised_host(void);
extern int	kafka_advertised_port(void);

/*
 * Run fn(arg) in a subtransaction of the request's transaction: true when
 * it succeeded; otherwise its work is rolled back, the error is returned
 * in *error (palloc'd; the caller logs it) and the transaction goes on.
 * Used where one part of a request must not undo or half-write the others.
 */
extern bool kafka_in_subxact(void (*fn) (void *arg), void *arg, ErrorData **error);

extern void stream_kafka_define_gucs(void);
extern void stream_kafka_register_worker(void);

#endif							/* STREAM_KAFKA_H */
