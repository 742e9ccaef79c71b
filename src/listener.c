#include <sys/socket.h>
#include <netinet/in.h>
#include <netdb.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "listener.h"
#include "log.h"
#include "parse.h"
#include "session.h"

/* Accepts per wake-up: enough to drain a burst, few enough to keep the loop fair. */
#define ACCEPT_BATCH 64

struct listener {
	ev_io		 io;
	int		 fd;
	char		 name[80];
	struct listeners *owner;
	struct listener	*next;
};

struct listeners {
	struct ev_loop	*loop;
	struct config	*cfg;
	struct listener	*list;
	unsigned long	 nsessions;
};

static void
session_done(void *arg)
{
	struct listeners *ls = arg;

	ls->nsessions--;
}

/* Refuse before any upstream contact: one reply, then close. */
static void
refuse(int fd, const char *reply)
{
	(void)send(fd, reply, strlen(reply), MSG_DONTWAIT | MSG_NOSIGNAL);
	/* Half-close first so the reply is not lost to a reset. */
	(void)shutdown(fd, SHUT_WR);
	close(fd);
}

static void
deny(struct listeners *ls, int fd, const char *client, const char *reason, const char *code,
    const char *text)
{
	char reply[400];
	struct logline l;

	log_begin(&l, L_WARN, NULL, "session.deny");
	log_str(&l, "client", client);
	log_str(&l, "reason", reason);
	log_end(&l);
	snprintf(reply, sizeof(reply), "%s %s %s\r\n", code, ls->cfg->hostname, text);
	refuse(fd, reply);
}

static void
on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	struct listener *li = w->data;
	struct listeners *ls = li->owner;
	struct sockaddr_storage ss;
	socklen_t sl;
	char client[80];
	int fd, i;

	(void)revents;
	for (i = 0; i < ACCEPT_BATCH; i++) {
		sl = sizeof(ss);
		fd = accept4(li->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
			    errno == ECONNABORTED)
				return;
			log_simple(L_ERROR, "listener.accept", strerror(errno));
			return;
		}
		session_addr_str((struct sockaddr *)&ss, client, sizeof(client));
		if (!cidr_match(ls->cfg->allow, ls->cfg->nallow, (struct sockaddr *)&ss)) {
			deny(ls, fd, client, "allow", "554 5.7.1", "Access denied");
			continue;
		}
		if (ls->nsessions >= ls->cfg->max_sessions) {
			deny(ls, fd, client, "max_sessions", "421 4.3.2",
			    "Too many connections, try again later");
			continue;
		}
		ls->nsessions++;
		if (session_start(loop, ls->cfg, fd, (struct sockaddr *)&ss, session_done,
		    ls) == NULL) {
			ls->nsessions--;
			log_simple(L_ERROR, "session.start", "out of memory");
		}
	}
}

static int
bind_one(struct listeners *ls, const struct listen_addr *a)
{
	struct addrinfo hints, *res = NULL;
	struct sockaddr_storage ss;
	struct listener *li;
	socklen_t sl = sizeof(ss);
	char port[8], why[300];
	struct logline l;
	int fd = -1, one = 1, rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
	hints.ai_socktype = SOCK_STREAM;
	snprintf(port, sizeof(port), "%d", a->port);
	if ((rc = getaddrinfo(a->host, port, &hints, &res)) != 0) {
		snprintf(why, sizeof(why), "%s:%d: %s", a->host, a->port, gai_strerror(rc));
		goto fail;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto sysfail;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* [::]:25 must not swallow 0.0.0.0:25: each address is bound for itself. */
	if (res->ai_family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 511) != 0)
		goto sysfail;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
		goto sysfail;
	if ((li = calloc(1, sizeof(*li))) == NULL)
		goto sysfail;
	li->fd = fd;
	li->owner = ls;
	session_addr_str((struct sockaddr *)&ss, li->name, sizeof(li->name));
	ev_io_init(&li->io, on_accept, fd, EV_READ);
	li->io.data = li;
	ev_io_start(ls->loop, &li->io);
	li->next = ls->list;
	ls->list = li;
	freeaddrinfo(res);
	log_begin(&l, L_INFO, NULL, "proxy.listen");
	log_str(&l, "addr", li->name);
	log_end(&l);
	return (0);
sysfail:
	snprintf(why, sizeof(why), "%s:%d: %s", a->host, a->port, strerror(errno));
fail:
	log_begin(&l, L_ERROR, NULL, "proxy.listen");
	log_str(&l, "msg", why);
	log_end(&l);
	if (fd >= 0)
		close(fd);
	if (res != NULL)
		freeaddrinfo(res);
	return (-1);
}

struct listeners *
listeners_open(struct ev_loop *loop, struct config *cfg)
{
	struct listeners *ls;
	size_t i;

	if ((ls = calloc(1, sizeof(*ls))) == NULL)
		return (NULL);
	ls->loop = loop;
	ls->cfg = config_ref(cfg);
	for (i = 0; i < cfg->nlisten; i++) {
		if (bind_one(ls, &cfg->listen[i]) != 0) {
			listeners_free(ls);
			return (NULL);
		}
	}
	return (ls);
}

void
listeners_set_config(struct listeners *ls, struct config *cfg)
{
	config_ref(cfg);
	config_unref(ls->cfg);
	ls->cfg = cfg;
}

void
listeners_close(struct listeners *ls)
{
	struct listener *li, *next;

	for (li = ls->list; li != NULL; li = next) {
		next = li->next;
		ev_io_stop(ls->loop, &li->io);
		close(li->fd);
		free(li);
	}
	ls->list = NULL;
}

unsigned long
listeners_sessions(const struct listeners *ls)
{
	return (ls->nsessions);
}

void
listeners_free(struct listeners *ls)
{
	if (ls == NULL)
		return;
	listeners_close(ls);
	config_unref(ls->cfg);
	free(ls);
}
