/*
 * SMTP text (pure): command lines (framing, verbs, MAIL SIZE, paths), replies (strict
 * parsing of single and multi-line replies, EHLO capabilities) and the EHLO reply the
 * device gets, rewritten from the upstream's capabilities.
 */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "smtp.h"

static const struct {
	const char	*name;
	enum smtp_verb	 verb;
} verbs[] = {
	{ "HELO", SMTP_HELO }, { "EHLO", SMTP_EHLO }, { "MAIL", SMTP_MAIL },
	{ "RCPT", SMTP_RCPT }, { "DATA", SMTP_DATA }, { "RSET", SMTP_RSET },
	{ "NOOP", SMTP_NOOP }, { "QUIT", SMTP_QUIT }, { "VRFY", SMTP_VRFY },
	{ "EXPN", SMTP_EXPN }, { "HELP", SMTP_HELP }, { "AUTH", SMTP_AUTH },
	{ "STARTTLS", SMTP_STARTTLS }, { "BDAT", SMTP_BDAT },
};

const char *
smtp_verb_str(enum smtp_verb v)
{
	size_t i;

	for (i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (verbs[i].verb == v)
			return (verbs[i].name);
	return ("UNKNOWN");
}

int
smtp_line_end(const char *p, size_t n, size_t *lenp)
{
	const char *lf = memchr(p, '\n', n);

	if (lf == NULL)
		return (0);
	*lenp = (size_t)(lf - p);
	if (*lenp > 0 && lf[-1] == '\r') {
		(*lenp)--;
		return (2);
	}
	return (1);
}

int
smtp_line_is_clean(const char *line, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (line[i] == '\r' || line[i] == '\n' || line[i] == '\0')
			return (0);
	return (1);
}

void
smtp_cmd_parse(const char *line, size_t len, struct smtp_cmd *cmd)
{
	size_t i, vl = 0;

	while (vl < len && line[vl] != ' ')
		vl++;
	cmd->verb = SMTP_UNKNOWN;
	for (i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		if (strlen(verbs[i].name) == vl &&
		    strncasecmp(line, verbs[i].name, vl) == 0) {
			cmd->verb = verbs[i].verb;
			break;
		}
	}
	while (vl < len && line[vl] == ' ')
		vl++;
	cmd->arg = line + vl;
	cmd->arglen = len - vl;
}

int
smtp_path(const char *arg, size_t len, char *out, size_t size)
{
	const char *lt, *gt;
	size_t n;

	if ((lt = memchr(arg, '<', len)) == NULL)
		return (-1);
	if ((gt = memchr(lt, '>', len - (size_t)(lt - arg))) == NULL)
		return (-1);
	n = (size_t)(gt - lt - 1);
	if (n >= size)
		n = size - 1;
	memcpy(out, lt + 1, n);
	out[n] = '\0';
	return (0);
}

unsigned long long
smtp_mail_size(const char *arg, size_t len)
{
	const char *gt = memchr(arg, '>', len), *p, *end = arg + len;
	unsigned long long v = 0;

	/* Parameters follow the path; a "SIZE=" inside <...> is part of the address. */
	for (p = gt ? gt + 1 : arg + 1; p + 5 <= end; p++) {
		if (p[-1] != ' ' || strncasecmp(p, "SIZE=", 5) != 0)
			continue;
		for (p += 5; p < end && isdigit((unsigned char)*p); p++) {
			if (v > (ULLONG_MAX - 9) / 10)
				return (ULLONG_MAX);
			v = v * 10 + (unsigned long long)(*p - '0');
		}
		return (v);
	}
	return (0);
}

/* Text of a reply line: printable ASCII, tab, or UTF-8 bytes; no control bytes. */
static int
reply_text_ok(const char *p, size_t n)
{
	size_t i;
	unsigned char c;

	for (i = 0; i < n; i++) {
		c = (unsigned char)p[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return (0);
	}
	return (1);
}

long
smtp_reply_parse(const char *p, size_t len, struct smtp_reply *r)
{
	size_t pos = 0, ll;
	const char *line, *crlf;
	int code, nlines = 0, first = 0;

	for (;;) {
		line = p + pos;
		crlf = NULL;
		/* Find the CRLF, failing fast on bytes no valid reply line can hold. */
		for (ll = 0; pos + ll < len; ll++) {
			if (line[ll] == '\r') {
				if (pos + ll + 1 == len)
					break;
				if (line[ll + 1] != '\n')
					return (-1);
				crlf = line + ll;
				break;
			}
			if (line[ll] == '\n')
				return (-1);
			if (ll >= SMTP_REPLY_LINE_MAX)
				return (-1);
		}
		if (ll >= 1 && !(line[0] >= '2' && line[0] <= '5'))
			return (-1);
		if (ll >= 2 && !isdigit((unsigned char)line[1]))
			return (-1);
		if (ll >= 3 && !isdigit((unsigned char)line[2]))
			return (-1);
		if (ll >= 4 && line[3] != ' ' && line[3] != '-')
			return (-1);
		if (!reply_text_ok(line, ll))
			return (-1);
		if (crlf == NULL) {
			if (pos + ll >= SMTP_REPLY_MAX)
				return (-1);
			return (0);
		}
		if (ll < 3)
			return (-1);
		code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
		if (nlines == 0)
			first = code;
		else if (code != first)
			return (-1);
		nlines++;
		pos += ll + 2;
		if (pos > SMTP_REPLY_MAX)
			return (-1);
		if (ll == 3 || line[3] == ' ')
			break;
	}
	r->code = first;
	r->nlines = nlines;
	r->len = pos;
	return ((long)pos);
}

/* Append the space-separated mechanisms in [p, p+n) to caps->auth, once each. */
static int
caps_add_auth(struct smtp_caps *caps, const char *p, size_t n)
{
	size_t i = 0, ml, have;
	const char *m;
	char tok[32];

	while (i < n) {
		while (i < n && p[i] == ' ')
			i++;
		m = p + i;
		while (i < n && p[i] != ' ')
			i++;
		ml = (size_t)(p + i - m);
		if (ml == 0)
			continue;
		if (ml >= sizeof(tok))
			return (-1);
		memcpy(tok, m, ml);
		tok[ml] = '\0';
		for (have = 0; have < ml; have++) {
			unsigned char c = (unsigned char)tok[have];

			if (!isalnum(c) && c != '-' && c != '_')
				return (-1);
			tok[have] = (char)toupper(c);
		}
		if (strcmp(tok, "PLAIN") == 0)
			caps->authmask |= SMTP_AUTH_PLAIN;
		else if (strcmp(tok, "LOGIN") == 0)
			caps->authmask |= SMTP_AUTH_LOGIN;
		/* Already listed (from the other AUTH line)? */
		{
			const char *s = caps->auth;
			size_t tl = strlen(tok);
			int dup = 0;

			while ((s = strstr(s, tok)) != NULL) {
				if ((s == caps->auth || s[-1] == ' ') &&
				    (s[tl] == '\0' || s[tl] == ' ')) {
					dup = 1;
					break;
				}
				s += tl;
			}
			if (dup)
				continue;
		}
		have = strlen(caps->auth);
		if (have + ml + 2 > sizeof(caps->auth))
			return (-1);
		if (have > 0)
			caps->auth[have++] = ' ';
		memcpy(caps->auth + have, tok, ml + 1);
	}
	caps->flags |= SMTP_CAP_AUTH;
	return (0);
}

static int
kw_is(const char *kw, size_t kl, const char *name)
{
	return (strlen(name) == kl && strncasecmp(kw, name, kl) == 0);
}

int
smtp_caps_parse(const char *reply, size_t len, struct smtp_caps *caps)
{
	static const struct {
		const char	*name;
		unsigned	 flag;
	} plain[] = {
		{ "PIPELINING", SMTP_CAP_PIPELINING }, { "8BITMIME", SMTP_CAP_8BITMIME },
		{ "SMTPUTF8", SMTP_CAP_SMTPUTF8 }, { "ENHANCEDSTATUSCODES", SMTP_CAP_ENHANCED },
		{ "DSN", SMTP_CAP_DSN }, { "STARTTLS", SMTP_CAP_STARTTLS },
		{ "CHUNKING", SMTP_CAP_CHUNKING },
	};
	const char *line, *end = reply + len, *crlf, *kw, *arg;
	size_t kl, al, i;
	char num[24];

	memset(caps, 0, sizeof(*caps));
	/* The first line is the server's name; capabilities follow. */
	if ((crlf = memchr(reply, '\r', len)) == NULL)
		return (-1);
	for (line = crlf + 2; line < end; line = crlf + 2) {
		if ((crlf = memchr(line, '\r', (size_t)(end - line))) == NULL)
			return (-1);
		kw = line + 4;
		if (kw > crlf)
			return (-1);
		for (kl = 0; kw + kl < crlf && kw[kl] != ' ' && kw[kl] != '='; kl++) {
			unsigned char c = (unsigned char)kw[kl];

			if (!isalnum(c) && c != '-')
				return (-1);
		}
		if (kl == 0)
			return (-1);
		arg = kw + kl;
		if (arg < crlf)
			arg++;
		al = (size_t)(crlf - arg);
		if (kw[kl] == '=') {
			/* Old-style "AUTH=LOGIN PLAIN" (pre-RFC 2554 clients); other X=Y is unknown. */
			if (kw_is(kw, kl, "AUTH") && caps_add_auth(caps, arg, al) != 0)
				return (-1);
			continue;
		}
		if (kw_is(kw, kl, "AUTH")) {
			if (caps_add_auth(caps, arg, al) != 0)
				return (-1);
			continue;
		}
		if (kw_is(kw, kl, "SIZE")) {
			caps->flags |= SMTP_CAP_SIZE;
			if (al == 0)
				continue;
			if (al >= sizeof(num))
				return (-1);
			caps->size = 0;
			for (i = 0; i < al; i++) {
				unsigned long d = (unsigned long)(arg[i] - '0');

				if (!isdigit((unsigned char)arg[i]) ||
				    caps->size > (ULONG_MAX - d) / 10)
					return (-1);
				caps->size = caps->size * 10 + d;
			}
			continue;
		}
		for (i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
			if (kw_is(kw, kl, plain[i].name))
				caps->flags |= plain[i].flag;
	}
	return (0);
}

size_t
smtp_ehlo_reply(const struct smtp_caps *caps, const char *hostname, int show_auth,
    char *out, size_t size)
{
	const char *lines[9];
	char sizebuf[40], authbuf[sizeof(caps->auth) + 8], oldbuf[sizeof(caps->auth) + 8];
	size_t n = 0, i, pos = 0;
	int w;

	if (caps->flags & SMTP_CAP_PIPELINING)
		lines[n++] = "PIPELINING";
	if (caps->flags & SMTP_CAP_SIZE) {
		if (caps->size > 0) {
			snprintf(sizebuf, sizeof(sizebuf), "SIZE %lu", caps->size);
			lines[n++] = sizebuf;
		} else
			lines[n++] = "SIZE";
	}
	if (caps->flags & SMTP_CAP_8BITMIME)
		lines[n++] = "8BITMIME";
	if (caps->flags & SMTP_CAP_SMTPUTF8)
		lines[n++] = "SMTPUTF8";
	if (caps->flags & SMTP_CAP_ENHANCED)
		lines[n++] = "ENHANCEDSTATUSCODES";
	if (caps->flags & SMTP_CAP_DSN)
		lines[n++] = "DSN";
	if (show_auth && (caps->flags & SMTP_CAP_AUTH) && caps->auth[0] != '\0') {
		snprintf(authbuf, sizeof(authbuf), "AUTH %s", caps->auth);
		lines[n++] = authbuf;
		if (caps->flags & SMTP_CAP_AUTH_OLD) {
			snprintf(oldbuf, sizeof(oldbuf), "AUTH=%s", caps->auth);
			lines[n++] = oldbuf;
		}
	}
	w = snprintf(out, size, "250%c%s\r\n", n ? '-' : ' ', hostname);
	if (w < 0 || (size_t)w >= size)
		return (0);
	pos = (size_t)w;
	for (i = 0; i < n; i++) {
		w = snprintf(out + pos, size - pos, "250%c%s\r\n", i + 1 < n ? '-' : ' ',
		    lines[i]);
		if (w < 0 || (size_t)w >= size - pos)
			return (0);
		pos += (size_t)w;
	}
	return (pos);
}

size_t
smtp_ehlo_add(char *out, size_t n, size_t size, const char *word)
{
	size_t last, wl = strlen(word);

	if (n < 6 || out[n - 2] != '\r' || out[n - 1] != '\n' || n + 4 + wl + 2 >= size)
		return (0);
	/* The start of the last line: its "250 " becomes "250-", the new line ends it. */
	for (last = n - 2; last > 0 && out[last - 1] != '\n'; last--)
		;
	if (n - last < 6 || out[last + 3] != ' ')
		return (0);
	out[last + 3] = '-';
	memcpy(out + n, "250 ", 4);
	memcpy(out + n + 4, word, wl);
	memcpy(out + n + 4 + wl, "\r\n", 3);
	return (n + 4 + wl + 2);
}
