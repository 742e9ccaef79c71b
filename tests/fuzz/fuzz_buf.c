/*
 * fuzz_buf: the byte queue every socket reads into, and buf_line(), which frames the
 * client's command lines. A flat array is the model; every call is compared with it.
 *
 * Input: byte 0 picks the capacity; then a program of 1-byte opcodes, each followed by
 * its operands: append the next n bytes, reserve + commit, consume, take a line.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const size_t caps[] = { 1, 2, 3, 7, 64, 1023, 1024, 1025, 4096, 16384 };

/* First CRLF in the model, as buf_line() must find it. */
static int
model_line(const char *m, size_t n, size_t *lenp)
{
	size_t i;

	for (i = 0; i + 1 < n; i++) {
		if (m[i] == '\r' && m[i + 1] == '\n') {
			*lenp = i;
			return (1);
		}
	}
	return (0);
}

static void
same(const struct buf *b, const char *m, size_t mlen, size_t cap, int consumed)
{
	const char *d = buf_data(b);

	if (buf_len(b) != mlen || buf_room(b) != cap - mlen)
		abort();
	if (mlen == 0 ? d != NULL : (d == NULL || memcmp(d, m, mlen) != 0))
		abort();
	/*
	 * A consume that empties the buffer gives the memory back. (A reserve with
	 * nothing committed keeps it: conn.c must release it when a read gets nothing.)
	 */
	if (consumed && mlen == 0 && b->data != NULL)
		abort();
	if (b->size > cap || b->off + b->len > b->size)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf b;
	char *model, *w;
	size_t cap, mlen = 0, i = 1, n, got, ll, ml;
	const char *line;
	int rc, consumed;

	if (size < 1)
		return (0);
	cap = caps[data[0] % (sizeof(caps) / sizeof(caps[0]))];
	if ((model = malloc(cap)) == NULL)
		abort();
	buf_init(&b, cap);
	b.secret = (data[0] >> 7) & 1;
	same(&b, model, 0, cap, 1);
	while (i < size) {
		uint8_t op = data[i++];

		n = op >> 2;				/* 0..63 */
		consumed = 0;
		switch (op & 3) {
		case 0:		/* append up to n input bytes */
			if (n > size - i)
				n = size - i;
			rc = buf_append(&b, data + i, n);
			if (rc != (n > cap - mlen ? -1 : 0))
				abort();
			if (rc == 0) {
				memcpy(model + mlen, data + i, n);
				mlen += n;
			}
			i += n;
			break;
		case 1:		/* reserve n * 16 + 1, write some, commit part */
			w = buf_reserve(&b, n * 16 + 1, &got);
			if (mlen == cap) {
				if (w != NULL)
					abort();
				break;
			}
			if (w == NULL || got == 0 || got > cap - mlen)
				abort();
			if (got < (n * 16 + 1 < cap - mlen ? n * 16 + 1 : cap - mlen))
				abort();
			/* Write all the space we were given: ASan checks it is ours. */
			memset(w, 'r', got);
			if (i < size) {
				got = got < data[i] ? got : data[i];
				i++;
			}
			buf_commit(&b, got);
			memset(model + mlen, 'r', got);
			mlen += got;
			break;
		case 2:		/* consume n bytes (n == 63: more than is held) */
			if (n == 63)
				n = mlen + 1;
			buf_consume(&b, n);
			consumed = 1;
			if (n >= mlen)
				mlen = 0;
			else {
				memmove(model, model + n, mlen - n);
				mlen -= n;
			}
			break;
		case 3:		/* take a line, as the session does */
			ll = (size_t)-1;
			line = buf_line(&b, &ll);
			if ((line != NULL) != model_line(model, mlen, &ml))
				abort();
			if (line != NULL) {
				if (ll != ml || line != buf_data(&b) ||
				    line[ll] != '\r' || line[ll + 1] != '\n')
					abort();
				if (n & 1) {
					buf_consume(&b, ll + 2);
					consumed = 1;
					memmove(model, model + ll + 2, mlen - ll - 2);
					mlen -= ll + 2;
				}
			}
			break;
		}
		same(&b, model, mlen, cap, consumed);
	}
	buf_free(&b);
	if (buf_len(&b) != 0 || buf_data(&b) != NULL)
		abort();
	free(model);
	return (0);
}
