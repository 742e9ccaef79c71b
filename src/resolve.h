#ifndef RESOLVE_H
#define RESOLVE_H

#include <ev.h>

struct addrinfo;
struct resolve;

/*
 * Name resolution off the event loop: getaddrinfo() may block for seconds on a
 * slow DNS server, so it runs in a short-lived thread that reports back through an
 * ev_async. Numeric addresses are answered without a thread.
 */

typedef void resolve_cb(void *arg, struct addrinfo *res, const char *err);

/**
 * resolve_init(loop):
 * Set up resolution for ${loop}; 0 or -1.
 */
int resolve_init(struct ev_loop *loop);

/**
 * resolve_start(host, port, cb, arg):
 * Look up ${host} (A and AAAA) and call ${cb} from the loop with the list (freed by
 * the callee with freeaddrinfo) or NULL and a reason. The callback never runs before
 * resolve_start() returns, numeric hosts included. Return a handle for
 * resolve_cancel(); NULL (and no callback) if out of memory.
 */
struct resolve *resolve_start(const char *host, int port, resolve_cb *cb, void *arg);

/**
 * resolve_cancel(r):
 * The callback of ${r} will not be called; NULL is a no-op.
 */
void resolve_cancel(struct resolve *r);

/**
 * resolve_shutdown():
 * Wait (at most about a second) for running lookups, then stop; for a clean exit.
 */
void resolve_shutdown(void);

#endif
