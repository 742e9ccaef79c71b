#ifndef SASL_H
#define SASL_H

#include <stddef.h>

/* RFC 4616: at most 255 octets for the authentication identity and the password. */
#define SASL_FIELD_MAX	255

/* The mechanisms a device may use to log in to the proxy itself (client_auth). */
enum sasl_mech { SASL_UNKNOWN, SASL_PLAIN, SASL_LOGIN };

/**
 * sasl_mech_str(m):
 * "PLAIN", "LOGIN" or "unknown", for logs.
 */
const char *sasl_mech_str(enum sasl_mech m);

/**
 * sasl_auth_parse(arg, len, mechp, irp, irlenp):
 * Split the ${len} bytes of an AUTH command's argument, "mechanism [initial-response]"
 * (RFC 4954), and store the mechanism in ${mechp} (case-insensitive; SASL_UNKNOWN for
 * one not offered) and the initial response in ${irp} / ${irlenp}: NULL when there is
 * none, an empty one for "=". 0, or -1 if there is no mechanism or more than two words.
 */
int sasl_auth_parse(const char *arg, size_t len, enum sasl_mech *mechp, const char **irp,
    size_t *irlenp);

/**
 * sasl_is_cancel(line, len):
 * 1 if the response line ${line} is "*", the client's way to cancel the exchange; else 0.
 */
int sasl_is_cancel(const char *line, size_t len);

/**
 * sasl_plain(b64, n, user, usize, pass, psize):
 * Decode the PLAIN response base64("authzid\0authcid\0passwd") in the ${n} bytes at
 * ${b64} (trailing blanks ignored) into the NUL-terminated ${user} (authcid) and
 * ${pass}. 0, or -1 if it is not base64, has not exactly two NULs, an empty authcid, a
 * field over SASL_FIELD_MAX or ${usize} / ${psize}, or an authzid that is neither empty
 * nor the authcid (nobody may act as another user). Nothing of the password is left
 * in memory but ${pass}, which the caller wipes.
 */
int sasl_plain(const char *b64, size_t n, char *user, size_t usize, char *pass,
    size_t psize);

/**
 * sasl_login(b64, n, out, size):
 * Decode one LOGIN response (the user name or the password) in the ${n} bytes at
 * ${b64} (trailing blanks ignored) into the NUL-terminated ${out}. 0, or -1 if it is
 * not base64, holds a NUL, or is over SASL_FIELD_MAX or ${size}. The caller wipes ${out}
 * when it is a password.
 */
int sasl_login(const char *b64, size_t n, char *out, size_t size);

#endif
