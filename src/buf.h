#ifndef BUF_H
#define BUF_H

#include <stddef.h>

/*
 * A bounded byte queue whose memory exists only while it holds data: an idle
 * session with ten thousand peers should cost a few hundred bytes, not 32 KiB.
 */
struct buf {
	char	*data;
	size_t	 off;		/* first unread byte */
	size_t	 len;		/* bytes held from off */
	size_t	 size;		/* allocated */
	size_t	 cap;		/* most bytes it may ever hold */
	int	 secret;	/* wipe bytes as they are consumed: they may be credentials */
};

/**
 * buf_init(b, cap):
 * Make ${b} an empty buffer that will hold at most ${cap} bytes. Allocates nothing.
 */
void buf_init(struct buf *b, size_t cap);

/**
 * buf_len(b), buf_data(b), buf_room(b):
 * Bytes held, a pointer to the first one (NULL when empty) and how many more fit.
 */
size_t buf_len(const struct buf *b);
const char *buf_data(const struct buf *b);
size_t buf_room(const struct buf *b);

/**
 * buf_reserve(b, n, gotp):
 * Return a pointer to at least min(${n}, room) contiguous writable bytes at the end
 * of ${b}, their count in ${gotp}; NULL when the buffer is full or memory is short.
 * Follow with buf_commit().
 */
char *buf_reserve(struct buf *b, size_t n, size_t *gotp);

/**
 * buf_commit(b, n):
 * Mark ${n} bytes written into the space buf_reserve() returned as held.
 */
void buf_commit(struct buf *b, size_t n);

/**
 * buf_append(b, p, n):
 * Append ${n} bytes; 0 on success, -1 (nothing appended) if they do not fit.
 */
int buf_append(struct buf *b, const void *p, size_t n);

/**
 * buf_consume(b, n):
 * Drop the first ${n} held bytes; the memory is released once the buffer is empty.
 */
void buf_consume(struct buf *b, size_t n);

/**
 * buf_line(b, lenp):
 * Return the first CRLF-terminated line in ${b} and store its length without CRLF
 * in ${lenp}; NULL if no whole line is buffered. A bare LF or CR does not end a line.
 * Valid until the next call that changes ${b}.
 */
const char *buf_line(const struct buf *b, size_t *lenp);

/**
 * buf_free(b):
 * Release the memory held by ${b}, wiping it first when ${b}->secret is set.
 */
void buf_free(struct buf *b);

#endif
