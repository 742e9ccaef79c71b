#ifndef OAUTH2_H
#define OAUTH2_H

/*
 * The OAuth2 access tokens the proxy logs in upstream with, kept by the main process:
 * one token per upstream, fetched from its source (client_credentials, refresh_token,
 * jwt_bearer, command), published in the shared mapping for every worker, renewed in
 * the background at 80 % of its life, fetched again at once when a worker reports it
 * refused, and after a failure retried in 5 s, doubling to 60 s. Workers never fetch.
 */
struct ev_loop;
struct config;

/**
 * oauth2_configure(loop, cfg, notify):
 * Serve the upstreams of ${cfg} (the first call sets up HTTP on ${loop}); a token whose
 * settings did not change is kept across the reload. ${notify} is called whenever a
 * token or a failure is published, to wake the workers.
 */
void oauth2_configure(struct ev_loop *loop, struct config *cfg, void (*notify)(void));

/**
 * oauth2_poll():
 * A worker asked for something (shared_token_ask): look at every upstream's requests.
 */
void oauth2_poll(void);

/**
 * oauth2_forget(loop):
 * In a worker just forked from the main process: drop every watcher of ours on ${loop}
 * and wipe the refresh tokens, touching nothing the main process still uses.
 */
void oauth2_forget(struct ev_loop *loop);

/**
 * oauth2_shutdown():
 * Cancel requests and commands, free everything.
 */
void oauth2_shutdown(void);

#endif
