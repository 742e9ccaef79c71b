/*
 * data: the DATA scanner, the SMTP smuggling defence.
 *
 * Every case is fed whole, split in two at every point, and byte by byte; the
 * output and the bytes consumed must not depend on how the input was cut.
 */
#include "unit.h"

#include "data.h"
#include "../lib/data_ref.h"

#define TERM		"\r\n.\r\n"
#define TERMLEN		5

struct run {
	char	*out;
	size_t	 outlen;
	size_t	 used;
	int	 done;
	int	 bad;
};

/*
 * Scan ${in} in chunks ending at the ${ncuts} offsets in ${cuts} (then at ${n}), the
 * way a session does: stop once the end of data is found. Each chunk is an exact-size
 * heap copy with an exact DATA_OUT_MAX() output, so ASan sees any overrun.
 */
static void
scan_chunks(const char *in, size_t n, enum data_policy pol, const size_t *cuts,
    size_t ncuts, struct run *r)
{
	struct data_scan s;
	size_t a = 0, b, k, cap, used, olen;
	char *chunk, *out;
	int wasbad;

	cap = 2 * n + 4 * (ncuts + 1) + 16;
	r->out = malloc(cap);
	assert_non_null(r->out);
	r->outlen = r->used = 0;
	data_init(&s, pol);
	for (k = 0; k <= ncuts; k++) {
		b = k < ncuts ? cuts[k] : n;
		assert_true(b >= a && b <= n);
		chunk = malloc(b - a ? b - a : 1);
		out = malloc(DATA_OUT_MAX(b - a));
		assert_non_null(chunk);
		assert_non_null(out);
		memcpy(chunk, in + a, b - a);
		wasbad = s.bad;
		olen = (size_t)-1;
		used = data_scan(&s, chunk, b - a, out, &olen);
		assert_true(used <= b - a);
		assert_true(olen <= DATA_OUT_MAX(b - a));
		if (used < b - a)
			assert_true(s.done);	/* only the end of data stops it early */
		if (pol == DATA_REJECT && wasbad)
			assert_int_equal(olen, 0);
		assert_true(r->outlen + olen <= cap);
		memcpy(r->out + r->outlen, out, olen);
		r->outlen += olen;
		r->used += used;
		assert_true(s.out == r->outlen);
		free(chunk);
		free(out);
		a = b;
		if (s.done)
			break;
	}
	r->done = s.done;
	r->bad = s.bad;
}

static void
run_free(struct run *r)
{
	free(r->out);
	r->out = NULL;
}

/* The properties every output has, however the input was cut. */
static void
assert_output_safe(const char *ctx, const struct run *r, enum data_policy pol)
{
	char *framed;
	size_t fl = r->outlen + 2, nterm;

	/* The body starts right after the CRLF of DATA: frame it the way the upstream sees it. */
	framed = malloc(fl);
	assert_non_null(framed);
	memcpy(framed, "\r\n", 2);
	memcpy(framed + 2, r->out, r->outlen);
	if (has_bare_crlf(r->out, r->outlen))
		fail_msg("%s: bare CR or LF in the output", ctx);
	nterm = count_mem(framed, fl, TERM, TERMLEN);
	if (r->done && (pol != DATA_REJECT || !r->bad)) {
		if (nterm != 1 || memcmp(framed + fl - TERMLEN, TERM, TERMLEN) != 0)
			fail_msg("%s: %zu ends of data in the output, want one at its end", ctx,
			    nterm);
	} else if (nterm != 0) {
		/* Not done, or a rejected message: the upstream must not see an end at all. */
		fail_msg("%s: %zu ends of data in the output, want none", ctx, nterm);
	}
	free(framed);
}

/* Where the client's real CRLF "." CRLF ends, as bytes of ${in}; 0 if there is none. */
static size_t
real_end(const char *in, size_t n)
{
	size_t i;

	if (n >= 3 && memcmp(in, ".\r\n", 3) == 0)
		return (3);
	for (i = 0; i + TERMLEN <= n; i++)
		if (memcmp(in + i, TERM, TERMLEN) == 0)
			return (i + TERMLEN);
	return (0);
}

/*
 * A reference model of DATA_NORMALIZE for a body ${in}[0..n) with no end of data in
 * it: split into real (CRLF) lines, then at bare LFs; a lone CR becomes a space; a "."
 * that an upstream would see at a line start the client did not make is stuffed.
 */
static size_t
model_normalize(const char *in, size_t n, char *out)
{
	size_t i = 0, o = 0, ls, le, ss, se;

	while (i < n || i == 0) {
		int seg = 0;

		ls = i;
		for (le = ls; le < n && !(in[le] == '\r' && le + 1 < n && in[le + 1] == '\n'); le++)
			;
		/* The real line [ls, le): its segments are separated by bare LFs. */
		for (ss = ls; ; seg++) {
			for (se = ss; se < le && in[se] != '\n'; se++)
				;
			if (seg > 0) {
				out[o++] = '\r';
				out[o++] = '\n';
			}
			if ((seg > 0 && se > ss && in[ss] == '.') ||
			    (seg == 0 && se - ss == 1 && in[ss] == '.' && se < le))
				out[o++] = '.';
			for (; ss < se; ss++)
				out[o++] = in[ss] == '\r' ? ' ' : in[ss];
			if (se >= le)
				break;
			ss = se + 1;
		}
		if (le >= n)
			break;
		out[o++] = '\r';
		out[o++] = '\n';
		i = le + 2;
		if (i >= n) {
			/* A body that ends with CRLF has one more, empty, line. */
			break;
		}
	}
	return (o);
}

/* The output DATA_NORMALIZE must give for ${in}, which holds a real end of data. */
static size_t
model_full(const char *in, size_t n, char *out, size_t *usedp)
{
	size_t end = real_end(in, n), o;

	assert_true(end > 0);
	*usedp = end;
	if (end == 3) {
		memcpy(out, ".\r\n", 3);
		return (3);
	}
	o = model_normalize(in, end - TERMLEN, out);
	memcpy(out + o, TERM, TERMLEN);
	return (o + TERMLEN);
}

/* 1 if ${in}[0..n) holds a CR not before LF or an LF not after CR. */
static size_t
first_bare(const char *in, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (in[i] == '\r' && (i + 1 == n || in[i + 1] != '\n'))
			return (i);
		if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r'))
			return (i);
	}
	return (n);
}

/*
 * Feed ${in} whole, at every two-way split and byte by byte; check that the results
 * agree and have the safety properties. Returns the whole-input run in ${whole}.
 */
static void
check_splits(const char *ctx, const char *in, size_t n, enum data_policy pol,
    struct run *whole)
{
	struct run r;
	size_t k, *cuts;

	scan_chunks(in, n, pol, NULL, 0, whole);
	assert_output_safe(ctx, whole, pol);
	for (k = 0; k <= n; k++) {
		scan_chunks(in, n, pol, &k, 1, &r);
		assert_output_safe(ctx, &r, pol);
		if (r.used != whole->used || r.outlen != whole->outlen ||
		    memcmp(r.out, whole->out, r.outlen) != 0 || r.done != whole->done ||
		    r.bad != whole->bad)
			fail_msg("%s: split at %zu differs from whole input "
			    "(used %zu/%zu, out %zu/%zu)", ctx, k, r.used, whole->used,
			    r.outlen, whole->outlen);
		run_free(&r);
	}
	cuts = malloc((n ? n : 1) * sizeof(*cuts));
	assert_non_null(cuts);
	for (k = 0; k + 1 < n; k++)
		cuts[k] = k + 1;
	scan_chunks(in, n, pol, cuts, n ? n - 1 : 0, &r);
	assert_output_safe(ctx, &r, pol);
	if (r.used != whole->used || r.outlen != whole->outlen ||
	    memcmp(r.out, whole->out, r.outlen) != 0 || r.done != whole->done ||
	    r.bad != whole->bad)
		fail_msg("%s: byte by byte differs from whole input", ctx);
	run_free(&r);
	free(cuts);
}

struct dcase {
	const char	*name;
	const char	*in;
	size_t		 inlen;
	const char	*out;
	size_t		 outlen;
	const char	*rest;		/* what must be left unconsumed: the next command */
	int		 done;
	int		 bad;
};

#define C(name, in, out, rest, done, bad) \
	{ name, in, sizeof(in) - 1, out, sizeof(out) - 1, rest, done, bad }

/* The same fake second transaction follows each smuggling payload. */
#define FAKE	"MAIL FROM:<evil@x>\r\nRCPT TO:<victim@y>\r\nDATA\r\nforged\r\n"

static const struct dcase normalize_cases[] = {
	C("plain body", "hello\r\nworld\r\n.\r\n", "hello\r\nworld\r\n.\r\n", "", 1, 0),
	C("empty message", ".\r\n", ".\r\n", "", 1, 0),
	C("empty message, next command after", ".\r\nQUIT\r\n", ".\r\n", "QUIT\r\n", 1, 0),
	C("one empty line", "\r\n.\r\n", "\r\n.\r\n", "", 1, 0),
	C("next command left unconsumed", "a\r\n.\r\nQUIT\r\n", "a\r\n.\r\n", "QUIT\r\n", 1, 0),
	C("pipelined junk after the end", "a\r\n.\r\n\n.\n\r", "a\r\n.\r\n", "\n.\n\r", 1, 0),
	C("client dot-stuffing passes", "..foo\r\n..\r\n...\r\n.\r\n",
	    "..foo\r\n..\r\n...\r\n.\r\n", "", 1, 0),
	C("dots inside lines", "a.b\r\n.x.\r\n.\r\n", "a.b\r\n.x.\r\n.\r\n", "", 1, 0),
	C("bare LF becomes CRLF", "a\nb\r\n.\r\n", "a\r\nb\r\n.\r\n", "", 1, 1),
	C("lone CR becomes a space", "a\rb\r\n.\r\n", "a b\r\n.\r\n", "", 1, 1),
	C("CR before CRLF", "a\r\r\n.\r\n", "a \r\n.\r\n", "", 1, 1),
	C("bare LF before CRLF", "a\n\r\n.\r\n", "a\r\n\r\n.\r\n", "", 1, 1),
	C("LF at the start", "\nx\r\n.\r\n", "\r\nx\r\n.\r\n", "", 1, 1),
	C("LF . LF at the start", "\n.\nx\r\n.\r\n", "\r\n..\r\nx\r\n.\r\n", "", 1, 1),
	C("LF . LF is stuffed", "a\n.\nb\r\n.\r\n", "a\r\n..\r\nb\r\n.\r\n", "", 1, 1),
	C("CRLF . LF is stuffed", "a\r\n.\nb\r\n.\r\n", "a\r\n..\r\nb\r\n.\r\n", "", 1, 1),
	C("LF . CRLF is stuffed", "a\n.\r\nb\r\n.\r\n", "a\r\n..\r\nb\r\n.\r\n", "", 1, 1),
	C("dot then lone CR", "a\r\n.\rx\r\n.\r\n", "a\r\n. x\r\n.\r\n", "", 1, 1),
	C("dot then CR CR LF", "a\r\n.\r\r\n.\r\n", "a\r\n. \r\n.\r\n", "", 1, 1),
	C("CR . CR", "a\r.\rb\r\n.\r\n", "a . b\r\n.\r\n", "", 1, 1),
	C("CR . CR at the start", "\r.\r\n.\r\n", " .\r\n.\r\n", "", 1, 1),
	C("CRLF . LF . CRLF", "x\r\n.\n.\r\n.\r\n", "x\r\n..\r\n..\r\n.\r\n", "", 1, 1),
	C("LF .. LF", "a\n..\nb\r\n.\r\n", "a\r\n...\r\nb\r\n.\r\n", "", 1, 1),
	C("LF LF . LF", "a\n\n.\n\r\n.\r\n", "a\r\n\r\n..\r\n\r\n.\r\n", "", 1, 1),
	C("smuggle LF . LF", "x\n.\n" FAKE "\r\n.\r\n", "x\r\n..\r\n" FAKE "\r\n.\r\n", "", 1, 1),
	C("smuggle CRLF . CR", "x\r\n.\r" FAKE "\r\n.\r\n", "x\r\n. " FAKE "\r\n.\r\n", "", 1, 1),
	C("smuggle CRLF . LF", "x\r\n.\n" FAKE "\r\n.\r\n",
	    "x\r\n..\r\n" FAKE "\r\n.\r\n", "", 1, 1),
	C("smuggle LF . CRLF", "x\n.\r\n" FAKE "\r\n.\r\n",
	    "x\r\n..\r\n" FAKE "\r\n.\r\n", "", 1, 1),
	C("smuggle CR . CR", "x\r.\r" FAKE "\r\n.\r\n", "x . " FAKE "\r\n.\r\n", "", 1, 1),
	C("smuggle CR LF . CR CR LF", "x\r\n.\r\r\n" FAKE "\r\n.\r\n",
	    "x\r\n. \r\n" FAKE "\r\n.\r\n", "", 1, 1),
	C("smuggle at the very start", "\n.\r\n" FAKE ".\r\n", "\r\n..\r\n" FAKE ".\r\n", "", 1, 1),
	C("no end yet", "abc", "abc", "", 0, 0),
	C("no end yet, dot held", "abc\r\n.", "abc\r\n", "", 0, 0),
	C("no end yet, CR held", "abc\r", "abc", "", 0, 0),
	C("no end yet, dot and CR held", "abc\r\n.\r", "abc\r\n", "", 0, 0),
	C("no end yet, after LF . LF", "a\n.\n", "a\r\n..\r\n", "", 0, 1),
	C("empty input", "", "", "", 0, 0),
};

static const struct dcase reject_cases[] = {
	C("clean body", "hello\r\n..x\r\n.\r\nQUIT\r\n", "hello\r\n..x\r\n.\r\n", "QUIT\r\n", 1, 0),
	C("empty message", ".\r\nQUIT\r\n", ".\r\n", "QUIT\r\n", 1, 0),
	C("bare LF", "a\nb\r\n.\r\nQUIT\r\n", "a", "QUIT\r\n", 1, 1),
	C("lone CR", "a\rb\r\n.\r\n", "a", "", 1, 1),
	C("CR before CRLF", "ab\r\r\n.\r\n", "ab", "", 1, 1),
	C("bare LF at the start", "\nabc\r\n.\r\n", "", "", 1, 1),
	C("smuggle LF . LF", "x\n.\n" FAKE "\r\n.\r\n", "x", "", 1, 1),
	C("smuggle CRLF . CR", "x\r\n.\r" FAKE "\r\n.\r\n", "x\r\n", "", 1, 1),
	C("smuggle CRLF . LF", "x\r\n.\n" FAKE "\r\n.\r\n", "x\r\n", "", 1, 1),
	C("smuggle LF . CRLF", "x\n.\r\n" FAKE "\r\n.\r\nQUIT\r\n", "x", "QUIT\r\n", 1, 1),
	C("bad, no end yet", "ok\r\nx\ny", "ok\r\nx", "", 0, 1),
};

/* Devices known to end every line with a bare LF: LF is a line end, LF "." LF the end. */
static const struct dcase accept_cases[] = {
	C("LF-only body", "Subject: x\n\nhello\n.\n", "Subject: x\r\n\r\nhello\r\n.\r\n", "", 1, 0),
	C("LF-only, next command left", "a\n.\nQUIT\n", "a\r\n.\r\n", "QUIT\n", 1, 0),
	C("empty message, LF", ".\nQUIT\n", ".\r\n", "QUIT\n", 1, 0),
	C("CRLF body still works", "a\r\nb\r\n.\r\n", "a\r\nb\r\n.\r\n", "", 1, 0),
	C("mixed endings", "a\r\nb\nc\r\n.\n", "a\r\nb\r\nc\r\n.\r\n", "", 1, 0),
	C("LF . CRLF ends", "a\n.\r\nNOOP\r\n", "a\r\n.\r\n", "NOOP\r\n", 1, 0),
	C("CRLF . LF ends", "a\r\n.\nNOOP\r\n", "a\r\n.\r\n", "NOOP\r\n", 1, 0),
	C("client dot-stuffing passes", "..x\n..\n.\n", "..x\r\n..\r\n.\r\n", "", 1, 0),
	C("lone CR becomes a space", "a\rb\n.\n", "a b\r\n.\r\n", "", 1, 1),
	C("dot then lone CR is content", "a\n.\rx\n.\n", "a\r\n. x\r\n.\r\n", "", 1, 1),
	C("no end yet, dot held", "a\n.", "a\r\n", "", 0, 0),
	C("no end yet, LF lines", "a\nb\n", "a\r\nb\r\n", "", 0, 0),
};

#undef C

static void
check_case(const struct dcase *c, enum data_policy pol)
{
	char ctx[128];
	struct run whole;

	snprintf(ctx, sizeof(ctx), "%s \"%s\"", pol == DATA_REJECT ? "reject" :
	    pol == DATA_ACCEPT ? "accept" : "normalize", c->name);
	check_splits(ctx, c->in, c->inlen, pol, &whole);
	if (whole.used != c->inlen - strlen(c->rest) ||
	    memcmp(c->in + whole.used, c->rest, strlen(c->rest)) != 0)
		fail_msg("%s: used %zu, want %zu", ctx, whole.used, c->inlen - strlen(c->rest));
	if (whole.done != c->done)
		fail_msg("%s: done %d, want %d", ctx, whole.done, c->done);
	if (whole.bad != c->bad)
		fail_msg("%s: bad %d, want %d", ctx, whole.bad, c->bad);
	if (whole.outlen != c->outlen || memcmp(whole.out, c->out, c->outlen) != 0)
		fail_msg("%s: output differs (%zu bytes, want %zu)", ctx, whole.outlen,
		    c->outlen);
	if (c->done && pol != DATA_ACCEPT) {
		/* Consumed = right after the client's first real CRLF "." CRLF. */
		assert_int_equal(whole.used, real_end(c->in, c->inlen));
	}
	run_free(&whole);
}

static void
test_data_normalize_table_same_for_every_split(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(normalize_cases); i++)
		check_case(&normalize_cases[i], DATA_NORMALIZE);
}

static void
test_data_reject_table_same_for_every_split(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(reject_cases); i++)
		check_case(&reject_cases[i], DATA_REJECT);
}

static void
test_data_accept_table_same_for_every_split(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(accept_cases); i++)
		check_case(&accept_cases[i], DATA_ACCEPT);
}

static uint32_t
rnd(uint32_t *st)
{
	uint32_t x = *st;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	*st = x;
	return (x);
}

/* Up to 39 random bytes of 'a', '.', CR and LF, then a real end and a command; length. */
static size_t
random_body(uint32_t *seed, char in[64])
{
	static const char alpha[] = { 'a', '.', '\r', '\n' };
	size_t n = rnd(seed) % 40, i;

	for (i = 0; i < n; i++)
		in[i] = alpha[rnd(seed) % 4];
	memcpy(in + n, "\r\n.\r\nNOOP\r\n", 11);
	return (n + 11);
}

/*
 * A reference model of DATA_ACCEPT: lines end at LF (one CR before it dropped); the
 * first line that is "." ends the data; a lone CR inside a line becomes a space; every
 * line goes out with CRLF. Returns the output length; *${usedp} is 0 if no end.
 */
static size_t
model_accept(const char *in, size_t n, char *out, size_t *usedp)
{
	size_t i = 0, o = 0, le, end, k;

	*usedp = 0;
	while (i < n) {
		for (le = i; le < n && in[le] != '\n'; le++)
			;
		if (le == n)
			break;
		end = le > i && in[le - 1] == '\r' ? le - 1 : le;
		for (k = i; k < end; k++)
			out[o++] = in[k] == '\r' ? ' ' : in[k];
		out[o++] = '\r';
		out[o++] = '\n';
		if (end - i == 1 && in[i] == '.') {
			*usedp = le + 1;
			break;
		}
		i = le + 1;
	}
	return (o);
}

static void
test_data_accept_random_bodies_match_model(void **state)
{
	uint32_t seed = 0xacce9701;
	char in[64], want[256], ctx[64];
	size_t iter, n, used, wl;
	struct run whole;

	(void)state;
	for (iter = 0; iter < 2000; iter++) {
		n = random_body(&seed, in);
		snprintf(ctx, sizeof(ctx), "random body %zu accept", iter);
		check_splits(ctx, in, n, DATA_ACCEPT, &whole);
		assert_true(whole.done);
		wl = model_accept(in, n, want, &used);
		assert_true(used > 0);
		if (whole.used != used)
			fail_msg("%s: used %zu, model %zu", ctx, whole.used, used);
		if (wl != whole.outlen || memcmp(want, whole.out, wl) != 0)
			fail_msg("%s: output differs from the model", ctx);
		run_free(&whole);
	}
}

/* The reference model agrees with every hand-written NORMALIZE expectation. */
static void
test_data_model_matches_table(void **state)
{
	const struct dcase *c;
	char out[512];
	size_t i, used, o;

	(void)state;
	for (i = 0; i < NELEM(normalize_cases); i++) {
		c = &normalize_cases[i];
		if (!c->done)
			continue;
		o = model_full(c->in, c->inlen, out, &used);
		assert_int_equal(used, c->inlen - strlen(c->rest));
		if (o != c->outlen || memcmp(out, c->out, o) != 0)
			fail_msg("model disagrees on \"%s\"", c->name);
	}
}

static void
test_data_smuggling_payloads_end_data_once(void **state)
{
	static const char *payloads[] = { "\n.\n", "\r\n.\r", "\r\n.\n", "\n.\r\n",
	    "\r.\r", "\n.\r", "\r.\n" };
	enum data_policy pols[] = { DATA_NORMALIZE, DATA_REJECT };
	char in[512], ctx[64];
	size_t i, p, n;
	struct run whole;

	(void)state;
	for (p = 0; p < NELEM(pols); p++) {
		for (i = 0; i < NELEM(payloads); i++) {
			n = (size_t)snprintf(in, sizeof(in), "Subject: hi\r\n\r\nbody%s%s"
			    "\r\n.\r\nQUIT\r\n", payloads[i], FAKE);
			snprintf(ctx, sizeof(ctx), "payload %zu policy %zu", i, p);
			check_splits(ctx, in, n, pols[p], &whole);
			assert_true(whole.done);
			assert_true(whole.bad);
			/* Exactly one end of data: the real one, before QUIT. */
			assert_int_equal(whole.used, n - strlen("QUIT\r\n"));
			if (pols[p] == DATA_NORMALIZE) {
				assert_int_equal(count_mem(whole.out, whole.outlen, TERM, TERMLEN),
				    1);
				assert_memory_equal(whole.out + whole.outlen - TERMLEN, TERM,
				    TERMLEN);
				/* The fake transaction is sent as body text. */
				assert_non_null(memmem(whole.out, whole.outlen, FAKE,
				    strlen(FAKE)));
			} else {
				/* Nothing of it is written once the message is bad. */
				assert_null(memmem(whole.out, whole.outlen, "MAIL", 4));
				assert_int_equal(count_mem(whole.out, whole.outlen, TERM, TERMLEN),
				    0);
			}
			run_free(&whole);
		}
	}
}

static void
test_data_reject_writes_nothing_after_bad(void **state)
{
	struct data_scan s;
	char out[DATA_OUT_MAX(64)];
	size_t olen, used;

	(void)state;
	data_init(&s, DATA_REJECT);
	used = data_scan(&s, LIT("good\r\nbad\nmore"), out, &olen);
	assert_int_equal(used, 14);
	assert_true(s.bad);
	assert_false(s.done);
	assert_int_equal(olen, 9);
	assert_memory_equal(out, "good\r\nbad", 9);
	used = data_scan(&s, LIT("text\r\nand more\r\n"), out, &olen);
	assert_int_equal(used, 16);
	assert_int_equal(olen, 0);
	used = data_scan(&s, LIT(".\r\nRSET\r\n"), out, &olen);
	assert_int_equal(used, 3);
	assert_true(s.done);
	assert_int_equal(olen, 0);
}

static void
test_data_normalize_counts_output_bytes(void **state)
{
	struct data_scan s;
	char out[DATA_OUT_MAX(32)];
	size_t olen, total = 0;

	(void)state;
	data_init(&s, DATA_NORMALIZE);
	(void)data_scan(&s, LIT("ab\ncd\r"), out, &olen);
	total += olen;
	(void)data_scan(&s, LIT("x\r\n.\r\n"), out, &olen);
	total += olen;
	assert_true(s.done);
	assert_int_equal(s.out, total);
	assert_int_equal(total, strlen("ab\r\ncd x\r\n.\r\n"));
}

/* xorshift32: the same bodies on every run and every libc. */

static void
test_data_random_bodies_safe_and_split_invariant(void **state)
{
	uint32_t seed = 0x5eed1234;
	char in[64], want[256], ctx[64];
	size_t iter, n, used, wl, bare;
	struct run whole;
	int p;

	(void)state;
	for (iter = 0; iter < 2000; iter++) {
		n = random_body(&seed, in);
		for (p = 0; p < 2; p++) {
			enum data_policy pol = p ? DATA_REJECT : DATA_NORMALIZE;

			snprintf(ctx, sizeof(ctx), "random body %zu %s", iter,
			    p ? "reject" : "normalize");
			check_splits(ctx, in, n, pol, &whole);
			assert_true(whole.done);
			used = real_end(in, n);
			assert_int_equal(whole.used, used);
			bare = first_bare(in, used);
			assert_int_equal(whole.bad, bare < used);
			if (pol == DATA_NORMALIZE) {
				wl = model_full(in, n, want, &used);
				if (wl != whole.outlen || memcmp(want, whole.out, wl) != 0)
					fail_msg("%s: output differs from the model", ctx);
			} else if (!whole.bad) {
				/* A clean body goes through untouched. */
				assert_int_equal(whole.outlen, used);
				assert_memory_equal(whole.out, in, used);
			} else {
				/* What preceded the first bare byte, less a held "." line start. */
				wl = bare;
				if (wl >= 1 && in[wl - 1] == '.' &&
				    (wl == 1 ||
				    (wl >= 3 && in[wl - 3] == '\r' && in[wl - 2] == '\n')))
					wl--;
				if (wl != whole.outlen || memcmp(in, whole.out, wl) != 0)
					fail_msg("%s: output is not the clean prefix", ctx);
			}
			run_free(&whole);
		}
	}
}

/*
 * A body made to part the fast scanner from the byte machine, if anything can: clean
 * stretches long enough for word-at-a-time scanning, cut by dots at line starts, lone
 * CR, lone LF, CRLF "." CRLF, LF "." LF, NULs and 8-bit bytes anywhere. Its length.
 */
static size_t
diff_body(uint32_t *seed, char *in, size_t cap)
{
	static const char *tok[] = { "\r\n", "\r\n", "\r\n", "\r", "\n", ".", "\r\n.",
	    "\r\n..", "\r\n\r\n", "\n.", ".\r", ".\n", "\r\r\n", "\n\r", "\r\n.\r\n",
	    "\n.\n", "\n.\r\n", "\r\n.\n" };
	size_t n = 0, want = rnd(seed) % cap, len, k, t;
	uint32_t r;

	while (n + 80 < want) {
		if (rnd(seed) % 2 == 0) {
			len = rnd(seed) % 72;
			for (k = 0; k < len; k++) {
				r = rnd(seed);
				in[n++] = r % 16 == 0 ? (char)(r >> 8) : (char)('a' + (r >> 8) % 26);
			}
			continue;
		}
		/* The ends of data are rare: most bodies should run long before one. */
		t = rnd(seed) % NELEM(tok);
		if (t >= 14 && rnd(seed) % 8 != 0)
			t = 0;
		memcpy(in + n, tok[t], strlen(tok[t]));
		n += strlen(tok[t]);
	}
	return (n);
}

struct chunker {
	uint32_t	seed;
	size_t		max;	/* 0: all at once */
};

static size_t
next_chunk(void *arg)
{
	struct chunker *c = arg;

	if (c->max == 0)
		return ((size_t)-1);
	return (c->max == 1 ? 1 : rnd(&c->seed) % (c->max + 1));
}

/* Under every policy and many splits, the fast scanner and the old byte machine agree. */
static void
test_data_matches_reference_random_bodies_random_splits(void **state)
{
	static const enum data_policy pols[] = { DATA_NORMALIZE, DATA_REJECT, DATA_ACCEPT };
	static const size_t maxes[] = { 0, 1, 7, 40, 300 };
	uint32_t seed = 0xd1ff5eed;
	struct chunker ck;
	char in[2048], why[256];
	size_t iter, n, p, m;

	(void)state;
	for (iter = 0; iter < 3000; iter++) {
		n = diff_body(&seed, in, sizeof(in));
		for (p = 0; p < NELEM(pols); p++) {
			for (m = 0; m < NELEM(maxes); m++) {
				/* Byte by byte is slow: every eighth body. */
				if (maxes[m] == 1 && iter % 8 != 0)
					continue;
				ck.seed = seed ^ (uint32_t)(m * 7919 + p);
				ck.max = maxes[m];
				if (ref_lockstep(pols[p], in, n, next_chunk, &ck, why, sizeof(why)))
					fail_msg("body %zu (%zu bytes), policy %d, chunks up to %zu: %s",
					    iter, n, (int)pols[p], maxes[m], why);
			}
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_data_normalize_table_same_for_every_split),
		cmocka_unit_test(test_data_reject_table_same_for_every_split),
		cmocka_unit_test(test_data_accept_table_same_for_every_split),
		cmocka_unit_test(test_data_accept_random_bodies_match_model),
		cmocka_unit_test(test_data_model_matches_table),
		cmocka_unit_test(test_data_smuggling_payloads_end_data_once),
		cmocka_unit_test(test_data_reject_writes_nothing_after_bad),
		cmocka_unit_test(test_data_normalize_counts_output_bytes),
		cmocka_unit_test(test_data_random_bodies_safe_and_split_invariant),
		cmocka_unit_test(test_data_matches_reference_random_bodies_random_splits),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
