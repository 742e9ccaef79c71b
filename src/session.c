/*
 * One client session: the relay between a plaintext client and a prepared TLS
 * upstream. This file owns its life (start, the list of sessions, the handler guard,
 * the events, the timer) and every fault; relay.c owns the command phase and body.c
 * the DATA phase, through session_int.h.
 *
 *   (implicit TLS) TLS ──handshake done──┐   ┌── TLS ◄── STARTTLS, its 220 out
 *                   │ failed: no upstream  ▼   ▼    │ (pipelined bytes dropped)
 *                   │           PREP ──upstream ready──► CMD ◄──────────────┐
 *                   │             │                       │ 354 to DATA     │ end of
 *                   │             │ upstream failed       ▼                 │ data
 *                   │             │ (421 greeting)       DATA ──────────────┘ scanned
 *                   ▼             ▼                       │ client gone: upstream reset
 *                CLOSING ◄────────────────────────────────┘ QUIT, 421, timeout, faults
 *
 * Faults. This table is the promise; session_fail() and session_end() are the only
 * ways out, and session_drop_upstream() the only way an upstream is closed. "After
 * dot": the end of data went upstream, its reply has not come. RESET: the upstream
 * connection is reset, so a message without its final dot is never delivered.
 *
 *   fault                state         device gets              upstream    message
 *   ───────────────────  ────────────  ───────────────────────  ──────────  ─────────
 *   device TLS failed    TLS           - (logged)               QUIT/never  -
 *   preparation failed   PREP          421 with the reason      never up    -
 *   client EOF           PREP          -                        cancelled   -
 *                        CMD           every reply it is owed   QUIT after  as replied
 *                        DATA          -                        RESET       aborted
 *   client error         CMD           -                        close after as replied
 *                        DATA          -                        RESET       aborted
 *   client not reading   any           -                        RESET in DATA, else close
 *   upstream lost        CMD           421 4.4.2                gone        -
 *                        after dot     451 4.4.2, 421 4.4.2     gone        tempfail
 *                        DATA          451 4.4.2 after the dot  gone        tempfail
 *   upstream garbled     CMD           451 4.4.0, 421 4.4.0     QUIT        tempfail
 *   upstream 421         CMD           its 421                  QUIT        -
 *   step timeout         CMD           421 4.4.2                QUIT        -
 *                        1st command   421 4.4.2                QUIT        -
 *                        awaiting      451 4.4.1, 421 4.4.1     QUIT        tempfail
 *                        DATA          421 4.4.2                RESET       aborted
 *   data rate too low    DATA          421 4.4.2                RESET       aborted
 *   over size / bare     DATA          552 / 550 after the dot  RESET       rejected
 *     CR,LF (reject)                   (next command: 421)
 *   too many errors      CMD           421 4.7.0                QUIT        -
 *   shutdown             CMD           421 4.3.2                QUIT        tempfail
 *                        DATA          421 4.3.2                RESET       aborted
 *
 * (tempfail in CMD rows: only for a message after its dot.)
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "config.h"
#include "conn.h"
#include "log.h"
#include "parse.h"
#include "route.h"
#include "session_int.h"
#include "shared.h"
#include "tlsserver.h"
#include "upcache.h"
#include "upstream.h"

#define CL_INCAP	(64 * 1024)
#define CL_OUTCAP	(64 * 1024)
#define LIT(s)		(s), sizeof(s) - 1
/* A closing client gets at most this long to take its last reply. */
#define CLOSE_WAIT	10.
/* process() rounds before it lets the loop run again. */
#define PROCESS_ROUNDS	1000

static struct session *sessions;
static unsigned long nsessions;

static void process(struct session *);
static void up_event(struct conn *, int, void *);


static void
new_sid(char *out, size_t size)
{
	static unsigned base;
	static unsigned long counter;

	/* A random prefix per process keeps ids apart across restarts and workers. */
	if (base == 0 && RAND_bytes((unsigned char *)&base, sizeof(base)) != 1)
		base = (unsigned)getpid();
	snprintf(out, size, "%04x%08lx", base & 0xffff, ++counter & 0xffffffffUL);
}

void
session_touch(struct session *s)
{
	if (s->state != S_CLOSING && !s->dead)
		ev_timer_again(s->loop, &s->timer);
}

/* Every handler runs between enter() and leave(): only the outermost one frees. */
static void
enter(struct session *s)
{
	s->depth++;
}

static void
leave(struct session *s)
{
	assert(s->depth > 0);
	if (--s->depth > 0 || !s->dead)
		return;
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	nsessions--;
	ev_timer_stop(s->loop, &s->timer);
	/* The upstream's max_connections slot, taken when it was prepared for this session. */
	if (s->upc_counted)
		shared_upstream_leave(s->upc->slot);
	clientauth_free(s);
	free(s->own_upc);
	config_unref(s->cfg);
	body_txn_free(s);
	if (s->done != NULL)
		s->done(s->done_arg, (struct sockaddr *)&s->peer);
	free(s);
}

void
session_drop_upstream(struct session *s, int how)
{
	if (s->up == NULL)
		return;
	if (how == DROP_QUIT)
		(void)conn_write(s->up, "QUIT\r\n", 6);	/* we do not wait for its 221 */
	s->up_in += conn_bytes_in(s->up) - s->up_base_in;
	s->up_out += conn_bytes_out(s->up) - s->up_base_out;
	if (how == DROP_RESET)
		conn_abort(s->up);
	else
		conn_free(s->up);
	s->up = NULL;
}

int
session_reusable(const struct session *s)
{
	return (s->up != NULL && s->upc->reuse > 0 && s->upc->username[0] != '\0' &&
	    !s->upc->original && !s->up_doubt && !s->in_txn && s->qup == 0 &&
	    s->state == S_CMD && !s->client_gone && !conn_failed(s->up) &&
	    conn_in_len(s->up) == 0 && !conn_eof(s->up));
}

/*
 * The device is done and the upstream session is clean: the reuse cache resets it
 * (RSET) and keeps it, with its max_connections slot, for the next device of the
 * same profile.
 */
static void
give_back(struct session *s)
{
	struct logline l;

	s->up_in += conn_bytes_in(s->up) - s->up_base_in;
	s->up_out += conn_bytes_out(s->up) - s->up_base_out;
	log_begin(&l, L_DEBUG, s->sid, "upstream.keep");
	log_str(&l, "upstream", s->upc->name);
	log_num(&l, "messages", s->up_msgs);
	log_end(&l);
	upcache_put(s->cfg, s->upc, s->dev, s->up, &s->caps, s->up_msgs,
	    s->up_token_gen);
	s->up = NULL;
	s->upc_counted = 0;	/* the slot went with it */
}

void
session_quit(struct session *s)
{
	if (session_reusable(s))
		give_back(s);
	session_fail(s, NULL, NULL, "quit");
}

static void
drop_client(struct session *s)
{
	if (s->cl == NULL)
		return;
	s->cl_in += conn_bytes_in(s->cl);
	s->cl_out += conn_bytes_out(s->cl);
	conn_free(s->cl);
	s->cl = NULL;
}

void
session_end(struct session *s, const char *reason)
{
	struct logline l;

	if (s->dead)
		return;
	s->dead = 1;
	if (s->end_reason == NULL)
		s->end_reason = reason;
	upstream_cancel(s->prep);
	s->prep = NULL;
	session_drop_upstream(s, s->state == S_DATA ? DROP_RESET : DROP_CLOSE);
	drop_client(s);
	ev_timer_stop(s->loop, &s->timer);
	ev_now_update(s->loop);
	log_begin(&l, L_INFO, s->sid, "session.close");
	log_str(&l, "client", s->client);
	log_num(&l, "duration_ms", (long long)((ev_now(s->loop) - s->started) * 1000 + 0.5));
	log_num(&l, "in", (long long)s->cl_in);
	log_num(&l, "out", (long long)s->cl_out);
	log_num(&l, "up_in", (long long)s->up_in);
	log_num(&l, "up_out", (long long)s->up_out);
	log_str(&l, "reason", s->end_reason);
	log_end(&l);
	shared_m_bytes(s->cl_in, s->cl_out);
}

void
session_to_client(struct session *s, const char *p, size_t n)
{
	if (s->cl == NULL || s->client_gone)
		return;
	/* A client that does not read its replies: nothing sensible is left. */
	if (conn_write(s->cl, p, n) != 0)
		session_end(s, "client-not-reading");
}

/* "${code} ${hostname} ${text}" to the client. */
static void
reply(struct session *s, const char *code, const char *text)
{
	char r[512];
	int n;

	n = snprintf(r, sizeof(r), "%s %s %s\r\n", code, s->cfg->hostname, text);
	assert(n > 0 && (size_t)n < sizeof(r));
	session_to_client(s, r, (size_t)n);
}

/* The last reply, already formatted (or NULL); then close once it is out. */
static void
fail_raw(struct session *s, const char *last, const char *reason)
{
	ev_tstamp t;

	if (s->dead)
		return;
	/* Leaving mid-body: the upstream must never see a final dot. */
	session_drop_upstream(s, s->state == S_DATA ? DROP_RESET : DROP_QUIT);
	/* Mid-handshake a plaintext reply would only break the device's TLS. */
	if (s->state == S_TLS)
		last = NULL;
	s->state = S_CLOSING;
	s->end_reason = reason;
	if (last != NULL)
		session_to_client(s, last, strlen(last));
	if (s->dead)
		return;
	if (s->cl == NULL || s->client_gone || conn_out_len(s->cl) == 0) {
		session_end(s, reason);
		return;
	}
	/* Bound the wait for a client that does not read its last reply. */
	t = (ev_tstamp)s->cfg->timeout < CLOSE_WAIT ? (ev_tstamp)s->cfg->timeout : CLOSE_WAIT;
	ev_timer_stop(s->loop, &s->timer);
	ev_timer_set(&s->timer, t, t);
	ev_timer_start(s->loop, &s->timer);
}

void
session_fail(struct session *s, const char *code, const char *text, const char *reason)
{
	char r[512];

	if (code == NULL) {
		fail_raw(s, NULL, reason);
		return;
	}
	snprintf(r, sizeof(r), "%s %s %s\r\n", code, s->cfg->hostname, text);
	fail_raw(s, r, reason);
}

void
session_count_error(struct session *s)
{
	if (++s->errors < s->lim->max_errors || s->state == S_CLOSING || s->dead)
		return;
	session_fail(s, "421 4.7.0", "Too many errors, closing connection", "too-many-errors");
}

void
session_upstream_garbled(struct session *s, const char *why)
{
	struct logline l;

	log_begin(&l, L_WARN, s->sid, "upstream.protocol");
	log_str(&l, "detail", why);
	log_end(&l);
	if (relay_dot_pending(s))
		body_log_ended(s, "", 0, "tempfail");
	/* Its framing can no longer be trusted: answer the waiting command, then close. */
	reply(s, "451 4.4.0", "Unexpected reply from upstream");
	session_fail(s, "421 4.4.0", "Closing connection", "upstream-protocol");
}

void
session_upstream_lost(struct session *s)
{
	struct logline l;

	log_begin(&l, L_WARN, s->sid, "upstream.lost");
	log_str(&l, "detail", s->up ? conn_error(s->up) : "");
	log_str(&l, "state", s->state == S_DATA ? "data" : "command");
	log_end(&l);
	session_drop_upstream(s, DROP_RESET);
	if (s->state == S_DATA) {
		/* Read the rest of the body, then say 451; see body.c. */
		process(s);
		return;
	}
	if (relay_dot_pending(s)) {
		body_log_ended(s, LIT("upstream lost after end of data"), "tempfail");
		reply(s, "451 4.4.2", "Upstream connection lost before it confirmed the message");
	}
	if (s->client_gone) {
		session_end(s, "upstream-lost");
		return;
	}
	session_fail(s, "421 4.4.2", "Upstream connection lost, closing", "upstream-lost");
}

/* The client failed: nothing more can reach it; after its dot, the outcome is still logged. */
static void
client_left(struct session *s, const char *why)
{
	if (s->state == S_DATA) {
		/* Mid-body: abort upstream without the final dot; nothing is delivered. */
		body_log_data(s, "client left during DATA", "aborted");
		session_end(s, why);
		return;
	}
	if (s->state == S_PREP || s->state == S_CLOSING) {
		session_end(s, why);
		return;
	}
	s->client_gone = 1;
	s->end_reason = why;
	drop_client(s);
	if (s->qup == 0)
		session_end(s, why);
}

/*
 * The client shut down its sending side: no more commands will come, but it is owed a
 * reply to each one it sent (devices send the dot, often QUIT, then FIN, and retry a
 * message whose 250 they never saw). Finish what was sent, relay every reply, then
 * close. A body that ends without its final dot is aborted: nothing is delivered.
 */
static void
client_eof(struct session *s)
{
	if (s->state == S_DATA) {
		if (conn_in_len(s->cl) > 0 && s->up != NULL)
			return;	/* the rest of the body waits for room upstream */
		client_left(s, "client-closed");
		return;
	}
	if (s->state != S_CMD) {
		client_left(s, "client-closed");
		return;
	}
	if (s->up != NULL && (s->qup > 0 || relay_has_line(s)))
		return;	/* replies or commands still to come; here again on each event */
	if (session_reusable(s))
		give_back(s);
	session_fail(s, NULL, NULL, "client-closed");
}

static void
tls_where(const struct session *s, struct tlsserver_where *w)
{
	w->sid = s->sid;
	w->client = s->client;
	w->listener = s->lc->name;
	w->ms = (long long)((ev_now(s->loop) - s->tls_begun) * 1000 + 0.5);
}

/*
 * The handshake over the device's connection. Whatever it sent in plaintext after
 * STARTTLS (or before its ClientHello on an implicit listener) is never read as a
 * command: it did not come through TLS (CVE-2011-0411).
 */
static void
begin_tls(struct session *s)
{
	struct logline l;
	size_t junk = conn_in_len(s->cl);
	SSL *ssl;

	s->tls_started = 1;
	if (junk > 0) {
		log_begin(&l, L_WARN, s->sid, "tls.starttls-injection");
		log_str(&l, "client", s->client);
		log_str(&l, "listener", s->lc->name);
		log_num(&l, "bytes", (long long)junk);
		log_str(&l, "msg", "plaintext sent after STARTTLS was discarded, not executed");
		log_end(&l);
		conn_consume(s->cl, junk);
	}
	conn_pause(s->cl, 0);
	ev_now_update(s->loop);
	s->tls_begun = ev_now(s->loop);
	if ((ssl = tlsserver_ssl(s->lc->tls_ctx)) == NULL || conn_start_tls(s->cl, ssl) != 0) {
		session_fail(s, NULL, NULL, "internal");
		return;
	}
	ev_timer_again(s->loop, &s->timer);
}

void
session_starttls(struct session *s)
{
	s->state = S_TLS;
	/* Not one more plaintext byte is taken in: what comes now is the ClientHello. */
	conn_pause(s->cl, 1);
}

static void prepare(struct session *);

/* The device's handshake ended (CONN_EV_TLS) or failed. */
static void
tls_done(struct session *s, int ev)
{
	struct tlsserver_where w;

	ev_now_update(s->loop);
	tls_where(s, &w);
	if (ev & CONN_EV_ERROR) {
		tlsserver_log_failure(&w, conn_error(s->cl));
		session_fail(s, NULL, NULL, "client-tls");
		return;
	}
	tlsserver_log_handshake(conn_ssl(s->cl), &w);
	s->tls_active = 1;
	if (s->lc->tls == LTLS_IMPLICIT) {
		/* Implicit TLS: the upstream only for a device that got this far; its own
		 * bounds (connect_timeout) hold until the 220. */
		ev_timer_stop(s->loop, &s->timer);
		prepare(s);
		return;
	}
	/* RFC 3207 4.2: nothing learnt before TLS counts; the device says EHLO again. */
	s->state = S_CMD;
	s->blocked = 0;
	s->need_helo = 1;
	s->authed = 0;
	ev_timer_again(s->loop, &s->timer);
	process(s);
}

/* Move everything along that can move. */
static void
process(struct session *s)
{
	unsigned guard;

	for (guard = 0; guard < PROCESS_ROUNDS && !s->dead; guard++) {
		enum sess_state before = s->state;
		unsigned qlen = s->qlen;
		size_t clin = s->cl ? conn_in_len(s->cl) : 0;

		if (s->up != NULL)
			relay_read_replies(s);
		if (s->dead)
			return;
		if (s->state == S_DATA)
			body_read(s);
		if (s->dead)
			return;
		if (s->state == S_CMD)
			relay_read_commands(s);
		if (s->dead)
			return;
		if (s->state == S_TLS && !s->tls_started && conn_out_len(s->cl) == 0)
			begin_tls(s);
		if (s->dead)
			return;
		if (s->state == before && s->qlen == qlen &&
		    (s->cl ? conn_in_len(s->cl) : 0) == clin)
			break;
	}
	if (s->dead || s->cl == NULL)
		return;
	if (conn_eof(s->cl))
		client_eof(s);
}

void
session_run(struct session *s, void (*fn)(struct session *))
{
	enter(s);
	fn(s);
	if (!s->dead)
		process(s);
	leave(s);
}

static void
cl_event(struct conn *c, int ev, void *arg)
{
	struct session *s = arg;

	enter(s);
	if (s->state == S_TLS && s->tls_started && (ev & (CONN_EV_TLS | CONN_EV_ERROR)))
		tls_done(s, ev);
	else if (ev & CONN_EV_ERROR) {
		/* Take what the client sent before it failed (its QUIT, its final dot). */
		if (s->state == S_CMD || s->state == S_DATA)
			process(s);
		if (!s->dead && s->cl != NULL)
			client_left(s, "client-error");
	} else if (s->state == S_CLOSING) {
		/* A half-closed client still reads: its last replies go out before the close. */
		if (conn_out_len(c) == 0)
			session_end(s, s->end_reason);
	} else if (s->state != S_PREP)
		process(s);
	else if (conn_eof(c) && conn_in_len(c) == 0)
		client_left(s, "client-closed");	/* an early talker's input waits for the 220 */
	leave(s);
}

static void
up_event(struct conn *c, int ev, void *arg)
{
	struct session *s = arg;

	(void)c;
	enter(s);
	/* Replies that arrived just before a failure or EOF (a 221, say) still count. */
	process(s);
	if (!s->dead && s->up != NULL && ((ev & CONN_EV_ERROR) || conn_eof(s->up)))
		session_upstream_lost(s);
	leave(s);
}

static void
on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct session *s = w->data;

	(void)loop;
	(void)revents;
	enter(s);
	if (s->state == S_CLOSING)
		session_end(s, s->end_reason ? s->end_reason : "timeout");
	else if (s->state == S_TLS && s->tls_started) {
		struct tlsserver_where tw;

		tls_where(s, &tw);
		tlsserver_log_failure(&tw, "handshake timed out");
		session_fail(s, NULL, NULL, "client-tls");
	} else if (s->state == S_DATA) {
		body_log_data(s, "client timed out during DATA", "aborted");
		session_fail(s, "421 4.4.2", "Timeout exceeded, closing", "timeout");
	} else if (s->qup > 0) {
		if (relay_dot_pending(s))
			body_log_ended(s, LIT("upstream timed out after end of data"), "tempfail");
		reply(s, "451 4.4.1", "Upstream did not answer in time");
		session_fail(s, "421 4.4.1", "Closing connection", "upstream-timeout");
	} else if (s->client_gone)
		session_end(s, "client-closed");
	else if (s->commands == 0)
		session_fail(s, "421 4.4.2", "No command received in time, closing",
		    "first-command-timeout");
	else
		session_fail(s, "421 4.4.2", "Timeout exceeded, closing", "timeout");
	leave(s);
}

/* The smaller of our limit and the upstream's SIZE, and that is what we announce. */
static void
set_size_limit(struct session *s)
{
	s->size_limit = s->lim->max_message_size;
	if (s->caps.size > 0 && (s->size_limit == 0 || s->caps.size < s->size_limit))
		s->size_limit = s->caps.size;
	if (s->size_limit > 0) {
		s->caps.flags |= SMTP_CAP_SIZE;
		s->caps.size = (unsigned long)s->size_limit;
	}
}

static void
on_upstream(void *arg, struct conn *up, const struct smtp_caps *caps, const char *last)
{
	struct session *s = arg;

	enter(s);
	/* An "original" upstream is this session's own copy (the preparation's goes with it). */
	if (s->own_upc == NULL)
		s->upc = upstream_conf_of(s->prep);
	s->up_msgs = upstream_messages(s->prep);
	s->up_token_gen = upstream_token_gen(s->prep);
	s->prep = NULL;
	if (up == NULL) {
		fail_raw(s, last, "upstream-failed");
		leave(s);
		return;
	}
	s->up = up;
	s->up_base_in = conn_bytes_in(up);
	s->up_base_out = conn_bytes_out(up);
	/* A ready upstream comes with its max_connections slot ("original" has none). */
	s->upc_counted = !s->upc->original;
	conn_set_cb(up, up_event, s);
	s->caps = *caps;
	set_size_limit(s);
	s->state = S_CMD;
	/* Until its first command the device holds a provider login for nothing: wait less. */
	if (s->cfg->first_command_timeout < s->cfg->timeout)
		s->timer.repeat = (ev_tstamp)s->cfg->first_command_timeout;
	ev_timer_again(s->loop, &s->timer);
	reply(s, "220", "ESMTP smtp-tls-proxy");
	process(s);	/* an early talker's commands */
	leave(s);
}

/*
 * An intercepted device's upstream: the rule's, or for "original" the destination the
 * device was going to, with [upstream]'s TLS settings (this session's own copy).
 */
static int
intercepted_upstream(struct session *s, const struct session_origin *o)
{
	const struct intercept_conf *icp = o->icp;

	if (icp->upstream >= 0) {
		s->upc = s->cfg->ups[icp->upstream];
		return (0);
	}
	if ((s->own_upc = malloc(sizeof(*s->own_upc))) == NULL)
		return (-1);
	memcpy(s->own_upc, icp->orig, sizeof(*s->own_upc));
	if (parse_hostport(s->orig_dst, s->own_upc->host, sizeof(s->own_upc->host),
	    &s->own_upc->port) != 0) {
		free(s->own_upc);
		return (-1);
	}
	/* Port 465 is implicit TLS by convention; everything else is asked for STARTTLS. */
	s->own_upc->tls = s->own_upc->port == 465 ? UP_TLS_IMPLICIT : UP_TLS_STARTTLS;
	if (s->own_upc->server_name[0] == '\0')
		snprintf(s->own_upc->server_name, sizeof(s->own_upc->server_name), "%s",
		    s->own_upc->host);
	s->upc = s->own_upc;
	return (0);
}

/* Prepare the upstream; the device is greeted once it is ready (on_upstream). */
static void
prepare(struct session *s)
{
	s->state = S_PREP;
	if ((s->prep = upstream_start(s->loop, s->cfg, s->dev, (struct upstream_conf *)s->upc,
	    s->sid, s->client, on_upstream, s)) == NULL)
		fail_raw(s, "421 4.3.0 Out of memory\r\n", "internal");
}

struct session *
session_start(struct ev_loop *loop, struct config *cfg, int fd, const struct sockaddr *peer,
    const struct session_origin *o, session_done_cb *done, void *arg)
{
	const struct listener_conf *lc = o->lc;
	struct session *s;
	struct logline l;

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		close(fd);
		return (NULL);
	}
	s->loop = loop;
	s->cfg = config_ref(cfg);
	s->dev = route_device(cfg, peer);
	s->lc = lc;
	if (o->orig_dst != NULL)
		parse_addr_str(o->orig_dst, s->orig_dst, sizeof(s->orig_dst));
	if (o->icp != NULL && intercepted_upstream(s, o) != 0) {
		close(fd);
		config_unref(s->cfg);
		free(s);
		return (NULL);
	}
	s->lim = route_limits(cfg, s->dev);
	s->done = done;
	s->done_arg = arg;
	s->started = ev_now(loop);
	new_sid(s->sid, sizeof(s->sid));
	memcpy(&s->peer, peer, peer->sa_family == AF_INET6 ?
	    sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
	parse_addr_str(peer, s->client, sizeof(s->client));
	if ((s->cl = conn_new(loop, fd, CL_INCAP, CL_OUTCAP, cl_event, s)) == NULL) {
		close(fd);
		config_unref(s->cfg);
		free(s);
		return (NULL);
	}
	ev_init(&s->timer, on_timeout);
	s->timer.repeat = (ev_tstamp)cfg->timeout;
	s->timer.data = s;
	s->next = sessions;
	if (sessions != NULL)
		sessions->prev = s;
	sessions = s;
	nsessions++;
	log_begin(&l, L_INFO, s->sid, "session.open");
	log_str(&l, "client", s->client);
	if (o->via != NULL && o->via[0] != '\0')
		log_str(&l, "via", o->via);
	if (lc != NULL)
		log_str(&l, "listener", lc->name);
	if (o->orig_dst != NULL) {
		log_str(&l, "orig_dst", s->orig_dst);
		log_str(&l, "intercept", o->icp->name);
	}
	log_end(&l);
	enter(s);
	if (lc != NULL && lc->tls == LTLS_IMPLICIT) {
		/* The device's TLS first: a failed handshake costs no upstream login. */
		s->state = S_TLS;
		s->timer.repeat = (ev_tstamp)cfg->first_command_timeout;
		begin_tls(s);
	} else
		prepare(s);
	leave(s);
	return (s);
}

unsigned long
session_count(void)
{
	return (nsessions);
}

void
session_shutdown_all(void)
{
	struct session *s, *next;

	for (s = sessions; s != NULL; s = next) {
		next = s->next;
		enter(s);
		if (s->state == S_DATA)
			body_log_data(s, "proxy shutting down during DATA", "aborted");
		else if (relay_dot_pending(s))
			body_log_ended(s, LIT("proxy shutting down before the upstream's reply"),
			    "tempfail");
		/* Mid-DATA the upstream is reset: nothing half-sent is delivered. */
		if (s->state == S_CLOSING)
			session_fail(s, NULL, NULL, "shutdown");
		else
			session_fail(s, "421 4.3.2", "Service shutting down, try again later",
			    "shutdown");
		session_end(s, "shutdown");
		leave(s);
	}
}
