/*
 * fuzz_httpreq: httpreq_parse(), the metrics endpoint's request parser, on every
 * prefix the way the endpoint reads (verdict after each read), in exact-size buffers.
 *
 * Input: byte 0 = where the first "read" ends, byte 1 = the size of each later read
 * (1..256); the rest is the request.
 * Checked: a verdict is one of the enum; MORE only below HTTPREQ_MAX; once a prefix has
 * a verdict other than MORE, every longer prefix keeps it; OK only for a GET of
 * /metrics with an HTTP/1.x version.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "httpreq.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static enum httpreq_result
judge(const uint8_t *p, size_t n)
{
	enum httpreq_result r;
	char *copy;

	/* Exact size, so a read past the end is caught. */
	if ((copy = malloc(n > 0 ? n : 1)) == NULL)
		abort();
	memcpy(copy, p, n);
	r = httpreq_parse(copy, n);
	free(copy);
	if (r != HTTPREQ_MORE && r != HTTPREQ_OK && r != HTTPREQ_BAD &&
	    r != HTTPREQ_NOT_FOUND && r != HTTPREQ_METHOD)
		abort();
	if (r == HTTPREQ_MORE && n >= HTTPREQ_MAX)
		abort();
	if (r == HTTPREQ_OK && (n < 23 || memcmp(p, "GET /metrics", 12) != 0 ||
	    (p[12] != ' ' && p[12] != '?')))
		abort();
	if (httpreq_status(r) == NULL)
		abort();
	return (r);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum httpreq_result first, r;
	size_t split, step, n;

	if (size < 2)
		return (0);
	split = data[0];
	step = (size_t)data[1] + 1;
	data += 2;
	size -= 2;
	if (split > size)
		split = size;
	first = judge(data, split);
	for (n = split + step; n < size + step; n += step) {
		if (n > size)
			n = size;
		r = judge(data, n);
		if (first != HTTPREQ_MORE && r != first)
			abort();
		if (first == HTTPREQ_MORE)
			first = r;
	}
	return (0);
}
