#ifndef EXPO_H
#define EXPO_H

#include <stddef.h>

#include "shared.h"

/*
 * The Prometheus text exposition (version 0.0.4) of a metrics snapshot. Pure: a
 * snapshot and names in, text out; metrics.c serves it.
 */

/* What the snapshot does not say itself: the upstream of each shared slot. */
struct expo_names {
	const char	*upstream[SHARED_TOKENS];	/* NULL: no upstream has that slot now */
};

/**
 * expo_render(snap, names, lenp):
 * The exposition text of ${snap}, with upstream slots named by ${names} (a slot with
 * counts but no name is shown as "slotN"), in a buffer the caller frees; its length in
 * *${lenp}. NULL if out of memory.
 */
char *expo_render(const struct shared_snapshot *snap, const struct expo_names *names,
    size_t *lenp);

#endif
