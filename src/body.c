/*
 * The DATA phase of a session and the record of each message.
 *
 * Owns: streaming the body from the client through the DATA scanner straight into
 * the upstream's output buffer (backpressure: the body waits while the upstream is
 * full), the decisions taken on the way (size, data rate, bare CR/LF under reject),
 * what the end of data leads to, and the transaction record behind every `message`
 * log line. The upstream never sees a final dot unless the whole body went out.
 * With rewrite_header_from the header block is held (hdrfrom.h) until it is complete
 * and goes out rewritten; from there on the body streams as it always does.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "conn.h"
#include "hdrfrom.h"
#include "log.h"
#include "route.h"
#include "session_int.h"
#include "shared.h"

/* Below this much room upstream, the body waits for the upstream to drain. */
#define DATA_MIN_ROOM	(8 * 1024)
#define DATA_CHUNK	(32 * 1024)
/* With the upstream gone, the rest of the body is read (to answer) in this much. */
#define DATA_DISCARD	4096
/* A body must keep min_data_rate after this many seconds. */
#define DATA_RATE_GRACE	30.
/* msg_bytes counts the terminating ".\r\n": the message itself is this much less. */
#define DOT_LEN		3
/* The header block is scanned in this much, into a buffer of the stack. */
#define HDR_CHUNK	4096
/*
 * Room the upstream must have before a header chunk is scanned: the whole rewritten
 * block and the rest of the chunk go out at once. The upstream's buffer (256 KB, its
 * DRAIN at a quarter) has that much again whenever it drains.
 */
#define HDR_ROOM	(HDRFROM_OUT_MAX + DATA_OUT_MAX(HDR_CHUNK))

/* ---- the message record ---------------------------------------------------------- */

static void
txn_drop(struct txn **t)
{
	free(*t);
	*t = NULL;
}

/* Stop holding a header block. */
static void
hdr_drop(struct session *s)
{
	if (s->hf == NULL)
		return;
	hdrfrom_free(s->hf);
	free(s->hf);
	s->hf = NULL;
}

void
body_txn_free(struct session *s)
{
	txn_drop(&s->txn);
	txn_drop(&s->ended);
	hdr_drop(s);
}

void
body_txn_new(struct session *s, const char *arg, size_t arglen)
{
	struct txn *t;

	txn_drop(&s->txn);
	/* Out of memory: the transaction goes on, only its log line lacks the envelope. */
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return;
	/* Pending entries keep the low 8 bits; 0 stands for "no transaction". */
	if ((++s->txn_ids & 0xff) == 0)
		s->txn_ids++;
	t->id = s->txn_ids;
	if (smtp_path(arg, arglen, t->from, sizeof(t->from)) != 0)
		t->from[0] = '\0';
	s->txn = t;
}

void
body_txn_device_from(struct session *s, const char *arg, size_t arglen)
{
	struct txn *t = s->txn;
	const char *p = arg + 5, *end = arg + arglen;
	size_t n;

	if (t == NULL || smtp_path(arg, arglen, t->device_from, sizeof(t->device_from)) == 0)
		return;
	/* A path without brackets (sender_mail() took it): "FROM:" and blanks, then it. */
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	for (n = 0; p + n < end && p[n] != ' ' && p[n] != '\t'; n++)
		;
	snprintf(t->device_from, sizeof(t->device_from), "%.*s", (int)n, p);
}

void
body_txn_rcpt_sent(struct session *s, const char *arg, size_t arglen)
{
	struct txn *t = s->txn;
	char path[256];
	size_t n;

	if (t == NULL)
		return;
	if (smtp_path(arg, arglen, path, sizeof(path)) != 0)
		path[0] = '\0';
	n = strlen(path) + 1;
	if (t->sentlen + n > sizeof(t->sent)) {
		/* No room to remember it: it is counted, not listed. */
		path[0] = '\0';
		n = 1;
		if (t->sentlen + n > sizeof(t->sent))
			return;
	}
	memcpy(t->sent + t->sentlen, path, n);
	t->sentlen += n;
}

void
body_txn_rcpt_reply(struct session *s, const struct pend *p, int accepted)
{
	struct txn *t = s->txn;
	size_t n, have;

	/* A reply to an RCPT of a transaction that RSET or EHLO dropped is not this one's. */
	if (t == NULL || p->txn != (t->id & 0xff))
		return;
	n = t->sentlen > 0 ? strlen(t->sent) + 1 : 0;
	if (accepted) {
		t->rcpts++;
		have = strlen(t->to);
		if (n > 1 && have + n + 1 < sizeof(t->to))
			snprintf(t->to + have, sizeof(t->to) - have, "%s%s", have ? "," : "",
			    t->sent);
		else
			t->to_more++;
	}
	memmove(t->sent, t->sent + n, t->sentlen - n);
	t->sentlen -= n;
}

static void
log_message(struct session *s, const struct txn *t, const char *reply, size_t len,
    const char *result)
{
	struct logline l;
	char to[TXN_TO_MAX + 32];

	log_begin(&l, L_INFO, s->sid, "message");
	log_str(&l, "client", s->client);
	/* Which profile and which upstream of its failover order took it. */
	log_str(&l, "device", route_name(s->dev));
	log_str(&l, "upstream", s->upc != NULL ? s->upc->name : "-");
	if (s->orig_dst[0] != '\0')
		log_str(&l, "orig_dst", s->orig_dst);
	log_str(&l, "from", t ? t->from : "");
	if (t != NULL && t->device_from[0] != '\0')
		log_str(&l, "device_from", t->device_from);
	if (t != NULL && t->to_more > 0)
		snprintf(to, sizeof(to), "%s%s(+%u more)", t->to, t->to[0] ? "," : "",
		    t->to_more);
	else
		snprintf(to, sizeof(to), "%s", t ? t->to : "");
	log_str(&l, "to", to);
	log_num(&l, "rcpts", t ? t->rcpts : 0);
	log_num(&l, "bytes", t ? (long long)t->bytes : 0);
	while (len > 0 && (reply[len - 1] == '\n' || reply[len - 1] == '\r'))
		len--;
	log_strn(&l, "reply", reply, len);
	log_str(&l, "result", result);
	log_end(&l);
	shared_m_message(result);
}

void
body_log_data(struct session *s, const char *reply, const char *result)
{
	if (s->txn != NULL)
		s->txn->bytes = s->msg_bytes;
	log_message(s, s->txn, reply, strlen(reply), result);
	txn_drop(&s->txn);
}

void
body_log_ended(struct session *s, const char *reply, size_t len, const char *result)
{
	log_message(s, s->ended, reply, len, result);
	txn_drop(&s->ended);
}

/* ---- the body -------------------------------------------------------------------- */

void
body_start(struct session *s)
{
	s->state = S_DATA;
	s->msg_bytes = 0;
	s->too_big = 0;
	s->hdr_big = 0;
	s->data_start = ev_now(s->loop);
	data_init(&s->ds, s->lim->bare_newline);
	hdr_drop(s);
	if (s->dev == NULL || !s->dev->rewrite_header_from)
		return;
	if ((s->hf = malloc(sizeof(*s->hf))) == NULL) {
		/* The From cannot be rewritten: nothing goes out, the device gets 451. */
		session_drop_upstream(s, DROP_RESET);
		return;
	}
	hdrfrom_init(s->hf, s->dev->force_sender);
}

/*
 * The header block is complete (or the data ended inside it): send it rewritten, then
 * the ${n} bytes at ${rest} that followed it; or, failing, drop the upstream (no dot).
 */
static void
hdr_send(struct session *s, const char *rest, size_t n)
{
	char *block;
	size_t blen;

	block = hdrfrom_block(s->hf, &blen);
	hdr_drop(s);
	/* HDR_ROOM was there: both fit, unless memory is short. */
	if (block == NULL || conn_write(s->up, block, blen) != 0 ||
	    conn_write(s->up, rest, n) != 0)
		session_drop_upstream(s, DROP_RESET);
	free(block);
}

/*
 * scan_chunk() while the header block is held: scan a small chunk to the stack, hold
 * what is header, send the block rewritten once it is complete, then what followed it.
 */
static size_t
scan_header(struct session *s, const char *in, size_t len)
{
	char out[DATA_OUT_MAX(HDR_CHUNK)];
	size_t chunk, used, outlen, feed, took;

	if (conn_out_room(s->up) < HDR_ROOM)
		return (0);	/* resumed by the upstream's DRAIN */
	chunk = len < HDR_CHUNK ? len : HDR_CHUNK;
	used = data_scan(&s->ds, in, chunk, out, &outlen);
	/* Over the size limit, or a body refused for a bare CR/LF: judge() ends it. */
	if ((s->size_limit > 0 && s->msg_bytes + used > s->size_limit + DOT_LEN) ||
	    (s->ds.bad && s->ds.policy == DATA_REJECT))
		return (used);
	/* The final ".\r\n" is no header line: it follows whatever the header became. */
	feed = s->ds.done && outlen >= DOT_LEN ? outlen - DOT_LEN : outlen;
	if (hdrfrom_feed(s->hf, out, feed, &took) != 0) {
		/* Over HDRFROM_MAX: drop the upstream (no final dot), read on, answer 552. */
		s->hdr_big = s->hf->toobig;
		hdr_drop(s);
		session_drop_upstream(s, DROP_RESET);
		return (used);
	}
	if (s->hf->done || s->ds.done)
		hdr_send(s, out + took, outlen - took);
	return (used);
}

/*
 * Scan one chunk of ${len} bytes at ${in} into the upstream's buffer (or, with the
 * upstream gone, into scratch); the input bytes used, or 0 when the upstream is full.
 */
static size_t
scan_chunk(struct session *s, const char *in, size_t len)
{
	char scratch[DATA_OUT_MAX(DATA_DISCARD)];
	size_t chunk, got, outlen, used;
	char *out;

	if (s->up == NULL) {
		hdr_drop(s);
		chunk = len < DATA_DISCARD ? len : DATA_DISCARD;
		return (data_scan(&s->ds, in, chunk, scratch, &outlen));
	}
	if (s->hf != NULL)
		return (scan_header(s, in, len));
	if (conn_out_room(s->up) < DATA_MIN_ROOM)
		return (0);	/* resumed by the upstream's DRAIN */
	chunk = len < DATA_CHUNK ? len : DATA_CHUNK;
	out = conn_wreserve(s->up, DATA_OUT_MAX(chunk), &got);
	if (out == NULL || got < DATA_OUT_MAX(1))
		return (0);
	if (got < DATA_OUT_MAX(chunk))
		chunk = (got - 4) / 2;
	used = data_scan(&s->ds, in, chunk, out, &outlen);
	/* Over the limit: this chunk (it may hold the final dot) never goes out. */
	if (s->size_limit > 0 && s->msg_bytes + used > s->size_limit + DOT_LEN)
		outlen = 0;
	conn_wcommit(s->up, outlen);
	return (used);
}

/* After each chunk: the message may no longer be deliverable; 0, or -1 if the session
 * ended. */
static int
judge(struct session *s)
{
	ev_tstamp t;

	if (s->size_limit > 0 && s->msg_bytes > s->size_limit + DOT_LEN && !s->too_big) {
		/* Over the limit: drop the upstream (no final dot), read on, answer 552. */
		s->too_big = 1;
		session_drop_upstream(s, DROP_RESET);
	}
	if (s->lim->min_data_rate > 0 && !s->ds.done) {
		t = ev_now(s->loop) - s->data_start;
		/* A client trickling its body would hold a session and an upstream forever. */
		if (t > DATA_RATE_GRACE && (double)s->msg_bytes < t * (double)s->lim->min_data_rate) {
			body_log_data(s, "data rate below min_data_rate", "aborted");
			session_fail(s, "421 4.4.2", "Data rate too low, closing", "slow-data");
			return (-1);
		}
	}
	/* Abort now: without a final dot the upstream delivers nothing. */
	if (s->ds.bad && s->ds.policy == DATA_REJECT)
		session_drop_upstream(s, DROP_RESET);
	return (0);
}

/* The end of data was read: the outcome is the proxy's, or the upstream's reply. */
static void
finish(struct session *s)
{
	s->state = S_CMD;
	s->in_txn = 0;
	s->rcpts_sent = 0;
	/* A header still held belongs to a message that is not going out. */
	hdr_drop(s);
	if (s->too_big) {
		body_log_data(s, "552 5.3.4 over the size limit (rejected by the proxy)",
		    "rejected");
		relay_local(s, R_TOO_BIG);
	} else if (s->hdr_big) {
		body_log_data(s, "552 5.3.4 header block over rewrite_header_from's limit "
		    "(rejected by the proxy)", "rejected");
		relay_local(s, R_HDR_TOO_BIG);
	} else if (s->ds.bad && s->ds.policy == DATA_REJECT) {
		body_log_data(s, "550 5.5.2 bare CR or LF (rejected by the proxy)", "rejected");
		relay_local(s, R_REJECTED);
	} else if (s->up == NULL) {
		body_log_data(s, "upstream lost during DATA", "tempfail");
		relay_local(s, R_UP_LOST_DATA);
	} else {
		/* At most one: the next end of data needs a 354 that comes after its reply. */
		assert(s->ended == NULL);
		if ((s->ended = s->txn) != NULL)
			s->ended->bytes = s->msg_bytes;
		s->txn = NULL;
		relay_push(s, P_DOT, 0, 0);
	}
}

void
body_read(struct session *s)
{
	const char *in;
	size_t len, used;

	while (!s->dead && s->state == S_DATA) {
		if ((in = conn_peek(s->cl, &len)) == NULL)
			return;
		if ((used = scan_chunk(s, in, len)) == 0 && !s->ds.done)
			return;
		s->msg_bytes += used;
		conn_consume(s->cl, used);
		if (s->dead)
			return;
		if (used > 0)
			session_touch(s);
		if (judge(s) != 0)
			return;
		if (s->ds.done)
			finish(s);
	}
}
