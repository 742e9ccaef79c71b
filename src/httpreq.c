/*
 * The request of the metrics endpoint (see httpreq.h). Deliberately small: one
 * method, one path, headers checked for shape and otherwise ignored.
 */
#include <string.h>

#include "httpreq.h"

/* Where the headers end (just past the empty line), or 0 while they have not. */
static size_t
head_end(const char *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (p[i] != '\n')
			continue;
		if (i + 1 < len && p[i + 1] == '\n')
			return (i + 2);
		if (i + 2 < len && p[i + 1] == '\r' && p[i + 2] == '\n')
			return (i + 3);
	}
	return (0);
}

/* 1 if the ${n} bytes at ${p} are a token of upper-case letters (a method). */
static int
is_method(const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] < 'A' || p[i] > 'Z')
			return (0);
	return (n > 0);
}

/* The verdict on the request line ${p} (${n} bytes, no line end). */
static enum httpreq_result
request_line(const char *p, size_t n)
{
	const char *sp1, *sp2, *q;
	size_t mlen, tlen, vlen;

	if ((sp1 = memchr(p, ' ', n)) == NULL)
		return (HTTPREQ_BAD);
	mlen = (size_t)(sp1 - p);
	if ((sp2 = memchr(sp1 + 1, ' ', n - mlen - 1)) == NULL)
		return (HTTPREQ_BAD);
	tlen = (size_t)(sp2 - sp1 - 1);
	vlen = n - mlen - tlen - 2;
	if (!is_method(p, mlen) || tlen == 0 || sp1[1] != '/' ||
	    memchr(sp2 + 1, ' ', vlen) != NULL)
		return (HTTPREQ_BAD);
	if (vlen != 8 || (memcmp(sp2 + 1, "HTTP/1.0", 8) != 0 &&
	    memcmp(sp2 + 1, "HTTP/1.1", 8) != 0))
		return (HTTPREQ_BAD);
	if (mlen != 3 || memcmp(p, "GET", 3) != 0)
		return (HTTPREQ_METHOD);
	if ((q = memchr(sp1 + 1, '?', tlen)) != NULL)
		tlen = (size_t)(q - sp1 - 1);
	if (tlen != 8 || memcmp(sp1 + 1, "/metrics", 8) != 0)
		return (HTTPREQ_NOT_FOUND);
	return (HTTPREQ_OK);
}

enum httpreq_result
httpreq_parse(const char *p, size_t len)
{
	enum httpreq_result r = HTTPREQ_BAD;
	size_t end, i, start, n;
	int first = 1;

	/* Only the head is judged: what follows it is never read, whatever it is. */
	if ((end = head_end(p, len)) == 0)
		end = len;
	for (i = 0; i < end; i++) {
		unsigned char c = (unsigned char)p[i];

		if ((c < 0x20 && c != '\r' && c != '\n' && c != '\t') || c == 0x7f)
			return (HTTPREQ_BAD);
	}
	if (head_end(p, len) == 0)
		return (len >= HTTPREQ_MAX ? HTTPREQ_BAD : HTTPREQ_MORE);
	if (end > HTTPREQ_MAX)
		return (HTTPREQ_BAD);
	for (start = 0; start < end; start = i + 1) {
		i = start + (size_t)((const char *)memchr(p + start, '\n', end - start) -
		    (p + start));
		n = i - start;
		if (n > 0 && p[start + n - 1] == '\r')
			n--;
		/* A CR anywhere else is not a line end we accept. */
		if (memchr(p + start, '\r', n) != NULL)
			return (HTTPREQ_BAD);
		if (first) {
			if ((r = request_line(p + start, n)) == HTTPREQ_BAD)
				return (r);
			first = 0;
		} else if (n > 0 && (p[start] == ' ' || p[start] == '\t' ||
		    memchr(p + start, ':', n) == NULL || p[start] == ':')) {
			/* No folded lines, no header without a name. */
			return (HTTPREQ_BAD);
		}
	}
	return (r);
}

const char *
httpreq_status(enum httpreq_result r)
{
	switch (r) {
	case HTTPREQ_OK:
		return ("200 OK");
	case HTTPREQ_NOT_FOUND:
		return ("404 Not Found");
	case HTTPREQ_METHOD:
		return ("405 Method Not Allowed");
	default:
		return ("400 Bad Request");
	}
}
