/*
 * sink: the TLS SMTP server `make bench` relays to. It accepts every command, discards
 * message bodies as fast as it can find their end, and counts what it saw, so the figures
 * measure the relay in front of it and not the server behind it.
 *
 *   sink -c CERT -k KEY [-s ADDR:PORT] [-i ADDR:PORT] [-t THREADS]
 *
 * -s serves STARTTLS (plaintext greeting, EHLO, STARTTLS, then TLS), -i implicit TLS; port 0
 * lets the kernel pick, and the ports bound are printed as "starttls=P implicit=P" on stdout.
 * One epoll loop per thread (default: one per CPU), all sharing the listening sockets
 * (EPOLLEXCLUSIVE wakes one). Session tickets are on (OpenSSL's defaults: stateless TLS 1.3
 * tickets, TLS 1.2 tickets), so a client that keeps its session resumes.
 * AUTH PLAIN and LOGIN are accepted whatever the credentials. "XSTATS" (any time, no TLS
 * needed) answers "250 handshakes=H resumed=R messages=M auth=A bytes=B", the counters
 * since start; the bench reads them before and after a run for upstream connections per
 * message.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define TBUF	(256 * 1024)	/* per-thread read buffer: bodies are scanned in place */
#define LINEMAX	1024		/* a command line; longer gets 500 */
#define WBUFSZ	4096		/* replies waiting to be written */

enum cstate { C_HS, C_CMD, C_DATA, C_AUTH, C_CLOSING };

struct conn {
	int		 fd;
	SSL		*ssl;		/* NULL until STARTTLS (or at once when implicit) */
	int		 implicit;
	enum cstate	 st;
	int		 auth_left;	/* AUTH lines still to read (LOGIN: 2, PLAIN: 1) */
	int		 want_write;	/* OpenSSL wants the socket writable */
	uint32_t	 ev;		/* events registered with epoll */
	char		 tail[4];	/* last body bytes, for a terminator split across reads */
	size_t		 taillen;
	size_t		 llen;
	char		 line[LINEMAX];
	size_t		 wlen;
	char		 wbuf[WBUFSZ];
};

static SSL_CTX *ctx;
static int lfd_starttls = -1, lfd_implicit = -1;
static atomic_ulong n_hs, n_resumed, n_msgs, n_auth, n_bytes;

static const char EHLO_PLAIN[] = "250-sink.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
    "250 STARTTLS\r\n";
static const char EHLO_TLS[] = "250-sink.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
    "250 AUTH PLAIN LOGIN\r\n";

/* Queue a reply; -1 when the peer pipelined more than WBUFSZ of replies without reading. */
static int
reply(struct conn *c, const char *s, size_t n)
{
	if (c->wlen + n > sizeof(c->wbuf))
		return (-1);
	memcpy(c->wbuf + c->wlen, s, n);
	c->wlen += n;
	return (0);
}
#define REPLY(c, lit) reply((c), (lit), sizeof(lit) - 1)

/* Write what is queued; 0 (all written or would block) or -1 on a dead peer. */
static int
flush(struct conn *c)
{
	size_t off = 0;

	while (off < c->wlen) {
		if (c->ssl != NULL && c->st != C_HS) {
			ERR_clear_error();
			int r = SSL_write(c->ssl, c->wbuf + off, (int)(c->wlen - off));
			if (r <= 0) {
				int e = SSL_get_error(c->ssl, r);
				if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
					break;
				return (-1);
			}
			off += (size_t)r;
		} else {
			ssize_t r = write(c->fd, c->wbuf + off, c->wlen - off);
			if (r < 0) {
				if (errno == EAGAIN || errno == EINTR)
					break;
				return (-1);
			}
			off += (size_t)r;
		}
	}
	memmove(c->wbuf, c->wbuf + off, c->wlen - off);
	c->wlen -= off;
	return (0);
}

static void
start_tls(struct conn *c)
{
	c->ssl = SSL_new(ctx);
	SSL_set_fd(c->ssl, c->fd);
	SSL_set_accept_state(c->ssl);
	c->st = C_HS;
}

/* One complete command line (CRLF stripped); -1 closes the connection. */
static int
command(struct conn *c, char *l, size_t n, int more)
{
	char buf[160];

	if (c->st == C_AUTH) {
		if (--c->auth_left > 0)
			return (REPLY(c, "334 UGFzc3dvcmQ6\r\n"));
		c->st = C_CMD;
		atomic_fetch_add(&n_auth, 1);
		return (REPLY(c, "235 2.7.0 ok\r\n"));
	}
	l[n] = '\0';
	if (strncasecmp(l, "EHLO", 4) == 0 || strncasecmp(l, "HELO", 4) == 0) {
		if (c->ssl == NULL && !c->implicit)
			return (REPLY(c, EHLO_PLAIN));
		return (REPLY(c, EHLO_TLS));
	}
	if (strncasecmp(l, "MAIL", 4) == 0 || strncasecmp(l, "RCPT", 4) == 0 ||
	    strncasecmp(l, "RSET", 4) == 0 || strncasecmp(l, "NOOP", 4) == 0)
		return (REPLY(c, "250 2.0.0 ok\r\n"));
	if (strncasecmp(l, "DATA", 4) == 0) {
		c->st = C_DATA;
		/* The body may begin with ".\r\n": it follows the DATA line's CRLF. */
		memcpy(c->tail, "\r\n", 2);
		c->taillen = 2;
		return (REPLY(c, "354 go ahead\r\n"));
	}
	if (strncasecmp(l, "AUTH PLAIN", 10) == 0 || strncasecmp(l, "AUTH LOGIN", 10) == 0) {
		if (strncasecmp(l, "AUTH PLAIN ", 11) == 0 && n > 11) {
			atomic_fetch_add(&n_auth, 1);
			return (REPLY(c, "235 2.7.0 ok\r\n"));
		}
		c->st = C_AUTH;
		c->auth_left = strncasecmp(l, "AUTH LOGIN", 10) == 0 ? 2 : 1;
		return (c->auth_left == 2 ? REPLY(c, "334 VXNlcm5hbWU6\r\n") :
		    REPLY(c, "334 \r\n"));
	}
	if (strncasecmp(l, "STARTTLS", 8) == 0 && c->ssl == NULL && !c->implicit) {
		/* Bytes pipelined behind STARTTLS would be injected into TLS: refuse. */
		if (more || REPLY(c, "220 2.0.0 ready\r\n") == -1)
			return (-1);
		if (flush(c) == -1 || c->wlen > 0)
			return (-1);
		start_tls(c);
		return (0);
	}
	if (strncasecmp(l, "QUIT", 4) == 0) {
		c->st = C_CLOSING;
		return (REPLY(c, "221 2.0.0 bye\r\n"));
	}
	if (strncasecmp(l, "XSTATS", 6) == 0) {
		int k = snprintf(buf, sizeof(buf),
		    "250 handshakes=%lu resumed=%lu messages=%lu auth=%lu bytes=%lu\r\n",
		    atomic_load(&n_hs), atomic_load(&n_resumed), atomic_load(&n_msgs),
		    atomic_load(&n_auth), atomic_load(&n_bytes));
		return (reply(c, buf, (size_t)k));
	}
	return (REPLY(c, "500 5.5.1 unknown\r\n"));
}

/*
 * Find CRLF "." CRLF in a body chunk, also split across reads (c->tail holds the last
 * four bytes before it); the offset just past it, or -1 when the body goes on.
 */
static ssize_t
body_end(struct conn *c, const char *p, size_t n)
{
	char j[8];
	size_t k = n < 4 ? n : 4;
	const char *e;

	memcpy(j, c->tail, c->taillen);
	memcpy(j + c->taillen, p, k);
	e = memmem(j, c->taillen + k, "\r\n.\r\n", 5);
	if (e != NULL)
		return ((ssize_t)(e + 5 - j) - (ssize_t)c->taillen);
	e = memmem(p, n, "\r\n.\r\n", 5);
	if (e != NULL)
		return (e + 5 - p);
	if (n >= 4) {
		memcpy(c->tail, p + n - 4, 4);
		c->taillen = 4;
	} else {
		size_t keep = c->taillen + n > 4 ? 4 - n : c->taillen;
		memmove(c->tail, c->tail + c->taillen - keep, keep);
		memcpy(c->tail + keep, p, n);
		c->taillen = keep + n;
	}
	return (-1);
}

/* Bytes read from the peer; -1 closes. */
static int
input(struct conn *c, char *p, size_t n)
{
	while (n > 0 && c->st != C_CLOSING && c->st != C_HS) {
		if (c->st == C_DATA) {
			ssize_t end = body_end(c, p, n);
			if (end < 0) {
				atomic_fetch_add(&n_bytes, n);
				return (0);
			}
			atomic_fetch_add(&n_bytes, (size_t)end);
			atomic_fetch_add(&n_msgs, 1);
			c->st = C_CMD;
			p += end;
			n -= (size_t)end;
			if (REPLY(c, "250 2.0.0 queued\r\n") == -1)
				return (-1);
			continue;
		}
		char *nl = memchr(p, '\n', n);
		size_t take = nl != NULL ? (size_t)(nl - p) + 1 : n;
		if (c->llen + take > sizeof(c->line) - 1)
			return (-1);
		memcpy(c->line + c->llen, p, take);
		c->llen += take;
		p += take;
		n -= take;
		if (nl == NULL)
			return (0);
		size_t ll = c->llen - 1;
		if (ll > 0 && c->line[ll - 1] == '\r')
			ll--;
		c->llen = 0;
		if (command(c, c->line, ll, n > 0) == -1)
			return (-1);
	}
	return (n > 0 && c->st == C_HS ? -1 : 0);
}

/* TLS handshake progress; -1 on failure. */
static int
handshake(struct conn *c)
{
	ERR_clear_error();
	int r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		atomic_fetch_add(&n_hs, 1);
		if (SSL_session_reused(c->ssl))
			atomic_fetch_add(&n_resumed, 1);
		c->st = C_CMD;
		c->want_write = 0;
		if (c->implicit)
			return (REPLY(c, "220 sink.test ESMTP\r\n"));
		return (0);
	}
	int e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ) {
		c->want_write = 0;
		return (0);
	}
	if (e == SSL_ERROR_WANT_WRITE) {
		c->want_write = 1;
		return (0);
	}
	return (-1);
}

static void
conn_close(struct conn *c)
{
	if (c->ssl != NULL)
		SSL_free(c->ssl);
	close(c->fd);
	free(c);
}

static void
interest(int ep, struct conn *c)
{
	uint32_t ev = EPOLLIN | ((c->wlen > 0 || c->want_write) ? EPOLLOUT : 0);
	struct epoll_event e = { .events = ev, .data.ptr = c };

	if (ev != c->ev) {
		epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
		c->ev = ev;
	}
}

/* Readable or writable: make all the progress we can. */
static void
conn_io(int ep, struct conn *c, char *tb)
{
	int rounds;

	if (c->st == C_HS && handshake(c) == -1)
		goto out;
	if (flush(c) == -1)
		goto out;
	/*
	 * A bounded number of reads per wake-up, so one fast sender cannot starve the rest;
	 * but never leave records OpenSSL has read ahead: epoll would not report them.
	 */
	for (rounds = 0; (rounds < 64 || (c->ssl != NULL && SSL_has_pending(c->ssl))) &&
	    c->st != C_HS && c->st != C_CLOSING; rounds++) {
		ssize_t r;

		if (c->ssl != NULL) {
			ERR_clear_error();
			int k = SSL_read(c->ssl, tb, TBUF);
			if (k <= 0) {
				int e = SSL_get_error(c->ssl, k);
				if (e == SSL_ERROR_WANT_READ)
					break;
				if (e == SSL_ERROR_WANT_WRITE) {
					c->want_write = 1;
					break;
				}
				goto out;
			}
			c->want_write = 0;
			r = k;
		} else {
			r = read(c->fd, tb, TBUF);
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				break;
			if (r <= 0)
				goto out;
		}
		if (input(c, tb, (size_t)r) == -1)
			goto out;
		/*
		 * STARTTLS: the handshake may finish at once, with the client's next command
		 * already read ahead into OpenSSL's buffer, where epoll cannot see it: go on
		 * reading then.
		 */
		if (c->st == C_HS && handshake(c) == -1)
			goto out;
	}
	if (flush(c) == -1)
		goto out;
	if (c->st == C_CLOSING && c->wlen == 0)
		goto out;
	interest(ep, c);
	return;
out:
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	conn_close(c);
}

static void
accept_all(int ep, int lfd)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		struct conn *c = calloc(1, sizeof(*c));
		if (c == NULL) {
			close(fd);
			return;
		}
		c->fd = fd;
		c->implicit = lfd == lfd_implicit;
		c->st = C_CMD;
		if (c->implicit)
			start_tls(c);
		else
			REPLY(c, "220 sink.test ESMTP\r\n");
		c->ev = EPOLLIN | EPOLLOUT;
		struct epoll_event e = { .events = c->ev, .data.ptr = c };
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) == -1)
			conn_close(c);
	}
}

static void *
loop(void *arg)
{
	static const int L_ST = 1, L_IM = 2;
	struct epoll_event evs[256];
	char *tb = malloc(TBUF);
	int ep = epoll_create1(EPOLL_CLOEXEC);

	(void)arg;
	if (tb == NULL || ep < 0) {
		perror("sink: loop");
		exit(1);
	}
	if (lfd_starttls >= 0) {
		struct epoll_event e = { .events = EPOLLIN | EPOLLEXCLUSIVE,
		    .data.ptr = (void *)&L_ST };
		epoll_ctl(ep, EPOLL_CTL_ADD, lfd_starttls, &e);
	}
	if (lfd_implicit >= 0) {
		struct epoll_event e = { .events = EPOLLIN | EPOLLEXCLUSIVE,
		    .data.ptr = (void *)&L_IM };
		epoll_ctl(ep, EPOLL_CTL_ADD, lfd_implicit, &e);
	}
	for (;;) {
		int n = epoll_wait(ep, evs, 256, -1);
		for (int i = 0; i < n; i++) {
			if (evs[i].data.ptr == &L_ST)
				accept_all(ep, lfd_starttls);
			else if (evs[i].data.ptr == &L_IM)
				accept_all(ep, lfd_implicit);
			else
				conn_io(ep, evs[i].data.ptr, tb);
		}
	}
	return (NULL);
}

/* Listen on "a.b.c.d:port"; the bound port in *portp. */
static int
listen_on(const char *spec, int *portp)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	char host[64];
	const char *colon = strrchr(spec, ':');
	int one = 1, fd;

	if (colon == NULL || (size_t)(colon - spec) >= sizeof(host))
		return (-1);
	memcpy(host, spec, (size_t)(colon - spec));
	host[colon - spec] = '\0';
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		return (-1);
	sa.sin_port = htons((uint16_t)atoi(colon + 1));
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
		return (-1);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1 || listen(fd, 4096) == -1 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) == -1) {
		close(fd);
		return (-1);
	}
	*portp = ntohs(sa.sin_port);
	return (fd);
}

int
main(int argc, char **argv)
{
	const char *cert = NULL, *key = NULL, *st = NULL, *im = NULL;
	long nthreads = sysconf(_SC_NPROCESSORS_ONLN);
	int opt, pst = 0, pim = 0;

	while ((opt = getopt(argc, argv, "c:k:s:i:t:")) != -1) {
		switch (opt) {
		case 'c': cert = optarg; break;
		case 'k': key = optarg; break;
		case 's': st = optarg; break;
		case 'i': im = optarg; break;
		case 't': nthreads = atol(optarg); break;
		default: goto usage;
		}
	}
	if (cert == NULL || key == NULL || (st == NULL && im == NULL) || nthreads < 1)
		goto usage;
	signal(SIGPIPE, SIG_IGN);
	ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL || SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		ERR_print_errors_fp(stderr);
		return (1);
	}
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"sink", 4);
	/* Several records per read(2), not a header and a body read for each one. */
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_default_read_buffer_len(ctx, 64 * 1024);
	if ((st != NULL && (lfd_starttls = listen_on(st, &pst)) < 0) ||
	    (im != NULL && (lfd_implicit = listen_on(im, &pim)) < 0)) {
		perror("sink: listen");
		return (1);
	}
	printf("starttls=%d implicit=%d\n", pst, pim);
	fflush(stdout);
	for (long i = 1; i < nthreads; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, loop, NULL) != 0) {
			perror("sink: pthread_create");
			return (1);
		}
	}
	loop(NULL);
	return (0);
usage:
	fprintf(stderr, "usage: sink -c CERT -k KEY [-s ADDR:PORT] [-i ADDR:PORT] "
	    "[-t THREADS]\n");
	return (2);
}
