/*
 * Upstream session reuse: the worker's kept upstream sessions, each first reset (RSET
 * and its 250, so no transaction state crosses from one device to the next), then idle
 * until a device of the same upstream and profile takes it, reuse_idle passes, or the
 * server says or closes anything -- which ends it.
 */
#include <sys/socket.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "conn.h"
#include "log.h"
#include "shared.h"
#include "upcache.h"

enum kept_state { K_RESET, K_IDLE };

struct kept {
	struct config	*cfg;		/* the upstream and profile live in it */
	const struct upstream_conf *up;
	const struct device_conf *dev;
	struct conn	*c;
	struct smtp_caps caps;
	unsigned	 msgs;
	unsigned long	 token_gen;	/* of an OAuth2 login's token */
	enum kept_state	 state;
	ev_timer	 timer;		/* K_RESET: the RSET's reply; K_IDLE: reuse_idle */
	struct kept	*prev, *next;
};

static struct ev_loop *loop;
static struct kept *kept;
static int closing;		/* the worker is stopping: nothing more is kept */

void
upcache_init(struct ev_loop *l)
{
	loop = l;
}

static void
unlink_kept(struct kept *k)
{
	if (k->prev != NULL)
		k->prev->next = k->next;
	else
		kept = k->next;
	if (k->next != NULL)
		k->next->prev = k->prev;
	k->prev = k->next = NULL;
}

/* Close it politely when it is still sane, and give back its slot. */
static void
drop(struct kept *k, int quit, const char *why)
{
	struct logline l;

	ev_timer_stop(loop, &k->timer);
	unlink_kept(k);
	if (quit && !conn_failed(k->c))
		(void)conn_write(k->c, "QUIT\r\n", 6);
	conn_free(k->c);
	shared_upstream_leave(k->up->slot);
	log_begin(&l, L_DEBUG, NULL, "upstream.reuse-close");
	log_str(&l, "upstream", k->up->name);
	log_str(&l, "reason", why);
	log_end(&l);
	config_unref(k->cfg);
	free(k);
}

static unsigned
count(const struct upstream_conf *up, int idle_only)
{
	const struct kept *k;
	unsigned n = 0;

	for (k = kept; k != NULL; k = k->next)
		if (k->up == up && (!idle_only || k->state == K_IDLE))
			n++;
	return (n);
}

unsigned
upcache_idle(const struct upstream_conf *up)
{
	return (count(up, 1));
}

static void
on_timer(struct ev_loop *l, ev_timer *w, int revents)
{
	struct kept *k = w->data;

	(void)l;
	(void)revents;
	drop(k, 1, k->state == K_RESET ? "no reply to RSET" : "reuse_idle");
}

/* Anything from the server: the RSET's 250, or the end of a kept session. */
static void
on_event(struct conn *c, int ev, void *arg)
{
	struct kept *k = arg;
	struct smtp_reply r;
	const char *p;
	size_t len;
	long n;

	if (ev & CONN_EV_ERROR) {
		drop(k, 0, "connection failed");
		return;
	}
	if (k->state == K_IDLE) {
		/* A kept session has nothing to say: a 421, a close, anything ends it. */
		if (conn_in_len(c) > 0 || conn_eof(c))
			drop(k, 0, conn_eof(c) ? "closed by the server" : "the server spoke");
		return;
	}
	if ((p = conn_peek(c, &len)) == NULL) {
		if (conn_eof(c))
			drop(k, 0, "closed by the server");
		return;
	}
	if ((n = smtp_reply_parse(p, len, &r)) == 0)
		return;
	if (n < 0 || (size_t)n != len || r.code != 250) {
		drop(k, 1, "RSET not answered 250");
		return;
	}
	conn_consume(c, (size_t)n);
	k->state = K_IDLE;
	ev_timer_stop(loop, &k->timer);
	ev_timer_set(&k->timer, (ev_tstamp)k->up->reuse_idle, 0.);
	ev_timer_start(loop, &k->timer);
}

void
upcache_put(struct config *cfg, const struct upstream_conf *up, const struct device_conf *dev,
    struct conn *c, const struct smtp_caps *caps, unsigned msgs, unsigned long token_gen)
{
	struct kept *k;

	if (loop == NULL || closing || up->reuse == 0 || (up->reuse_max_messages > 0 &&
	    msgs >= up->reuse_max_messages) || count(up, 0) >= up->reuse ||
	    conn_failed(c) || conn_eof(c) || conn_in_len(c) > 0 ||
	    (k = calloc(1, sizeof(*k))) == NULL) {
		if (!conn_failed(c))
			(void)conn_write(c, "QUIT\r\n", 6);
		conn_free(c);
		shared_upstream_leave(up->slot);
		return;
	}
	k->cfg = config_ref(cfg);
	k->up = up;
	k->dev = dev;
	k->c = c;
	k->caps = *caps;
	k->msgs = msgs;
	k->token_gen = token_gen;
	k->state = K_RESET;
	k->next = kept;
	if (kept != NULL)
		kept->prev = k;
	kept = k;
	conn_set_cb(c, on_event, k);
	ev_init(&k->timer, on_timer);
	k->timer.data = k;
	ev_timer_set(&k->timer, (ev_tstamp)cfg->timeout, 0.);
	ev_timer_start(loop, &k->timer);
	if (conn_write(c, "RSET\r\n", 6) != 0)
		drop(k, 0, "RSET not sent");
}

/* Did the server send anything (a close_notify, a 421) since we last looked? */
static int
stale(struct kept *k)
{
	char b;
	ssize_t n;

	if (conn_failed(k->c) || conn_eof(k->c) || conn_in_len(k->c) > 0)
		return (1);
	n = recv(conn_fd(k->c), &b, 1, MSG_PEEK | MSG_DONTWAIT);
	return (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK));
}

/*
 * A session logged in with a token that has since been renewed or has expired may be
 * refused by the server at any command (providers check a token's lifetime on open
 * sessions): the device would see an error where a fresh login would have worked.
 */
static int
token_outlived(const struct kept *k)
{
	struct shared_token_info info;

	if (k->up->auth_mechanism != UP_AUTH_XOAUTH2 &&
	    k->up->auth_mechanism != UP_AUTH_OAUTHBEARER)
		return (0);
	(void)shared_token_get(k->up->slot, k->up->oauth2_fp, NULL, 0, &info);
	return (info.gen != k->token_gen || !shared_token_valid(k->up->slot, k->up->oauth2_fp));
}

struct conn *
upcache_take(const struct upstream_conf *up, const struct device_conf *dev,
    struct smtp_caps *caps, unsigned *msgs, unsigned long *token_gen)
{
	struct kept *k, *next;
	struct conn *c;

	for (k = kept; k != NULL; k = next) {
		next = k->next;
		if (k->up != up || k->dev != dev || k->state != K_IDLE)
			continue;
		if (stale(k)) {
			drop(k, 0, "closed by the server");
			continue;
		}
		if (token_outlived(k)) {
			drop(k, 1, "token renewed since its login");
			continue;
		}
		ev_timer_stop(loop, &k->timer);
		unlink_kept(k);
		c = k->c;
		*caps = k->caps;
		*msgs = k->msgs;
		*token_gen = k->token_gen;
		config_unref(k->cfg);
		free(k);
		return (c);
	}
	return (NULL);
}

void
upcache_close_all(void)
{
	closing = 1;
	while (kept != NULL)
		drop(kept, 1, "shutdown");
}
