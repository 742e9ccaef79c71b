#include <sys/mman.h>

#include <stddef.h>

#include "stats.h"

static struct stats local;
static struct stats *st = &local;

int
stats_init(void)
{
	void *p = mmap(NULL, sizeof(struct stats), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return (-1);
	st = p;
	return (0);
}

struct stats *
stats_get(void)
{
	return (st);
}

int
stats_session_enter(long max)
{
	/* Add first, then check: two workers racing for the last slot cannot both win. */
	if (__atomic_add_fetch(&st->sessions, 1, __ATOMIC_SEQ_CST) > max) {
		__atomic_sub_fetch(&st->sessions, 1, __ATOMIC_SEQ_CST);
		return (0);
	}
	__atomic_add_fetch(&st->sessions_total, 1, __ATOMIC_RELAXED);
	return (1);
}

void
stats_session_leave(void)
{
	__atomic_sub_fetch(&st->sessions, 1, __ATOMIC_SEQ_CST);
}

void
stats_message(int ok)
{
	__atomic_add_fetch(ok ? &st->messages_ok : &st->messages_failed, 1, __ATOMIC_RELAXED);
}
