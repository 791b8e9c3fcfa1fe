/*
 * preload.c: a helper library that scripts/sanitize.sh preloads right after the ASan
 * runtime (LD_PRELOAD=libasan.so:preload.so) into an uninstrumented postgres.
 *
 * 1. swift_demangle. Without it postgres (and psql) hang at start in bindtextdomain().
 *    Library constructors (libgpg-error's, gnutls's) run before the preloaded
 *    runtime's own, so ASan initializes on their first malloc, inside
 *    bindtextdomain() while it holds glibc's _nl_state_lock for writing. The
 *    initialization looks the optional symbol swift_demangle up with dlsym() and
 *    clears the failure with dlerror(), which translates the message with
 *    dcgettext(): that read-locks _nl_state_lock, fails (EDEADLK, ignored) and
 *    unlocks the writer's lock; the lock count underflows and the next
 *    bindtextdomain() waits forever. Defining the symbol makes the dlsym() succeed,
 *    so dlerror() has nothing to translate. ASan calls it only to demangle Swift
 *    names, and postgres has none.
 *
 * 2. __ubsan_default_options. The UBSan runtime (libubsan, needed by the sanitized
 *    stream.so) initializes lazily, on its first report, and then reads
 *    UBSAN_OPTIONS from /proc/self/environ. In a backend that area has been
 *    overwritten by the process title (ps_status.c), so the options would be lost:
 *    no stack traces, no suppressions. The runtime asks this hook for defaults;
 *    getenv() still works, because postgres moved environ to a copy.
 */
#include <stddef.h>
#include <stdlib.h>

char	   *swift_demangle(const char *mangled, size_t length, char *out,
						   size_t *out_length, unsigned flags);
const char *__ubsan_default_options(void);

char *
swift_demangle(const char *mangled, size_t length, char *out, size_t *out_length,
			   unsigned flags)
{
	return NULL;
}

const char *
__ubsan_default_options(void)
{
	const char *options = getenv("UBSAN_OPTIONS");

	return options ? options : "";
}
