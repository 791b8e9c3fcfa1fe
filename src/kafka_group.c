/*-------------------------------------------------------------------------
 *
 * kafka_group.c
 *	  The Kafka listener's group coordinator (FindCoordinator, JoinGroup,
 *	  SyncGroup, Heartbeat, LeaveGroup) and committed offsets (OffsetCommit,
 *	  OffsetFetch).
 *
 * The coordinator is this broker for every group (FindCoordinator answers
 * KAFKA_NODE_ID at the advertised address; the transaction coordinator key
 * type answers COORDINATOR_NOT_AVAILABLE: transactions are not supported).
 *
 * Groups live in the listener's memory: a hash table of KGroup, each with
 * its own memory context, its members in join order.  They follow Kafka's
 * classic group protocol:
 *
 *	 Empty --join--> PreparingRebalance --every member rejoined, or the
 *	 rebalance timeout--> CompletingRebalance --leader's SyncGroup--> Stable
 *
 * and back to PreparingRebalance when a member joins, leaves, changes its
 * protocols, or misses its session timeout; a group with no member left is
 * Empty and is forgotten (Dead) by the next tick.  Committed offsets do not
 * live here but in stream._offsets, so forgetting a group loses nothing but
 * its generation number.
 *
 * Membership details, as Kafka does them: a JoinGroup v4+ with an empty
 * member id answers MEMBER_ID_REQUIRED with a new id, which the client must
 * send back within its session timeout (until then the id is "pending" and
 * blocks the completion of a rebalance); older versions join at once.  The
 * first member is the leader (when it leaves, the first member that rejoins
 * the next rebalance).  The protocol of a generation is the first of the
 * leader's protocols, in its preference order, that every member supports;
 * a member whose protocols share none with the others' is refused with
 * INCONSISTENT_GROUP_PROTOCOL.  Only the leader receives the members'
 * metadata; the assignments the leader sends in SyncGroup are relayed as
 * opaque bytes, so every client-side assignor works, cooperative-sticky
 * included (its second, incremental rebalance is just another rebalance
 * here).  Heartbeats answer REBALANCE_IN_PROGRESS while the group prepares
 * a rebalance, which is how the members learn they must rejoin.
 *
 * Parked requests.  A JoinGroup waits until every known member rejoined (or
 * the rebalance timeout, the longest of the members', passed: members that
 * did not rejoin are removed), a follower's SyncGroup until the leader's
 * assignment arrived.  The handler returns KAFKA_PARK and the listener runs
 * it again later with the same bytes; the handlers are written to be re-run:
 * a parked JoinGroup is recorded in its member (connection id, correlation
 * id), and when the rebalance completes the response of every parked member
 * is built at once and kept in the member until its re-run takes it.  A
 * parked SyncGroup just looks at the group again.  Whatever moves a group
 * on sets the worker's latch, so that the listener re-runs the parked
 * requests promptly.  A member waiting in a parked request is alive; any
 * other member must heartbeat (or join, sync or commit) within its session
 * timeout, checked by kafka_group_tick().  A connection that closes does
 * not remove its members (Kafka does not either: the session timeout does),
 * but its parked requests are gone: they no longer keep a member alive, and
 * a completed join that was never delivered is dropped.
 *
 * Session timeouts are accepted between 1 s and 30 min (Kafka's broker
 * default minimum is 6 s; a lower one makes tests of expiry short).
 *
 * Static membership (group.instance.id, JoinGroup v5) is refused: such a
 * JoinGroup answers UNSUPPORTED_VERSION and the reason is logged.  Leave
 * group.instance.id unset; members are then dynamic, as in Kafka before 2.3.
 *
 * Committed offsets.  OffsetCommit and OffsetFetch read and write
 * stream._offsets through offsets.c, with the meaning SQL gives them (the
 * offset of the next message to read), so stream.consumer_lag shows Kafka
 * groups as it shows SQL ones.  A commit from a member checks the member
 * and its generation as Kafka does; generation -1 with an empty member id
 * is a "simple" commit from outside any group (assign() consumers, tools),
 * allowed while the group has no Kafka member.  Each partition is checked
 * (topic exists, the role holds the consume privilege, partition exists,
 * 0 <= offset <= end offset, as SQL's stream.commit() checks it: refused
 * with OFFSET_OUT_OF_RANGE), and each is stored in a subtransaction of its
 * own, so one partition's failure does not undo or half-write the others.
 * The commit's metadata string is not kept: OffsetFetch returns "".  A
 * partition without a committed offset fetches -1.
 *
 * Kafka and SQL groups of the same name SHARE their committed offsets: the
 * same rows, the same meaning; a group can move from SQL consumers to
 * Kafka consumers and back, resuming where the other left off.  They must
 * not consume at the same time, since SQL members own partitions through
 * advisory locks the Kafka coordinator does not take: a JoinGroup is
 * refused with INCONSISTENT_GROUP_PROTOCOL (and the reason is logged) while
 * a live SQL session is a member of the group on any topic, and so is a
 * simple commit; the other way round, an SQL session's first poll of a
 * group with live Kafka members fails with 55006 (consumer.c).  For that
 * the names of the groups that have Kafka members are kept in shared
 * memory (KLiveGroups).  Each side registers itself before it looks at the
 * other (a JoinGroup publishes its group name, then checks for SQL
 * members; an SQL join takes its member slot, then checks the names), so
 * of two racing joins at least one is refused.
 *
 * Locking: the groups belong to the one listener process; handlers and the
 * tick run one at a time in its event loop.  KLiveGroups is written by the
 * listener and read by SQL sessions joining a group, both under its
 * spinlock (a scan of at most KAFKA_MAX_LIVE_GROUPS hashes).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "common/hashfn.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "consumer.h"
#include "kafka.h"
#include "offsets.h"
#include "privileges.h"
#include "read.h"
#include "stream.h"
#include "topic.h"

/* Bounds of a member's session timeout, in ms */
#define KG_MIN_SESSION_TIMEOUT_MS	1000
#define KG_MAX_SESSION_TIMEOUT_MS	1800000

typedef enum KGroupState
{
	KG_EMPTY,
	KG_PREPARING_REBALANCE,
	KG_COMPLETING_REBALANCE,
	KG_STABLE,
	KG_DEAD
} KGroupState;

static const char *const kg_state_names[] = {
	"Empty", "PreparingRebalance", "CompletingRebalance", "Stable", "Dead"
};

typedef struct KProtocol
{
	char	   *name;
	char	   *metadata;
	int32		len;
} KProtocol;

typedef struct KMember
{
	char	   *member_id;
	char	   *client_id;
	bool		pending;		/* id handed out by MEMBER_ID_REQUIRED, not
								 * joined yet */
	int32		session_timeout_ms;
	int32		rebalance_timeout_ms;
	TimestampTz last_seen;		/* last join, sync, heartbeat or commit */
	int			nprotocols;
	KProtocol  *protocols;
	bool		joined;			/* rejoined during the current rebalance */
	/* a parked JoinGroup (join_conn -1: none) and its response once ready */
	int			join_conn;
	int32		join_corr;
	int16		join_version;
	char	   *join_response;
	int32		join_response_len;
	/* a parked SyncGroup (sync_conn -1: none) */
	int			sync_conn;
	/* the assignment of the current generation, from the leader */
	char	   *assignment;
	int32		assignment_len;
} KMember;

typedef struct KGroup
{
	char		name[STREAM_GROUP_MAXLEN + 1];	/* hash key */
	MemoryContext cxt;			/* everything the group and members hold */
	KGroupState state;
	int32		generation;
	char	   *protocol_type;
	char	   *protocol;		/* of the current generation */
	char	   *leader;			/* member id; NULL once the leader left */
	List	   *members;		/* KMember *, in join order */
	TimestampTz rebalance_deadline;
} KGroup;

static HTAB *kgroups = NULL;
static MemoryContext kgroups_cxt = NULL;
static uint64 member_seq = 0;

/* ---------------------------------------------------------------------
 * Group bookkeeping (memory only: safe inside and outside transactions)
 * ---------------------------------------------------------------------
 */

/* Groups with Kafka members, in shared memory (see the header comment). */
#define KAFKA_MAX_LIVE_GROUPS 1024

typedef struct KLiveGroup
{
	uint32		hash;
	char		name[STREAM_GROUP_MAXLEN + 1];
} KLiveGroup;

typedef struct KLiveGroups
{
	slock_t		mutex;
	Oid			dbid;			/* the listener's database */
	int			n;
	bool		overflowed;		/* logged once: some groups are not listed */
	KLiveGroup	groups[KAFKA_MAX_LIVE_GROUPS];
} KLiveGroups;

static KLiveGroups *live_groups = NULL;

Size
kafka_live_groups_shmem_size(void)
{
	return MAXALIGN(sizeof(KLiveGroups));
}

/* Create or attach the registry (AddinShmemInitLock held). */
void
kafka_live_groups_shmem_init(void)
{
	bool		found;

	live_groups = ShmemInitStruct("stream kafka live groups", sizeof(KLiveGroups), &found);
	if (!found)
	{
		SpinLockInit(&live_groups->mutex);
		live_groups->dbid = InvalidOid;
		live_groups->n = 0;
		live_groups->overflowed = false;
	}
}

static int
live_find(const char *name, uint32 hash)
{
	int			i;

	for (i = 0; i < live_groups->n; i++)
		if (live_groups->groups[i].hash == hash &&
			strcmp(live_groups->groups[i].name, name) == 0)
			return i;
	return -1;
}

/* List or unlist a group name as having Kafka members. */
static void
live_set(const char *name, bool live)
{
	uint32		hash = hash_bytes((const unsigned char *) name, strlen(name));
	int			i;
	bool		overflow = false;

	if (live_groups == NULL)
		return;
	SpinLockAcquire(&live_groups->mutex);
	i = live_find(name, hash);
	if (live && i < 0)
	{
		if (live_groups->n < KAFKA_MAX_LIVE_GROUPS)
		{
			KLiveGroup *lg = &live_groups->groups[live_groups->n++];

			lg->hash = hash;
			strlcpy(lg->name, name, sizeof(lg->name));
		}
		else if (!live_groups->overflowed)
			live_groups->overflowed = overflow = true;
	}
	else if (!live && i >= 0)
		live_groups->groups[i] = live_groups->groups[--live_groups->n];
	SpinLockRelease(&live_groups->mutex);
	if (overflow)
		ereport(WARNING,
				(errmsg("stream Kafka listener: more than %d groups have Kafka members",
						KAFKA_MAX_LIVE_GROUPS),
				 errdetail("SQL sessions joining the groups past that number are not refused.")));
}

/* Does a live Kafka member consume the group (in this database)? */
bool
stream_group_has_kafka_members(const char *group)
{
	uint32		hash = hash_bytes((const unsigned char *) group, strlen(group));
	bool		found;

	if (live_groups == NULL)
		return false;
	SpinLockAcquire(&live_groups->mutex);
	found = (live_groups->dbid == MyDatabaseId && live_find(group, hash) >= 0);
	SpinLockRelease(&live_groups->mutex);
	return found;
}

/* The listener starts: nothing it did not list itself is live. */
void
kafka_group_start(void)
{
	if (live_groups == NULL)
		return;
	SpinLockAcquire(&live_groups->mutex);
	live_groups->n = 0;
	live_groups->dbid = MyDatabaseId;
	live_groups->overflowed = false;
	SpinLockRelease(&live_groups->mutex);
}

/* Set the worker's latch: the listener then re-runs parked requests. */
static void
wake_parked(void)
{
	SetLatch(MyLatch);
}

/* Find a group, creating it (Empty) when create is set; NULL otherwise. */
static KGroup *
find_group(const char *name, bool create)
{
	KGroup	   *g;
	bool		found;

	if (strlen(name) > STREAM_GROUP_MAXLEN)
		return NULL;
	if (kgroups == NULL)
	{
		HASHCTL		ctl;

		if (!create)
			return NULL;
		kgroups_cxt = AllocSetContextCreate(TopMemoryContext, "stream kafka groups",
											ALLOCSET_SMALL_SIZES);
		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = STREAM_GROUP_MAXLEN + 1;
		ctl.entrysize = sizeof(KGroup);
		ctl.hcxt = kgroups_cxt;
		kgroups = hash_create("stream kafka groups", 64, &ctl,
							  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	g = hash_search(kgroups, name, create ? HASH_ENTER : HASH_FIND, &found);
	if (g != NULL && !found)
	{
		g->cxt = AllocSetContextCreate(kgroups_cxt, "stream kafka group",
									   ALLOCSET_SMALL_SIZES);
		g->state = KG_EMPTY;
		g->generation = 0;
		g->protocol_type = NULL;
		g->protocol = NULL;
		g->leader = NULL;
		g->members = NIL;
		g->rebalance_deadline = 0;
	}
	return g;
}

/* Forget an Empty group without members. */
static void
drop_group(KGroup *g)
{
	char		name[STREAM_GROUP_MAXLEN + 1];

	g->state = KG_DEAD;
	strlcpy(name, g->name, sizeof(name));
	live_set(name, false);
	MemoryContextDelete(g->cxt);
	hash_search(kgroups, name, HASH_REMOVE, NULL);
}

/* Replace a string the group owns (NULL allowed). */
static void
set_group_string(KGroup *g, char **field, const char *value)
{
	if (*field != NULL)
		pfree(*field);
	*field = value ? MemoryContextStrdup(g->cxt, value) : NULL;
}

static void
set_state(KGroup *g, KGroupState state)
{
	elog(DEBUG1, "stream Kafka group \"%s\": %s -> %s (generation %d)",
		 g->name, kg_state_names[g->state], kg_state_names[state], g->generation);
	g->state = state;
}

static KMember *
find_member(KGroup *g, const char *member_id)
{
	ListCell   *lc;

	if (g == NULL || member_id == NULL)
		return NULL;
	foreach(lc, g->members)
	{
		KMember    *m = (KMember *) lfirst(lc);

		if (strcmp(m->member_id, member_id) == 0)
			return m;
	}
	return NULL;
}

/* Number of members that joined for real (not pending). */
static int
count_members(KGroup *g)
{
	ListCell   *lc;
	int			n = 0;

	foreach(lc, g->members)
		n += ((KMember *) lfirst(lc))->pending ? 0 : 1;
	return n;
}

static void
free_protocols(KMember *m)
{
	int			i;

	for (i = 0; i < m->nprotocols; i++)
	{
		pfree(m->protocols[i].name);
		if (m->protocols[i].metadata)
			pfree(m->protocols[i].metadata);
	}
	if (m->protocols)
		pfree(m->protocols);
	m->protocols = NULL;
	m->nprotocols = 0;
}

static void
clear_join_response(KMember *m)
{
	if (m->join_response)
		pfree(m->join_response);
	m->join_response = NULL;
	m->join_response_len = 0;
}

static void
clear_assignment(KMember *m)
{
	if (m->assignment)
		pfree(m->assignment);
	m->assignment = NULL;
	m->assignment_len = 0;
}

/* A new member (or pending id) at the end of the group's list. */
static KMember *
add_member(KGroup *g, const char *member_id, const char *client_id, bool pending,
		   int32 session_timeout_ms, int32 rebalance_timeout_ms, TimestampTz now)
{
	MemoryContext old = MemoryContextSwitchTo(g->cxt);
	KMember    *m = palloc0(sizeof(KMember));

	m->member_id = pstrdup(member_id);
	m->client_id = pstrdup(client_id ? client_id : "");
	m->pending = pending;
	m->session_timeout_ms = session_timeout_ms;
	m->rebalance_timeout_ms = rebalance_timeout_ms;
	m->last_seen = now;
	m->join_conn = -1;
	m->sync_conn = -1;
	g->members = lappend(g->members, m);
	MemoryContextSwitchTo(old);
	return m;
}

/* Remove a member and free what it holds. */
static void
remove_member(KGroup *g, KMember *m, const char *why)
{
	if (!m->pending)
		ereport(LOG,
				(errmsg("stream Kafka group \"%s\": member \"%s\" removed: %s",
						g->name, m->member_id, why)));
	g->members = list_delete_ptr(g->members, m);
	if (g->leader != NULL && strcmp(g->leader, m->member_id) == 0)
	{
		pfree(g->leader);
		g->leader = NULL;
	}
	free_protocols(m);
	clear_join_response(m);
	clear_assignment(m);
	pfree(m->member_id);
	pfree(m->client_id);
	pfree(m);
	if (g->members == NIL)
		live_set(g->name, false);
}

/* Replace a member's protocols with those of a JoinGroup. */
static void
set_protocols(KGroup *g, KMember *m, int n, KProtocol *protocols)
{
	MemoryContext old = MemoryContextSwitchTo(g->cxt);
	int			i;

	free_protocols(m);
	m->protocols = palloc0(sizeof(KProtocol) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		m->protocols[i].name = pstrdup(protocols[i].name);
		m->protocols[i].len = Max(protocols[i].len, 0);
		m->protocols[i].metadata = palloc(Max(protocols[i].len, 1));
		if (protocols[i].len > 0)
			memcpy(m->protocols[i].metadata, protocols[i].metadata, protocols[i].len);
	}
	m->nprotocols = n;
	MemoryContextSwitchTo(old);
}

static bool
same_protocols(KMember *m, int n, KProtocol *protocols)
{
	int			i;

	if (m->nprotocols != n)
		return false;
	for (i = 0; i < n; i++)
	{
		int32		len = Max(protocols[i].len, 0);

		if (strcmp(m->protocols[i].name, protocols[i].name) != 0 ||
			m->protocols[i].len != len ||
			(len > 0 && memcmp(m->protocols[i].metadata, protocols[i].metadata, len) != 0))
			return false;
	}
	return true;
}

static KProtocol *
member_protocol(KMember *m, const char *name)
{
	int			i;

	for (i = 0; i < m->nprotocols; i++)
		if (strcmp(m->protocols[i].name, name) == 0)
			return &m->protocols[i];
	return NULL;
}

/* Does every joined member other than skip support protocol name? */
static bool
all_support(KGroup *g, const char *name, KMember *skip)
{
	ListCell   *lc;

	foreach(lc, g->members)
	{
		KMember    *m = (KMember *) lfirst(lc);

		if (m == skip || m->pending)
			continue;
		if (member_protocol(m, name) == NULL)
			return false;
	}
	return true;
}

/*
 * Kafka's supportsProtocols: a member may join when its protocol type is
 * the group's and one of its protocols is supported by every other member.
 */
static bool
supports_protocols(KGroup *g, KMember *self, const char *protocol_type, int n,
				   KProtocol *protocols)
{
	int			i;
	int			others = count_members(g) - ((self != NULL && !self->pending) ? 1 : 0);

	if (protocol_type == NULL || protocol_type[0] == '\0' || n <= 0)
		return false;
	if (others == 0)
		return true;
	if (g->protocol_type == NULL || strcmp(g->protocol_type, protocol_type) != 0)
		return false;
	for (i = 0; i < n; i++)
		if (all_support(g, protocols[i].name, self))
			return true;
	return false;
}

/* Start a rebalance: every member must rejoin. */
static void
prepare_rebalance(KGroup *g, TimestampTz now, const char *why)
{
	ListCell   *lc;
	int32		timeout = 0;

	if (g->state == KG_PREPARING_REBALANCE)
		return;
	foreach(lc, g->members)
	{
		KMember    *m = (KMember *) lfirst(lc);

		m->joined = false;
		clear_assignment(m);
		if (!m->pending)
			timeout = Max(timeout, m->rebalance_timeout_ms);
	}
	g->rebalance_deadline = TimestampTzPlusMilliseconds(now, timeout);
	elog(DEBUG1, "stream Kafka group \"%s\": rebalance: %s", g->name, why);
	set_state(g, KG_PREPARING_REBALANCE);
	wake_parked();
}

/* Write a JoinGroup response body; members are listed when g is given. */
static void
write_join_response(StringInfo out, int16 version, int16 error, int32 generation,
					const char *protocol, const char *leader, const char *member_id,
					KGroup *g)
{
	if (version >= 2)
		kw_int32(out, 0);		/* throttle_time_ms */
	kw_int16(out, error);
	kw_int32(out, generation);
	kw_string(out, protocol ? protocol : "");
	kw_string(out, leader ? leader : "");
	kw_string(out, member_id ? member_id : "");
	if (g == NULL)
		kw_int32(out, 0);
	else
	{
		int			pos = kw_reserve_int32(out);
		int			n = 0;
		ListCell   *lc;

		foreach(lc, g->members)
		{
			KMember    *m = (KMember *) lfirst(lc);
			KProtocol  *p;

			if (m->pending)
				continue;
			p = member_protocol(m, g->protocol);
			kw_string(out, m->member_id);
			if (version >= 5)
				kw_string(out, NULL);	/* group_instance_id */
			kw_bytes(out, p ? p->metadata : "", p ? p->len : 0);
			n++;
		}
		kw_patch_int32(out, pos, n);
	}
}

/* The group's current generation as a JoinGroup response for m. */
static void
write_current_join(StringInfo out, int16 version, KGroup *g, KMember *m)
{
	bool		leader = (g->leader != NULL && strcmp(g->leader, m->member_id) == 0);

	write_join_response(out, version, KAFKA_NONE, g->generation, g->protocol,
						g->leader, m->member_id, leader ? g : NULL);
}

/* The first of the leader's protocols that every member supports. */
static char *
select_protocol(KGroup *g, KMember *leader)
{
	int			i;

	for (i = 0; i < leader->nprotocols; i++)
		if (all_support(g, leader->protocols[i].name, NULL))
			return leader->protocols[i].name;
	/* joins are checked with supports_protocols: cannot happen */
	return leader->nprotocols > 0 ? leader->protocols[0].name : "";
}

/*
 * Complete the rebalance when every member rejoined and no new member id
 * is pending, or when force (its deadline passed): members that did not
 * rejoin are removed, the generation moves on, and the response of every
 * parked JoinGroup is built now, to be taken by its re-run.
 */
static void
try_complete_join(KGroup *g, TimestampTz now, bool force)
{
	ListCell   *lc;
	KMember    *leader = NULL;

	if (g->state != KG_PREPARING_REBALANCE)
		return;
	foreach(lc, g->members)
	{
		KMember    *m = (KMember *) lfirst(lc);

		if ((m->pending || !m->joined) && !force)
			return;
	}
	foreach(lc, g->members)
	{
		KMember    *m = (KMember *) lfirst(lc);

		if (m->pending || !m->joined)
		{
			remove_member(g, m, m->pending ? "pending member id expired" :
						  "did not rejoin within the rebalance timeout");
			/* the list changed under us: start over (members are few) */
			try_complete_join(g, now, force);
			return;
		}
	}

	g->generation++;
	if (g->members == NIL)
	{
		set_group_string(g, &g->protocol, NULL);
		set_group_string(g, &g->leader, NULL);
		set_group_string(g, &g->protocol_type, NULL);
		set_state(g, KG_EMPTY);
		wake_parked();
		return;
	}
	if (g->leader != NULL)
		leader = find_member(g, g->leader);
	if (leader == NULL)
	{
		leader = (KMember *) linitial(g->members);
		set_group_string(g, &g->leader, leader->member_id);
	}
	set_group_string(g, &g->protocol, select_protocol(g, leader));
	set_state(g, KG_COMPLETING_REBALANCE);
	ereport(LOG,
			(errmsg("stream Kafka group \"%s\": generation %d with %d member%s, protocol \"%s\", leader \"%s\"",
					g->name, g->generation, list_length(g->members),
					list_length(g->members) == 1 ? "" : "s", g->protocol, g->leader)));
	foreach(lc, g->members)
	{
		KMember    *m = (KMember *) lfirst(lc);

		m->last_seen = now;
		clear_join_response(m);
		if (m->join_conn >= 0)
		{
			StringInfoData buf;
			MemoryContext old = MemoryContextSwitchTo(g->cxt);

			initStringInfo(&buf);
			write_current_join(&buf, m->join_version, g, m);
			m->join_response = buf.data;
			m->join_response_len = buf.len;
			MemoryContextSwitchTo(old);
		}
	}
	wake_parked();
}

/* Is a member waiting in a parked request (which keeps it alive)? */
static bool
member_parked(KMember *m)
{
	return (m->join_conn >= 0 && m->join_response == NULL) || m->sync_conn >= 0;
}

/*
 * Expire the members whose session timed out (pending ids after their
 * session timeout too) and finish a rebalance whose deadline passed.
 */
static void
maintain_group(KGroup *g, TimestampTz now)
{
	ListCell   *lc;
	bool		removed = false;
	bool		again = true;

	while (again)
	{
		again = false;
		foreach(lc, g->members)
		{
			KMember    *m = (KMember *) lfirst(lc);

			if (member_parked(m) && !m->pending)
				continue;
			if (now >= TimestampTzPlusMilliseconds(m->last_seen, m->session_timeout_ms))
			{
				removed |= !m->pending;
				remove_member(g, m, "session timeout");
				again = true;
				break;
			}
		}
	}
	if (removed && (g->state == KG_STABLE || g->state == KG_COMPLETING_REBALANCE))
		prepare_rebalance(g, now, "a member's session timed out");
	if (g->state == KG_PREPARING_REBALANCE)
		try_complete_join(g, now, now >= g->rebalance_deadline);
	if (g->state == KG_EMPTY && g->members == NIL)
		set_group_string(g, &g->protocol_type, NULL);
}

/* A new member id, unique over restarts of the listener. */
static char *
new_member_id(const char *client_id)
{
	return psprintf("%s-%08x-%04x-%012llx",
					(client_id && client_id[0]) ? client_id : "member",
					(uint32) pg_prng_uint32(&pg_global_prng_state),
					(uint32) (pg_prng_uint32(&pg_global_prng_state) & 0xffff),
					(unsigned long long) ++member_seq);
}

/* ---------------------------------------------------------------------
 * FindCoordinator v0-2
 * ---------------------------------------------------------------------
 */

static void
write_find_coordinator(StringInfo out, int16 version, int16 error, const char *message,
					   bool found)
{
	if (version >= 1)
		kw_int32(out, 0);		/* throttle_time_ms */
	kw_int16(out, error);
	if (version >= 1)
		kw_string(out, message);
	kw_int32(out, found ? KAFKA_NODE_ID : -1);
	kw_string(out, found ? kafka_advertised_host() : "");
	kw_int32(out, found ? kafka_advertised_port() : -1);
}

KafkaResult
kafka_find_coordinator(KafkaRequest *req, StringInfo out, TimestampTz *wake_at)
{
	KafkaReader r = req->body;
	char	   *key = kr_string(&r);
	int8		key_type = 0;

	if (req->api_version >= 1)
		key_type = kr_int8(&r);
	if (r.error)
		return KAFKA_CLOSE;
	if (key_type == 1)
		write_find_coordinator(out, req->api_version, KAFKA_COORDINATOR_NOT_AVAILABLE,
							   "transactions are not supported", false);
	else if (key_type != 0)
		write_find_coordinator(out, req->api_version, KAFKA_INVALID_REQUEST,
							   "unknown coordinator key type", false);
	else if (key == NULL || !stream_name_is_valid(key))
		write_find_coordinator(out, req->api_version, KAFKA_INVALID_GROUP_ID,
							   "group ids are 1 to 200 characters among A-Z a-z 0-9 . _ -",
							   false);
	else
		write_find_coordinator(out, req->api_version, KAFKA_NONE, NULL, true);
	return KAFKA_RESPOND;
}

void
kafka_find_coordinator_error(KafkaRequest *req, StringInfo out, int16 error)
{
	write_find_coordinator(out, req->api_version, error, NULL, false);
}

/* ---------------------------------------------------------------------
 * JoinGroup v0-5
 * ---------------------------------------------------------------------
 */

typedef struct JoinRequest
{
	char	   *group_id;
	int32		session_timeout_ms;
	int32		rebalance_timeout_ms;
	char	   *member_id;
	char	   *instance_id;
	char	   *protocol_type;
	int32		nprotocols;
	KProtocol  *protocols;
} JoinRequest;

static bool
read_join(KafkaRequest *req, JoinRequest *j)
{
	KafkaReader r = req->body;
	int			i;

	memset(j, 0, sizeof(*j));
	j->group_id = kr_string(&r);
	j->session_timeout_ms = kr_int32(&r);
	j->rebalance_timeout_ms = (req->api_version >= 1) ? kr_int32(&r) : j->session_timeout_ms;
	j->member_id = kr_string(&r);
	if (req->api_version >= 5)
		j->instance_id = kr_string(&r);
	j->protocol_type = kr_string(&r);
	j->nprotocols = kr_array_len(&r);
	if (j->nprotocols > 0)
	{
		j->protocols = palloc0(sizeof(KProtocol) * j->nprotocols);
		for (i = 0; i < j->nprotocols && !r.error; i++)
		{
			char	   *name = kr_string(&r);

			j->protocols[i].name = name ? name : "";
			j->protocols[i].metadata = (char *) kr_bytes(&r, &j->protocols[i].len);
		}
	}
	if (j->nprotocols < 0)
		j->nprotocols = 0;
	if (j->member_id == NULL)
		j->member_id = "";
	return !r.error && j->group_id != NULL;
}

/* Answer a JoinGroup with an error and no generation. */
static KafkaResult
join_error(KafkaRequest *req, StringInfo out, int16 error, const char *member_id)
{
	write_join_response(out, req->api_version, error, -1, "", "", member_id, NULL);
	return KAFKA_RESPOND;
}

/* Park a member's JoinGroup (or answer at once when the rebalance completed). */
static KafkaResult
join_wait(KafkaRequest *req, StringInfo out, TimestampTz *wake_at, KGroup *g, KMember *m,
		  TimestampTz now)
{
	m->joined = true;
	m->join_conn = req->conn_id;
	m->join_corr = req->correlation_id;
	m->join_version = req->api_version;
	m->last_seen = now;
	clear_join_response(m);
	try_complete_join(g, now, false);
	if (m->join_response != NULL)
	{
		appendBinaryStringInfo(out, m->join_response, m->join_response_len);
		clear_join_response(m);
		m->join_conn = -1;
		return KAFKA_RESPOND;
	}
	*wake_at = g->rebalance_deadline;
	return KAFKA_PARK;
}

/* A parked JoinGroup again: answer it when its rebalance completed. */
static KafkaResult
join_rerun(KafkaRequest *req, StringInfo out, TimestampTz *wake_at, JoinRequest *j,
		   TimestampTz now)
{
	KGroup	   *g = stream_name_is_valid(j->group_id) ? find_group(j->group_id, false) : NULL;
	KMember    *m = NULL;
	ListCell   *lc;

	if (g != NULL)
		foreach(lc, g->members)
		{
			KMember    *c = (KMember *) lfirst(lc);

			if (c->join_conn == req->conn_id && c->join_corr == req->correlation_id)
				m = c;
		}
	if (m == NULL)
		return join_error(req, out, KAFKA_UNKNOWN_MEMBER_ID, j->member_id);
	maintain_group(g, now);
	if (m->join_response == NULL && req->expired)
		try_complete_join(g, now, true);
	if (m->join_response != NULL)
	{
		appendBinaryStringInfo(out, m->join_response, m->join_response_len);
		clear_join_response(m);
		m->join_conn = -1;
		return KAFKA_RESPOND;
	}
	if (req->expired || g->state != KG_PREPARING_REBALANCE)
	{
		/* cannot happen: the forced completion answered every parked join */
		m->join_conn = -1;
		return join_error(req, out, KAFKA_REBALANCE_IN_PROGRESS, m->member_id);
	}
	*wake_at = g->rebalance_deadline;
	return KAFKA_PARK;
}

static KafkaResult join_group(KafkaRequest *req, StringInfo out, TimestampTz *wake_at,
							  JoinRequest *jp);

/*
 * JoinGroup: list the group as live before looking for SQL members (see the
 * header comment), and unlist it again unless it ends up with members.
 */
KafkaResult
kafka_join_group(KafkaRequest *req, StringInfo out, TimestampTz *wake_at)
{
	JoinRequest j;
	KafkaResult result;
	KGroup	   *g;

	memset(&j, 0, sizeof(j));
	result = join_group(req, out, wake_at, &j);
	if (j.group_id != NULL && stream_name_is_valid(j.group_id))
	{
		g = find_group(j.group_id, false);
		live_set(j.group_id, g != NULL && g->members != NIL);
	}
	return result;
}

static KafkaResult
join_group(KafkaRequest *req, StringInfo out, TimestampTz *wake_at, JoinRequest *jp)
{
	JoinRequest j;
	KGroup	   *g;
	KMember    *m;
	TimestampTz now = GetCurrentTimestamp();

	if (!read_join(req, &j))
		return KAFKA_CLOSE;
	*jp = j;
	if (req->attempt > 0)
		return join_rerun(req, out, wake_at, &j, now);

	if (!stream_name_is_valid(j.group_id))
		return join_error(req, out, KAFKA_INVALID_GROUP_ID, j.member_id);
	if (j.session_timeout_ms < KG_MIN_SESSION_TIMEOUT_MS ||
		j.session_timeout_ms > KG_MAX_SESSION_TIMEOUT_MS)
		return join_error(req, out, KAFKA_INVALID_SESSION_TIMEOUT, j.member_id);
	if (j.rebalance_timeout_ms <= 0)
		j.rebalance_timeout_ms = j.session_timeout_ms;
	if (j.instance_id != NULL)
	{
		ereport(LOG,
				(errmsg("stream Kafka group \"%s\": refused a static member (group.instance.id \"%s\")",
						j.group_id, j.instance_id),
				 errdetail("Static membership is not supported; unset group.instance.id.")));
		return join_error(req, out, KAFKA_UNSUPPORTED_VERSION, j.member_id);
	}
	live_set(j.group_id, true);
	if (stream_group_has_sql_members(j.group_id))
	{
		ereport(LOG,
				(errmsg("stream Kafka group \"%s\": refused a Kafka member while SQL sessions are members of the group",
						j.group_id),
				 errdetail("Kafka and SQL consumers share the committed offsets of a group but cannot consume at the same time."),
				 errhint("Stop the SQL consumers of group \"%s\" (or have them call stream.leave()) first.",
						 j.group_id)));
		return join_error(req, out, KAFKA_INCONSISTENT_GROUP_PROTOCOL, j.member_id);
	}

	g = find_group(j.group_id, j.member_id[0] == '\0');
	if (g == NULL)
		return join_error(req, out, KAFKA_UNKNOWN_MEMBER_ID, j.member_id);
	maintain_group(g, now);
	m = (j.member_id[0] != '\0') ? find_member(g, j.member_id) : NULL;
	if (j.member_id[0] != '\0' && m == NULL)
		return join_error(req, out, KAFKA_UNKNOWN_MEMBER_ID, j.member_id);
	if (!supports_protocols(g, m, j.protocol_type, j.nprotocols, j.protocols))
	{
		ereport(LOG,
				(errmsg("stream Kafka group \"%s\": refused a member whose protocols the group does not share",
						j.group_id),
				 errdetail("Protocol type \"%s\"; the group's is \"%s\".",
						   j.protocol_type ? j.protocol_type : "",
						   g->protocol_type ? g->protocol_type : "")));
		return join_error(req, out, KAFKA_INCONSISTENT_GROUP_PROTOCOL, j.member_id);
	}

	if (m == NULL && req->api_version >= 4)
	{
		/* Kafka's KIP-394: the client must come back with this id */
		char	   *id = new_member_id(req->client_id);

		m = add_member(g, id, req->client_id, true, j.session_timeout_ms,
					   j.rebalance_timeout_ms, now);
		return join_error(req, out, KAFKA_MEMBER_ID_REQUIRED, id);
	}

	if (count_members(g) == 0)
		set_group_string(g, &g->protocol_type, j.protocol_type);

	if (m == NULL || m->pending)
	{
		/* a new member: everyone rejoins */
		if (m == NULL)
			m = add_member(g, new_member_id(req->client_id), req->client_id, false,
						   j.session_timeout_ms, j.rebalance_timeout_ms, now);
		m->pending = false;
		m->session_timeout_ms = j.session_timeout_ms;
		m->rebalance_timeout_ms = j.rebalance_timeout_ms;
		set_protocols(g, m, j.nprotocols, j.protocols);
		if (g->leader == NULL)
			set_group_string(g, &g->leader, m->member_id);
		ereport(LOG,
				(errmsg("stream Kafka group \"%s\": member \"%s\" joined",
						g->name, m->member_id)));
		prepare_rebalance(g, now, "a member joined");
		return join_wait(req, out, wake_at, g, m, now);
	}

	m->session_timeout_ms = j.session_timeout_ms;
	m->rebalance_timeout_ms = j.rebalance_timeout_ms;
	m->last_seen = now;
	switch (g->state)
	{
		case KG_PREPARING_REBALANCE:
			set_protocols(g, m, j.nprotocols, j.protocols);
			return join_wait(req, out, wake_at, g, m, now);
		case KG_COMPLETING_REBALANCE:
			if (same_protocols(m, j.nprotocols, j.protocols))
			{
				/* it lost our response: send it again */
				write_current_join(out, req->api_version, g, m);
				return KAFKA_RESPOND;
			}
			set_protocols(g, m, j.nprotocols, j.protocols);
			prepare_rebalance(g, now, "a member changed its protocols");
			return join_wait(req, out, wake_at, g, m, now);
		case KG_STABLE:
			if ((g->leader != NULL && strcmp(g->leader, m->member_id) == 0) ||
				!same_protocols(m, j.nprotocols, j.protocols))
			{
				set_protocols(g, m, j.nprotocols, j.protocols);
				prepare_rebalance(g, now, "the leader rejoined or a member changed its protocols");
				return join_wait(req, out, wake_at, g, m, now);
			}
			write_current_join(out, req->api_version, g, m);
			return KAFKA_RESPOND;
		case KG_EMPTY:
		case KG_DEAD:
			break;
	}
	return join_error(req, out, KAFKA_UNKNOWN_MEMBER_ID, j.member_id);
}

void
kafka_join_group_error(KafkaRequest *req, StringInfo out, int16 error)
{
	write_join_response(out, req->api_version, error, -1, "", "", "", NULL);
}

/* ---------------------------------------------------------------------
 * SyncGroup v0-3
 * ---------------------------------------------------------------------
 */

static KafkaResult
sync_answer(KafkaRequest *req, StringInfo out, int16 error, const char *assignment, int32 len)
{
	if (req->api_version >= 1)
		kw_int32(out, 0);		/* throttle_time_ms */
	kw_int16(out, error);
	kw_bytes(out, assignment ? assignment : "", assignment ? len : 0);
	return KAFKA_RESPOND;
}

KafkaResult
kafka_sync_group(KafkaRequest *req, StringInfo out, TimestampTz *wake_at)
{
	KafkaReader r = req->body;
	char	   *group_id;
	int32		generation;
	char	   *member_id;
	int32		n;
	int32		i;
	char	  **ids = NULL;
	const char **data = NULL;
	int32	   *lens = NULL;
	KGroup	   *g;
	KMember    *m;
	KMember    *leader;
	TimestampTz now = GetCurrentTimestamp();

	group_id = kr_string(&r);
	generation = kr_int32(&r);
	member_id = kr_string(&r);
	if (req->api_version >= 3)
		(void) kr_string(&r);	/* group_instance_id: static members never join */
	n = kr_array_len(&r);
	if (n > 0)
	{
		ids = palloc0(sizeof(char *) * n);
		data = palloc0(sizeof(char *) * n);
		lens = palloc0(sizeof(int32) * n);
		for (i = 0; i < n && !r.error; i++)
		{
			ids[i] = kr_string(&r);
			data[i] = kr_bytes(&r, &lens[i]);
		}
	}
	if (r.error || group_id == NULL)
		return KAFKA_CLOSE;

	g = stream_name_is_valid(group_id) ? find_group(group_id, false) : NULL;
	if (g == NULL)
		return sync_answer(req, out, stream_name_is_valid(group_id) ?
						   KAFKA_UNKNOWN_MEMBER_ID : KAFKA_INVALID_GROUP_ID, NULL, 0);
	maintain_group(g, now);
	m = find_member(g, member_id);
	if (m == NULL || m->pending)
		return sync_answer(req, out, KAFKA_UNKNOWN_MEMBER_ID, NULL, 0);
	m->sync_conn = -1;
	if (generation != g->generation)
		return sync_answer(req, out, KAFKA_ILLEGAL_GENERATION, NULL, 0);
	m->last_seen = now;
	switch (g->state)
	{
		case KG_EMPTY:
		case KG_DEAD:
			return sync_answer(req, out, KAFKA_UNKNOWN_MEMBER_ID, NULL, 0);
		case KG_PREPARING_REBALANCE:
			return sync_answer(req, out, KAFKA_REBALANCE_IN_PROGRESS, NULL, 0);
		case KG_STABLE:
			return sync_answer(req, out, KAFKA_NONE, m->assignment, m->assignment_len);
		case KG_COMPLETING_REBALANCE:
			break;
	}

	if (g->leader != NULL && strcmp(g->leader, m->member_id) == 0)
	{
		ListCell   *lc;

		/* the leader's assignment: keep each member's part (or nothing) */
		foreach(lc, g->members)
		{
			KMember    *c = (KMember *) lfirst(lc);

			clear_assignment(c);
			for (i = 0; i < n; i++)
				if (ids[i] != NULL && strcmp(ids[i], c->member_id) == 0 && lens[i] > 0)
				{
					c->assignment = MemoryContextAlloc(g->cxt, lens[i]);
					memcpy(c->assignment, data[i], lens[i]);
					c->assignment_len = lens[i];
					break;
				}
		}
		set_state(g, KG_STABLE);
		wake_parked();
		return sync_answer(req, out, KAFKA_NONE, m->assignment, m->assignment_len);
	}

	/* a follower waits for the leader's assignment */
	leader = find_member(g, g->leader);
	if (req->expired || leader == NULL)
		return sync_answer(req, out, KAFKA_REBALANCE_IN_PROGRESS, NULL, 0);
	m->sync_conn = req->conn_id;
	*wake_at = TimestampTzPlusMilliseconds(leader->last_seen,
										   leader->session_timeout_ms + 1000);
	return KAFKA_PARK;
}

void
kafka_sync_group_error(KafkaRequest *req, StringInfo out, int16 error)
{
	(void) sync_answer(req, out, error, NULL, 0);
}

/* ---------------------------------------------------------------------
 * Heartbeat v0-3, LeaveGroup v0-1
 * ---------------------------------------------------------------------
 */

static KafkaResult
error_only(KafkaRequest *req, StringInfo out, int16 error)
{
	if (req->api_version >= 1)
		kw_int32(out, 0);		/* throttle_time_ms */
	kw_int16(out, error);
	return KAFKA_RESPOND;
}

KafkaResult
kafka_heartbeat(KafkaRequest *req, StringInfo out, TimestampTz *wake_at)
{
	KafkaReader r = req->body;
	char	   *group_id = kr_string(&r);
	int32		generation = kr_int32(&r);
	char	   *member_id = kr_string(&r);
	KGroup	   *g;
	KMember    *m;
	TimestampTz now = GetCurrentTimestamp();

	if (req->api_version >= 3)
		(void) kr_string(&r);	/* group_instance_id */
	if (r.error || group_id == NULL)
		return KAFKA_CLOSE;
	if (!stream_name_is_valid(group_id))
		return error_only(req, out, KAFKA_INVALID_GROUP_ID);
	g = find_group(group_id, false);
	if (g == NULL)
		return error_only(req, out, KAFKA_UNKNOWN_MEMBER_ID);
	maintain_group(g, now);
	m = find_member(g, member_id);
	if (m == NULL || m->pending)
		return error_only(req, out, KAFKA_UNKNOWN_MEMBER_ID);
	if (generation != g->generation)
		return error_only(req, out, KAFKA_ILLEGAL_GENERATION);
	m->last_seen = now;
	switch (g->state)
	{
		case KG_PREPARING_REBALANCE:
			return error_only(req, out, KAFKA_REBALANCE_IN_PROGRESS);
		case KG_COMPLETING_REBALANCE:
		case KG_STABLE:
			return error_only(req, out, KAFKA_NONE);
		case KG_EMPTY:
		case KG_DEAD:
			break;
	}
	return error_only(req, out, KAFKA_UNKNOWN_MEMBER_ID);
}

void
kafka_heartbeat_error(KafkaRequest *req, StringInfo out, int16 error)
{
	(void) error_only(req, out, error);
}

KafkaResult
kafka_leave_group(KafkaRequest *req, StringInfo out, TimestampTz *wake_at)
{
	KafkaReader r = req->body;
	char	   *group_id = kr_string(&r);
	char	   *member_id = kr_string(&r);
	KGroup	   *g;
	KMember    *m;
	TimestampTz now = GetCurrentTimestamp();

	if (r.error || group_id == NULL)
		return KAFKA_CLOSE;
	if (!stream_name_is_valid(group_id))
		return error_only(req, out, KAFKA_INVALID_GROUP_ID);
	g = find_group(group_id, false);
	m = find_member(g, member_id);
	if (m == NULL)
		return error_only(req, out, KAFKA_UNKNOWN_MEMBER_ID);
	remove_member(g, m, "left the group");
	if (g->state == KG_STABLE || g->state == KG_COMPLETING_REBALANCE)
		prepare_rebalance(g, now, "a member left");
	maintain_group(g, now);
	wake_parked();
	return error_only(req, out, KAFKA_NONE);
}

void
kafka_leave_group_error(KafkaRequest *req, StringInfo out, int16 error)
{
	(void) error_only(req, out, error);
}

/* ---------------------------------------------------------------------
 * OffsetCommit v2-7
 * ---------------------------------------------------------------------
 */

typedef struct CommitPart
{
	int32		partition;
	int64		offset;
	int16		error;
} CommitPart;

typedef struct CommitTopic
{
	char	   *name;
	int32		nparts;
	CommitPart *parts;
} CommitTopic;

typedef struct CommitRequest
{
	char	   *group_id;
	int32		generation;
	char	   *member_id;
	int32		ntopics;
	CommitTopic *topics;
} CommitRequest;

static bool
read_commit(KafkaRequest *req, CommitRequest *c)
{
	KafkaReader r = req->body;
	int16		v = req->api_version;
	int32		i;
	int32		k;

	memset(c, 0, sizeof(*c));
	c->group_id = kr_string(&r);
	c->generation = kr_int32(&r);
	c->member_id = kr_string(&r);
	if (v >= 7)
		(void) kr_string(&r);	/* group_instance_id */
	if (v >= 2 && v <= 4)
		(void) kr_int64(&r);	/* retention_time_ms */
	c->ntopics = kr_array_len(&r);
	if (c->ntopics > 0)
		c->topics = palloc0(sizeof(CommitTopic) * c->ntopics);
	for (i = 0; i < c->ntopics && !r.error; i++)
	{
		CommitTopic *t = &c->topics[i];

		t->name = kr_string(&r);
		t->nparts = kr_array_len(&r);
		if (t->nparts > 0)
			t->parts = palloc0(sizeof(CommitPart) * t->nparts);
		for (k = 0; k < t->nparts && !r.error; k++)
		{
			t->parts[k].partition = kr_int32(&r);
			t->parts[k].offset = kr_int64(&r);
			if (v >= 6)
				(void) kr_int32(&r);	/* committed_leader_epoch */
			(void) kr_string(&r);	/* committed_metadata: not kept */
		}
		if (t->nparts < 0)
			t->nparts = 0;
		if (t->name == NULL)
			t->name = "";
	}
	if (c->ntopics < 0)
		c->ntopics = 0;
	if (c->member_id == NULL)
		c->member_id = "";
	return !r.error && c->group_id != NULL;
}

static void
write_commit_response(StringInfo out, int16 version, CommitRequest *c, int16 error)
{
	int32		i;
	int32		k;

	if (version >= 3)
		kw_int32(out, 0);		/* throttle_time_ms */
	kw_int32(out, c->ntopics);
	for (i = 0; i < c->ntopics; i++)
	{
		kw_string(out, c->topics[i].name);
		kw_int32(out, c->topics[i].nparts);
		for (k = 0; k < c->topics[i].nparts; k++)
		{
			kw_int32(out, c->topics[i].parts[k].partition);
			kw_int16(out, error != KAFKA_NONE ? error : c->topics[i].parts[k].error);
		}
	}
}

typedef struct StoreArgs
{
	const char *group;
	StreamTopic *topic;
	int32		partition;
	int64		offset;
} StoreArgs;

static void
store_committed(void *arg)
{
	StoreArgs  *a = (StoreArgs *) arg;
	ItemPointerData tid;

	ItemPointerSetInvalid(&tid);
	stream_store_committed(a->group, a->topic->topic_id, a->partition, a->offset, &tid);
}

/* Store one committed offset in a subtransaction; false (logged) on an error. */
static bool
store_protected(const char *group, StreamTopic *topic, int32 partition, int64 offset)
{
	StoreArgs	a = {group, topic, partition, offset};
	ErrorData  *edata;

	if (kafka_in_subxact(store_committed, &a, &edata))
		return true;
	ereport(LOG,
			(errmsg("stream Kafka group \"%s\": commit of partition %d of topic \"%s\" failed: %s",
					group, partition, topic->name, edata->message)));
	FreeErrorData(edata);
	return false;
}

KafkaResult
kafka_offset_commit(KafkaRequest *req, StringInfo out, TimestampTz *wake_at)
{
	CommitRequest c;
	KGroup	   *g;
	KMember    *m;
	int16		group_error = KAFKA_NONE;
	int32		i;
	int32		k;
	TimestampTz now = GetCurrentTimestamp();

	if (!read_commit(req, &c))
		return KAFKA_CLOSE;
	if (!stream_name_is_valid(c.group_id))
	{
		write_commit_response(out, req->api_version, &c, KAFKA_INVALID_GROUP_ID);
		return KAFKA_RESPOND;
	}

	/* Kafka's membership checks */
	g = find_group(c.group_id, false);
	if (g != NULL)
		maintain_group(g, now);
	m = find_member(g, c.member_id);
	if (c.generation < 0 && c.member_id[0] == '\0' &&
		(g == NULL || count_members(g) == 0))
	{
		if (stream_group_has_sql_members(c.group_id))
		{
			ereport(LOG,
					(errmsg("stream Kafka group \"%s\": refused a commit from outside the group while SQL sessions are members of it",
							c.group_id)));
			group_error = KAFKA_UNKNOWN_MEMBER_ID;
		}
	}
	else if (g != NULL && g->state == KG_COMPLETING_REBALANCE)
		group_error = KAFKA_REBALANCE_IN_PROGRESS;
	else if (m == NULL || m->pending)
		group_error = KAFKA_UNKNOWN_MEMBER_ID;
	else if (c.generation != g->generation)
		group_error = KAFKA_ILLEGAL_GENERATION;
	else
		m->last_seen = now;
	if (group_error != KAFKA_NONE)
	{
		write_commit_response(out, req->api_version, &c, group_error);
		return KAFKA_RESPOND;
	}

	/* check every partition first, then store each on its own */
	for (i = 0; i < c.ntopics; i++)
	{
		CommitTopic *t = &c.topics[i];
		int16		error;
		StreamTopic *topic = kafka_find_topic(t->name, STREAM_PRIV_CONSUME, &error);

		for (k = 0; k < t->nparts; k++)
		{
			CommitPart *p = &t->parts[k];
			int64		end_offset;

			p->error = error;
			if (topic == NULL)
				continue;
			if (p->partition < 0 || p->partition >= topic->partitions)
			{
				p->error = KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
				continue;
			}
			(void) stream_partition_bounds(topic, p->partition, &end_offset);
			if (p->offset < 0 || p->offset > end_offset)
				p->error = KAFKA_OFFSET_OUT_OF_RANGE;
		}
		for (k = 0; k < t->nparts; k++)
		{
			CommitPart *p = &t->parts[k];

			if (p->error == KAFKA_NONE &&
				!store_protected(c.group_id, topic, p->partition, p->offset))
				p->error = KAFKA_KAFKA_STORAGE_ERROR;
		}
	}
	write_commit_response(out, req->api_version, &c, KAFKA_NONE);
	return KAFKA_RESPOND;
}

void
kafka_offset_commit_error(KafkaRequest *req, StringInfo out, int16 error)
{
	CommitRequest c;

	if (!read_commit(req, &c))
		memset(&c, 0, sizeof(c));
	write_commit_response(out, req->api_version, &c, error);
}

/* ---------------------------------------------------------------------
 * OffsetFetch v1-5
 * ---------------------------------------------------------------------
 */

typedef struct FetchPart
{
	int32		partition;
	int64		offset;
	int16		error;
} FetchPart;

typedef struct FetchTopic
{
	char	   *name;
	int32		nparts;
	FetchPart  *parts;
} FetchTopic;

static void
write_fetch_response(StringInfo out, int16 version, int32 ntopics, FetchTopic *topics,
					 int16 error)
{
	int32		i;
	int32		k;

	if (version >= 3)
		kw_int32(out, 0);		/* throttle_time_ms */
	kw_int32(out, ntopics);
	for (i = 0; i < ntopics; i++)
	{
		kw_string(out, topics[i].name);
		kw_int32(out, topics[i].nparts);
		for (k = 0; k < topics[i].nparts; k++)
		{
			FetchPart  *p = &topics[i].parts[k];

			kw_int32(out, p->partition);
			kw_int64(out, error != KAFKA_NONE ? -1 : p->offset);
			if (version >= 5)
				kw_int32(out, -1);	/* committed_leader_epoch */
			kw_string(out, "");	/* metadata */
			kw_int16(out, error != KAFKA_NONE ? error : p->error);
		}
	}
	if (version >= 2)
		kw_int16(out, error);
}

/* Read the topics of an OffsetFetch; *ntopics -1 for "all". */
static bool
read_fetch(KafkaRequest *req, char **group_id, int32 *ntopics, FetchTopic **topics)
{
	KafkaReader r = req->body;
	int32		i;
	int32		k;

	*group_id = kr_string(&r);
	*ntopics = kr_array_len(&r);
	*topics = NULL;
	if (*ntopics > 0)
		*topics = palloc0(sizeof(FetchTopic) * *ntopics);
	for (i = 0; i < *ntopics && !r.error; i++)
	{
		FetchTopic *t = &(*topics)[i];

		t->name = kr_string(&r);
		if (t->name == NULL)
			t->name = "";
		t->nparts = kr_array_len(&r);
		if (t->nparts > 0)
			t->parts = palloc0(sizeof(FetchPart) * t->nparts);
		for (k = 0; k < t->nparts && !r.error; k++)
		{
			t->parts[k].partition = kr_int32(&r);
			t->parts[k].offset = -1;
		}
		if (t->nparts < 0)
			t->nparts = 0;
	}
	return !r.error && *group_id != NULL;
}

/* Every (topic, partition) the group has committed, the topics by name. */
static void
fetch_all_committed(const char *group, int32 *ntopics, FetchTopic **topics)
{
	StreamInternalState internal;
	Oid			types[1] = {TEXTOID};
	Datum		args[1];
	uint64		i;
	int32		n = 0;
	FetchTopic *list = NULL;
	MemoryContext cxt = CurrentMemoryContext;

	args[0] = CStringGetTextDatum(group);
	stream_internal_begin(&internal);
	SPI_connect();
	if (SPI_execute_with_args("SELECT t.topic, o.partition FROM stream._offsets o "
							  "JOIN stream._topics t ON t.topic_id = o.topic_id "
							  "WHERE o.group_name = $1 ORDER BY t.topic, o.partition",
							  1, types, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "stream: listing the offsets of group \"%s\" failed", group);
	if (SPI_processed > 0)
		list = MemoryContextAllocZero(cxt, sizeof(FetchTopic) * SPI_processed);
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		char	   *name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		int32		partition = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i],
														   SPI_tuptable->tupdesc, 2,
														   &isnull));
		FetchTopic *t;

		if (n == 0 || strcmp(list[n - 1].name, name) != 0)
		{
			t = &list[n++];
			t->name = MemoryContextStrdup(cxt, name);
			t->parts = MemoryContextAllocZero(cxt, sizeof(FetchPart) * SPI_processed);
		}
		t = &list[n - 1];
		t->parts[t->nparts].partition = partition;
		t->parts[t->nparts].offset = -1;
		t->nparts++;
	}
	SPI_finish();
	stream_internal_end(&internal);
	*ntopics = n;
	*topics = list;
}

KafkaResult
kafka_offset_fetch(KafkaRequest *req, StringInfo out, TimestampTz *wake_at)
{
	char	   *group_id;
	int32		ntopics;
	FetchTopic *topics;
	bool		all;
	int32		i;
	int32		k;

	if (!read_fetch(req, &group_id, &ntopics, &topics))
		return KAFKA_CLOSE;
	if (ntopics < 0 && req->api_version < 2)
		return KAFKA_CLOSE;
	all = (ntopics < 0);
	if (!stream_name_is_valid(group_id))
	{
		write_fetch_response(out, req->api_version, Max(ntopics, 0), topics,
							 KAFKA_INVALID_GROUP_ID);
		return KAFKA_RESPOND;
	}
	if (all)
		fetch_all_committed(group_id, &ntopics, &topics);

	for (i = 0; i < ntopics; i++)
	{
		FetchTopic *t = &topics[i];
		int16		error;
		StreamTopic *topic = kafka_find_topic(t->name, STREAM_PRIV_CONSUME, &error);

		for (k = 0; k < t->nparts; k++)
		{
			FetchPart  *p = &t->parts[k];
			ItemPointerData tid;

			p->error = error;
			p->offset = -1;
			if (topic == NULL)
				continue;
			if (p->partition < 0 || p->partition >= topic->partitions)
			{
				p->error = KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
				continue;
			}
			if (!stream_load_committed(group_id, topic->topic_id, p->partition,
									   &p->offset, &tid))
				p->offset = -1;
		}
		/* "all" lists only what the role may see */
		if (all && topic == NULL)
			t->nparts = 0;
	}
	if (all)
	{
		int32		kept = 0;

		for (i = 0; i < ntopics; i++)
			if (topics[i].nparts > 0)
				topics[kept++] = topics[i];
		ntopics = kept;
	}
	write_fetch_response(out, req->api_version, ntopics, topics, KAFKA_NONE);
	return KAFKA_RESPOND;
}

void
kafka_offset_fetch_error(KafkaRequest *req, StringInfo out, int16 error)
{
	char	   *group_id;
	int32		ntopics;
	FetchTopic *topics;

	if (!read_fetch(req, &group_id, &ntopics, &topics))
	{
		ntopics = 0;
		topics = NULL;
	}
	write_fetch_response(out, req->api_version, Max(ntopics, 0), topics, error);
}

/* ---------------------------------------------------------------------
 * Called by the listener
 * ---------------------------------------------------------------------
 */

/* A connection closed: its parked requests are gone (its members are not). */
void
kafka_group_conn_closed(int conn_id)
{
	HASH_SEQ_STATUS seq;
	KGroup	   *g;

	if (kgroups == NULL)
		return;
	hash_seq_init(&seq, kgroups);
	while ((g = hash_seq_search(&seq)) != NULL)
	{
		ListCell   *lc;

		foreach(lc, g->members)
		{
			KMember    *m = (KMember *) lfirst(lc);

			if (m->join_conn == conn_id)
			{
				m->join_conn = -1;
				clear_join_response(m);
			}
			if (m->sync_conn == conn_id)
				m->sync_conn = -1;
		}
	}
}

/* Expire sessions, finish rebalances past their deadline, forget empty groups. */
void
kafka_group_tick(TimestampTz now)
{
	HASH_SEQ_STATUS seq;
	KGroup	   *g;

	if (kgroups == NULL)
		return;
	hash_seq_init(&seq, kgroups);
	while ((g = hash_seq_search(&seq)) != NULL)
	{
		maintain_group(g, now);
		if (g->state == KG_EMPTY && g->members == NIL)
			drop_group(g);
	}
}
