#ifndef PROBEFMT_H
#define PROBEFMT_H

#include <stdio.h>

#include <jansson.h>

/*
 * The probe's report of one upstream (struct upstream_report, upreport.h) as text for a
 * person or as JSON for a script. Pure: a report in, words out.
 */
struct upstream_report;

/**
 * probefmt_hint(rep):
 * What to change in the configuration for the failure in ${rep}: upstream.c's own hint
 * when it gave one, else one chosen by the stage, reason and detail. NULL when ${rep}
 * did not fail.
 */
const char *probefmt_hint(const struct upstream_report *rep);

/**
 * probefmt_text(f, rep):
 * Write the report on ${rep} to ${f}: one section per step the preparation reached, the
 * step times, and the result (the first failure and its hint).
 */
void probefmt_text(FILE *f, const struct upstream_report *rep);

/**
 * probefmt_json(rep):
 * The report on ${rep} as a JSON object (new reference), or NULL if out of memory.
 */
json_t *probefmt_json(const struct upstream_report *rep);

#endif
