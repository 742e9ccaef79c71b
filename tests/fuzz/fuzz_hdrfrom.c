/*
 * fuzz_hdrfrom: rewrite_header_from's header block and force_sender's MAIL FROM.
 *
 * Input: byte 0 picks the chunking (bits 0..5) and whether the rest is repeated past
 * HDRFROM_MAX (bits 6 and 7 both set: slow, so a quarter of the runs); the rest is the
 * message as the DATA scanner would pass it on (any bytes: the rewriter must hold
 * whatever comes), and also a MAIL argument.
 * Checked: the output does not depend on the chunking; it is bounded; its header has
 * exactly one From field, the forced one; rewriting it again changes nothing; CRLF-only
 * input gives CRLF-only output; MAIL FROM always carries the sender.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "hdrfrom.h"
#include "sender.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL()	abort()
#define SENDER	"scanner@example.com"

/* The message after the rewriter, fed in chunks per ${pattern}; NULL when over the limit. */
static char *
rewrite(const char *in, size_t n, unsigned pattern, size_t *outlen)
{
	uint32_t rnd = pattern * 2654435761u + 1;
	struct hdrfrom h;
	size_t pos = 0, chunk, used, blen;
	char *block, *out;

	hdrfrom_init(&h, SENDER);
	while (pos < n && !h.done) {
		rnd = rnd * 1103515245u + 12345u;
		chunk = pattern == 0 ? n - pos : (rnd >> 16) % (2u + pattern);
		if (chunk > n - pos)
			chunk = n - pos;
		if (hdrfrom_feed(&h, in + pos, chunk, &used) != 0) {
			if (!h.toobig)
				FAIL();
			hdrfrom_free(&h);
			return (NULL);
		}
		if (used > chunk || (used < chunk && !h.done))
			FAIL();
		pos += used;
	}
	if ((block = hdrfrom_block(&h, &blen)) == NULL)
		FAIL();
	if (blen > HDRFROM_OUT_MAX || h.hdrlen > h.len || h.len > HDRFROM_MAX)
		FAIL();
	if ((out = malloc(blen + (n - pos) + 1)) == NULL)
		FAIL();
	memcpy(out, block, blen);
	memcpy(out + blen, in + pos, n - pos);
	*outlen = blen + (n - pos);
	free(block);
	hdrfrom_free(&h);
	return (out);
}

/* From fields before the first empty line, read as the upstream does (one dot off). */
static size_t
count_from(const char *p, size_t n, size_t *first)
{
	size_t i = 0, e, c = 0, k;
	const char *l;

	while (i < n) {
		for (e = i; e < n && p[e] != '\n'; e++)
			;
		l = p + i;
		k = (e < n ? e + 1 : e) - i;
		if (k > 0 && l[0] == '.')
			l++, k--;
		if (k == 0 || l[0] == '\n' || (k >= 2 && l[0] == '\r' && l[1] == '\n'))
			break;
		if (k >= 4 && strncasecmp(l, "from", 4) == 0) {
			size_t j = 4;

			while (j < k && (l[j] == ' ' || l[j] == '\t'))
				j++;
			if (j < k && l[j] == ':' && c++ == 0)
				*first = i;
		}
		i = e < n ? e + 1 : n;
	}
	return (c);
}

static int
crlf_only(const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (p[i] == '\r' && (i + 1 == n || p[i + 1] != '\n'))
			return (0);
		if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
			return (0);
	}
	return (1);
}

static void
check_mail(const char *in, size_t n)
{
	static const char want[] = "MAIL FROM:<" SENDER ">";
	char out[5000];
	int rc;

	if (n > 4096)
		n = 4096;
	rc = sender_mail(in, n, SENDER, out, sizeof(out));
	if (rc < -1 || rc >= (int)sizeof(out))
		FAIL();
	if (rc > 0 && ((size_t)rc != strlen(out) || strncmp(out, want, sizeof(want) - 1) != 0))
		FAIL();
	/* Only the device's own parameters follow, whole. */
	if (rc > 0 && (size_t)rc > sizeof(want) - 1 &&
	    (out[sizeof(want) - 1] != ' ' || memmem(in, n, out + sizeof(want),
	    (size_t)rc - sizeof(want)) == NULL))
		FAIL();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t n, l1, l2, l3, k, first = 0;
	char *in, *o1, *o2, *o3;
	unsigned pattern;

	if (size < 1)
		return (0);
	pattern = data[0] & 0x3f;
	n = size - 1;
	check_mail((const char *)data + 1, n);
	if ((data[0] & 0xc0) == 0xc0 && n > 0) {
		/* Repeated past the limit: a header that never ends must be refused. */
		k = HDRFROM_MAX / n + 2;
		if ((in = malloc(n * k)) == NULL)
			FAIL();
		for (l1 = 0; l1 < k; l1++)
			memcpy(in + l1 * n, data + 1, n);
		n *= k;
	} else {
		if ((in = malloc(n ? n : 1)) == NULL)
			FAIL();
		memcpy(in, data + 1, n);
	}
	o1 = rewrite(in, n, 0, &l1);
	o2 = rewrite(in, n, pattern, &l2);
	if ((o1 == NULL) != (o2 == NULL))
		FAIL();
	if (o1 != NULL) {
		if (l1 != l2 || memcmp(o1, o2, l1) != 0)
			FAIL();
		if (count_from(o1, l1, &first) != 1 || first >= l1 ||
		    l1 - first < sizeof("From: " SENDER "\r\n") - 1 ||
		    memcmp(o1 + first, "From: " SENDER "\r\n", sizeof("From: " SENDER "\r\n") - 1))
			FAIL();
		if (crlf_only(in, n) && !crlf_only(o1, l1))
			FAIL();
		/* What it wrote is what it would write again. */
		if ((o3 = rewrite(o1, l1, 0, &l3)) != NULL) {
			if (l3 != l1 || memcmp(o3, o1, l1) != 0)
				FAIL();
			free(o3);
		}
	}
	free(o2);
	free(o1);
	free(in);
	return (0);
}
