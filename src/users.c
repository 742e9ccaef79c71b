/*
 * The users_file: the names and crypt(3) hashes devices log in to the proxy with
 * (client_auth = required). Owns reading and checking the file, the table, and the
 * verification of a password against it with libcrypt.
 */
#include <sys/stat.h>

#include <crypt.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "users.h"

#define ADVICE	"use yescrypt ($y$, from mkpasswd -m yescrypt) or SHA-512 ($6$, from " \
		"openssl passwd -6)"

struct user {
	char	*name;
	char	*hash;
	int	 line;
};

struct users {
	struct user	*v;		/* sorted by name once parsed */
	size_t		 n, cap;
};

/*
 * libcrypt's work area (32 KB): one per process, which is one event loop, so two
 * verifications never share it. Wiped after each use: it held the password.
 */
static struct crypt_data cdata;

static void
report_f(users_report *report, void *arg, int line, int warning, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void
report_f(users_report *report, void *arg, int line, int warning, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	report(arg, line, warning, msg);
}

/* Why ${h} is not a hash this proxy takes, or NULL. */
static const char *
hash_problem(const char *h, char *buf, size_t size)
{
	const char *p;
	size_t dollars = 0, idlen;
	int cs;

	if (h[0] != '$') {
		snprintf(buf, size, "not a crypt(3) hash of a supported scheme (a DES hash, or "
		    "a password in clear?): %s", ADVICE);
		return (buf);
	}
	idlen = strcspn(h + 1, "$");
	if (strncmp(h, "$1$", 3) == 0) {
		snprintf(buf, size, "MD5 hashes ($1$) are refused (too fast to resist "
		    "guessing): %s", ADVICE);
		return (buf);
	}
	if (strncmp(h, "$y$", 3) != 0 && strncmp(h, "$6$", 3) != 0 &&
	    strncmp(h, "$5$", 3) != 0) {
		snprintf(buf, size, "unsupported hash scheme $%.*s$: %s",
		    (int)(idlen < 16 ? idlen : 16), h + 1, ADVICE);
		return (buf);
	}
	for (p = h; *p != '\0'; p++) {
		if (*p == '$')
			dollars++;
		else if (strchr("./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		    "=", *p) == NULL)
			break;
	}
	/* $y$params$salt$hash; $6$[rounds=N$]salt$hash; the hash part never empty. */
	cs = crypt_checksalt(h);
	if (*p != '\0' || p[-1] == '$' || dollars < (h[1] == 'y' ? 4u : 3u) ||
	    cs == CRYPT_SALT_INVALID || cs == CRYPT_SALT_METHOD_DISABLED) {
		snprintf(buf, size, "malformed %s hash", h[1] == 'y' ? "yescrypt" :
		    h[1] == '6' ? "SHA-512" : "SHA-256");
		return (buf);
	}
	return (NULL);
}

/* Printable, no blank, no ':' (ends the name), not empty, not too long. */
static int
name_ok(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > USERS_NAME_MAX)
		return (0);
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
			return (0);
	return (1);
}

static int
add(struct users *u, const char *name, size_t nl, const char *hash, size_t hl, int line)
{
	struct user *v, *e;

	if (u->n == u->cap) {
		if ((v = reallocarray(u->v, u->cap ? u->cap * 2 : 16, sizeof(*v))) == NULL)
			return (-1);
		u->v = v;
		u->cap = u->cap ? u->cap * 2 : 16;
	}
	e = &u->v[u->n];
	if ((e->name = strndup(name, nl)) == NULL)
		return (-1);
	if ((e->hash = strndup(hash, hl)) == NULL) {
		free(e->name);
		return (-1);
	}
	e->line = line;
	u->n++;
	return (0);
}

static int
by_name(const void *a, const void *b)
{
	const struct user *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	return (c != 0 ? c : x->line - y->line);
}

/* One line without its end; -1 on error (reported), 0 otherwise. */
static int
parse_line(struct users *u, const char *p, size_t n, int line, users_report *report,
    void *arg)
{
	const char *colon;
	char hash[256], why[300];
	size_t nl;

	while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\r'))
		n--;
	while (n > 0 && (*p == ' ' || *p == '\t')) {
		p++;
		n--;
	}
	if (n == 0 || *p == '#')
		return (0);
	if (memchr(p, '\0', n) != NULL) {
		report(arg, line, 0, "a NUL byte in the line");
		return (-1);
	}
	if ((colon = memchr(p, ':', n)) == NULL) {
		report(arg, line, 0, "expected name:hash (a user name, a colon, a crypt(3) hash)");
		return (-1);
	}
	nl = (size_t)(colon - p);
	if (!name_ok(p, nl)) {
		report_f(report, arg, line, 0, "the user name must be 1 to %d printable "
		    "characters without blanks", USERS_NAME_MAX);
		return (-1);
	}
	if (n - nl - 1 >= sizeof(hash)) {
		report_f(report, arg, line, 0, "user %.*s: hash longer than %zu characters",
		    (int)nl, p, sizeof(hash) - 1);
		return (-1);
	}
	memcpy(hash, colon + 1, n - nl - 1);
	hash[n - nl - 1] = '\0';
	if (hash_problem(hash, why, sizeof(why)) != NULL) {
		report_f(report, arg, line, 0, "user %.*s: %s", (int)nl, p, why);
		return (-1);
	}
	if (add(u, p, nl, hash, n - nl - 1, line) != 0) {
		report(arg, 0, 0, "out of memory");
		return (-1);
	}
	return (0);
}

struct users *
users_parse(const char *text, size_t len, users_report *report, void *arg)
{
	struct users *u;
	const char *p = text, *end = text + len, *nl;
	size_t i;
	int line = 0, errors = 0;

	if ((u = calloc(1, sizeof(*u))) == NULL) {
		report(arg, 0, 0, "out of memory");
		return (NULL);
	}
	while (p < end) {
		line++;
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL)
			nl = end;
		if (parse_line(u, p, (size_t)(nl - p), line, report, arg) != 0)
			errors++;
		p = nl + 1;
	}
	if (u->n > 0)
		qsort(u->v, u->n, sizeof(*u->v), by_name);
	for (i = 1; i < u->n; i++) {
		if (strcmp(u->v[i - 1].name, u->v[i].name) == 0) {
			report_f(report, arg, u->v[i].line, 0, "user %s is listed twice (first on "
			    "line %d)", u->v[i].name, u->v[i - 1].line);
			errors++;
		}
	}
	if (errors > 0) {
		users_free(u);
		return (NULL);
	}
	if (u->n == 0)
		report(arg, 0, 1, "no users: no device can log in");
	return (u);
}

struct users *
users_load(const char *path, users_report *report, void *arg)
{
	struct users *u = NULL;
	struct stat st;
	char *text = NULL;
	ssize_t r;
	size_t len = 0;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) != 0) {
		report_f(report, arg, 0, 0, "cannot read it: %s", strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		report(arg, 0, 0, "not a regular file");
		goto out;
	}
	if (st.st_mode & S_IROTH)
		report(arg, 0, 1, "readable by every user of this machine: the hashes can be "
		    "guessed offline (chmod o-r it)");
	if ((text = malloc(USERS_FILE_MAX + 1)) == NULL) {
		report(arg, 0, 0, "out of memory");
		goto out;
	}
	while (len <= USERS_FILE_MAX &&
	    (r = read(fd, text + len, USERS_FILE_MAX + 1 - len)) != 0) {
		if (r < 0) {
			if (errno == EINTR)
				continue;
			report_f(report, arg, 0, 0, "cannot read it: %s", strerror(errno));
			goto out;
		}
		len += (size_t)r;
	}
	if (len > USERS_FILE_MAX) {
		report_f(report, arg, 0, 0, "longer than %d bytes", USERS_FILE_MAX);
		goto out;
	}
	u = users_parse(text, len, report, arg);
out:
	if (fd >= 0)
		close(fd);
	free(text);
	return (u);
}

size_t
users_count(const struct users *u)
{
	return (u != NULL ? u->n : 0);
}

/* bsearch() by name: names are unique once parsed. */
static int
name_cmp(const void *key, const void *elem)
{
	return (strcmp(key, ((const struct user *)elem)->name));
}

enum users_result
users_verify(const struct users *u, const char *name, const char *pass, long *msp)
{
	const struct user *e;
	struct timespec t0, t1;
	const char *hash, *out;
	size_t hl;
	int same;

	*msp = 0;
	if (u == NULL || u->n == 0)
		return (USERS_NO_SUCH_USER);
	e = bsearch(name, u->v, u->n, sizeof(*u->v), name_cmp);
	/* An unknown name is checked too, against another hash: the same cost, the same wait. */
	hash = e != NULL ? e->hash : u->v[0].hash;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	out = crypt_rn(pass, hash, &cdata, sizeof(cdata));
	hl = strlen(hash);
	same = out != NULL && strlen(out) == hl && CRYPTO_memcmp(out, hash, hl) == 0;
	OPENSSL_cleanse(&cdata, sizeof(cdata));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	*msp = (t1.tv_sec - t0.tv_sec) * 1000L + (t1.tv_nsec - t0.tv_nsec) / 1000000L;
	if (e == NULL)
		return (USERS_NO_SUCH_USER);
	if (out == NULL)
		return (USERS_ERROR);
	return (same ? USERS_OK : USERS_BAD_PASSWORD);
}

const char *
users_result_str(enum users_result r)
{
	switch (r) {
	case USERS_OK:
		return ("ok");
	case USERS_NO_SUCH_USER:
		return ("no-such-user");
	case USERS_BAD_PASSWORD:
		return ("bad-password");
	default:
		return ("error");
	}
}

void
users_free(struct users *u)
{
	size_t i;

	if (u == NULL)
		return;
	for (i = 0; i < u->n; i++) {
		free(u->v[i].name);
		free(u->v[i].hash);
	}
	free(u->v);
	free(u);
}
