/*
 * Connections on a proxy_protocol listener, before their session: the PROXY header is
 * peeked, parsed (proxyproto.c) and then taken to its exact length.
 */
#include <sys/socket.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "parse.h"
#include "pphold.h"
#include "proxyproto.h"
#include "shared.h"

/* The whole header must be in within this; a balancer sends it with the connection. */
#define PROXY_TIMEOUT	5.
/* An incomplete header stays readable: look again this much later, not in a spin. */
#define PROXY_REPOLL	0.02

struct pphold {
	struct ev_loop	*loop;
	struct pphold	**head;
	ev_io		 io;
	ev_timer	 deadline, repoll;
	int		 fd;
	int		 version;
	char		 listener[64];
	struct sockaddr_storage peer;	/* the balancer */
	pphold_cb	*cb;
	void		*arg;
	struct pphold	*prev, *next;
};

static void
hold_free(struct pphold *h, int close_fd)
{
	ev_io_stop(h->loop, &h->io);
	ev_timer_stop(h->loop, &h->deadline);
	ev_timer_stop(h->loop, &h->repoll);
	if (h->prev != NULL)
		h->prev->next = h->next;
	else
		*h->head = h->next;
	if (h->next != NULL)
		h->next->prev = h->prev;
	if (close_fd)
		close(h->fd);
	free(h);
}

/* Closed before a word of SMTP: nothing to tell a sender that is not a balancer. */
static void
hold_fail(struct pphold *h, const char *reason, const char *detail)
{
	char peer[80];
	struct logline l;

	parse_addr_str((struct sockaddr *)&h->peer, peer, sizeof(peer));
	log_begin(&l, L_WARN, NULL, "proxy.header");
	log_str(&l, "client", peer);
	log_str(&l, "listener", h->listener);
	log_str(&l, "reason", reason);
	if (detail != NULL)
		log_str(&l, "detail", detail);
	log_end(&l);
	shared_m_refused("proxy_header");
	hold_free(h, 1);
}

static void
hold_read(struct ev_loop *loop, ev_io *w, int revents)
{
	struct pphold *h = w->data;
	struct sockaddr_storage client, via;
	unsigned char buf[PROXYPROTO_MAX];
	struct proxyproto pp;
	pphold_cb *cb;
	char why[128];
	void *arg;
	ssize_t n;
	int r, fd;

	(void)revents;
	/* Peek: the client's own first bytes stay in the socket for the session. */
	if ((n = recv(h->fd, buf, sizeof(buf), MSG_PEEK)) < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			hold_fail(h, "closed", strerror(errno));
		return;
	}
	if (n == 0) {
		hold_fail(h, "closed", "connection closed before the header was complete");
		return;
	}
	r = proxyproto_parse(buf, (size_t)n, h->version, &pp, why, sizeof(why));
	if (r < 0) {
		hold_fail(h, strstr(why, "longer") != NULL ? "too-long" :
		    strstr(why, "unsupported") != NULL ? "unsupported" : "malformed", why);
		return;
	}
	if (r == 0) {
		struct pollfd pfd = { h->fd, POLLRDHUP, 0 };

		/* A peek cannot see the FIN behind the bytes: ask whether it came. */
		if (poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR))) {
			hold_fail(h, "closed", "connection closed before the header was complete");
			return;
		}
		ev_io_stop(loop, &h->io);
		ev_timer_start(loop, &h->repoll);
		return;
	}
	if (recv(h->fd, buf, pp.len, 0) != (ssize_t)pp.len) {
		hold_fail(h, "closed", "the header could not be read again");
		return;
	}
	via = h->peer;
	client = pp.local ? h->peer : pp.src;
	fd = h->fd;
	cb = h->cb;
	arg = h->arg;
	hold_free(h, 0);
	cb(arg, fd, &client, &via);
}

static void
hold_repoll(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct pphold *h = w->data;

	(void)revents;
	ev_io_start(loop, &h->io);
}

static void
hold_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	hold_fail(w->data, "timeout", "no complete header within 5 s");
}

void
pphold_start(struct ev_loop *loop, struct pphold **head, int fd,
    const struct sockaddr_storage *peer, int version, const struct cidr *from, size_t nfrom,
    const char *listener, pphold_cb *cb, void *arg)
{
	struct pphold *h;

	if ((h = calloc(1, sizeof(*h))) == NULL) {
		log_simple(L_ERROR, "session.start", "out of memory");
		close(fd);
		return;
	}
	h->loop = loop;
	h->head = head;
	h->fd = fd;
	h->version = version;
	h->peer = *peer;
	h->cb = cb;
	h->arg = arg;
	snprintf(h->listener, sizeof(h->listener), "%s", listener);
	h->next = *head;
	if (*head != NULL)
		(*head)->prev = h;
	*head = h;
	ev_init(&h->io, hold_read);
	ev_init(&h->deadline, hold_timeout);
	ev_init(&h->repoll, hold_repoll);
	if (!cidr_match(from, nfrom, (const struct sockaddr *)peer)) {
		hold_fail(h, "not-allowed", "not in proxy_from");
		return;
	}
	ev_io_set(&h->io, fd, EV_READ);
	h->io.data = h;
	ev_timer_set(&h->deadline, PROXY_TIMEOUT, 0.);
	h->deadline.data = h;
	ev_timer_set(&h->repoll, PROXY_REPOLL, 0.);
	h->repoll.data = h;
	ev_io_start(loop, &h->io);
	ev_timer_start(loop, &h->deadline);
}

void
pphold_close_all(struct pphold **head)
{
	while (*head != NULL)
		hold_free(*head, 1);
}
