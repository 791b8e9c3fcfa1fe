/*-------------------------------------------------------------------------
 *
 * stream.h
 *	  Declarations shared by every part of the stream extension: GUCs,
 *	  the shared-memory anchor and the catalog names.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAM_H
#define STREAM_H

#include "postgres.h"

#include "fmgr.h"
#include "storage/lwlock.h"

/* Catalog schema and data schema created by the extension script. */
#define STREAM_SCHEMA		"stream"
#define STREAM_DATA_SCHEMA	"stream_data"

/* Attribute numbers of a segment table, fixed by stream._create_segment(). */
#define Anum_seg_offset			1
#define Anum_seg_key			2
#define Anum_seg_value			3
#define Anum_seg_headers		4
#define Anum_seg_published_at	5
#define Natts_seg				5

/* GUCs (stream.c) */
extern int	stream_max_partitions;
extern int	stream_max_xact_partitions;
extern int	stream_max_read_messages;
extern int	stream_topic_cache_size;
extern int	stream_auto_offset_reset;
extern char *stream_database;
extern int	stream_naptime;

/* stream.auto_offset_reset: where a group below the log start resumes */
typedef enum StreamOffsetReset
{
	STREAM_RESET_EARLIEST,
	STREAM_RESET_LATEST,
	STREAM_RESET_ERROR
} StreamOffsetReset;

/*
 * Run the extension's own catalog queries as the bootstrap superuser with a
 * pinned search_path, whoever the caller is (see stream.c).
 */
typedef struct StreamInternalState
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
} StreamInternalState;

extern void stream_internal_begin(StreamInternalState *state);
extern void stream_internal_end(StreamInternalState *state);

/* True once shared memory is attached (module was preloaded). */
extern bool stream_shmem_ready(void);
extern void stream_require_preload(void);
extern void stream_check_primary(const char *what);

/* Error 22004 naming the first of the leading arguments that is NULL. */
extern void stream_check_args_not_null(FunctionCallInfo fcinfo, const char *const *names,
									   int nargs);

#endif							/* STREAM_H */
