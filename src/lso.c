/*-------------------------------------------------------------------------
 *
 * lso.c
 *	  Shared per-partition state and the last stable offset (LSO).
 *
 * Offsets are handed out at publish time, but transactions commit in any
 * order.  A reader that returned offset n+1 while n was still held by an
 * open transaction would move its position past n and lose it when n
 * commits.  So every partition has a shared entry with the next offset to
 * hand out and the list of open transactions that hold offsets in it; each
 * such transaction is represented by one StreamOpenSlot carrying the lowest
 * offset it still holds.  The LSO is the minimum of those, or the next
 * offset when nobody holds one.  Readers only return offsets below the LSO,
 * and they take their snapshot after computing it: a holder is removed
 * from the list by the transaction callback at XACT_EVENT_COMMIT, which
 * runs after the commit became visible in the proc array, so every offset
 * below an LSO that a reader computed is either committed and visible to
 * the reader's later snapshot, or rolled back for good.
 *
 * Subtransactions: a backend keeps, per partition it holds, a local list
 * of (subtransaction id, first offset reserved in it) records, appended in
 * order.  Aborting subtransaction S drops the records with id >= S (those
 * are S and its descendants); when none remain the slot is released.  The
 * lowest held offset is the first record's, so it only ever changes when
 * the slot goes away.
 *
 * An entry loaded from a segment that the current transaction created
 * (create_topic or alter_topic, then publish, in one transaction) describes
 * catalog rows that may yet roll back; such entries are removed when the
 * transaction ends, and whoever needs them next reloads committed state.
 *
 * A PREPAREd transaction would hold its offsets with no backend to release
 * them, so PREPARE TRANSACTION after a publish is refused.  A crash of any
 * backend restarts the postmaster's children and reinitialises shared
 * memory; entries are then reloaded from the segment tables on first use.
 *
 * Long polls: a consumer waiting for data registers a StreamWaitSlot in
 * each partition it owns; the transaction callback that releases a hold
 * sets the latch of every registered waiter after updating the entry, so
 * a waiter that registers, then checks the LSO, then sleeps on its latch
 * cannot miss a commit.
 *
 * Locking protocol:
 *	- StreamShared->lock protects the hash table itself.  To look up an
 *	  entry or use a pointer to it, hold it in shared mode; to insert,
 *	  reinitialise or evict an entry, hold it exclusively.
 *	- Each entry's spinlock protects its fields and its open list.  Work
 *	  under it is a few loads and stores; never anything that can fail.
 *	- An entry with open slots (nopen > 0) or waiters (npinned > 0) is
 *	  never evicted, so a slot's owner may use slot->part without the map
 *	  lock.
 *	- Loading an entry reads the segment tables with SPI, which cannot be
 *	  done under an LWLock (it takes heavyweight locks); the loader records
 *	  StreamShared->generation first and retries if an eviction happened
 *	  meanwhile, because an evicted entry may have handed out offsets that
 *	  the load did not see.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "lso.h"
#include "storage.h"
#include "stream.h"
#include "topic.h"

#if PG_VERSION_NUM >= 170000
#define STREAM_MY_PROCNO MyProcNumber
#else
#define STREAM_MY_PROCNO (MyProc->pgprocno)
#endif

/* One open transaction's hold on one partition. */
typedef struct StreamOpenSlot
{
	dlist_node	node;			/* in part->open */
	StreamPartition *part;		/* NULL when free */
	int64		lowest;			/* lowest offset still held */
} StreamOpenSlot;

/* One backend waiting for a partition's LSO to move (long poll). */
typedef struct StreamWaitSlot
{
	dlist_node	node;			/* in part->waiters */
	StreamPartition *part;		/* NULL when free */
	int			procno;			/* whose latch to set */
} StreamWaitSlot;

typedef struct StreamShared
{
	LWLock	   *lock;			/* protects the hash table */
	uint64		generation;		/* bumped by every eviction */
	int			slots_per_backend;
	int			nbackends;
	StreamWaitSlot *waits;		/* nbackends * slots_per_backend */
	StreamOpenSlot slots[FLEXIBLE_ARRAY_MEMBER];
} StreamShared;

/* Backend-local record of a reservation inside one subtransaction. */
typedef struct HoldRecord
{
	SubTransactionId subid;
	int64		first;
	int64		last;			/* highest offset reserved in this subxact */
} HoldRecord;

/* Backend-local view of one held partition. */
typedef struct LocalHold
{
	StreamPartition *part;
	StreamOpenSlot *slot;
	int			nrecs;
	int			maxrecs;
	HoldRecord *recs;
} LocalHold;

static StreamShared *shared = NULL;
static HTAB *partition_map = NULL;

static LocalHold *holds = NULL;
static int	nwaits = 0;			/* registered StreamWaitSlots of this backend */
bool		stream_waits_outlive_xact = false;	/* set by the Kafka listener */

/* Entries this transaction loaded from its own uncommitted segments. */
#define MAX_PROVISIONAL 64
static StreamPartKey provisional[MAX_PROVISIONAL];
static int	nprovisional = 0;
static int	nholds = 0;
static bool callbacks_registered = false;

static void stream_xact_callback(XactEvent event, void *arg);
static void stream_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
									SubTransactionId parentSubid, void *arg);
static void release_hold(LocalHold *hold, bool committed);
static void release_all_holds(bool committed);
static void stream_lso_exit(int code, Datum arg);

/* Compute the shared memory this module needs. */
Size
stream_lso_shmem_size(void)
{
	Size		size;

	size = offsetof(StreamShared, slots);
	size = add_size(size, mul_size(mul_size(MaxBackends, stream_max_xact_partitions),
								   sizeof(StreamOpenSlot) + sizeof(StreamWaitSlot)));
	size = add_size(size, hash_estimate_size(stream_max_partitions,
											 sizeof(StreamPartition)));
	return size;
}

/* Create or attach the shared state; caller holds AddinShmemInitLock. */
void
stream_lso_shmem_init(void)
{
	bool		found;
	HASHCTL		info;
	Size		size;

	size = offsetof(StreamShared, slots) +
		(Size) MaxBackends * stream_max_xact_partitions *
		(sizeof(StreamOpenSlot) + sizeof(StreamWaitSlot));
	shared = ShmemInitStruct("stream shared state", size, &found);
	if (!found)
	{
		memset(shared, 0, size);
		shared->waits = (StreamWaitSlot *)
			&shared->slots[MaxBackends * stream_max_xact_partitions];
		shared->lock = &(GetNamedLWLockTranche("stream"))[0].lock;
		shared->generation = 0;
		shared->slots_per_backend = stream_max_xact_partitions;
		shared->nbackends = MaxBackends;
	}

	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(StreamPartKey);
	info.entrysize = sizeof(StreamPartition);
	partition_map = ShmemInitHash("stream partitions",
								  stream_max_partitions, stream_max_partitions,
								  &info, HASH_ELEM | HASH_BLOBS);
}

/* Per-backend setup: transaction callbacks and the exit hook. */
void
stream_lso_backend_init(void)
{
	if (callbacks_registered)
		return;
	RegisterXactCallback(stream_xact_callback, NULL);
	RegisterSubXactCallback(stream_subxact_callback, NULL);
	before_shmem_exit(stream_lso_exit, (Datum) 0);
	callbacks_registered = true;
}

bool
stream_shmem_ready(void)
{
	return shared != NULL && partition_map != NULL;
}

/* Initialise a fresh or stale entry with what the loader found on disk. */
static void
init_entry(StreamPartition *part, StreamTopic *topic, int64 segment, Oid relid,
		   Oid indexid, int64 next_offset, int64 bytes)
{
	part->active_bytes = bytes;
	SpinLockInit(&part->mutex);
	part->topic_created = topic->created_at;
	part->topic_catalog = topic->catalog_oid;
	part->next_offset = next_offset;
	part->committed_high = next_offset;
	part->active_segment = segment;
	part->active_relid = relid;
	part->active_indexid = indexid;
	part->roll_requested = 0;
	part->nopen = 0;
	part->npinned = 0;
	dlist_init(&part->open);
	dlist_init(&part->waiters);
}

/* Evict one idle entry to make room; caller holds the map lock exclusively. */
static bool
evict_one(void)
{
	HASH_SEQ_STATUS status;
	StreamPartition *part;

	hash_seq_init(&status, partition_map);
	while ((part = hash_seq_search(&status)) != NULL)
	{
		/*
		 * Only an entry whose every handed-out offset committed: reloading it
		 * from disk gives the same next offset.  Offsets rolled back at its
		 * end would be handed out again, under consumers that moved past.
		 */
		if (part->nopen == 0 && part->npinned == 0 &&
			part->committed_high >= part->next_offset)
		{
			StreamPartKey key = part->key;

			hash_seq_term(&status);
			hash_search(partition_map, &key, HASH_REMOVE, NULL);
			shared->generation++;
			return true;
		}
	}
	return false;
}

/*
 * Is the entry one of this topic?  A topic id and creation time come back
 * unchanged when a dump is restored over a database (DROP EXTENSION, CREATE
 * EXTENSION, data): the catalog's OID tells the two installs apart.
 */
static inline bool
same_incarnation(StreamPartition *part, StreamTopic *topic)
{
	return part->topic_created == topic->created_at &&
		part->topic_catalog == topic->catalog_oid;
}

/* Find an entry that is already loaded, without loading it. */
StreamPartition *
stream_partition_find(Oid dbid, int32 topic_id, int32 partition, TimestampTz created,
					  Oid catalog)
{
	StreamPartKey key;
	StreamPartition *part;

	stream_require_preload();
	memset(&key, 0, sizeof(key));
	key.dbid = dbid;
	key.topic_id = topic_id;
	key.partition = partition;

	LWLockAcquire(shared->lock, LW_SHARED);
	part = hash_search(partition_map, &key, HASH_FIND, NULL);
	if (part != NULL && part->topic_created == created && part->topic_catalog == catalog)
		return part;
	LWLockRelease(shared->lock);
	return NULL;
}

/* Find or load a partition's entry; returns with the map lock held shared. */
StreamPartition *
stream_partition_lock(StreamTopic *topic, int32 partition)
{
	StreamPartKey key;

	stream_require_preload();
	/* state loaded during recovery would be stale after a promotion */
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("stream offset state is not available on a standby server"),
				 errhint("Connect to the primary server.")));
	stream_lso_backend_init();

	memset(&key, 0, sizeof(key));
	key.dbid = MyDatabaseId;
	key.topic_id = topic->topic_id;
	key.partition = partition;

	for (;;)
	{
		StreamPartition *part;
		uint64		generation;
		int64		segment;
		Oid			relid;
		Oid			indexid;
		int64		next_offset;
		int64		bytes;
		bool		is_provisional;
		bool		found;

		LWLockAcquire(shared->lock, LW_SHARED);
		part = hash_search(partition_map, &key, HASH_FIND, NULL);
		if (part != NULL && same_incarnation(part, topic))
			return part;
		generation = shared->generation;
		LWLockRelease(shared->lock);

		/* Read the tail of the partition without holding any LWLock. */
		stream_load_tail(topic->topic_id, partition, &segment, &relid, &indexid,
						 &next_offset, &bytes, &is_provisional);

		/* Exclusive: we may insert or reinitialise the entry. */
		LWLockAcquire(shared->lock, LW_EXCLUSIVE);
		part = hash_search(partition_map, &key, HASH_FIND, NULL);
		if (part != NULL && same_incarnation(part, topic))
		{
			/* somebody else loaded it meanwhile */
			LWLockRelease(shared->lock);
			continue;
		}
		if (shared->generation != generation)
		{
			/* an eviction may have hidden offsets from our load: reload */
			LWLockRelease(shared->lock);
			continue;
		}
		if (part != NULL)
		{
			/*
			 * An entry of a dropped topic whose id was reused (the extension
			 * was dropped and created again).  It is idle unless the old
			 * topic still has open publishers, which drop_topic waits for.
			 */
			if (part->nopen > 0 || part->npinned > 0)
			{
				LWLockRelease(shared->lock);
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_IN_USE),
						 errmsg("partition %d of topic \"%s\" is still in use by a previous incarnation of the topic",
								partition, topic->name),
						 errhint("Retry when the transactions that published to the dropped topic have ended.")));
			}
		}
		else
		{
			part = hash_search(partition_map, &key, HASH_ENTER_NULL, &found);
			if (part == NULL && evict_one())
				part = hash_search(partition_map, &key, HASH_ENTER_NULL, &found);
			if (part == NULL)
			{
				LWLockRelease(shared->lock);
				ereport(ERROR,
						(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
						 errmsg("too many stream partitions in use"),
						 errdetail("All %d shared partition entries are held by open transactions.",
								   stream_max_partitions),
						 errhint("Increase \"stream.max_partitions\" and restart the server.")));
			}
		}
		init_entry(part, topic, segment, relid, indexid, next_offset, bytes);
		LWLockRelease(shared->lock);
		if (is_provisional)
		{
			if (nprovisional == MAX_PROVISIONAL)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("cannot publish to more than %d partitions created in the same transaction",
								MAX_PROVISIONAL),
						 errhint("Commit the transaction that created the topic or partitions first.")));
			provisional[nprovisional++] = key;
		}
	}
}

/* Release the map lock taken by stream_partition_lock or _find. */
void
stream_partition_unlock(void)
{
	LWLockRelease(shared->lock);
}

/* Find this backend's local hold on a partition, or NULL. */
static LocalHold *
find_hold(StreamPartition *part)
{
	int			i;

	for (i = 0; i < nholds; i++)
		if (holds[i].part == part)
			return &holds[i];
	return NULL;
}

/*
 * Reserve n consecutive offsets in part for the current transaction, and
 * account nbytes to the active segment.  *roll is set when the segment has
 * grown past segment_bytes and this caller is the one to start the roller.
 */
int64
stream_reserve_offsets(StreamPartition *part, int n, int64 nbytes, int64 segment_bytes,
					   int64 *segment, Oid *relid, Oid *indexid, bool *roll)
{
	TimestampTz now = GetCurrentTimestamp();

	LocalHold  *hold;
	StreamOpenSlot *slot = NULL;
	SubTransactionId subid = GetCurrentSubTransactionId();
	int64		first;
	bool		new_hold = false;

	Assert(n > 0);
	if (holds == NULL)
		holds = MemoryContextAllocZero(TopMemoryContext,
									   sizeof(LocalHold) * stream_max_xact_partitions);

	/* All allocation happens before the spinlock: nothing may fail under it. */
	hold = find_hold(part);
	if (hold == NULL)
	{
		int			base = STREAM_MY_PROCNO * shared->slots_per_backend;
		int			i;

		if (nholds >= stream_max_xact_partitions)
		{
			LWLockRelease(shared->lock);
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("a transaction cannot publish to more than %d partitions",
							stream_max_xact_partitions),
					 errhint("Publish in smaller transactions, or increase \"stream.max_xact_partitions\" and restart the server.")));
		}
		if (STREAM_MY_PROCNO >= shared->nbackends)
			elog(ERROR, "stream: process number %d out of range",
				 (int) STREAM_MY_PROCNO);
		for (i = 0; i < shared->slots_per_backend; i++)
		{
			if (shared->slots[base + i].part == NULL)
			{
				slot = &shared->slots[base + i];
				break;
			}
		}
		if (slot == NULL)
			elog(ERROR, "stream: no free offset slot for this backend");
		hold = &holds[nholds];
		memset(hold, 0, sizeof(LocalHold));
		hold->part = part;
		hold->slot = slot;
		hold->maxrecs = 4;
		hold->recs = MemoryContextAlloc(TopMemoryContext, sizeof(HoldRecord) * hold->maxrecs);
		nholds++;
		new_hold = true;
	}
	else if (hold->nrecs == hold->maxrecs &&
			 hold->recs[hold->nrecs - 1].subid != subid)
	{
		hold->maxrecs *= 2;
		hold->recs = repalloc(hold->recs, sizeof(HoldRecord) * hold->maxrecs);
	}

	SpinLockAcquire(&part->mutex);
	first = part->next_offset;
	part->next_offset += n;
	*segment = part->active_segment;
	*relid = part->active_relid;
	*indexid = part->active_indexid;
	part->active_bytes += nbytes;
	/* a roller that died without clearing the flag is retried after 60s */
	*roll = (part->active_bytes >= segment_bytes &&
			 (part->roll_requested == 0 ||
			  TimestampDifferenceExceeds(part->roll_requested, now, 60000)));
	if (*roll)
		part->roll_requested = now;
	if (new_hold)
	{
		slot->part = part;
		slot->lowest = first;
		dlist_push_tail(&part->open, &slot->node);
		part->nopen++;
	}
	SpinLockRelease(&part->mutex);

	if (hold->nrecs == 0 || hold->recs[hold->nrecs - 1].subid != subid)
	{
		hold->recs[hold->nrecs].subid = subid;
		hold->recs[hold->nrecs].first = first;
		hold->nrecs++;
	}
	hold->recs[hold->nrecs - 1].last = first + n - 1;
	return first;
}

/* Compute the end offset and the last stable offset of a partition. */
int64
stream_partition_lso(StreamPartition *part, int64 *end_offset)
{
	int64		lso;
	dlist_iter	iter;

	SpinLockAcquire(&part->mutex);
	lso = part->next_offset;
	if (end_offset)
		*end_offset = part->next_offset;
	dlist_foreach(iter, &part->open)
	{
		StreamOpenSlot *slot = dlist_container(StreamOpenSlot, node, iter.cur);

		if (slot->lowest < lso)
			lso = slot->lowest;
	}
	SpinLockRelease(&part->mutex);
	return lso;
}

/* Forget a roll request that could not be started. */
void
stream_partition_roll_failed(StreamPartition *part)
{
	SpinLockAcquire(&part->mutex);
	part->roll_requested = 0;
	SpinLockRelease(&part->mutex);
}

/* Make new_segment the active one, starting at the next offset. */
bool
stream_partition_switch(StreamPartition *part, int64 old_segment, int64 new_segment,
						Oid relid, Oid indexid, int64 *base_offset)
{
	bool		switched = false;

	SpinLockAcquire(&part->mutex);
	if (part->active_segment == old_segment)
	{
		part->active_segment = new_segment;
		part->active_relid = relid;
		part->active_indexid = indexid;
		*base_offset = part->next_offset;
		part->active_bytes = 0;
		switched = true;
	}
	part->roll_requested = 0;
	SpinLockRelease(&part->mutex);
	return switched;
}

/*
 * Set the latch of every backend in a long poll on part.  Procnos are
 * copied under the spinlock and the latches set outside it, in batches.
 */
static void
wake_waiters(StreamPartition *part)
{
	int			procnos[64];
	int			skip = 0;

	for (;;)
	{
		int			n = 0;
		int			seen = 0;
		int			i;
		dlist_iter	iter;

		SpinLockAcquire(&part->mutex);
		dlist_foreach(iter, &part->waiters)
		{
			StreamWaitSlot *w = dlist_container(StreamWaitSlot, node, iter.cur);

			if (seen++ < skip)
				continue;
			if (n == lengthof(procnos))
				break;
			procnos[n++] = w->procno;
		}
		SpinLockRelease(&part->mutex);

		for (i = 0; i < n; i++)
			SetLatch(&ProcGlobal->allProcs[procnos[i]].procLatch);
		if (n < lengthof(procnos))
			break;
		skip += n;
	}
}

/* Drop one hold: remove its slot from the partition and wake readers. */
static void
release_hold(LocalHold *hold, bool committed)
{
	StreamPartition *part = hold->part;
	StreamOpenSlot *slot = hold->slot;
	int64		high = -1;
	int			i;

	/* what this transaction committed, for the eviction rule */
	if (committed)
		for (i = 0; i < hold->nrecs; i++)
			high = Max(high, hold->recs[i].last + 1);

	SpinLockAcquire(&part->mutex);
	dlist_delete(&slot->node);
	part->nopen--;
	slot->part = NULL;
	if (high > part->committed_high)
		part->committed_high = high;
	SpinLockRelease(&part->mutex);

	/* the LSO may have moved: wake consumers waiting on this partition */
	wake_waiters(part);

	if (hold->recs)
		pfree(hold->recs);
	hold->recs = NULL;
	hold->part = NULL;
	hold->nrecs = 0;
}

/* Release every hold of this backend (end of top-level transaction). */
static void
release_all_holds(bool committed)
{
	int			i;

	for (i = 0; i < nholds; i++)
		if (holds[i].part != NULL)
			release_hold(&holds[i], committed);
	nholds = 0;
}

/*
 * Remove the idle entries loaded from this transaction's own segments.  At
 * the end of the transaction all of them go; after a rolled-back
 * subtransaction those still in use stay listed for the end.
 */
static void
forget_provisional(bool at_end)
{
	int			i;
	int			keep = 0;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < nprovisional; i++)
	{
		StreamPartition *part = hash_search(partition_map, &provisional[i], HASH_FIND, NULL);

		if (part == NULL)
			continue;
		if (part->nopen == 0 && part->npinned == 0)
		{
			hash_search(partition_map, &provisional[i], HASH_REMOVE, NULL);
			shared->generation++;
		}
		else if (!at_end)
			provisional[keep++] = provisional[i];
	}
	LWLockRelease(shared->lock);
	nprovisional = keep;
}

/* Release holds when the top-level transaction ends; refuse PREPARE. */
static void
stream_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			if (nholds > 0)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that has published to a stream"),
						 errdetail("A prepared transaction would hold its stream offsets with no session to release them, stalling every consumer of the partition."),
						 errhint("Publish outside of two-phase transactions.")));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* runs after the proc array shows the transaction as ended */
			if (nholds > 0)
				release_all_holds(event == XACT_EVENT_COMMIT ||
								  event == XACT_EVENT_PARALLEL_COMMIT);
			/*
			 * A long poll interrupted by an error leaves its waits behind.
			 * The Kafka listener keeps waits of parked fetches across its
			 * short transactions and unregisters them itself.
			 */
			if (!stream_waits_outlive_xact)
				stream_wait_unregister_all();
			if (nprovisional > 0)
				forget_provisional(true);
			break;
		default:
			break;
	}
}

/* On subtransaction abort, give back what it and its children reserved. */
static void
stream_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	int			i;
	int			keep;

	if (event != SUBXACT_EVENT_ABORT_SUB || (nholds == 0 && nprovisional == 0))
		return;

	for (i = 0; i < nholds; i++)
	{
		LocalHold  *hold = &holds[i];

		if (hold->part == NULL)
			continue;
		while (hold->nrecs > 0 && hold->recs[hold->nrecs - 1].subid >= mySubid)
			hold->nrecs--;
		if (hold->nrecs == 0)
			release_hold(hold, false);
	}

	/* compact the array so that find_hold stays simple */
	keep = 0;
	for (i = 0; i < nholds; i++)
		if (holds[i].part != NULL)
			holds[keep++] = holds[i];
	nholds = keep;

	/* the segments an entry was loaded from may have been rolled back */
	if (nprovisional > 0)
		forget_provisional(false);
}

/* Backend exit: nothing may stay held (normally already done by abort). */
static void
stream_lso_exit(int code, Datum arg)
{
	if (nholds > 0)
		release_all_holds(false);
	stream_wait_unregister_all();
}

/*
 * Register this backend as waiting on part (caller holds the map lock in
 * shared mode).  Returns false when this backend has no free wait slot;
 * the caller then sleeps with a short timeout instead.
 */
bool
stream_wait_register(StreamPartition *part)
{
	int			base = STREAM_MY_PROCNO * shared->slots_per_backend;
	StreamWaitSlot *w;

	if (nwaits >= shared->slots_per_backend)
		return false;
	w = &shared->waits[base + nwaits];
	w->procno = STREAM_MY_PROCNO;
	SpinLockAcquire(&part->mutex);
	w->part = part;
	dlist_push_tail(&part->waiters, &w->node);
	part->npinned++;
	SpinLockRelease(&part->mutex);
	nwaits++;
	return true;
}

/* Unregister every wait of this backend (end of a long poll, or error). */
void
stream_wait_unregister_all(void)
{
	int			base;
	int			i;

	if (nwaits == 0 || shared == NULL)
		return;
	base = STREAM_MY_PROCNO * shared->slots_per_backend;
	for (i = 0; i < nwaits; i++)
	{
		StreamWaitSlot *w = &shared->waits[base + i];
		StreamPartition *part = w->part;

		if (part == NULL)
			continue;
		SpinLockAcquire(&part->mutex);
		dlist_delete(&w->node);
		part->npinned--;
		w->part = NULL;
		SpinLockRelease(&part->mutex);
	}
	nwaits = 0;
}
