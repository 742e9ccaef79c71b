#ifndef LOGIN_H
#define LOGIN_H

#include <stddef.h>

struct upstream_conf;
struct smtp_caps;

/* Where the proxy's own login is: the line last sent says what the next reply means. */
enum login_step {
	LOGIN_SENT_PLAIN,	/* AUTH PLAIN <initial response> */
	LOGIN_SENT_LOGIN,	/* AUTH LOGIN: a 334 asks for the user name */
	LOGIN_SENT_USER,	/* a 334 asks for the password */
	LOGIN_SENT_PASS,
};

struct login {
	enum login_step	 step;
};

/* What a reply leads to. */
enum login_verdict { LOGIN_NEXT, LOGIN_OK, LOGIN_REFUSED };

/**
 * login_start(lg, up, caps, line, size, why, whysize):
 * Choose the mechanism (auth_mechanism, else PLAIN when offered, else LOGIN) and
 * write the first line to send, CRLF-ended, into ${line}; 0, or -1 with the reason in
 * ${why}. The caller wipes ${line} once sent.
 */
int login_start(struct login *lg, const struct upstream_conf *up, const struct smtp_caps *caps,
    char *line, size_t size, char *why, size_t whysize);

/**
 * login_reply(lg, up, code, line, size):
 * The server answered ${code}: LOGIN_NEXT with the next line in ${line} (wipe it once
 * sent), LOGIN_OK, or LOGIN_REFUSED.
 */
enum login_verdict login_reply(struct login *lg, const struct upstream_conf *up, int code,
    char *line, size_t size);

/**
 * login_stage(lg):
 * "auth-plain", "auth-login", "auth-user" or "auth-pass", for logs.
 */
const char *login_stage(const struct login *lg);

/**
 * login_report(lg, up, sid, reply, len, ok):
 * Log auth.ok or auth.fail (the server's reply with any form of the credentials in it
 * starred out); after a 5xx refusal start the shared back-off and log auth.backoff once.
 */
void login_report(const struct login *lg, const struct upstream_conf *up, const char *sid,
    const char *reply, size_t len, int ok);

#endif
