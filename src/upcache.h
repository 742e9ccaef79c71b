#ifndef UPCACHE_H
#define UPCACHE_H

#include <ev.h>

#include "smtp.h"

/*
 * Upstream session reuse ([upstream] reuse = N): a worker keeps up to N prepared
 * upstream sessions per upstream and device profile -- TLS up, verified, EHLO'd, logged
 * in -- for reuse_idle seconds. A new device of the same profile takes one and is greeted
 * at once; a device that ends cleanly gives its session back after an RSET and its 250.
 * Never across upstreams, credentials or profiles, never when the device's own AUTH
 * passes through; any doubt closes the session instead.
 */
struct conn;
struct config;
struct device_conf;
struct upstream_conf;

/**
 * upcache_init(loop):
 * The worker's cache, on ${loop}.
 */
void upcache_init(struct ev_loop *loop);

/**
 * upcache_put(cfg, up, dev, c, caps, msgs, token_gen):
 * Offer the upstream session ${c} (ownership taken, with the max_connections slot it
 * holds) of upstream ${up} for profile ${dev}, with ${msgs} messages relayed on it so far
 * and EHLO capabilities ${caps}; an OAuth2 login's token was generation ${token_gen}.
 * It is reset (RSET, 250) and kept; or closed with QUIT when it may not be kept (reuse
 * off, reuse_max_messages, the cache full).
 */
void upcache_put(struct config *cfg, const struct upstream_conf *up,
    const struct device_conf *dev, struct conn *c, const struct smtp_caps *caps,
    unsigned msgs, unsigned long token_gen);

/**
 * upcache_take(up, dev, caps, msgs, token_gen):
 * A kept session of upstream ${up} for profile ${dev} that is still open (the server
 * has sent nothing since) and, for an OAuth2 login, logged in with the token the shared
 * cache still holds, unexpired; with its capabilities, message count and token
 * generation. It brings its max_connections slot along. NULL if there is none.
 */
struct conn *upcache_take(const struct upstream_conf *up, const struct device_conf *dev,
    struct smtp_caps *caps, unsigned *msgs, unsigned long *token_gen);

/**
 * upcache_idle(up):
 * How many sessions of ${up} this worker keeps ready now.
 */
unsigned upcache_idle(const struct upstream_conf *up);

/**
 * upcache_close_all():
 * QUIT and close every kept session (worker shutdown).
 */
void upcache_close_all(void);

#endif
