/* timefmt.h - RFC 3339 date-times, the format of every time Integral reads or writes. */
#ifndef INTEGRAL_TIMEFMT_H
#define INTEGRAL_TIMEFMT_H

#include <stddef.h>
#include <stdint.h>

/* "2026-11-30T17:02:20.123Z" plus the NUL: what timefmt_format writes. */
#define TIMEFMT_TEXT_SIZE 25

/* Parses an RFC 3339 date-time (NUL-terminated; any offset, any fraction, a leap second
 * folded into the next). Returns 0 with *ms set (UTC, ms since the epoch), or -1. */
int timefmt_parse(const char *text, int64_t *ms);

/* As timefmt_parse, and also a full-date alone ("2024-02-29"), meaning midnight UTC. */
int timefmt_parse_date_or_time(const char *text, int64_t *ms);

/* Writes ms as "2026-11-30T17:02:20.123Z" (always UTC, always milliseconds) and a NUL.
 * Returns the length (24), or -1 when cap < TIMEFMT_TEXT_SIZE or the year is outside
 * 0000-9999 (out then holds ""). */
int timefmt_format(int64_t ms, char *out, size_t cap);

#endif
