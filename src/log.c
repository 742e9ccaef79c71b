/*
 * Log lines: levels, key=value text or JSON with one escaping function, session ids,
 * journald priority prefixes. Owns the only writes to stderr after start-up.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static enum log_level log_max = L_INFO;
static enum log_format log_fmt = LOG_TEXT;
static int log_journal;

static const char *level_names[] = { "error", "warn", "info", "debug" };
/* syslog priorities of the levels: err, warning, info, debug */
static const int level_prio[] = { 3, 4, 6, 7 };

void
log_init(enum log_level level, enum log_format format)
{
	log_max = level;
	log_fmt = format;
	log_journal = getenv("JOURNAL_STREAM") != NULL;
}

const char *
log_level_str(enum log_level l)
{
	return (level_names[l]);
}

int
log_level_parse(const char *s, enum log_level *lp)
{
	size_t i;

	for (i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcasecmp(s, level_names[i]) == 0) {
			*lp = (enum log_level)i;
			return (0);
		}
	}
	return (-1);
}

int
log_enabled(enum log_level level)
{
	return (level <= log_max);
}

static void
put(struct logline *l, const char *s, size_t n)
{
	/* Keep room for a truncation mark, the closing brace and newline. */
	if (l->len + n + 24 >= sizeof(l->buf)) {
		l->full = 1;
		return;
	}
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static void
putc_esc(struct logline *l, unsigned char c)
{
	char tmp[8];

	switch (c) {
	case '"':  put(l, "\\\"", 2); return;
	case '\\': put(l, "\\\\", 2); return;
	case '\n': put(l, "\\n", 2); return;
	case '\r': put(l, "\\r", 2); return;
	case '\t': put(l, "\\t", 2); return;
	}
	if (c < 0x20 || c >= 0x7f) {
		/* JSON has no \x escape; text keeps the shorter one. */
		if (log_fmt == LOG_JSON)
			put(l, tmp, (size_t)snprintf(tmp, sizeof(tmp), "\\u%04x", c));
		else
			put(l, tmp, (size_t)snprintf(tmp, sizeof(tmp), "\\x%02x", c));
		return;
	}
	put(l, (const char *)&c, 1);
}

/* The one place values are escaped, for both formats. */
static void
put_value(struct logline *l, const char *v, size_t n, int quote)
{
	size_t i;

	if (quote)
		put(l, "\"", 1);
	for (i = 0; i < n; i++)
		putc_esc(l, (unsigned char)v[i]);
	if (quote)
		put(l, "\"", 1);
}

static int
needs_quotes(const char *v, size_t n)
{
	size_t i;

	if (n == 0)
		return (1);
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];

		if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7f)
			return (1);
	}
	return (0);
}

static void
put_key(struct logline *l, const char *key)
{
	if (log_fmt == LOG_JSON) {
		put(l, ",\"", 2);
		put(l, key, strlen(key));
		put(l, "\":", 2);
	} else {
		put(l, " ", 1);
		put(l, key, strlen(key));
		put(l, "=", 1);
	}
}

void
log_begin(struct logline *l, enum log_level level, const char *sid, const char *event)
{
	char ts[64], tmp[16];
	struct timespec now;
	struct tm tm;

	l->len = 0;
	l->full = l->cut = 0;
	l->on = log_enabled(level);
	if (!l->on)
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
	    tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	    (long)(now.tv_nsec / 1000000) % 1000);
	if (log_journal) {
		snprintf(tmp, sizeof(tmp), "<%d>", level_prio[level]);
		put(l, tmp, strlen(tmp));
	}
	if (log_fmt == LOG_JSON) {
		put(l, "{\"ts\":\"", 7);
		put(l, ts, strlen(ts));
		put(l, "\",\"level\":\"", 11);
		put(l, level_names[level], strlen(level_names[level]));
		put(l, "\"", 1);
	} else {
		if (!log_journal) {
			put(l, ts, strlen(ts));
			put(l, " ", 1);
		}
		put(l, level_names[level], strlen(level_names[level]));
	}
	if (sid != NULL)
		log_str(l, "sid", sid);
	log_str(l, "event", event);
}

void
log_strn(struct logline *l, const char *key, const char *val, size_t n)
{
	size_t start = l->len;

	if (!l->on)
		return;
	put_key(l, key);
	put_value(l, val, n, log_fmt == LOG_JSON || needs_quotes(val, n));
	if (l->full) {
		/* Drop the whole field rather than leave half a value or a broken JSON string. */
		l->len = start;
		l->full = 0;
		l->cut = 1;
	}
}

void
log_str(struct logline *l, const char *key, const char *val)
{
	if (val == NULL)
		val = "";
	log_strn(l, key, val, strlen(val));
}

void
log_num(struct logline *l, const char *key, long long v)
{
	size_t start = l->len;
	char tmp[32];
	int n;

	if (!l->on)
		return;
	n = snprintf(tmp, sizeof(tmp), "%lld", v);
	put_key(l, key);
	put(l, tmp, (size_t)n);
	if (l->full) {
		l->len = start;
		l->full = 0;
		l->cut = 1;
	}
}

void
log_end(struct logline *l)
{
	ssize_t w;
	size_t off = 0;

	if (!l->on)
		return;
	if (l->cut) {
		/* put() always leaves room for this mark, the brace and the newline. */
		const char *mark = log_fmt == LOG_JSON ? ",\"truncated\":true" : " truncated=yes";

		memcpy(l->buf + l->len, mark, strlen(mark));
		l->len += strlen(mark);
	}
	if (log_fmt == LOG_JSON)
		l->buf[l->len++] = '}';
	l->buf[l->len++] = '\n';
	while (off < l->len) {
		w = write(STDERR_FILENO, l->buf + off, l->len - off);
		if (w <= 0)
			break;	/* nowhere left to report a failing log */
		off += (size_t)w;
	}
}

void
log_simple(enum log_level level, const char *event, const char *msg)
{
	struct logline l;

	log_begin(&l, level, NULL, event);
	log_str(&l, "msg", msg);
	log_end(&l);
}
