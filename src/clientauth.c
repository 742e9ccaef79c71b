/*
 * The device's AUTH to the proxy itself, for a profile with client_auth = required.
 *
 * Owns the exchange (AUTH PLAIN and AUTH LOGIN, with or without an initial response),
 * the check against the users_file table of the session's own config, the delay before
 * a refusal, and the client.auth log line. Nothing of it goes upstream: the upstream
 * login is the profile's own, made before the device was greeted.
 *
 *   AUTH PLAIN resp ───────────────────────────────► verify
 *   AUTH PLAIN ──► 334 ──► resp ───────────────────► verify
 *   AUTH LOGIN ──► 334 Username: ──► name ─┐
 *   AUTH LOGIN name ───────────────────────┴► 334 Password: ──► pass ──► verify
 *   verify ─ok─► 235            ─refused─► (DELAY s) 535, counted toward max_errors
 *   "*" at any 334 ──► 501
 *
 * Cost: a verification runs crypt(3) on the worker's event loop (about 30 ms for a
 * yescrypt hash at libxcrypt's default cost on a small machine, 3 ms for SHA-512);
 * that worker serves no one else meanwhile. A session gets at most one per AUTH, a
 * refused one is answered only after DELAY seconds during which the session reads
 * nothing, and after a success AUTH is refused without a verification: one device can
 * cost about one verification a second, and max_errors ends its session after a few.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "config.h"
#include "conn.h"
#include "log.h"
#include "sasl.h"
#include "session_int.h"
#include "shared.h"
#include "users.h"

/* Seconds before a refusal is answered: what slows a guesser down. */
#define DELAY	1.0

enum step { ST_IDLE, ST_PLAIN, ST_LOGIN_USER, ST_LOGIN_PASS, ST_DELAY };

struct clientauth {
	ev_timer	 delay;
	struct session	*s;
	enum step	 step;
	int		 wiping;	/* the client's input is wiped as it is consumed */
	char		 user[SASL_FIELD_MAX + 1];
};

size_t
clientauth_ehlo(const struct session *s, char *out, size_t size)
{
	struct smtp_caps caps = s->caps;

	caps.flags |= SMTP_CAP_AUTH | SMTP_CAP_AUTH_OLD;
	snprintf(caps.auth, sizeof(caps.auth), "PLAIN LOGIN");
	return (smtp_ehlo_reply(&caps, s->cfg->hostname, 1, out, size));
}

/* One line per finished exchange; never the password, nor the response it came in. */
static void
log_auth(struct session *s, enum sasl_mech mech, const char *result, long ms)
{
	struct logline l;

	shared_m_auth(SHARED_AUTH_DEVICE, s->authed);
	log_begin(&l, s->authed ? L_INFO : L_WARN, s->sid, "client.auth");
	log_str(&l, "client", s->client);
	if (s->ca->user[0] != '\0')
		log_str(&l, "user", s->ca->user);
	log_str(&l, "mech", sasl_mech_str(mech));
	log_str(&l, "result", result);
	if (ms >= 0)
		log_num(&l, "ms", ms);
	log_end(&l);
}

static void
answer(struct session *s, enum local_reply r, enum step next)
{
	s->ca->step = next;
	relay_local(s, r);
}

/* The DELAY is over: the refusal, in turn, and the session reads again. */
static void
refuse_now(struct session *s)
{
	if (s->ca == NULL || s->ca->step != ST_DELAY)
		return;
	s->blocked = 0;
	if (s->state == S_CMD)
		answer(s, R_AUTH_FAILED, ST_IDLE);
}

static void
on_delay(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct clientauth *ca = w->data;

	(void)loop;
	(void)revents;
	session_run(ca->s, refuse_now);
}

static void
verify(struct session *s, enum sasl_mech mech, char *pass)
{
	struct clientauth *ca = s->ca;
	enum users_result r;
	long ms;

	r = users_verify(s->cfg->users, ca->user, pass, &ms);
	OPENSSL_cleanse(pass, strlen(pass));
	if (r == USERS_OK)
		s->authed = 1;
	log_auth(s, mech, users_result_str(r), ms);
	if (r == USERS_OK) {
		answer(s, R_AUTH_OK, ST_IDLE);
		return;
	}
	if (r == USERS_ERROR) {
		answer(s, R_AUTH_TEMP, ST_IDLE);
		return;
	}
	/* Nothing more is read until the refusal: a guesser gets one try a DELAY. */
	ca->step = ST_DELAY;
	s->blocked = 1;
	ev_now_update(s->loop);		/* counted from now, not from before crypt ran */
	ev_timer_set(&ca->delay, DELAY, 0.);
	ev_timer_start(s->loop, &ca->delay);
}

static void
malformed(struct session *s, enum sasl_mech mech, enum local_reply r, const char *result)
{
	log_auth(s, mech, result, -1);
	answer(s, r, ST_IDLE);
}

/* A PLAIN response (initial or after the 334). */
static void
plain(struct session *s, const char *resp, size_t len)
{
	char pass[SASL_FIELD_MAX + 1];

	if (sasl_plain(resp, len, s->ca->user, sizeof(s->ca->user), pass, sizeof(pass)) != 0) {
		s->ca->user[0] = '\0';
		malformed(s, SASL_PLAIN, R_AUTH_DECODE, "malformed");
		return;
	}
	verify(s, SASL_PLAIN, pass);
	OPENSSL_cleanse(pass, sizeof(pass));
}

/* A LOGIN user name (initial or after "Username:"); the password is asked next. */
static void
login_user(struct session *s, const char *resp, size_t len)
{
	if (sasl_login(resp, len, s->ca->user, sizeof(s->ca->user)) != 0 ||
	    s->ca->user[0] == '\0') {
		s->ca->user[0] = '\0';
		malformed(s, SASL_LOGIN, R_AUTH_DECODE, "malformed");
		return;
	}
	answer(s, R_AUTH_PASSWORD, ST_LOGIN_PASS);
}

static void
login_pass(struct session *s, const char *resp, size_t len)
{
	char pass[SASL_FIELD_MAX + 1];

	if (sasl_login(resp, len, pass, sizeof(pass)) != 0) {
		OPENSSL_cleanse(pass, sizeof(pass));
		malformed(s, SASL_LOGIN, R_AUTH_DECODE, "malformed");
		return;
	}
	verify(s, SASL_LOGIN, pass);
	OPENSSL_cleanse(pass, sizeof(pass));
}

/* The exchange's lines are credentials: wipe the client's input as it is consumed. */
static void
wipe_input(struct session *s)
{
	if (!s->ca->wiping && s->cl != NULL) {
		conn_secret(s->cl, 1);
		s->ca->wiping = 1;
	}
}

void
clientauth_start(struct session *s, const struct smtp_cmd *c)
{
	enum sasl_mech mech;
	const char *ir;
	size_t irlen;

	if (s->ca == NULL) {
		if ((s->ca = calloc(1, sizeof(*s->ca))) == NULL) {
			relay_local(s, R_AUTH_TEMP);
			return;
		}
		s->ca->s = s;
		ev_init(&s->ca->delay, on_delay);
		s->ca->delay.data = s->ca;
	}
	wipe_input(s);
	s->ca->user[0] = '\0';
	if (s->authed) {
		relay_local(s, R_AUTH_TWICE);
		return;
	}
	if (sasl_auth_parse(c->arg, c->arglen, &mech, &ir, &irlen) != 0) {
		relay_local(s, R_AUTH_SYNTAX);
		return;
	}
	if (mech == SASL_UNKNOWN) {
		malformed(s, mech, R_AUTH_MECH, "unsupported-mechanism");
		return;
	}
	if (mech == SASL_PLAIN && ir == NULL)
		answer(s, R_AUTH_CHALLENGE, ST_PLAIN);
	else if (mech == SASL_PLAIN)
		plain(s, ir, irlen);
	else if (ir == NULL)
		answer(s, R_AUTH_USERNAME, ST_LOGIN_USER);
	else
		login_user(s, ir, irlen);
}

int
clientauth_pending(const struct session *s)
{
	return (s->ca != NULL && (s->ca->step == ST_PLAIN || s->ca->step == ST_LOGIN_USER ||
	    s->ca->step == ST_LOGIN_PASS));
}

void
clientauth_response(struct session *s, const char *line, size_t len)
{
	struct clientauth *ca = s->ca;
	enum sasl_mech mech = ca->step == ST_PLAIN ? SASL_PLAIN : SASL_LOGIN;

	wipe_input(s);
	if (sasl_is_cancel(line, len)) {
		malformed(s, mech, R_AUTH_CANCELLED, "cancelled");
		return;
	}
	switch (ca->step) {
	case ST_PLAIN:
		plain(s, line, len);
		break;
	case ST_LOGIN_USER:
		login_user(s, line, len);
		break;
	default:
		login_pass(s, line, len);
		break;
	}
}

void
clientauth_idle(struct session *s)
{
	/* The exchange's last line was consumed (and wiped) before this one was read. */
	if (s->ca != NULL && s->ca->wiping && s->ca->step == ST_IDLE && s->cl != NULL) {
		conn_secret(s->cl, 0);
		s->ca->wiping = 0;
	}
}

void
clientauth_free(struct session *s)
{
	if (s->ca == NULL)
		return;
	ev_timer_stop(s->loop, &s->ca->delay);
	OPENSSL_cleanse(s->ca, sizeof(*s->ca));
	free(s->ca);
	s->ca = NULL;
}
