/*
 * fuzz_token: what a token endpoint or a token command may send us, and the command
 * line of oauth2_token_command.
 *
 * The whole input goes to token_parse and token_command_output; as a C string (up to the
 * first NUL) it goes to token_argv, with byte 0 sizing the word buffer.
 * Oracles: a refusal's reason is made of our own words only (never input text, which may
 * be a token); an accepted token is an RFC 6750 b64token; a refusal leaves no token; the
 * words token_argv gives back, quoted again, split into the same words.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *fields[] = {
	"access_token", "refresh_token", "token_type", "expires_in", "error", "device_code",
	"user_code", "verification_uri", "verification_uri_complete", "interval",
	"verification_url",
};

static const char *faults[] = {
	"out of memory", "nested too deeply", "invalid UTF-8", "cut short",
	"something after the end", "a string holds a NUL", "a key given twice",
	"a number too large", "syntax error",
};

/* ${why} is one of token.c's own sentences: the field names and numbers vary, nothing else. */
static void
check_why(const char *why)
{
	const char *p;
	size_t i, n;

	if (strncmp(why, "not JSON (", 10) == 0) {
		p = strstr(why, " at byte ");
		if (p == NULL || strspn(p + 9, "-0123456789") == 0 ||
		    strcmp(p + 9 + strspn(p + 9, "-0123456789"), ")") != 0)
			abort();
		/* the fault is one of token.c's own phrases */
		for (i = 0; i < sizeof(faults) / sizeof(faults[0]); i++)
			if ((size_t)(p - (why + 10)) == strlen(faults[i]) &&
			    strncmp(why + 10, faults[i], strlen(faults[i])) == 0)
				return;
		abort();
	}
	if (strcmp(why, "JSON but not an object") == 0)
		return;
	if (why[0] != '"')
		abort();
	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		n = strlen(fields[i]);
		if (strncmp(why + 1, fields[i], n) == 0 && why[1 + n] == '"')
			break;
	}
	if (i == sizeof(fields) / sizeof(fields[0]))
		abort();
	p = why + 2 + n;
	if (strcmp(p, " is not a string") != 0 && strcmp(p, " is not a number of seconds") != 0 &&
	    strncmp(p, " is longer than ", 16) != 0)
		abort();
}

static void
check_cmd_why(const char *why)
{
	if (strncmp(why, "the token command", 17) != 0)
		check_why(why);
}

static void
printable(const char *s, size_t size)
{
	size_t n = strnlen(s, size);

	if (n == size)
		abort();
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			abort();
}

static void
fuzz_parse(const char *in, size_t len)
{
	static struct token_resp t;
	char why[256];

	why[0] = '\0';
	if (token_parse(in, len, &t, why, sizeof(why)) != 0) {
		check_why(why);
		if (t.access_token[0] != '\0' || t.refresh_token[0] != '\0' ||
		    t.device_code[0] != '\0')
			abort();
		return;
	}
	printable(t.error, sizeof(t.error));
	printable(t.error_description, sizeof(t.error_description));
	if (strnlen(t.access_token, sizeof(t.access_token)) == sizeof(t.access_token) ||
	    t.expires_in < -1 || t.interval < -1)
		abort();
	token_wipe(&t);
}

static void
fuzz_command_output(const char *in, size_t len)
{
	static struct token_resp t;
	char why[256];
	size_t a = 0, b = len;

	why[0] = '\0';
	if (token_command_output(in, len, &t, why, sizeof(why)) != 0) {
		check_cmd_why(why);
		if (t.access_token[0] != '\0')
			abort();
		return;
	}
	if (!auth_is_b64token(t.access_token))
		abort();
	/* A bare token is the output without its surrounding white space, byte for byte. */
	while (a < b && strchr(" \t\r\n\v\f", in[a]) != NULL && in[a] != '\0')
		a++;
	while (b > a && strchr(" \t\r\n\v\f", in[b - 1]) != NULL && in[b - 1] != '\0')
		b--;
	if (in[a] != '{' && (strlen(t.access_token) != b - a ||
	    memcmp(t.access_token, in + a, b - a) != 0))
		abort();
	token_wipe(&t);
}

/* Quote ${w} so that token_argv reads it back as it is: '...', a ' as "'". */
static size_t
requote(const char *w, char *out)
{
	size_t n = 0;

	out[n++] = '\'';
	for (; *w != '\0'; w++) {
		if (*w == '\'') {
			memcpy(out + n, "'\"'\"'", 5);
			n += 5;
		} else
			out[n++] = *w;
	}
	out[n++] = '\'';
	return (n);
}

static void
fuzz_argv(const char *cmd, size_t size)
{
	char *buf = malloc(size), *buf2, *line, *argv[16], *argv2[16];
	size_t i, n = 0, text = 0;
	int argc, argc2;

	if (buf == NULL)
		abort();
	argc = token_argv(cmd, buf, size, argv, 16);
	if (argc == 0 || argc < -1 || argc > 15)
		abort();
	if (argc == -1) {
		free(buf);
		return;
	}
	if (argv[argc] != NULL)
		abort();
	for (i = 0; i < (size_t)argc; i++) {
		if (argv[i] < buf || argv[i] >= buf + size)
			abort();
		text += strlen(argv[i]) + 1;
	}
	if (text > size || text > strlen(cmd) + 1)
		abort();
	/* Quoted again and split again: the same words. */
	if ((line = malloc(text * 5 + 16)) == NULL || (buf2 = malloc(text * 5 + 16)) == NULL)
		abort();
	for (i = 0; i < (size_t)argc; i++) {
		n += requote(argv[i], line + n);
		line[n++] = ' ';
	}
	line[n] = '\0';
	argc2 = token_argv(line, buf2, text * 5 + 16, argv2, 16);
	if (argc2 != argc)
		abort();
	for (i = 0; i < (size_t)argc; i++)
		if (strcmp(argv[i], argv2[i]) != 0)
			abort();
	free(buf2);
	free(line);
	free(buf);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy;

	if ((copy = malloc(size + 1)) == NULL)
		abort();
	memcpy(copy, data, size);
	copy[size] = '\0';
	/* libFuzzer's data is exactly size bytes: ASan sees any read past the end. */
	fuzz_parse((const char *)data, size);
	fuzz_command_output((const char *)data, size);
	fuzz_argv(size > 1 ? copy + 1 : copy, 1 + (size > 0 ? data[0] : 0));
	free(copy);
	return (0);
}
