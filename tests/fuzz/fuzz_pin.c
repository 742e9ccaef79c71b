/*
 * fuzz_pin: the pin parsers (pin_parse, pin_parse_list) and the writers (pin_format,
 * pin_list_str). Input: a config value, e.g. "sha256//BASE64, sha256//BASE64".
 *
 * Properties: a parsed pin, written back, is the text it was read from (one text per
 * hash) and reads back to the same hash; a parsed list holds no pin twice and matches
 * each of its own hashes at that hash's index; the reason is a NUL-terminated string.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char h[PIN_HASH_LEN], back[PIN_HASH_LEN];
	char why[160], out[PIN_STR_LEN], list[PIN_MAX * (PIN_STR_LEN + 2) + 8];
	struct pinset ps, again;
	size_t i, j, cert;
	char *s;

	if ((s = malloc(size + 1)) == NULL)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';

	memset(why, 'x', sizeof(why));
	if (pin_parse(s, h, why, sizeof(why)) == 0) {
		pin_format(h, out);
		if (strcmp(out, s) != 0 || pin_parse(out, back, why, sizeof(why)) != 0 ||
		    memcmp(h, back, PIN_HASH_LEN) != 0)
			abort();
	} else if (memchr(why, '\0', sizeof(why)) == NULL)
		abort();

	memset(why, 'x', sizeof(why));
	if (pin_parse_list(s, &ps, why, sizeof(why)) == 0) {
		if (ps.n > PIN_MAX)
			abort();
		for (i = 0; i < ps.n; i++) {
			for (j = 0; j < i; j++)
				if (memcmp(ps.hash[i], ps.hash[j], PIN_HASH_LEN) == 0)
					abort();
			if (pin_match(&ps, (const unsigned char (*)[PIN_HASH_LEN])ps.hash + i, 1,
			    &cert) != (int)i || cert != 0)
				abort();
			pin_format(ps.hash[i], out);
			if (strstr(s, out) == NULL)
				abort();
		}
		/* Written back as a list, it reads back the same. */
		pin_list_str((const unsigned char (*)[PIN_HASH_LEN])ps.hash, ps.n, list,
		    sizeof(list));
		if (pin_parse_list(list, &again, why, sizeof(why)) != 0 || again.n != ps.n ||
		    memcmp(again.hash, ps.hash, ps.n * PIN_HASH_LEN) != 0)
			abort();
	} else if (memchr(why, '\0', sizeof(why)) == NULL)
		abort();
	free(s);
	return (0);
}
