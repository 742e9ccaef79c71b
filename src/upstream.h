#ifndef UPSTREAM_H
#define UPSTREAM_H

#include <sys/types.h>

#include <ev.h>

struct config;
struct device_conf;
struct upstream_conf;
struct conn;
struct smtp_caps;
struct upstream;
struct upstream_report;

/*
 * Preparing the upstream, before the client is greeted: resolve, connect (next
 * address on failure), TLS (implicit, or STARTTLS after EHLO), verify, log the
 * handshake, EHLO over TLS, AUTH with stored credentials. Every failure becomes
 * the 421 the client is greeted with.
 */

/*
 * Called once. On success ${c} is the ready TLS connection (now owned by the
 * callee, who must conn_set_cb it) and ${caps} its post-TLS capabilities; on
 * failure ${c} is NULL and ${reply} is the complete 421 line for the client.
 */
typedef void upstream_cb(void *arg, struct conn *c, const struct smtp_caps *caps,
    const char *reply);

/**
 * upstream_start(loop, cfg, dev, only, sid, client, cb, arg):
 * Begin preparing an upstream connection for session ${sid} of ${client}: the upstreams
 * of profile ${dev} in failover order, or only ${only} (an intercept rule's; it must
 * outlive the preparation). The callback may not run before this returns. NULL if out
 * of memory.
 */
struct upstream *upstream_start(struct ev_loop *loop, struct config *cfg,
    const struct device_conf *dev, struct upstream_conf *only, const char *sid,
    const char *client, upstream_cb *cb, void *arg);

/**
 * upstream_observe(u, rep):
 * Right after upstream_start(), before the loop runs: record every step of ${u} in
 * ${rep} (upreport.h), which must outlive it. For the probe command; NULL stops.
 */
void upstream_observe(struct upstream *u, struct upstream_report *rep);

/**
 * upstream_token_owner(pid):
 * Ask process ${pid} (SIGUSR2) for OAuth2 tokens instead of the parent: the probe
 * fetches its own. 0 is the parent again.
 */
void upstream_token_owner(pid_t pid);

/**
 * upstream_conf_of(u):
 * The upstream ${u} is on now (in the callback: the one that worked, or failed last).
 */
const struct upstream_conf *upstream_conf_of(const struct upstream *u);

/**
 * upstream_messages(u):
 * In the callback: the messages relayed before on a session that was reused (0: new).
 */
unsigned upstream_messages(const struct upstream *u);

/**
 * upstream_token_gen(u):
 * In the callback: the generation of the OAuth2 token the session logged in with.
 */
unsigned long upstream_token_gen(const struct upstream *u);

/**
 * upstream_cancel(u):
 * Give up (the client left): close and free without calling back. NULL is a no-op.
 */
void upstream_cancel(struct upstream *u);

/**
 * upstream_token_wake():
 * The main process published an OAuth2 token or a failure (SIGUSR2): every preparation
 * of this worker waiting for a token looks again.
 */
void upstream_token_wake(void);

#endif
