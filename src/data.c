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

size_t
data_scan(struct data_scan *s, const char *in, size_t inlen, char *out, size_t *outlen)
{
	size_t i = 0, o = 0, run;
	const char *stop;
	char c;

#define EMIT(ch)	do { if (!(s->bad && s->policy == DATA_REJECT)) out[o++] = (ch); } while (0)
#define BARE()		do { s->bad = 1; } while (0)

	while (i < inlen && !s->done) {
		c = in[i];
		if (s->cr) {
			s->cr = 0;
			if (c == '\n') {
				i++;
				if (s->state == D_DOT)
					EMIT('.');
				EMIT('\r');
				EMIT('\n');
				if (s->state == D_DOT) {
					s->done = 1;
					break;
				}
				s->state = D_BOL;
				continue;
			}
			/* A lone CR: a space, so no reader can take it for a line end. */
			BARE();
			if (s->state == D_DOT)
				EMIT('.');
			EMIT(' ');
			s->state = D_MID;
			continue;	/* c is looked at again, in the middle of a line */
		}
		switch (s->state) {
		case D_BOL:
			if (c == '.') {
				s->state = D_DOT;
				i++;
				continue;
			}
			break;
		case D_BOL_FAKE:
			if (c == '.') {
				/* The upstream will see this at a line start: stuff it. */
				EMIT('.');
				EMIT('.');
				s->state = D_MID;
				i++;
				continue;
			}
			break;
		case D_DOT:
			if (c == '\n' && s->policy == DATA_ACCEPT) {
				/* "<LF>.<LF>" ends the data of a device that only sends LF. */
				EMIT('.');
				EMIT('\r');
				EMIT('\n');
				s->done = 1;
				i++;
				continue;
			}
			if (c == '\n') {
				/* ".\n": not an end of data; sent as a stuffed "." line. */
				BARE();
				EMIT('.');
				EMIT('.');
				EMIT('\r');
				EMIT('\n');
				s->state = D_BOL_FAKE;
				i++;
				continue;
			}
			if (c != '\r') {
				EMIT('.');
				s->state = D_MID;
			}
			break;
		}
		if (c == '\r') {
			s->cr = 1;
			i++;
			continue;
		}
		if (c == '\n') {
			if (s->policy != DATA_ACCEPT)
				BARE();
			EMIT('\r');
			EMIT('\n');
			s->state = s->policy == DATA_ACCEPT ? D_BOL : D_BOL_FAKE;
			i++;
			continue;
		}
		/* Plain bytes up to the next CR or LF go out in one copy. */
		stop = in + i;
		run = 0;
		while (i + run < inlen && stop[run] != '\r' && stop[run] != '\n')
			run++;
		if (!(s->bad && s->policy == DATA_REJECT)) {
			memcpy(out + o, stop, run);
			o += run;
		}
		i += run;
		s->state = D_MID;
	}
#undef EMIT
#undef BARE
	s->out += o;
	*outlen = o;
	return (i);
}
