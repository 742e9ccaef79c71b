#ifndef DATA_H
#define DATA_H

#include <stddef.h>

/*
 * The DATA scanner: finds the end of a message body (only CRLF "." CRLF ends it, and
 * under DATA_ACCEPT also a "." line framed by bare LFs) and
 * rewrites the body so that the upstream can never see an end of data, or a line
 * break, that the proxy did not see (SMTP smuggling).
 */

enum data_policy {
	DATA_NORMALIZE,		/* bare LF -> CRLF, lone CR -> space, stray "." lines stuffed */
	DATA_REJECT,		/* any bare CR or LF marks the message bad */
	DATA_ACCEPT,		/* a lone LF ends a line as CRLF does, so LF "." LF ends the
				   data (known LF-only devices); lone CR as normalize */
};

struct data_scan {
	enum data_policy policy;
	int		 state;
	int		 cr;		/* a CR is held, waiting for the next byte */
	int		 bad;		/* a bare CR or LF was seen */
	int		 done;		/* the end of data was found */
	unsigned long long out;	/* bytes produced so far */
};

/* Worst-case growth: every input byte may become two output bytes. */
#define DATA_OUT_MAX(inlen)	(2 * (inlen) + 4)

/**
 * data_init(s, policy):
 * Start scanning a body that begins right after the 354 (at the start of a line).
 */
void data_init(struct data_scan *s, enum data_policy policy);

/**
 * data_scan(s, in, inlen, out, outlen):
 * Scan ${inlen} bytes of body; write what goes upstream to ${out}, which must hold
 * DATA_OUT_MAX(inlen) bytes, and its length to *${outlen}. Return the number of input
 * bytes used: fewer than ${inlen} only when the end of data was found (s->done), in
 * which case the output ends with the terminating CRLF "." CRLF and the rest of the
 * input is the next command. The output never has a bare CR or LF. Under
 * DATA_REJECT nothing is written once s->bad is set.
 */
size_t data_scan(struct data_scan *s, const char *in, size_t inlen, char *out,
    size_t *outlen);

#endif
