/*
 * The DATA scanner (pure): finds the end of a message body across any chunking and
 * rewrites bare CR and LF per policy, so the upstream never sees an end of data or a
 * line break the proxy did not see (SMTP smuggling).
 */
#include <string.h>

#include "data.h"

/* Where we are in the current line. */
enum {
	D_BOL,		/* start of a line that a real CRLF began (or the body's start) */
	D_BOL_FAKE,	/* start of a line that a bare LF began: a "." here is content
			   (except under DATA_ACCEPT, where a bare LF is a real line end) */
	D_DOT,		/* a "." at D_BOL, held: it ends the data if CRLF follows */
	D_MID,		/* inside a line */
};

void
data_init(struct data_scan *s, enum data_policy policy)
{
	memset(s, 0, sizeof(*s));
	s->policy = policy;
	s->state = D_BOL;
}

/* Append ${n} bytes to the output, unless a rejected body writes nothing more. */
static inline void
emit(struct data_scan *s, char *out, size_t *o, const char *p, size_t n)
{
	if (s->bad && s->policy == DATA_REJECT)
		return;
	memcpy(out + *o, p, n);
	*o += n;
}

/* A CR was held and ${c} follows: 1 if ${c} was used (the LF), 0 to look at it again. */
static int
after_cr(struct data_scan *s, char c, char *out, size_t *o)
{
	int dot = s->state == D_DOT;

	s->cr = 0;
	if (c == '\n') {
		emit(s, out, o, dot ? ".\r\n" : "\r\n", dot ? 3 : 2);
		if (dot)
			s->done = 1;
		else
			s->state = D_BOL;
		return (1);
	}
	/* A lone CR: a space, so no reader can take it for a line end. */
	s->bad = 1;
	emit(s, out, o, dot ? ". " : " ", dot ? 2 : 1);
	s->state = D_MID;
	return (0);
}

/* At the start of a line, or with its "." held: 1 if ${c} was used here. */
static int
line_start(struct data_scan *s, char c, char *out, size_t *o)
{
	switch (s->state) {
	case D_BOL:
		if (c != '.')
			return (0);
		s->state = D_DOT;
		return (1);
	case D_BOL_FAKE:
		if (c != '.')
			return (0);
		/* The upstream will see this at a line start: stuff it. */
		emit(s, out, o, "..", 2);
		s->state = D_MID;
		return (1);
	case D_DOT:
		if (c == '\n' && s->policy == DATA_ACCEPT) {
			/* "<LF>.<LF>" ends the data of a device that only sends LF. */
			emit(s, out, o, ".\r\n", 3);
			s->done = 1;
			return (1);
		}
		if (c == '\n') {
			/* ".\n": not an end of data; sent as a stuffed "." line. */
			s->bad = 1;
			emit(s, out, o, "..\r\n", 4);
			s->state = D_BOL_FAKE;
			return (1);
		}
		if (c != '\r') {
			emit(s, out, o, ".", 1);
			s->state = D_MID;
		}
		return (0);
	}
	return (0);
}

/* A CR (held until the next byte says what it is) or a bare LF. */
static void
line_end(struct data_scan *s, char c, char *out, size_t *o)
{
	if (c == '\r') {
		s->cr = 1;
		return;
	}
	if (s->policy != DATA_ACCEPT)
		s->bad = 1;
	emit(s, out, o, "\r\n", 2);
	s->state = s->policy == DATA_ACCEPT ? D_BOL : D_BOL_FAKE;
}

size_t
data_scan(struct data_scan *s, const char *in, size_t inlen, char *out, size_t *outlen)
{
	size_t i = 0, o = 0, run;
	char c;

	while (i < inlen && !s->done) {
		c = in[i];
		if (s->cr) {
			i += (size_t)after_cr(s, c, out, &o);
			continue;
		}
		if (s->state != D_MID && line_start(s, c, out, &o)) {
			i++;
			continue;
		}
		if (c == '\r' || c == '\n') {
			line_end(s, c, out, &o);
			i++;
			continue;
		}
		/* Plain bytes up to the next CR or LF go out in one copy. */
		for (run = 0; i + run < inlen && in[i + run] != '\r' && in[i + run] != '\n'; run++)
			;
		emit(s, out, &o, in + i, run);
		i += run;
		s->state = D_MID;
	}
	s->out += o;
	*outlen = o;
	return (i);
}
