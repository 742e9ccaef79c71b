#ifndef SESSION_H
#define SESSION_H

#include <sys/socket.h>

#include <ev.h>

struct config;
struct intercept_conf;
struct listener_conf;
struct session;

/* Called once when a session has ended, so its owner can uncount it and its client. */
typedef void session_done_cb(void *arg, const struct sockaddr *peer);

/* What the listener learnt of a connection before its session began. */
struct session_origin {
	const struct listener_conf *lc;		/* NULL: [proxy] listen */
	const char	*via;			/* the balancer whose PROXY header named the
						   client; NULL: none */
	const struct sockaddr *orig_dst;	/* transparent: where the device was going */
	const struct intercept_conf *icp;	/* and the rule that decides the upstream */
};

/**
 * session_start(loop, cfg, fd, peer, o, done, arg):
 * Run an SMTP session for the socket ${fd} (ownership taken) of client ${peer}, which
 * came as ${o} says: TLS first on an implicit listener, then prepare the upstream (the
 * intercept rule's, or the device profile's), greet, relay. ${done} is called when it
 * ends. NULL (and ${fd} closed) if out of memory.
 */
struct session *session_start(struct ev_loop *loop, struct config *cfg, int fd,
    const struct sockaddr *peer, const struct session_origin *o, session_done_cb *done,
    void *arg);

/**
 * session_count():
 * Sessions of this process that have not ended.
 */
unsigned long session_count(void);

/**
 * session_shutdown_all():
 * End every session now: "421 4.3.2" to the client; a message not yet ended is
 * aborted upstream without its final dot (the client has no 250, so it retries).
 */
void session_shutdown_all(void);

#endif
