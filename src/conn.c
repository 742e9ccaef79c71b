/*
 * One non-blocking socket, plain or TLS, driven by libev (the io layer). Owns connect,
 * the TLS handshake, buffered reads and writes with OpenSSL's want-read/want-write,
 * the one function that recomputes the watcher's mask, pause/resume for backpressure,
 * and delivering events (connected, TLS done, read, drained, error) to its owner.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>

#include "buf.h"
#include "conn.h"
#include "tlsctx.h"

/* One TLS record's worth per read or write: full-size records, few syscalls. */
#define CONN_IO_CHUNK	16384

enum { C_CONNECTING, C_HANDSHAKE, C_OPEN };

struct conn {
	struct ev_loop	*loop;
	ev_io		 io;
	int		 fd;
	int		 state;
	int		 mask;		/* events the watcher waits for now */
	int		 hs_want;	/* what the handshake waits for */
	SSL		*ssl;
	struct buf	 in, out;
	size_t		 lowat;		/* CONN_EV_DRAIN at or below this */
	size_t		 wretry;	/* length of an SSL_write to repeat */
	unsigned	 paused:1;
	unsigned	 eof:1;
	unsigned	 failed:1;
	unsigned	 read_wants_write:1;
	unsigned	 write_wants_read:1;
	unsigned	 tls_unreported:1;	/* the handshake finished inside conn_start_tls() */
	unsigned	 dirty:1;	/* on the flush list */
	unsigned	 ssl_starved:1;	/* SSL_read last wanted the socket */
	struct conn	*dprev, *dnext;
	conn_cb		*cb;
	void		*arg;
	unsigned long long nin, nout;
	char		 err[256];
};

static void conn_io(struct ev_loop *, ev_io *, int);
static int do_write(struct conn *);
static void update(struct conn *);

/*
 * Writes are sent when the loop is about to wait, not at each conn_write: a command
 * and its CRLF, a pipelined MAIL RCPT DATA, the replies to them, all that one turn of
 * the loop produced leaves in one send (one TLS record) instead of one per call. Each
 * worker (and the probe) runs one loop, so one list and one watcher do.
 */
static struct conn *dirty_head;
static ev_prepare flush_w;
static struct ev_loop *flush_loop;

static void
dirty_link(struct conn *c)
{
	if (c->dirty)
		return;
	c->dirty = 1;
	c->dnext = dirty_head;
	if (dirty_head != NULL)
		dirty_head->dprev = c;
	dirty_head = c;
}

static void
dirty_unlink(struct conn *c)
{
	if (!c->dirty)
		return;
	if (c->dprev != NULL)
		c->dprev->dnext = c->dnext;
	else
		dirty_head = c->dnext;
	if (c->dnext != NULL)
		c->dnext->dprev = c->dprev;
	c->dprev = c->dnext = NULL;
	c->dirty = 0;
}

/* Before the loop sleeps: send what this turn queued; a buffer that emptied says so. */
static void
flush_all(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct conn *c;
	int drained;

	(void)loop;
	(void)w;
	(void)revents;
	/* An owner's CONN_EV_DRAIN may write or free conns: take them one at a time. */
	while ((c = dirty_head) != NULL) {
		dirty_unlink(c);
		if (c->failed || c->state != C_OPEN)
			continue;
		drained = !c->write_wants_read && c->wretry == 0 && buf_len(&c->out) > 0 &&
		    do_write(c);
		if (c->failed)
			continue;	/* the error event is on its way */
		update(c);
		if (drained)
			c->cb(c, CONN_EV_DRAIN, c->arg);
	}
}

/* 0 when this conn's loop has the flush watcher, else -1 (write at once, as before). */
static int
flush_ready(struct conn *c)
{
	if (flush_loop == NULL) {
		flush_loop = c->loop;
		ev_prepare_init(&flush_w, flush_all);
		ev_prepare_start(flush_loop, &flush_w);
		ev_unref(flush_loop);	/* a pending flush alone keeps no loop running */
	}
	return (flush_loop == c->loop ? 0 : -1);
}

static void
set_nodelay(int fd)
{
	int one = 1;

	/* Replies are small and awaited: Nagle would only add latency. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static struct conn *
conn_alloc(struct ev_loop *loop, int fd, size_t incap, size_t outcap, conn_cb *cb, void *arg)
{
	struct conn *c;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return (NULL);
	c->loop = loop;
	c->fd = fd;
	buf_init(&c->in, incap);
	buf_init(&c->out, outcap);
	c->lowat = outcap / 4;
	c->cb = cb;
	c->arg = arg;
	ev_io_init(&c->io, conn_io, fd, 0);
	c->io.data = c;
	return (c);
}

/* Recompute what the watcher waits for; the one place the mask changes. */
static void
update(struct conn *c)
{
	int m = 0;

	if (c->failed)
		return;
	switch (c->state) {
	case C_CONNECTING:
		m = EV_WRITE;
		break;
	case C_HANDSHAKE:
		m = c->hs_want;
		break;
	default:
		if ((!c->eof && !c->paused && buf_room(&c->in) > 0) || c->write_wants_read)
			m |= EV_READ;
		if ((buf_len(&c->out) > 0 && !c->write_wants_read) || c->read_wants_write)
			m |= EV_WRITE;
		break;
	}
	if (m != c->mask) {
		ev_io_stop(c->loop, &c->io);
		ev_io_set(&c->io, c->fd, m);
		if (m != 0)
			ev_io_start(c->loop, &c->io);
		c->mask = m;
	}
	/*
	 * Records OpenSSL already holds (decrypted or read ahead) will not wake the socket;
	 * a partial one, once SSL_read has asked the socket for the rest, will.
	 */
	if (c->ssl != NULL && c->state == C_OPEN && (m & EV_READ) && !c->write_wants_read &&
	    !c->ssl_starved && SSL_has_pending(c->ssl))
		ev_feed_event(c->loop, &c->io, EV_CUSTOM);
}

/* Record the first failure and have it delivered from the loop, never re-entrantly. */
static void
conn_fail(struct conn *c, const char *what, const char *detail)
{
	if (c->failed)
		return;
	c->failed = 1;
	snprintf(c->err, sizeof(c->err), "%s%s", what, detail);
	ev_io_stop(c->loop, &c->io);
	c->mask = 0;
	ev_feed_event(c->loop, &c->io, EV_CUSTOM);
}

static void
ssl_fail(struct conn *c, const char *what, int sslerr, int r)
{
	char q[200], msg[240];
	long vr;

	tlsctx_errors(q, sizeof(q));
	if (c->state == C_HANDSHAKE && (vr = SSL_get_verify_result(c->ssl)) != X509_V_OK) {
		snprintf(msg, sizeof(msg), "certificate verify failed: %s",
		    X509_verify_cert_error_string(vr));
	} else if (q[0] != '\0')
		snprintf(msg, sizeof(msg), "%s", q);
	else if (sslerr == SSL_ERROR_SYSCALL && r == 0)
		snprintf(msg, sizeof(msg), "connection closed without TLS close_notify");
	else if (sslerr == SSL_ERROR_SYSCALL)
		snprintf(msg, sizeof(msg), "%s", strerror(errno ? errno : EIO));
	else
		snprintf(msg, sizeof(msg), "TLS error %d", sslerr);
	{
		char full[300];

		snprintf(full, sizeof(full), "%s: %s", what, msg);
		conn_fail(c, "", full);
	}
}

static int
handshake(struct conn *c)
{
	int r, e;

	ERR_clear_error();
	errno = 0;
	if ((r = SSL_do_handshake(c->ssl)) == 1) {
		c->state = C_OPEN;
		return (1);
	}
	e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ) {
		c->hs_want = EV_READ;
		return (0);
	}
	if (e == SSL_ERROR_WANT_WRITE) {
		c->hs_want = EV_WRITE;
		return (0);
	}
	ssl_fail(c, "TLS handshake", e, r);
	return (-1);
}

/* Send what we can; 1 if the output fell to the low-water mark, else 0. */
static int
do_write(struct conn *c)
{
	size_t before = buf_len(&c->out), n;
	ssize_t w;
	int r, e;

	c->write_wants_read = 0;
	while (buf_len(&c->out) > 0) {
		n = buf_len(&c->out);
		if (c->ssl != NULL) {
			/* SSL_write must be retried with the same length after a want-*. */
			if (c->wretry)
				n = c->wretry;
			else if (n > CONN_IO_CHUNK * 4)
				n = CONN_IO_CHUNK * 4;
			ERR_clear_error();
			errno = 0;
			r = SSL_write(c->ssl, buf_data(&c->out), (int)n);
			if (r > 0) {
				c->wretry = 0;
				buf_consume(&c->out, (size_t)r);
				c->nout += (unsigned long long)r;
				continue;
			}
			e = SSL_get_error(c->ssl, r);
			if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
				c->wretry = n;
				c->write_wants_read = e == SSL_ERROR_WANT_READ;
				break;
			}
			ssl_fail(c, "TLS write", e, r);
			return (0);
		}
		w = send(c->fd, buf_data(&c->out), n, MSG_NOSIGNAL);
		if (w > 0) {
			buf_consume(&c->out, (size_t)w);
			c->nout += (unsigned long long)w;
			if ((size_t)w < n)
				break;	/* the socket buffer is full: wait for EV_WRITE */
			continue;
		}
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			break;
		conn_fail(c, "write: ", strerror(w < 0 ? errno : EPIPE));
		return (0);
	}
	return (before > c->lowat && buf_len(&c->out) <= c->lowat) ||
	    (before > 0 && buf_len(&c->out) == 0);
}

/* Read what fits; 1 if anything new (data or EOF) arrived. */
static int
do_read(struct conn *c)
{
	size_t got;
	ssize_t r;
	char *p;
	int any = 0, e, sr;

	c->read_wants_write = 0;
	while (!c->eof && !c->paused) {
		if ((p = buf_reserve(&c->in, CONN_IO_CHUNK, &got)) == NULL)
			break;	/* full: update() looks at SSL_pending once it drains */
		if (got > CONN_IO_CHUNK)
			got = CONN_IO_CHUNK;
		if (c->ssl != NULL) {
			ERR_clear_error();
			errno = 0;
			sr = SSL_read(c->ssl, p, (int)got);
			if (sr > 0) {
				c->ssl_starved = 0;
				buf_commit(&c->in, (size_t)sr);
				c->nin += (unsigned long long)sr;
				any = 1;
				/*
				 * Read-ahead took what the socket had, up to a buffer's worth:
				 * nothing held back in OpenSSL means nothing more to read yet
				 * (the poll is level-triggered), so skip the EAGAIN read.
				 */
				if ((size_t)sr < got && !SSL_has_pending(c->ssl))
					break;
				continue;
			}
			e = SSL_get_error(c->ssl, sr);
			if (e == SSL_ERROR_WANT_READ) {
				c->ssl_starved = 1;
				break;
			}
			if (e == SSL_ERROR_WANT_WRITE) {
				c->read_wants_write = 1;
				break;
			}
			if (e == SSL_ERROR_ZERO_RETURN) {
				c->eof = 1;
				any = 1;
				break;
			}
			ssl_fail(c, "TLS read", e, sr);
			return (any);
		}
		r = recv(c->fd, p, got, 0);
		if (r > 0) {
			buf_commit(&c->in, (size_t)r);
			c->nin += (unsigned long long)r;
			any = 1;
			if ((size_t)r < got)
				break;	/* drained the socket; skip the EAGAIN round trip */
			continue;
		}
		if (r == 0) {
			c->eof = 1;
			any = 1;
			break;
		}
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			break;
		conn_fail(c, "read: ", strerror(errno));
		return (any);
	}
	/* A read that got nothing must not leave 16 KiB reserved on an idle connection. */
	if (buf_len(&c->in) == 0)
		buf_free(&c->in);
	return (any);
}

static void
conn_io(struct ev_loop *loop, ev_io *w, int revents)
{
	struct conn *c = w->data;
	int ev = 0, err;
	socklen_t len = sizeof(err);

	(void)loop;
	if (c->failed) {
		c->cb(c, CONN_EV_ERROR, c->arg);
		return;
	}
	if (c->state == C_CONNECTING) {
		if (!(revents & EV_WRITE))
			return;
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
			err = errno;
		if (err != 0) {
			conn_fail(c, "connect: ", strerror(err));
			return;	/* delivered by the event conn_fail() fed */
		}
		c->state = C_OPEN;
		update(c);
		c->cb(c, CONN_EV_CONNECTED, c->arg);
		return;
	}
	if (c->state == C_HANDSHAKE) {
		if (handshake(c) <= 0) {
			update(c);
			return;
		}
		c->tls_unreported = 1;
	}
	if (c->tls_unreported) {
		c->tls_unreported = 0;
		ev |= CONN_EV_TLS;
		/* The peer's first flight may already hold application data: read it now. */
		revents |= EV_READ;
	}
	if ((revents & (EV_WRITE | EV_CUSTOM)) || (c->write_wants_read && (revents & EV_READ)))
		if (buf_len(&c->out) > 0 && do_write(c))
			ev |= CONN_EV_DRAIN;
	if (!c->failed && ((revents & (EV_READ | EV_CUSTOM)) ||
	    (c->read_wants_write && (revents & EV_WRITE))))
		if (do_read(c))
			ev |= CONN_EV_READ;
	if (c->failed)
		return;	/* the error event is on its way */
	update(c);
	if (ev)
		c->cb(c, ev, c->arg);
}

struct conn *
conn_new(struct ev_loop *loop, int fd, size_t incap, size_t outcap, conn_cb *cb, void *arg)
{
	struct conn *c;

	if ((c = conn_alloc(loop, fd, incap, outcap, cb, arg)) == NULL)
		return (NULL);
	set_nodelay(fd);
	c->state = C_OPEN;
	update(c);
	return (c);
}

struct conn *
conn_connect(struct ev_loop *loop, const struct sockaddr *sa, socklen_t salen, size_t incap,
    size_t outcap, conn_cb *cb, void *arg, char *err, size_t errsize)
{
	struct conn *c;
	int fd;

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errsize, "socket: %s", strerror(errno));
		return (NULL);
	}
	set_nodelay(fd);
	if ((c = conn_alloc(loop, fd, incap, outcap, cb, arg)) == NULL) {
		snprintf(err, errsize, "out of memory");
		close(fd);
		return (NULL);
	}
	c->state = C_CONNECTING;
	if (connect(fd, sa, salen) != 0 && errno != EINPROGRESS) {
		/* Report it like a late failure so the owner has one path for both. */
		update(c);
		conn_fail(c, "connect: ", strerror(errno));
		return (c);
	}
	update(c);
	return (c);
}

void
conn_set_cb(struct conn *c, conn_cb *cb, void *arg)
{
	c->cb = cb;
	c->arg = arg;
}

int
conn_start_tls(struct conn *c, SSL *ssl)
{
	/* Only an open plain connection turns TLS (after connect or a STARTTLS reply). */
	assert(c->state == C_OPEN);
	if (buf_len(&c->in) > 0 || c->ssl != NULL) {
		SSL_free(ssl);
		return (-1);
	}
	if (SSL_set_fd(ssl, c->fd) != 1) {
		SSL_free(ssl);
		return (-1);
	}
	/* A record's header and body in one read, not two (update() looks in its buffer). */
	SSL_set_read_ahead(ssl, 1);
	c->ssl = ssl;
	c->state = C_HANDSHAKE;
	c->hs_want = EV_WRITE;
	/* Send the ClientHello now rather than after another trip through the loop. */
	if (handshake(c) < 0)
		return (0);	/* the error event is on its way */
	if (c->state == C_OPEN) {
		/*
		 * On loopback the server's whole flight can be back before SSL_do_handshake
		 * returns: report CONN_EV_TLS from the loop, as for a slower peer.
		 */
		c->tls_unreported = 1;
		update(c);
		ev_feed_event(c->loop, &c->io, EV_CUSTOM);
		return (0);
	}
	update(c);
	return (0);
}

const char *
conn_line(struct conn *c, size_t *lenp)
{
	return (buf_line(&c->in, lenp));
}

const char *
conn_peek(struct conn *c, size_t *lenp)
{
	*lenp = buf_len(&c->in);
	return (buf_data(&c->in));
}

void
conn_consume(struct conn *c, size_t n)
{
	assert(n <= buf_len(&c->in));
	buf_consume(&c->in, n);
	update(c);
}

int
conn_write(struct conn *c, const void *p, size_t n)
{
	if (c->failed)
		return (0);	/* the error event is on its way */
	if (buf_append(&c->out, p, n) != 0)
		return (-1);
	conn_wcommit(c, 0);
	return (0);
}

char *
conn_wreserve(struct conn *c, size_t n, size_t *gotp)
{
	return (buf_reserve(&c->out, n, gotp));
}

void
conn_wcommit(struct conn *c, size_t n)
{
	buf_commit(&c->out, n);
	if (c->failed || c->state != C_OPEN)
		return;
	if (c->write_wants_read || c->wretry != 0) {
		update(c);	/* a TLS write waits to be repeated: the socket says when */
		return;
	}
	/* A full record's worth goes now, while it is hot in the cache (the DATA path). */
	if (buf_len(&c->out) >= CONN_IO_CHUNK || flush_ready(c) != 0) {
		(void)do_write(c);
		update(c);
		return;
	}
	dirty_link(c);
}

size_t
conn_out_len(const struct conn *c)
{
	return (buf_len(&c->out));
}

size_t
conn_out_room(const struct conn *c)
{
	return (buf_room(&c->out));
}

size_t
conn_in_len(const struct conn *c)
{
	return (buf_len(&c->in));
}

void
conn_pause(struct conn *c, int paused)
{
	c->paused = paused != 0;
	update(c);
}

int
conn_eof(const struct conn *c)
{
	return (c->eof);
}

int
conn_failed(const struct conn *c)
{
	return (c->failed);
}

const char *
conn_error(const struct conn *c)
{
	return (c->failed ? c->err : "connection closed");
}

SSL *
conn_ssl(const struct conn *c)
{
	return (c->ssl);
}

int
conn_fd(const struct conn *c)
{
	return (c->fd);
}

unsigned long long
conn_bytes_in(const struct conn *c)
{
	return (c->nin);
}

unsigned long long
conn_bytes_out(const struct conn *c)
{
	return (c->nout);
}

void
conn_secret(struct conn *c, int on)
{
	c->in.secret = on;
	c->out.secret = on;
}

static void
conn_close(struct conn *c, int reset)
{
	struct linger lg = { 1, 0 };

	if (c == NULL)
		return;
	/* What was queued before a polite close (a QUIT, a last reply) still goes. */
	if (c->dirty && !reset && !c->failed && !c->write_wants_read && c->wretry == 0)
		(void)do_write(c);
	dirty_unlink(c);
	ev_io_stop(c->loop, &c->io);
	ev_clear_pending(c->loop, &c->io);
	if (c->ssl != NULL) {
		if (!reset && !c->failed && c->state == C_OPEN) {
			ERR_clear_error();
			(void)SSL_shutdown(c->ssl);
		}
		SSL_free(c->ssl);
	}
	ERR_clear_error();
	if (reset)
		(void)setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(c->fd);
	buf_free(&c->in);
	buf_free(&c->out);
	free(c);
}

void
conn_free(struct conn *c)
{
	conn_close(c, 0);
}

void
conn_abort(struct conn *c)
{
	conn_close(c, 1);
}
