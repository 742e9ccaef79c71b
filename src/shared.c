/*
 * The memory shared by the main process and every worker (see shared.h): limits
 * counted over all workers, the login back-off, heartbeats, STATUS figures, metrics and
 * the newest upstream TLS session. Atomics for counters, a bounded spin lock for the rest.
 */
#include <sys/mman.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <assert.h>
#include <stddef.h>
#include <string.h>
#include <stdio.h>
#include <time.h>

#include <openssl/crypto.h>

#include "shared.h"
#include "mlabels.h"

/* The newest upstream TLS session, serialised, so every worker can resume it. */
struct tls_share {
	int		 lock;
	unsigned long	 gen;
	char		 key[SHARED_TLS_KEY];	/* the upstream and TLS settings it belongs to */
	unsigned	 len;
	unsigned char	 der[SHARED_TLS_DER];
};

/* Device session-ticket keys: [cur] seals, both open. */
struct ticket_share {
	int		 lock;
	int		 cur;
	long long	 born[2];	/* 0: the slot is empty */
	struct shared_ticket_key k[2];
};

/* Sessions per client address, shared by every worker (open addressing). */
#define SHARED_CLIENTS	4096
struct client_slot {
	unsigned char	 addr[16];	/* IPv4 as ::ffff:a.b.c.d */
	int		 used;
	int		 count;
};

/* The upstream refused our own login: who may not try again, and until when. */
struct auth_backoff {
	int		 lock;
	int		 generation;	/* of the workers (the config) it applies to */
	long long	 until_ms;	/* CLOCK_MONOTONIC */
};

/* One upstream's OAuth2 access token (shared.h). */
struct token_slot {
	int		 lock;
	unsigned long long fp;
	struct shared_token_info info;
	int		 asked;		/* SHARED_TOKEN_* bits */
	char		 token[SHARED_TOKEN_MAX + 1];
};

/* Names seen at run time (listener addresses, cipher suites), each given a slot once. */
struct name_table {
	int		 lock;
	int		 n;
	char		 names[SHARED_CIPHERS][SHARED_NAME_MAX];
};

struct shared {
	long	 sessions;	/* running now, all workers */
	long	 upstreams[SHARED_TOKENS];	/* upstream sessions held now, per upstream */
	long	 sessions_total;
	long	 messages_ok;
	long	 messages_failed;
	long	 workers;
	long	 beat[SHARED_WORKERS];	/* each worker slot's last heartbeat */
	struct tls_share tls;
	struct ticket_share tickets;
	int		 clients_lock;
	struct client_slot clients[SHARED_CLIENTS];
	struct auth_backoff auth[SHARED_TOKENS];	/* per upstream slot */
	struct auth_backoff down[SHARED_TOKENS];	/* failed upstreams skipped until */
	struct token_slot tokens[SHARED_TOKENS];
	struct shared_metrics m;
	struct name_table listeners;	/* SHARED_LISTENERS of them used */
	struct name_table ciphers;
};

static struct shared local;
static struct shared *st = &local;
static int generation;		/* this process's; not shared */

int
shared_init(void)
{
	void *p = mmap(NULL, sizeof(struct shared), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return (-1);
	/* Access tokens live here: keep them out of core dumps. */
	(void)madvise(p, sizeof(struct shared), MADV_DONTDUMP);
	st = p;
	return (0);
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
shared_session_enter(long max)
{
	if (!limit_enter(&st->sessions, max))
		return (0);
	__atomic_add_fetch(&st->sessions_total, 1, __ATOMIC_RELAXED);
	return (1);
}

void
shared_session_leave(void)
{
	__atomic_sub_fetch(&st->sessions, 1, __ATOMIC_SEQ_CST);
}

int
shared_upstream_enter(int slot, long max)
{
	if (slot < 0 || slot >= SHARED_TOKENS)
		return (1);
	return (limit_enter(&st->upstreams[slot], max));
}

void
shared_upstream_leave(int slot)
{
	if (slot >= 0 && slot < SHARED_TOKENS)
		__atomic_sub_fetch(&st->upstreams[slot], 1, __ATOMIC_SEQ_CST);
}

long
shared_upstream_count(int slot)
{
	if (slot < 0 || slot >= SHARED_TOKENS)
		return (0);
	return (__atomic_load_n(&st->upstreams[slot], __ATOMIC_RELAXED));
}

/* Metrics are counted relaxed: each value is exact, their mix is a snapshot. */
static void
add(long *p, long n)
{
	__atomic_add_fetch(p, n, __ATOMIC_RELAXED);
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

/* A spin lock that gives up (-1) after a bounded spin: a worker that died holding it
 * cannot hang the others; 0 when taken. */
static int
shared_lock(int *lock)
{
	long i;

	for (i = 0; i < 1000000; i++)
		if (!__atomic_test_and_set(lock, __ATOMIC_ACQUIRE))
			return (0);
	return (-1);
}

static void
shared_unlock(int *lock)
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

	if (client_key(sa, key) != 0 || shared_lock(&st->clients_lock) != 0)
		return (1);
	h = client_hash(key);
	for (i = 0; i < PROBES; i++) {
		slot = &st->clients[(h + i) % SHARED_CLIENTS];
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
	shared_unlock(&st->clients_lock);
	return (ok);
}

int
shared_client_enter(const struct sockaddr *sa, long max)
{
	return (client_add(sa, 1, max));
}

void
shared_client_leave(const struct sockaddr *sa)
{
	(void)client_add(sa, -1, 0);
}

void
shared_set_generation(int gen)
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

/* Start ${a} for ${seconds} unless one of this generation runs: 1 if started. */
static int
until_start(struct auth_backoff *a, long seconds)
{
	long long now = mono_ms();
	int started = 0;

	if (shared_lock(&a->lock) != 0)
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
	shared_unlock(&a->lock);
	return (started);
}

/* Seconds (rounded up) left of ${a} for this generation; 0 when none. */
static long
until_left(struct auth_backoff *a)
{
	long long left = 0;

	/* Nothing ever started: skip the lock on every accept. */
	if (__atomic_load_n(&a->until_ms, __ATOMIC_ACQUIRE) == 0)
		return (0);
	if (shared_lock(&a->lock) != 0)
		return (0);
	if (a->generation == generation)
		left = a->until_ms - mono_ms();
	shared_unlock(&a->lock);
	return (left > 0 ? (long)((left + 999) / 1000) : 0);
}

void
shared_counts(struct shared_counts *out)
{
	out->sessions = __atomic_load_n(&st->sessions, __ATOMIC_RELAXED);
	out->sessions_total = __atomic_load_n(&st->sessions_total, __ATOMIC_RELAXED);
	out->messages_ok = __atomic_load_n(&st->messages_ok, __ATOMIC_RELAXED);
	out->messages_failed = __atomic_load_n(&st->messages_failed, __ATOMIC_RELAXED);
	out->workers = __atomic_load_n(&st->workers, __ATOMIC_RELAXED);
}

long
shared_sessions(void)
{
	return (__atomic_load_n(&st->sessions, __ATOMIC_RELAXED));
}

void
shared_set_workers(long n)
{
	__atomic_store_n(&st->workers, n, __ATOMIC_RELAXED);
}

void
shared_beat(int slot, long now)
{
	assert(slot >= 0 && slot < SHARED_WORKERS);
	__atomic_store_n(&st->beat[slot], now, __ATOMIC_RELAXED);
}

long
shared_beat_get(int slot)
{
	assert(slot >= 0 && slot < SHARED_WORKERS);
	return (__atomic_load_n(&st->beat[slot], __ATOMIC_RELAXED));
}

void
shared_beat_clear(int slot)
{
	shared_beat(slot, 0);
}

void
shared_tls_put(const char *key, const unsigned char *der, unsigned len, unsigned long *genp)
{
	struct tls_share *sh = &st->tls;

	if (len == 0 || len > sizeof(sh->der) || shared_lock(&sh->lock) != 0)
		return;
	memcpy(sh->der, der, len);
	sh->len = len;
	memcpy(sh->key, key, sizeof(sh->key));
	*genp = ++sh->gen;
	shared_unlock(&sh->lock);
}

unsigned
shared_tls_get(const char *key, unsigned long *genp, unsigned char *der, size_t size)
{
	struct tls_share *sh = &st->tls;
	unsigned len = 0;

	/* Nothing new since this worker last looked: no lock on every handshake. */
	if (__atomic_load_n(&sh->gen, __ATOMIC_ACQUIRE) == *genp)
		return (0);
	if (shared_lock(&sh->lock) != 0)
		return (0);
	if (memcmp(sh->key, key, sizeof(sh->key)) == 0 && sh->len <= size) {
		len = sh->len;
		memcpy(der, sh->der, len);
	}
	*genp = sh->gen;
	shared_unlock(&sh->lock);
	return (len);
}

void
shared_ticket_put(const struct shared_ticket_key *k, long long born)
{
	struct ticket_share *t = &st->tickets;
	int next;

	if (shared_lock(&t->lock) != 0)
		return;
	next = t->born[t->cur] == 0 ? t->cur : 1 - t->cur;
	t->k[next] = *k;
	t->born[next] = born;
	t->cur = next;
	shared_unlock(&t->lock);
}

int
shared_ticket_get(const unsigned char *name, struct shared_ticket_key *out)
{
	struct ticket_share *t = &st->tickets;
	int i, which = 0;

	if (shared_lock(&t->lock) != 0)
		return (0);
	/* The current key first; the previous one only opens. */
	for (i = 0; i < (name == NULL ? 1 : 2); i++) {
		int slot = i == 0 ? t->cur : 1 - t->cur;

		if (t->born[slot] == 0 ||
		    (name != NULL && memcmp(name, t->k[slot].name, sizeof(t->k[slot].name)) != 0))
			continue;
		*out = t->k[slot];
		which = i + 1;
		break;
	}
	shared_unlock(&t->lock);
	return (which);
}

long long
shared_ticket_born(void)
{
	struct ticket_share *t = &st->tickets;
	long long born;

	if (shared_lock(&t->lock) != 0)
		return (0);
	born = t->born[t->cur];
	shared_unlock(&t->lock);
	return (born);
}

long long
shared_now_ms(void)
{
	return (mono_ms());
}

/* The slot for ${slot}, locked and made ${fp}'s when ${claim}; NULL if busy or another's. */
static struct token_slot *
token_lock(int slot, unsigned long long fp, int claim)
{
	struct token_slot *t;

	if (slot < 0 || slot >= SHARED_TOKENS)
		return (NULL);
	t = &st->tokens[slot];
	if (shared_lock(&t->lock) != 0)
		return (NULL);
	if (t->fp != fp) {
		if (!claim) {
			shared_unlock(&t->lock);
			return (NULL);
		}
		OPENSSL_cleanse(t->token, sizeof(t->token));
		memset(&t->info, 0, sizeof(t->info));
		t->asked = 0;
		t->fp = fp;
	}
	return (t);
}

void
shared_token_put(int slot, unsigned long long fp, const char *token, long long expires_ms,
    long long expires_unix)
{
	struct token_slot *t;
	size_t n = strlen(token);

	if (n > SHARED_TOKEN_MAX || (t = token_lock(slot, fp, 1)) == NULL)
		return;
	memcpy(t->token, token, n + 1);
	t->info.gen++;
	t->info.expires_ms = expires_ms;
	t->info.expires_unix = expires_unix;
	t->info.failing = t->info.fetching = 0;
	t->info.why[0] = '\0';
	shared_unlock(&t->lock);
}

void
shared_token_fetching(int slot, unsigned long long fp, int on)
{
	struct token_slot *t;

	if ((t = token_lock(slot, fp, 1)) == NULL)
		return;
	t->info.fetching = on;
	shared_unlock(&t->lock);
}

void
shared_token_fail(int slot, unsigned long long fp, const char *why)
{
	struct token_slot *t;

	if ((t = token_lock(slot, fp, 1)) == NULL)
		return;
	t->info.fails++;
	t->info.failing = 1;
	t->info.fetching = 0;
	snprintf(t->info.why, sizeof(t->info.why), "%s", why);
	shared_unlock(&t->lock);
}

size_t
shared_token_get(int slot, unsigned long long fp, char *out, size_t size,
    struct shared_token_info *info)
{
	struct token_slot *t;
	size_t n = 0;

	memset(info, 0, sizeof(*info));
	if ((t = token_lock(slot, fp, 0)) == NULL)
		return (0);
	*info = t->info;
	if (t->info.expires_ms > mono_ms() && (n = strlen(t->token)) < size)
		memcpy(out, t->token, n + 1);
	else
		n = 0;
	shared_unlock(&t->lock);
	return (n);
}

int
shared_token_valid(int slot, unsigned long long fp)
{
	struct token_slot *t;
	int ok;

	if ((t = token_lock(slot, fp, 0)) == NULL)
		return (0);
	ok = t->info.expires_ms > mono_ms();
	shared_unlock(&t->lock);
	return (ok);
}

void
shared_token_ask(int slot, unsigned long long fp, int what, unsigned long gen)
{
	struct token_slot *t;

	if ((t = token_lock(slot, fp, 0)) == NULL)
		return;
	/* Only the first report of a refused token counts; later ones are about the same. */
	if (what == SHARED_TOKEN_REFUSED && gen == t->info.gen && t->info.expires_ms != 0) {
		t->info.expires_ms = 0;
		t->asked |= what;
	} else if (what == SHARED_TOKEN_WANT) {
		t->asked |= what;
	}
	shared_unlock(&t->lock);
}

int
shared_token_requests(int slot, unsigned long long fp)
{
	struct token_slot *t;
	int asked;

	if ((t = token_lock(slot, fp, 0)) == NULL)
		return (0);
	asked = t->asked;
	t->asked = 0;
	shared_unlock(&t->lock);
	return (asked);
}

/* The slot's entry of ${arr}, or NULL for a slot out of range. */
static struct auth_backoff *
slot_of(struct auth_backoff *arr, int slot)
{
	return (slot >= 0 && slot < SHARED_TOKENS ? &arr[slot] : NULL);
}

int
shared_auth_backoff_start(int slot, long seconds)
{
	struct auth_backoff *a = slot_of(st->auth, slot);

	return (a != NULL ? until_start(a, seconds) : 0);
}

long
shared_auth_backoff_left(int slot)
{
	struct auth_backoff *a = slot_of(st->auth, slot);

	return (a != NULL ? until_left(a) : 0);
}

void
shared_upstream_down(int slot, long seconds)
{
	struct auth_backoff *a = slot_of(st->down, slot);

	if (a != NULL && seconds > 0)
		(void)until_start(a, seconds);
}

long
shared_upstream_down_left(int slot)
{
	struct auth_backoff *a = slot_of(st->down, slot);

	return (a != NULL ? until_left(a) : 0);
}

void
shared_upstream_up(int slot)
{
	struct auth_backoff *a = slot_of(st->down, slot);

	if (a == NULL || __atomic_load_n(&a->until_ms, __ATOMIC_ACQUIRE) == 0 ||
	    shared_lock(&a->lock) != 0)
		return;
	if (a->generation == generation)
		a->until_ms = 0;
	shared_unlock(&a->lock);
}

/* The slot of ${name} in ${t} (of ${max}), added if new; ${max} when full, busy or empty. */
static int
name_index(struct name_table *t, int max, const char *name)
{
	int i, n;

	if (name == NULL || name[0] == '\0')
		return (max);
	/* Names are only ever added: a published one can be compared without the lock. */
	n = __atomic_load_n(&t->n, __ATOMIC_ACQUIRE);
	for (i = 0; i < n; i++)
		if (strncmp(t->names[i], name, SHARED_NAME_MAX - 1) == 0)
			return (i);
	if (shared_lock(&t->lock) != 0)
		return (max);
	for (i = 0; i < t->n; i++)
		if (strncmp(t->names[i], name, SHARED_NAME_MAX - 1) == 0)
			break;
	if (i == t->n && i < max) {
		snprintf(t->names[i], SHARED_NAME_MAX, "%s", name);
		__atomic_store_n(&t->n, i + 1, __ATOMIC_RELEASE);
	}
	shared_unlock(&t->lock);
	return (i < max ? i : max);
}

/* Copy the names of ${t} into ${out} (${max} rows); "" for unused rows. */
static void
name_copy(struct name_table *t, int max, char (*out)[SHARED_NAME_MAX])
{
	int i, n = __atomic_load_n(&t->n, __ATOMIC_ACQUIRE);

	for (i = 0; i < max; i++) {
		if (i < n)
			memcpy(out[i], t->names[i], SHARED_NAME_MAX);
		else
			out[i][0] = '\0';
		out[i][SHARED_NAME_MAX - 1] = '\0';
	}
}

int
shared_listener_index(const char *name)
{
	return (name_index(&st->listeners, SHARED_LISTENERS, name));
}

static int
in_slot(int slot)
{
	return (slot >= 0 && slot < SHARED_TOKENS);
}

void
shared_m_session(int lidx)
{
	if (lidx < 0 || lidx > SHARED_LISTENERS)
		lidx = SHARED_LISTENERS;
	add(&st->m.listener_sessions[lidx], 1);
}

void
shared_m_refused(const char *reason)
{
	add(&st->m.refused[mlabels_index(mlabels_refuse, MLABELS_NREFUSE, reason)], 1);
}

void
shared_m_message(const char *result)
{
	size_t i = mlabels_index(mlabels_result, MLABELS_NRESULT, result);

	add(&st->m.messages[i], 1);
	add(i == 0 ? &st->messages_ok : &st->messages_failed, 1);
}

void
shared_m_bytes(unsigned long long in, unsigned long long out)
{
	add(&st->m.bytes_in, (long)in);
	add(&st->m.bytes_out, (long)out);
}

void
shared_m_auth(enum shared_auth who, int ok)
{
	add(&st->m.auth[who][ok ? 0 : 1], 1);
}

void
shared_m_oauth2(int slot, int ok)
{
	if (in_slot(slot))
		add(&st->m.oauth2[slot][ok ? 0 : 1], 1);
}

void
shared_m_reload(int ok)
{
	add(&st->m.reloads[ok ? 0 : 1], 1);
}

void
shared_m_generation(long gen)
{
	__atomic_store_n(&st->m.generation, gen, __ATOMIC_RELAXED);
}

void
shared_m_up_attempt(int slot)
{
	if (in_slot(slot))
		add(&st->m.up_attempts[slot], 1);
}

void
shared_m_up_fail(int slot, const char *stage, const char *reason)
{
	if (in_slot(slot))
		add(&st->m.up_fail[slot][mlabels_index(mlabels_stage, MLABELS_NSTAGE, stage)]
		    [mlabels_index(mlabels_reason, MLABELS_NREASON, reason)], 1);
}

void
shared_m_verify_fail(long code)
{
	add(&st->m.verify_fail[code >= 0 && code < SHARED_VERIFY_CODES ? code :
	    SHARED_VERIFY_CODES], 1);
}

void
shared_m_tls(enum shared_side side, int slot, const char *version, const char *cipher,
    long ms, long not_after)
{
	size_t b;

	add(&st->m.tls[side][mlabels_index(mlabels_version, MLABELS_NVERSION, version)]
	    [name_index(&st->ciphers, SHARED_CIPHERS, cipher)], 1);
	for (b = 0; b < MLABELS_NBUCKET && ms > mlabels_bucket_ms[b]; b++)
		;
	/* Past the last bound: only +Inf, which is the count. */
	if (b < MLABELS_NBUCKET)
		add(&st->m.tls_bucket[side][b], 1);
	add(&st->m.tls_count[side], 1);
	add(&st->m.tls_ms[side], ms);
	if (side == SHARED_SIDE_UPSTREAM && in_slot(slot) && not_after > 0)
		__atomic_store_n(&st->m.cert_not_after[slot], not_after, __ATOMIC_RELAXED);
}

void
shared_snapshot(struct shared_snapshot *out)
{
	const long *src = (const long *)(const void *)&st->m;
	long *dst = (long *)(void *)&out->m;
	size_t i;
	int t;

	_Static_assert(sizeof(struct shared_metrics) % sizeof(long) == 0,
	    "the metrics block is an array of longs");
	for (i = 0; i < sizeof(struct shared_metrics) / sizeof(long); i++)
		dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
	shared_counts(&out->c);
	name_copy(&st->listeners, SHARED_LISTENERS, out->listeners);
	name_copy(&st->ciphers, SHARED_CIPHERS, out->ciphers);
	for (t = 0; t < SHARED_TOKENS; t++) {
		out->token_expiry[t] = 0;
		if (shared_lock(&st->tokens[t].lock) != 0)
			continue;
		out->token_expiry[t] = (long)st->tokens[t].info.expires_unix;
		shared_unlock(&st->tokens[t].lock);
	}
}
