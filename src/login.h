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
	LOGIN_SENT_TOKEN,	/* AUTH XOAUTH2 / OAUTHBEARER <initial response> */
	LOGIN_SENT_ABORT,	/* answered the server's error challenge; its 5xx follows */
};

enum login_mech { LOGIN_PLAIN, LOGIN_LOGIN, LOGIN_XOAUTH2, LOGIN_OAUTHBEARER };

struct login {
	enum login_step	 step;
	enum login_mech	 mech;
	int		 token_refused;
	char		 challenge[160];	/* the server's error challenge, decoded, printable */
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
 * login_start_token(lg, up, mech, token, line, size, why, whysize):
 * Start a login as ${up}'s username with the OAuth2 access ${token} instead of the
 * password: ${mech} is LOGIN_XOAUTH2 or LOGIN_OAUTHBEARER (host and port: ${up}'s
 * server_name, else host, and port). Write "AUTH <mech> <initial response>", CRLF-ended,
 * into ${line}; 0, or -1 with the reason in ${why} (another mechanism, a token that is
 * not a bearer token, or a line that does not fit ${size}). The caller wipes ${line}
 * once sent.
 */
int login_start_token(struct login *lg, const struct upstream_conf *up, enum login_mech mech,
    const char *token, char *line, size_t size, char *why, size_t whysize);

/**
 * login_reply(lg, up, code, reply, len, line, size):
 * The server answered ${code} (the whole reply is ${reply}, ${len} bytes): LOGIN_NEXT
 * with the next line in ${line} (wipe it once sent), LOGIN_OK, or LOGIN_REFUSED. A
 * token login answered with an error challenge (334 + base64 JSON) gets LOGIN_NEXT with
 * the line that ends the exchange, the server's refusal follows.
 */
enum login_verdict login_reply(struct login *lg, const struct upstream_conf *up, int code,
    const char *reply, size_t len, char *line, size_t size);

/**
 * login_token_refused(lg):
 * 1 if the server refused the access token (an error challenge, or a 535 to the
 * initial response), so a fresh token may be worth one more login; else 0.
 */
int login_token_refused(const struct login *lg);

/**
 * login_stage(lg):
 * "auth-plain", "auth-login", "auth-user", "auth-pass", "auth-xoauth2",
 * "auth-oauthbearer" or "auth-token-error", for logs.
 */
const char *login_stage(const struct login *lg);

/**
 * login_mech_str(mech):
 * "PLAIN", "LOGIN", "XOAUTH2" or "OAUTHBEARER".
 */
const char *login_mech_str(enum login_mech mech);

/**
 * login_redact(up, token, s, n):
 * Star out in the ${n} bytes at ${s} every form of a secret a server could quote:
 * ${up}'s password and ${token} (NULL: none) as they are, in base64 at each of the
 * three byte alignments, and the AUTH PLAIN / XOAUTH2 / OAUTHBEARER strings made of them.
 */
void login_redact(const struct upstream_conf *up, const char *token, char *s, size_t n);

/**
 * login_report(lg, up, token, sid, reply, len, ok):
 * Log auth.ok or auth.fail with the mechanism (the server's reply, and a token login's
 * error challenge, with any form of the password or ${token} starred out; ${token} is
 * NULL for a password login); after a 5xx refusal start the shared back-off and log
 * auth.backoff once.
 */
void login_report(const struct login *lg, const struct upstream_conf *up, const char *token,
    const char *sid, const char *reply, size_t len, int ok);

#endif
