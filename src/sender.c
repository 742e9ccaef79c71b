/*
 * force_sender for the envelope (see sender.h).
 *
 * The null reverse-path stays null. RFC 5321 4.5.5 gives it to notifications (DSNs,
 * read receipts, vacation replies) so that they are never answered by another
 * notification: a device that sends "<>" is sending one, and giving it the profile's
 * mailbox would turn a bounce into ordinary mail that can bounce in turn, into that
 * mailbox. The provider's mailbox check is about whose mail it is, and a notification
 * is nobody's; rewrite_header_from still writes its From: header.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "sender.h"

/* End of a <path> that starts at ${p} ('<'): just past its '>', quotes honoured; NULL if
 * it has none. */
static const char *
path_end(const char *p, const char *end)
{
	int quoted = 0;

	for (p++; p < end; p++) {
		if (quoted && *p == '\\' && p + 1 < end)
			p++;
		else if (*p == '"')
			quoted = !quoted;
		else if (*p == '>' && !quoted)
			return (p + 1);
	}
	return (NULL);
}

int
sender_mail(const char *arg, size_t len, const char *sender, char *out, size_t size)
{
	const char *p = arg, *end = arg + len, *path;
	int n;

	if (len < 5 || strncasecmp(arg, "FROM:", 5) != 0)
		return (-1);
	for (p += 5; p < end && (*p == ' ' || *p == '\t'); p++)
		;
	if (p == end)
		return (-1);
	path = p;
	if (*p == '<') {
		if ((p = path_end(p, end)) == NULL)
			return (-1);
		if (p - path == 2)
			return (0);	/* "<>": see the head of this file */
	} else {
		/* A bare path (MAIL FROM:a@b) runs to the first blank. */
		while (p < end && *p != ' ' && *p != '\t')
			p++;
	}
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	n = snprintf(out, size, "MAIL FROM:<%s>%s%.*s", sender, p < end ? " " : "",
	    (int)(end - p), p);
	if (n < 0 || (size_t)n >= size)
		return (-1);
	return (n);
}
