/*
 * One client session: the relay between a plaintext client and a prepared TLS
 * upstream.
 *
 *   PREP ──upstream ready──► CMD ◄──────────────┐
 *     │                       │ 354 to DATA     │ CRLF.CRLF scanned
 *     │ upstream failed       ▼                 │
 *     │ (421 greeting)       DATA ──────────────┘
 *     ▼                       │ client gone: upstream aborted, no final dot
 *   CLOSING ◄─────────────────┘ QUIT, 421, timeout, faults
 *
 * In CMD, client lines are handled in order; each one that needs an answer pushes
 * an entry on a FIFO of pending replies. Entries are answered either locally (EHLO,
 * HELO, errors) or by the next upstream reply, so replies reach the client in the
 * order of its commands however it pipelines them. DATA, AUTH and QUIT stop the
 * reading of further commands until their reply is in: whatever follows them is
 * body, credentials or nothing, never a command.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "config.h"
#include "conn.h"
#include "data.h"
#include "log.h"
#include "session.h"
#include "smtp.h"
#include "stats.h"
#include "upstream.h"

#define CL_INCAP	(64 * 1024)
#define CL_OUTCAP	(64 * 1024)
#define PEND_MAX	64
#define LIT(s)		(s), sizeof(s) - 1
/* Below this much room upstream, the body waits for the upstream to drain. */
#define DATA_MIN_ROOM	(8 * 1024)
#define DATA_CHUNK	(32 * 1024)

enum sess_state { S_PREP, S_CMD, S_DATA, S_CLOSING };

enum pend_kind {
	P_LOCAL,	/* answered by the proxy, in turn */
	P_RELAY,	/* the upstream's reply, relayed */
	P_DATA,		/* reply to DATA: 354 starts the body */
	P_DOT,		/* reply to the end of data: the message's outcome */
	P_AUTH,		/* reply to AUTH or one of its continuation lines */
	P_EHLO_RSET,	/* reply to the RSET an EHLO mid-transaction sent; then the EHLO reply */
};

enum local_reply {
	R_EHLO, R_HELO, R_TOO_LONG, R_BARE, R_BARE_LF, R_UNKNOWN, R_NO_STARTTLS, R_NO_BDAT,
	R_AUTH_OK, R_EHLO_SYNTAX, R_HELO_SYNTAX, R_VRFY, R_EXPN, R_HELP, R_REJECTED, R_UP_LOST_DATA, R_TOO_MANY_RCPTS, R_TOO_BIG,
};

struct pend {
	unsigned char	 kind;
	unsigned char	 verb;		/* enum smtp_verb, for P_RELAY and P_EHLO_RSET */
	unsigned char	 local;		/* enum local_reply, for P_LOCAL */
	unsigned char	 txn;		/* low bits of the transaction an RCPT belongs to */
};

#define TXN_TO_MAX	400	/* accepted recipients kept for the log line */
#define TXN_SENT_MAX	1024	/* recipients awaiting the upstream's answer */

/*
 * One mail transaction, from MAIL to the reply to its end of data. It is its own
 * object because a client may pipeline its next MAIL behind the final dot (RFC
 * 2920): the finished one waits for its outcome while the next one fills up.
 * Allocated at MAIL, so an idle session holds none.
 */
struct txn {
	unsigned	 id;
	char		 from[256];
	unsigned	 rcpts;		/* accepted by the upstream */
	unsigned	 to_more;	/* accepted but not listed in to[] */
	unsigned long long bytes;
	char		 to[TXN_TO_MAX];	/* accepted recipients, comma-separated */
	size_t		 sentlen;
	char		 sent[TXN_SENT_MAX];	/* NUL-separated RCPT paths, oldest first */
};

struct session {
	struct ev_loop	*loop;
	struct config	*cfg;
	char		 sid[16];
	char		 client[64];
	enum sess_state	 state;
	struct conn	*cl, *up;
	struct upstream	*prep;
	ev_timer	 timer;
	ev_tstamp	 started;
	struct smtp_caps caps;
	struct pend	 q[PEND_MAX];
	unsigned	 qhead, qlen;
	unsigned	 qup;		/* entries that wait for the upstream */
	unsigned	 blocked:1;	/* DATA, AUTH or QUIT awaits its reply */
	unsigned	 auth_cont:1;	/* the next client line continues an AUTH */
	unsigned	 in_txn:1;	/* MAIL was sent since the last RSET/EHLO/end of data */
	unsigned	 discarding:1;	/* dropping an overlong line up to its CRLF */
	unsigned	 client_gone:1;
	unsigned	 dead:1;
	int		 depth;		/* nesting of handlers, so the last one frees */
	struct data_scan ds;
	struct txn	*txn;		/* the open transaction, MAIL onwards */
	struct txn	*ended;		/* the one whose end of data awaits its reply */
	unsigned	 txn_ids;
	unsigned	 rcpts_sent;	/* RCPT commands in this transaction */
	unsigned	 commands;	/* whole command lines taken */
	unsigned	 errors;	/* error replies so far */
	unsigned long long size_limit;	/* bytes a message may have; 0 = no limit */
	ev_tstamp	 data_start;
	unsigned	 too_big:1;
	unsigned long long msg_bytes;	/* of the body being read, its end included */
	unsigned long long cl_in, cl_out, up_in, up_out;	/* of conns already gone */
	const char	*end_reason;
	session_done_cb	*done;
	void		*done_arg;
	struct sockaddr_storage peer;
	struct session	*prev, *next;	/* every session of this process, for shutdown */
};

static struct session *sessions;
static unsigned long nsessions;

static void cl_event(struct conn *, int, void *);
static void upstream_lost(struct session *);
static void count_error(struct session *);
static void close_with(struct session *, const char *, const char *);
static void fmt_reply(struct session *, char *, size_t, const char *, const char *);
static void up_event(struct conn *, int, void *);
static void process(struct session *);
static void client_left(struct session *, const char *);
static void client_eof(struct session *);
static void txn_free(struct txn **);

void
session_addr_str(const struct sockaddr *sa, char *out, size_t size)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)sa;

		inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
		snprintf(out, size, "[%s]:%d", host, ntohs(s6->sin6_port));
	} else if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)sa;

		inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
		snprintf(out, size, "%s:%d", host, ntohs(s4->sin_port));
	} else
		snprintf(out, size, "unknown");
}

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

/* Progress on an SMTP step: a whole command, a reply, body bytes. Partial lines do
 * not count, so trickling a byte at a time cannot stretch a step past the timeout. */
static void
touch(struct session *s)
{
	if (s->state != S_CLOSING && !s->dead)
		ev_timer_again(s->loop, &s->timer);
}

static void
enter(struct session *s)
{
	s->depth++;
}

static void
leave(struct session *s)
{
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
	config_unref(s->cfg);
	txn_free(&s->txn);
	txn_free(&s->ended);
	if (s->done != NULL)
		s->done(s->done_arg, (struct sockaddr *)&s->peer);
	free(s);
}

static void
txn_free(struct txn **t)
{
	free(*t);
	*t = NULL;
}

/* A new transaction at MAIL; NULL when out of memory (the log line then lacks it). */
static struct txn *
txn_new(struct session *s, const char *arg, size_t arglen)
{
	struct txn *t;

	txn_free(&s->txn);
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return (NULL);
	/* Pending entries keep the low 8 bits; 0 stands for "no transaction". */
	if ((++s->txn_ids & 0xff) == 0)
		s->txn_ids++;
	t->id = s->txn_ids;
	if (smtp_path(arg, arglen, t->from, sizeof(t->from)) != 0)
		t->from[0] = '\0';
	return (s->txn = t);
}

/* Remember an RCPT's path until its reply says whether it was accepted. */
static void
txn_rcpt_sent(struct txn *t, const char *arg, size_t arglen)
{
	char path[256];

	if (t == NULL)
		return;
	if (smtp_path(arg, arglen, path, sizeof(path)) != 0)
		path[0] = '\0';
	if (t->sentlen + strlen(path) + 1 > sizeof(t->sent)) {
		/* No room to remember it: it is counted, not listed. */
		path[0] = '\0';
		if (t->sentlen + 1 > sizeof(t->sent))
			return;
	}
	memcpy(t->sent + t->sentlen, path, strlen(path) + 1);
	t->sentlen += strlen(path) + 1;
}

/* The upstream answered the oldest RCPT of ${t}. */
static void
txn_rcpt_reply(struct txn *t, int accepted)
{
	size_t n, have;

	if (t == NULL)
		return;
	n = t->sentlen > 0 ? strlen(t->sent) + 1 : 0;
	if (accepted) {
		t->rcpts++;
		have = strlen(t->to);
		if (n > 1 && have + n + 1 < sizeof(t->to))
			snprintf(t->to + have, sizeof(t->to) - have, "%s%s", have ? "," : "",
			    t->sent);
		else
			t->to_more++;
	}
	memmove(t->sent, t->sent + n, t->sentlen - n);
	t->sentlen -= n;
}

static void
log_message(struct session *s, const struct txn *t, const char *reply, size_t len,
    const char *result)
{
	struct logline l;
	char to[TXN_TO_MAX + 32];

	log_begin(&l, L_INFO, s->sid, "message");
	log_str(&l, "client", s->client);
	log_str(&l, "from", t ? t->from : "");
	if (t != NULL && t->to_more > 0)
		snprintf(to, sizeof(to), "%s%s(+%u more)", t->to, t->to[0] ? "," : "",
		    t->to_more);
	else
		snprintf(to, sizeof(to), "%s", t ? t->to : "");
	log_str(&l, "to", to);
	log_num(&l, "rcpts", t ? t->rcpts : 0);
	log_num(&l, "bytes", t ? (long long)t->bytes : 0);
	while (len > 0 && (reply[len - 1] == '\n' || reply[len - 1] == '\r'))
		len--;
	log_strn(&l, "reply", reply, len);
	log_str(&l, "result", result);
	log_end(&l);
	stats_message(strcmp(result, "ok") == 0);
}

/* The outcome of the message being read in DATA, which ends its transaction. */
static void
log_data(struct session *s, const char *reply, const char *result)
{
	if (s->txn != NULL)
		s->txn->bytes = s->msg_bytes;
	log_message(s, s->txn, reply, strlen(reply), result);
	txn_free(&s->txn);
}

/* The outcome of the message whose end of data went upstream. */
static void
log_ended(struct session *s, const char *reply, size_t len, const char *result)
{
	log_message(s, s->ended, reply, len, result);
	txn_free(&s->ended);
}

/* The session is over: close what is open and log it; freed when the handlers unwind. */
static void
end(struct session *s, const char *reason)
{
	struct logline l;

	if (s->dead)
		return;
	s->dead = 1;
	if (s->end_reason == NULL)
		s->end_reason = reason;
	upstream_cancel(s->prep);
	s->prep = NULL;
	if (s->up != NULL) {
		s->up_in += conn_bytes_in(s->up);
		s->up_out += conn_bytes_out(s->up);
		/* Mid-body, only a reset keeps a half message from looking finished. */
		if (s->state == S_DATA)
			conn_abort(s->up);
		else
			conn_free(s->up);
		s->up = NULL;
	}
	if (s->cl != NULL) {
		s->cl_in += conn_bytes_in(s->cl);
		s->cl_out += conn_bytes_out(s->cl);
		conn_free(s->cl);
		s->cl = NULL;
	}
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
}

static void
to_client(struct session *s, const char *p, size_t n)
{
	if (s->cl == NULL || s->client_gone)
		return;
	if (conn_write(s->cl, p, n) != 0) {
		/* A client that does not read its replies: nothing sensible is left. */
		end(s, "client-not-reading");
	}
}

static void
to_client_str(struct session *s, const char *str)
{
	to_client(s, str, strlen(str));
}

/* Send a last reply and close once it is out. */
static void
close_with(struct session *s, const char *reply, const char *reason)
{
	if (s->dead)
		return;
	if (s->state == S_DATA && s->up != NULL) {
		/* Leaving mid-body: the upstream must never see a final dot. */
		s->up_in += conn_bytes_in(s->up);
		s->up_out += conn_bytes_out(s->up);
		conn_abort(s->up);
		s->up = NULL;
	}
	s->state = S_CLOSING;
	s->end_reason = reason;
	if (reply != NULL)
		to_client_str(s, reply);
	if (s->dead)
		return;
	if (s->up != NULL) {
		/* Polite end upstream; we do not wait for its 221. */
		(void)conn_write(s->up, "QUIT\r\n", 6);
		s->up_in += conn_bytes_in(s->up);
		s->up_out += conn_bytes_out(s->up);
		conn_free(s->up);
		s->up = NULL;
	}
	if (s->cl == NULL || s->client_gone || conn_out_len(s->cl) == 0) {
		end(s, reason);
		return;
	}
	/* Bound the wait for a client that does not read its last reply. */
	ev_timer_stop(s->loop, &s->timer);
	{
		ev_tstamp t = s->cfg->timeout < 10 ? (ev_tstamp)s->cfg->timeout : 10.;

		ev_timer_set(&s->timer, t, t);
	}
	ev_timer_start(s->loop, &s->timer);
}

static void
fmt_reply(struct session *s, char *out, size_t size, const char *code, const char *text)
{
	snprintf(out, size, "%s %s %s\r\n", code, s->cfg->hostname, text);
}

/* One more error reply; past max_errors the client is told and dropped. */
static void
count_error(struct session *s)
{
	char r[512];

	if (++s->errors < s->cfg->max_errors || s->state == S_CLOSING || s->dead)
		return;
	fmt_reply(s, r, sizeof(r), "421 4.7.0", "Too many errors, closing connection");
	close_with(s, r, "too-many-errors");
}

static void
emit_local(struct session *s, enum local_reply r)
{
	char buf[2048];
	size_t n;

	switch (r) {
	case R_EHLO:
		n = smtp_ehlo_reply(&s->caps, s->cfg->hostname, s->cfg->username[0] == '\0',
		    buf, sizeof(buf));
		to_client(s, buf, n);
		return;
	case R_HELO:
		snprintf(buf, sizeof(buf), "250 %s\r\n", s->cfg->hostname);
		break;
	case R_TOO_LONG:
		snprintf(buf, sizeof(buf), "500 5.5.2 Line too long (limit %d)\r\n", SMTP_LINE_MAX);
		break;
	case R_BARE:
		snprintf(buf, sizeof(buf), "500 5.5.2 Bare CR in command line\r\n");
		break;
	case R_BARE_LF:
		snprintf(buf, sizeof(buf), "500 5.5.2 Command line ended by a bare LF, not CRLF "
		    "(bare_newline = reject)\r\n");
		break;
	case R_UNKNOWN:
		snprintf(buf, sizeof(buf), "500 5.5.1 Command unrecognized\r\n");
		break;
	case R_NO_STARTTLS:
		snprintf(buf, sizeof(buf), "502 5.5.1 STARTTLS not offered by this proxy\r\n");
		break;
	case R_NO_BDAT:
		snprintf(buf, sizeof(buf), "502 5.5.1 BDAT not supported (no CHUNKING)\r\n");
		break;
	case R_AUTH_OK:
		snprintf(buf, sizeof(buf), "235 2.7.0 Authentication successful\r\n");
		break;
	case R_EHLO_SYNTAX:
		snprintf(buf, sizeof(buf), "501 5.5.4 Syntax: EHLO hostname\r\n");
		break;
	case R_HELO_SYNTAX:
		snprintf(buf, sizeof(buf), "501 5.5.4 Syntax: HELO hostname\r\n");
		break;
	/*
	 * Answered here: relayed, they would let anyone on the LAN enumerate the
	 * provider's addresses over the proxy's own login, and HELP names its software.
	 */
	case R_VRFY:
		snprintf(buf, sizeof(buf), "252 2.5.0 Cannot VRFY user, but will accept message "
		    "and attempt delivery\r\n");
		break;
	case R_EXPN:
		snprintf(buf, sizeof(buf), "502 5.5.1 EXPN not available\r\n");
		break;
	case R_HELP:
		snprintf(buf, sizeof(buf), "214-2.0.0 smtp-tls-proxy: commands are relayed to the "
		    "mail provider over TLS\r\n214 2.0.0 EHLO HELO MAIL RCPT DATA RSET NOOP "
		    "QUIT AUTH VRFY\r\n");
		break;
	case R_REJECTED:
		snprintf(buf, sizeof(buf), "550 5.5.2 Message refused: bare CR or LF in the "
		    "body (bare_newline = reject)\r\n");
		break;
	case R_UP_LOST_DATA:
		snprintf(buf, sizeof(buf), "451 4.4.2 Upstream connection lost during DATA; "
		    "message not delivered\r\n");
		break;
	case R_TOO_MANY_RCPTS:
		snprintf(buf, sizeof(buf), "452 4.5.3 Too many recipients (limit %lu)\r\n",
		    s->cfg->max_recipients);
		break;
	case R_TOO_BIG:
		snprintf(buf, sizeof(buf), "552 5.3.4 Message size exceeds fixed limit (%llu "
		    "bytes)\r\n", s->size_limit);
		break;
	}
	to_client_str(s, buf);
	/* A 452 for too many recipients is flow control (the client retries them in the
	 * next transaction, RFC 5321 4.5.3.1.10), not an error to count. */
	if ((buf[0] == '4' || buf[0] == '5') && r != R_TOO_MANY_RCPTS)
		count_error(s);
}

static void
push(struct session *s, enum pend_kind kind, int verb, int local)
{
	struct pend *p = &s->q[(s->qhead + s->qlen) % PEND_MAX];

	p->kind = (unsigned char)kind;
	p->verb = (unsigned char)verb;
	p->local = (unsigned char)local;
	p->txn = s->txn != NULL ? (unsigned char)(s->txn->id & 0xff) : 0;
	s->qlen++;
	if (kind != P_LOCAL)
		s->qup++;
}

static struct pend
pop(struct session *s)
{
	struct pend p = s->q[s->qhead];

	s->qhead = (s->qhead + 1) % PEND_MAX;
	s->qlen--;
	if (p.kind != P_LOCAL)
		s->qup--;
	return (p);
}

/* Answer the local entries now at the head of the FIFO. */
static void
flush_local(struct session *s)
{
	struct pend p;

	while (!s->dead && s->qlen > 0 && s->q[s->qhead].kind == P_LOCAL) {
		p = pop(s);
		emit_local(s, (enum local_reply)p.local);
	}
}

static void
local(struct session *s, enum local_reply r)
{
	push(s, P_LOCAL, 0, (int)r);
	flush_local(s);
}

static void
debug_line(struct session *s, const char *event, const char *p, size_t n, int mask_arg)
{
	struct logline l;

	if (!log_enabled(L_DEBUG))
		return;
	log_begin(&l, L_DEBUG, s->sid, event);
	if (mask_arg) {
		const char *sp = memchr(p, ' ', n);

		/* AUTH arguments are credentials: keep the verb and mechanism only. */
		if (mask_arg == 2)
			n = 0;
		else if (sp != NULL) {
			const char *sp2 = memchr(sp + 1, ' ', n - (size_t)(sp + 1 - p));

			n = sp2 ? (size_t)(sp2 - p) : n;
		}
		log_strn(&l, "line", p, n);
		log_str(&l, "masked", "yes");
	} else
		log_strn(&l, "line", p, n);
	log_end(&l);
}

/* Forward a client line upstream, ended with CRLF whatever ended it here, and expect
 * one reply for it. */
static void
forward(struct session *s, const char *line, size_t len, enum pend_kind kind, int verb)
{
	if (conn_write(s->up, line, len) != 0 || conn_write(s->up, "\r\n", 2) != 0) {
		close_with(s, NULL, "internal");
		return;
	}
	push(s, kind, verb, 0);
}

static void
handle_command(struct session *s, const char *line, size_t len)
{
	struct smtp_cmd cmd;

	if (s->auth_cont) {
		/* A SASL continuation: not a command, and a secret. */
		debug_line(s, "client.line", line, len, 2);
		s->auth_cont = 0;
		if (!smtp_line_is_clean(line, len)) {
			local(s, R_BARE);
			return;
		}
		forward(s, line, len, P_AUTH, SMTP_AUTH);
		s->blocked = 1;
		return;
	}
	if (len > SMTP_LINE_MAX) {
		local(s, R_TOO_LONG);
		return;
	}
	if (!smtp_line_is_clean(line, len)) {
		local(s, R_BARE);
		return;
	}
	smtp_cmd_parse(line, len, &cmd);
	debug_line(s, "client.line", line, len, cmd.verb == SMTP_AUTH);
	if (s->up == NULL && cmd.verb != SMTP_QUIT) {
		char r[512];

		fmt_reply(s, r, sizeof(r), "421 4.4.2", "upstream connection lost, closing");
		close_with(s, r, "upstream-lost");
		return;
	}
	switch (cmd.verb) {
	case SMTP_EHLO:
	case SMTP_HELO:
		if (cmd.arglen == 0) {
			local(s, cmd.verb == SMTP_EHLO ? R_EHLO_SYNTAX : R_HELO_SYNTAX);
			return;
		}
		if (s->in_txn) {
			/* EHLO resets the transaction (RFC 5321 4.1.4): so must the upstream's. */
			if (conn_write(s->up, "RSET\r\n", 6) != 0) {
				close_with(s, NULL, "internal");
				return;
			}
			push(s, P_EHLO_RSET, cmd.verb, 0);
			s->in_txn = 0;
			s->rcpts_sent = 0;
			return;
		}
		local(s, cmd.verb == SMTP_EHLO ? R_EHLO : R_HELO);
		return;
	case SMTP_MAIL:
		if (s->size_limit > 0 && smtp_mail_size(cmd.arg, cmd.arglen) > s->size_limit) {
			local(s, R_TOO_BIG);
			return;
		}
		s->in_txn = 1;
		s->rcpts_sent = 0;
		(void)txn_new(s, cmd.arg, cmd.arglen);
		forward(s, line, len, P_RELAY, cmd.verb);
		return;
	case SMTP_RSET:
		s->in_txn = 0;
		s->rcpts_sent = 0;
		forward(s, line, len, P_RELAY, cmd.verb);
		return;
	case SMTP_RCPT:
		if (s->rcpts_sent >= s->cfg->max_recipients) {
			local(s, R_TOO_MANY_RCPTS);
			return;
		}
		s->rcpts_sent++;
		txn_rcpt_sent(s->txn, cmd.arg, cmd.arglen);
		forward(s, line, len, P_RELAY, cmd.verb);
		return;
	case SMTP_NOOP:
		forward(s, line, len, P_RELAY, cmd.verb);
		return;
	case SMTP_VRFY:
		local(s, R_VRFY);
		return;
	case SMTP_EXPN:
		local(s, R_EXPN);
		return;
	case SMTP_HELP:
		local(s, R_HELP);
		return;
	case SMTP_DATA:
		forward(s, line, len, P_DATA, cmd.verb);
		s->blocked = 1;
		return;
	case SMTP_QUIT:
		if (s->up == NULL) {
			char r[512];

			fmt_reply(s, r, sizeof(r), "221 2.0.0", "Bye");
			close_with(s, r, "quit");
			return;
		}
		forward(s, line, len, P_RELAY, cmd.verb);
		s->blocked = 1;
		return;
	case SMTP_AUTH:
		if (s->cfg->username[0] != '\0') {
			/* The proxy holds the credentials and has used them already. */
			local(s, R_AUTH_OK);
			return;
		}
		conn_secret(s->cl, 1);
		conn_secret(s->up, 1);
		forward(s, line, len, P_AUTH, cmd.verb);
		s->blocked = 1;
		return;
	case SMTP_STARTTLS:
		local(s, R_NO_STARTTLS);
		return;
	case SMTP_BDAT:
		local(s, R_NO_BDAT);
		return;
	case SMTP_UNKNOWN:
		local(s, R_UNKNOWN);
		return;
	}
}

/* Can another client command be taken now? */
static int
may_read_command(struct session *s)
{
	if (s->dead || s->state != S_CMD || s->blocked || s->client_gone)
		return (0);
	if (s->qlen >= PEND_MAX - 1)
		return (0);
	/* Without PIPELINING upstream, one command at a time. */
	if (s->qup > 0 && !(s->caps.flags & SMTP_CAP_PIPELINING))
		return (0);
	if (s->up != NULL && conn_out_len(s->up) > 64 * 1024)
		return (0);
	/* A client that does not read its replies gets no more of them. */
	if (conn_out_room(s->cl) < 4096)
		return (0);
	return (1);
}

/* Is a whole command line waiting in the client's input? */
static int
has_line(struct session *s)
{
	const char *p;
	size_t have, len;

	return ((p = conn_peek(s->cl, &have)) != NULL && smtp_line_end(p, have, &len) != 0);
}

/* The first command ends the short first_command_timeout; every step gets timeout. */
static void
first_command(struct session *s)
{
	if (s->commands++ == 0)
		s->timer.repeat = (ev_tstamp)s->cfg->timeout;
}

static void
read_commands(struct session *s)
{
	const char *line;
	size_t len, have;
	int term;

	while (may_read_command(s)) {
		if ((line = conn_peek(s->cl, &have)) == NULL ||
		    (term = smtp_line_end(line, have, &len)) == 0) {
			/* No line end within the limit: drop the bytes, answer when the line ends. */
			if (line != NULL && have > SMTP_LINE_MAX + 2) {
				conn_consume(s->cl, have);
				s->discarding = 1;
			}
			return;
		}
		first_command(s);
		if (s->discarding) {
			s->discarding = 0;
			conn_consume(s->cl, len + (size_t)term);
			local(s, R_TOO_LONG);
			continue;
		}
		if (term == 1 && s->cfg->bare_newline == DATA_REJECT) {
			/* Refused at once: waiting for a CRLF that never comes would hang the device. */
			conn_consume(s->cl, len + 1);
			local(s, R_BARE_LF);
			continue;
		}
		handle_command(s, line, len);
		if (s->dead || s->cl == NULL)
			return;
		conn_consume(s->cl, len + (size_t)term);
		touch(s);
	}
}

/* Is ${code} a reply the upstream may give to what entry ${p} stands for? */
static int
reply_fits(const struct pend *p, int code)
{
	int cls = code / 100;

	switch (p->kind) {
	case P_DATA:
		return (code == 354 || cls == 4 || cls == 5);
	case P_AUTH:
		return (code == 334 || cls == 2 || cls == 4 || cls == 5);
	default:
		return (cls == 2 || cls == 4 || cls == 5);
	}
}

static void
upstream_garbled(struct session *s, const char *why)
{
	char r[512];
	struct logline l;

	log_begin(&l, L_WARN, s->sid, "upstream.protocol");
	log_str(&l, "detail", why);
	log_end(&l);
	if (s->qlen > 0 && s->q[s->qhead].kind == P_DOT)
		log_ended(s, "", 0, "tempfail");
	/* Its framing can no longer be trusted: answer the waiting command, then close. */
	fmt_reply(s, r, sizeof(r), "451 4.4.0", "Unexpected reply from upstream");
	to_client_str(s, r);
	fmt_reply(s, r, sizeof(r), "421 4.4.0", "Closing connection");
	close_with(s, r, "upstream-protocol");
}

static void
start_data(struct session *s)
{
	s->state = S_DATA;
	s->msg_bytes = 0;
	s->too_big = 0;
	s->data_start = ev_now(s->loop);
	data_init(&s->ds, s->cfg->bare_newline);
}

/* Relay the replies that have arrived, in the order their commands were sent. */
static void
read_replies(struct session *s)
{
	struct smtp_reply r;
	struct pend p;
	const char *rp;
	size_t len;
	long n;

	for (;;) {
		flush_local(s);
		if (s->dead || s->up == NULL)
			return;
		if (s->cl != NULL && !s->client_gone && conn_out_room(s->cl) < SMTP_REPLY_MAX)
			return;	/* resumed when the client drains */
		if ((rp = conn_peek(s->up, &len)) == NULL)
			return;
		if ((n = smtp_reply_parse(rp, len, &r)) < 0) {
			upstream_garbled(s, "malformed reply");
			return;
		}
		if (n == 0)
			return;
		if (s->state == S_DATA) {
			struct logline l;

			/*
			 * Mid-body the upstream may only speak to give up (421, or a size
			 * limit): treat it as lost, read the body to its end, answer 451.
			 */
			log_begin(&l, L_WARN, s->sid, "upstream.reply-in-data");
			log_strn(&l, "reply", rp, (size_t)n - 2);
			log_end(&l);
			upstream_lost(s);
			return;
		}
		if (s->qlen == 0) {
			char msg[400];

			/* Unasked: a 421 shutdown notice is relayed; anything else is garbage. */
			if (r.code == 421) {
				to_client(s, rp, (size_t)n);
				close_with(s, NULL, "upstream-421");
				return;
			}
			snprintf(msg, sizeof(msg), "unsolicited reply: %.*s", (int)(n - 2), rp);
			upstream_garbled(s, msg);
			return;
		}
		p = s->q[s->qhead];
		if (!reply_fits(&p, r.code)) {
			char msg[400];

			snprintf(msg, sizeof(msg), "reply %d does not fit %s", r.code,
			    p.kind == P_DOT ? "end of data" : smtp_verb_str((enum smtp_verb)p.verb));
			upstream_garbled(s, msg);
			return;
		}
		(void)pop(s);
		/* A reply inside an AUTH exchange may quote credentials: its code only. */
		debug_line(s, "upstream.reply", rp, p.kind == P_AUTH ? 3 : (size_t)n - 2, 0);
		switch (p.kind) {
		case P_EHLO_RSET:
			emit_local(s, p.verb == SMTP_EHLO ? R_EHLO : R_HELO);
			break;
		case P_DATA:
			to_client(s, rp, (size_t)n);
			s->blocked = 0;
			if (r.code == 354)
				start_data(s);
			break;
		case P_DOT:
			to_client(s, rp, (size_t)n);
			log_ended(s, rp, (size_t)n, r.code / 100 == 2 ? "ok" :
			    r.code / 100 == 4 ? "tempfail" : "permfail");
			s->in_txn = 0;
			break;
		case P_AUTH:
			to_client(s, rp, (size_t)n);
			s->blocked = 0;
			if (r.code == 334)
				s->auth_cont = 1;
			else if (s->cl != NULL && s->up != NULL) {
				conn_secret(s->cl, 0);
				conn_secret(s->up, 0);
			}
			break;
		default:
			to_client(s, rp, (size_t)n);
			/* Replies to a transaction that RSET or EHLO dropped are not its. */
			if (p.verb == SMTP_RCPT && s->txn != NULL && p.txn == (s->txn->id & 0xff))
				txn_rcpt_reply(s->txn, r.code / 100 == 2);
			if (r.code / 100 == 5)
				count_error(s);
			if (p.verb == SMTP_QUIT) {
				conn_consume(s->up, (size_t)n);
				close_with(s, NULL, "quit");
				return;
			}
			break;
		}
		if (s->dead || s->up == NULL)
			return;
		conn_consume(s->up, (size_t)n);
		touch(s);
		if (r.code == 421) {
			/* The upstream is going away; so does this session. */
			close_with(s, NULL, "upstream-421");
			return;
		}
		if (s->client_gone && s->qup == 0) {
			end(s, "client-closed");
			return;
		}
	}
}

/* Stream body bytes upstream until the end of data or until the upstream is full. */
static void
read_body(struct session *s)
{
	char scratch[DATA_OUT_MAX(4096)];
	const char *in;
	size_t len, chunk, got, outlen, used;
	char *out;

	while (!s->dead && s->state == S_DATA) {
		if ((in = conn_peek(s->cl, &len)) == NULL)
			return;
		if (s->up == NULL) {
			/* The upstream is gone: read to the end of data so we can answer. */
			chunk = len < 4096 ? len : 4096;
			used = data_scan(&s->ds, in, chunk, scratch, &outlen);
		} else {
			if (conn_out_room(s->up) < DATA_MIN_ROOM)
				return;	/* resumed by the upstream's DRAIN */
			chunk = len < DATA_CHUNK ? len : DATA_CHUNK;
			out = conn_wreserve(s->up, DATA_OUT_MAX(chunk), &got);
			if (out == NULL || got < DATA_OUT_MAX(1))
				return;
			if (got < DATA_OUT_MAX(chunk))
				chunk = (got - 4) / 2;
			used = data_scan(&s->ds, in, chunk, out, &outlen);
			/* Over the limit: this chunk (it may hold the final dot) never goes out. */
			if (s->size_limit > 0 && s->msg_bytes + used > s->size_limit + 3)
				outlen = 0;
			conn_wcommit(s->up, outlen);
		}
		s->msg_bytes += used;
		conn_consume(s->cl, used);
		if (s->dead)
			return;
		if (used > 0)
			touch(s);
		/* msg_bytes counts the terminating ".\r\n": the message itself is 3 less. */
		if (s->size_limit > 0 && s->msg_bytes > s->size_limit + 3 && !s->too_big) {
			/* Over the limit: drop the upstream (no final dot), read on, answer 552. */
			s->too_big = 1;
			if (s->up != NULL) {
				s->up_in += conn_bytes_in(s->up);
				s->up_out += conn_bytes_out(s->up);
				conn_abort(s->up);
				s->up = NULL;
			}
		}
		if (s->cfg->min_data_rate > 0 && !s->ds.done) {
			ev_tstamp t = ev_now(s->loop) - s->data_start;

			/* A client trickling its body would hold a session and an upstream forever. */
			if (t > 30. && (double)s->msg_bytes < t * (double)s->cfg->min_data_rate) {
				char r[512];

				log_data(s, "data rate below min_data_rate", "aborted");
				fmt_reply(s, r, sizeof(r), "421 4.4.2", "Data rate too low, closing");
				close_with(s, r, "slow-data");
				return;
			}
		}
		if (s->ds.bad && s->ds.policy == DATA_REJECT && s->up != NULL) {
			/* Abort now: without a final dot the upstream delivers nothing. */
			s->up_in += conn_bytes_in(s->up);
			s->up_out += conn_bytes_out(s->up);
			conn_abort(s->up);
			s->up = NULL;
		}
		if (!s->ds.done)
			continue;
		s->state = S_CMD;
		s->in_txn = 0;
		s->rcpts_sent = 0;
		if (s->too_big) {
			log_data(s, "552 5.3.4 over the size limit (rejected by the proxy)", "rejected");
			local(s, R_TOO_BIG);
		} else if (s->ds.bad && s->ds.policy == DATA_REJECT) {
			log_data(s, "550 5.5.2 bare CR or LF (rejected by the proxy)", "rejected");
			local(s, R_REJECTED);
		} else if (s->up == NULL) {
			log_data(s, "upstream lost during DATA", "tempfail");
			local(s, R_UP_LOST_DATA);
		} else {
			/* At most one: the next end of data needs a 354 that comes after its reply. */
			txn_free(&s->ended);
			if ((s->ended = s->txn) != NULL)
				s->ended->bytes = s->msg_bytes;
			s->txn = NULL;
			push(s, P_DOT, 0, 0);
		}
	}
}

/* Move everything along that can move. */
static void
process(struct session *s)
{
	unsigned guard;

	for (guard = 0; guard < 1000 && !s->dead; guard++) {
		enum sess_state before = s->state;
		unsigned qlen = s->qlen;
		size_t clin = s->cl ? conn_in_len(s->cl) : 0;

		if (s->up != NULL)
			read_replies(s);
		if (s->dead)
			return;
		if (s->state == S_DATA)
			read_body(s);
		if (s->dead)
			return;
		if (s->state == S_CMD)
			read_commands(s);
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
	if (s->up != NULL && (s->qup > 0 || has_line(s)))
		return;	/* replies or commands still to come; here again on each event */
	close_with(s, NULL, "client-closed");
}

static void
client_left(struct session *s, const char *why)
{
	if (s->state == S_DATA) {
		/* Mid-body: abort upstream without the final dot; nothing is delivered. */
		log_data(s, "client left during DATA", "aborted");
		end(s, why);
		return;
	}
	if (s->state == S_PREP || s->state == S_CLOSING) {
		end(s, why);
		return;
	}
	/* After its final dot, wait for the outcome so it is still logged. */
	s->client_gone = 1;
	s->end_reason = why;
	s->cl_in += conn_bytes_in(s->cl);
	s->cl_out += conn_bytes_out(s->cl);
	conn_free(s->cl);
	s->cl = NULL;
	if (s->qup == 0)
		end(s, why);
}

static void
cl_event(struct conn *c, int ev, void *arg)
{
	struct session *s = arg;

	enter(s);
	if (ev & CONN_EV_ERROR) {
		/* Take what the client sent before it failed (its QUIT, its final dot). */
		if (s->state == S_CMD || s->state == S_DATA)
			process(s);
		if (!s->dead && s->cl != NULL)
			client_left(s, "client-error");
		leave(s);
		return;
	}
	if (s->state == S_CLOSING) {
		/* A half-closed client still reads: its last replies go out before the close. */
		if (conn_out_len(c) == 0)
			end(s, s->end_reason);
		leave(s);
		return;
	}
	if (s->state != S_PREP)
		process(s);
	else if (conn_eof(c) && conn_in_len(c) == 0)
		client_left(s, "client-closed");	/* an early talker's input waits for the 220 */
	leave(s);
}

static void
upstream_lost(struct session *s)
{
	char r[512];
	struct logline l;

	log_begin(&l, L_WARN, s->sid, "upstream.lost");
	log_str(&l, "detail", s->up ? conn_error(s->up) : "");
	log_str(&l, "state", s->state == S_DATA ? "data" : "command");
	log_end(&l);
	if (s->up != NULL) {
		s->up_in += conn_bytes_in(s->up);
		s->up_out += conn_bytes_out(s->up);
		conn_abort(s->up);
		s->up = NULL;
	}
	if (s->state == S_DATA) {
		/* Read the rest of the body, then say 451; see read_body(). */
		process(s);
		return;
	}
	if (s->qlen > 0 && s->q[s->qhead].kind == P_DOT) {
		log_ended(s, LIT("upstream lost after end of data"), "tempfail");
		fmt_reply(s, r, sizeof(r), "451 4.4.2",
		    "Upstream connection lost before it confirmed the message");
		to_client_str(s, r);
	}
	if (s->client_gone) {
		end(s, "upstream-lost");
		return;
	}
	fmt_reply(s, r, sizeof(r), "421 4.4.2", "Upstream connection lost, closing");
	close_with(s, r, "upstream-lost");
}

static void
up_event(struct conn *c, int ev, void *arg)
{
	struct session *s = arg;

	(void)c;
	enter(s);
	if (ev & CONN_EV_ERROR) {
		/* Replies that arrived just before the failure (a 221, say) still count. */
		process(s);
		if (!s->dead && s->up != NULL)
			upstream_lost(s);
		leave(s);
		return;
	}
	process(s);
	if (!s->dead && s->up != NULL && conn_eof(s->up))
		upstream_lost(s);
	leave(s);
}

static void
on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct session *s = w->data;
	char r[512];

	(void)loop;
	(void)revents;
	enter(s);
	if (s->state == S_CLOSING)
		end(s, s->end_reason ? s->end_reason : "timeout");
	else if (s->state == S_DATA) {
		log_data(s, "client timed out during DATA", "aborted");
		fmt_reply(s, r, sizeof(r), "421 4.4.2", "Timeout exceeded, closing");
		close_with(s, r, "timeout");
	} else if (s->qup > 0) {
		if (s->q[s->qhead].kind == P_DOT)
			log_ended(s, LIT("upstream timed out after end of data"), "tempfail");
		fmt_reply(s, r, sizeof(r), "451 4.4.1", "Upstream did not answer in time");
		to_client_str(s, r);
		fmt_reply(s, r, sizeof(r), "421 4.4.1", "Closing connection");
		close_with(s, r, "upstream-timeout");
	} else if (s->client_gone)
		end(s, "client-closed");
	else if (s->commands == 0) {
		fmt_reply(s, r, sizeof(r), "421 4.4.2", "No command received in time, closing");
		close_with(s, r, "first-command-timeout");
	} else {
		fmt_reply(s, r, sizeof(r), "421 4.4.2", "Timeout exceeded, closing");
		close_with(s, r, "timeout");
	}
	leave(s);
}

static void
on_upstream(void *arg, struct conn *up, const struct smtp_caps *caps, const char *reply)
{
	struct session *s = arg;
	char greet[512];

	enter(s);
	s->prep = NULL;
	if (up == NULL) {
		close_with(s, reply, "upstream-failed");
		leave(s);
		return;
	}
	s->up = up;
	conn_set_cb(up, up_event, s);
	s->caps = *caps;
	/* The smaller of our limit and the upstream's SIZE, and that is what we announce. */
	s->size_limit = s->cfg->max_message_size;
	if (caps->size > 0 && (s->size_limit == 0 || caps->size < s->size_limit))
		s->size_limit = caps->size;
	if (s->size_limit > 0) {
		s->caps.flags |= SMTP_CAP_SIZE;
		s->caps.size = (unsigned long)s->size_limit;
	}
	s->state = S_CMD;
	/* Until its first command the device holds a provider login for nothing: wait less. */
	if (s->cfg->first_command_timeout < s->cfg->timeout)
		s->timer.repeat = (ev_tstamp)s->cfg->first_command_timeout;
	ev_timer_again(s->loop, &s->timer);
	fmt_reply(s, greet, sizeof(greet), "220", "ESMTP smtp-tls-proxy");
	to_client_str(s, greet);
	process(s);	/* an early talker's commands */
	leave(s);
}

struct session *
session_start(struct ev_loop *loop, struct config *cfg, int fd, const struct sockaddr *peer,
    session_done_cb *done, void *arg)
{
	struct session *s;
	struct logline l;

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		close(fd);
		return (NULL);
	}
	s->loop = loop;
	s->cfg = config_ref(cfg);
	s->done = done;
	s->done_arg = arg;
	s->started = ev_now(loop);
	new_sid(s->sid, sizeof(s->sid));
	memcpy(&s->peer, peer, peer->sa_family == AF_INET6 ?
	    sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
	session_addr_str(peer, s->client, sizeof(s->client));
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
	log_end(&l);
	s->state = S_PREP;
	if ((s->prep = upstream_start(loop, cfg, s->sid, s->client, on_upstream, s)) == NULL) {
		enter(s);
		close_with(s, "421 4.3.0 Out of memory\r\n", "internal");
		leave(s);
	}
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
	char r[512];

	for (s = sessions; s != NULL; s = next) {
		next = s->next;
		enter(s);
		if (s->state == S_DATA)
			log_data(s, "proxy shutting down during DATA", "aborted");
		else if (s->qlen > 0 && s->q[s->qhead].kind == P_DOT)
			log_ended(s, LIT("proxy shutting down before the upstream's reply"),
			    "tempfail");
		fmt_reply(s, r, sizeof(r), "421 4.3.2", "Service shutting down, try again later");
		/* Mid-DATA close_with() resets the upstream: nothing half-sent is delivered. */
		close_with(s, s->state == S_CLOSING ? NULL : r, "shutdown");
		if (!s->dead)
			end(s, "shutdown");
		leave(s);
	}
}
