#ifndef LOG_H
#define LOG_H

#include <stddef.h>

enum log_level { L_ERROR, L_WARN, L_INFO, L_DEBUG };
enum log_format { LOG_TEXT, LOG_JSON };

/* One log line being built; written with a single write(2) so lines never interleave. */
struct logline {
	char	 buf[4096];
	size_t	 len;
	int	 on;		/* the level is enabled */
	int	 full;		/* the last write did not fit */
	int	 cut;		/* a field was dropped for lack of room */
};

/**
 * log_init(level, format):
 * Set what is logged and how. Under journald (JOURNAL_STREAM set) lines carry a
 * "<N>" priority prefix and no timestamp, since the journal stamps them itself.
 */
void log_init(enum log_level level, enum log_format format);

/**
 * log_level_str(l), log_level_parse(s, lp):
 * Name of a level; parse one (0 / -1).
 */
const char *log_level_str(enum log_level l);
int log_level_parse(const char *s, enum log_level *lp);

/**
 * log_enabled(level):
 * 1 if lines of ${level} are written; lets callers skip building costly fields.
 */
int log_enabled(enum log_level level);

/**
 * log_begin(l, level, sid, event):
 * Start a line: timestamp, level, sid (omitted when NULL) and event name.
 */
void log_begin(struct logline *l, enum log_level level, const char *sid, const char *event);

/**
 * log_str(l, key, val), log_strn(l, key, val, n), log_num(l, key, v):
 * Add a field; the value is quoted and escaped as the format needs (NULL logs as "").
 */
void log_str(struct logline *l, const char *key, const char *val);
void log_strn(struct logline *l, const char *key, const char *val, size_t n);
void log_num(struct logline *l, const char *key, long long v);

/**
 * log_end(l):
 * Finish the line and write it to stderr.
 */
void log_end(struct logline *l);

/**
 * log_simple(level, event, msg):
 * A line with one msg= field and no session, for start-up and process events.
 */
void log_simple(enum log_level level, const char *event, const char *msg);

#endif
