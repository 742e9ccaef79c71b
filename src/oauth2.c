/*
 * The token cache of the main process (see oauth2.h). One source per upstream that logs
 * in with a token; its token lives in the shared mapping, where workers take copies.
 * A source is at most one request or command at a time, and one timer: the renewal when
 * it holds a token, the retry after a failure.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ev.h>
#include <openssl/crypto.h>

#include "auth.h"
#include "config.h"
#include "http.h"
#include "jwt.h"
#include "log.h"
#include "oauth2.h"
#include "shared.h"
#include "statefile.h"
#include "token.h"
#include "tokencmd.h"

/* After a failure: the first retry, and the longest wait between two. */
#define RETRY_FIRST	5.
#define RETRY_MAX	60.
/* A session asking for a token right after a failure does not make the next one sooner. */
#define WANT_SPACING	2.
/* Lifetimes when the answer names none: a bare token from the command, an HTTP answer. */
#define BARE_LIFETIME	300
#define HTTP_LIFETIME	3600
/* The JWT assertion of jwt_bearer: Google accepts at most an hour. */
#define JWT_LIFETIME	3600

struct source {
	int		 in_use;
	struct config	*cfg;		/* a reference: up points into it */
	struct upstream_conf *up;
	unsigned long long fp;
	char		 refresh[AUTH_TOKEN_MAX + 1];	/* refresh_token: the current one */
	struct http_req	*req;
	struct tokencmd	*cmd;
	ev_timer	 timer;
	double		 backoff;	/* seconds before the next retry; 0 after a success */
	ev_tstamp	 started, ended;
};

static struct ev_loop *loop;
static void (*notify)(void);
static struct source sources[SHARED_TOKENS];
static int http_ready;

static void fetch(struct source *);

static const char *
flow_name(const struct source *s)
{
	return (config_flow_str(s->up->oauth2_flow));
}

static void
fail(struct source *s, const char *why)
{
	struct logline l;

	s->ended = ev_now(loop);
	s->backoff = s->backoff == 0. ? RETRY_FIRST : s->backoff * 2.;
	if (s->backoff > RETRY_MAX)
		s->backoff = RETRY_MAX;
	shared_token_fail(s->up->slot, s->fp, why);
	shared_m_oauth2(s->up->slot, 0);
	log_begin(&l, L_ERROR, NULL, "oauth2.fail");
	log_str(&l, "upstream", s->up->name);
	log_str(&l, "flow", flow_name(s));
	log_str(&l, "reason", why);
	log_num(&l, "retry_in", (long long)s->backoff);
	log_end(&l);
	ev_timer_stop(loop, &s->timer);
	ev_timer_set(&s->timer, s->backoff, 0.);
	ev_timer_start(loop, &s->timer);
	notify();
}

/* A rotated refresh token: kept in state_dir, or the next restart starts from a dead one. */
static const char *
rotate(struct source *s, const char *fresh)
{
	char why[512];
	struct logline l;

	if (fresh[0] == '\0' || strcmp(fresh, s->refresh) == 0)
		return ("no");
	snprintf(s->refresh, sizeof(s->refresh), "%s", fresh);
	if (state_keep_refresh_token(s->cfg->state_dir, s->up->name, fresh,
	    s->up->oauth2_refresh_token_file, why, sizeof(why)) == 0)
		return ("yes");
	log_begin(&l, L_ERROR, NULL, "oauth2.fail");
	log_str(&l, "upstream", s->up->name);
	log_str(&l, "flow", flow_name(s));
	log_str(&l, "reason", "cannot keep the rotated refresh token (used until a restart)");
	log_str(&l, "error", why);
	log_end(&l);
	return ("unsaved");
}

static void
got(struct source *s, const struct token_resp *t, long lifetime)
{
	long long now = shared_now_ms();
	struct logline l;
	const char *rotated = "no";

	if (t->expires_in > 0)
		lifetime = t->expires_in;
	s->ended = ev_now(loop);
	s->backoff = 0.;
	if (s->up->oauth2_flow == OAUTH2_REFRESH_TOKEN)
		rotated = rotate(s, t->refresh_token);
	shared_token_put(s->up->slot, s->fp, t->access_token, now + lifetime * 1000LL,
	    (long long)time(NULL) + lifetime);
	shared_m_oauth2(s->up->slot, 1);
	log_begin(&l, L_INFO, NULL, "oauth2.token");
	log_str(&l, "upstream", s->up->name);
	log_str(&l, "flow", flow_name(s));
	log_num(&l, "expires_in", lifetime);
	log_num(&l, "ms", (long long)((s->ended - s->started) * 1000.));
	if (s->up->oauth2_flow == OAUTH2_REFRESH_TOKEN)
		log_str(&l, "rotated", rotated);
	log_end(&l);
	/* Renewed well before it runs out, so no session ever waits for a renewal. */
	ev_timer_stop(loop, &s->timer);
	ev_timer_set(&s->timer, lifetime * 0.8 < 1. ? 1. : lifetime * 0.8, 0.);
	ev_timer_start(loop, &s->timer);
	notify();
}

/* What an admin should do about an error answer, after the server's own words. */
static const char *
hint(const struct source *s, const struct token_resp *t)
{
	if (strcmp(t->error, "invalid_client") == 0 || strcmp(t->error, "unauthorized_client") == 0)
		return ("; check oauth2_client_id and the client secret (or key)");
	if (strcmp(t->error, "invalid_grant") == 0 && s->up->oauth2_flow == OAUTH2_REFRESH_TOKEN)
		return ("; the refresh token is expired or revoked: run smtp-tls-proxy "
		    "oauth2-login");
	if (strcmp(t->error, "invalid_scope") == 0)
		return ("; check oauth2_scope");
	return ("");
}

static void
on_http(void *arg, long status, const char *body, size_t len, const char *err)
{
	struct source *s = arg;
	struct token_resp *t;
	char why[600], desc[400];
	int body_ok;

	s->req = NULL;
	if (status == 0) {
		snprintf(why, sizeof(why), "token endpoint: %s", err);
		fail(s, why);
		return;
	}
	if ((t = malloc(sizeof(*t))) == NULL) {
		fail(s, "out of memory");
		return;
	}
	body_ok = token_parse(body, len, t, desc, sizeof(desc)) == 0;
	if (status == 200 && body_ok && auth_is_b64token(t->access_token)) {
		got(s, t, HTTP_LIFETIME);
	} else if (status == 200 && !body_ok) {
		snprintf(why, sizeof(why), "token endpoint: HTTP 200, but the answer is %s", desc);
		fail(s, why);
	} else if (status == 200 && t->access_token[0] != '\0') {
		fail(s, "token endpoint: the access_token is not a bearer token (RFC 6750)");
	} else {
		token_describe_error(status, t, body_ok, desc, sizeof(desc));
		snprintf(why, sizeof(why), "token endpoint: %s%s", desc,
		    body_ok ? hint(s, t) : "");
		fail(s, why);
	}
	token_wipe(t);
	free(t);
}

static void
on_cmd(void *arg, const char *out, size_t len, const char *err)
{
	struct source *s = arg;
	struct token_resp *t;
	char why[400];

	s->cmd = NULL;
	if (err[0] != '\0') {
		snprintf(why, sizeof(why), "oauth2_token_command %s", err);
		fail(s, why);
		return;
	}
	if ((t = malloc(sizeof(*t))) == NULL) {
		fail(s, "out of memory");
		return;
	}
	if (token_command_output(out, len, t, why, sizeof(why)) == 0 &&
	    auth_is_b64token(t->access_token))
		got(s, t, BARE_LIFETIME);
	else
		fail(s, why[0] ? why : "the token command printed no bearer token");
	token_wipe(t);
	free(t);
}

/* The form for the source's grant into ${form}; 0, or -1 with ${why}. */
static int
make_form(struct source *s, const char *url, char *form, size_t size, char *why,
    size_t whysize)
{
	const struct upstream_conf *up = s->up;
	char *jwt = NULL;
	size_t n = 0;
	int rc = -1;

	form[0] = '\0';
	switch (up->oauth2_flow) {
	case OAUTH2_CLIENT_CREDENTIALS:
		rc = token_form_add(form, size, &n, "grant_type", "client_credentials") |
		    token_form_add(form, size, &n, "client_id", up->oauth2_client_id) |
		    token_form_add(form, size, &n, "client_secret", up->oauth2_client_secret) |
		    token_form_add(form, size, &n, "scope", up->oauth2_scope);
		break;
	case OAUTH2_REFRESH_TOKEN:
		if (s->refresh[0] == '\0') {
			snprintf(why, whysize, "no refresh token: run smtp-tls-proxy oauth2-login %s, "
			    "or set oauth2_refresh_token_file", up->name);
			return (-1);
		}
		rc = token_form_add(form, size, &n, "grant_type", "refresh_token") |
		    token_form_add(form, size, &n, "refresh_token", s->refresh) |
		    token_form_add(form, size, &n, "client_id", up->oauth2_client_id);
		if (up->oauth2_client_secret[0] != '\0')
			rc |= token_form_add(form, size, &n, "client_secret",
			    up->oauth2_client_secret);
		if (up->oauth2_scope[0] != '\0')
			rc |= token_form_add(form, size, &n, "scope", up->oauth2_scope);
		break;
	case OAUTH2_JWT_BEARER:
		if ((jwt = malloc(AUTH_TOKEN_MAX)) == NULL ||
		    jwt_rs256(up->oauth2_key_pem, up->oauth2_key_email, up->oauth2_subject,
		    up->oauth2_scope, url, (long long)time(NULL), JWT_LIFETIME, jwt,
		    AUTH_TOKEN_MAX, why, whysize) != 0) {
			if (jwt == NULL)
				snprintf(why, whysize, "out of memory");
			free(jwt);
			return (-1);
		}
		rc = token_form_add(form, size, &n, "grant_type",
		    "urn:ietf:params:oauth:grant-type:jwt-bearer") |
		    token_form_add(form, size, &n, "assertion", jwt);
		OPENSSL_cleanse(jwt, AUTH_TOKEN_MAX);
		free(jwt);
		break;
	case OAUTH2_COMMAND:
	case OAUTH2_NONE:
		break;
	}
	if (rc != 0)
		snprintf(why, whysize, "the token request does not fit in %zu bytes", size);
	return (rc != 0 ? -1 : 0);
}

static void
fetch(struct source *s)
{
	const struct upstream_conf *up = s->up;
	char why[512], *form;
	const char *url;

	if (s->req != NULL || s->cmd != NULL)
		return;
	ev_timer_stop(loop, &s->timer);
	s->started = ev_now(loop);
	shared_token_fetching(up->slot, s->fp, 1);
	if (up->oauth2_flow == OAUTH2_COMMAND) {
		if ((s->cmd = tokencmd_start(loop, up->oauth2_token_command,
		    (long)s->cfg->timeout, on_cmd, s, why, sizeof(why))) == NULL)
			fail(s, why);
		return;
	}
	url = up->oauth2_token_url[0] != '\0' ? up->oauth2_token_url : up->oauth2_key_token_uri;
	if ((form = malloc(4 * AUTH_TOKEN_MAX)) == NULL) {
		fail(s, "out of memory");
		return;
	}
	if (make_form(s, url, form, 4 * AUTH_TOKEN_MAX, why, sizeof(why)) != 0)
		fail(s, why);
	else if ((s->req = http_post(url, form, up->oauth2_ca_file, (long)s->cfg->timeout,
	    on_http, s)) == NULL)
		fail(s, "cannot start the HTTPS request (libcurl)");
	OPENSSL_cleanse(form, 4 * AUTH_TOKEN_MAX);
	free(form);
}

static void
on_timer(struct ev_loop *l, ev_timer *w, int revents)
{
	(void)l;
	(void)revents;
	fetch(w->data);
}

/* The refresh token to start from (statefile.h says which of the two). */
static void
load_refresh(struct source *s)
{
	char why[512];

	if (state_refresh_token(s->cfg->state_dir, s->up->name, s->up->oauth2_refresh_token_file,
	    s->refresh, sizeof(s->refresh), why, sizeof(why)) < 0)
		log_simple(L_ERROR, "oauth2.fail", why);
}

/*
 * A reload after oauth2-login stored a new refresh token (the old one was refused):
 * take it, and if the source is failing, try it now rather than at the next retry.
 */
static void
reload_refresh(struct source *s)
{
	char *old;

	if ((old = malloc(sizeof(s->refresh))) == NULL)
		return;
	memcpy(old, s->refresh, sizeof(s->refresh));
	load_refresh(s);
	if (s->refresh[0] == '\0')
		memcpy(s->refresh, old, sizeof(s->refresh));
	else if (strcmp(old, s->refresh) != 0 && s->backoff != 0.)
		fetch(s);
	OPENSSL_cleanse(old, sizeof(s->refresh));
	free(old);
}

static void
stop(struct source *s)
{
	http_cancel(s->req);
	tokencmd_cancel(s->cmd);
	s->req = NULL;
	s->cmd = NULL;
	ev_timer_stop(loop, &s->timer);
	OPENSSL_cleanse(s->refresh, sizeof(s->refresh));
	config_unref(s->cfg);
	memset(s, 0, sizeof(*s));
}

void
oauth2_configure(struct ev_loop *l, struct config *cfg, void (*cb)(void))
{
	struct source *s;
	size_t i;
	int keep[SHARED_TOKENS] = { 0 };

	loop = l;
	notify = cb;
	for (i = 0; i < cfg->nups; i++) {
		struct upstream_conf *up = cfg->ups[i];

		if (!UPSTREAM_OAUTH2(up) || up->slot < 0 || up->slot >= SHARED_TOKENS)
			continue;
		if (!http_ready && http_init(loop) != 0) {
			log_simple(L_ERROR, "oauth2.fail", "cannot set up libcurl");
			return;
		}
		http_ready = 1;
		s = &sources[up->slot];
		keep[up->slot] = 1;
		if (s->in_use && s->fp == up->oauth2_fp) {
			/* Same settings: the token and its renewal carry on with the new config. */
			config_unref(s->cfg);
			s->cfg = config_ref(cfg);
			s->up = up;
			if (up->oauth2_flow == OAUTH2_REFRESH_TOKEN)
				reload_refresh(s);
			continue;
		}
		if (s->in_use)
			stop(s);
		s->in_use = 1;
		s->cfg = config_ref(cfg);
		s->up = up;
		s->fp = up->oauth2_fp;
		ev_timer_init(&s->timer, on_timer, 0., 0.);
		s->timer.data = s;
		if (up->oauth2_flow == OAUTH2_REFRESH_TOKEN)
			load_refresh(s);
		fetch(s);
	}
	for (i = 0; i < SHARED_TOKENS; i++)
		if (sources[i].in_use && !keep[i])
			stop(&sources[i]);
}

void
oauth2_poll(void)
{
	struct source *s;
	int i, asked;

	for (i = 0; i < SHARED_TOKENS; i++) {
		s = &sources[i];
		if (!s->in_use || (asked = shared_token_requests(s->up->slot, s->fp)) == 0)
			continue;
		/* A refused token (the worker logged auth.retry) is replaced at once. */
		if (asked & SHARED_TOKEN_REFUSED)
			fetch(s);
		/*
		 * A session that found no token asked before this one came (a slow start): the
		 * token it waits for is there now, another request would be one too many.
		 */
		else if (shared_token_valid(s->up->slot, s->fp))
			continue;
		else if (s->backoff == 0. || ev_now(loop) - s->ended >= WANT_SPACING)
			fetch(s);
	}
}

void
oauth2_forget(struct ev_loop *l)
{
	int i;

	http_forget(l);
	tokencmd_forget(l);
	for (i = 0; i < SHARED_TOKENS; i++) {
		ev_timer_stop(l, &sources[i].timer);
		OPENSSL_cleanse(sources[i].refresh, sizeof(sources[i].refresh));
		sources[i].req = NULL;
		sources[i].cmd = NULL;
		sources[i].in_use = 0;
	}
}

void
oauth2_shutdown(void)
{
	int i;

	for (i = 0; i < SHARED_TOKENS; i++)
		if (sources[i].in_use)
			stop(&sources[i]);
	if (http_ready)
		http_shutdown();
	http_ready = 0;
}
