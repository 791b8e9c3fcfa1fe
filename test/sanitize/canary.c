/*
 * canary.c: a deliberately broken module with which scripts/sanitize.sh proves, on
 * every run, that a sanitizer report from a backend reaches it (preload, options,
 * report files, stack traces). Built with the same flags as stream.so, loaded only
 * into the sanitizer cluster.
 *
 *   sanitize_canary('ub', 40)        shifts 1 left by 40: UBSan reports, the backend
 *                                    goes on
 *   sanitize_canary('heap', 16384)   writes one byte past a 16 kB palloc chunk: a
 *                                    chunk that big gets its own malloc block, so
 *                                    ASan reports a heap-buffer-overflow and the
 *                                    backend aborts
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(sanitize_canary);

/* Commit the error the first argument names, at the place the second one gives. */
Datum
sanitize_canary(PG_FUNCTION_ARGS)
{
	char	   *kind = text_to_cstring(PG_GETARG_TEXT_PP(0));
	int32		n = PG_GETARG_INT32(1);

	if (strcmp(kind, "ub") == 0)
		PG_RETURN_INT32(1 << n);
	if (strcmp(kind, "heap") == 0)
	{
		char	   *p = palloc0(16384);

		p[n] = 1;
		PG_RETURN_INT32(p[0]);
	}
	elog(ERROR, "unknown canary \"%s\"", kind);
	PG_RETURN_NULL();
}
