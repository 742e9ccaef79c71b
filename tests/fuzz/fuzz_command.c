/*
 * fuzz_command: a client's command line (CRLF removed) through smtp_line_is_clean(),
 * smtp_cmd_parse(), smtp_mail_size() and smtp_path().
 */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * SIZE=n as RFC 1870 puts it: a " SIZE=" (any case) after the path's '>' (anywhere
 * past the first byte when there is none), then digits. smtp.c's overflow test is
 * one digit cautious, so values from ULLONG_MAX - 5 up read as ULLONG_MAX too.
 */
static unsigned long long
model_mail_size(const char *a, size_t n)
{
	const char *gt = memchr(a, '>', n);
	size_t i = gt ? (size_t)(gt - a) + 1 : 1, j;
	unsigned __int128 v = 0;
	const unsigned __int128 cap = ULLONG_MAX - 5;

	for (; i + 5 <= n; i++) {
		if (a[i - 1] != ' ' || strncasecmp(a + i, "SIZE=", 5) != 0)
			continue;
		for (j = i + 5; j < n && a[j] >= '0' && a[j] <= '9'; j++) {
			v = v * 10 + (unsigned)(a[j] - '0');
			if (v >= cap)
				return (ULLONG_MAX);
		}
		return ((unsigned long long)v);
	}
	return (0);
}

static const char *const names[] = {
	"HELO", "EHLO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT", "VRFY", "EXPN",
	"HELP", "AUTH", "STARTTLS", "BDAT",
};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_cmd cmd;
	const char *lt, *gt;
	char *line, *out;
	size_t len, vl, i, outsize;
	int clean, rc, known;

	if (size < 1)
		return (0);
	/* The first byte sizes the path buffer (1..256); the rest is the line. */
	outsize = (size_t)data[0] + 1;
	len = size - 1;
	if ((line = malloc(len ? len : 1)) == NULL || (out = malloc(outsize)) == NULL)
		abort();
	memcpy(line, data + 1, len);

	clean = smtp_line_is_clean(line, len);
	if (clean != (memchr(line, '\r', len) == NULL && memchr(line, '\n', len) == NULL &&
	    memchr(line, '\0', len) == NULL))
		abort();

	memset(&cmd, 0xA5, sizeof(cmd));
	smtp_cmd_parse(line, len, &cmd);
	if (cmd.arg < line || cmd.arg > line + len || cmd.arglen > len ||
	    cmd.arg + cmd.arglen != line + len)
		abort();
	/* The argument never starts with the blanks that follow the verb. */
	if (cmd.arglen > 0 && cmd.arg[0] == ' ')
		abort();
	for (vl = 0; vl < len && line[vl] != ' '; vl++)
		;
	if (cmd.arg < line + vl)
		abort();
	for (i = vl; line + i < cmd.arg; i++)
		if (line[i] != ' ')
			abort();
	known = 0;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strlen(names[i]) == vl && strncasecmp(line, names[i], vl) == 0) {
			known = 1;
			if (strcmp(smtp_verb_str(cmd.verb), names[i]) != 0)
				abort();
		}
	}
	if (!known && cmd.verb != SMTP_UNKNOWN)
		abort();

	if (smtp_mail_size(cmd.arg, cmd.arglen) != model_mail_size(cmd.arg, cmd.arglen))
		abort();

	memset(out, 0xA5, outsize);
	rc = smtp_path(cmd.arg, cmd.arglen, out, outsize);
	lt = memchr(cmd.arg, '<', cmd.arglen);
	gt = lt ? memchr(lt, '>', cmd.arglen - (size_t)(lt - cmd.arg)) : NULL;
	if (rc != (gt ? 0 : -1))
		abort();
	if (rc == 0) {
		size_t want = (size_t)(gt - lt - 1), got = strnlen(out, outsize);

		if (got == outsize)
			abort();	/* not NUL-terminated within the buffer */
		if (want >= outsize)
			want = outsize - 1;
		/* NUL bytes inside the path make strnlen stop early; compare the copy. */
		if (memcmp(out, lt + 1, want) != 0 || out[want] != '\0')
			abort();
		(void)got;
	}
	free(out);
	free(line);
	return (0);
}
