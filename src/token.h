#ifndef TOKEN_H
#define TOKEN_H

/*
 * The OAuth2 token endpoint's language, without sockets: the form bodies the proxy
 * POSTs (application/x-www-form-urlencoded), the JSON answers it reads (with jansson),
 * the token command's argv and output. Pure: oauth2.c (the daemon's token cache) and
 * oauth2-login use it; the unit tests and fuzz_token call it directly.
 */
#include <stddef.h>

#include "auth.h"

/* What a token or device-authorization endpoint answered. Wipe it (token_wipe) after use. */
struct token_resp {
	char	 access_token[AUTH_TOKEN_MAX + 1];
	char	 refresh_token[AUTH_TOKEN_MAX + 1];
	char	 token_type[32];
	long	 expires_in;		/* seconds; -1 when absent */
	char	 error[64];		/* "" when the answer is not an error */
	char	 error_description[300];	/* printable, cut to fit */
	/* The device authorization answer (RFC 8628 3.2). */
	char	 device_code[1024];
	char	 user_code[64];
	char	 verification_uri[512];
	char	 verification_uri_complete[512];
	long	 interval;		/* seconds; -1 when absent */
};

/**
 * token_parse(body, len, out, why, whysize):
 * Read the JSON object in the ${len} bytes at ${body} into ${out}: 0, or -1 with the reason
 * in ${why} (not JSON, not an object, a field of the wrong type or too long for its
 * buffer). Unknown fields are ignored; "expires_in" and "interval" may be numbers or
 * strings of digits (both are seen in the wild); "verification_url" (Google) counts as
 * "verification_uri". Nothing of a secret value is ever copied into ${why}.
 */
int token_parse(const char *body, size_t len, struct token_resp *out, char *why,
    size_t whysize);

/**
 * token_parse_key(json, len, email, esize, uri, usize, pemp, why, whysize):
 * Read a Google service-account key (JSON with "type": "service_account", "client_email",
 * "private_key", "token_uri") from the ${len} bytes at ${json}: the e-mail and token URI
 * into ${email} and ${uri}, the private key's PEM into a new string in *${pemp} (the
 * caller wipes and frees it). 0, or -1 with the reason in ${why} (never any of the key).
 */
int token_parse_key(const char *json, size_t len, char *email, size_t esize, char *uri,
    size_t usize, char **pemp, char *why, size_t whysize);

/**
 * token_wipe(t):
 * Overwrite every secret in ${t}.
 */
void token_wipe(struct token_resp *t);

/**
 * token_form_add(buf, size, lenp, name, value):
 * Append "name=value" (with '&' before it unless it is the first) to the form in ${buf}
 * (${size} bytes, *${lenp} used, kept NUL-terminated), both percent-encoded as
 * application/x-www-form-urlencoded wants: unreserved characters as they are, ' ' as '+',
 * the rest %XX. 0, or -1 if it does not fit (then ${buf} is unchanged).
 */
int token_form_add(char *buf, size_t size, size_t *lenp, const char *name, const char *value);

/**
 * token_argv(cmd, buf, size, argv, max):
 * Split the command line ${cmd} into at most ${max} - 1 words in ${argv} (NULL-terminated),
 * their text kept in ${buf} (${size} bytes): words are separated by spaces and tabs; '...'
 * and "..." quote (the quotes are dropped), a backslash inside "..." or outside quotes
 * takes the next character as it is. No shell: no variables, globs or redirections. The
 * number of words (at least 1), or -1 (empty, an unclosed quote, too many words, too long).
 */
int token_argv(const char *cmd, char *buf, size_t size, char **argv, int max);

/**
 * token_command_output(out, len, t, why, whysize):
 * Read what a token command printed: a JSON object with "access_token" (and usually
 * "expires_in"), or the bare token on one line (surrounding white space dropped;
 * expires_in -1). 0, or -1 with the reason in ${why} (empty output, not one line, not a
 * token, JSON without access_token).
 */
int token_command_output(const char *out, size_t len, struct token_resp *t, char *why,
    size_t whysize);

/**
 * token_describe_error(status, t, body_ok, out, size):
 * One line for logs about a failed token request: the HTTP ${status}, the server's
 * "error" and "error_description" when ${body_ok} (the body was JSON), else that the body
 * was not JSON.
 */
void token_describe_error(long status, const struct token_resp *t, int body_ok, char *out,
    size_t size);

#endif
