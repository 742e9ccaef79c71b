/*
 * The proxy's own login at the upstream, with the credentials it holds: which SASL
 * mechanism, each line of the exchange, what each reply means, and what is logged of
 * it (never a secret). After a refusal it starts the back-off shared by the workers,
 * so a wrong password does not get the provider account locked. The OAuth2 mechanisms
 * (XOAUTH2, OAUTHBEARER) log in with an access token the caller holds; when the server
 * refuses it, the login says so (login_token_refused) and the caller may get a fresh
 * token once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "auth.h"
#include "config.h"
#include "log.h"
#include "login.h"
#include "shared.h"
#include "smtp.h"

static const char *const stages[] = {
	[LOGIN_SENT_PLAIN] = "auth-plain", [LOGIN_SENT_LOGIN] = "auth-login",
	[LOGIN_SENT_USER] = "auth-user", [LOGIN_SENT_PASS] = "auth-pass",
	[LOGIN_SENT_TOKEN] = "auth-xoauth2", [LOGIN_SENT_ABORT] = "auth-token-error",
};

static const char *const mechs[] = {
	[LOGIN_PLAIN] = "PLAIN", [LOGIN_LOGIN] = "LOGIN", [LOGIN_XOAUTH2] = "XOAUTH2",
	[LOGIN_OAUTHBEARER] = "OAUTHBEARER",
};

/*
 * Room to encode every form of a secret that login_redact() looks for: the base64 of
 * the longest XOAUTH2 / OAUTHBEARER text (auth.c bounds it near AUTH_TOKEN_MAX + 2 KB),
 * and a token behind two bytes of another alignment.
 */
struct scratch {
	char		 enc[(AUTH_TOKEN_MAX + 2200) / 3 * 4 + 8];
	unsigned char	 raw[AUTH_TOKEN_MAX + 2];
};

/* Clear what a previous login on ${lg} left behind. */
static void
login_init(struct login *lg, enum login_mech mech, enum login_step step)
{
	lg->mech = mech;
	lg->step = step;
	lg->token_refused = 0;
	lg->challenge[0] = '\0';
}

/* "AUTH PLAIN " or "" then ${arg}'s base64, CRLF; 0 or -1 if it does not fit. */
static int
b64_line(char *line, size_t size, const char *prefix, const char *s)
{
	size_t p = strlen(prefix);

	if (p + 3 > size || auth_b64(s, line + p, size - p - 2) != 0)
		return (-1);
	memcpy(line, prefix, p);
	strcat(line, "\r\n");
	return (0);
}

int
login_start(struct login *lg, const struct upstream_conf *up, const struct smtp_caps *caps,
    char *line, size_t size, char *why, size_t whysize)
{
	int login;

	if (up->auth_mechanism == UP_AUTH_LOGIN)
		login = 1;
	else if (up->auth_mechanism == UP_AUTH_PLAIN)
		login = 0;
	else if (caps->authmask & SMTP_AUTH_PLAIN)
		login = 0;
	else if (caps->authmask & SMTP_AUTH_LOGIN)
		login = 1;	/* e.g. Microsoft 365 */
	else {
		snprintf(why, whysize, "%s", (caps->flags & SMTP_CAP_AUTH) ? caps->auth :
		    "no AUTH capability");
		return (-1);
	}
	if (login) {
		login_init(lg, LOGIN_LOGIN, LOGIN_SENT_LOGIN);
		snprintf(line, size, "AUTH LOGIN\r\n");
		return (0);
	}
	login_init(lg, LOGIN_PLAIN, LOGIN_SENT_PLAIN);
	if (size < 14 || auth_plain(up->username, up->password, line + 11, size - 13) != 0) {
		snprintf(why, whysize, "username or password too long");
		return (-1);
	}
	memcpy(line, "AUTH PLAIN ", 11);
	strcat(line, "\r\n");
	return (0);
}

/* The host and port OAUTHBEARER names: where the proxy connects, by the name it checks. */
static const char *
bearer_host(const struct upstream_conf *up)
{
	return (up->server_name[0] != '\0' ? up->server_name : up->host);
}

/* ${mech}'s initial response for ${token} into ${out}; 0 or -1 (auth.c's reasons). */
static int
token_response(const struct upstream_conf *up, enum login_mech mech, const char *token,
    char *out, size_t size)
{
	if (mech == LOGIN_XOAUTH2)
		return (auth_xoauth2(up->username, token, out, size));
	return (auth_oauthbearer(up->username, bearer_host(up), up->port, token, out, size));
}

int
login_start_token(struct login *lg, const struct upstream_conf *up, enum login_mech mech,
    const char *token, char *line, size_t size, char *why, size_t whysize)
{
	size_t p;

	if (mech != LOGIN_XOAUTH2 && mech != LOGIN_OAUTHBEARER) {
		snprintf(why, whysize, "%s is not a token mechanism", login_mech_str(mech));
		return (-1);
	}
	login_init(lg, mech, LOGIN_SENT_TOKEN);
	p = strlen("AUTH ") + strlen(mechs[mech]) + 1;
	if (size < p + 3 || token_response(up, mech, token, line + p, size - p - 2) != 0) {
		OPENSSL_cleanse(line, size);
		snprintf(why, whysize, "access token (%zu bytes) not a bearer token, or the %s "
		    "line does not fit %zu bytes", strlen(token), mechs[mech], size);
		return (-1);
	}
	memcpy(line, "AUTH ", 5);
	memcpy(line + 5, mechs[mech], p - 6);
	line[p - 1] = ' ';
	strcat(line, "\r\n");
	return (0);
}

/*
 * Keep the decoded text of the error challenge "334 <base64 JSON>" (RFC 7628 3.2.2;
 * Google's {"status":"400","schemes":"Bearer","scope":...}) for the log line, cut to
 * fit and with every unprintable byte shown as '?'. It is never parsed: its status
 * field is there for the operator to read.
 */
static void
keep_challenge(struct login *lg, const char *reply, size_t len)
{
	unsigned char dec[3 * (sizeof(lg->challenge) / 3 + 1)];
	size_t n, dl, i;

	lg->challenge[0] = '\0';
	if (len < 4)
		return;
	reply += 4;
	len -= 4;
	for (n = 0; n < len && reply[n] != '\r' && reply[n] != '\n'; n++)
		;
	/* Whole groups only, as many as the kept text can show. */
	if (n / 4 * 3 > sizeof(dec))
		n = sizeof(dec) / 3 * 4;
	if (auth_unb64(reply, n - n % 4, dec, sizeof(dec), &dl) != 0) {
		snprintf(lg->challenge, sizeof(lg->challenge), "(not base64)");
		return;
	}
	if (dl > sizeof(lg->challenge) - 1)
		dl = sizeof(lg->challenge) - 1;
	for (i = 0; i < dl; i++)
		lg->challenge[i] = dec[i] >= 0x20 && dec[i] < 0x7f ? (char)dec[i] : '?';
	lg->challenge[dl] = '\0';
	OPENSSL_cleanse(dec, sizeof(dec));
}

/*
 * A reply to the token's initial response. 334 is the error challenge: the server
 * waits for one more client line before its verdict, an empty one for XOAUTH2
 * (Google's documented answer) and the single byte %x01 ("AQ==") for OAUTHBEARER
 * (RFC 7628 3.2.3). A 535 straight away is how Microsoft 365 refuses an expired
 * token (535 5.7.3); both mean a fresh token might pass. Other codes (4xx, 504)
 * say nothing about the token.
 */
static enum login_verdict
token_reply(struct login *lg, int code, const char *reply, size_t len, char *line,
    size_t size)
{
	const char *abort_line = lg->mech == LOGIN_XOAUTH2 ? "\r\n" : "AQ==\r\n";

	if (code == 235)
		return (LOGIN_OK);
	if (code == 535)
		lg->token_refused = 1;
	if (code != 334 || size <= strlen(abort_line))
		return (LOGIN_REFUSED);
	lg->token_refused = 1;
	keep_challenge(lg, reply, len);
	snprintf(line, size, "%s", abort_line);
	lg->step = LOGIN_SENT_ABORT;
	return (LOGIN_NEXT);
}

enum login_verdict
login_reply(struct login *lg, const struct upstream_conf *up, int code, const char *reply,
    size_t len, char *line, size_t size)
{
	switch (lg->step) {
	case LOGIN_SENT_TOKEN:
		return (token_reply(lg, code, reply, len, line, size));
	case LOGIN_SENT_ABORT:
		/* After the challenge only a refusal is valid (RFC 7628 3.2.3). */
		return (LOGIN_REFUSED);
	case LOGIN_SENT_PLAIN:
	case LOGIN_SENT_PASS:
		return (code == 235 ? LOGIN_OK : LOGIN_REFUSED);
	case LOGIN_SENT_LOGIN:
	case LOGIN_SENT_USER:
		if (code != 334)
			return (LOGIN_REFUSED);
		if (b64_line(line, size, "", lg->step == LOGIN_SENT_LOGIN ? up->username :
		    up->password) != 0)
			return (LOGIN_REFUSED);
		lg->step = lg->step == LOGIN_SENT_LOGIN ? LOGIN_SENT_USER : LOGIN_SENT_PASS;
		return (LOGIN_NEXT);
	}
	return (LOGIN_REFUSED);
}

int
login_token_refused(const struct login *lg)
{
	return (lg->token_refused);
}

const char *
login_stage(const struct login *lg)
{
	if (lg->step == LOGIN_SENT_TOKEN && lg->mech == LOGIN_OAUTHBEARER)
		return ("auth-oauthbearer");
	return (stages[lg->step]);
}

const char *
login_mech_str(enum login_mech mech)
{
	return (mechs[mech]);
}

/* Overwrite every occurrence of ${needle} in ${s} (${n} bytes) with '*'. */
static void
redact(char *s, size_t n, const char *needle)
{
	size_t nl = strlen(needle), i;

	if (nl == 0 || nl > n)
		return;
	for (i = 0; i + nl <= n; i++)
		if (memcmp(s + i, needle, nl) == 0)
			memset(s + i, '*', nl);
}

/* Star out ${enc} (NUL-terminated) in ${s}, then again without its '=' padding. */
static void
redact_enc(char *s, size_t n, char *enc)
{
	size_t el;

	redact(s, n, enc);
	for (el = strlen(enc); el > 0 && enc[el - 1] == '='; el--)
		enc[el - 1] = '\0';
	redact(s, n, enc);
}

/*
 * Star out ${secret} as it is and its base64 at each of the three positions it can
 * take in a longer base64 text: after k = 0, 1, 2 other bytes, the characters that
 * depend on the secret alone are those covering bits 8k .. 8(k + len) in full.
 * Longest forms first, so a shorter one cannot break up a longer one.
 */
static void
redact_secret(char *s, size_t n, const char *secret, struct scratch *w)
{
	size_t sl = strlen(secret), k, first, last;

	if (sl == 0)
		return;
	redact(s, n, secret);
	if (sl > AUTH_TOKEN_MAX)
		return;		/* no login sends it: auth.c refuses it */
	for (k = 0; k < 3; k++) {
		memset(w->raw, 0, k);
		memcpy(w->raw + k, secret, sl);
		EVP_EncodeBlock((unsigned char *)w->enc, w->raw, (int)(k + sl));
		if (k == 0)
			redact_enc(s, n, w->enc);
		first = (8 * k + 5) / 6;
		last = 8 * (k + sl) / 6;
		/* Shorter runs would star out innocent text and hide nothing. */
		if (last >= first + 4) {
			w->enc[last] = '\0';
			redact(s, n, w->enc + first);
		}
	}
}

void
login_redact(const struct upstream_conf *up, const char *token, char *s, size_t n)
{
	static const enum login_mech tm[] = { LOGIN_XOAUTH2, LOGIN_OAUTHBEARER };
	struct scratch *w;
	size_t i;

	if ((w = malloc(sizeof(*w))) == NULL) {
		/* Nothing of the text may be shown when the secrets cannot be searched. */
		memset(s, '*', n);
		return;
	}
	if (up->password[0] != '\0' && auth_plain(up->username, up->password, w->enc,
	    sizeof(w->enc)) == 0)
		redact_enc(s, n, w->enc);
	redact_secret(s, n, up->password, w);
	if (token != NULL && token[0] != '\0') {
		for (i = 0; i < sizeof(tm) / sizeof(tm[0]); i++)
			if (token_response(up, tm[i], token, w->enc, sizeof(w->enc)) == 0)
				redact_enc(s, n, w->enc);
		redact_secret(s, n, token, w);
	}
	OPENSSL_cleanse(w, sizeof(*w));
	free(w);
}

/*
 * Only a 5xx is a verdict on the credentials (535 5.7.8, 534, 530...): the next
 * try with the same password fails the same way and counts toward the provider's
 * lock-out. A 4xx (454 4.7.0 temporary authentication failure) is the provider's
 * own trouble and the next session is the retry it asks for; holding every
 * device off for auth_retry_after would turn its hiccup into our outage.
 */
static void
backoff(const struct upstream_conf *up, const char *sid, const char *reply, size_t len)
{
	char until[32];
	struct logline l;
	struct tm tm;
	time_t t;

	if (len < 1 || reply[0] != '5' || up->auth_retry_after == 0 ||
	    !shared_auth_backoff_start(up->slot, (long)up->auth_retry_after))
		return;
	t = time(NULL) + (time_t)up->auth_retry_after;
	strftime(until, sizeof(until), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
	log_begin(&l, L_WARN, sid, "auth.backoff");
	log_str(&l, "upstream", up->name);
	log_str(&l, "host", up->host);
	log_str(&l, "user", up->username);
	log_num(&l, "seconds", (long long)up->auth_retry_after);
	log_str(&l, "until", until);
	log_str(&l, "msg", UPSTREAM_OAUTH2(up) ? "login refused with a fresh token too: devices "
	    "get 421 without a new try until then, or until a reload (check the mailbox's "
	    "SMTP AUTH setting and the app's permission for it, then reload)" :
	    "login refused: devices get 421 without a new try until then, or "
	    "until a reload (fix the password, then reload)");
	log_end(&l);
}

void
login_report(const struct login *lg, const struct upstream_conf *up, const char *token,
    const char *sid, const char *reply, size_t len, int ok)
{
	char shown[SMTP_REPLY_MAX], challenge[sizeof(lg->challenge)];
	size_t n = len >= 2 ? len - 2 : len, cl;
	struct logline l;

	shared_m_auth(SHARED_AUTH_PROXY, ok);
	log_begin(&l, ok ? L_INFO : L_WARN, sid, ok ? "auth.ok" : "auth.fail");
	log_str(&l, "upstream", up->name);
	log_str(&l, "host", up->host);
	log_str(&l, "user", up->username);
	log_str(&l, "mechanism", mechs[lg->mech]);
	if (!ok) {
		if (n > sizeof(shown))
			n = sizeof(shown);
		memcpy(shown, reply, n);
		login_redact(up, token, shown, n);
		log_strn(&l, "reply", shown, n);
		OPENSSL_cleanse(shown, n);
		if ((cl = strlen(lg->challenge)) > 0) {
			memcpy(challenge, lg->challenge, cl);
			login_redact(up, token, challenge, cl);
			log_strn(&l, "challenge", challenge, cl);
			OPENSSL_cleanse(challenge, cl);
		}
	}
	log_end(&l);
	if (!ok)
		backoff(up, sid, reply, len);
}
