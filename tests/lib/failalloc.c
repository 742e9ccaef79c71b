/*
 * failalloc: an LD_PRELOAD shim that makes real allocations fail, for tests of the
 * out-of-memory paths.
 *
 *   FAILALLOC_SIZE=N    fail realloc(NULL, N) (how the proxy's buffers are first
 *                       allocated: buf.c grows them with realloc) ...
 *   FAILALLOC_COUNT=K   ... the first K times in each child process (default 1)
 *
 * Only processes forked after start-up (the proxy's workers) fail: the main process
 * and start-up allocations are left alone. Built by the test that uses it with
 * "cc -shared -fPIC"; under ASan run with ASAN_OPTIONS=verify_asan_link_order=0, so
 * the shim sits in front of the sanitizer's allocator and forwards to it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static pid_t main_pid;
static size_t fail_size;
static long fail_left = 1;

__attribute__((constructor)) static void
failalloc_init(void)
{
	const char *s = getenv("FAILALLOC_SIZE"), *k = getenv("FAILALLOC_COUNT");

	main_pid = getpid();
	if (s != NULL)
		fail_size = (size_t)strtoul(s, NULL, 10);
	if (k != NULL)
		fail_left = strtol(k, NULL, 10);
}

/* 1 if this allocation of ${n} bytes is one to fail. */
static int
should_fail(size_t n)
{
	if (fail_size == 0 || n != fail_size || fail_left <= 0 || getpid() == main_pid)
		return (0);
	fail_left--;
	errno = ENOMEM;
	return (1);
}

void *
realloc(void *p, size_t n)
{
	static void *(*next)(void *, size_t);

	if (next == NULL)
		*(void **)&next = dlsym(RTLD_NEXT, "realloc");	/* POSIX's own idiom */
	return (p == NULL && should_fail(n) ? NULL : next(p, n));
}
