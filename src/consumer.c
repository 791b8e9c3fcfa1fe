/*-------------------------------------------------------------------------
 *
 * consumer.c
 *	  Consumer groups: membership, partition ownership, positions, poll,
 *	  commit, seek, reset and leave.
 *
 * Membership.  A session becomes a member of (group, topic) on its first
 * poll: it takes a slot in a shared registry (StreamMembers) stamped with
 * a cluster-wide join sequence number.  The slot goes away on leave() and
 * when the backend exits (a before_shmem_exit hook; a crash resets shared
 * memory altogether), so the registry only ever lists live sessions.
 *
 * Assignment.  Every poll recomputes this member's share from the
 * registry: with M live members ranked by join sequence, the member of
 * rank r wants the partitions p with p % M == r (so members beyond the
 * partition count want none).  It first gives up the partitions it owns
 * but no longer wants, then tries to take the ones it wants and does not
 * own.  Joins and leaves set the latches of the other members of the
 * group so that members sleeping in a long poll rebalance at once.  After
 * a change, the assignment converges once every member has polled twice:
 * a partition moves only when its old owner has let it go.
 *
 * Ownership.  A partition is owned by holding a session-level advisory
 * lock (SET_LOCKTAG_ADVISORY: database, hash of the group name, topic id
 * and partition, objsubid STREAM_LOCK_FIELD4), taken without waiting.  The
 * lock manager, not our bookkeeping, is what makes two live members of one
 * group never own the same partition; it also frees the partitions of a
 * session that dies.  Every poll checks that the locks it believes it
 * holds are still held (pg_advisory_unlock_all() would drop them).
 *
 * Positions and transactions.  A member's position in a partition (the
 * next offset poll returns) lives in backend memory.  It starts at the
 * committed offset, read with a fresh snapshot when the partition is
 * taken.  A partition touched (polled or committed) by the current
 * transaction is never given up before that transaction ends: its new
 * owner must see the offset this transaction may still commit.  When a
 * transaction (or subtransaction) that touched a position rolls back, the
 * position is forgotten and reloaded from the committed offset on the next
 * poll, so poll + own writes + commit in one transaction is exactly-once.
 *
 * Locking protocol: StreamMembers->lock protects the registry; shared to
 * read it, exclusive to add or remove a slot.  Each backend changes only
 * its own slots.  Every join and leave also bumps StreamMembers->epoch
 * (under the exclusive lock), so that a poll rescans the registry only
 * when some membership changed: a poll costs the same whatever the number
 * of other groups and members.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "consumer.h"
#include "lso.h"
#include "offsets.h"
#include "privileges.h"
#include "read.h"
#include "stream.h"
#include "topic.h"

#if PG_VERSION_NUM >= 170000
#define STREAM_MY_PROCNO MyProcNumber
#else
#define STREAM_MY_PROCNO (MyProc->pgprocno)
#endif

/* Memberships one session may hold at once (distinct group/topic pairs). */
#define MEMBERSHIPS_PER_BACKEND 32

typedef struct StreamMember
{
	bool		used;
	Oid			dbid;
	int32		topic_id;
	int			procno;
	int			pid;
	uint64		join_seq;
	char		group[STREAM_GROUP_MAXLEN + 1];
} StreamMember;

typedef struct StreamMembers
{
	LWLock	   *lock;
	pg_atomic_uint64 epoch;		/* bumped by every join and leave */
	uint64		next_seq;
	int			nslots;
	StreamMember members[FLEXIBLE_ARRAY_MEMBER];
} StreamMembers;

/* A position saved when a subtransaction first changed it. */
typedef struct SavedPosition
{
	SubTransactionId subid;
	bool		valid;
	int64		position;
	bool		stored_valid;
	int64		stored;
	ItemPointerData stored_tid;
} SavedPosition;

/* Backend-local state of one owned-or-wanted partition. */
typedef struct LocalPart
{
	bool		owned;
	bool		pos_valid;
	int64		position;
	bool		stored_valid;	/* implies pos_valid */
	int64		stored;			/* committed offset in stream._offsets, as
								 * this transaction sees it: commit skips
								 * partitions whose position did not move */
	ItemPointerData stored_tid; /* where that row's newest version is (a
								 * hint for offsets.c; invalid: unknown) */
	int64		seen_lso;		/* LSO of the last read that reached it */
	int			nsaves;			/* > 0: touched by the current transaction */
	int			maxsaves;
	SavedPosition *saves;		/* TopMemoryContext, innermost last */
} LocalPart;

/* Backend-local state of one membership. */
typedef struct Membership
{
	bool		used;
	char		group[STREAM_GROUP_MAXLEN + 1];
	int32		topic_id;
	TimestampTz topic_created;
	uint32		group_hash;		/* of the name, for the ownership lock tags */
	int			slot;			/* index in StreamMembers->members */
	uint64		seen_epoch;		/* registry epoch of nmembers and rank */
	int			nmembers;		/* live members of (group, topic) */
	int			rank;			/* ours among them, by join order */
	int			nparts;
	LocalPart  *parts;			/* TopMemoryContext */
	uint32		rr_start;		/* partition to read first, rotating */
} Membership;

static StreamMembers *members = NULL;
static Membership memberships[MEMBERSHIPS_PER_BACKEND];
static bool consumer_callbacks = false;

static void consumer_xact_callback(XactEvent event, void *arg);
static void consumer_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
									  SubTransactionId parentSubid, void *arg);
static void consumer_exit(int code, Datum arg);
static void leave_membership(Membership *ms);
static void forget_position(LocalPart *lp);
static void store_offset(Membership *ms, int32 p, int64 offset);

/* Shared memory for the member registry. */
Size
stream_consumer_shmem_size(void)
{
	return add_size(offsetof(StreamMembers, members),
					mul_size(mul_size(MaxBackends, MEMBERSHIPS_PER_BACKEND),
							 sizeof(StreamMember)));
}

/* Create or attach the registry; caller holds AddinShmemInitLock. */
void
stream_consumer_shmem_init(void)
{
	bool		found;
	Size		size = stream_consumer_shmem_size();

	members = ShmemInitStruct("stream group members", size, &found);
	if (!found)
	{
		memset(members, 0, size);
		members->lock = &(GetNamedLWLockTranche("stream"))[1].lock;
		pg_atomic_init_u64(&members->epoch, 1);
		members->next_seq = 1;
		members->nslots = MaxBackends * MEMBERSHIPS_PER_BACKEND;
	}
}

/* Check a group name: the same rules as topic names. */
void
stream_check_group_name(const char *name)
{
	StaticAssertStmt(STREAM_GROUP_MAXLEN == STREAM_TOPIC_MAXLEN, "one name rule");
	stream_check_name("group", name);
}

/* Hash a group name for owner_tag. */
static uint32
group_hash(const char *group)
{
	return hash_bytes((const unsigned char *) group, strlen(group));
}

/* The advisory lock that stands for ownership of one partition. */
static void
owner_tag(LOCKTAG *tag, Oid dbid, uint32 group_hash, int32 topic_id, int32 partition)
{
	uint32		k2 = ((uint32) topic_id << 14) ^ (uint32) partition;

	SET_LOCKTAG_ADVISORY(*tag, dbid, group_hash, k2, STREAM_LOCK_FIELD4);
}

/* Register transaction callbacks and the exit hook once per backend. */
static void
consumer_backend_init(void)
{
	if (consumer_callbacks)
		return;
	RegisterXactCallback(consumer_xact_callback, NULL);
	RegisterSubXactCallback(consumer_subxact_callback, NULL);
	before_shmem_exit(consumer_exit, (Datum) 0);
	consumer_callbacks = true;
}

/* Set the latches of the other live members of a group/topic. */
static void
wake_group(const char *group, int32 topic_id)
{
	int			i;

	LWLockAcquire(members->lock, LW_SHARED);
	for (i = 0; i < members->nslots; i++)
	{
		StreamMember *m = &members->members[i];

		if (m->used && m->dbid == MyDatabaseId && m->topic_id == topic_id &&
			m->procno != STREAM_MY_PROCNO && strcmp(m->group, group) == 0)
			SetLatch(&ProcGlobal->allProcs[m->procno].procLatch);
	}
	LWLockRelease(members->lock);
}

/* Find this session's membership of (group, topic), or NULL. */
static Membership *
find_membership(const char *group, int32 topic_id)
{
	int			i;

	for (i = 0; i < MEMBERSHIPS_PER_BACKEND; i++)
		if (memberships[i].used && memberships[i].topic_id == topic_id &&
			strcmp(memberships[i].group, group) == 0)
			return &memberships[i];
	return NULL;
}

/*
 * All membership slots are used: free one whose topic was dropped (its
 * locks and registry slot are useless now).  NULL when there is none.
 */
static Membership *
reclaim_membership(void)
{
	int			i;
	int32		p;

	for (i = 0; i < MEMBERSHIPS_PER_BACKEND; i++)
	{
		Membership *ms = &memberships[i];
		bool		busy = false;

		for (p = 0; p < ms->nparts; p++)
			busy |= (ms->parts[p].nsaves > 0);
		if (!busy && !stream_topic_exists(ms->topic_id, ms->topic_created))
		{
			leave_membership(ms);
			return ms;
		}
	}
	return NULL;
}

/* Join (group, topic) unless already a member. */
static Membership *
join_group(const char *group, StreamTopic *topic)
{
	Membership *ms = find_membership(group, topic->topic_id);
	int			i;
	int			base;
	int			slot = -1;

	if (ms != NULL)
		return ms;

	consumer_backend_init();
	for (i = 0; i < MEMBERSHIPS_PER_BACKEND && ms == NULL; i++)
		if (!memberships[i].used)
			ms = &memberships[i];
	if (ms == NULL)
		ms = reclaim_membership();
	if (ms == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("a session can be a member of at most %d group/topic pairs",
						MEMBERSHIPS_PER_BACKEND),
				 errhint("Call stream.leave() for the pairs this session no longer consumes.")));

	memset(ms, 0, sizeof(Membership));
	strlcpy(ms->group, group, sizeof(ms->group));
	ms->group_hash = group_hash(group);
	ms->topic_id = topic->topic_id;
	ms->topic_created = topic->created_at;
	ms->nparts = topic->partitions;
	ms->parts = MemoryContextAllocZero(TopMemoryContext, sizeof(LocalPart) * ms->nparts);

	/* our slots are ours alone, but readers scan them under the lock */
	base = STREAM_MY_PROCNO * MEMBERSHIPS_PER_BACKEND;
	LWLockAcquire(members->lock, LW_EXCLUSIVE);
	for (i = 0; i < MEMBERSHIPS_PER_BACKEND; i++)
	{
		StreamMember *m = &members->members[base + i];

		if (!m->used)
		{
			slot = base + i;
			m->used = true;
			m->dbid = MyDatabaseId;
			m->topic_id = topic->topic_id;
			m->procno = STREAM_MY_PROCNO;
			m->pid = MyProcPid;
			m->join_seq = members->next_seq++;
			strlcpy(m->group, group, sizeof(m->group));
			pg_atomic_fetch_add_u64(&members->epoch, 1);
			break;
		}
	}
	LWLockRelease(members->lock);
	if (slot < 0)
	{
		pfree(ms->parts);
		elog(ERROR, "stream: no free member slot for this backend");
	}
	ms->slot = slot;
	ms->used = true;

	wake_group(group, topic->topic_id);
	return ms;
}

/* Give up one partition: release its lock and forget the position. */
static void
disown(Membership *ms, int32 p)
{
	LOCKTAG		tag;

	owner_tag(&tag, MyDatabaseId, ms->group_hash, ms->topic_id, p);
	if (ms->parts[p].owned)
		LockRelease(&tag, ExclusiveLock, true);
	ms->parts[p].owned = false;
	forget_position(&ms->parts[p]);
	ms->parts[p].nsaves = 0;
}

/* Leave (group, topic): give every partition back and free the slot. */
static void
leave_membership(Membership *ms)
{
	int32		p;
	char		group[STREAM_GROUP_MAXLEN + 1];
	int32		topic_id = ms->topic_id;

	for (p = 0; p < ms->nparts; p++)
		disown(ms, p);
	LWLockAcquire(members->lock, LW_EXCLUSIVE);
	members->members[ms->slot].used = false;
	pg_atomic_fetch_add_u64(&members->epoch, 1);
	LWLockRelease(members->lock);
	strlcpy(group, ms->group, sizeof(group));
	for (p = 0; p < ms->nparts; p++)
		if (ms->parts[p].saves)
			pfree(ms->parts[p].saves);
	if (ms->parts)
		pfree(ms->parts);
	ms->parts = NULL;
	ms->used = false;
	wake_group(group, topic_id);
}

/* Grow the local partition array after alter_topic added partitions. */
static void
resize_membership(Membership *ms, StreamTopic *topic)
{
	if (topic->partitions > ms->nparts)
	{
		ms->parts = repalloc(ms->parts, sizeof(LocalPart) * topic->partitions);
		memset(&ms->parts[ms->nparts], 0,
			   sizeof(LocalPart) * (topic->partitions - ms->nparts));
		ms->nparts = topic->partitions;
	}
}

/* Recompute this member's share and move ownership towards it. */
static void
rebalance(Membership *ms, StreamTopic *topic)
{
	StreamMember *me = &members->members[ms->slot];
	int			nmembers;
	int			rank;
	int			i;
	int32		p;
	bool		gave_up = false;

	resize_membership(ms, topic);

	/* an unchanged epoch means an unchanged registry: keep the last count */
	if (pg_atomic_read_u64(&members->epoch) != ms->seen_epoch)
	{
		nmembers = 0;
		rank = 0;
		LWLockAcquire(members->lock, LW_SHARED);
		ms->seen_epoch = pg_atomic_read_u64(&members->epoch);
		for (i = 0; i < members->nslots; i++)
		{
			StreamMember *m = &members->members[i];

			if (m->used && m->dbid == MyDatabaseId && m->topic_id == ms->topic_id &&
				strcmp(m->group, ms->group) == 0)
			{
				nmembers++;
				if (m->join_seq < me->join_seq)
					rank++;
			}
		}
		LWLockRelease(members->lock);
		ms->nmembers = nmembers;
		ms->rank = rank;
	}
	nmembers = ms->nmembers;
	rank = ms->rank;
	Assert(nmembers > 0);

	for (p = 0; p < ms->nparts; p++)
	{
		LocalPart  *lp = &ms->parts[p];
		bool		wanted = (p % nmembers) == rank;
		LOCKTAG		tag;

		if (!lp->owned && !wanted)
			continue;
		owner_tag(&tag, MyDatabaseId, ms->group_hash, ms->topic_id, p);
#if PG_VERSION_NUM >= 170000
		if (lp->owned && !LockHeldByMe(&tag, ExclusiveLock, false))
#else
		if (lp->owned && !LockHeldByMe(&tag, ExclusiveLock))
#endif
		{
			/* pg_advisory_unlock_all() or DISCARD took it away */
			lp->owned = false;
			forget_position(lp);
		}
		if (lp->owned && !wanted && lp->nsaves == 0)
		{
			disown(ms, p);
			gave_up = true;
		}
		else if (!lp->owned && wanted)
		{
			LockAcquireResult r = LockAcquire(&tag, ExclusiveLock, true, true);

			/*
			 * ALREADY_HELD: this transaction holds the lock already (seek or
			 * reset of an idle partition); the session count we were just
			 * granted is the one that makes us the owner, so it stays.
			 */
			if (r == LOCKACQUIRE_NOT_AVAIL)
				continue;
			lp->owned = true;
			forget_position(lp);
		}
	}

	/* a member in a long poll may be waiting for what we gave up */
	if (gave_up)
		wake_group(ms->group, ms->topic_id);
}

/* Forget a partition's position: the next use reloads it from the table. */
static void
forget_position(LocalPart *lp)
{
	lp->pos_valid = false;
	lp->stored_valid = false;
	ItemPointerSetInvalid(&lp->stored_tid);
}

/* Make sure an owned partition has a position: committed offset or earliest. */
static void
ensure_position(Membership *ms, StreamTopic *topic, int32 p)
{
	LocalPart  *lp = &ms->parts[p];
	int64		committed;

	if (lp->pos_valid)
		return;
	lp->stored_valid = stream_load_committed(ms->group, ms->topic_id, p, &committed,
											 &lp->stored_tid);
	if (lp->stored_valid)
		lp->position = lp->stored = committed;
	else
		lp->position = stream_earliest_offset(topic, p);
	lp->pos_valid = true;
}

/*
 * Call before the current (sub)transaction changes a position (or commits
 * it): remembers the position as it was, once per subtransaction, so that
 * ROLLBACK TO SAVEPOINT can put it back.
 */
static void
touch(LocalPart *lp)
{
	SubTransactionId subid = GetCurrentSubTransactionId();

	if (lp->nsaves > 0 && lp->saves[lp->nsaves - 1].subid == subid)
		return;
	if (lp->saves == NULL)
	{
		lp->maxsaves = 4;
		lp->saves = MemoryContextAlloc(TopMemoryContext, sizeof(SavedPosition) * lp->maxsaves);
	}
	else if (lp->nsaves == lp->maxsaves)
	{
		lp->maxsaves *= 2;
		lp->saves = repalloc(lp->saves, sizeof(SavedPosition) * lp->maxsaves);
	}
	lp->saves[lp->nsaves].subid = subid;
	lp->saves[lp->nsaves].valid = lp->pos_valid;
	lp->saves[lp->nsaves].position = lp->position;
	lp->saves[lp->nsaves].stored_valid = lp->stored_valid;
	lp->saves[lp->nsaves].stored = lp->stored;
	lp->saves[lp->nsaves].stored_tid = lp->stored_tid;
	lp->nsaves++;
}

/*
 * Is partition p still ours?  pg_advisory_unlock_all() and DISCARD ALL
 * release our ownership locks behind our back; then it is not.
 */
static bool
still_owned(Membership *ms, int32 p)
{
	LocalPart  *lp = &ms->parts[p];
	LOCKTAG		tag;

	if (!lp->owned)
		return false;
	owner_tag(&tag, MyDatabaseId, ms->group_hash, ms->topic_id, p);
#if PG_VERSION_NUM >= 170000
	if (LockHeldByMe(&tag, ExclusiveLock, false))
#else
	if (LockHeldByMe(&tag, ExclusiveLock))
#endif
		return true;
	lp->owned = false;
	forget_position(lp);
	return false;
}

/* Interval to milliseconds for the long poll (in double: years overflow int64 us). */
static long
wait_ms(Interval *wait)
{
	double		us;

	us = (double) wait->time + (double) wait->day * USECS_PER_DAY +
		(double) wait->month * DAYS_PER_MONTH * USECS_PER_DAY;
	if (us < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("wait must not be negative")));
	return (long) Min(us / 1000.0, (double) INT_MAX);
}

/*
 * A member's position fell below the partition's log start (retention
 * dropped those segments): resume per stream.auto_offset_reset.
 */
static int64
below_log_start(Membership *ms, StreamTopic *topic, int32 p, int64 position, int64 log_start)
{
	switch (stream_auto_offset_reset)
	{
		case STREAM_RESET_LATEST:
			return stream_latest_offset(topic, p);
		case STREAM_RESET_ERROR:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("offset " INT64_FORMAT " of group \"%s\" in partition %d of topic \"%s\" is below the log start offset " INT64_FORMAT,
							position, ms->group, p, topic->name, log_start),
					 errdetail("Retention removed the messages from offset " INT64_FORMAT " up to " INT64_FORMAT ".",
							   position, log_start),
					 errhint("Move the group with stream.reset_offsets(), or set stream.auto_offset_reset to 'earliest' or 'latest'.")));
			break;
		default:
			break;
	}
	return log_start;
}

/* Read from the owned partitions into the result; returns the count. */
static int
read_owned(Membership *ms, StreamTopic *topic, int max_messages, StreamValueMode mode,
		   ReturnSetInfo *rsinfo)
{
	int			count = 0;
	int32		i;

	for (i = 0; i < ms->nparts && count < max_messages; i++)
	{
		int32		p = (int32) ((ms->rr_start + i) % ms->nparts);
		LocalPart  *lp = &ms->parts[p];
		int64		next;
		int64		log_start;
		int			got;

		if (!lp->owned)
			continue;
		ensure_position(ms, topic, p);
		got = stream_read_partition(topic, p, lp->position, max_messages - count, mode,
									rsinfo->setResult, rsinfo->setDesc, &next,
									&lp->seen_lso, &log_start);
		if (got == 0 && log_start > lp->position)
		{
			/* retention removed what we were about to read */
			touch(lp);
			lp->position = below_log_start(ms, topic, p, lp->position, log_start);
			got = stream_read_partition(topic, p, lp->position, max_messages - count, mode,
										rsinfo->setResult, rsinfo->setDesc, &next,
										&lp->seen_lso, &log_start);
		}
		if (next > lp->position)
		{
			touch(lp);
			lp->position = next;
			count += got;
		}
	}
	ms->rr_start++;
	return count;
}

/*
 * Register our latch on every owned partition; true if one of them already
 * has data past our position (then we must not sleep).
 */
static bool
prepare_wait(Membership *ms, StreamTopic *topic, bool *all_registered)
{
	int32		p;
	bool		ready = false;

	*all_registered = true;
	for (p = 0; p < ms->nparts; p++)
	{
		LocalPart  *lp = &ms->parts[p];
		StreamPartition *part;
		int64		lso;

		if (!lp->owned || !lp->pos_valid)
			continue;
		part = stream_partition_lock(topic, p);
		if (!stream_wait_register(part))
			*all_registered = false;
		lso = stream_partition_lso(part, NULL);
		stream_partition_unlock();
		/*
		 * Data may have come since our last read only if the LSO moved past
		 * what that read saw (offsets below it that it did not return were
		 * rolled back).
		 */
		if (lso > lp->position && lso > lp->seen_lso)
			ready = true;
	}
	return ready;
}

/* Shared body of poll, poll_text and poll_bytea. */
static Datum
poll_common(FunctionCallInfo fcinfo, StreamValueMode mode)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *group;
	StreamTopic *topic;
	int32		max_messages;
	long		timeout;
	TimestampTz deadline;
	Membership *ms;
	static const char *const names[] = {"group", "topic", "max_messages", "wait"};

	/* before joining: a refused poll must leave no membership behind */
	stream_check_readable();
	stream_check_args_not_null(fcinfo, names, 4);
	group = text_to_cstring(PG_GETARG_TEXT_PP(0));
	stream_check_group_name(group);
	topic = stream_topic_lookup(PG_GETARG_TEXT_PP(1));
	stream_check_privilege(topic, STREAM_PRIV_CONSUME);
	max_messages = PG_GETARG_INT32(2);
	stream_check_max_messages(max_messages);
	stream_check_value_mode(topic, mode);
	timeout = wait_ms(PG_GETARG_INTERVAL_P(3));
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout);

	InitMaterializedSRF(fcinfo, 0);
	ms = join_group(group, topic);

	for (;;)
	{
		bool		all_registered;
		long		remaining;

		rebalance(ms, topic);
		if (read_owned(ms, topic, max_messages, mode, rsinfo) > 0)
			break;
		remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (remaining <= 0)
			break;

		/* register first, check second, sleep third: no lost wakeup */
		if (!prepare_wait(ms, topic, &all_registered))
		{
			pgstat_report_wait_start(PG_WAIT_EXTENSION);
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 all_registered ? remaining : Min(remaining, 10),
							 PG_WAIT_EXTENSION);
			pgstat_report_wait_end();
			ResetLatch(MyLatch);
		}
		stream_wait_unregister_all();
		CHECK_FOR_INTERRUPTS();
	}
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(stream_poll);
PG_FUNCTION_INFO_V1(stream_poll_text);
PG_FUNCTION_INFO_V1(stream_poll_bytea);

/* SQL: stream.poll(group, topic, max_messages, wait), jsonb topics */
Datum
stream_poll(PG_FUNCTION_ARGS)
{
	return poll_common(fcinfo, STREAM_VALUE_JSONB);
}

/* SQL: stream.poll_text(...), values in their text form */
Datum
stream_poll_text(PG_FUNCTION_ARGS)
{
	return poll_common(fcinfo, STREAM_VALUE_TEXT);
}

/* SQL: stream.poll_bytea(...), bytea topics */
Datum
stream_poll_bytea(PG_FUNCTION_ARGS)
{
	return poll_common(fcinfo, STREAM_VALUE_BYTEA);
}

/* Fetch and check the (group, topic) arguments shared by the functions below. */
static StreamTopic *
group_topic_args(FunctionCallInfo fcinfo, char **group, int nargs)
{
	StreamTopic *topic;
	static const char *const names[] = {"group", "topic", "partition", "offset"};

	Assert(nargs <= lengthof(names));
	stream_require_preload();
	if (RecoveryInProgress())
		stream_check_primary(psprintf("stream.%s()", get_func_name(fcinfo->flinfo->fn_oid)));
	stream_check_args_not_null(fcinfo, names, nargs);
	*group = text_to_cstring(PG_GETARG_TEXT_PP(0));
	stream_check_group_name(*group);
	topic = stream_topic_lookup(PG_GETARG_TEXT_PP(1));
	stream_check_privilege(topic, STREAM_PRIV_CONSUME);
	return topic;
}

/* True when some live session (in this database) is a member of the group. */
static bool
group_has_members(const char *group)
{
	int			i;
	bool		found = false;

	LWLockAcquire(members->lock, LW_SHARED);
	for (i = 0; i < members->nslots && !found; i++)
	{
		StreamMember *m = &members->members[i];

		found = (m->used && m->dbid == MyDatabaseId && strcmp(m->group, group) == 0);
	}
	LWLockRelease(members->lock);
	return found;
}

/*
 * True when some live SQL session (in this database) is a member of the
 * group: the Kafka coordinator (kafka_group.c) refuses Kafka members then.
 */
bool
stream_group_has_sql_members(const char *group)
{
	return group_has_members(group);
}

/* Error unless the group is known: committed offsets or live members. */
static void
check_group_exists(const char *group)
{
	if (!group_has_members(group) && !stream_group_has_offsets(group))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("consumer group \"%s\" does not exist", group),
				 errdetail("A group exists once one of its sessions has polled or committed an offset.")));
}

/* Check an offset against a partition's end offset. */
static void
check_offset(StreamTopic *topic, int32 partition, int64 offset)
{
	int64		end_offset;

	if (offset < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("offset must not be negative, got " INT64_FORMAT, offset)));
	(void) stream_partition_bounds(topic, partition, &end_offset);
	if (offset > end_offset)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("offset " INT64_FORMAT " is beyond the end of partition %d of topic \"%s\"",
						offset, partition, topic->name),
				 errdetail("The end offset is " INT64_FORMAT ".", end_offset)));
}

PG_FUNCTION_INFO_V1(stream_commit);

/* SQL: stream.commit(group, topic): commit this session's positions */
Datum
stream_commit(PG_FUNCTION_ARGS)
{
	char	   *group;
	StreamTopic *topic = group_topic_args(fcinfo, &group, 2);
	Membership *ms;
	int32		p;
	int			n = 0;

	PreventCommandIfReadOnly("stream.commit()");
	ms = find_membership(group, topic->topic_id);
	if (ms == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this session is not a member of group \"%s\" for topic \"%s\"",
						group, topic->name),
				 errhint("Call stream.poll('%s', '%s') first.", group, topic->name)));
	for (p = 0; p < ms->nparts; p++)
	{
		LocalPart  *lp = &ms->parts[p];

		if (!still_owned(ms, p) || !lp->pos_valid)
			continue;
		touch(lp);
		store_offset(ms, p, lp->position);
		n++;
	}
	PG_RETURN_INT32(n);
}

PG_FUNCTION_INFO_V1(stream_commit_offset);

/*
 * Store an owned partition's committed offset (caller did touch()), unless
 * the table holds it already: a consumer that commits after every poll then
 * writes only the partitions it advanced, not every partition it owns.
 */
static void
store_offset(Membership *ms, int32 p, int64 offset)
{
	LocalPart  *lp = &ms->parts[p];

	if (lp->stored_valid && lp->stored == offset)
		return;
	stream_store_committed(ms->group, ms->topic_id, p, offset, &lp->stored_tid);
	lp->stored = offset;
	lp->stored_valid = lp->pos_valid;
}

/* SQL: stream.commit(group, topic, partition, offset): commit one offset */
Datum
stream_commit_offset(PG_FUNCTION_ARGS)
{
	char	   *group;
	StreamTopic *topic = group_topic_args(fcinfo, &group, 4);
	int32		partition = PG_GETARG_INT32(2);
	int64		offset = PG_GETARG_INT64(3);
	Membership *ms;

	PreventCommandIfReadOnly("stream.commit()");
	stream_check_partition(topic, partition);
	ms = find_membership(group, topic->topic_id);
	if (ms != NULL)
		resize_membership(ms, topic);
	if (ms == NULL || !still_owned(ms, partition))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("partition %d of topic \"%s\" is not owned by this session in group \"%s\"",
						partition, topic->name, group),
				 errhint("Only the member that owns a partition commits its offset; use stream.seek() or stream.reset_offsets() to move an idle group.")));
	check_offset(topic, partition, offset);
	touch(&ms->parts[partition]);
	store_offset(ms, partition, offset);
	PG_RETURN_VOID();
}

/*
 * Set the committed offset of a partition this session does not own,
 * refusing when another live member owns it.  The ownership lock is taken
 * for the rest of the transaction, so no member can take the partition and
 * read the old offset before the new one commits.
 */
static void
set_idle_offset(const char *group, StreamTopic *topic, int32 p, int64 offset)
{
	LOCKTAG		tag;

	owner_tag(&tag, MyDatabaseId, group_hash(group), topic->topic_id, p);
	if (LockAcquire(&tag, ExclusiveLock, false, true) == LOCKACQUIRE_NOT_AVAIL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("partition %d of topic \"%s\" is owned by a live member of group \"%s\"",
						p, topic->name, group),
				 errhint("Stop the group's consumers (or have them call stream.leave()) before moving its offsets.")));
	{
		ItemPointerData tid;

		ItemPointerSetInvalid(&tid);
		stream_store_committed(group, topic->topic_id, p, offset, &tid);
	}
}

PG_FUNCTION_INFO_V1(stream_seek);

/* SQL: stream.seek(group, topic, partition, offset) */
Datum
stream_seek(PG_FUNCTION_ARGS)
{
	char	   *group;
	StreamTopic *topic = group_topic_args(fcinfo, &group, 4);
	int32		partition = PG_GETARG_INT32(2);
	int64		offset = PG_GETARG_INT64(3);
	Membership *ms;

	stream_check_partition(topic, partition);
	ms = find_membership(group, topic->topic_id);
	if (ms != NULL)
		resize_membership(ms, topic);
	if (ms == NULL || !still_owned(ms, partition))
		check_group_exists(group);
	check_offset(topic, partition, offset);

	if (ms != NULL && ms->parts[partition].owned)
	{
		/* our own position: poll continues from there, commit stores it */
		touch(&ms->parts[partition]);
		ms->parts[partition].position = offset;
		ms->parts[partition].pos_valid = true;
	}
	else
	{
		PreventCommandIfReadOnly("stream.seek()");
		set_idle_offset(group, topic, partition, offset);
	}
	PG_RETURN_VOID();
}

/* Reset every partition of the topic for the group to a computed offset. */
static void
reset_all(FunctionCallInfo fcinfo, const char *group, StreamTopic *topic,
		  int kind, TimestampTz ts)
{
	Membership *ms = find_membership(group, topic->topic_id);
	int32		p;

	check_group_exists(group);
	PreventCommandIfReadOnly("stream.reset_offsets()");
	if (ms != NULL)
		resize_membership(ms, topic);
	for (p = 0; p < topic->partitions; p++)
	{
		int64		offset;

		if (kind == 0)
			offset = stream_earliest_offset(topic, p);
		else if (kind == 1)
			offset = stream_latest_offset(topic, p);
		else
			offset = stream_offset_for_time(topic, p, ts);

		if (ms != NULL && still_owned(ms, p))
		{
			touch(&ms->parts[p]);
			ms->parts[p].position = offset;
			ms->parts[p].pos_valid = true;
			store_offset(ms, p, offset);
		}
		else
			set_idle_offset(group, topic, p, offset);
	}
}

PG_FUNCTION_INFO_V1(stream_reset_offsets);

/* SQL: stream.reset_offsets(group, topic, "to" text): 'earliest' | 'latest' */
Datum
stream_reset_offsets(PG_FUNCTION_ARGS)
{
	char	   *group;
	StreamTopic *topic = group_topic_args(fcinfo, &group, 3);
	char	   *to = text_to_cstring(PG_GETARG_TEXT_PP(2));
	int			kind;

	if (pg_strcasecmp(to, "earliest") == 0)
		kind = 0;
	else if (pg_strcasecmp(to, "latest") == 0)
		kind = 1;
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid reset target \"%s\"", to),
				 errhint("Use 'earliest', 'latest' or a timestamp.")));
	reset_all(fcinfo, group, topic, kind, 0);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(stream_reset_offsets_time);

/* SQL: stream.reset_offsets(group, topic, "to" timestamptz) */
Datum
stream_reset_offsets_time(PG_FUNCTION_ARGS)
{
	char	   *group;
	StreamTopic *topic = group_topic_args(fcinfo, &group, 3);

	reset_all(fcinfo, group, topic, 2, PG_GETARG_TIMESTAMPTZ(2));
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(stream_leave);

/* SQL: stream.leave(group, topic): give the partitions back */
Datum
stream_leave(PG_FUNCTION_ARGS)
{
	char	   *group;
	StreamTopic *topic = group_topic_args(fcinfo, &group, 2);
	Membership *ms = find_membership(group, topic->topic_id);
	int32		p;

	if (ms == NULL)
		PG_RETURN_BOOL(false);
	for (p = 0; p < ms->nparts; p++)
		if (ms->parts[p].nsaves > 0)
			ereport(ERROR,
					(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
					 errmsg("cannot leave group \"%s\" in a transaction that polled or committed it",
							group),
					 errdetail("Another member could take the partitions before this transaction's offsets commit."),
					 errhint("Commit or roll back first, then call stream.leave().")));
	leave_membership(ms);
	PG_RETURN_BOOL(true);
}

PG_FUNCTION_INFO_V1(stream_members);

/*
 * SQL: stream._members() RETURNS TABLE(pid int, "group" text, topic_id int,
 *		joined bigint): live members in this database.
 */
Datum
stream_members(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	StreamMember *copy;
	int			n = 0;
	int			i;

	stream_require_preload();
	InitMaterializedSRF(fcinfo, 0);

	/* copy under the lock, check visibility (catalog reads) after it */
	copy = palloc(sizeof(StreamMember) * members->nslots);
	LWLockAcquire(members->lock, LW_SHARED);
	for (i = 0; i < members->nslots; i++)
		if (members->members[i].used && members->members[i].dbid == MyDatabaseId)
			copy[n++] = members->members[i];
	LWLockRelease(members->lock);

	for (i = 0; i < n; i++)
	{
		StreamMember *m = &copy[i];
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};

		/* only the members of topics the caller may see */
		if (!stream_may_see_topic_id(m->topic_id))
			continue;
		values[0] = Int32GetDatum(m->pid);
		values[1] = CStringGetTextDatum(m->group);
		values[2] = Int32GetDatum(m->topic_id);
		values[3] = Int64GetDatum((int64) m->join_seq);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(stream_owner_lock_key);

/*
 * SQL: stream._owner_lock_key(group, topic_id, partition) -> (classid, objid)
 * of the ownership lock, to find its holder in pg_locks.
 */
Datum
stream_owner_lock_key(PG_FUNCTION_ARGS)
{
	char	   *group = text_to_cstring(PG_GETARG_TEXT_PP(0));
	LOCKTAG		tag;
	TupleDesc	tupdesc;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	owner_tag(&tag, MyDatabaseId, group_hash(group), PG_GETARG_INT32(1), PG_GETARG_INT32(2));
	values[0] = ObjectIdGetDatum(tag.locktag_field2);
	values[1] = ObjectIdGetDatum(tag.locktag_field3);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}

/* At the end of a transaction, forget positions it moved if it aborted. */
static void
consumer_xact_callback(XactEvent event, void *arg)
{
	bool		abort;
	int			i;
	int32		p;

	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		abort = true;
	else if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
			 event == XACT_EVENT_PREPARE)
		abort = false;
	else
		return;

	for (i = 0; i < MEMBERSHIPS_PER_BACKEND; i++)
	{
		Membership *ms = &memberships[i];

		if (!ms->used)
			continue;
		for (p = 0; p < ms->nparts; p++)
		{
			if (ms->parts[p].nsaves == 0)
				continue;
			/* rolled back: rewind to the committed offset */
			if (abort)
				forget_position(&ms->parts[p]);
			ms->parts[p].nsaves = 0;
		}
	}
}

/* A rolled-back subtransaction forgets the positions it moved. */
static void
consumer_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						  SubTransactionId parentSubid, void *arg)
{
	int			i;
	int32		p;

	if (event != SUBXACT_EVENT_ABORT_SUB)
		return;
	for (i = 0; i < MEMBERSHIPS_PER_BACKEND; i++)
	{
		Membership *ms = &memberships[i];

		if (!ms->used)
			continue;
		for (p = 0; p < ms->nparts; p++)
		{
			LocalPart  *lp = &ms->parts[p];
			SavedPosition *restore = NULL;

			/* pop what this subtransaction and its children saved */
			while (lp->nsaves > 0 && lp->saves[lp->nsaves - 1].subid >= mySubid)
				restore = &lp->saves[--lp->nsaves];
			if (restore)
			{
				lp->position = restore->position;
				lp->pos_valid = restore->valid;
				lp->stored = restore->stored;
				lp->stored_valid = restore->stored_valid;
				lp->stored_tid = restore->stored_tid;
			}
		}
	}
}

/* Backend exit: free our registry slots and tell the other members. */
static void
consumer_exit(int code, Datum arg)
{
	int			i;

	if (members == NULL)
		return;
	for (i = 0; i < MEMBERSHIPS_PER_BACKEND; i++)
	{
		Membership *ms = &memberships[i];

		if (!ms->used)
			continue;
		/*
		 * Release the ownership locks before waking the others (the lock
		 * manager would do it only later in the shutdown sequence).  A
		 * transaction still open here is about to abort, so its offsets
		 * are not going to commit.
		 */
		leave_membership(ms);
	}
}
