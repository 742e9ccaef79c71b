#include <sys/mman.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <stddef.h>
#include <string.h>
#include <time.h>

#include "stats.h"

static struct stats local;
static struct stats *st = &local;
static int generation;		/* this process's; not shared */

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

/* Count one on ${n} unless that passes ${max}: 1 when counted, 0 when not. */
static int
limit_enter(long *n, long max)
{
	/* Add first, then check: two workers racing for the last slot cannot both win. */
	if (__atomic_add_fetch(n, 1, __ATOMIC_SEQ_CST) > max) {
		__atomic_sub_fetch(n, 1, __ATOMIC_SEQ_CST);
		return (0);
	}
	return (1);
}

int
stats_session_enter(long max)
{
	if (!limit_enter(&st->sessions, max))
		return (0);
	__atomic_add_fetch(&st->sessions_total, 1, __ATOMIC_RELAXED);
	return (1);
}

void
stats_session_leave(void)
{
	__atomic_sub_fetch(&st->sessions, 1, __ATOMIC_SEQ_CST);
}

int
stats_upstream_enter(long max)
{
	return (limit_enter(&st->upstreams, max));
}

void
stats_upstream_leave(void)
{
	__atomic_sub_fetch(&st->upstreams, 1, __ATOMIC_SEQ_CST);
}

void
stats_message(int ok)
{
	__atomic_add_fetch(ok ? &st->messages_ok : &st->messages_failed, 1, __ATOMIC_RELAXED);
}

/* Probes per lookup: keeps the worst case short; a full run lets the client in. */
#define PROBES 64

static int
client_key(const struct sockaddr *sa, unsigned char key[16])
{
	static const unsigned char mapped[12] = { 0,0,0,0,0,0,0,0,0,0,0xff,0xff };

	if (sa->sa_family == AF_INET) {
		memcpy(key, mapped, 12);
		memcpy(key + 12, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
		return (0);
	}
	if (sa->sa_family == AF_INET6) {
		memcpy(key, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
		return (0);
	}
	return (-1);
}

static unsigned
client_hash(const unsigned char key[16])
{
	unsigned h = 2166136261u;
	int i;

	for (i = 0; i < 16; i++)
		h = (h ^ key[i]) * 16777619u;
	return (h);
}

int
stats_lock(int *lock)
{
	long i;

	for (i = 0; i < 1000000; i++)
		if (!__atomic_test_and_set(lock, __ATOMIC_ACQUIRE))
			return (0);
	return (-1);
}

void
stats_unlock(int *lock)
{
	__atomic_clear(lock, __ATOMIC_RELEASE);
}

/* Adjust the count of ${sa} by ${delta}; with ${max} > 0, refuse to pass it. */
static int
client_add(const struct sockaddr *sa, int delta, long max)
{
	unsigned char key[16];
	struct client_slot *slot, *reuse = NULL;
	unsigned h, i;
	int ok = 1;

	if (client_key(sa, key) != 0 || stats_lock(&st->clients_lock) != 0)
		return (1);
	h = client_hash(key);
	for (i = 0; i < PROBES; i++) {
		slot = &st->clients[(h + i) % STATS_CLIENTS];
		if (slot->used && memcmp(slot->addr, key, 16) == 0)
			break;
		if (reuse == NULL && (!slot->used || slot->count == 0))
			reuse = slot;	/* a slot at zero can change hands without breaking chains */
		if (!slot->used)
			break;
		slot = NULL;
	}
	if (i == PROBES)
		slot = NULL;
	if (slot == NULL || !slot->used || memcmp(slot->addr, key, 16) != 0) {
		if (delta < 0 || reuse == NULL)
			goto out;
		slot = reuse;
		memcpy(slot->addr, key, 16);
		slot->used = 1;
		slot->count = 0;
	}
	if (delta > 0 && max > 0 && slot->count >= max)
		ok = 0;
	else if (delta > 0 || slot->count > 0)
		slot->count += delta;
out:
	stats_unlock(&st->clients_lock);
	return (ok);
}

int
stats_client_enter(const struct sockaddr *sa, long max)
{
	return (client_add(sa, 1, max));
}

void
stats_client_leave(const struct sockaddr *sa)
{
	(void)client_add(sa, -1, 0);
}

void
stats_set_generation(int gen)
{
	generation = gen;
}

/* Monotonic milliseconds: the same clock in every process, immune to clock steps. */
static long long
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

int
stats_auth_backoff_start(long seconds)
{
	struct auth_backoff *a = &st->auth;
	long long now = mono_ms();
	int started = 0;

	if (stats_lock(&a->lock) != 0)
		return (0);
	/*
	 * A draining worker of an older generation must not override the new
	 * configuration's state: its refused password may be the one just fixed.
	 */
	if (a->generation < generation ||
	    (a->generation == generation && now >= a->until_ms)) {
		a->generation = generation;
		a->until_ms = now + (long long)seconds * 1000;
		started = 1;
	}
	stats_unlock(&a->lock);
	return (started);
}

long
stats_auth_backoff_left(void)
{
	struct auth_backoff *a = &st->auth;
	long long left = 0;

	/* Nothing ever started: skip the lock on every accept. */
	if (__atomic_load_n(&a->until_ms, __ATOMIC_ACQUIRE) == 0)
		return (0);
	if (stats_lock(&a->lock) != 0)
		return (0);
	if (a->generation == generation)
		left = a->until_ms - mono_ms();
	stats_unlock(&a->lock);
	return (left > 0 ? (long)((left + 999) / 1000) : 0);
}
