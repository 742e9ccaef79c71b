/*
 * Name resolution off the event loop: getaddrinfo() in a short-lived thread that
 * reports back with ev_async; numeric hosts answered without one, always from the loop.
 */
#include <sys/socket.h>
#include <netdb.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "resolve.h"

struct resolve {
	char		 host[256];
	char		 port[8];
	struct addrinfo	*res;
	int		 gai;
	const char	*why;		/* our own failure, instead of gai */
	int		 cancelled;
	resolve_cb	*cb;
	void		*arg;
	struct resolve	*next;
};

static struct ev_loop *rloop;
static ev_async rasync;
static pthread_mutex_t rlock = PTHREAD_MUTEX_INITIALIZER;
static struct resolve *rdone;	/* finished lookups waiting for the loop */
static int rrunning;

static void
deliver(struct resolve *r)
{
	char why[300];

	if (r->cancelled) {
		if (r->res != NULL)
			freeaddrinfo(r->res);
	} else if (r->why != NULL) {
		r->cb(r->arg, NULL, r->why);
	} else if (r->gai != 0) {
		snprintf(why, sizeof(why), "cannot resolve %s: %s", r->host, gai_strerror(r->gai));
		r->cb(r->arg, NULL, why);
	} else
		r->cb(r->arg, r->res, NULL);
	free(r);
}

static void
on_async(struct ev_loop *loop, ev_async *w, int revents)
{
	struct resolve *list, *next;

	(void)loop;
	(void)w;
	(void)revents;
	pthread_mutex_lock(&rlock);
	list = rdone;
	rdone = NULL;
	pthread_mutex_unlock(&rlock);
	for (; list != NULL; list = next) {
		next = list->next;
		deliver(list);
	}
}

static void
lookup(struct resolve *r, int flags)
{
	struct addrinfo hints;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = flags;
	r->gai = getaddrinfo(r->host, r->port, &hints, &r->res);
}

/* Hand a finished lookup to the loop (any thread). */
static void
finish(struct resolve *r)
{
	pthread_mutex_lock(&rlock);
	r->next = rdone;
	rdone = r;
	pthread_mutex_unlock(&rlock);
	ev_async_send(rloop, &rasync);
}

static void *
worker(void *arg)
{
	struct resolve *r = arg;

	/* No AI_ADDRCONFIG: an address we cannot reach fails fast and the next is tried. */
	lookup(r, 0);
	pthread_mutex_lock(&rlock);
	rrunning--;
	pthread_mutex_unlock(&rlock);
	finish(r);
	return (NULL);
}

int
resolve_init(struct ev_loop *loop)
{
	rloop = loop;
	ev_async_init(&rasync, on_async);
	ev_async_start(loop, &rasync);
	ev_unref(loop);		/* a pending lookup alone should not keep the loop alive */
	return (0);
}

struct resolve *
resolve_start(const char *host, int port, resolve_cb *cb, void *arg)
{
	struct resolve *r;
	pthread_attr_t attr;
	pthread_t t;

	if ((r = calloc(1, sizeof(*r))) == NULL)
		return (NULL);
	snprintf(r->host, sizeof(r->host), "%s", host);
	snprintf(r->port, sizeof(r->port), "%d", port);
	r->cb = cb;
	r->arg = arg;
	/*
	 * An address needs no DNS and no thread, but it is still answered from the
	 * loop: a callback inside resolve_start() could free its caller under it.
	 */
	lookup(r, AI_NUMERICHOST);
	if (r->gai == 0) {
		finish(r);
		return (r);
	}
	r->gai = 0;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	pthread_mutex_lock(&rlock);
	rrunning++;
	pthread_mutex_unlock(&rlock);
	if (pthread_create(&t, &attr, worker, r) != 0) {
		pthread_mutex_lock(&rlock);
		rrunning--;
		pthread_mutex_unlock(&rlock);
		pthread_attr_destroy(&attr);
		r->why = "cannot start a resolver thread";
		finish(r);
		return (r);
	}
	pthread_attr_destroy(&attr);
	return (r);
}

void
resolve_cancel(struct resolve *r)
{
	if (r == NULL)
		return;
	pthread_mutex_lock(&rlock);
	r->cancelled = 1;
	pthread_mutex_unlock(&rlock);
}

void
resolve_shutdown(void)
{
	struct timespec ts = { 0, 10 * 1000 * 1000 };
	int i, left;

	for (i = 0; i < 100; i++) {
		pthread_mutex_lock(&rlock);
		left = rrunning;
		pthread_mutex_unlock(&rlock);
		if (left == 0)
			break;
		nanosleep(&ts, NULL);
	}
	if (rloop != NULL)
		on_async(rloop, &rasync, 0);
}
