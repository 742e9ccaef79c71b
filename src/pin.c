/*
 * Public key pins (see pin.h): parsing the config's text, matching a chain's SPKI
 * hashes, and writing hashes back as pins for the logs and the probe.
 */
#include <stdio.h>
#include <string.h>

#include "parse.h"
#include "pin.h"

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

#define PIN_PREFIX	"sha256//"
#define PIN_PREFIX_LEN	8
#define PIN_B64_LEN	44	/* 4 * ceil(32 / 3) */

/* The value of base64 digit ${c}; -1 for anything else (padding included). */
static int
b64_value(char c)
{
	const char *p;

	if (c == '\0' || (p = strchr(b64, c)) == NULL)
		return (-1);
	return ((int)(p - b64));
}

/*
 * Decode 44 base64 characters that must hold exactly 32 bytes: 42 digits, a 43rd whose
 * low two bits are zero (a canonical encoding: one text per hash, so a pin can be
 * compared as text too) and one '='. Return the byte count the text holds (for the
 * message when it is not 32), or -1 if it is not base64.
 */
static int
b64_decode32(const char *s, size_t len, unsigned char out[PIN_HASH_LEN])
{
	unsigned acc = 0;
	size_t i, pad = 0, o = 0;
	int v, bits = 0;

	if (len == 0 || len % 4 != 0)
		return (-1);
	while (pad < 2 && s[len - 1 - pad] == '=')
		pad++;
	for (i = 0; i < len - pad; i++) {
		if ((v = b64_value(s[i])) < 0)
			return (-1);
		acc = (acc << 6 | (unsigned)v) & 0xffffff;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o < PIN_HASH_LEN)
				out[o] = (unsigned char)(acc >> bits);
			o++;
		}
	}
	/* Bits left over must be zero, and the padding must be what the length needs. */
	if ((acc & ((1u << bits) - 1)) != 0 || (pad == 1 && bits != 2) ||
	    (pad == 2 && bits != 4) || (pad == 0 && bits != 0))
		return (-1);
	return ((int)o);
}

int
pin_parse(const char *s, unsigned char hash[PIN_HASH_LEN], char *why, size_t whysize)
{
	size_t len;
	int n;

	if (strncmp(s, PIN_PREFIX, PIN_PREFIX_LEN) != 0) {
		snprintf(why, whysize, "'%.60s' is not sha256//BASE64 (the SHA-256 of the "
		    "public key, as curl --pinnedpubkey takes it)", s);
		return (-1);
	}
	len = strlen(s + PIN_PREFIX_LEN);
	if ((n = b64_decode32(s + PIN_PREFIX_LEN, len, hash)) < 0) {
		snprintf(why, whysize, "'%.60s': the part after sha256// is not base64", s);
		return (-1);
	}
	if (n != PIN_HASH_LEN || len != PIN_B64_LEN) {
		snprintf(why, whysize, "'%.60s': %d bytes, a SHA-256 is %d", s, n, PIN_HASH_LEN);
		return (-1);
	}
	return (0);
}

int
pin_parse_list(const char *v, struct pinset *ps, char *why, size_t whysize)
{
	char item[PIN_STR_LEN + 64];
	const char *s = v;
	size_t i;
	int r;

	ps->n = 0;
	while ((r = parse_list_next(&s, item, sizeof(item))) == 1) {
		if (ps->n == PIN_MAX) {
			snprintf(why, whysize, "more than %d pins", PIN_MAX);
			return (-1);
		}
		if (pin_parse(item, ps->hash[ps->n], why, whysize) != 0)
			return (-1);
		for (i = 0; i < ps->n; i++) {
			if (memcmp(ps->hash[i], ps->hash[ps->n], PIN_HASH_LEN) == 0) {
				snprintf(why, whysize, "%s is listed twice", item);
				return (-1);
			}
		}
		ps->n++;
	}
	if (r < 0) {
		snprintf(why, whysize, "expected sha256//BASE64 pins separated by commas "
		    "(an empty or overlong item)");
		ps->n = 0;
		return (-1);
	}
	return (0);
}

int
pin_match(const struct pinset *ps, const unsigned char (*chain)[PIN_HASH_LEN],
    size_t nchain, size_t *certp)
{
	size_t c, p;

	for (c = 0; c < nchain; c++) {
		for (p = 0; p < ps->n; p++) {
			if (memcmp(chain[c], ps->hash[p], PIN_HASH_LEN) == 0) {
				if (certp != NULL)
					*certp = c;
				return ((int)p);
			}
		}
	}
	return (-1);
}

void
pin_format(const unsigned char hash[PIN_HASH_LEN], char out[PIN_STR_LEN])
{
	char *o = out;
	unsigned v;
	size_t i;

	memcpy(o, PIN_PREFIX, PIN_PREFIX_LEN);
	o += PIN_PREFIX_LEN;
	/* 30 bytes in ten whole groups, then the last 2 bytes with one '='. */
	for (i = 0; i + 3 <= PIN_HASH_LEN; i += 3) {
		v = (unsigned)hash[i] << 16 | (unsigned)hash[i + 1] << 8 | hash[i + 2];
		*o++ = b64[v >> 18 & 63];
		*o++ = b64[v >> 12 & 63];
		*o++ = b64[v >> 6 & 63];
		*o++ = b64[v & 63];
	}
	v = (unsigned)hash[i] << 16 | (unsigned)hash[i + 1] << 8;
	*o++ = b64[v >> 18 & 63];
	*o++ = b64[v >> 12 & 63];
	*o++ = b64[v >> 6 & 63];
	*o++ = '=';
	*o = '\0';
}

void
pin_list_str(const unsigned char (*hashes)[PIN_HASH_LEN], size_t n, char *out, size_t size)
{
	char one[PIN_STR_LEN];
	size_t i, len = 0;

	if (size == 0)
		return;
	out[0] = '\0';
	for (i = 0; i < n; i++) {
		pin_format(hashes[i], one);
		/* Room for this pin and, if more follow, for ", ..." after it. */
		if (len + 2 + strlen(one) + (i + 1 < n ? 5 : 0) >= size) {
			snprintf(out + len, size - len, "%s...", len ? ", " : "");
			return;
		}
		len += (size_t)snprintf(out + len, size - len, "%s%s", len ? ", " : "", one);
	}
}
