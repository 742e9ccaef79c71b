/*
 * loadgen: the SMTP client `make bench` drives, a few blocking threads (one per
 * concurrent session), plaintext to a relay or, for the direct baseline, TLS straight to the
 * sink. It prints one line of key=value results, including its own CPU time, so the bench
 * can tell when the client is the bottleneck.
 *
 *   loadgen [-H HOST] -p PORT [-T starttls|implicit -A CAFILE -N NAME] [-a] [-P] MODE ...
 *
 *   big SIZE_MB          one session, one message of SIZE_MB MB: mbps (354 to 250)
 *   sessions N C         N sessions, C at a time, one 1 KB message each: rate, lat_p50_ms
 *   latency N            N sessions one after another: lat_p50_ms, lat_p90_ms
 *   msgs N C             N 1 KB messages over C sessions: rate
 *   idle N C             open N sessions (C threads; greeting and EHLO), print
 *                        "ready opened=K", hold them until stdin has a line or ends,
 *                        then QUIT them all
 *
 * -a sends AUTH PLAIN (what a device behind stunnel must do; the proxy logs in itself),
 * -P pipelines MAIL, RCPT and DATA when the server offers PIPELINING. The latency of a
 * session is connect to the 250 for its first MAIL: the moment it can hand over mail,
 * login included. Any failed reply makes the run fail (exit 1), so a broken relay cannot
 * post a good figure.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

enum tlsmode { T_NONE, T_STARTTLS, T_IMPLICIT };

struct cx {
	int	 fd;
	SSL	*ssl;
	int	 pipelining;
	size_t	 rlen, roff;
	char	 rbuf[4096];
};

static const char *host = "127.0.0.1", *ca, *sni = "mail.test";
static int port, do_auth, do_pipeline;
static enum tlsmode tls;
static SSL_CTX *ctx;
static char *body1k;
static size_t body1k_len;
static atomic_long next_job, failures, done_msgs;
static long njobs;
static double *lat;		/* per-session latency, ms; indexed by job */
static __thread SSL_SESSION *last_sess;	/* resumed by the thread's next session, as relays do */

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (ts.tv_sec + ts.tv_nsec / 1e9);
}

static int
wr(struct cx *c, const void *p, size_t n)
{
	const char *s = p;

	while (n > 0) {
		ssize_t r;
		if (c->ssl != NULL) {
			int k = SSL_write(c->ssl, s, n > (1 << 30) ? (1 << 30) : (int)n);
			r = k > 0 ? k : -1;
		} else {
			r = write(c->fd, s, n);
			if (r < 0 && errno == EINTR)
				continue;
		}
		if (r <= 0)
			return (-1);
		s += r;
		n -= (size_t)r;
	}
	return (0);
}

static int
wrs(struct cx *c, const char *s)
{
	return (wr(c, s, strlen(s)));
}

/* One whole reply (multi-line too); its code, or -1. Sets pipelining from an EHLO reply. */
static int
reply(struct cx *c)
{
	char line[1024];
	size_t ll = 0;

	for (;;) {
		if (c->roff == c->rlen) {
			ssize_t r;
			if (c->ssl != NULL) {
				int k = SSL_read(c->ssl, c->rbuf, sizeof(c->rbuf));
				r = k > 0 ? k : -1;
			} else {
				do
					r = read(c->fd, c->rbuf, sizeof(c->rbuf));
				while (r < 0 && errno == EINTR);
			}
			if (r <= 0)
				return (-1);
			c->rlen = (size_t)r;
			c->roff = 0;
		}
		char ch = c->rbuf[c->roff++];
		if (ll < sizeof(line) - 1)
			line[ll++] = ch;
		if (ch != '\n')
			continue;
		line[ll] = '\0';
		if (ll < 4)
			return (-1);
		if (strncasecmp(line + 4, "PIPELINING", 10) == 0)
			c->pipelining = 1;
		if (line[3] == ' ' || line[3] == '\r')
			return (atoi(line));
		ll = 0;
	}
}

static int
expect(struct cx *c, int code)
{
	int r = reply(c);

	if (r != code) {
		if (atomic_fetch_add(&failures, 1) < 5)
			fprintf(stderr, "loadgen: expected %d, got %d\n", code, r);
		return (-1);
	}
	return (0);
}

static int
handshake(struct cx *c)
{
	c->ssl = SSL_new(ctx);
	SSL_set_fd(c->ssl, c->fd);
	SSL_set_tlsext_host_name(c->ssl, sni);
	SSL_set1_host(c->ssl, sni);
	if (last_sess != NULL)
		SSL_set_session(c->ssl, last_sess);
	if (SSL_connect(c->ssl) != 1) {
		ERR_print_errors_fp(stderr);
		return (-1);
	}
	return (0);
}

static void
cx_close(struct cx *c)
{
	if (c->ssl != NULL) {
		SSL_SESSION *s = SSL_get1_session(c->ssl);
		if (s != NULL && SSL_SESSION_is_resumable(s)) {
			SSL_SESSION_free(last_sess);
			last_sess = s;
		} else
			SSL_SESSION_free(s);
		SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* Connect, greeting, EHLO (STARTTLS and EHLO again for the direct run); 0 or -1. */
static int
cx_open(struct cx *c)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int one = 1;

	memset(c, 0, sizeof(*c));
	inet_pton(AF_INET, host, &sa.sin_addr);
	if ((c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
		perror("loadgen: socket");
		return (-1);
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
		perror("loadgen: connect");
		return (-1);
	}
	if (tls == T_IMPLICIT && handshake(c) == -1)
		return (-1);
	if (expect(c, 220) == -1 || wrs(c, "EHLO bench.test\r\n") == -1 || expect(c, 250) == -1)
		return (-1);
	if (tls == T_STARTTLS) {
		if (wrs(c, "STARTTLS\r\n") == -1 || expect(c, 220) == -1 || handshake(c) == -1)
			return (-1);
		c->pipelining = 0;
		if (wrs(c, "EHLO bench.test\r\n") == -1 || expect(c, 250) == -1)
			return (-1);
	}
	/* AUTH PLAIN of "\0bench\0secret". */
	if (do_auth && (wrs(c, "AUTH PLAIN AGJlbmNoAHNlY3JldA==\r\n") == -1 ||
	    expect(c, 235) == -1))
		return (-1);
	return (0);
}

/* MAIL, RCPT, DATA (pipelined when we may), then the body; *t_mail when MAIL got 250. */
static int
cx_send(struct cx *c, const char *body, size_t len, double *t_mail)
{
	static const char env[] = "MAIL FROM:<dev@bench.test>\r\nRCPT TO:<to@bench.test>\r\n"
	    "DATA\r\n";

	if (do_pipeline && c->pipelining) {
		if (wr(c, env, sizeof(env) - 1) == -1 || expect(c, 250) == -1)
			return (-1);
		if (t_mail != NULL)
			*t_mail = now();
		if (expect(c, 250) == -1 || expect(c, 354) == -1)
			return (-1);
	} else {
		if (wrs(c, "MAIL FROM:<dev@bench.test>\r\n") == -1 || expect(c, 250) == -1)
			return (-1);
		if (t_mail != NULL)
			*t_mail = now();
		if (wrs(c, "RCPT TO:<to@bench.test>\r\n") == -1 || expect(c, 250) == -1 ||
		    wrs(c, "DATA\r\n") == -1 || expect(c, 354) == -1)
			return (-1);
	}
	if (body != NULL && (wr(c, body, len) == -1 || wrs(c, ".\r\n") == -1 ||
	    expect(c, 250) == -1))
		return (-1);
	atomic_fetch_add(&done_msgs, 1);
	return (0);
}

static int
cx_quit(struct cx *c)
{
	int r = wrs(c, "QUIT\r\n") == -1 || expect(c, 221) == -1 ? -1 : 0;

	cx_close(c);
	return (r);
}

/* sessions / latency: take jobs until none is left, one session with one message each. */
static void *
run_sessions(void *arg)
{
	struct cx *c = malloc(sizeof(*c));
	long j;

	(void)arg;
	while ((j = atomic_fetch_add(&next_job, 1)) < njobs) {
		double t0 = now(), tm = 0;
		if (cx_open(c) == -1 || cx_send(c, body1k, body1k_len, &tm) == -1 ||
		    cx_quit(c) == -1) {
			atomic_fetch_add(&failures, 1);
			cx_close(c);
			continue;
		}
		lat[j] = (tm - t0) * 1e3;
	}
	free(c);
	return (NULL);
}

struct msgjob {
	long	 n;
};

/* msgs: one session carrying n messages. */
static void *
run_msgs(void *arg)
{
	struct msgjob *m = arg;
	struct cx *c = malloc(sizeof(*c));

	if (cx_open(c) == -1) {
		atomic_fetch_add(&failures, 1);
		cx_close(c);
		free(c);
		return (NULL);
	}
	for (long i = 0; i < m->n; i++)
		if (cx_send(c, body1k, body1k_len, NULL) == -1) {
			atomic_fetch_add(&failures, 1);
			break;
		}
	if (cx_quit(c) == -1)
		atomic_fetch_add(&failures, 1);
	free(c);
	return (NULL);
}

struct idlejob {
	long		 n;
	struct cx	*cs;
	long		 opened;
};

/* idle: open n sessions and keep them (connect, greeting, EHLO). */
static void *
run_idle(void *arg)
{
	struct idlejob *ij = arg;

	for (long i = 0; i < ij->n; i++) {
		if (cx_open(&ij->cs[i]) == -1) {
			atomic_fetch_add(&failures, 1);
			cx_close(&ij->cs[i]);
			continue;
		}
		ij->opened++;
	}
	return (NULL);
}

static int
cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x < y ? -1 : x > y);
}

static double
cpu_ms(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ((ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
	    (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3);
}

static void
percentiles(long n, double *p50, double *p90)
{
	qsort(lat, (size_t)n, sizeof(*lat), cmp_d);
	*p50 = n > 0 ? lat[n / 2] : 0;
	*p90 = n > 0 ? lat[n * 9 / 10] : 0;
}

static int
threads(long nt, void *(*fn)(void *), void *args, size_t argsz)
{
	pthread_t *t = calloc((size_t)nt, sizeof(*t));
	pthread_attr_t at;

	pthread_attr_init(&at);
	pthread_attr_setstacksize(&at, 256 * 1024);
	for (long i = 0; i < nt; i++)
		if (pthread_create(&t[i], &at, fn, args == NULL ? NULL :
		    (char *)args + (size_t)i * argsz) != 0) {
			perror("loadgen: pthread_create");
			return (-1);
		}
	for (long i = 0; i < nt; i++)
		pthread_join(t[i], NULL);
	free(t);
	return (0);
}

static char *
make_body(size_t size, size_t *lenp)
{
	static const char line[] = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, "
	    "sed do eiusmod tempo\r\n";
	size_t ll = sizeof(line) - 1, n = (size + ll - 1) / ll * ll;
	char *b = malloc(n);
	static const char hdr[] = "Subject: bench\r\n\r\n";

	for (size_t o = 0; o < n; o += ll)
		memcpy(b + o, line, ll);
	memcpy(b, hdr, sizeof(hdr) - 1);
	*lenp = n;
	return (b);
}

int
main(int argc, char **argv)
{
	int opt;
	double t0, t1, c0 = cpu_ms(), p50, p90;

	while ((opt = getopt(argc, argv, "H:p:T:A:N:aP")) != -1) {
		switch (opt) {
		case 'H': host = optarg; break;
		case 'p': port = atoi(optarg); break;
		case 'T':
			tls = strcmp(optarg, "implicit") == 0 ? T_IMPLICIT :
			    strcmp(optarg, "starttls") == 0 ? T_STARTTLS : T_NONE;
			break;
		case 'A': ca = optarg; break;
		case 'N': sni = optarg; break;
		case 'a': do_auth = 1; break;
		case 'P': do_pipeline = 1; break;
		default: goto usage;
		}
	}
	argc -= optind;
	argv += optind;
	if (port <= 0 || argc < 2)
		goto usage;
	signal(SIGPIPE, SIG_IGN);
	if (tls != T_NONE) {
		ctx = SSL_CTX_new(TLS_client_method());
		if (ca == NULL || SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
			goto usage;
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	}
	body1k = make_body(1024, &body1k_len);
	long n = atol(argv[1]), conc = argc > 2 ? atol(argv[2]) : 1;
	if (n < 1 || conc < 1)
		goto usage;

	if (strcmp(argv[0], "big") == 0) {
		size_t len;
		char *big = make_body((size_t)n << 20, &len);
		struct cx *c = malloc(sizeof(*c));
		if (cx_open(c) == -1 || cx_send(c, NULL, 0, NULL) == -1)
			return (1);
		t0 = now();
		/* Written in 1 MB pieces: a device streams, it does not hand over 200 MB. */
		for (size_t o = 0; o < len; o += 1 << 20) {
			size_t k = len - o < (1 << 20) ? len - o : (1 << 20);
			if (wr(c, big + o, k) == -1)
				return (1);
		}
		if (wrs(c, ".\r\n") == -1 || expect(c, 250) == -1)
			return (1);
		t1 = now();
		if (cx_quit(c) == -1)
			return (1);
		printf("mbps=%.1f secs=%.3f bytes=%zu cpu_ms=%.0f\n", len / 1e6 / (t1 - t0),
		    t1 - t0, len, cpu_ms() - c0);
		return (0);
	}
	if (strcmp(argv[0], "sessions") == 0 || strcmp(argv[0], "latency") == 0) {
		if (strcmp(argv[0], "latency") == 0)
			conc = 1;
		njobs = n;
		lat = calloc((size_t)n, sizeof(*lat));
		t0 = now();
		if (threads(conc, run_sessions, NULL, 0) == -1)
			return (1);
		t1 = now();
		percentiles(n, &p50, &p90);
		printf("rate=%.1f secs=%.3f lat_p50_ms=%.3f lat_p90_ms=%.3f failures=%ld "
		    "cpu_ms=%.0f\n", n / (t1 - t0), t1 - t0, p50, p90, atomic_load(&failures),
		    cpu_ms() - c0);
		return (atomic_load(&failures) > 0);
	}
	if (strcmp(argv[0], "msgs") == 0) {
		struct msgjob *m = calloc((size_t)conc, sizeof(*m));
		for (long i = 0; i < conc; i++)
			m[i].n = n / conc + (i < n % conc);
		t0 = now();
		if (threads(conc, run_msgs, m, sizeof(*m)) == -1)
			return (1);
		t1 = now();
		printf("rate=%.1f secs=%.3f messages=%ld failures=%ld cpu_ms=%.0f\n",
		    atomic_load(&done_msgs) / (t1 - t0), t1 - t0, atomic_load(&done_msgs),
		    atomic_load(&failures), cpu_ms() - c0);
		return (atomic_load(&failures) > 0);
	}
	if (strcmp(argv[0], "idle") == 0) {
		struct idlejob *ij = calloc((size_t)conc, sizeof(*ij));
		struct cx *cs = calloc((size_t)n, sizeof(*cs));
		long off = 0, opened = 0;
		char buf[64];
		for (long i = 0; i < conc; i++) {
			ij[i].n = n / conc + (i < n % conc);
			ij[i].cs = cs + off;
			off += ij[i].n;
		}
		t0 = now();
		if (threads(conc, run_idle, ij, sizeof(*ij)) == -1)
			return (1);
		for (long i = 0; i < conc; i++)
			opened += ij[i].opened;
		printf("ready opened=%ld failures=%ld secs=%.3f\n", opened,
		    atomic_load(&failures), now() - t0);
		fflush(stdout);
		(void)!fgets(buf, sizeof(buf), stdin);
		for (long i = 0; i < n; i++)
			if (cs[i].fd > 0)
				(void)cx_quit(&cs[i]);
		printf("done\n");
		return (0);
	}
usage:
	fprintf(stderr, "usage: loadgen [-H HOST] -p PORT [-T starttls|implicit -A CAFILE "
	    "-N NAME] [-a] [-P] big|sessions|latency|msgs|idle N [C]\n");
	return (2);
}
