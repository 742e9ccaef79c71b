/*
 * The proxy's own login at the upstream, with the credentials it holds: which SASL
 * mechanism, each line of the exchange, what each reply means, and what is logged of
 * it (never a secret). After a refusal it starts the back-off shared by the workers,
 * so a wrong password does not get the provider account locked. The OAuth2 mechanisms
 * (XOAUTH2, OAUTHBEARER) belong here too.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "auth.h"
#include "config.h"
#include "log.h"
#include "login.h"
#include "shared.h"
#include "smtp.h"

static const char *const stages[] = {
	[LOGIN_SENT_PLAIN] = "auth-plain", [LOGIN_SENT_LOGIN] = "auth-login",
	[LOGIN_SENT_USER] = "auth-user", [LOGIN_SENT_PASS] = "auth-pass",
};

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
		lg->step = LOGIN_SENT_LOGIN;
		snprintf(line, size, "AUTH LOGIN\r\n");
		return (0);
	}
	lg->step = LOGIN_SENT_PLAIN;
	if (size < 14 || auth_plain(up->username, up->password, line + 11, size - 13) != 0) {
		snprintf(why, whysize, "username or password too long");
		return (-1);
	}
	memcpy(line, "AUTH PLAIN ", 11);
	strcat(line, "\r\n");
	return (0);
}

enum login_verdict
login_reply(struct login *lg, const struct upstream_conf *up, int code, char *line, size_t size)
{
	switch (lg->step) {
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

const char *
login_stage(const struct login *lg)
{
	return (stages[lg->step]);
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

/* A server may quote the AUTH line in its refusal: never log the credentials with it. */
static void
redact_secrets(const struct upstream_conf *up, char *s, size_t n)
{
	char enc[1400];
	size_t el;

	redact(s, n, up->password);
	if (auth_plain(up->username, up->password, enc, sizeof(enc)) == 0)
		redact(s, n, enc);
	if (auth_b64(up->password, enc, sizeof(enc)) == 0) {
		redact(s, n, enc);
		for (el = strlen(enc); el > 0 && enc[el - 1] == '='; el--)
			enc[el - 1] = '\0';
		redact(s, n, enc);
	}
	OPENSSL_cleanse(enc, sizeof(enc));
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
	    !shared_auth_backoff_start((long)up->auth_retry_after))
		return;
	t = time(NULL) + (time_t)up->auth_retry_after;
	strftime(until, sizeof(until), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
	log_begin(&l, L_WARN, sid, "auth.backoff");
	log_str(&l, "upstream", up->host);
	log_str(&l, "user", up->username);
	log_num(&l, "seconds", (long long)up->auth_retry_after);
	log_str(&l, "until", until);
	log_str(&l, "msg", "login refused: devices get 421 without a new try until then, or "
	    "until a reload (fix the password, then reload)");
	log_end(&l);
}

void
login_report(const struct login *lg, const struct upstream_conf *up, const char *sid,
    const char *reply, size_t len, int ok)
{
	char shown[SMTP_REPLY_MAX];
	size_t n = len >= 2 ? len - 2 : len;
	struct logline l;

	log_begin(&l, ok ? L_INFO : L_WARN, sid, ok ? "auth.ok" : "auth.fail");
	log_str(&l, "upstream", up->host);
	log_str(&l, "user", up->username);
	log_str(&l, "mechanism", lg->step == LOGIN_SENT_PLAIN ? "PLAIN" : "LOGIN");
	if (!ok) {
		if (n > sizeof(shown))
			n = sizeof(shown);
		memcpy(shown, reply, n);
		redact_secrets(up, shown, n);
		log_strn(&l, "reply", shown, n);
		OPENSSL_cleanse(shown, n);
	}
	log_end(&l);
	if (!ok)
		backoff(up, sid, reply, len);
}
