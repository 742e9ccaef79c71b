#ifndef CONFIG_INT_H
#define CONFIG_INT_H

/*
 * Private to config.c (reading the file, the key table) and confcheck.c (the checks
 * across keys): the loader's state while one file is read.
 */
#include <stdio.h>

#include "config.h"

struct config;

struct loader {
	struct config	*c;
	FILE		*f;
	const char	*path;
	int		 flags;		/* CONFIG_FOR_LOGIN ... */
	int		 line;		/* the line inih is looking at */
	char		*errs;
	size_t		 errsize, errlen;
	int		 nerr;
	size_t		 warnlen;	/* used in c->warnings */
	int		 seen[CONFIG_MAX_KEYS];	/* line each global key was set on, 0 = default */
	int		 section_line[8];	/* line of each unnamed section's header */
	/* The section the checks look at now: config_key_line() answers for it. */
	const char	*cur_kind;	/* "upstream", "device", "listener", or NULL: the global
					   sections */
	const int	*cur_lines;
	struct upstream_conf *up;	/* the upstream being checked */
	/* The reader's view of the line inih is about to parse (inih tells us neither). */
	char		 header[50];	/* last [section] header, cut as inih cuts it */
	int		 header_line;
	int		 prev_key;	/* a key since that header: indented lines continue it */
	int		 comment_cut;	/* the value on this line ends at an inline ';' comment */
	char		 bad_section[50];	/* the unknown section reported last */
};

/* "FILE:LINE: message" into the errors; the config is then refused. */
void config_err(struct loader *ld, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* "FILE:LINE: warning: message": loads, but is probably not what the operator meant. */
void config_warn(struct loader *ld, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The line key ${name} was set on; 0 for its default. */
int config_key_line(const struct loader *ld, const char *name);

/* 1 if ${v} holds a control character. */
int config_has_control(const char *v);

/* Listen addresses are numeric and not v4-mapped: said with ${line} (listen's). */
void config_check_addrs(struct loader *ld, const struct listen_addr *list, size_t n,
    int line);

/* The checks across keys, after every line was read without error. */
void config_check(struct loader *ld);

/* The [device NAME] profiles (confdevice.c), from config_check(), after the upstreams. */
void config_check_devices(struct loader *ld);

/* The [listener NAME] sections (conflistener.c), from config_check(): their addresses
 * join listen[], their certificates are loaded. */
void config_check_listeners(struct loader *ld);

/* The [intercept NAME] rules (confintercept.c), from config_check(), after the upstreams. */
void config_check_intercepts(struct loader *ld);

/* The OAuth2 keys of the upstream ld->up (confoauth2.c), from config_check(). */
void config_check_oauth2(struct loader *ld);

#endif
