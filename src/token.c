/*
 * The token endpoint's language (see token.h): form bodies out, JSON answers in, and
 * the token command's argv and output. JSON is jansson's; what it allocates is wiped
 * when freed, since access and refresh tokens pass through it.
 */
#include <ctype.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "token.h"

/* jansson's copies of a token die wiped: free() gets no size, malloc_usable_size() has it. */
static void
wiping_free(void *p)
{
	if (p != NULL)
		OPENSSL_cleanse(p, malloc_usable_size(p));
	free(p);
}

/* What jansson found wrong, in words of our own: its e.text quotes the input near the
 * fault ("invalid token near 'eyJ0...'"), which may be a token or a key. */
static const char *
json_fault(const json_error_t *e)
{
	switch (json_error_code(e)) {
	case json_error_out_of_memory:
		return ("out of memory");
	case json_error_stack_overflow:
		return ("nested too deeply");
	case json_error_invalid_utf8:
		return ("invalid UTF-8");
	case json_error_premature_end_of_input:
		return ("cut short");
	case json_error_end_of_input_expected:
		return ("something after the end");
	case json_error_null_character:
	case json_error_null_byte_in_key:
		return ("a string holds a NUL");
	case json_error_duplicate_key:
		return ("a key given twice");
	case json_error_numeric_overflow:
		return ("a number too large");
	default:
		return ("syntax error");
	}
}

static json_t *
load(const char *body, size_t len, char *why, size_t whysize)
{
	static int wiping;
	json_error_t e;
	json_t *j;

	if (!wiping) {
		json_set_alloc_funcs(malloc, wiping_free);
		wiping = 1;
	}
	if ((j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &e)) == NULL) {
		snprintf(why, whysize, "not JSON (%s at byte %d)", json_fault(&e), e.position);
		OPENSSL_cleanse(&e, sizeof(e));
		return (NULL);
	}
	if (!json_is_object(j)) {
		snprintf(why, whysize, "JSON but not an object");
		json_decref(j);
		return (NULL);
	}
	return (j);
}

/* A string field into ${out}: 0 (absent is fine), or -1 when of another type or too long. */
static int
get_str(json_t *o, const char *name, char *out, size_t size, char *why, size_t whysize)
{
	json_t *v = json_object_get(o, name);

	out[0] = '\0';
	if (v == NULL || json_is_null(v))
		return (0);
	if (!json_is_string(v)) {
		snprintf(why, whysize, "\"%s\" is not a string", name);
		return (-1);
	}
	if (json_string_length(v) >= size || strlen(json_string_value(v)) != json_string_length(v)) {
		snprintf(why, whysize, "\"%s\" is longer than %zu bytes or holds a NUL", name,
		    size - 1);
		return (-1);
	}
	memcpy(out, json_string_value(v), json_string_length(v) + 1);
	return (0);
}

/* A number of seconds: an integer, or a string of digits; -1 when absent. */
static int
get_secs(json_t *o, const char *name, long *out, char *why, size_t whysize)
{
	json_t *v = json_object_get(o, name);
	const char *s;
	char *end;
	long n;

	*out = -1;
	if (v == NULL || json_is_null(v))
		return (0);
	if (json_is_integer(v) && json_integer_value(v) >= 0 &&
	    json_integer_value(v) <= 100L * 365 * 86400) {
		*out = (long)json_integer_value(v);
		return (0);
	}
	if (json_is_string(v)) {
		s = json_string_value(v);
		n = strtol(s, &end, 10);
		if (isdigit((unsigned char)s[0]) && *end == '\0' && n <= 100L * 365 * 86400) {
			*out = n;
			return (0);
		}
	}
	snprintf(why, whysize, "\"%s\" is not a number of seconds", name);
	return (-1);
}

/* Printable ASCII only: a description goes into a log line. */
static void
printable(char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			*s = '?';
}

int
token_parse(const char *body, size_t len, struct token_resp *out, char *why, size_t whysize)
{
	json_t *j, *v;
	size_t n;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	out->expires_in = out->interval = -1;
	if ((j = load(body, len, why, whysize)) == NULL)
		return (-1);
	if (get_str(j, "access_token", out->access_token, sizeof(out->access_token), why,
	    whysize) != 0 ||
	    get_str(j, "refresh_token", out->refresh_token, sizeof(out->refresh_token), why,
	    whysize) != 0 ||
	    get_str(j, "token_type", out->token_type, sizeof(out->token_type), why, whysize) != 0 ||
	    get_secs(j, "expires_in", &out->expires_in, why, whysize) != 0 ||
	    get_str(j, "error", out->error, sizeof(out->error), why, whysize) != 0 ||
	    get_str(j, "device_code", out->device_code, sizeof(out->device_code), why,
	    whysize) != 0 ||
	    get_str(j, "user_code", out->user_code, sizeof(out->user_code), why, whysize) != 0 ||
	    get_str(j, "verification_uri", out->verification_uri,
	    sizeof(out->verification_uri), why, whysize) != 0 ||
	    get_str(j, "verification_uri_complete", out->verification_uri_complete,
	    sizeof(out->verification_uri_complete), why, whysize) != 0 ||
	    get_secs(j, "interval", &out->interval, why, whysize) != 0)
		rc = -1;
	if (rc == 0 && out->verification_uri[0] == '\0' &&
	    get_str(j, "verification_url", out->verification_uri, sizeof(out->verification_uri),
	    why, whysize) != 0)
		rc = -1;
	/* A long description (Microsoft's run to 400 bytes and more) is cut, not refused,
	 * however long; one of another type is ignored. */
	v = json_object_get(j, "error_description");
	if (rc == 0 && json_is_string(v)) {
		n = strnlen(json_string_value(v), sizeof(out->error_description) - 1);
		memcpy(out->error_description, json_string_value(v), n);
		out->error_description[n] = '\0';
		printable(out->error_description);
	}
	printable(out->error);
	json_decref(j);
	if (rc != 0)
		token_wipe(out);
	return (rc);
}

int
token_parse_key(const char *json, size_t len, char *email, size_t esize, char *uri,
    size_t usize, char **pemp, char *why, size_t whysize)
{
	char type[64];
	json_t *j, *v;

	*pemp = NULL;
	if ((j = load(json, len, why, whysize)) == NULL)
		return (-1);
	if (get_str(j, "type", type, sizeof(type), why, whysize) != 0 ||
	    get_str(j, "client_email", email, esize, why, whysize) != 0 ||
	    get_str(j, "token_uri", uri, usize, why, whysize) != 0)
		goto fail;
	if (strcmp(type, "service_account") != 0) {
		snprintf(why, whysize, "\"type\" is not \"service_account\" (a client secret "
		    "JSON is for refresh_token; a service-account key is made in the Cloud console)");
		goto fail;
	}
	v = json_object_get(j, "private_key");
	if (email[0] == '\0' || v == NULL || !json_is_string(v) ||
	    json_string_length(v) < 64 || json_string_length(v) > 16384) {
		snprintf(why, whysize, "\"client_email\" or \"private_key\" is missing");
		goto fail;
	}
	if ((*pemp = strdup(json_string_value(v))) == NULL) {
		snprintf(why, whysize, "out of memory");
		goto fail;
	}
	json_decref(j);
	return (0);
fail:
	json_decref(j);
	return (-1);
}

void
token_wipe(struct token_resp *t)
{
	OPENSSL_cleanse(t->access_token, sizeof(t->access_token));
	OPENSSL_cleanse(t->refresh_token, sizeof(t->refresh_token));
	OPENSSL_cleanse(t->device_code, sizeof(t->device_code));
}

int
token_form_add(char *buf, size_t size, size_t *lenp, const char *name, const char *value)
{
	static const char hex[] = "0123456789ABCDEF";
	const char *parts[2] = { name, value }, *s;
	size_t n = *lenp;
	int i;

	if (n > 0 && n < size)
		buf[n++] = '&';
	for (i = 0; i < 2; i++) {
		if (i == 1 && n < size)
			buf[n++] = '=';
		for (s = parts[i]; *s != '\0' && n < size; s++) {
			unsigned char ch = (unsigned char)*s;

			if (isalnum(ch) || strchr("-._~", ch) != NULL) {
				buf[n++] = (char)ch;
			} else if (ch == ' ') {
				buf[n++] = '+';
			} else if (n + 3 <= size) {
				buf[n++] = '%';
				buf[n++] = hex[ch >> 4];
				buf[n++] = hex[ch & 15];
			} else {
				n = size;
			}
		}
	}
	if (n >= size) {
		/* What was written past the old end may be part of a secret. */
		OPENSSL_cleanse(buf + *lenp, size - *lenp);
		buf[*lenp] = '\0';
		return (-1);
	}
	buf[n] = '\0';
	*lenp = n;
	return (0);
}

int
token_argv(const char *cmd, char *buf, size_t size, char **argv, int max)
{
	size_t n = 0;
	int argc = 0, inword = 0;
	char quote = 0;

	for (; *cmd != '\0'; cmd++) {
		char ch = *cmd;

		if (quote == 0 && (ch == ' ' || ch == '\t')) {
			if (inword) {
				if (n >= size)
					return (-1);
				buf[n++] = '\0';
				inword = 0;
			}
			continue;
		}
		if (!inword) {
			if (argc >= max - 1)
				return (-1);
			argv[argc++] = buf + n;
			inword = 1;
		}
		if (quote == 0 && (ch == '\'' || ch == '"')) {
			quote = ch;
			continue;
		}
		if (quote != 0 && ch == quote) {
			quote = 0;
			continue;
		}
		if (ch == '\\' && quote != '\'' && cmd[1] != '\0')
			ch = *++cmd;
		if (n >= size)
			return (-1);
		buf[n++] = ch;
	}
	if (quote != 0 || argc == 0)
		return (-1);
	if (inword) {
		if (n >= size)
			return (-1);
		buf[n++] = '\0';
	}
	argv[argc] = NULL;
	return (argc);
}

int
token_command_output(const char *out, size_t len, struct token_resp *t, char *why,
    size_t whysize)
{
	size_t a = 0, b = len;

	memset(t, 0, sizeof(*t));
	t->expires_in = t->interval = -1;
	while (a < b && isspace((unsigned char)out[a]))
		a++;
	while (b > a && isspace((unsigned char)out[b - 1]))
		b--;
	if (a == b) {
		snprintf(why, whysize, "the token command printed nothing");
		return (-1);
	}
	if (out[a] == '{') {
		if (token_parse(out + a, b - a, t, why, whysize) != 0)
			return (-1);
		if (t->access_token[0] == '\0') {
			token_wipe(t);
			snprintf(why, whysize, "the token command's JSON has no access_token");
			return (-1);
		}
	} else {
		if (b - a > AUTH_TOKEN_MAX || memchr(out + a, '\n', b - a) != NULL) {
			snprintf(why, whysize, "the token command printed more than one line or "
			    "a token longer than %d bytes", AUTH_TOKEN_MAX);
			return (-1);
		}
		/* With a NUL in it the token stays empty: cut short at the NUL, what is left
		 * may look like a token. */
		if (memchr(out + a, '\0', b - a) == NULL) {
			memcpy(t->access_token, out + a, b - a);
			t->access_token[b - a] = '\0';
		}
	}
	/* From JSON too: a token with a space or a control byte must not get as far as
	 * the XOAUTH2 string. */
	if (!auth_is_b64token(t->access_token)) {
		token_wipe(t);
		snprintf(why, whysize, "the token command printed something that is not a "
		    "bearer token (RFC 6750 characters)");
		return (-1);
	}
	return (0);
}

void
token_describe_error(long status, const struct token_resp *t, int body_ok, char *out,
    size_t size)
{
	if (!body_ok)
		snprintf(out, size, "HTTP %ld, and the answer is not JSON", status);
	else if (t->error[0] != '\0')
		snprintf(out, size, "HTTP %ld %s%s%s", status, t->error,
		    t->error_description[0] ? ": " : "", t->error_description);
	else if (t->access_token[0] == '\0')
		snprintf(out, size, "HTTP %ld, and the answer has no access_token", status);
	else
		snprintf(out, size, "HTTP %ld", status);
}
