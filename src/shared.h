#ifndef SHARED_H
#define SHARED_H

/*
 * The memory shared by the main process and every worker: one anonymous mapping made
 * before the workers are forked. It owns the limits counted over all workers
 * (sessions, upstream sessions, sessions per client address), the login back-off,
 * the worker heartbeats, the figures of the systemd STATUS= line, the counters of the
 * metrics endpoint, and the newest upstream TLS session so that any worker can resume it. Its layout is private to
 * shared.c; everything goes through these functions.
 */

struct sockaddr;

/* Room for a tlsctx key: host, port, server name, verify, min_tls, cipher list. */
#define SHARED_TLS_KEY	1700
/* Room for one serialised TLS session. */
#define SHARED_TLS_DER	8192
/* Worker slots with a heartbeat. */
#define SHARED_WORKERS	64
/* Upstreams with an OAuth2 token, and the longest token (AUTH_TOKEN_MAX). */
#define SHARED_TOKENS	16
#define SHARED_TOKEN_MAX 8192

/* A session-ticket key for device TLS (tlsserver.c). */
struct shared_ticket_key {
	unsigned char	 name[16];
	unsigned char	 aes[32];
	unsigned char	 hmac[32];
};

/**
 * shared_init():
 * Map the shared memory; 0 or -1. Before it, everything works per process.
 */
int shared_init(void);

/**
 * shared_session_enter(max), shared_session_leave():
 * Count a new session unless ${max} are already running (then 0 is returned and
 * nothing counted); 1 when counted. Leave uncounts one.
 */
int shared_session_enter(long max);
void shared_session_leave(void);

/**
 * shared_upstream_enter(slot, max), shared_upstream_leave(slot), shared_upstream_count(slot):
 * The same for the sessions held at once with upstream ${slot} (its max_connections);
 * how many it holds now.
 */
int shared_upstream_enter(int slot, long max);
void shared_upstream_leave(int slot);
long shared_upstream_count(int slot);

/**
 * shared_client_enter(sa, max), shared_client_leave(sa):
 * Count a session of the client address in ${sa} unless it has ${max} already
 * (then 0, nothing counted); 1 when counted. IPv4 and v4-mapped IPv6 are one
 * address. If the table is full or busy the session is let through (1).
 */
int shared_client_enter(const struct sockaddr *sa, long max);
void shared_client_leave(const struct sockaddr *sa);

/* The figures of the STATUS= line and the stop log lines. */
struct shared_counts {
	long	 sessions;	/* running now, all workers */
	long	 sessions_total;
	long	 messages_ok;
	long	 messages_failed;
	long	 workers;
};

/**
 * shared_counts(out):
 * Read the figures (each one atomically; together they are a good-enough snapshot).
 */
void shared_counts(struct shared_counts *out);

/**
 * shared_sessions():
 * Sessions running now, over all workers.
 */
long shared_sessions(void);

/**
 * shared_set_workers(n):
 * The number of live workers, as the main process counts them.
 */
void shared_set_workers(long n);

/**
 * shared_beat(slot, now), shared_beat_get(slot), shared_beat_clear(slot):
 * A worker's heartbeat (monotonic seconds), read by the main process to find a
 * stuck worker; 0 = none yet. ${slot} is below SHARED_WORKERS.
 */
void shared_beat(int slot, long now);
long shared_beat_get(int slot);
void shared_beat_clear(int slot);

/**
 * shared_set_generation(gen):
 * Name this process's worker generation (one per loaded configuration): a login
 * back-off belongs to the generation that started it, so a reload clears it.
 */
void shared_set_generation(int gen);

/**
 * shared_auth_backoff_start(slot, seconds):
 * Refuse logins to upstream ${slot} for ${seconds} from now, for this generation. 1
 * when this call started the back-off (the caller logs it, once); 0 when one is
 * already running for this generation, a newer generation has its own, or the
 * lock could not be taken.
 */
int shared_auth_backoff_start(int slot, long seconds);

/**
 * shared_auth_backoff_left(slot):
 * Whole seconds (rounded up) left of this generation's back-off of upstream ${slot};
 * 0 when none.
 */
long shared_auth_backoff_left(int slot);

/**
 * shared_upstream_down(slot, seconds), shared_upstream_down_left(slot),
 * shared_upstream_up(slot):
 * Failover marks: upstream ${slot} failed, skip it for ${seconds} (retry_after; a mark
 * already running is kept); seconds left of its mark (0: try it); it worked, clear it.
 * Per generation, like the back-off.
 */
void shared_upstream_down(int slot, long seconds);
long shared_upstream_down_left(int slot);
void shared_upstream_up(int slot);

/**
 * shared_ticket_put(k, born), shared_ticket_get(name, out), shared_ticket_born():
 * Make ${k} the key new tickets are sealed with (the one before it still opens them),
 * made at ${born} (monotonic seconds). Get the current key (${name} NULL: 1, or 0 when
 * there is none) or the one called ${name}: 1 for the current key, 2 for the previous
 * one (the ticket should be renewed), 0 for none. When the current key was made.
 */
void shared_ticket_put(const struct shared_ticket_key *k, long long born);
int shared_ticket_get(const unsigned char *name, struct shared_ticket_key *out);
long long shared_ticket_born(void);

/**
 * shared_tls_put(key, der, len, genp):
 * Publish the serialised TLS session ${der} (${len} bytes) of the upstream named by
 * ${key} (SHARED_TLS_KEY bytes, compared whole) to every worker; store its
 * generation in *${genp}. Nothing happens if ${len} is too large or the lock is busy.
 */
void shared_tls_put(const char *key, const unsigned char *der, unsigned len,
    unsigned long *genp);

/**
 * shared_tls_get(key, genp, der, size):
 * If a session newer than *${genp} was published, update *${genp}; when it belongs to
 * ${key}, copy it to ${der} (${size} bytes at least SHARED_TLS_DER) and return its
 * length. 0 otherwise (nothing new, another upstream's, or the lock busy).
 */
unsigned shared_tls_get(const char *key, unsigned long *genp, unsigned char *der,
    size_t size);

/*
 * OAuth2 access tokens, one slot per upstream (its index, below SHARED_TOKENS): the
 * main process fetches and puts them, workers take copies. A slot belongs to one set of
 * OAuth2 settings, named by a fingerprint: a worker of an older configuration never
 * logs in with a token meant for another. Expiry is CLOCK_MONOTONIC milliseconds.
 */
struct shared_token_info {
	unsigned long	 gen;		/* of the token held; 0 = none yet */
	unsigned long	 fails;		/* fetches that failed so far */
	int		 fetching;	/* a fetch is on its way */
	int		 failing;	/* the last fetch failed, for ${why} */
	long long	 expires_ms;	/* 0 = none, or invalidated */
	long long	 expires_unix;	/* the same, as Unix time, for logs and metrics */
	char		 why[256];
};

/* What workers ask of the main process (shared_token_requests). */
#define SHARED_TOKEN_WANT	1	/* a session waits and there is no valid token */
#define SHARED_TOKEN_REFUSED	2	/* the server refused the current token */

/**
 * shared_token_put(slot, fp, token, expires_ms, expires_unix):
 * Publish the access ${token} for the settings ${fp}: a new generation, valid until
 * ${expires_ms}; clears failing and fetching.
 */
void shared_token_put(int slot, unsigned long long fp, const char *token, long long expires_ms,
    long long expires_unix);

/**
 * shared_token_fetching(slot, fp, on), shared_token_fail(slot, fp, why):
 * A fetch for ${fp} started / ended (on = 0) without a token; a failed one counts and
 * keeps ${why}. A token still valid stays usable.
 */
void shared_token_fetching(int slot, unsigned long long fp, int on);
void shared_token_fail(int slot, unsigned long long fp, const char *why);

/**
 * shared_token_get(slot, fp, out, size, info):
 * Fill *${info} (all zero when the slot holds other settings); when it holds a token for
 * ${fp} that has not expired, copy it to ${out} (${size} bytes) and return its length,
 * else 0. The caller wipes ${out} after use.
 */
size_t shared_token_get(int slot, unsigned long long fp, char *out, size_t size,
    struct shared_token_info *info);

/**
 * shared_token_valid(slot, fp):
 * 1 if the slot holds a token for ${fp} that has not expired (nor been refused), else 0.
 */
int shared_token_valid(int slot, unsigned long long fp);

/**
 * shared_token_ask(slot, fp, what, gen):
 * A worker asks the main process for a token: SHARED_TOKEN_WANT, or SHARED_TOKEN_REFUSED
 * for the token of generation ${gen} (then it is no longer handed out, if still current).
 */
void shared_token_ask(int slot, unsigned long long fp, int what, unsigned long gen);

/**
 * shared_token_requests(slot, fp):
 * The SHARED_TOKEN_* bits asked for ${fp} since the last call, cleared (main process).
 */
int shared_token_requests(int slot, unsigned long long fp);

/**
 * shared_now_ms():
 * CLOCK_MONOTONIC in milliseconds, the clock of token expiry.
 */
long long shared_now_ms(void);

/*
 * Metrics: counters over every worker and every generation, read by the main process
 * for the Prometheus endpoint. They live in the mapping the main process made before
 * the first fork, so a reload or a restarted worker keeps them. Labels index fixed
 * tables (mlabels.h) or small tables of names kept here; nothing can grow unbounded.
 */
#include "mlabels.h"

/* Listener addresses and TLS cipher names kept by name; beyond these, "other". */
#define SHARED_LISTENERS	16
#define SHARED_CIPHERS		32
#define SHARED_NAME_MAX		64
/* X509 verify error codes counted each; a higher one counts as "other". */
#define SHARED_VERIFY_CODES	128

enum shared_side { SHARED_SIDE_UPSTREAM, SHARED_SIDE_DEVICE, SHARED_NSIDES };
enum shared_auth { SHARED_AUTH_PROXY, SHARED_AUTH_DEVICE, SHARED_NAUTHS };

struct shared_metrics {
	long	 listener_sessions[SHARED_LISTENERS + 1];
	long	 refused[MLABELS_NREFUSE];
	long	 up_attempts[SHARED_TOKENS];
	long	 up_fail[SHARED_TOKENS][MLABELS_NSTAGE][MLABELS_NREASON];
	long	 tls[SHARED_NSIDES][MLABELS_NVERSION][SHARED_CIPHERS + 1];
	long	 tls_bucket[SHARED_NSIDES][MLABELS_NBUCKET];	/* not cumulative */
	long	 tls_count[SHARED_NSIDES];
	long	 tls_ms[SHARED_NSIDES];				/* sum */
	long	 verify_fail[SHARED_VERIFY_CODES + 1];
	long	 messages[MLABELS_NRESULT];
	long	 bytes_in;		/* device to upstream */
	long	 bytes_out;		/* upstream to device */
	long	 auth[SHARED_NAUTHS][2];	/* [who][0 = ok, 1 = fail] */
	long	 oauth2[SHARED_TOKENS][2];	/* token requests [upstream][0 = ok, 1 = fail] */
	long	 reloads[2];		/* [0 = ok, 1 = refused] */
	long	 generation;
	long	 cert_not_after[SHARED_TOKENS];	/* Unix time; 0 = none seen */
};

/* A consistent-enough copy of everything the endpoint shows. */
struct shared_snapshot {
	struct shared_metrics m;
	struct shared_counts c;
	char	 listeners[SHARED_LISTENERS][SHARED_NAME_MAX];	/* "" = unused */
	char	 ciphers[SHARED_CIPHERS][SHARED_NAME_MAX];
	long	 token_expiry[SHARED_TOKENS];	/* Unix time of the current token; 0 = none */
};

/**
 * shared_snapshot(out):
 * Copy every metric (each value atomically) into *${out}.
 */
void shared_snapshot(struct shared_snapshot *out);

/**
 * shared_listener_index(name):
 * The slot of the listener bound to ${name} (its address), made on first use;
 * SHARED_LISTENERS ("other") when the table is full or busy.
 */
int shared_listener_index(const char *name);

/**
 * shared_m_session(lidx), shared_m_refused(reason), shared_m_message(result),
 * shared_m_bytes(in, out), shared_m_auth(who, ok), shared_m_oauth2(slot, ok),
 * shared_m_reload(ok), shared_m_generation(gen):
 * Count a session accepted on listener ${lidx}; a refusal for the session.deny
 * ${reason}; a message with the log's ${result}; bytes from and to a device; a login
 * (SHARED_AUTH_*); a token request of upstream ${slot}; a reload; the config generation.
 */
void shared_m_session(int lidx);
void shared_m_refused(const char *reason);
void shared_m_message(const char *result);
void shared_m_bytes(unsigned long long in, unsigned long long out);
void shared_m_auth(enum shared_auth who, int ok);
void shared_m_oauth2(int slot, int ok);
void shared_m_reload(int ok);
void shared_m_generation(long gen);

/**
 * shared_m_up_attempt(slot), shared_m_up_fail(slot, stage, reason),
 * shared_m_verify_fail(code):
 * Count an attempt with upstream ${slot}; its failure at ${stage} for ${reason} (the
 * upstream.fail strings); a certificate refused with X509 verify error ${code}.
 */
void shared_m_up_attempt(int slot);
void shared_m_up_fail(int slot, const char *stage, const char *reason);
void shared_m_verify_fail(long code);

/**
 * shared_m_tls(side, slot, version, cipher, ms, not_after):
 * Count a finished handshake on ${side} with ${version} and ${cipher} that took ${ms};
 * for the upstream side, keep ${not_after} (Unix time, 0 = unknown) of upstream ${slot}.
 */
void shared_m_tls(enum shared_side side, int slot, const char *version, const char *cipher,
    long ms, long not_after);

#endif
