#ifndef SMTP_H
#define SMTP_H

#include <stddef.h>

/* Longest command line we accept, without CRLF (RFC 5321 says 512; devices send more). */
#define SMTP_LINE_MAX	4096
/* Longest reply line and whole reply we accept from an upstream. */
#define SMTP_REPLY_LINE_MAX	2048
#define SMTP_REPLY_MAX		16384

enum smtp_verb {
	SMTP_UNKNOWN,
	SMTP_HELO,
	SMTP_EHLO,
	SMTP_MAIL,
	SMTP_RCPT,
	SMTP_DATA,
	SMTP_RSET,
	SMTP_NOOP,
	SMTP_QUIT,
	SMTP_VRFY,
	SMTP_EXPN,
	SMTP_HELP,
	SMTP_AUTH,
	SMTP_STARTTLS,
	SMTP_BDAT,
};

struct smtp_cmd {
	enum smtp_verb	 verb;
	const char	*arg;		/* after the verb and its blanks; not NUL-terminated */
	size_t		 arglen;
};

/**
 * smtp_verb_str(v):
 * The verb's name, for logs.
 */
const char *smtp_verb_str(enum smtp_verb v);

/**
 * smtp_line_end(p, n, lenp):
 * Frame the first command line in the ${n} bytes at ${p}: a line ends at its first LF,
 * with or without a CR before it (devices that end lines with a bare LF exist, and the
 * proxy sends every line upstream with CRLF, so the two can never disagree). Store the
 * line's length without its ending in *${lenp} and return the ending's length: 2 for
 * CRLF, 1 for a bare LF, 0 when no LF is in the ${n} bytes.
 */
int smtp_line_end(const char *p, size_t n, size_t *lenp);

/**
 * smtp_line_is_clean(line, len):
 * 1 if the command line (CRLF removed) has no CR, LF or NUL in it, else 0: such a
 * byte is how smuggling and command injection hide a second command in one line.
 */
int smtp_line_is_clean(const char *line, size_t len);

/**
 * smtp_cmd_parse(line, len, cmd):
 * Identify the verb of a clean command line and where its argument starts.
 * Unknown verbs give SMTP_UNKNOWN; never fails.
 */
void smtp_cmd_parse(const char *line, size_t len, struct smtp_cmd *cmd);

/**
 * smtp_path(arg, len, out, size):
 * Copy the <path> of a MAIL FROM:/RCPT TO: argument (without brackets) into ${out}
 * for logging, cut to ${size} - 1; 0, or -1 if the argument has no <...>.
 */
int smtp_path(const char *arg, size_t len, char *out, size_t size);

/**
 * smtp_mail_size(arg, len):
 * The SIZE=n parameter of a MAIL FROM: argument (RFC 1870); 0 when absent or
 * malformed (the upstream judges those), ULLONG_MAX when it overflows.
 */
unsigned long long smtp_mail_size(const char *arg, size_t len);

struct smtp_reply {
	int	 code;		/* 200..599 */
	int	 nlines;
	size_t	 len;		/* whole reply including every CRLF */
};

/**
 * smtp_reply_parse(p, len, r):
 * Parse the first reply in ${p}: one or more lines "ddd-text" ending with "ddd text"
 * or "ddd", each ending in CRLF, all with the same code. Return the bytes it spans
 * (> 0) and fill ${r}; 0 if more bytes are needed; -1 if it is malformed (bad code,
 * mixed codes, bad separator, bare CR or LF, NUL or other control bytes, a line over
 * SMTP_REPLY_LINE_MAX, a reply over SMTP_REPLY_MAX). Never reads past ${len}.
 */
long smtp_reply_parse(const char *p, size_t len, struct smtp_reply *r);

/* Capabilities (EHLO keywords) the proxy understands. */
#define SMTP_CAP_PIPELINING	0x0001
#define SMTP_CAP_SIZE		0x0002
#define SMTP_CAP_8BITMIME	0x0004
#define SMTP_CAP_SMTPUTF8	0x0008
#define SMTP_CAP_ENHANCED	0x0010
#define SMTP_CAP_DSN		0x0020
#define SMTP_CAP_STARTTLS	0x0040
#define SMTP_CAP_CHUNKING	0x0080
#define SMTP_CAP_AUTH		0x0100
/* Our own EHLO reply only: repeat AUTH as the pre-RFC 2554 "AUTH=mech" line old devices read. */
#define SMTP_CAP_AUTH_OLD	0x0200

#define SMTP_AUTH_PLAIN		0x01
#define SMTP_AUTH_LOGIN		0x02

struct smtp_caps {
	unsigned	 flags;
	unsigned long	 size;		/* SIZE argument; 0 = no limit given */
	unsigned	 authmask;	/* SMTP_AUTH_* among the mechanisms */
	char		 auth[256];	/* mechanisms, space separated, as advertised */
};

/**
 * smtp_caps_parse(reply, len, caps):
 * Read the capabilities of a complete, valid 250 EHLO reply (as smtp_reply_parse()
 * accepted it) into ${caps}; "AUTH mech..." and the old "AUTH=mech..." lines are
 * merged. 0, or -1 if a known keyword has a malformed argument.
 */
int smtp_caps_parse(const char *reply, size_t len, struct smtp_caps *caps);

/**
 * smtp_ehlo_reply(caps, hostname, show_auth, out, size):
 * Write the EHLO reply the client sees into ${out}: "250-hostname" then only the
 * capabilities relayed to clients (PIPELINING, SIZE, 8BITMIME, SMTPUTF8,
 * ENHANCEDSTATUSCODES, DSN; AUTH when ${show_auth}, also as "AUTH=mech..." when
 * SMTP_CAP_AUTH_OLD is set); never STARTTLS or CHUNKING.
 * Return its length, or 0 if ${size} is too small.
 */
size_t smtp_ehlo_reply(const struct smtp_caps *caps, const char *hostname, int show_auth,
    char *out, size_t size);

/**
 * smtp_ehlo_add(out, n, size, word):
 * Append the capability ${word} to the EHLO reply of ${n} bytes in ${out} (its last
 * line continues, "250 ${word}" ends it; NUL-terminated). The new length, or 0 if
 * ${size} is too small or ${out} does not end in a "250 " line.
 */
size_t smtp_ehlo_add(char *out, size_t n, size_t size, const char *word);

#endif
