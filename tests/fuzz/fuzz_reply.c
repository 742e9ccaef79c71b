/*
 * fuzz_reply: an upstream's reply bytes through smtp_reply_parse(), then, for a 250
 * reply, smtp_caps_parse() and the EHLO reply the client would see.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The parse of the first ${k} bytes of ${p}, from an exact-size copy. */
static long
parse_prefix(const char *p, size_t k, struct smtp_reply *r)
{
	char *q = malloc(k ? k : 1);
	long n;

	if (q == NULL)
		abort();
	memcpy(q, p, k);
	n = smtp_reply_parse(q, k, r);
	free(q);
	return (n);
}

/* 1 if some line of the reply in [p, p+n) has ${kw} as its keyword. */
static int
has_keyword(const char *p, size_t n, const char *kw)
{
	size_t kl = strlen(kw), i = 0, j;

	while (i < n) {
		for (j = i; j + 1 < n && !(p[j] == '\r' && p[j + 1] == '\n'); j++)
			;
		/* "250-KW" or "250 KW", alone or followed by a blank. */
		if (j - i >= 4 + kl && strncmp(p + i + 4, kw, kl) == 0 &&
		    (j - i == 4 + kl || p[i + 4 + kl] == ' '))
			return (1);
		i = j + 2;
	}
	return (0);
}

static void
check_ehlo(const struct smtp_caps *caps, int show_auth)
{
	static const char host[] = "gw.example.org";
	char out[1024], *small;
	struct smtp_reply r;
	size_t n, m;
	long pn;

	memset(out, 0xAA, sizeof(out));
	n = smtp_ehlo_reply(caps, host, show_auth, out, sizeof(out));
	if (n == 0)
		return;		/* too small is allowed; 1 KiB always fits ours, though */
	if (n >= sizeof(out))
		abort();
	if (n < 2 || out[n - 2] != '\r' || out[n - 1] != '\n')
		abort();
	if (has_keyword(out, n, "STARTTLS") || has_keyword(out, n, "CHUNKING"))
		abort();
	if (!show_auth && has_keyword(out, n, "AUTH"))
		abort();
	if (strncmp(out + 4, host, sizeof(host) - 1) != 0)
		abort();
	/* What we send the client is itself one valid 250 reply, and nothing more. */
	pn = parse_prefix(out, n, &r);
	if (pn != (long)n || r.code != 250)
		abort();
	/* Too small a buffer gives 0, never a cut reply. */
	for (m = 1; m <= n; m += (n / 7) + 1) {
		if ((small = malloc(m)) == NULL)
			abort();
		if (smtp_ehlo_reply(caps, host, show_auth, small, m) != 0)
			abort();
		free(small);
	}
	if ((small = malloc(n + 1)) == NULL)
		abort();
	if (smtp_ehlo_reply(caps, host, show_auth, small, n + 1) != n ||
	    memcmp(small, out, n) != 0)
		abort();
	free(small);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_reply r, r2;
	struct smtp_caps caps;
	char *p;
	long n, n2;
	size_t k, i;

	/* An exact-size copy so that ASan sees any read past ${size}. */
	if ((p = malloc(size ? size : 1)) == NULL)
		abort();
	memcpy(p, data, size);
	memset(&r, 0, sizeof(r));
	n = smtp_reply_parse(p, size, &r);
	if (n < -1)
		abort();
	if (n > 0) {
		if ((size_t)n > size || (size_t)n != r.len || (size_t)n > SMTP_REPLY_MAX)
			abort();
		if (r.code < 200 || r.code > 599 || r.nlines < 1)
			abort();
		if (p[n - 2] != '\r' || p[n - 1] != '\n')
			abort();
		/* The reply alone parses the same: nothing after it was looked at. */
		n2 = parse_prefix(p, (size_t)n, &r2);
		if (n2 != n || r2.code != r.code || r2.nlines != r.nlines)
			abort();
		/* Every cut of a valid reply asks for more bytes, never calls it malformed. */
		if (n <= 300) {
			for (k = 0; k < (size_t)n; k++)
				if (parse_prefix(p, k, &r2) != 0)
					abort();
		} else {
			size_t cuts[] = { 0, 1, 3, 4, (size_t)n / 3, (size_t)n / 2,
			    (size_t)n - 2, (size_t)n - 1 };

			for (i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++)
				if (parse_prefix(p, cuts[i], &r2) != 0)
					abort();
		}
		if (r.code == 250) {
			memset(&caps, 0x5A, sizeof(caps));
			(void)smtp_caps_parse(p, (size_t)n, &caps);
			/* Even after a refusal the struct holds only checked mechanisms. */
			if (memchr(caps.auth, '\0', sizeof(caps.auth)) == NULL)
				abort();
			check_ehlo(&caps, 0);
			check_ehlo(&caps, 1);
		}
	} else if (n == 0) {
		/* "More bytes needed" can only be said of a buffer that is not yet too long. */
		if (size > SMTP_REPLY_MAX + 2)
			abort();
	}
	free(p);
	return (0);
}
