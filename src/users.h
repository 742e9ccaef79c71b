#ifndef USERS_H
#define USERS_H

#include <stddef.h>

/* The longest users_file read, and the longest user name in it. */
#define USERS_FILE_MAX	(1024 * 1024)
#define USERS_NAME_MAX	255

struct users;

/* One problem found in a users file: its ${line} (0: none applies), a warning or not. */
typedef void users_report(void *arg, int line, int warning, const char *msg);

/* What a verification found. */
enum users_result { USERS_OK, USERS_NO_SUCH_USER, USERS_BAD_PASSWORD, USERS_ERROR };

/**
 * users_parse(text, len, report, arg):
 * The table in the ${len} bytes at ${text}: "name:hash" lines (LF or CRLF), blank lines
 * and lines starting with '#' ignored, blanks around a line ignored. Each hash is a
 * crypt(3) hash of a scheme this proxy accepts: yescrypt ($y$), SHA-512 ($6$) or
 * SHA-256 ($5$); MD5 ($1$), DES and the rest are refused. Every malformed line, refused
 * scheme and repeated name goes to ${report} with its line; then NULL. A table without a
 * user is reported as a warning. NULL with line 0 when out of memory.
 */
struct users *users_parse(const char *text, size_t len, users_report *report, void *arg);

/**
 * users_load(path, report, arg):
 * Read the file ${path} (at most USERS_FILE_MAX bytes) and users_parse() it; a file
 * every user of the machine can read is reported as a warning (line 0), one that cannot
 * be read as an error. NULL on error.
 */
struct users *users_load(const char *path, users_report *report, void *arg);

/**
 * users_count(u):
 * How many users ${u} holds.
 */
size_t users_count(const struct users *u);

/**
 * users_verify(u, name, pass, msp):
 * Check ${pass} for user ${name} with crypt(3) and a constant-time compare, and store
 * the milliseconds crypt took in ${msp}. It runs on the caller's event loop: a yescrypt
 * hash at libxcrypt's default cost takes about 30 ms on a small machine (SHA-512 about
 * 3 ms), during which that worker serves nobody else; a session gets one verification
 * per AUTH, and the caller delays each failure so one session cannot ask for more than
 * about one a second. An unknown ${name} costs the same as a wrong password (it is
 * checked against another user's hash), so timing does not tell which names exist.
 */
enum users_result users_verify(const struct users *u, const char *name, const char *pass,
    long *msp);

/**
 * users_result_str(r):
 * "ok", "no-such-user", "bad-password" or "error", for logs.
 */
const char *users_result_str(enum users_result r);

/**
 * users_free(u):
 * Free the table. NULL is a no-op.
 */
void users_free(struct users *u);

#endif
