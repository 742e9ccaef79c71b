/*
 * The DATA scanner (pure): finds the end of a message body across any chunking and
 * rewrites bare CR and LF per policy, so the upstream never sees an end of data or a
 * line break the proxy did not see (SMTP smuggling).
 *
 * A clean body (CRLF line ends, no "." at a line start) goes out exactly as it came
 * in, so it is not walked byte by byte: CR and LF are searched for a word at a time,
 * each CRLF found is checked where it stands, and the whole clean stretch, many lines
 * long, goes out in one copy. Only line starts with a ".", bare CR or LF, and a CR or a
 * "." at the end of a chunk go through the state machine.
 */
#include <stdint.h>
#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

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

/* 1 if one of the 8 bytes of ${w} is a CR or an LF (exact: no false positives). */
static inline int
word_has_crlf(uint64_t w)
{
	const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
	uint64_t cr = w ^ (ones * '\r'), lf = w ^ (ones * '\n');

	/* The classic zero-byte test, on both: a byte of 0 borrows into its high bit. */
	return ((((cr - ones) & ~cr) | ((lf - ones) & ~lf)) & highs) != 0;
}

/* Offset of the first CR or LF in the ${n} bytes at ${p}; ${n} if there is none. */
static inline size_t
find_crlf(const char *p, size_t n)
{
	size_t i = 0;
	uint64_t w;

#ifdef __SSE2__
	const __m128i cr = _mm_set1_epi8('\r'), lf = _mm_set1_epi8('\n');
	__m128i v;
	unsigned m;

	for (; n - i >= 16; i += 16) {
		v = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
		m = (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, cr),
		    _mm_cmpeq_epi8(v, lf)));
		if (m != 0)
			return (i + (size_t)__builtin_ctz(m));
	}
#endif
	for (; n - i >= 8; i += 8) {
		memcpy(&w, p + i, 8);
		if (word_has_crlf(w))
			break;
	}
	for (; i < n && p[i] != '\r' && p[i] != '\n'; i++)
		;
	return (i);
}

#ifdef __SSE2__
/* Which of the 16 bytes at ${p} are ${c}, one bit each. */
static inline uint64_t
mask16(__m128i v, char c)
{
	return ((uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(c))));
}

/* Which of the 64 bytes at ${p} are CR, LF and ".", one bit each. */
static inline void
block_masks(const char *p, uint64_t *crp, uint64_t *lfp, uint64_t *dotp)
{
	const __m128i *q = (const __m128i *)(const void *)p;
	__m128i a = _mm_loadu_si128(q), b = _mm_loadu_si128(q + 1),
	    c = _mm_loadu_si128(q + 2), d = _mm_loadu_si128(q + 3);

	*crp = mask16(a, '\r') | mask16(b, '\r') << 16 | mask16(c, '\r') << 32 |
	    mask16(d, '\r') << 48;
	*lfp = mask16(a, '\n') | mask16(b, '\n') << 16 | mask16(c, '\n') << 32 |
	    mask16(d, '\n') << 48;
	*dotp = mask16(a, '.') | mask16(b, '.') << 16 | mask16(c, '.') << 32 |
	    mask16(d, '.') << 48;
}

/*
 * Whole 64-byte blocks at the start of the ${n} bytes at ${in} (which starts with a
 * plain byte) that are clean: every CR followed by an LF, every LF after a CR, no "."
 * after an LF; a CR or LF in a block's last byte is checked against the next block.
 * Short lines cost no more than long ones here. Return where the byte-wise scan goes
 * on: before a CR whose LF is unchecked, else after the last clean block; *${bolp} set
 * if a CRLF precedes that point.
 */
static size_t
clean_blocks(const char *in, size_t n, int *bolp)
{
	uint64_t cr, lf, dot, crin = 0, lfin = 0, lfprev = 0;
	size_t i;

	for (i = 0; n - i >= 64; i += 64) {
		block_masks(in + i, &cr, &lf, &dot);
		if ((lf ^ (cr << 1 | crin)) | (dot & (lf << 1 | lfin)))
			break;
		crin = cr >> 63;
		lfin = lf >> 63;
		lfprev = lf;
	}
	if (crin) {
		*bolp = (int)(lfprev >> 62 & 1);
		return (i - 1);
	}
	*bolp = (int)lfin;
	return (i);
}
#endif

/*
 * The length of the clean stretch at the start of the ${n} bytes at ${in}, which
 * starts with a plain byte (no CR held): bytes that go out as they are, i.e. anything
 * but CR and LF, and CRLFs whose next line does not start with "." (a "." there, a
 * lone CR or LF, or a CR that ends the input, is left to the state machine).
 * *${bolp} is set when the stretch ends right after a CRLF, at the start of a line.
 */
static size_t
clean_run(const char *in, size_t n, int *bolp)
{
	size_t i = 0, k;

	*bolp = 0;
#ifdef __SSE2__
	i = clean_blocks(in, n, bolp);
#endif
	for (;;) {
		if (*bolp && i < n && in[i] == '.')
			return (i);
		if ((k = find_crlf(in + i, n - i)) > 0) {
			i += k;
			*bolp = 0;
		}
		if (n - i < 2 || in[i] != '\r' || in[i + 1] != '\n')
			return (i);
		i += 2;
		*bolp = 1;
	}
}

size_t
data_scan(struct data_scan *s, const char *in, size_t inlen, char *out, size_t *outlen)
{
	size_t i = 0, o = 0, run;
	int bol;
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
		/* A plain byte: it and the clean stretch it begins go out in one copy. */
		run = clean_run(in + i, inlen - i, &bol);
		emit(s, out, &o, in + i, run);
		i += run;
		s->state = bol ? D_BOL : D_MID;
	}
	s->out += o;
	*outlen = o;
	return (i);
}
