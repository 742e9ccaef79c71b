/*
 * The Prometheus endpoint (see metrics.h). The main process serves it from its own
 * loop, so a scrape never delays a session and sees every worker's counts in the
 * shared mapping. Each connection: read one request (HTTPREQ_MAX bytes at most, within
 * METRICS_TIMEOUT), answer once with HTTP/1.0 and Connection: close, close. Addresses
 * outside [metrics] allow get 403 whatever they ask.
 */
#include <sys/socket.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "config.h"
#include "expo.h"
#include "httpreq.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "parse.h"
#include "shared.h"

/* Seconds a client gets to send its request and read the answer. */
#define METRICS_TIMEOUT	5.
/* Connections served at once; more are closed at accept. */
#define METRICS_CLIENTS	16
/* Seconds accepting pauses when accept() fails for want of descriptors or memory. */
#define METRICS_BACKOFF	1.

struct client {
	int		 fd;
	int		 allowed;
	ev_io		 io;
	ev_timer	 timer;
	char		 in[HTTPREQ_MAX];
	size_t		 inlen;
	char		*out;		/* the whole answer, once decided */
	size_t		 outlen, outoff;
	struct client	*next;
};

static struct ev_loop *mloop;
static struct config *mcfg;
static struct listen_addr bound;
static int lfd = -1;
static ev_io accept_io;
static ev_timer backoff;
static struct client *clients;
static int nclients;

static void
client_free(struct client *c)
{
	struct client **pp;

	for (pp = &clients; *pp != NULL; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	nclients--;
	ev_io_stop(mloop, &c->io);
	ev_timer_stop(mloop, &c->timer);
	close(c->fd);
	free(c->out);
	free(c);
}

/* Decide the answer to a request judged ${r}; NULL body = the status line as text. */
static int
answer(struct client *c, enum httpreq_result r)
{
	struct shared_snapshot *snap = NULL;
	struct expo_names names;
	const char *status, *type = "text/plain; charset=utf-8";
	char *body = NULL, head[256];
	size_t blen, i;
	int hlen;

	if (!c->allowed)
		status = "403 Forbidden";
	else
		status = httpreq_status(r);
	if (c->allowed && r == HTTPREQ_OK) {
		memset(&names, 0, sizeof(names));
		for (i = 0; i < mcfg->nups; i++)
			if (mcfg->ups[i]->slot >= 0 && mcfg->ups[i]->slot < SHARED_TOKENS)
				names.upstream[mcfg->ups[i]->slot] = mcfg->ups[i]->name;
		/* The snapshot is large (the failure matrix): off the stack. */
		if ((snap = malloc(sizeof(*snap))) != NULL) {
			shared_snapshot(snap);
			body = expo_render(snap, &names, &blen);
			free(snap);
		}
		if (body == NULL)
			status = "500 Internal Server Error";
		type = "text/plain; version=0.0.4; charset=utf-8";
	}
	if (body == NULL) {
		blen = strlen(status) + 1;
		if ((body = malloc(blen + 1)) == NULL)
			return (-1);
		snprintf(body, blen + 1, "%s\n", status);
	}
	hlen = snprintf(head, sizeof(head), "HTTP/1.0 %s\r\nContent-Type: %s\r\n"
	    "Content-Length: %zu\r\nConnection: close\r\n\r\n", status, type, blen);
	if ((c->out = malloc((size_t)hlen + blen)) == NULL) {
		free(body);
		return (-1);
	}
	memcpy(c->out, head, (size_t)hlen);
	memcpy(c->out + hlen, body, blen);
	c->outlen = (size_t)hlen + blen;
	free(body);
	return (0);
}

static void
on_client(struct ev_loop *loop, ev_io *w, int revents)
{
	struct client *c = w->data;
	enum httpreq_result r;
	ssize_t n;

	(void)revents;
	if (c->out == NULL) {
		n = recv(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen, 0);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			client_free(c);
			return;
		}
		c->inlen += (size_t)n;
		if ((r = httpreq_parse(c->in, c->inlen)) == HTTPREQ_MORE)
			return;
		if (answer(c, r) != 0) {
			client_free(c);
			return;
		}
		ev_io_stop(loop, &c->io);
		ev_io_set(&c->io, c->fd, EV_WRITE);
		ev_io_start(loop, &c->io);
	}
	n = send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n < 0 || (c->outoff += (size_t)n) == c->outlen) {
		/* Half-close first so the answer is not lost to a reset. */
		(void)shutdown(c->fd, SHUT_WR);
		client_free(c);
	}
}

static void
on_client_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	client_free(w->data);
}

static void
on_backoff(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	if (lfd >= 0)
		ev_io_start(loop, &accept_io);
}

static void
on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	struct client *c;
	int fd;

	(void)w;
	(void)revents;
	for (;;) {
		sl = sizeof(ss);
		fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0 && (errno == EINTR || errno == ECONNABORTED))
			continue;
		if (fd < 0) {
			/*
			 * Out of descriptors or memory, the pending connection stays readable:
			 * retrying at once would spin the loop that supervises the workers.
			 */
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				ev_io_stop(loop, &accept_io);
				ev_timer_stop(loop, &backoff);
				ev_timer_init(&backoff, on_backoff, METRICS_BACKOFF, 0.);
				ev_timer_start(loop, &backoff);
			}
			return;
		}
		if (nclients >= METRICS_CLIENTS || (c = calloc(1, sizeof(*c))) == NULL) {
			close(fd);
			continue;
		}
		c->fd = fd;
		c->allowed = cidr_match(mcfg->metrics_allow, mcfg->nmetrics_allow,
		    (struct sockaddr *)&ss);
		ev_io_init(&c->io, on_client, fd, EV_READ);
		c->io.data = c;
		ev_timer_init(&c->timer, on_client_timeout, METRICS_TIMEOUT, 0.);
		c->timer.data = c;
		ev_io_start(loop, &c->io);
		ev_timer_start(loop, &c->timer);
		c->next = clients;
		clients = c;
		nclients++;
	}
}

static void
log_listen(const struct listen_addr *a)
{
	struct logline l;

	log_begin(&l, L_INFO, NULL, "metrics.listen");
	log_str(&l, "host", a->host);
	log_num(&l, "port", a->port);
	log_end(&l);
}

/* Serve on ${fd} (bound to ${a}) instead of what was served before; -1 closes. */
static void
serve(int fd, const struct listen_addr *a)
{
	if (lfd >= 0) {
		ev_io_stop(mloop, &accept_io);
		ev_timer_stop(mloop, &backoff);
		close(lfd);
	}
	lfd = fd;
	if (fd < 0)
		return;
	bound = *a;
	ev_io_init(&accept_io, on_accept, fd, EV_READ);
	ev_io_start(mloop, &accept_io);
	log_listen(a);
}

int
metrics_start(struct ev_loop *loop, struct config *cfg)
{
	int fd;

	mloop = loop;
	mcfg = config_ref(cfg);
	if (!cfg->metrics_on)
		return (0);
	if ((fd = listeners_bind_addr(&cfg->metrics_listen)) < 0)
		return (-1);
	serve(fd, &cfg->metrics_listen);
	return (0);
}

int
metrics_reload(struct config *cfg)
{
	struct config *old = mcfg;
	int fd, same;

	mcfg = config_ref(cfg);
	config_unref(old);
	same = lfd >= 0 && cfg->metrics_on && bound.port == cfg->metrics_listen.port &&
	    strcmp(bound.host, cfg->metrics_listen.host) == 0;
	if (same)
		return (0);
	if (!cfg->metrics_on) {
		serve(-1, NULL);
		return (0);
	}
	/* A port in use keeps the old endpoint: counters stay reachable somewhere. */
	if ((fd = listeners_bind_addr(&cfg->metrics_listen)) < 0)
		return (-1);
	serve(fd, &cfg->metrics_listen);
	return (0);
}

void
metrics_forget(struct ev_loop *loop)
{
	struct client *c;

	(void)loop;
	while ((c = clients) != NULL)
		client_free(c);
	serve(-1, NULL);
	config_unref(mcfg);
	mcfg = NULL;
}

void
metrics_stop(void)
{
	if (mloop == NULL)
		return;
	metrics_forget(mloop);
}
