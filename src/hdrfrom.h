#ifndef HDRFROM_H
#define HDRFROM_H

#include <stddef.h>

/*
 * rewrite_header_from (pure): the message's header block, held while it arrives, comes
 * out with its From: field replaced by the profile's sender and the device's own From
 * kept as Reply-To:. Only the header block is held; the body never enters here.
 *
 * Input is the DATA scanner's output (data.h): CRLF lines, dot-stuffed, without the
 * final ".\r\n". Lines are judged as the upstream will read them, after unstuffing, so a
 * device's unstuffed ".From:" line (which the upstream reads as "From:") is a From too.
 *
 * What is a header: lines "name:" (RFC 5322 field names, blanks allowed before the
 * colon), each with its continuation lines (starting with a space or tab). The block
 * ends at the empty line (kept), or at the first line that is not a field: that line is
 * the body's first, and an empty line is put before it so the fields written here stay
 * fields. The rewrite:
 *   - the first From: field (all its lines) becomes "From: SENDER"; a message with no
 *     From: gets "From: SENDER" as its first field;
 *   - every later From: field is dropped: one From is all RFC 5322 allows, and a second
 *     one is the device's address surviving next to the mailbox the provider checks;
 *   - when the block has no Reply-To: field, the first From's value, byte for byte
 *     (display name, encoded words, folding), follows as "Reply-To:", unless it is
 *     blank or is SENDER itself;
 *   - everything else is kept as it came, in order.
 * The display name is not kept: the From written is the sender alone, so no display
 * name parser (quoted strings, comments, groups, encoded words) stands between a device
 * and what the provider checks; the recipient finds the device's name in Reply-To.
 */

/* The longest header block held (bytes as the upstream gets them, empty line included). */
#define HDRFROM_MAX	(64 * 1024)
/* The longest rewritten block: the header, its From again as Reply-To, the new lines. */
#define HDRFROM_OUT_MAX	(2 * HDRFROM_MAX + 1024)

struct hdrfrom {
	const char	*sender;
	char		*buf;		/* the header block so far */
	size_t		 len, cap;
	size_t		 linestart;	/* offset in buf of the line being read */
	size_t		 resume;	/* bytes of that line already judged undecided */
	size_t		 hdrlen;	/* once done: bytes of buf that are header fields */
	int		 done;		/* the block is complete: take it with hdrfrom_block() */
	int		 body_line;	/* it ended at a body line, not the empty line */
	int		 fields;	/* a field was seen (a continuation has one to continue) */
	int		 toobig;	/* over HDRFROM_MAX (hdrfrom_feed() returned -1) */
};

/**
 * hdrfrom_init(h, sender):
 * Start on a message for ${sender} (an address; it must outlive ${h}).
 */
void hdrfrom_init(struct hdrfrom *h, const char *sender);

/**
 * hdrfrom_feed(h, in, len, usedp):
 * Take bytes of the message from ${in} until the header block is complete; store in
 * *${usedp} how many were taken: all ${len} unless h->done was set, after which the
 * rest is body and goes on unchanged. Return 0, or -1 when the block passes HDRFROM_MAX
 * (h->toobig set) or memory is short.
 */
int hdrfrom_feed(struct hdrfrom *h, const char *in, size_t len, size_t *usedp);

/**
 * hdrfrom_block(h, lenp):
 * The rewritten header block (malloc'ed, the caller frees it; its length in *${lenp},
 * at most HDRFROM_OUT_MAX), once h->done is set, or at the end of the data: then what
 * was fed is the whole header. Every line it adds ends with CRLF. NULL when memory is
 * short.
 */
char *hdrfrom_block(struct hdrfrom *h, size_t *lenp);

/**
 * hdrfrom_free(h):
 * Release what ${h} holds; it may be started again with hdrfrom_init().
 */
void hdrfrom_free(struct hdrfrom *h);

#endif
