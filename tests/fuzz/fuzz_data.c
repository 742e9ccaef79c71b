/*
 * fuzz_data: a message body through the DATA scanner, fed in chunks, checked against
 * a small model of the rules written here from data.h (not from data.c), so that a
 * bug in the scanner cannot hide in the oracle too; and, chunk by chunk, against the
 * byte-at-a-time scanner it replaced (tests/lib/data_ref.h).
 *
 * Input: byte 0 picks the policy (its value mod 3: normalize, reject, accept) and the
 * chunking (bits 2..7); the rest is the body as the client sends it after the 354.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "../lib/data_ref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL()	abort()

struct model {
	char	*out;
	size_t	 outlen;
	size_t	 used;		/* input bytes consumed (through the terminator) */
	int	 done;
	int	 bad;
	size_t	 bad_at;	/* output length when the first bare CR or LF was seen */
};

static void
put(struct model *m, const char *s, size_t n)
{
	memcpy(m->out + m->outlen, s, n);
	m->outlen += n;
}

static void
mark_bad(struct model *m)
{
	if (!m->bad) {
		m->bad = 1;
		m->bad_at = m->outlen;
	}
}

/*
 * The rules, one line at a time, with lookahead over the whole body. A line ends only
 * at CRLF; a bare LF ends it too but is written CRLF, and the next line is "fake"; a
 * lone CR is a space. At the start of a real line (or of the body): ".CRLF" ends the
 * data, ".LF" is written "..CRLF", ".CR" (lone) ". ", "." anything else as is. At the
 * start of a fake line "." is written "..". Bytes whose meaning depends on bytes not
 * yet sent (a trailing CR, a "." at a real line start) are held, i.e. not written.
 */
static void
model_run(struct model *m, const uint8_t *in, size_t n)
{
	size_t i = 0;
	int real_bol = 1, fake_bol = 0;

	m->outlen = m->used = 0;
	m->done = m->bad = 0;
	m->bad_at = 0;
	while (i < n) {
		if (real_bol && in[i] == '.') {
			if (i + 1 == n)
				break;					/* held */
			if (in[i + 1] == '\r') {
				if (i + 2 == n)
					break;				/* held */
				if (in[i + 2] == '\n') {
					put(m, ".\r\n", 3);
					i += 3;
					m->done = 1;
					break;
				}
				mark_bad(m);
				put(m, ". ", 2);
				i += 2;
				real_bol = fake_bol = 0;
				continue;
			}
			if (in[i + 1] == '\n') {
				mark_bad(m);
				put(m, "..\r\n", 4);
				i += 2;
				real_bol = 0;
				fake_bol = 1;
				continue;
			}
			put(m, ".", 1);
			i++;
			real_bol = fake_bol = 0;
			continue;
		}
		if (fake_bol && in[i] == '.') {
			put(m, "..", 2);
			i++;
			real_bol = fake_bol = 0;
			continue;
		}
		if (in[i] == '\r') {
			if (i + 1 == n)
				break;					/* held */
			if (in[i + 1] == '\n') {
				put(m, "\r\n", 2);
				i += 2;
				real_bol = 1;
				fake_bol = 0;
				continue;
			}
			mark_bad(m);
			put(m, " ", 1);
			i++;
			real_bol = fake_bol = 0;
			continue;
		}
		if (in[i] == '\n') {
			mark_bad(m);
			put(m, "\r\n", 2);
			i++;
			real_bol = 0;
			fake_bol = 1;
			continue;
		}
		put(m, (const char *)in + i, 1);
		i++;
		real_bol = fake_bol = 0;
	}
	m->used = i;
	if (!m->done) {
		/* Held bytes count as used: the scanner has taken them in. */
		m->used = n;
	}
}

/*
 * The rules of DATA_ACCEPT: a line ends at LF, with or without a CR before it, and is
 * written with CRLF; a lone CR is a space (and marks the body bad); a line that is just
 * "." ends the data. A trailing CR, or a "." at a line start, is held.
 */
static void
model_accept_run(struct model *m, const uint8_t *in, size_t n)
{
	size_t i = 0;
	int bol = 1;

	m->outlen = m->used = 0;
	m->done = m->bad = 0;
	m->bad_at = 0;
	while (i < n && !m->done) {
		if (bol && in[i] == '.') {
			if (i + 1 == n)
				break;					/* held */
			if (in[i + 1] == '\n' || (in[i + 1] == '\r' && i + 2 < n &&
			    in[i + 2] == '\n')) {
				put(m, ".\r\n", 3);
				i += in[i + 1] == '\n' ? 2 : 3;
				m->done = 1;
				break;
			}
			if (in[i + 1] == '\r' && i + 2 == n)
				break;					/* held */
			put(m, ".", 1);
			i++;
			bol = 0;
			if (in[i] != '\r')
				continue;
		}
		if (in[i] == '\r') {
			if (i + 1 == n)
				break;					/* held */
			if (in[i + 1] == '\n') {
				put(m, "\r\n", 2);
				i += 2;
				bol = 1;
				continue;
			}
			mark_bad(m);
			put(m, " ", 1);
			i++;
			bol = 0;
			continue;
		}
		if (in[i] == '\n') {
			put(m, "\r\n", 2);
			i++;
			bol = 1;
			continue;
		}
		put(m, (const char *)in + i, 1);
		i++;
		bol = 0;
	}
	m->used = m->done ? i : n;
}

/* Output never has a CR not followed by LF nor an LF not preceded by CR. */
static void
check_line_ends(const char *o, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (o[i] == '\r' && (i + 1 == n || o[i + 1] != '\n'))
			FAIL();
		if (o[i] == '\n' && (i == 0 || o[i - 1] != '\r'))
			FAIL();
	}
}

/* Offset of the first end of data the upstream would see in ${o}, or -1. */
static long
first_end(const char *o, size_t n)
{
	size_t i;

	if (n >= 3 && memcmp(o, ".\r\n", 3) == 0)
		return (0);
	for (i = 0; i + 5 <= n; i++)
		if (memcmp(o + i, "\r\n.\r\n", 5) == 0)
			return ((long)i + 2);
	return (-1);
}

/* The chunk sizes of ${pattern}: 0 = all at once. */
struct chunks {
	unsigned	pattern;
	uint32_t	rnd;
};

static size_t
next_chunk(void *arg)
{
	struct chunks *c = arg;

	if (c->pattern == 0)
		return ((size_t)-1);
	if (c->pattern < 8)
		return (c->pattern);		/* fixed: 1..7 bytes */
	c->rnd = c->rnd * 1103515245u + 12345u;
	return ((c->rnd >> 16) % (2u + (c->pattern & 0x3f)));	/* 0 included */
}

/* Feed ${in} to a scanner in chunks chosen by ${pattern}; 0 = all at once. */
static void
run(enum data_policy pol, unsigned pattern, const uint8_t *in, size_t n, char *out,
    size_t cap, size_t *outlen, size_t *used, struct data_scan *s)
{
	struct chunks ck = { pattern, pattern * 2654435761u + 1 };
	size_t pos = 0, chunk, got, o;
	char *buf;

	data_init(s, pol);
	*outlen = 0;
	while (!s->done) {
		chunk = next_chunk(&ck);
		if (chunk > n - pos)
			chunk = n - pos;
		/* Exact-size buffers, so ASan sees a write past DATA_OUT_MAX. */
		if ((buf = malloc(DATA_OUT_MAX(chunk))) == NULL)
			FAIL();
		o = (size_t)-1;
		got = data_scan(s, (const char *)in + pos, chunk, buf, &o);
		if (got > chunk || o > DATA_OUT_MAX(chunk))
			FAIL();
		if (got < chunk && !s->done)
			FAIL();
		/* A chunk never ends in the middle of a CRLF: the CR is held. */
		if (o > 0 && buf[o - 1] == '\r')
			FAIL();
		if (o > 0 && buf[0] == '\n')
			FAIL();
		/* More than a one-shot run may write is already a difference. */
		if (o > cap - *outlen)
			FAIL();
		memcpy(out + *outlen, buf, o);
		*outlen += o;
		free(buf);
		pos += got;
		if (pos == n)
			break;
	}
	/* The scanner may be called with nothing to do. */
	if (!s->done) {
		if ((buf = malloc(DATA_OUT_MAX(0))) == NULL)
			FAIL();
		if (data_scan(s, (const char *)in + pos, 0, buf, &o) != 0 || o != 0)
			FAIL();
		free(buf);
	}
	*used = pos;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct data_scan s1, s2;
	struct model m;
	enum data_policy pol;
	unsigned pattern;
	const uint8_t *in;
	char *o1, *o2;
	size_t n, l1, l2, u1, u2, want;
	long e;

	if (size < 1)
		return (0);
	pol = data[0] % 3 == 0 ? DATA_NORMALIZE : data[0] % 3 == 1 ? DATA_REJECT : DATA_ACCEPT;
	pattern = data[0] >> 2;
	in = data + 1;
	n = size - 1;
	o1 = malloc(DATA_OUT_MAX(n));
	o2 = malloc(DATA_OUT_MAX(n));
	m.out = malloc(DATA_OUT_MAX(n));
	if (o1 == NULL || o2 == NULL || m.out == NULL)
		FAIL();

	run(pol, 0, in, n, o1, DATA_OUT_MAX(n), &l1, &u1, &s1);
	run(pol, pattern, in, n, o2, DATA_OUT_MAX(n), &l2, &u2, &s2);
	if (pol == DATA_ACCEPT)
		model_accept_run(&m, in, n);
	else
		model_run(&m, in, n);

	/* Chunking changes nothing. */
	if (l1 != l2 || memcmp(o1, o2, l1) != 0 || u1 != u2 || s1.done != s2.done ||
	    s1.bad != s2.bad || s1.out != s2.out)
		FAIL();
	if (s1.out != l1)
		FAIL();

	/* The model agrees, byte for byte. */
	if (s1.done != m.done || u1 != m.used || s1.bad != m.bad)
		FAIL();
	want = (pol == DATA_REJECT && m.bad) ? m.bad_at : m.outlen;
	if (l1 != want || memcmp(o1, m.out, want) != 0)
		FAIL();

	/* What the upstream sees: no bare CR or LF, one end of data, only at the end. */
	check_line_ends(o1, l1);
	e = first_end(o1, l1);
	if (e >= 0 && !(s1.done && (size_t)e + 3 == l1))
		FAIL();
	if (s1.done && !(pol == DATA_REJECT && s1.bad) && (size_t)e + 3 != l1)
		FAIL();

	/* A real CRLF "." CRLF in the input must end the data, and no later. */
	{
		const uint8_t *t = NULL;
		size_t i;

		if (n >= 3 && memcmp(in, ".\r\n", 3) == 0)
			t = in;
		for (i = 0; t == NULL && i + 5 <= n; i++)
			if (memcmp(in + i, "\r\n.\r\n", 5) == 0)
				t = in + i + 2;
		if (t != NULL && (!s1.done || u1 > (size_t)(t - in) + 3))
			FAIL();
		if (s1.done && pol != DATA_ACCEPT &&
		    (u1 < 3 || memcmp(in + u1 - 3, ".\r\n", 3) != 0))
			FAIL();
		/* Under accept the end may also be a "." line framed by bare LFs. */
		if (s1.done && pol == DATA_ACCEPT && !(u1 >= 2 && in[u1 - 1] == '\n' &&
		    (in[u1 - 2] == '.' || (u1 >= 3 && in[u1 - 2] == '\r' && in[u1 - 3] == '.'))))
			FAIL();
	}
	/* The byte machine the fast scanner replaced agrees after every call. */
	{
		struct chunks ck = { pattern, pattern * 2654435761u + 1 };
		char why[256];

		if (ref_lockstep(pol, (const char *)in, n, next_chunk, &ck, why, sizeof(why)))
			FAIL();
	}
	free(m.out);
	free(o2);
	free(o1);
	return (0);
}
