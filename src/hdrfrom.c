/*
 * rewrite_header_from: the header block held, its From rewritten (see hdrfrom.h).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "hdrfrom.h"

#define HOLD_MIN	4096

/* What a line of the header block is. */
enum {
	LN_MORE,	/* not known before more of it arrives */
	LN_FIELD,	/* "name:" starts a field */
	LN_CONT,	/* a space or tab: the field before it goes on */
	LN_END,		/* the empty line */
	LN_BODY,	/* anything else: the body has begun */
};

/*
 * The kind of the wire line at ${p} (${n} bytes, its LF included when ${whole}), read
 * as the upstream reads it (one stuffing dot removed). With ${name} set, the field
 * name's start and length are stored there. With ${resume} set, a line still LN_MORE
 * records how far it was read, and the next call on it (grown) goes on from there: a
 * long line arriving a byte at a time costs its length, not its square.
 */
static int
line_kind(const char *p, size_t n, int whole, int fields, size_t *resume, const char **name,
    size_t *namelen)
{
	size_t i, nl, dot = 0;

	if (n > 0 && p[0] == '.') {
		p++;
		n--;
		dot = 1;
	}
	if (n == 0)
		return (whole ? LN_BODY : LN_MORE);
	if (p[0] == '\n' || (p[0] == '\r' && n >= 2 && p[1] == '\n'))
		return (LN_END);
	if (p[0] == '\r')
		return (n >= 2 ? LN_BODY : whole ? LN_BODY : LN_MORE);
	if (p[0] == ' ' || p[0] == '\t')
		return (fields ? LN_CONT : LN_BODY);
	/* RFC 5322 ftext: printable US-ASCII but ':'; obsolete syntax allows blanks before
	 * the colon, and the receiving MTAs read "From :" as From. */
	i = resume != NULL && *resume > dot ? *resume - dot : 0;
	if (i == 0 || (p[i - 1] != ' ' && p[i - 1] != '\t'))
		while (i < n && p[i] > 32 && p[i] < 127 && p[i] != ':')
			i++;
	if (i == 0)
		return (LN_BODY);
	nl = i;		/* the name's length, when read from the start */
	while (i < n && (p[i] == ' ' || p[i] == '\t'))
		i++;
	if (i == n) {
		if (resume != NULL)
			*resume = i + dot;
		return (whole ? LN_BODY : LN_MORE);
	}
	if (p[i] != ':')
		return (LN_BODY);
	if (name != NULL) {
		*name = p;
		*namelen = nl;
	}
	return (LN_FIELD);
}

void
hdrfrom_init(struct hdrfrom *h, const char *sender)
{
	memset(h, 0, sizeof(*h));
	h->sender = sender;
}

void
hdrfrom_free(struct hdrfrom *h)
{
	free(h->buf);
	h->buf = NULL;
	h->len = h->cap = 0;
}

/* Hold ${n} more bytes; -1 past HDRFROM_MAX or without memory. */
static int
hold(struct hdrfrom *h, const char *p, size_t n)
{
	size_t cap;
	char *nb;

	if (n > HDRFROM_MAX - h->len) {
		h->toobig = 1;
		return (-1);
	}
	if (h->len + n > h->cap) {
		for (cap = h->cap ? h->cap : HOLD_MIN; cap < h->len + n; cap *= 2)
			;
		if (cap > HDRFROM_MAX)
			cap = HDRFROM_MAX;
		if ((nb = realloc(h->buf, cap)) == NULL)
			return (-1);
		h->buf = nb;
		h->cap = cap;
	}
	memcpy(h->buf + h->len, p, n);
	h->len += n;
	return (0);
}

/* The line being read decides (${kind}): the block ends before it, or it is one more. */
static void
took_line(struct hdrfrom *h, int kind)
{
	if (kind == LN_END || kind == LN_BODY) {
		h->done = 1;
		h->hdrlen = h->linestart;
		h->body_line = kind == LN_BODY;
	} else if (kind == LN_FIELD)
		h->fields = 1;
}

int
hdrfrom_feed(struct hdrfrom *h, const char *in, size_t len, size_t *usedp)
{
	const char *lf;
	size_t used = 0, n;
	int kind, whole;

	while (used < len && !h->done) {
		lf = memchr(in + used, '\n', len - used);
		n = lf != NULL ? (size_t)(lf - in) + 1 - used : len - used;
		whole = lf != NULL;
		/* Past the limit only what may still show a body line is held, so where the
		 * input was cut never decides between a body and a refusal. */
		if (n > HDRFROM_MAX - h->len) {
			n = HDRFROM_MAX - h->len;
			whole = 0;
		}
		if (n == 0) {
			h->toobig = 1;
			break;
		}
		if (hold(h, in + used, n) != 0)
			break;
		used += n;
		kind = line_kind(h->buf + h->linestart, h->len - h->linestart, whole,
		    h->fields, &h->resume, NULL, NULL);
		/* A body line is known by its first bytes: the rest of it is not held. */
		if (!whole && kind != LN_BODY)
			continue;
		took_line(h, kind);
		if (!h->done)
			h->linestart = h->len;
		h->resume = 0;
	}
	*usedp = used;
	return (used < len && !h->done ? -1 : 0);
}

static int
name_is(const char *name, size_t n, const char *want)
{
	return (n == strlen(want) && strncasecmp(name, want, n) == 0);
}

/* End of the line at ${p}: past its LF, or ${end}. */
static size_t
line_end(const char *b, size_t p, size_t end)
{
	const char *lf = memchr(b + p, '\n', end - p);

	return (lf != NULL ? (size_t)(lf - b) + 1 : end);
}

/* End of the field whose first line starts at ${p}: past its last continuation line. */
static size_t
field_end(const struct hdrfrom *h, size_t p)
{
	size_t e = line_end(h->buf, p, h->hdrlen);

	/* Judged as the upstream reads it: a device's unstuffed ". x" is " x", a
	 * continuation, and goes wherever its field goes. */
	while (e < h->hdrlen && line_kind(h->buf + e, line_end(h->buf, e, h->hdrlen) - e, 1, 1,
	    NULL, NULL, NULL) == LN_CONT)
		e = line_end(h->buf, e, h->hdrlen);
	return (e);
}

/* Is the From value [p, p+n) worth a Reply-To: not blank, not the sender itself? */
static int
worth_reply_to(const char *p, size_t n, const char *sender)
{
	size_t sl = strlen(sender);

	while (n > 0 && strchr(" \t\r\n", p[0]) != NULL)
		p++, n--;
	while (n > 0 && strchr(" \t\r\n", p[n - 1]) != NULL)
		n--;
	if (n == 0)
		return (0);
	if (n == sl + 2 && p[0] == '<' && p[n - 1] == '>')
		p++, n -= 2;
	return (!(n == sl && strncasecmp(p, sender, sl) == 0));
}

static void
put(char *out, size_t *o, const char *p, size_t n)
{
	memcpy(out + *o, p, n);
	*o += n;
}

char *
hdrfrom_block(struct hdrfrom *h, size_t *lenp)
{
	const char *name, *colon;
	size_t p, e, nl, o = 0, sl = strlen(h->sender), vs = 0, ve = 0;
	int kind, from_seen = 0, reply_to = 0;
	char *out;

	if (!h->done) {
		/* The end of the data: a line left without its LF is judged as it is. */
		kind = h->linestart < h->len ? line_kind(h->buf + h->linestart,
		    h->len - h->linestart, 1, h->fields, NULL, NULL, NULL) : LN_FIELD;
		if (kind == LN_BODY || kind == LN_END)
			took_line(h, kind);
		else
			h->hdrlen = h->len;
		h->done = 1;
	}
	/* Pass one: is there a Reply-To, and where is the first From's value? */
	for (p = 0; p < h->hdrlen; p = e) {
		e = field_end(h, p);
		if (line_kind(h->buf + p, e - p, 1, 1, NULL, &name, &nl) != LN_FIELD)
			continue;
		if (name_is(name, nl, "Reply-To"))
			reply_to = 1;
		else if (name_is(name, nl, "From") && !from_seen) {
			from_seen = 1;
			colon = memchr(name + nl, ':', (size_t)(h->buf + e - (name + nl)));
			vs = (size_t)(colon + 1 - h->buf);
			ve = e;
		}
	}
	if ((out = malloc(2 * h->len + 2 * sl + 64)) == NULL)
		return (NULL);
	if (!from_seen) {
		put(out, &o, "From: ", 6);
		put(out, &o, h->sender, sl);
		put(out, &o, "\r\n", 2);
	}
	/* Pass two: the block with its From fields rewritten. */
	for (p = 0, from_seen = 0; p < h->hdrlen; p = e) {
		e = field_end(h, p);
		if (line_kind(h->buf + p, e - p, 1, 1, NULL, &name, &nl) != LN_FIELD ||
		    !name_is(name, nl, "From")) {
			put(out, &o, h->buf + p, e - p);
			continue;
		}
		if (from_seen++)
			continue;
		put(out, &o, "From: ", 6);
		put(out, &o, h->sender, sl);
		put(out, &o, "\r\n", 2);
		if (!reply_to && worth_reply_to(h->buf + vs, ve - vs, h->sender)) {
			put(out, &o, "Reply-To:", 9);
			put(out, &o, h->buf + vs, ve - vs);
			if (h->buf[ve - 1] != '\n')
				put(out, &o, "\r\n", 2);
		}
	}
	/* A body that came without its empty line gets one: the fields above end here. */
	if (h->body_line)
		put(out, &o, "\r\n", 2);
	if (h->len > h->hdrlen)		/* h->buf is NULL when nothing came */
		put(out, &o, h->buf + h->hdrlen, h->len - h->hdrlen);
	*lenp = o;
	return (out);
}
