#ifndef LISTENER_H
#define LISTENER_H

#include <ev.h>

struct config;
struct listeners;

/**
 * listeners_open(loop, cfg):
 * Bind every listen address of ${cfg} and start accepting; each bound address is
 * logged as proxy.listen with its real port (port 0 picks one). NULL after logging
 * why if any address cannot be bound.
 */
struct listeners *listeners_open(struct ev_loop *loop, struct config *cfg);

/**
 * listeners_set_config(ls, cfg):
 * New sessions use ${cfg} (a reference is taken); running ones keep theirs.
 */
void listeners_set_config(struct listeners *ls, struct config *cfg);

/**
 * listeners_close(ls):
 * Stop accepting and close the listening sockets; sessions go on.
 */
void listeners_close(struct listeners *ls);

/**
 * listeners_sessions(ls):
 * Sessions running now.
 */
unsigned long listeners_sessions(const struct listeners *ls);

/**
 * listeners_free(ls):
 * Close and free; call when no session is left. NULL is a no-op.
 */
void listeners_free(struct listeners *ls);

#endif
