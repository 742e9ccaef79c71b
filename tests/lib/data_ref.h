/*
 * The DATA scanner as it was before it learnt to skip clean stretches (src/data.c at
 * bc1c777): a byte-at-a-time state machine, kept verbatim (names prefixed ref_) as the
 * reference the fast scanner must match byte for byte, and as the "before" of
 * bench-datascan. Included by test programs only (static functions, no object file).
 */
#ifndef DATA_REF_H
#define DATA_REF_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"

/* Where we are in the current line. */
enum {
	REF_BOL,	/* start of a line that a real CRLF began (or the body's start) */
	REF_BOL_FAKE,	/* start of a line that a bare LF began: a "." here is content
			   (except under DATA_ACCEPT, where a bare LF is a real line end) */
	REF_DOT,	/* a "." at REF_BOL, held: it ends the data if CRLF follows */
	REF_MID,	/* inside a line */
};

static void
ref_data_init(struct data_scan *s, enum data_policy policy)
{
	memset(s, 0, sizeof(*s));
	s->policy = policy;
	s->state = REF_BOL;
}

/* Append ${n} bytes to the output, unless a rejected body writes nothing more. */
static inline void
ref_emit(struct data_scan *s, char *out, size_t *o, const char *p, size_t n)
{
	if (s->bad && s->policy == DATA_REJECT)
		return;
	memcpy(out + *o, p, n);
	*o += n;
}

/* A CR was held and ${c} follows: 1 if ${c} was used (the LF), 0 to look at it again. */
static int
ref_after_cr(struct data_scan *s, char c, char *out, size_t *o)
{
	int dot = s->state == REF_DOT;

	s->cr = 0;
	if (c == '\n') {
		ref_emit(s, out, o, dot ? ".\r\n" : "\r\n", dot ? 3 : 2);
		if (dot)
			s->done = 1;
		else
			s->state = REF_BOL;
		return (1);
	}
	/* A lone CR: a space, so no reader can take it for a line end. */
	s->bad = 1;
	ref_emit(s, out, o, dot ? ". " : " ", dot ? 2 : 1);
	s->state = REF_MID;
	return (0);
}

/* At the start of a line, or with its "." held: 1 if ${c} was used here. */
static int
ref_line_start(struct data_scan *s, char c, char *out, size_t *o)
{
	switch (s->state) {
	case REF_BOL:
		if (c != '.')
			return (0);
		s->state = REF_DOT;
		return (1);
	case REF_BOL_FAKE:
		if (c != '.')
			return (0);
		/* The upstream will see this at a line start: stuff it. */
		ref_emit(s, out, o, "..", 2);
		s->state = REF_MID;
		return (1);
	case REF_DOT:
		if (c == '\n' && s->policy == DATA_ACCEPT) {
			/* "<LF>.<LF>" ends the data of a device that only sends LF. */
			ref_emit(s, out, o, ".\r\n", 3);
			s->done = 1;
			return (1);
		}
		if (c == '\n') {
			/* ".\n": not an end of data; sent as a stuffed "." line. */
			s->bad = 1;
			ref_emit(s, out, o, "..\r\n", 4);
			s->state = REF_BOL_FAKE;
			return (1);
		}
		if (c != '\r') {
			ref_emit(s, out, o, ".", 1);
			s->state = REF_MID;
		}
		return (0);
	}
	return (0);
}

/* A CR (held until the next byte says what it is) or a bare LF. */
static void
ref_line_end(struct data_scan *s, char c, char *out, size_t *o)
{
	if (c == '\r') {
		s->cr = 1;
		return;
	}
	if (s->policy != DATA_ACCEPT)
		s->bad = 1;
	ref_emit(s, out, o, "\r\n", 2);
	s->state = s->policy == DATA_ACCEPT ? REF_BOL : REF_BOL_FAKE;
}

static size_t
ref_data_scan(struct data_scan *s, const char *in, size_t inlen, char *out, size_t *outlen)
{
	size_t i = 0, o = 0, run;
	char c;

	while (i < inlen && !s->done) {
		c = in[i];
		if (s->cr) {
			i += (size_t)ref_after_cr(s, c, out, &o);
			continue;
		}
		if (s->state != REF_MID && ref_line_start(s, c, out, &o)) {
			i++;
			continue;
		}
		if (c == '\r' || c == '\n') {
			ref_line_end(s, c, out, &o);
			i++;
			continue;
		}
		/* Plain bytes up to the next CR or LF go out in one copy. */
		for (run = 0; i + run < inlen && in[i + run] != '\r' && in[i + run] != '\n'; run++)
			;
		ref_emit(s, out, &o, in + i, run);
		i += run;
		s->state = REF_MID;
	}
	s->out += o;
	*outlen = o;
	return (i);
}

/*
 * ref_lockstep(pol, in, n, next, arg, why, whysize):
 * Feed ${in} to data_scan() and to the reference in the same chunks, each next(arg)
 * bytes long (clipped to what is left; 0 is a chunk too), until the end of data or the
 * end of ${in}, then once more. After every call the bytes used, the output (byte for
 * byte), and the held CR, bad, done and count of bytes out must be the same. Each
 * chunk is an exact-size heap copy with an exact DATA_OUT_MAX() output, so ASan sees
 * a read or a write past either. 0 if they agree; -1 with the first difference in
 * ${why}.
 */
static inline int
ref_lockstep(enum data_policy pol, const char *in, size_t n, size_t (*next)(void *),
    void *arg, char *why, size_t whysize)
{
	struct data_scan a, b;
	size_t pos = 0, chunk, ua, ub, oa, ob, calls = 0;
	char *cin, *outa, *outb;
	int last = 0, rc = 0;

	data_init(&a, pol);
	ref_data_init(&b, pol);
	while (rc == 0 && !last) {
		/* After the end of data (or of the input): one more call, which takes nothing. */
		last = a.done || b.done || pos == n;
		chunk = next(arg);
		if (chunk > n - pos)
			chunk = n - pos;
		if ((cin = malloc(chunk ? chunk : 1)) == NULL ||
		    (outa = malloc(DATA_OUT_MAX(chunk))) == NULL ||
		    (outb = malloc(DATA_OUT_MAX(chunk))) == NULL)
			abort();
		memcpy(cin, in + pos, chunk);
		oa = ob = (size_t)-1;
		ua = data_scan(&a, cin, chunk, outa, &oa);
		ub = ref_data_scan(&b, cin, chunk, outb, &ob);
		if (ua != ub || oa != ob || memcmp(outa, outb, oa < ob ? oa : ob) != 0 ||
		    a.cr != b.cr || a.bad != b.bad || a.done != b.done || a.out != b.out) {
			snprintf(why, whysize, "call %zu at offset %zu, chunk %zu: used %zu/%zu, "
			    "out %zu/%zu, cr %d/%d, bad %d/%d, done %d/%d (new/reference)", calls,
			    pos, chunk, ua, ub, oa, ob, a.cr, b.cr, a.bad, b.bad, a.done, b.done);
			rc = -1;
		}
		pos += ua;
		calls++;
		free(outb);
		free(outa);
		free(cin);
	}
	return (rc);
}

#endif
