#ifndef METRICS_H
#define METRICS_H

/*
 * The Prometheus endpoint ([metrics] listen), served by the main process's event
 * loop: one short HTTP/1.0 exchange per connection, never touching a session.
 */

struct config;
struct ev_loop;

/**
 * metrics_start(loop, cfg):
 * Listen on ${cfg}'s [metrics] listen (nothing when it is empty) and serve on ${loop};
 * 0, or -1 after logging why the address cannot be bound.
 */
int metrics_start(struct ev_loop *loop, struct config *cfg);

/**
 * metrics_reload(cfg):
 * Serve with ${cfg} from now on (allow, upstream names); a changed listen address is
 * bound anew (the old one is kept, with a log line, if the new one cannot be). 0 or -1.
 */
int metrics_reload(struct config *cfg);

/**
 * metrics_forget(loop):
 * In a new worker: close the endpoint's sockets and forget its watchers (the loop is
 * the main process's copy), without touching what the main process still serves.
 */
void metrics_forget(struct ev_loop *loop);

/**
 * metrics_stop():
 * Close the endpoint and every connection to it (main process, at exit).
 */
void metrics_stop(void);

#endif
