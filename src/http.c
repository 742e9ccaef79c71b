/*
 * HTTPS POSTs on the event loop (see http.h): libcurl's multi interface, its sockets
 * watched by ev_io and its one timeout by an ev_timer, the way curl's "multi_socket"
 * API is meant to be driven. DNS goes through libcurl's threaded resolver, so nothing
 * here blocks the loop.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <ev.h>
#include <openssl/crypto.h>

#include "http.h"

/* A token answer is a few KB; anything past this is not one. */
#define HTTP_BODY_MAX	65536

struct sockw {
	ev_io		 io;
	curl_socket_t	 fd;
	struct sockw	*prev, *next;
};

struct http_req {
	CURL		*easy;
	char		*form;
	size_t		 formlen;
	char		*body;
	size_t		 len;
	long		 timeout;
	http_cb		*cb;
	void		*arg;
	int		 too_big;
	char		 err[CURL_ERROR_SIZE];
	struct http_req	*prev, *next;	/* every request on its way */
};

static struct ev_loop *loop;
static CURLM *multi;
static ev_timer timer;
static struct sockw *socks;
static struct http_req *reqs;
/* In a forked child: what belongs to the parent's requests (volatile: kept, never read). */
static struct {
	CURLM		*volatile multi;
	struct http_req	*volatile reqs;
} orphans;

static void done(void);

static void
on_io(struct ev_loop *l, ev_io *w, int revents)
{
	struct sockw *s = w->data;
	int running, action = 0;

	(void)l;
	if (revents & EV_READ)
		action |= CURL_CSELECT_IN;
	if (revents & EV_WRITE)
		action |= CURL_CSELECT_OUT;
	curl_multi_socket_action(multi, s->fd, action, &running);
	done();
}

static void
on_timer(struct ev_loop *l, ev_timer *w, int revents)
{
	int running;

	(void)l;
	(void)w;
	(void)revents;
	curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
	done();
}

/* libcurl says which sockets to watch for what. */
static int
sock_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *sockp)
{
	struct sockw *s = sockp;
	int ev = 0;

	(void)e;
	(void)userp;
	if (what == CURL_POLL_REMOVE) {
		if (s != NULL) {
			ev_io_stop(loop, &s->io);
			if (s->prev != NULL)
				s->prev->next = s->next;
			else
				socks = s->next;
			if (s->next != NULL)
				s->next->prev = s->prev;
			curl_multi_assign(multi, fd, NULL);
			free(s);
		}
		return (0);
	}
	if (s == NULL) {
		if ((s = calloc(1, sizeof(*s))) == NULL)
			return (-1);
		s->fd = fd;
		s->next = socks;
		if (socks != NULL)
			socks->prev = s;
		socks = s;
		curl_multi_assign(multi, fd, s);
	} else {
		ev_io_stop(loop, &s->io);
	}
	if (what & CURL_POLL_IN)
		ev |= EV_READ;
	if (what & CURL_POLL_OUT)
		ev |= EV_WRITE;
	ev_io_init(&s->io, on_io, fd, ev);
	s->io.data = s;
	ev_io_start(loop, &s->io);
	return (0);
}

/* libcurl's one timeout; 0 means "call me soon", never from inside this callback. */
static int
timer_cb(CURLM *m, long ms, void *userp)
{
	(void)m;
	(void)userp;
	ev_timer_stop(loop, &timer);
	if (ms >= 0) {
		ev_timer_set(&timer, (double)ms / 1000., 0.);
		ev_timer_start(loop, &timer);
	}
	return (0);
}

static size_t
write_cb(char *p, size_t size, size_t n, void *arg)
{
	struct http_req *r = arg;
	size_t len = size * n;
	char *nb;

	if (r->len + len >= HTTP_BODY_MAX) {
		r->too_big = 1;
		return (0);
	}
	/* Grown by hand so an old copy of a token is wiped, not left to realloc. */
	if ((nb = malloc(r->len + len + 1)) == NULL)
		return (0);
	if (r->body != NULL) {
		memcpy(nb, r->body, r->len);
		OPENSSL_cleanse(r->body, r->len);
		free(r->body);
	}
	memcpy(nb + r->len, p, len);
	r->body = nb;
	r->len += len;
	r->body[r->len] = '\0';
	return (len);
}

static void
req_free(struct http_req *r)
{
	if (r->prev != NULL)
		r->prev->next = r->next;
	else
		reqs = r->next;
	if (r->next != NULL)
		r->next->prev = r->prev;
	curl_multi_remove_handle(multi, r->easy);
	curl_easy_cleanup(r->easy);
	OPENSSL_cleanse(r->form, r->formlen);
	free(r->form);
	if (r->body != NULL) {
		OPENSSL_cleanse(r->body, r->len);
		free(r->body);
	}
	free(r);
}

/* Hand every finished request to its callback. */
static void
done(void)
{
	struct http_req *r;
	char err[CURL_ERROR_SIZE + 64];
	CURLMsg *m;
	long status = 0;
	int left;

	while ((m = curl_multi_info_read(multi, &left)) != NULL) {
		if (m->msg != CURLMSG_DONE)
			continue;
		r = NULL;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
		if (r == NULL)
			continue;
		status = 0;
		err[0] = '\0';
		if (m->data.result == CURLE_OK)
			curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
		else if (r->too_big)
			snprintf(err, sizeof(err), "the answer is larger than %d bytes", HTTP_BODY_MAX);
		else if (m->data.result == CURLE_OPERATION_TIMEDOUT)
			snprintf(err, sizeof(err), "timeout after %ld s", r->timeout);
		else
			snprintf(err, sizeof(err), "%s", r->err[0] ? r->err :
			    curl_easy_strerror(m->data.result));
		/* m belongs to the handle: done with it before the callback may add more. */
		r->cb(r->arg, status, r->body != NULL ? r->body : "", r->len, err);
		req_free(r);
	}
}

int
http_init(struct ev_loop *l)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || (multi = curl_multi_init()) == NULL)
		return (-1);
	loop = l;
	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	ev_timer_init(&timer, on_timer, 0., 0.);
	return (0);
}

struct http_req *
http_post(const char *url, const char *form, const char *ca_file, long timeout, http_cb *cb,
    void *arg)
{
	struct http_req *r;
	CURL *e;

	if (multi == NULL || (r = calloc(1, sizeof(*r))) == NULL)
		return (NULL);
	if ((r->easy = e = curl_easy_init()) == NULL || (r->form = strdup(form)) == NULL) {
		curl_easy_cleanup(e);
		free(r);
		return (NULL);
	}
	r->formlen = strlen(form);
	r->timeout = timeout;
	r->cb = cb;
	r->arg = arg;
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->form);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)r->formlen);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->err);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, timeout);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	/* A secret goes in the body: HTTPS only, verified, no redirects. */
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "smtp-tls-proxy");
	if (ca_file[0] != '\0')
		curl_easy_setopt(e, CURLOPT_CAINFO, ca_file);
	r->next = reqs;
	if (reqs != NULL)
		reqs->prev = r;
	reqs = r;
	if (curl_multi_add_handle(multi, e) != CURLM_OK) {
		req_free(r);
		return (NULL);
	}
	return (r);
}

void
http_cancel(struct http_req *r)
{
	if (r != NULL)
		req_free(r);
}

void
http_forget(struct ev_loop *l)
{
	struct sockw *s, *next;

	ev_timer_stop(l, &timer);
	for (s = socks; s != NULL; s = next) {
		next = s->next;
		ev_io_stop(l, &s->io);
		close(s->fd);
		free(s);
	}
	socks = NULL;
	/*
	 * The handles stay as they are (cleaning them up would talk on the parent's sockets),
	 * still pointed to: a copy of the parent's memory is not a leak.
	 */
	orphans.multi = multi;
	orphans.reqs = reqs;
	reqs = NULL;
	multi = NULL;
}

void
http_shutdown(void)
{
	if (multi == NULL)
		return;
	while (reqs != NULL)
		req_free(reqs);
	curl_multi_cleanup(multi);
	multi = NULL;
	ev_timer_stop(loop, &timer);
	curl_global_cleanup();
}
