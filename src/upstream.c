/*
 * Upstream preparation:
 *
 *   RESOLVE -> CONNECT --(implicit)--> TLS -> GREET -> EHLO2 -> [AUTH...] -> ready
 *                 \--(starttls)--> GREET -> EHLO1 -> STARTTLS -> TLS -> EHLO2 ...
 *
 * An OAuth2 login waits in TOKEN while the main process has no valid token for it yet
 * (at start, or after the server refused one: then one fresh token, one more AUTH).
 *
 * A connect failure or timeout moves to the next address; every other failure
 * ends the preparation with a 421 for the client and one upstream.fail log line.
 * Each step is bounded by [proxy] timeout, the whole by [upstream] connect_timeout.
 *
 * A handler may end the preparation deep inside a call (a failed write fails the
 * upstream), so every entry from the loop holds the upstream (enter/leave): an
 * ended upstream is only marked dead and closed, and the outermost handler frees it.
 * After any call that can end it, a handler checks u->dead before going on.
 */
#include <sys/socket.h>
#include <netdb.h>
#include <arpa/inet.h>

#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "config.h"
#include "conn.h"
#include "log.h"
#include "login.h"
#include "resolve.h"
#include "route.h"
#include "smtp.h"
#include "shared.h"
#include "tlsctx.h"
#include "upcache.h"
#include "upreport.h"
#include "upstream.h"

/* Upstream buffers: a reply is at most SMTP_REPLY_MAX; the body path writes in 64 KiB. */
#define UP_INCAP	(SMTP_REPLY_MAX + 16384)
#define UP_OUTCAP	(256 * 1024)

enum up_state {
	UP_RESOLVE, UP_CONNECT, UP_TLS, UP_GREET, UP_EHLO1, UP_STARTTLS, UP_EHLO2, UP_TOKEN,
	UP_AUTH, UP_NSTATES
};

/* Indexed by the enum, so a state added without its name fails to build. */
static const char *const state_names[] = {
	[UP_RESOLVE] = "resolve", [UP_CONNECT] = "connect", [UP_TLS] = "tls",
	[UP_GREET] = "greeting", [UP_EHLO1] = "ehlo", [UP_STARTTLS] = "starttls",
	[UP_EHLO2] = "ehlo-tls", [UP_TOKEN] = "token", [UP_AUTH] = "auth",
};
_Static_assert(sizeof(state_names) / sizeof(state_names[0]) == UP_NSTATES,
    "every upstream state has a name");

struct upstream {
	struct ev_loop	*loop;
	struct config	*cfg;
	const struct device_conf *dev;	/* the device's profile; NULL: none */
	struct upstream_conf *up;	/* the upstream tried now */
	struct upstream_conf *only;	/* an intercept rule's: no other is tried */
	struct upstream_conf *own;	/* "original": our own copy of the session's */
	size_t		 ri;		/* its place in the profile's failover order */
	long		 next_ri;	/* the one to try after it failed; -1: none */
	int		 skip_down;	/* skip upstreams marked down (not all of them are) */
	unsigned	 failover:1;	/* this attempt ended, the next upstream is due */
	unsigned	 counted:1;	/* holds one of u->up's max_connections */
	unsigned	 handed:1;	/* the count went to the session with the connection */
	unsigned	 reused:1;	/* u->c came from the reuse cache, ready */
	unsigned	 msgs;		/* messages relayed on it before */
	char		 sid[16];
	char		 client[64];
	enum up_state	 state;
	int		 tls_done;
	struct resolve	*res;
	struct addrinfo	*ai, *cur;
	char		 addr[64];
	char		 tried[400];	/* "addr why; ..." for the addresses that failed */
	int		 ntried, nshown;
	struct conn	*c;
	ev_timer	 timer;		/* one step: [proxy] timeout */
	ev_timer	 deadline;	/* the whole preparation: connect_timeout */
	ev_tstamp	 tls_start;
	struct smtp_caps caps;
	struct login	 login;		/* in UP_AUTH: where the proxy's own login is */
	char		*token;		/* an OAuth2 login's access token, while it runs */
	unsigned long	 token_gen;	/* its generation in the shared cache */
	unsigned long	 token_fails;	/* failed fetches seen when the wait began */
	int		 token_retried;	/* the server refused one token already */
	struct upstream	*wprev, *wnext;	/* in UP_TOKEN: on the waiting list */
	struct upstream_report *rep;	/* the probe's observer; NULL: none */
	upstream_cb	*cb;
	void		*arg;
	int		 depth;		/* nesting of handlers, so the outermost frees */
	unsigned	 dead:1;	/* ended: closed, waiting for the handlers to unwind */
};

/* Hints in upstream.fail for the usual mix-up of the two TLS modes. */
#define HINT_IMPLICIT	"if this port uses implicit TLS (usually 465), set tls = implicit"
#define HINT_STARTTLS	"this port speaks plaintext SMTP first; set tls = starttls " \
			"(usually 587 or 25)"

static void up_event(struct conn *, int, void *);

/* The upstreams of this worker waiting in UP_TOKEN. */
static struct upstream *waiting;

/* The one way the preparation moves on: every transition is a debug line "a -> b". */
static void
up_enter(struct upstream *u, enum up_state next)
{
	struct logline l;

	assert(next < UP_NSTATES);
	if (log_enabled(L_DEBUG) && next != u->state) {
		log_begin(&l, L_DEBUG, u->sid, "upstream.state");
		log_str(&l, "from", state_names[u->state]);
		log_str(&l, "to", state_names[next]);
		log_end(&l);
	}
	if (u->rep != NULL && next != u->state)	/* no clock read for a real session */
		upreport_step(u->rep, state_names[next], ev_time());
	u->state = next;
}
static void try_next(struct upstream *);

static void
unwait(struct upstream *u)
{
	if (u->wprev == NULL && waiting != u)
		return;	/* not on the list */
	if (u->wprev != NULL)
		u->wprev->wnext = u->wnext;
	else if (waiting == u)
		waiting = u->wnext;
	if (u->wnext != NULL)
		u->wnext->wprev = u->wprev;
	u->wprev = u->wnext = NULL;
}

static void
token_drop(struct upstream *u)
{
	if (u->token == NULL)
		return;
	OPENSSL_cleanse(u->token, strlen(u->token));
	free(u->token);
	u->token = NULL;
}

/*
 * The upstream at place ${i} of what this session may use: the profile's failover
 * order, or the one an intercept rule chose.
 */
static struct upstream_conf *
up_at(const struct upstream *u, size_t i)
{
	if (u->only != NULL)
		return (i == 0 ? u->only : NULL);
	return (route_upstream(u->cfg, u->dev, i));
}

/*
 * An intercepted session's "original" destination is no configured upstream: it has no
 * shared slot of its own for max_connections, down marks and metrics.
 */
#define SHARED_SLOT(u)	(!(u)->up->original)

/* End: stop everything ${u} waits for and mark it dead; the memory stays for the handlers. */
static void
up_close(struct upstream *u)
{
	if (u->counted && !u->handed) {
		if (SHARED_SLOT(u))
			shared_upstream_leave(u->up->slot);
		u->counted = 0;
	}
	u->dead = 1;
	unwait(u);
	token_drop(u);
	ev_timer_stop(u->loop, &u->timer);
	ev_timer_stop(u->loop, &u->deadline);
	resolve_cancel(u->res);
	u->res = NULL;
	conn_free(u->c);
	u->c = NULL;
}

static void
up_free(struct upstream *u)
{
	up_close(u);
	if (u->ai != NULL)
		freeaddrinfo(u->ai);
	free(u->own);
	config_unref(u->cfg);
	free(u);
}

static void kick(struct ev_loop *, ev_timer *, int);
static void on_deadline(struct ev_loop *, ev_timer *, int);

/*
 * The next upstream of the profile after u->ri, skipping those marked down (unless all
 * are): its index, or -1 past the last.
 */
static long
next_index(const struct upstream *u, size_t from)
{
	const struct upstream_conf *up;
	size_t i;

	for (i = from; (up = up_at(u, i)) != NULL; i++)
		if (!u->skip_down || shared_upstream_down_left(up->slot) == 0)
			return ((long)i);
	return (-1);
}

/* A fresh attempt on u->up: everything of the last one forgotten, from resolving on. */
static void
begin_attempt(struct upstream *u)
{
	if (u->ai != NULL)
		freeaddrinfo(u->ai);
	u->ai = u->cur = NULL;
	u->tls_done = 0;
	u->reused = 0;
	u->msgs = 0;
	memset(&u->caps, 0, sizeof(u->caps));
	memset(&u->login, 0, sizeof(u->login));
	u->token_gen = u->token_fails = 0;
	u->token_retried = 0;
	u->tried[0] = u->addr[0] = '\0';
	u->ntried = u->nshown = 0;
	u->dead = u->failover = 0;
	up_enter(u, UP_RESOLVE);
	/* A kept session comes ready, with its slot of max_connections. */
	if (SHARED_SLOT(u) && u->up->reuse > 0 &&
	    (u->c = upcache_take(u->up, u->dev, &u->caps, &u->msgs,
	    &u->token_gen)) != NULL) {
		conn_set_cb(u->c, up_event, u);
		u->reused = 1;
		u->counted = 1;
	} else
		/* A slot of its max_connections, or this upstream is busy: on to the next. */
		u->counted = SHARED_SLOT(u) ?
		    shared_upstream_enter(u->up->slot, (long)u->up->max_connections) : 1;
	/* Start from the loop, so the callback never runs inside upstream_start(). */
	ev_timer_init(&u->timer, kick, 0., 0.);
	u->timer.data = u;
	ev_timer_start(u->loop, &u->timer);
	/* The device waits for its greeting all this time: one bound for each upstream. */
	ev_timer_init(&u->deadline, on_deadline, (ev_tstamp)u->up->connect_timeout, 0.);
	u->deadline.data = u;
	ev_timer_start(u->loop, &u->deadline);
}

/* The attempt on u->up failed and a next upstream exists: on to it. */
static void
next_attempt(struct upstream *u)
{
	u->ri = (size_t)u->next_ri;
	u->up = up_at(u, u->ri);
	begin_attempt(u);
}

static void
enter(struct upstream *u)
{
	u->depth++;
}

/* Leave a handler; the outermost one frees an upstream that ended inside it. */
static void
leave(struct upstream *u)
{
	if (--u->depth > 0 || !u->dead)
		return;
	if (u->failover)
		next_attempt(u);
	else
		up_free(u);
}

/*
 * Fail: log why once (with a ${hint} for the admin and, for a certificate that was
 * refused, what it says in ${cert}; both may be NULL), greet the client with ${code}
 * ${text}, end.
 */
static void
up_fail_more(struct upstream *u, const char *code, const char *text, const char *reason,
    const char *detail, const char *hint, const struct tls_report *cert)
{
	char reply[512];
	struct logline l;
	const char *stage = u->state == UP_AUTH ? login_stage(&u->login) : state_names[u->state];

	if (u->dead)
		return;
	upreport_fail(u->rep, stage, reason, detail, hint);
	/*
	 * A failed upstream is skipped by the next sessions for retry_after; not for our own
	 * trouble (4.3.0: out of memory or descriptors) or its being busy (4.3.2).
	 */
	if (u->cfg->retry_after > 0 && strcmp(code, "4.3.0") != 0 && strcmp(code, "4.3.2") != 0 &&
	    SHARED_SLOT(u))
		shared_upstream_down(u->up->slot, (long)u->cfg->retry_after);
	log_begin(&l, L_WARN, u->sid, "upstream.fail");
	log_str(&l, "client", u->client);
	log_str(&l, "device", route_name(u->dev));
	log_str(&l, "upstream", u->up->name);
	log_str(&l, "host", u->up->host);
	log_num(&l, "port", u->up->port);
	if (u->addr[0] != '\0')
		log_str(&l, "addr", u->addr);
	log_str(&l, "stage", stage);
	log_str(&l, "reason", reason);
	if (SHARED_SLOT(u))
		shared_m_up_fail(u->up->slot, u->state == UP_AUTH ? login_stage(&u->login) :
		    state_names[u->state], reason);
	log_str(&l, "detail", detail);
	if (cert != NULL) {
		log_str(&l, "server_name", u->up->server_name);
		log_str(&l, "subject", cert->subject);
		log_str(&l, "sans", cert->sans);
		log_str(&l, "issuer", cert->issuer);
		log_str(&l, "not_after", cert->not_after);
	}
	if (hint != NULL)
		log_str(&l, "hint", hint);
	u->next_ri = next_index(u, u->ri + 1);
	if (u->next_ri >= 0)
		log_str(&l, "next", up_at(u, (size_t)u->next_ri)->name);
	log_end(&l);
	/* Before the device is greeted, so the next upstream is as good as the first. */
	if (u->next_ri >= 0) {
		u->failover = 1;
		up_close(u);
		return;
	}
	snprintf(reply, sizeof(reply), "421 %s %s %s\r\n", code, u->cfg->hostname, text);
	u->cb(u->arg, NULL, NULL, reply);
	up_close(u);
}

static void
up_fail(struct upstream *u, const char *code, const char *text, const char *reason,
    const char *detail)
{
	up_fail_more(u, code, text, reason, detail, NULL, NULL);
}

/* Queue ${line}; a failure ends ${u} (the caller checks u->dead). */
static void
up_send(struct upstream *u, const char *line)
{
	if (conn_write(u->c, line, strlen(line)) != 0)
		up_fail(u, "4.3.0", "internal error", "buffer", "output buffer full");
}

/*
 * Waiting for the plaintext greeting in STARTTLS mode: a server that says nothing
 * (it waits for a ClientHello) or sends a TLS record is an implicit-TLS port.
 */
static int
awaits_plain_greeting(const struct upstream *u)
{
	return (u->state == UP_GREET && !u->tls_done && u->up->tls == UP_TLS_STARTTLS);
}

/* 1 if ${p} (${len} bytes) cannot be the start of an SMTP reply: a TLS record or binary. */
static int
is_binary(const char *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)p[i];

		if ((ch < 0x20 && ch != '\r' && ch != '\n' && ch != '\t') || ch == 0x7f)
			return (1);
	}
	return (0);
}

static void
arm(struct upstream *u)
{
	ev_timer_stop(u->loop, &u->timer);
	ev_timer_set(&u->timer, (ev_tstamp)u->cfg->timeout, 0.);
	ev_timer_start(u->loop, &u->timer);
}

static void
up_ready(struct upstream *u)
{
	struct conn *c = u->c;

	if (SHARED_SLOT(u))
		shared_upstream_up(u->up->slot);
	u->handed = 1;	/* the session releases the count when it ends */
	conn_secret(c, 0);
	u->c = NULL;
	u->cb(u->arg, c, &u->caps, NULL);
	up_close(u);
}

static void
log_handshake(struct upstream *u)
{
	struct tls_where w;

	w.sid = u->sid;
	w.client = u->client;
	w.upstream = u->up->name;
	w.device = route_name(u->dev);
	w.host = u->up->host;
	w.addr = u->addr;
	w.mode = config_tls_str(u->up->tls);
	w.sni = u->up->server_name;
	w.verify = u->up->verify;
	w.opportunistic = u->up->opportunistic;
	w.slot = u->up->slot;
	w.ms = (long long)((ev_now(u->loop) - u->tls_start) * 1000 + 0.5);
	tlsctx_log_handshake(conn_ssl(u->c), &w);
}

static void
start_tls(struct upstream *u)
{
	char err[256];
	SSL *ssl;

	if ((ssl = tlsctx_ssl(u->up->tlsctx, u->up->server_name, err, sizeof(err))) == NULL) {
		up_fail(u, "4.7.0", "TLS setup failed", "tls", err);
		return;
	}
	up_enter(u, UP_TLS);
	ev_now_update(u->loop);
	u->tls_start = ev_now(u->loop);
	if (conn_start_tls(u->c, ssl) != 0) {
		up_fail(u, "4.7.0", "upstream sent data after its STARTTLS reply",
		    "response-injection", "bytes after the 220 to STARTTLS, before TLS");
		return;
	}
	arm(u);
}

static void
send_ehlo(struct upstream *u, enum up_state next)
{
	char line[300];

	snprintf(line, sizeof(line), "EHLO %s\r\n", u->cfg->hostname);
	up_enter(u, next);
	up_send(u, line);
}

/* Who fetches tokens: the main process, unless a probe fetches its own. */
static pid_t token_owner;

/* The main process is asked through the shared mapping, then woken. */
static void
ask_main(const struct upstream_conf *up, int what, unsigned long gen)
{
	shared_token_ask(up->slot, up->oauth2_fp, what, gen);
	(void)kill(token_owner != 0 ? token_owner : getppid(), SIGUSR2);
}

/* Log in with ${tok} (generation ${gen}), kept in u->token for redaction until the end. */
static void
token_send(struct upstream *u, const char *tok, unsigned long gen)
{
	const struct upstream_conf *up = u->up;
	char *line, why[300];
	size_t size = 2 * SHARED_TOKEN_MAX;

	token_drop(u);
	if ((u->token = strdup(tok)) == NULL || (line = malloc(size)) == NULL) {
		up_fail(u, "4.3.0", "internal error", "auth", "out of memory");
		return;
	}
	u->token_gen = gen;
	if (login_start_token(&u->login, up, up->auth_mechanism == UP_AUTH_XOAUTH2 ?
	    LOGIN_XOAUTH2 : LOGIN_OAUTHBEARER, u->token, line, size, why, sizeof(why)) != 0) {
		free(line);
		up_fail(u, "4.7.0", "upstream login token unusable", "auth", why);
		return;
	}
	conn_secret(u->c, 1);
	up_enter(u, UP_AUTH);
	up_send(u, line);
	OPENSSL_cleanse(line, size);
	free(line);
}

/*
 * An OAuth2 login: with the cached token when there is one (after a refusal, only a
 * newer one), else wait in UP_TOKEN for the main process. A fetch that failed since the
 * wait began, or before it and nothing on its way, greets the device 421 4.7.0: a token
 * problem is never a 5xx, the device tries again later.
 */
static void
token_login(struct upstream *u, int first)
{
	const struct upstream_conf *up = u->up;
	struct shared_token_info info;
	char *tok;
	size_t n;

	if ((tok = malloc(SHARED_TOKEN_MAX + 1)) == NULL) {
		up_fail(u, "4.3.0", "internal error", "token", "out of memory");
		return;
	}
	n = shared_token_get(up->slot, up->oauth2_fp, tok, SHARED_TOKEN_MAX + 1, &info);
	if (n > 0 && (!u->token_retried || info.gen > u->token_gen)) {
		unwait(u);
		u->token_fails = info.fails;	/* after a refusal, only new failures count */
		token_send(u, tok, info.gen);
	} else if (info.failing && ((first && !info.fetching) || info.fails > u->token_fails)) {
		unwait(u);
		up_enter(u, UP_TOKEN);
		up_fail(u, "4.7.0", "upstream login token unavailable, try again later",
		    "oauth2", info.why);
	} else if (u->state != UP_TOKEN) {
		u->token_fails = info.fails;
		up_enter(u, UP_TOKEN);
		u->wnext = waiting;
		if (waiting != NULL)
			waiting->wprev = u;
		waiting = u;
		arm(u);
		ask_main(up, SHARED_TOKEN_WANT, 0);
	}
	OPENSSL_cleanse(tok, SHARED_TOKEN_MAX + 1);
	free(tok);
}

void
upstream_token_wake(void)
{
	struct upstream *u, *next;

	for (u = waiting; u != NULL; u = next) {
		enter(u);
		token_login(u, 0);
		next = u->wnext;
		/* Out of the list now (it went on or failed): start over from the head. */
		if (u->dead || u->state != UP_TOKEN)
			next = waiting;
		leave(u);
	}
}

static void
start_auth(struct upstream *u)
{
	char line[1400], why[300];

	/*
	 * Sessions that were already on their way when another one's login was refused
	 * (a burst of devices at power-up) must not try the same password too.
	 */
	if (u->up->auth_retry_after > 0 && shared_auth_backoff_left(u->up->slot) > 0) {
		up_fail(u, "4.7.0", "upstream login refused recently, not retrying yet", "auth",
		    "auth_retry_after back-off");
		return;
	}
	if (UPSTREAM_OAUTH2(u->up)) {
		token_login(u, 1);
		return;
	}
	if (login_start(&u->login, u->up, &u->caps, line, sizeof(line), why,
	    sizeof(why)) != 0) {
		up_fail(u, "4.7.0", "upstream offers no usable AUTH mechanism", "auth", why);
		return;
	}
	conn_secret(u->c, 1);
	up_enter(u, UP_AUTH);
	up_send(u, line);
	OPENSSL_cleanse(line, sizeof(line));
}

/* The server refused the token: tell the main process, log it, wait for a fresh one. */
static void
retry_token(struct upstream *u, const char *reply, size_t len)
{
	char text[300];
	struct logline l;

	snprintf(text, sizeof(text), "%.*s", (int)(len >= 2 ? len - 2 : len), reply);
	login_redact(u->up, u->token, text, strlen(text));
	u->token_retried = 1;
	token_drop(u);
	log_begin(&l, L_INFO, u->sid, "auth.retry");
	log_str(&l, "upstream", u->up->name);
	log_str(&l, "mech", login_mech_str(u->login.mech));
	log_str(&l, "reply", text);
	log_str(&l, "msg", "the upstream refused the token; one more login with a fresh one");
	log_end(&l);
	ask_main(u->up, SHARED_TOKEN_REFUSED, u->token_gen);
	token_login(u, 0);
}

/* A reply during the proxy's own login. */
static void
auth_reply(struct upstream *u, const char *reply, size_t len, int code)
{
	char line[1400];

	upreport_auth(u->rep, login_mech_str(u->login.mech), code, reply, len);
	switch (login_reply(&u->login, u->up, code, reply, len, line, sizeof(line))) {
	case LOGIN_NEXT:
		up_send(u, line);
		OPENSSL_cleanse(line, sizeof(line));
		return;
	case LOGIN_OK:
		login_report(&u->login, u->up, u->token, u->sid, reply, len, 1);
		token_drop(u);
		up_ready(u);
		return;
	case LOGIN_REFUSED:
		if (u->token != NULL && login_token_refused(&u->login) && !u->token_retried) {
			retry_token(u, reply, len);
			return;
		}
		login_report(&u->login, u->up, u->token, u->sid, reply, len, 0);
		up_fail(u, "4.7.0", "upstream authentication failed", "auth", "credentials refused");
		return;
	}
}

/*
 * tls_policy = opportunistic (RFC 7435) and the original destination offers no STARTTLS:
 * the device's session goes on in plaintext, said loudly once per session.
 */
static void
plaintext(struct upstream *u)
{
	struct logline l;

	log_begin(&l, L_WARN, u->sid, "upstream.plaintext");
	log_str(&l, "client", u->client);
	log_str(&l, "upstream", u->up->name);
	log_str(&l, "host", u->up->host);
	log_num(&l, "port", u->up->port);
	log_str(&l, "addr", u->addr);
	log_str(&l, "msg", "no STARTTLS offered: relayed without TLS (tls_policy = "
	    "opportunistic)");
	log_end(&l);
	up_ready(u);
}

/*
 * One complete reply from the upstream, in the current state. 1 if TLS starts next;
 * the reply may end the preparation (the caller checks u->dead).
 */
static int
on_reply(struct upstream *u, const char *p, size_t len, const struct smtp_reply *r)
{
	char detail[300];

	snprintf(detail, sizeof(detail), "%.*s", (int)(len >= 2 ? len - 2 : len), p);
	upreport_reply(u->rep, state_names[u->state], p, len);
	switch (u->state) {
	case UP_GREET:
		if (r->code != 220) {
			up_fail(u, "4.4.0", "upstream not ready", "greeting", detail);
			return (0);
		}
		send_ehlo(u, u->tls_done ? UP_EHLO2 : UP_EHLO1);
		return (0);
	case UP_EHLO1:
		if (r->code != 250 || smtp_caps_parse(p, len, &u->caps) != 0) {
			up_fail(u, "4.7.0", "upstream does not offer STARTTLS", "no-starttls",
			    detail);
			return (0);
		}
		if (!(u->caps.flags & SMTP_CAP_STARTTLS) && u->up->opportunistic) {
			plaintext(u);
			return (0);
		}
		if (!(u->caps.flags & SMTP_CAP_STARTTLS)) {
			up_fail(u, "4.7.0", "upstream does not offer STARTTLS", "no-starttls",
			    "STARTTLS not in the EHLO reply");
			return (0);
		}
		up_enter(u, UP_STARTTLS);
		up_send(u, "STARTTLS\r\n");
		return (0);
	case UP_STARTTLS:
		if (r->code != 220) {
			up_fail(u, "4.7.0", "upstream refused STARTTLS", "starttls-refused", detail);
			return (0);
		}
		return (1);	/* the caller consumes the reply, then starts TLS */
	case UP_EHLO2:
		if (r->code != 250) {
			up_fail(u, "4.4.0", "upstream refused EHLO", "ehlo", detail);
			return (0);
		}
		/* Only what the server says under TLS counts; the plaintext list is forgotten. */
		if (smtp_caps_parse(p, len, &u->caps) != 0) {
			up_fail(u, "4.4.0", "upstream protocol error", "ehlo",
			    "malformed capability in the EHLO reply");
			return (0);
		}
		if (u->up->username[0] != '\0')
			start_auth(u);
		else
			up_ready(u);
		return (0);
	case UP_AUTH:
		auth_reply(u, p, len, r->code);
		return (0);
	default:
		up_fail(u, "4.4.0", "upstream protocol error", "protocol", "unexpected reply");
		return (0);
	}
}

static void
on_input(struct upstream *u)
{
	char rep[SMTP_REPLY_MAX];
	struct smtp_reply r;
	const char *p;
	size_t len;
	long n;
	int rc;

	if ((p = conn_peek(u->c, &len)) != NULL) {
		if (awaits_plain_greeting(u) && is_binary(p, len)) {
			up_fail_more(u, "4.4.0", "upstream protocol error", "protocol",
			    (unsigned char)p[0] == 0x15 || (unsigned char)p[0] == 0x16 ?
			    "a TLS record instead of the greeting" :
			    "binary data instead of the greeting", HINT_IMPLICIT, NULL);
			return;
		}
		if ((n = smtp_reply_parse(p, len, &r)) < 0) {
			up_fail(u, "4.4.0", "upstream protocol error", "protocol",
			    "malformed reply");
			return;
		}
		if (n == 0)
			goto eof;
		/*
		 * We send nothing until the previous reply is in, so bytes after it were
		 * sent unasked: an upstream that does that cannot be trusted to frame.
		 */
		if ((size_t)n != len) {
			if (u->state == UP_STARTTLS)
				up_fail(u, "4.7.0", "upstream sent data after its STARTTLS reply",
				    "response-injection", "bytes after the 220 to STARTTLS, before TLS");
			else
				up_fail(u, "4.4.0", "upstream protocol error", "protocol",
				    "unsolicited data after a reply");
			return;
		}
		/* Take the reply out first: a finished preparation hands over a clean conn. */
		memcpy(rep, p, (size_t)n);
		conn_consume(u->c, (size_t)n);
		rc = on_reply(u, rep, (size_t)n, &r);
		if (u->dead)
			return;		/* finished or failed */
		arm(u);
		if (rc == 1)
			start_tls(u);
		return;
	}
eof:
	if (conn_eof(u->c))
		up_fail(u, "4.4.2", "upstream closed the connection", "closed",
		    "connection closed by the upstream");
}

/* Shorten a connect error to the words an admin scans for. */
static const char *
short_error(const char *err)
{
	static const struct {
		int		 e;
		const char	*word;
	} words[] = {
		{ ECONNREFUSED, "refused" }, { ETIMEDOUT, "timed out" },
		{ EHOSTUNREACH, "host unreachable" }, { ENETUNREACH, "network unreachable" },
		{ ECONNRESET, "reset" }, { EADDRNOTAVAIL, "address not available" },
		{ EACCES, "not permitted" }, { EPERM, "not permitted" },
	};
	size_t i;

	if (strncmp(err, "connect: ", 9) == 0)
		err += 9;
	for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strcmp(err, strerror(words[i].e)) == 0)
			return (words[i].word);
	return (err);
}

/* The address being tried failed with ${why}: note it for the fail line and go on. */
static void
connect_failed(struct upstream *u, const char *why)
{
	size_t len = strlen(u->tried);
	int n;

	log_simple(L_DEBUG, "upstream.connect", why);
	upreport_addr(u->rep, u->addr, short_error(why));
	u->ntried++;
	n = snprintf(u->tried + len, sizeof(u->tried) - len, "%s%s %s", len ? "; " : "",
	    u->addr, short_error(why));
	if (n < 0 || (size_t)n >= sizeof(u->tried) - len)
		u->tried[len] = '\0';	/* bounded: counted, not shown */
	else
		u->nshown++;
	conn_free(u->c);
	u->c = NULL;
}

/* "addr why; addr why" for the failed addresses, and how many did not fit. */
static void
tried_str(const struct upstream *u, char *buf, size_t size)
{
	if (u->ntried > u->nshown)
		snprintf(buf, size, "%s%s%d more", u->tried, u->nshown ? "; " : "",
		    u->ntried - u->nshown);
	else
		snprintf(buf, size, "%s", u->tried);
}

/*
 * Out of time: one step took longer than [proxy] timeout (${whole} 0), or all of it
 * longer than connect_timeout (${whole} 1).
 */
static void
timed_out(struct upstream *u, int whole)
{
	char why[sizeof(u->tried) + 128], tried[sizeof(u->tried) + 32];
	const char *hint = NULL;
	int n;

	if (whole)
		n = snprintf(why, sizeof(why), "not ready within connect_timeout (%lu s)",
		    u->up->connect_timeout);
	else
		n = snprintf(why, sizeof(why), "no answer in time");
	if (u->state == UP_TLS && u->c != NULL && conn_ssl(u->c) != NULL) {
		/* Say where the handshake stopped: it tells a firewall from a slow server. */
		snprintf(why + n, sizeof(why) - (size_t)n, "; TLS handshake at: %s",
		    SSL_state_string_long(conn_ssl(u->c)));
	} else if (u->state == UP_CONNECT) {
		connect_failed(u, "timed out");
		tried_str(u, tried, sizeof(tried));
		snprintf(why + n, sizeof(why) - (size_t)n, "; %s", tried);
	}
	/* Silence where a greeting belongs: a TLS server waiting for our ClientHello. */
	if (awaits_plain_greeting(u) && conn_in_len(u->c) == 0)
		hint = HINT_IMPLICIT;
	up_fail_more(u, "4.4.1", "upstream timed out", "timeout", why, hint, NULL);
}

static void
tls_failed(struct upstream *u)
{
	SSL *ssl = conn_ssl(u->c);
	long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
	struct tls_report r;
	char detail[1536];

	upreport_tls(u->rep, ssl);
	/* Checked first: a pin mismatch also leaves a verify error, its own. */
	if (ssl != NULL && tlsctx_pin_failed(ssl, detail, sizeof(detail))) {
		tlsctx_report(ssl, &r);
		up_fail_more(u, "4.7.0", "upstream key does not match the configured pin", "pin",
		    detail, "if the provider changed its key or CA on purpose, set pin to one "
		    "of the chain's pins listed here (after checking them out of band)", &r);
		return;
	}
	if (vr != X509_V_OK && u->up->verify) {
		/* What the certificate says, so the admin sees why without a debug run. */
		tlsctx_report(ssl, &r);
		shared_m_verify_fail(vr);
		up_fail_more(u, "4.7.0", "upstream certificate not verified", "verify",
		    X509_verify_cert_error_string(vr), NULL, &r);
		return;
	}
	up_fail_more(u, "4.7.0", "TLS handshake with upstream failed", "handshake",
	    conn_error(u->c), ssl != NULL && tlsctx_hint(ssl) != NULL ? tlsctx_hint(ssl) :
	    u->up->tls == UP_TLS_IMPLICIT && ssl != NULL &&
	    tlsctx_peer_sent_text(ssl) ? HINT_STARTTLS : NULL, NULL);
}

static void
on_conn(struct upstream *u, int ev)
{
	if (ev & CONN_EV_ERROR) {
		if (u->state == UP_CONNECT) {
			connect_failed(u, conn_error(u->c));
			try_next(u);
		} else if (u->state == UP_TLS)
			tls_failed(u);
		else	/* TLS 1.3 refuses a missing client certificate after the handshake */
			up_fail_more(u, "4.4.2", "upstream connection failed", "io",
			    conn_error(u->c), conn_ssl(u->c) != NULL &&
			    strstr(conn_error(u->c), "alert") != NULL ?
			    tlsctx_hint(conn_ssl(u->c)) : NULL, NULL);
		return;
	}
	if (ev & CONN_EV_CONNECTED) {
		arm(u);
		if (u->up->tls == UP_TLS_IMPLICIT)
			start_tls(u);
		else
			up_enter(u, UP_GREET);
		return;
	}
	if (ev & CONN_EV_TLS) {
		u->tls_done = 1;
		log_handshake(u);
		upreport_tls(u->rep, conn_ssl(u->c));
		arm(u);
		if (u->up->tls == UP_TLS_IMPLICIT)
			up_enter(u, UP_GREET);
		else {
			send_ehlo(u, UP_EHLO2);
			return;
		}
	}
	if (ev & CONN_EV_READ)
		on_input(u);
}

static void
up_event(struct conn *c, int ev, void *arg)
{
	struct upstream *u = arg;

	(void)c;
	enter(u);
	on_conn(u, ev);
	leave(u);
}

static void
on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct upstream *u = w->data;

	(void)loop;
	(void)revents;
	enter(u);
	if (u->state == UP_CONNECT) {
		connect_failed(u, "timed out");
		try_next(u);
	} else
		timed_out(u, 0);
	leave(u);
}

static void
on_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct upstream *u = w->data;

	(void)loop;
	(void)revents;
	enter(u);
	timed_out(u, 1);
	leave(u);
}

static void
try_next(struct upstream *u)
{
	char err[256], tried[sizeof(u->tried) + 32];

	u->cur = u->cur == NULL ? u->ai : u->cur->ai_next;
	if (u->cur == NULL) {
		tried_str(u, tried, sizeof(tried));
		up_fail(u, "4.4.1", "upstream unreachable", "connect",
		    tried[0] ? tried : "no address");
		return;
	}
	parse_addr_str(u->cur->ai_addr, u->addr, sizeof(u->addr));
	upreport_addr(u->rep, u->addr, NULL);
	up_enter(u, UP_CONNECT);
	u->c = conn_connect(u->loop, u->cur->ai_addr, u->cur->ai_addrlen, UP_INCAP, UP_OUTCAP,
	    up_event, u, err, sizeof(err));
	if (u->c == NULL) {
		up_fail(u, "4.3.0", "internal error", "socket", err);
		return;
	}
	arm(u);
}

static void
on_resolved(void *arg, struct addrinfo *res, const char *err)
{
	struct upstream *u = arg;

	enter(u);
	u->res = NULL;
	if (res == NULL)
		up_fail(u, "4.4.3", "cannot resolve the upstream", "resolve", err);
	else {
		u->ai = res;
		try_next(u);
	}
	leave(u);
}

static void
kick(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct upstream *u = w->data;

	(void)loop;
	(void)revents;
	enter(u);
	if (u->reused) {
		struct logline l;

		log_begin(&l, L_INFO, u->sid, "upstream.reuse");
		log_str(&l, "client", u->client);
		log_str(&l, "device", route_name(u->dev));
		log_str(&l, "upstream", u->up->name);
		log_num(&l, "messages", u->msgs);
		log_end(&l);
		up_ready(u);
		leave(u);
		return;
	}
	if (!u->counted) {
		up_fail(u, "4.3.2", "Too many upstream connections, try again later",
		    "max_connections", "max_connections sessions held already");
		leave(u);
		return;
	}
	ev_timer_stop(u->loop, &u->timer);
	ev_timer_init(&u->timer, on_timeout, 0., 0.);
	u->timer.data = u;
	arm(u);
	if (SHARED_SLOT(u))
		shared_m_up_attempt(u->up->slot);
	if ((u->res = resolve_start(u->up->host, u->up->port, on_resolved, u)) == NULL)
		up_fail(u, "4.3.0", "internal error", "resolve", "out of memory");
	leave(u);
}

struct upstream *
upstream_start(struct ev_loop *loop, struct config *cfg, const struct device_conf *dev,
    struct upstream_conf *only, const char *sid, const char *client, upstream_cb *cb,
    void *arg)
{
	struct upstream *u;
	long first;

	if ((u = calloc(1, sizeof(*u))) == NULL)
		return (NULL);
	u->loop = loop;
	u->cfg = config_ref(cfg);
	u->dev = dev;
	u->only = only;
	/*
	 * An "original" destination is the session's own copy, and the session may end (and
	 * free it) inside our callback while we still log with it: keep a copy of our own.
	 */
	if (only != NULL && only->original) {
		if ((u->own = malloc(sizeof(*u->own))) == NULL) {
			config_unref(u->cfg);
			free(u);
			return (NULL);
		}
		memcpy(u->own, only, sizeof(*u->own));
		u->only = u->own;
	}
	snprintf(u->sid, sizeof(u->sid), "%s", sid);
	snprintf(u->client, sizeof(u->client), "%s", client);
	u->cb = cb;
	u->arg = arg;
	/* Every upstream marked down: try them all in order rather than none. */
	u->skip_down = 1;
	if ((first = next_index(u, 0)) < 0) {
		u->skip_down = 0;
		first = 0;
	}
	u->ri = (size_t)first;
	u->up = up_at(u, u->ri);
	begin_attempt(u);
	return (u);
}

void
upstream_observe(struct upstream *u, struct upstream_report *rep)
{
	u->rep = rep;
	upreport_step(rep, state_names[u->state], ev_time());
}

void
upstream_token_owner(pid_t pid)
{
	token_owner = pid;
}

const struct upstream_conf *
upstream_conf_of(const struct upstream *u)
{
	return (u->up);
}

unsigned
upstream_messages(const struct upstream *u)
{
	return (u->msgs);
}

unsigned long
upstream_token_gen(const struct upstream *u)
{
	return (u->token_gen);
}

void
upstream_cancel(struct upstream *u)
{
	if (u == NULL)
		return;
	if (u->depth > 0)
		up_close(u);	/* inside one of our handlers: it frees on the way out */
	else
		up_free(u);
}
