#ifndef AUTH_H
#define AUTH_H

#include <stddef.h>

/**
 * auth_plain(user, pass, out, size):
 * Write the AUTH PLAIN initial response base64("\0user\0pass") (RFC 4616) into
 * ${out}; 0, or -1 if it does not fit. The caller wipes ${out} after use.
 */
int auth_plain(const char *user, const char *pass, char *out, size_t size);

/**
 * auth_b64(s, out, size):
 * base64 of the string ${s} (one AUTH LOGIN step) into ${out}; 0, or -1 if too long.
 */
int auth_b64(const char *s, char *out, size_t size);

#endif
