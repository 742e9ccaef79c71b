/*
 * The command phase of a session.
 *
 * Owns: reading the client's command lines, deciding for each whether it may go
 * ("may we?": a verb's check) and what it does ("do it": its action, then relayed or
 * answered here), the FIFO of pending replies that keeps replies in the order of the
 * commands however the client pipelines, matching each upstream reply to its entry,
 * and the replies the proxy gives itself (one table).
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "conn.h"
#include "hdrfrom.h"
#include "log.h"
#include "sender.h"
#include "session_int.h"

#define XSTR(x)		STR(x)
#define STR(x)		#x

/* No more commands are read while the upstream has this much unsent. */
#define UP_BACKLOG_MAX	(64 * 1024)
/* ... or while the client has less room than this for its replies. */
#define CL_ROOM_MIN	4096

/* Replies of the proxy's own that do not depend on the session; the rest in emit_local(). */
static const char *const local_text[R_NLOCAL] = {
	[R_TOO_LONG] = "500 5.5.2 Line too long (limit " XSTR(SMTP_LINE_MAX) ")\r\n",
	[R_BARE] = "500 5.5.2 Bare CR in command line\r\n",
	[R_BARE_LF] = "500 5.5.2 Command line ended by a bare LF, not CRLF "
	    "(bare_newline = reject)\r\n",
	[R_UNKNOWN] = "500 5.5.1 Command unrecognized\r\n",
	[R_NO_STARTTLS] = "502 5.5.1 STARTTLS not offered by this proxy\r\n",
	[R_NO_BDAT] = "502 5.5.1 BDAT not supported (no CHUNKING)\r\n",
	[R_AUTH_OK] = "235 2.7.0 Authentication successful\r\n",
	[R_EHLO_SYNTAX] = "501 5.5.4 Syntax: EHLO hostname\r\n",
	[R_HELO_SYNTAX] = "501 5.5.4 Syntax: HELO hostname\r\n",
	/*
	 * VRFY, EXPN and HELP are answered here: relayed, they would let anyone on the
	 * LAN enumerate the provider's addresses over the proxy's own login, and HELP
	 * names the provider's software.
	 */
	[R_VRFY] = "252 2.5.0 Cannot VRFY user, but will accept message and attempt "
	    "delivery\r\n",
	[R_EXPN] = "502 5.5.1 EXPN not available\r\n",
	[R_HELP] = "214-2.0.0 smtp-tls-proxy: commands are relayed to the mail provider "
	    "over TLS\r\n214 2.0.0 EHLO HELO MAIL RCPT DATA RSET NOOP QUIT AUTH VRFY\r\n",
	[R_REJECTED] = "550 5.5.2 Message refused: bare CR or LF in the body "
	    "(bare_newline = reject)\r\n",
	[R_UP_LOST_DATA] = "451 4.4.2 Upstream connection lost during DATA; message not "
	    "delivered\r\n",
	/* client_auth = required: the device logs in to the proxy (clientauth.c). */
	[R_AUTH_REQUIRED] = "530 5.7.0 Authentication required\r\n",
	[R_AUTH_FAILED] = "535 5.7.8 Authentication credentials invalid\r\n",
	[R_AUTH_TEMP] = "454 4.7.0 Temporary authentication failure\r\n",
	[R_AUTH_CANCELLED] = "501 5.0.0 Authentication cancelled\r\n",
	[R_AUTH_DECODE] = "501 5.5.2 Cannot decode the response\r\n",
	[R_AUTH_SYNTAX] = "501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n",
	[R_AUTH_MECH] = "504 5.5.4 Unrecognized authentication type (PLAIN or LOGIN)\r\n",
	[R_AUTH_TWICE] = "503 5.5.1 Already authenticated\r\n",
	[R_AUTH_CHALLENGE] = "334 \r\n",
	[R_AUTH_USERNAME] = "334 VXNlcm5hbWU6\r\n",		/* "Username:" */
	[R_AUTH_PASSWORD] = "334 UGFzc3dvcmQ6\r\n",		/* "Password:" */
	[R_STARTTLS] = "220 2.0.0 Ready to start TLS\r\n",
	[R_TLS_ACTIVE] = "503 5.5.1 TLS already active\r\n",
	[R_STARTTLS_TXN] = "503 5.5.1 STARTTLS not allowed during a mail transaction\r\n",
	[R_STARTTLS_SYNTAX] = "501 5.5.4 Syntax: STARTTLS (no parameters)\r\n",
	[R_TLS_REQUIRED] = "530 5.7.0 Must issue a STARTTLS command first\r\n",
	[R_NEED_HELO] = "503 5.5.1 Send EHLO or HELO first\r\n",
	[R_BYE] = "221 2.0.0 Bye\r\n",
};

/*
 * The EHLO reply: the upstream's capabilities we pass on, our own AUTH for client_auth,
 * STARTTLS on a starttls listener before TLS. Under require_tls no AUTH is shown before
 * TLS: it would only be refused.
 */
static size_t
ehlo_reply(const struct session *s, char *buf, size_t size)
{
	int tls_first = TLS_MISSING(s);
	size_t n;

	if (CLIENTAUTH_ON(s) && !tls_first)
		n = clientauth_ehlo(s, buf, size);
	else
		n = smtp_ehlo_reply(&s->caps, s->cfg->hostname, !tls_first &&
		    s->upc->username[0] == '\0', buf, size);
	if (n > 0 && STARTTLS_OFFERED(s))
		n = smtp_ehlo_add(buf, n, size, "STARTTLS");
	return (n);
}

static void
emit_local(struct session *s, enum local_reply r)
{
	char buf[2048];
	size_t n;

	switch (r) {
	case R_EHLO:
		n = ehlo_reply(s, buf, sizeof(buf));
		break;
	case R_HELO:
		n = (size_t)snprintf(buf, sizeof(buf), "250 %s\r\n", s->cfg->hostname);
		break;
	case R_TOO_MANY_RCPTS:
		n = (size_t)snprintf(buf, sizeof(buf), "452 4.5.3 Too many recipients (limit "
		    "%lu)\r\n", s->lim->max_recipients);
		break;
	case R_TOO_BIG:
		n = (size_t)snprintf(buf, sizeof(buf), "552 5.3.4 Message size exceeds fixed "
		    "limit (%llu bytes)\r\n", s->size_limit);
		break;
	case R_HDR_TOO_BIG:
		n = (size_t)snprintf(buf, sizeof(buf), "552 5.3.4 Message header too big to "
		    "rewrite its From (limit %d bytes)\r\n", HDRFROM_MAX);
		break;
	default:
		assert(r > R_NONE && r < R_NLOCAL && local_text[r] != NULL);
		n = strlen(local_text[r]);
		memcpy(buf, local_text[r], n + 1);
		break;
	}
	assert(n < sizeof(buf));
	session_to_client(s, buf, n);
	/* A 452 for too many recipients is flow control (the client retries them in the
	 * next transaction, RFC 5321 4.5.3.1.10), not an error to count. */
	if ((buf[0] == '4' || buf[0] == '5') && r != R_TOO_MANY_RCPTS)
		session_count_error(s);
}

/* ---- the FIFO of pending replies ------------------------------------------------- */

void
relay_push(struct session *s, enum pend_kind kind, int verb, int local)
{
	struct pend *p;

	assert(s->qlen < PEND_MAX);
	p = &s->q[(s->qhead + s->qlen) % PEND_MAX];
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
	struct pend p;

	assert(s->qlen > 0);
	p = s->q[s->qhead];
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
		if (p.local == R_STARTTLS && !s->dead)
			session_starttls(s);
		else if (p.local == R_BYE && !s->dead)
			session_quit(s);
	}
}

void
relay_local(struct session *s, enum local_reply r)
{
	relay_push(s, P_LOCAL, 0, (int)r);
	flush_local(s);
}

int
relay_dot_pending(const struct session *s)
{
	return (s->qlen > 0 && s->q[s->qhead].kind == P_DOT);
}

/* ---- commands -------------------------------------------------------------------- */

static void
debug_line(struct session *s, const char *event, const char *p, size_t n, int mask_arg)
{
	struct logline l;
	const char *sp, *sp2;

	if (!log_enabled(L_DEBUG))
		return;
	log_begin(&l, L_DEBUG, s->sid, event);
	if (mask_arg) {
		/* AUTH arguments are credentials: keep the verb and mechanism only. */
		if (mask_arg == 2)
			n = 0;
		else if ((sp = memchr(p, ' ', n)) != NULL) {
			sp2 = memchr(sp + 1, ' ', n - (size_t)(sp + 1 - p));
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
		session_fail(s, NULL, NULL, "internal");
		return;
	}
	relay_push(s, kind, verb, 0);
}

/* "May we?": a reply that refuses the command, or R_NONE. No side effects. */
typedef enum local_reply verb_check(const struct session *, const struct smtp_cmd *);
/* "Do it": 1 if the command is fully handled, 0 to relay or answer it as the table says. */
typedef int verb_act(struct session *, const struct smtp_cmd *);

static enum local_reply
check_helo(const struct session *s, const struct smtp_cmd *c)
{
	(void)s;
	if (c->arglen > 0)
		return (R_NONE);
	return (c->verb == SMTP_EHLO ? R_EHLO_SYNTAX : R_HELO_SYNTAX);
}

static int
act_helo(struct session *s, const struct smtp_cmd *c)
{
	s->need_helo = 0;
	if (!s->in_txn)
		return (0);
	/* EHLO resets the transaction (RFC 5321 4.1.4): so must the upstream's. */
	if (conn_write(s->up, "RSET\r\n", 6) != 0) {
		session_fail(s, NULL, NULL, "internal");
		return (1);
	}
	relay_push(s, P_EHLO_RSET, c->verb, 0);
	s->in_txn = 0;
	s->rcpts_sent = 0;
	return (1);
}

/* What holds back MAIL, RCPT, DATA and AUTH: STARTTLS not yet done, or EHLO not again. */
static enum local_reply
check_tls(const struct session *s)
{
	if (TLS_MISSING(s))
		return (R_TLS_REQUIRED);
	return (s->need_helo ? R_NEED_HELO : R_NONE);
}

static enum local_reply
check_mail(const struct session *s, const struct smtp_cmd *c)
{
	enum local_reply r;

	if ((r = check_tls(s)) != R_NONE)
		return (r);
	if (CLIENTAUTH_MISSING(s))
		return (R_AUTH_REQUIRED);
	if (s->size_limit > 0 && smtp_mail_size(c->arg, c->arglen) > s->size_limit)
		return (R_TOO_BIG);
	return (R_NONE);
}

static int
act_mail(struct session *s, const struct smtp_cmd *c)
{
	char line[SMTP_LINE_MAX + 400];
	int n;

	s->in_txn = 1;
	s->rcpts_sent = 0;
	/* force_sender: the upstream gets the profile's sender, the parameters as they were. */
	if (s->dev == NULL || s->dev->force_sender[0] == '\0' ||
	    (n = sender_mail(c->arg, c->arglen, s->dev->force_sender, line, sizeof(line))) <= 0) {
		body_txn_new(s, c->arg, c->arglen);
		return (0);
	}
	body_txn_new(s, line + 5, (size_t)n - 5);
	body_txn_device_from(s, c->arg, c->arglen);
	forward(s, line, (size_t)n, P_RELAY, SMTP_MAIL);
	return (1);
}

static enum local_reply
check_rcpt(const struct session *s, const struct smtp_cmd *c)
{
	enum local_reply r;

	(void)c;
	if ((r = check_tls(s)) != R_NONE)
		return (r);
	if (CLIENTAUTH_MISSING(s))
		return (R_AUTH_REQUIRED);
	return (s->rcpts_sent >= s->lim->max_recipients ? R_TOO_MANY_RCPTS : R_NONE);
}

static enum local_reply
check_data(const struct session *s, const struct smtp_cmd *c)
{
	enum local_reply r;

	(void)c;
	if ((r = check_tls(s)) != R_NONE)
		return (r);
	return (CLIENTAUTH_MISSING(s) ? R_AUTH_REQUIRED : R_NONE);
}

static enum local_reply
check_auth(const struct session *s, const struct smtp_cmd *c)
{
	(void)c;
	return (check_tls(s));
}

static enum local_reply
check_starttls(const struct session *s, const struct smtp_cmd *c)
{
	if (s->lc == NULL || s->lc->tls != LTLS_STARTTLS)
		return (R_NO_STARTTLS);
	if (s->tls_active)
		return (R_TLS_ACTIVE);
	if (c->arglen > 0)
		return (R_STARTTLS_SYNTAX);
	return (s->in_txn ? R_STARTTLS_TXN : R_NONE);
}

/*
 * Nothing more is read until the 220 is out and the handshake has begun; what the
 * device sent after STARTTLS is then thrown away unread (session_starttls).
 */
static int
act_starttls(struct session *s, const struct smtp_cmd *c)
{
	(void)c;
	s->blocked = 1;
	relay_local(s, R_STARTTLS);
	return (1);
}

static int
act_rcpt(struct session *s, const struct smtp_cmd *c)
{
	s->rcpts_sent++;
	body_txn_rcpt_sent(s, c->arg, c->arglen);
	return (0);
}

static int
act_rset(struct session *s, const struct smtp_cmd *c)
{
	(void)c;
	s->in_txn = 0;
	s->rcpts_sent = 0;
	return (0);
}

static int
act_quit(struct session *s, const struct smtp_cmd *c)
{
	(void)c;
	if (s->up != NULL && s->upc->reuse > 0) {
		/* Answered here in turn, so the upstream session can outlive the device's. */
		s->blocked = 1;
		relay_local(s, R_BYE);
		return (1);
	}
	if (s->up != NULL)
		return (0);
	session_fail(s, "221 2.0.0", "Bye", "quit");
	return (1);
}

static int
act_auth(struct session *s, const struct smtp_cmd *c)
{
	if (CLIENTAUTH_ON(s)) {
		/* The device logs in to the proxy; its credentials never go upstream. */
		clientauth_start(s, c);
		return (1);
	}
	if (s->upc->username[0] != '\0') {
		/* The proxy holds the credentials and has used them already. */
		relay_local(s, R_AUTH_OK);
		return (1);
	}
	conn_secret(s->cl, 1);
	conn_secret(s->up, 1);
	return (0);
}

/* Every verb: how its reply is handled (P_LOCAL: answered here with ${local}). */
static const struct verb_rule {
	enum smtp_verb	 verb;
	enum pend_kind	 kind;
	enum local_reply local;
	int		 blocks;	/* nothing more is read until its reply: what
					   follows is body, credentials or nothing */
	verb_check	*check;
	verb_act	*act;
} verbs[] = {
	{ SMTP_EHLO, P_LOCAL, R_EHLO, 0, check_helo, act_helo },
	{ SMTP_HELO, P_LOCAL, R_HELO, 0, check_helo, act_helo },
	{ SMTP_MAIL, P_RELAY, R_NONE, 0, check_mail, act_mail },
	{ SMTP_RCPT, P_RELAY, R_NONE, 0, check_rcpt, act_rcpt },
	{ SMTP_RSET, P_RELAY, R_NONE, 0, NULL, act_rset },
	{ SMTP_NOOP, P_RELAY, R_NONE, 0, NULL, NULL },
	{ SMTP_DATA, P_DATA, R_NONE, 1, check_data, NULL },
	{ SMTP_QUIT, P_RELAY, R_NONE, 1, NULL, act_quit },
	{ SMTP_AUTH, P_AUTH, R_NONE, 1, check_auth, act_auth },
	{ SMTP_VRFY, P_LOCAL, R_VRFY, 0, NULL, NULL },
	{ SMTP_EXPN, P_LOCAL, R_EXPN, 0, NULL, NULL },
	{ SMTP_HELP, P_LOCAL, R_HELP, 0, NULL, NULL },
	{ SMTP_STARTTLS, P_LOCAL, R_NONE, 1, check_starttls, act_starttls },
	{ SMTP_BDAT, P_LOCAL, R_NO_BDAT, 0, NULL, NULL },
	{ SMTP_UNKNOWN, P_LOCAL, R_UNKNOWN, 0, NULL, NULL },
};

static const struct verb_rule *
rule_of(enum smtp_verb v)
{
	size_t i;

	for (i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (verbs[i].verb == v)
			return (&verbs[i]);
	return (&verbs[sizeof(verbs) / sizeof(verbs[0]) - 1]);
}

/* A SASL continuation line: not a command, and a secret. */
static void
auth_continuation(struct session *s, const char *line, size_t len)
{
	debug_line(s, "client.line", line, len, 2);
	s->auth_cont = 0;
	if (!smtp_line_is_clean(line, len)) {
		relay_local(s, R_BARE);
		return;
	}
	forward(s, line, len, P_AUTH, SMTP_AUTH);
	s->blocked = 1;
}

static void
handle_command(struct session *s, const char *line, size_t len)
{
	const struct verb_rule *rule;
	enum local_reply refusal;
	struct smtp_cmd cmd;

	if (s->auth_cont) {
		auth_continuation(s, line, len);
		return;
	}
	if (clientauth_pending(s)) {
		debug_line(s, "client.line", line, len, 2);
		clientauth_response(s, line, len);
		return;
	}
	clientauth_idle(s);
	if (len > SMTP_LINE_MAX || !smtp_line_is_clean(line, len)) {
		relay_local(s, len > SMTP_LINE_MAX ? R_TOO_LONG : R_BARE);
		return;
	}
	smtp_cmd_parse(line, len, &cmd);
	debug_line(s, "client.line", line, len, cmd.verb == SMTP_AUTH);
	if (s->up == NULL && cmd.verb != SMTP_QUIT) {
		session_fail(s, "421 4.4.2", "upstream connection lost, closing", "upstream-lost");
		return;
	}
	rule = rule_of(cmd.verb);
	if (rule->check != NULL && (refusal = rule->check(s, &cmd)) != R_NONE) {
		relay_local(s, refusal);
		return;
	}
	if (rule->act != NULL && rule->act(s, &cmd))
		return;
	if (rule->kind == P_LOCAL) {
		relay_local(s, rule->local);
		return;
	}
	forward(s, line, len, rule->kind, cmd.verb);
	if (rule->blocks)
		s->blocked = 1;
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
	if (s->up != NULL && conn_out_len(s->up) > UP_BACKLOG_MAX)
		return (0);
	/* A client that does not read its replies gets no more of them. */
	if (conn_out_room(s->cl) < CL_ROOM_MIN)
		return (0);
	return (1);
}

int
relay_has_line(struct session *s)
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

void
relay_read_commands(struct session *s)
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
			relay_local(s, R_TOO_LONG);
			continue;
		}
		if (term == 1 && s->lim->bare_newline == DATA_REJECT) {
			/* Refused at once: waiting for a CRLF that never comes would hang the device. */
			conn_consume(s->cl, len + 1);
			relay_local(s, R_BARE_LF);
			continue;
		}
		handle_command(s, line, len);
		if (s->dead || s->cl == NULL)
			return;
		conn_consume(s->cl, len + (size_t)term);
		session_touch(s);
	}
}

/* ---- replies --------------------------------------------------------------------- */

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

/* One handler per kind of entry; the reply ${rp}/${n} is relayed by it or not at all. */
typedef void reply_handler(struct session *, const struct pend *, const char *, size_t,
    const struct smtp_reply *);

static void
on_ehlo_rset(struct session *s, const struct pend *p, const char *rp, size_t n,
    const struct smtp_reply *r)
{
	(void)rp;
	(void)n;
	if (r->code != 250)
		s->up_doubt = 1;
	emit_local(s, p->verb == SMTP_EHLO ? R_EHLO : R_HELO);
}

static void
on_data(struct session *s, const struct pend *p, const char *rp, size_t n,
    const struct smtp_reply *r)
{
	(void)p;
	session_to_client(s, rp, n);
	s->blocked = 0;
	if (r->code == 354)
		body_start(s);
	else
		s->up_doubt = 1;
}

static void
on_dot(struct session *s, const struct pend *p, const char *rp, size_t n,
    const struct smtp_reply *r)
{
	(void)p;
	session_to_client(s, rp, n);
	body_log_ended(s, rp, n, r->code / 100 == 2 ? "ok" : r->code / 100 == 4 ?
	    "tempfail" : "permfail");
	s->in_txn = 0;
	if (r->code / 100 == 2)
		s->up_msgs++;
	else
		s->up_doubt = 1;
}

static void
on_auth(struct session *s, const struct pend *p, const char *rp, size_t n,
    const struct smtp_reply *r)
{
	(void)p;
	session_to_client(s, rp, n);
	s->blocked = 0;
	if (r->code == 334)
		s->auth_cont = 1;
	else if (s->cl != NULL && s->up != NULL) {
		conn_secret(s->cl, 0);
		conn_secret(s->up, 0);
	}
}

static void
on_relay(struct session *s, const struct pend *p, const char *rp, size_t n,
    const struct smtp_reply *r)
{
	session_to_client(s, rp, n);
	if (p->verb == SMTP_RCPT)
		body_txn_rcpt_reply(s, p, r->code / 100 == 2);
	/* A refused sender or recipient is business as usual; anything else is doubt. */
	if (r->code >= 400 && p->verb != SMTP_RCPT && p->verb != SMTP_MAIL)
		s->up_doubt = 1;
	if (r->code / 100 == 5)
		session_count_error(s);
	if (p->verb == SMTP_QUIT && !s->dead) {
		/* Its 221 is the upstream's goodbye: nothing more to say to it. */
		session_drop_upstream(s, DROP_CLOSE);
		session_fail(s, NULL, NULL, "quit");
	}
}

static reply_handler *const on_reply[P_NKINDS] = {
	[P_RELAY] = on_relay, [P_DATA] = on_data, [P_DOT] = on_dot, [P_AUTH] = on_auth,
	[P_EHLO_RSET] = on_ehlo_rset,
};

/* A reply arrived mid-body or unasked: 0 if the loop may go on, -1 if it is over. */
static int
unexpected_reply(struct session *s, const char *rp, long n, const struct smtp_reply *r)
{
	char msg[400];
	struct logline l;

	if (s->state == S_DATA) {
		/*
		 * Mid-body the upstream may only speak to give up (421, or a size limit):
		 * treat it as lost, read the body to its end, answer 451.
		 */
		log_begin(&l, L_WARN, s->sid, "upstream.reply-in-data");
		log_strn(&l, "reply", rp, (size_t)n - 2);
		log_end(&l);
		session_upstream_lost(s);
		return (-1);
	}
	if (s->qlen > 0)
		return (0);
	/* Unasked: a 421 shutdown notice is relayed; anything else is garbage. */
	if (r->code == 421) {
		session_to_client(s, rp, (size_t)n);
		session_fail(s, NULL, NULL, "upstream-421");
		return (-1);
	}
	snprintf(msg, sizeof(msg), "unsolicited reply: %.*s", (int)(n - 2), rp);
	session_upstream_garbled(s, msg);
	return (-1);
}

void
relay_read_replies(struct session *s)
{
	struct smtp_reply r;
	struct pend p;
	const char *rp;
	char msg[400];
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
		if ((n = smtp_reply_parse(rp, len, &r)) <= 0) {
			if (n < 0)
				session_upstream_garbled(s, "malformed reply");
			return;
		}
		if (unexpected_reply(s, rp, n, &r) != 0)
			return;
		p = s->q[s->qhead];
		if (!reply_fits(&p, r.code)) {
			snprintf(msg, sizeof(msg), "reply %d does not fit %s", r.code,
			    p.kind == P_DOT ? "end of data" : smtp_verb_str((enum smtp_verb)p.verb));
			session_upstream_garbled(s, msg);
			return;
		}
		(void)pop(s);
		/* A reply inside an AUTH exchange may quote credentials: its code only. */
		debug_line(s, "upstream.reply", rp, p.kind == P_AUTH ? 3 : (size_t)n - 2, 0);
		assert(p.kind < P_NKINDS && on_reply[p.kind] != NULL);
		on_reply[p.kind](s, &p, rp, (size_t)n, &r);
		if (s->dead || s->up == NULL)
			return;
		conn_consume(s->up, (size_t)n);
		session_touch(s);
		if (r.code == 421) {
			/* The upstream is going away; so does this session. */
			session_fail(s, NULL, NULL, "upstream-421");
			return;
		}
		if (s->client_gone && s->qup == 0) {
			session_end(s, "client-closed");
			return;
		}
	}
}
