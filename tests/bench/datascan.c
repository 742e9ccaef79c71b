/*
 * bench-datascan: how fast the DATA scanner (src/data.c) takes a large body, next to
 * the byte-at-a-time scanner it replaced (tests/lib/data_ref.h) and to plain memcpy
 * (what "memory speed" means on this machine). Not a test: it prints MB/s and asserts
 * nothing but that both scanners found the end of data and wrote the same amount.
 *
 * Usage: datascan [MB]   (default 200: each body is that large)
 * Bodies: base64 (76 characters and CRLF a line, an attachment), text (long lines of
 * words, 200 to 990 characters), short (lines of 0 to 12 characters, some "."-stuffed).
 * Each is fed in 16 KB and 64 KB chunks, the sizes a read returns; best of 3 runs.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data.h"
#include "../lib/data_ref.h"

#define RUNS	3

typedef size_t scan_fn(struct data_scan *, const char *, size_t, char *, size_t *);
typedef void init_fn(struct data_scan *, enum data_policy);

static uint32_t
rnd(uint32_t *st)
{
	*st ^= *st << 13;
	*st ^= *st >> 17;
	*st ^= *st << 5;
	return (*st);
}

/* Fill ${b} with about ${n} bytes of ${kind}, then the end of data; its length. */
static size_t
make_body(char *b, size_t n, const char *kind)
{
	static const char b64[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	static const char *words[] = { "the", "quick", "brown", "fox", "jumps", "over",
	    "a", "lazy", "dog,", "and", "then", "some", "more", "words.", "Reply", "to" };
	uint32_t st = 0x9e3779b9;
	size_t o = 0, len, k, w;

	while (o + 1100 < n) {
		if (strcmp(kind, "base64") == 0) {
			for (k = 0; k < 76; k++)
				b[o++] = b64[rnd(&st) & 63];
		} else if (strcmp(kind, "text") == 0) {
			len = 200 + rnd(&st) % 791;
			for (k = 0; k < len; k += strlen(words[w]) + 1) {
				w = rnd(&st) % 16;
				memcpy(b + o, words[w], strlen(words[w]));
				o += strlen(words[w]);
				b[o++] = ' ';
			}
		} else {
			len = rnd(&st) % 13;
			/* A client stuffs a line that starts with ".": ".." on the wire. */
			if (len > 0 && rnd(&st) % 16 == 0) {
				b[o++] = '.';
				b[o++] = '.';
				len--;
			}
			for (k = 0; k < len; k++)
				b[o++] = (char)('a' + rnd(&st) % 26);
		}
		b[o++] = '\r';
		b[o++] = '\n';
	}
	memcpy(b + o, ".\r\n", 3);
	return (o + 3);
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ((double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
}

/* Seconds for one pass of ${body} through ${fn} (NULL: memcpy) in ${chunk} bytes. */
static double
one_pass(init_fn *init, scan_fn *fn, const char *body, size_t n, size_t chunk, char *out,
    unsigned long long *outp)
{
	struct data_scan s;
	size_t pos = 0, c, olen;
	double t0 = now();

	init(&s, DATA_NORMALIZE);
	*outp = 0;
	while (pos < n && !s.done) {
		c = n - pos < chunk ? n - pos : chunk;
		if (fn == NULL) {
			memcpy(out, body + pos, c);
			olen = c;
		} else
			c = fn(&s, body + pos, c, out, &olen);
		pos += c;
		*outp += olen;
	}
	t0 = now() - t0;
	if (fn != NULL && (!s.done || pos != n)) {
		fprintf(stderr, "datascan: the end of data was not found\n");
		exit(1);
	}
	return (t0);
}

int
main(int argc, char **argv)
{
	static const char *kinds[] = { "base64", "text", "short" };
	static const size_t chunks[] = { 16384, 65536 };
	static const char *names[] = { "memcpy", "reference", "data_scan" };
	scan_fn *fns[] = { NULL, ref_data_scan, data_scan };
	init_fn *inits[] = { data_init, ref_data_init, data_init };
	unsigned long long outs[3];
	size_t mb = argc > 1 ? strtoul(argv[1], NULL, 10) : 200, n, cap, k, c, f, r;
	double best, t, mbs[3];
	char *body, *out;

	if (mb == 0)
		mb = 1;
	cap = mb * 1000 * 1000;
	if ((body = malloc(cap)) == NULL || (out = malloc(DATA_OUT_MAX(65536))) == NULL) {
		fprintf(stderr, "datascan: out of memory\n");
		return (1);
	}
	printf("%-8s %6s %10s %10s %10s %8s\n", "body", "chunk", "memcpy", "reference",
	    "data_scan", "speedup");
	for (k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		n = make_body(body, cap, kinds[k]);
		for (c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
			for (f = 0; f < 3; f++) {
				best = 1e9;
				for (r = 0; r < RUNS; r++) {
					t = one_pass(inits[f], fns[f], body, n, chunks[c], out, &outs[f]);
					if (t < best)
						best = t;
				}
				mbs[f] = (double)n / 1e6 / best;
			}
			if (outs[1] != outs[2]) {
				fprintf(stderr, "datascan: %s and %s wrote %llu and %llu bytes\n",
				    names[1], names[2], outs[1], outs[2]);
				return (1);
			}
			printf("%-8s %5zuK %10.0f %10.0f %10.0f %7.2fx\n", kinds[k],
			    chunks[c] / 1024, mbs[0], mbs[1], mbs[2], mbs[2] / mbs[1]);
		}
	}
	printf("(MB/s of input per CPU second, %zu MB bodies, best of %d; reference = the scanner before "
	    "the fast path)\n", mb, RUNS);
	free(out);
	free(body);
	return (0);
}
