#ifndef SESSION_H
#define SESSION_H

#include <sys/socket.h>

#include <ev.h>

struct config;
struct listener_conf;
struct session;

/* Called once when a session has ended, so its owner can uncount it and its client. */
typedef void session_done_cb(void *arg, const struct sockaddr *peer);

/**
 * session_start(loop, cfg, lc, fd, peer, via, done, arg):
 * Run an SMTP session for the socket ${fd} (ownership taken) of client ${peer} on
 * listener ${lc} (NULL: [proxy] listen), through balancer ${via} ("" or NULL: none;
 * a PROXY header named ${peer}): TLS first on an implicit listener, then
 * prepare the upstream, greet, relay. ${done} is called when it ends.
 * NULL (and ${fd} closed) if out of memory.
 */
struct session *session_start(struct ev_loop *loop, struct config *cfg,
    const struct listener_conf *lc, int fd, const struct sockaddr *peer, const char *via,
    session_done_cb *done, void *arg);

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
