#ifndef MLABELS_H
#define MLABELS_H

#include <stddef.h>

/*
 * The fixed label values of the metrics: every counter with a label from one of these
 * tables has one slot per value, the last one "other" for a value the table does not
 * know, so no label can grow without bound. Pure: shared.c counts by index, the
 * exposition writer names the indices.
 */

/* session.deny reasons. */
#define MLABELS_NREFUSE		9
extern const char *const mlabels_refuse[MLABELS_NREFUSE];

/* upstream.fail stage: the upstream states and the login steps. */
#define MLABELS_NSTAGE		17
extern const char *const mlabels_stage[MLABELS_NSTAGE];

/* upstream.fail reason. */
#define MLABELS_NREASON		22
extern const char *const mlabels_reason[MLABELS_NREASON];

/* message result. */
#define MLABELS_NRESULT		6
extern const char *const mlabels_result[MLABELS_NRESULT];

/* TLS protocol version as SSL_get_version() names it. */
#define MLABELS_NVERSION	5
extern const char *const mlabels_version[MLABELS_NVERSION];

/* Handshake duration histogram: upper bounds in milliseconds (then +Inf). */
#define MLABELS_NBUCKET		11
extern const long mlabels_bucket_ms[MLABELS_NBUCKET];

/**
 * mlabels_index(table, n, name):
 * The index of ${name} in ${table} of ${n} values, the last of which is "other": that
 * last index when ${name} is NULL or not in the table.
 */
size_t mlabels_index(const char *const *table, size_t n, const char *name);

#endif
