/*
 * fuzz_proxyproto: the PROXY protocol v1/v2 parser, with the properties the listener
 * relies on: a complete header's length is within the input (v1: it ends in CRLF);
 * every shorter prefix of it waits (0) rather than being taken or refused; a verdict
 * does not change when more bytes follow; waiting is bounded by the longest header.
 *
 * Input: byte 0 picks the version (bit 0: 1 or 2); the rest is what the client sent.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxyproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxyproto pp, again;
	char why[128];
	int version, r, r2;
	size_t k;

	if (size < 1 || size > PROXYPROTO_MAX + 64)
		return (0);
	version = (data[0] & 1) ? 2 : 1;
	data++;
	size--;
	r = proxyproto_parse(data, size, version, &pp, why, sizeof(why));
	if (r == 1) {
		if (pp.len == 0 || pp.len > size || pp.version != version)
			abort();
		if (version == 1 && (pp.len < 8 || memcmp(data + pp.len - 2, "\r\n", 2) != 0))
			abort();
		for (k = 0; k < pp.len; k++)
			if (proxyproto_parse(data, k, version, &again, why, sizeof(why)) != 0)
				abort();
		/* The header alone gives the same answer as the header and what follows. */
		r2 = proxyproto_parse(data, pp.len, version, &again, why, sizeof(why));
		if (r2 != 1 || again.len != pp.len || again.local != pp.local ||
		    memcmp(&again.src, &pp.src, sizeof(pp.src)) != 0)
			abort();
	} else if (r == 0) {
		if (size >= (version == 1 ? PROXYPROTO_V1_MAX : PROXYPROTO_V2_MAX))
			abort();
	} else if (r != -1 || why[0] == '\0')
		abort();
	return (0);
}
