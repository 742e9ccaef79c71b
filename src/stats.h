#ifndef STATS_H
#define STATS_H

/*
 * Counters shared by the main process and every worker (one anonymous shared
 * mapping made before the workers are forked): the global session and upstream
 * limits, the login back-off, and the live figures in the systemd STATUS= line.
 */
/* Room for a tlsctx key: host, port, server name, verify, min_tls, cipher list. */
#define STATS_TLS_KEY	1700

/* The newest upstream TLS session, serialised, so every worker can resume it. */
struct tls_share {
	int		 lock;
	unsigned long	 gen;
	char		 key[STATS_TLS_KEY];	/* the upstream and TLS settings it belongs to */
	unsigned	 len;
	unsigned char	 der[8192];
};

/* Sessions per client address, shared by every worker (open addressing). */
#define STATS_CLIENTS	4096
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

struct stats {
	long	 sessions;	/* running now, all workers */
	long	 upstreams;	/* upstream sessions held now, all workers */
	long	 sessions_total;
	long	 messages_ok;
	long	 messages_failed;
	long	 workers;
	long	 beat[64];	/* each worker slot's last heartbeat, ev_now() seconds */
	struct tls_share tls;
	int		 clients_lock;
	struct client_slot clients[STATS_CLIENTS];
	struct auth_backoff auth;
};

/**
 * stats_init():
 * Map the shared counters; 0 or -1. Before it, every counter works per process.
 */
int stats_init(void);

/**
 * stats_get():
 * The counters (shared once stats_init() succeeded).
 */
struct stats *stats_get(void);

/**
 * stats_session_enter(max), stats_session_leave():
 * Count a new session unless ${max} are already running (then 0 is returned and
 * nothing counted); 1 when counted. Leave uncounts one.
 */
int stats_session_enter(long max);
void stats_session_leave(void);

/**
 * stats_upstream_enter(max), stats_upstream_leave():
 * The same for upstream sessions held at once (max_connections).
 */
int stats_upstream_enter(long max);
void stats_upstream_leave(void);

/**
 * stats_client_enter(sa, max), stats_client_leave(sa):
 * Count a session of the client address in ${sa} unless it has ${max} already
 * (then 0, nothing counted); 1 when counted. IPv4 and v4-mapped IPv6 are one
 * address. If the table is full or busy the session is let through (1).
 */
struct sockaddr;
int stats_client_enter(const struct sockaddr *sa, long max);
void stats_client_leave(const struct sockaddr *sa);

/**
 * stats_lock(lock), stats_unlock(lock):
 * A spin lock in the shared mapping. Lock gives up (-1) after a bounded spin, so
 * a worker that died holding it cannot hang the others; 0 when taken.
 */
int stats_lock(int *lock);
void stats_unlock(int *lock);

/**
 * stats_set_generation(gen):
 * Name this process's worker generation (one per loaded configuration): a login
 * back-off belongs to the generation that started it, so a reload clears it.
 */
void stats_set_generation(int gen);

/**
 * stats_auth_backoff_start(seconds):
 * Refuse upstream logins for ${seconds} from now, for this generation. 1 when
 * this call started the back-off (the caller logs it, once); 0 when one is
 * already running for this generation, a newer generation has its own, or the
 * lock could not be taken.
 */
int stats_auth_backoff_start(long seconds);

/**
 * stats_auth_backoff_left():
 * Whole seconds (rounded up) left of this generation's back-off; 0 when none.
 */
long stats_auth_backoff_left(void);

/**
 * stats_message(ok):
 * Count one message outcome.
 */
void stats_message(int ok);

#endif
