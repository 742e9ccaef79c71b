/*
 * A bounded byte buffer (pure): append, reserve/commit for zero-copy writes, line
 * extraction, and a storage that exists only while it holds data. Buffers marked
 * secret are wiped before their memory is given back.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "buf.h"

/* Smallest allocation: most SMTP lines and replies fit, so chatty phases do not realloc. */
#define BUF_MIN 1024

void
buf_init(struct buf *b, size_t cap)
{
	memset(b, 0, sizeof(*b));
	b->cap = cap;
}

size_t
buf_len(const struct buf *b)
{
	return (b->len);
}

const char *
buf_data(const struct buf *b)
{
	return (b->len ? b->data + b->off : NULL);
}

size_t
buf_room(const struct buf *b)
{
	return (b->cap - b->len);
}

char *
buf_reserve(struct buf *b, size_t n, size_t *gotp)
{
	size_t want, nsize;
	char *p;

	if (n > buf_room(b))
		n = buf_room(b);
	if (n == 0)
		return (NULL);
	want = b->len + n;
	if (b->off + want > b->size) {
		if (want <= b->size) {
			/* Enough space, just in front: slide the held bytes down. */
			memmove(b->data, b->data + b->off, b->len);
			b->off = 0;
		} else {
			nsize = b->size ? b->size : BUF_MIN;
			while (nsize < want)
				nsize *= 2;
			if (nsize > b->cap)
				nsize = b->cap;
			if (b->off > 0) {
				memmove(b->data, b->data + b->off, b->len);
				b->off = 0;
			}
			if ((p = realloc(b->data, nsize)) == NULL)
				return (NULL);
			b->data = p;
			b->size = nsize;
		}
	}
	*gotp = b->size - b->off - b->len;
	return (b->data + b->off + b->len);
}

void
buf_commit(struct buf *b, size_t n)
{
	b->len += n;
}

int
buf_append(struct buf *b, const void *p, size_t n)
{
	size_t got;
	char *w;

	if (n == 0)
		return (0);
	if (n > buf_room(b) || (w = buf_reserve(b, n, &got)) == NULL || got < n)
		return (-1);
	memcpy(w, p, n);
	buf_commit(b, n);
	return (0);
}

void
buf_consume(struct buf *b, size_t n)
{
	if (b->secret && b->len > 0)
		OPENSSL_cleanse(b->data + b->off, n < b->len ? n : b->len);
	if (n >= b->len) {
		/* Empty: give the memory back so idle peers cost nothing. */
		buf_free(b);
		return;
	}
	b->off += n;
	b->len -= n;
}

const char *
buf_line(const struct buf *b, size_t *lenp)
{
	const char *p, *cr;
	size_t left;

	if (b->len < 2)
		return (NULL);
	p = b->data + b->off;
	left = b->len;
	while ((cr = memchr(p, '\r', left - 1)) != NULL) {
		if (cr[1] == '\n') {
			*lenp = (size_t)(cr - (b->data + b->off));
			return (b->data + b->off);
		}
		left -= (size_t)(cr - p) + 1;
		p = cr + 1;
		if (left < 2)
			break;
	}
	return (NULL);
}

void
buf_free(struct buf *b)
{
	if (b->data != NULL) {
		if (b->secret)
			OPENSSL_cleanse(b->data, b->size);
		free(b->data);
	}
	b->data = NULL;
	b->off = b->len = b->size = 0;
}
