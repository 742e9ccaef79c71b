#ifndef LISTENER_H
#define LISTENER_H

#include <ev.h>

struct config;
struct listen_addr;
struct listeners;

/*
 * The listening sockets. The main process binds them (or takes them from systemd
 * socket activation) and keeps them open across reloads; each worker accepts on
 * its inherited copies.
 */

/**
 * listeners_bind(cfg):
 * Take the sockets systemd passed ($LISTEN_FDS, for this pid) and bind every
 * listen address of ${cfg} not among them; each is logged as proxy.listen with its
 * real port. NULL after logging why if an address cannot be bound.
 */
struct listeners *listeners_bind(struct config *cfg);

/**
 * listeners_bind_addr(a):
 * A non-blocking listening TCP socket bound to ${a}, or -1 after a proxy.listen error
 * line (also used for the metrics endpoint).
 */
int listeners_bind_addr(const struct listen_addr *a);

/**
 * listeners_update(ls, cfg):
 * Make the set match ${cfg} for a reload: addresses already open stay open (not
 * one connection is refused), new ones are bound, dropped ones closed (sockets
 * from systemd stay). If a new address cannot be bound nothing changes: -1.
 */
int listeners_update(struct listeners *ls, struct config *cfg);

/**
 * listeners_start(ls, loop, cfg):
 * Accept on every socket in ${loop}, starting sessions with ${cfg}.
 */
void listeners_start(struct listeners *ls, struct ev_loop *loop, struct config *cfg);

/**
 * listeners_close(ls):
 * Stop accepting and close the sockets (this process's copies); sessions go on.
 */
void listeners_close(struct listeners *ls);

/**
 * listeners_count(ls):
 * How many sockets are open.
 */
int listeners_count(const struct listeners *ls);

/**
 * listeners_free(ls):
 * Close and free. NULL is a no-op.
 */
void listeners_free(struct listeners *ls);

#endif
