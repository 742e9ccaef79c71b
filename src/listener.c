/*
 * The listening sockets: bind or inherit them (systemd), accept, and the gate in front
 * of every session (allow list, max_sessions, per-client and upstream limits, login
 * back-off), each refusal a reply and a session.deny line. Pauses accepting when out
 * of descriptors.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <netdb.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "listener.h"
#include "log.h"
#include "parse.h"
#include "origdst.h"
#include "pphold.h"
#include "route.h"
#include "session.h"
#include "upcache.h"
#include "shared.h"

/* Accepts per wake-up: enough to drain a burst, few enough to keep the loop fair. */
#define ACCEPT_BATCH 64
/* systemd passes sockets from fd 3 on (sd_listen_fds(3)). */
#define LISTEN_FDS_START 3

struct lsock {
	ev_io		 io;
	int		 fd;
	char		 name[80];	/* as logged: the address bound */
	struct listen_addr spec;	/* as configured; empty for systemd's sockets */
	char		 lname[64];	/* its [listener NAME]; "" for [proxy] listen */
	const struct listener_conf *lc;	/* that listener in the accepting config */
	int		 midx;		/* its slot in the metrics (by name) */
	int		 inherited;
	struct listeners *owner;
	struct lsock	*next;
};

struct listeners {
	struct ev_loop	*loop;		/* NULL in the main process: it does not accept */
	struct config	*cfg;
	struct lsock	*list;
	struct pphold	*holds;		/* connections whose PROXY header is awaited */
	ev_timer	 backoff;	/* accepting paused: out of descriptors */
};

/* How long accepting pauses when descriptors run out (EMFILE/ENFILE). */
#define ACCEPT_BACKOFF 0.5

static void
resume_accepting(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct listeners *ls = w->data;
	struct lsock *li;

	(void)revents;
	for (li = ls->list; li != NULL; li = li->next)
		ev_io_start(loop, &li->io);
}

/*
 * The pending connection stays in the backlog and the socket stays readable, so
 * retrying at once would spin the loop and flood the log: pause, then retry.
 */
static void
pause_accepting(struct listeners *ls, int err)
{
	struct lsock *li;
	struct logline l;

	if (ev_is_active(&ls->backoff))
		return;
	for (li = ls->list; li != NULL; li = li->next)
		ev_io_stop(ls->loop, &li->io);
	ev_timer_init(&ls->backoff, resume_accepting, ACCEPT_BACKOFF, 0.);
	ls->backoff.data = ls;
	ev_timer_start(ls->loop, &ls->backoff);
	log_begin(&l, L_ERROR, NULL, "listener.accept");
	log_str(&l, "msg", strerror(err));
	log_str(&l, "action", "accepting paused for 0.5 s; raise LimitNOFILE or lower max_sessions");
	log_end(&l);
}

/* Refuse before any upstream contact: one reply (none where TLS comes first), then close. */
static void
refuse(int fd, const char *reply)
{
	if (reply != NULL)
		(void)send(fd, reply, strlen(reply), MSG_DONTWAIT | MSG_NOSIGNAL);
	/* Half-close first so the reply is not lost to a reset. */
	(void)shutdown(fd, SHUT_WR);
	close(fd);
}

/*
 * On an implicit-TLS listener the device expects a TLS handshake: a plaintext reply
 * would only be garbage to it, and a handshake per refusal is what a flood wants. It
 * gets a close; the log line says why.
 */
static void
refuse_logged(struct lsock *li, enum log_level level, int fd, const char *client,
    const char *via, const char *orig_dst, const char *reason, const char *code,
    const char *text)
{
	char reply[400];
	struct logline l;
	int tls_first = li->lc != NULL && li->lc->tls == LTLS_IMPLICIT;

	log_begin(&l, level, NULL, "session.deny");
	log_str(&l, "client", client);
	if (via[0] != '\0')
		log_str(&l, "via", via);
	if (li->lname[0] != '\0')
		log_str(&l, "listener", li->lname);
	if (orig_dst != NULL)
		log_str(&l, "orig_dst", orig_dst);
	log_str(&l, "reason", reason);
	log_end(&l);
	shared_m_refused(reason);
	snprintf(reply, sizeof(reply), "%s %s %s\r\n", code, li->owner->cfg->hostname, text);
	refuse(fd, tls_first ? NULL : reply);
}

static void
deny(struct lsock *li, enum log_level level, int fd, const char *client, const char *via,
    const char *reason, const char *code, const char *text)
{
	refuse_logged(li, level, fd, client, via, NULL, reason, code, text);
}

/* 1 if every upstream the device could use holds its max_connections already. */
static int
upstreams_full(const struct config *c, const struct device_conf *dev)
{
	const struct upstream_conf *up;
	size_t i;

	/* A session this worker keeps for reuse holds a slot, and is as good as a free one. */
	for (i = 0; (up = route_upstream(c, dev, i)) != NULL; i++)
		if (shared_upstream_count(up->slot) < (long)up->max_connections ||
		    upcache_idle(up) > 0)
			return (0);
	return (1);
}

static void
session_done(void *arg, const struct sockaddr *peer)
{
	(void)arg;
	shared_client_leave(peer);
	shared_session_leave();
}

/*
 * The upstream refused our own login a moment ago: another try with the same
 * password only brings the account closer to the provider's lock-out.
 */
static int
auth_backoff(struct lsock *li, const struct device_conf *dev, int fd, const char *client,
    const char *via)
{
	struct listeners *ls = li->owner;
	const struct upstream_conf *up;
	char text[200];
	long left = 0, l;
	size_t i;

	/* Refused here only when every upstream the device could use is held off. */
	for (i = 0; (up = route_upstream(ls->cfg, dev, i)) != NULL; i++) {
		if (up->username[0] == '\0' || up->auth_retry_after == 0 ||
		    (l = shared_auth_backoff_left(up->slot)) == 0)
			return (0);
		if (left == 0 || l < left)
			left = l;
	}
	snprintf(text, sizeof(text), "Upstream login refused, not retrying for %ld s", left);
	/* info: auth.backoff said it once at warn; a line per device would drown it. */
	deny(li, L_INFO, fd, client, via, "auth_backoff", "421 4.7.0", text);
	return (1);
}

/*
 * A connection that would come back to the proxy: its destination is one of our own
 * listening sockets (a device sent to the proxy's port directly, or a rule redirects
 * the proxy's own address), or it comes from this machine (the rules catch the proxy's
 * own outbound connections). Relaying it would connect to ourselves without end.
 */
static int
is_loop(const struct lsock *li, const struct sockaddr *dst, const struct sockaddr *peer)
{
	const struct lsock *o;
	char d[80], port[8];
	const char *colon;

	parse_addr_str(dst, d, sizeof(d));
	if ((colon = strrchr(d, ':')) == NULL)
		return (0);
	snprintf(port, sizeof(port), "%s", colon + 1);
	for (o = li->owner->list; o != NULL; o = o->next) {
		const char *oc = strrchr(o->name, ':');

		if (strcmp(o->name, d) == 0)
			return (1);
		/* A wildcard socket is every local address on its port. */
		if (oc != NULL && strcmp(oc + 1, port) == 0 && (strncmp(o->name, "0.0.0.0:", 8) == 0 ||
		    strncmp(o->name, "[::]:", 5) == 0) && origdst_is_local(dst))
			return (1);
	}
	return (origdst_is_local(peer));
}

/* Deny on a transparent listener, with where the device was going. */
static void
deny_intercept(struct lsock *li, int fd, const char *client, const char *dst,
    const char *reason, const char *text)
{
	refuse_logged(li, L_WARN, fd, client, "", dst, reason, "554 5.7.1", text);
}

/* The intercept rule for this connection, or NULL after refusing it (554, logged). */
static const struct intercept_conf *
intercept(struct lsock *li, int fd, const struct sockaddr *peer, struct sockaddr_storage *dst,
    const char *client)
{
	const struct intercept_conf *icp;
	char d[80];

	if (origdst_get(fd, dst) != 0) {
		deny_intercept(li, fd, client, "unknown", "no-intercept-rule",
		    "Original destination unknown");
		return (NULL);
	}
	parse_addr_str((const struct sockaddr *)dst, d, sizeof(d));
	if (is_loop(li, (const struct sockaddr *)dst, peer)) {
		deny_intercept(li, fd, client, d, "loop", "Mail loop: this is the proxy itself");
		return (NULL);
	}
	if ((icp = route_intercept(li->owner->cfg, (const struct sockaddr *)dst)) == NULL) {
		deny_intercept(li, fd, client, d, "no-intercept-rule",
		    "Relaying to this destination is not allowed");
		return (NULL);
	}
	return (icp);
}

/*
 * The gate in front of every session, for client ${ss} (the socket's peer, or what a
 * balancer's PROXY header says; then ${via} is the balancer): allow list, login
 * back-off, max_sessions, per-client and upstream limits. Takes ${fd}.
 */
static void
admit(struct lsock *li, int fd, const struct sockaddr_storage *ss,
    const struct sockaddr_storage *balancer)
{
	struct listeners *ls = li->owner;
	const struct device_conf *dev;
	const struct sockaddr *sa = (const struct sockaddr *)ss;
	struct sockaddr_storage dst;
	struct session_origin o;
	char client[80], via[80] = "";

	memset(&o, 0, sizeof(o));
	parse_addr_str(sa, client, sizeof(client));
	if (balancer != NULL)
		parse_addr_str((const struct sockaddr *)balancer, via, sizeof(via));
	if (!cidr_match(ls->cfg->allow, ls->cfg->nallow, sa)) {
		deny(li, L_WARN, fd, client, via, "allow", "554 5.7.1", "Access denied");
		return;
	}
	if (li->lc != NULL && li->lc->transparent) {
		if ((o.icp = intercept(li, fd, sa, &dst, client)) == NULL)
			return;
		o.orig_dst = (const struct sockaddr *)&dst;
	}
	dev = route_device(ls->cfg, sa);
	if (auth_backoff(li, dev, fd, client, via))
		return;
	if (!shared_session_enter((long)ls->cfg->max_sessions)) {
		deny(li, L_WARN, fd, client, via, "max_sessions", "421 4.3.2",
		    "Too many connections, try again later");
		return;
	}
	if (!shared_client_enter(sa, (long)route_limits(ls->cfg, dev)->max_sessions_per_client)) {
		shared_session_leave();
		deny(li, L_WARN, fd, client, via, "max_sessions_per_client", "421 4.7.0",
		    "Too many connections from your address, try again later");
		return;
	}
	/*
	 * Every session prepares its upstream at once (connect, TLS, login) and
	 * holds it until it ends, idle or not: the provider caps sessions per
	 * account, so devices over the cap are refused here, not there.
	 */
	if (upstreams_full(ls->cfg, dev)) {
		shared_client_leave(sa);
		shared_session_leave();
		deny(li, L_WARN, fd, client, via, "upstream_busy", "421 4.3.2",
		    "Too many upstream connections, try again later");
		return;
	}
	o.lc = li->lc;
	o.via = via;
	if (session_start(ls->loop, ls->cfg, fd, sa, &o, session_done, ls) == NULL) {
		shared_client_leave(sa);
		shared_session_leave();
		log_simple(L_ERROR, "session.start", "out of memory");
		return;
	}
	shared_m_session(li->midx);
}

/* The balancer's header named the client: the gate as for any other connection. */
static void
on_header(void *arg, int fd, const struct sockaddr_storage *client,
    const struct sockaddr_storage *balancer)
{
	admit(arg, fd, client, balancer);
}

static void
on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	struct lsock *li = w->data;
	struct listeners *ls = li->owner;
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd, i;

	(void)loop;
	(void)revents;
	for (i = 0; i < ACCEPT_BATCH; i++) {
		sl = sizeof(ss);
		fd = accept4(li->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
			    errno == ECONNABORTED)
				return;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				pause_accepting(ls, errno);
				return;
			}
			log_simple(L_ERROR, "listener.accept", strerror(errno));
			return;
		}
		if (li->lc != NULL && li->lc->proxy_protocol != 0)
			pphold_start(ls->loop, &ls->holds, fd, &ss, li->lc->proxy_protocol,
			    li->lc->proxy_from, li->lc->nproxy_from, li->lname, on_header, li);
		else
			admit(li, fd, &ss, NULL);
	}
}

/* The listener of configured address ${a}: NULL for [proxy] listen. */
static const struct listener_conf *
config_lc(const struct config *c, const struct listen_addr *a)
{
	return (a->lidx >= 0 && (size_t)a->lidx < c->nlsts ? c->lsts[a->lidx] : NULL);
}

/* Its [listener NAME]; "" for [proxy] listen. */
static const char *
lname_of(const struct config *c, const struct listen_addr *a)
{
	const struct listener_conf *lc = config_lc(c, a);

	return (lc != NULL ? lc->name : "");
}

/*
 * A transparent listener also takes TPROXY'd connections, which arrive for addresses
 * that are not this machine's: the socket must say it accepts them (CAP_NET_ADMIN).
 * Without it redirect and DNAT still work; the log says so once per socket.
 */
static void
set_transparent(int fd, const struct listener_conf *lc)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int one = 1, r;

	if (lc == NULL || !lc->transparent || getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
		return;
	r = ss.ss_family == AF_INET6 ?
	    setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof(one)) :
	    setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one));
	if (r != 0) {
		struct logline l;

		log_begin(&l, L_WARN, NULL, "proxy.listen");
		log_str(&l, "listener", lc->name);
		log_str(&l, "msg", "IP_TRANSPARENT refused (needs CAP_NET_ADMIN): nftables tproxy "
		    "will not reach this listener; redirect and dnat still do");
		log_str(&l, "error", strerror(errno));
		log_end(&l);
	}
}

static struct lsock *
lsock_add(struct listeners *ls, int fd, const struct listen_addr *spec,
    const struct listener_conf *lc, int inherited)
{
	const char *lname = lc != NULL ? lc->name : "";
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct lsock *li;
	struct logline l;

	if ((li = calloc(1, sizeof(*li))) == NULL)
		return (NULL);
	li->fd = fd;
	li->inherited = inherited;
	li->owner = ls;
	if (spec != NULL)
		li->spec = *spec;
	snprintf(li->lname, sizeof(li->lname), "%s", lname);
	set_transparent(fd, lc);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
		parse_addr_str((struct sockaddr *)&ss, li->name, sizeof(li->name));
	else
		snprintf(li->name, sizeof(li->name), "fd%d", fd);
	li->midx = shared_listener_index(li->name);
	ev_io_init(&li->io, on_accept, fd, EV_READ);
	li->io.data = li;
	li->next = ls->list;
	ls->list = li;
	log_begin(&l, L_INFO, NULL, "proxy.listen");
	log_str(&l, "addr", li->name);
	if (inherited)
		log_str(&l, "from", "systemd");
	if (lname[0] != '\0')
		log_str(&l, "listener", lname);
	if (lc != NULL && lc->tls != LTLS_NONE) {
		log_str(&l, "tls", config_ltls_str(lc->tls));
		log_str(&l, "tls_profile", config_profile_str(lc->profile));
	}
	if (lc != NULL && lc->transparent)
		log_str(&l, "transparent", "yes");
	log_end(&l);
	return (li);
}

/* Bind one configured address; the socket, or -1 after logging why. */
int
listeners_bind_addr(const struct listen_addr *a)
{
	struct addrinfo hints, *res = NULL;
	char port[8], why[300];
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
	freeaddrinfo(res);
	return (fd);
sysfail:
	snprintf(why, sizeof(why), "%s:%d: %s", a->host, a->port, strerror(errno));
fail:
	{
		struct logline l;

		log_begin(&l, L_ERROR, NULL, "proxy.listen");
		log_str(&l, "msg", why);
		log_end(&l);
	}
	if (fd >= 0)
		close(fd);
	if (res != NULL)
		freeaddrinfo(res);
	return (-1);
}

/* Does the bound socket ${fd} sit on the configured address ${a}? */
static int
same_addr(int fd, const struct listen_addr *a)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char have[80], want[80];

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
		return (0);
	parse_addr_str((struct sockaddr *)&ss, have, sizeof(have));
	snprintf(want, sizeof(want), strchr(a->host, ':') ? "[%s]:%d" : "%s:%d", a->host,
	    a->port);
	return (strcmp(have, want) == 0);
}

/*
 * Is ${li} the socket for address ${a} of listener ${lname}? A fixed port is one socket
 * whichever listener names it (a reload may move it); port 0 is a new port for each
 * listener that asks for one.
 */
static int
matches(const struct lsock *li, const struct listen_addr *a, const char *lname)
{
	if (li->inherited)
		return (same_addr(li->fd, a));
	return (strcmp(li->spec.host, a->host) == 0 && li->spec.port == a->port &&
	    (a->port != 0 || strcmp(li->lname, lname) == 0));
}

/* The socket for ${cfg}'s address ${a}, now marked as its listener's; or NULL. */
static struct lsock *
find(struct listeners *ls, const struct config *cfg, const struct listen_addr *a)
{
	const char *lname = lname_of(cfg, a);
	struct lsock *li;

	for (li = ls->list; li != NULL; li = li->next) {
		if (!matches(li, a, lname))
			continue;
		snprintf(li->lname, sizeof(li->lname), "%s", lname);
		return (li);
	}
	return (NULL);
}

static int
has_inherited(const struct listeners *ls)
{
	const struct lsock *li;

	for (li = ls->list; li != NULL; li = li->next)
		if (li->inherited)
			return (1);
	return (0);
}

static void
lsock_free(struct listeners *ls, struct lsock *li)
{
	if (ls->loop != NULL)
		ev_io_stop(ls->loop, &li->io);
	close(li->fd);
	free(li);
}

/* Adopt the sockets systemd passed to this process, once. */
static void
inherit(struct listeners *ls)
{
	const char *pid = getenv("LISTEN_PID"), *n = getenv("LISTEN_FDS");
	int i, count, fd, fl;

	if (pid == NULL || n == NULL || atol(pid) != (long)getpid())
		return;
	count = atoi(n);
	for (i = 0; i < count && i < 64; i++) {
		fd = LISTEN_FDS_START + i;
		fl = fcntl(fd, F_GETFD);
		if (fl < 0)
			continue;
		(void)fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
		fl = fcntl(fd, F_GETFL);
		(void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
		(void)lsock_add(ls, fd, NULL, NULL, 1);
	}
	/* Our children must not believe these were meant for them. */
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
}

struct listeners *
listeners_bind(struct config *cfg)
{
	struct listeners *ls;
	size_t i;
	int fd, own;

	if ((ls = calloc(1, sizeof(*ls))) == NULL)
		return (NULL);
	ls->cfg = config_ref(cfg);
	inherit(ls);
	/* Under socket activation the default addresses are not wanted as well. */
	own = !has_inherited(ls) || cfg->listen_explicit;
	for (i = 0; i < cfg->nlisten && own; i++) {
		if (find(ls, cfg, &cfg->listen[i]) != NULL)
			continue;
		if ((fd = listeners_bind_addr(&cfg->listen[i])) < 0 ||
		    lsock_add(ls, fd, &cfg->listen[i], config_lc(cfg, &cfg->listen[i]), 0) == NULL) {
			if (fd >= 0)
				close(fd);
			listeners_free(ls);
			return (NULL);
		}
	}
	return (ls);
}

int
listeners_update(struct listeners *ls, struct config *cfg)
{
	struct lsock *added[CONFIG_MAX_LISTEN], *li, **pp;
	size_t i, nadded = 0, j;
	int fd, wanted, own = !has_inherited(ls) || cfg->listen_explicit;

	for (i = 0; i < cfg->nlisten && own; i++) {
		if (find(ls, cfg, &cfg->listen[i]) != NULL)
			continue;
		if ((fd = listeners_bind_addr(&cfg->listen[i])) < 0 ||
		    (added[nadded] = lsock_add(ls, fd, &cfg->listen[i],
		    config_lc(cfg, &cfg->listen[i]), 0)) == NULL) {
			/* Roll back: the reload is refused as a whole. */
			if (fd >= 0)
				close(fd);
			for (j = 0; j < nadded; j++) {
				for (pp = &ls->list; *pp != added[j]; pp = &(*pp)->next)
					;
				*pp = added[j]->next;
				lsock_free(ls, added[j]);
			}
			return (-1);
		}
		nadded++;
	}
	for (pp = &ls->list; (li = *pp) != NULL;) {
		wanted = li->inherited;
		for (i = 0; i < cfg->nlisten && !wanted && own; i++)
			wanted = matches(li, &cfg->listen[i], lname_of(cfg, &cfg->listen[i]));
		if (wanted) {
			pp = &li->next;
			continue;
		}
		*pp = li->next;
		log_simple(L_INFO, "proxy.unlisten", li->name);
		lsock_free(ls, li);
	}
	config_ref(cfg);
	config_unref(ls->cfg);
	ls->cfg = cfg;
	return (0);
}

void
listeners_start(struct listeners *ls, struct ev_loop *loop, struct config *cfg)
{
	struct lsock *li;

	ls->loop = loop;
	config_ref(cfg);
	config_unref(ls->cfg);
	ls->cfg = cfg;
	for (li = ls->list; li != NULL; li = li->next) {
		li->lc = li->lname[0] != '\0' ? config_listener(cfg, li->lname) : NULL;
		ev_io_start(loop, &li->io);
	}
}

void
listeners_close(struct listeners *ls)
{
	struct lsock *li, *next;

	if (ls->loop != NULL)
		ev_timer_stop(ls->loop, &ls->backoff);
	pphold_close_all(&ls->holds);
	for (li = ls->list; li != NULL; li = next) {
		next = li->next;
		lsock_free(ls, li);
	}
	ls->list = NULL;
}

int
listeners_count(const struct listeners *ls)
{
	const struct lsock *li;
	int n = 0;

	for (li = ls->list; li != NULL; li = li->next)
		n++;
	return (n);
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
