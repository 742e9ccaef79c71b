#ifndef AUTH_H
#define AUTH_H

#include <stddef.h>

/* The longest access token accepted: Microsoft 365's JWTs run to about 2,500 bytes. */
#define AUTH_TOKEN_MAX	8192

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

/**
 * auth_xoauth2(user, token, out, size):
 * Write the XOAUTH2 initial response base64("user=" user "\1auth=Bearer " token "\1\1")
 * (Google, Microsoft 365) into ${out}; 0, or -1 if it does not fit, ${user} is longer
 * than 512 bytes or holds a control byte, or ${token} is empty, over AUTH_TOKEN_MAX or
 * not an RFC 6750 b64token. The caller wipes ${out} after use.
 */
int auth_xoauth2(const char *user, const char *token, char *out, size_t size);

/**
 * auth_oauthbearer(user, host, port, token, out, size):
 * Write the OAUTHBEARER initial response (RFC 7628 section 3.1) base64("n,a=" user
 * ",\1host=" host "\1port=" port "\1auth=Bearer " token "\1\1") into ${out}, with ','
 * and '=' in ${user} written "=2C" and "=3D" (RFC 5801 saslname); 0, or -1 as for
 * auth_xoauth2() (${host} is held to the same rules as ${user}).
 */
int auth_oauthbearer(const char *user, const char *host, int port, const char *token,
    char *out, size_t size);

/**
 * auth_is_b64token(t):
 * 1 if ${t} is an RFC 6750 b64token of at most AUTH_TOKEN_MAX bytes: letters, digits,
 * "-._~+/", then any '='; else 0.
 */
int auth_is_b64token(const char *t);

/**
 * auth_unb64(s, n, out, size, lenp):
 * Decode the ${n} base64 characters at ${s} into ${out} and store the byte count in
 * ${lenp}; 0, or -1 if they are not base64 (length not a multiple of 4, a stray byte)
 * or the bytes do not fit in ${size}.
 */
int auth_unb64(const char *s, size_t n, unsigned char *out, size_t size, size_t *lenp);

#endif
