#ifndef SENDER_H
#define SENDER_H

#include <stddef.h>

/*
 * force_sender for the envelope (pure): a device's MAIL FROM argument rewritten to
 * carry the profile's sender, its ESMTP parameters kept as the device wrote them.
 */

/**
 * sender_mail(arg, len, sender, out, size):
 * Write "MAIL FROM:<${sender}>" followed by the parameters of the MAIL argument
 * ${arg} (what follows the verb: "FROM:<path> SIZE=1 BODY=8BITMIME") into ${out},
 * NUL-terminated, and return its length (no CRLF). Device quirks are read: a space
 * after the colon, a path without brackets, lower case. The null path "<>" is kept:
 * return 0 and write nothing (the caller sends the line unchanged). Return -1 when
 * ${arg} is not "FROM:" and a path (the upstream answers that as it would have), or
 * when ${size} is too small.
 */
int sender_mail(const char *arg, size_t len, const char *sender, char *out, size_t size);

#endif
