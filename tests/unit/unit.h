#ifndef UNIT_H
#define UNIT_H

/* Shared by the unit tests: cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define NELEM(a)	(sizeof(a) / sizeof((a)[0]))
/* A string literal as (pointer, length), so embedded NULs count. */
#define LIT(s)		(s), (sizeof(s) - 1)

/* Count the occurrences of needle in [p, p+n), overlapping ones included. */
static inline size_t
count_mem(const char *p, size_t n, const char *needle, size_t nl)
{
	size_t i, c = 0;

	if (nl == 0 || n < nl)
		return (0);
	for (i = 0; i + nl <= n; i++)
		if (memcmp(p + i, needle, nl) == 0)
			c++;
	return (c);
}

/* 1 if [p, p+n) holds a CR not followed by LF or an LF not preceded by CR. */
static inline int
has_bare_crlf(const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (p[i] == '\r' && (i + 1 == n || p[i + 1] != '\n'))
			return (1);
		if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
			return (1);
	}
	return (0);
}

#endif
