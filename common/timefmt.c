/* timefmt.c - RFC 3339 date-times: parsed strictly, written always the same way. See
 * timefmt.h. Days from and to civil dates use Howard Hinnant's algorithms (no timegm, no
 * locale, no time zone database). */
#include "timefmt.h"

#include <stdbool.h>
#include <string.h>


#define DAY_MS INT64_C(86400000)

static bool is_leap_year(int year)
{
    return year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
}

static int days_in_month(int year, int month)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return month == 2 && is_leap_year(year) ? 29 : days[month - 1];
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (H. Hinnant's
 * days_from_civil: exact for every year, no table, no timegm and its time zone). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* The inverse of days_from_civil. */
static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* Reads exactly n digits at *p as a number in [min, max] and advances past them. Stops at
 * the first non-digit, so it never reads past the string's NUL. */
static bool read_number(const char **p, int n, int min, int max, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + (c - '0');
    }
    if (v < min || v > max)
        return false;
    *p += n;
    *out = v;
    return true;
}

/* Advances past c (or its lower-case twin, as RFC 3339 allows for T and Z) if *p is c. */
static bool skip_char(const char **p, char c)
{
    if (**p != c && !(c >= 'A' && c <= 'Z' && **p == c - 'A' + 'a'))
        return false;
    (*p)++;
    return true;
}

/* full-date = YYYY-MM-DD, checked against the month's length (Feb 29 only in leap years). */
static bool read_date(const char **p, int64_t *days)
{
    int year, month, day;
    if (!read_number(p, 4, 0, 9999, &year) || !skip_char(p, '-') ||
        !read_number(p, 2, 1, 12, &month) || !skip_char(p, '-') ||
        !read_number(p, 2, 1, days_in_month(year, month), &day))
        return false;
    *days = days_from_civil(year, month, day);
    return true;
}

/* time-secfrac = "." 1*DIGIT. Up to 9 digits (ns); only the first 3 count (truncated). */
static bool read_fraction(const char **p, int *ms)
{
    *ms = 0;
    if (!skip_char(p, '.'))
        return true;
    int n = 0;
    for (; (*p)[n] >= '0' && (*p)[n] <= '9'; n++)
        if (n < 3)
            *ms = *ms * 10 + ((*p)[n] - '0');
    if (n == 0 || n > 9)
        return false;
    for (int i = n; i < 3; i++)
        *ms *= 10;
    *p += n;
    return true;
}

/* time-offset = "Z" / ("+" / "-") HH:MM, as ms to subtract from local time to get UTC. */
static bool read_offset(const char **p, int64_t *offset_ms)
{
    int sign = **p == '-' ? -1 : 1, hours, minutes;
    if (skip_char(p, 'Z')) {
        *offset_ms = 0;
        return true;
    }
    if (!skip_char(p, '+') && !skip_char(p, '-'))
        return false;
    if (!read_number(p, 2, 0, 23, &hours) || !skip_char(p, ':') ||
        !read_number(p, 2, 0, 59, &minutes))
        return false;
    *offset_ms = sign * ((int64_t)hours * 60 + minutes) * 60000;
    return true;
}

int timefmt_parse(const char *text, int64_t *ms)
{
    const char *p = text;
    int64_t days, offset_ms;
    int hour, minute, second, frac_ms;
    /* Second 60 is RFC 3339's leap second; it folds into the next second, as in POSIX time. */
    if (!read_date(&p, &days) || !skip_char(&p, 'T') || !read_number(&p, 2, 0, 23, &hour) ||
        !skip_char(&p, ':') || !read_number(&p, 2, 0, 59, &minute) || !skip_char(&p, ':') ||
        !read_number(&p, 2, 0, 60, &second) || !read_fraction(&p, &frac_ms) ||
        !read_offset(&p, &offset_ms) || *p != '\0')
        return -1;
    int64_t local_ms = days * DAY_MS + ((hour * 60 + minute) * 60 + second) * INT64_C(1000);
    *ms = local_ms + frac_ms - offset_ms;
    return 0;
}

int timefmt_parse_date_or_time(const char *text, int64_t *ms)
{
    const char *p = text;
    int64_t days;
    if (read_date(&p, &days) && *p == '\0') {
        *ms = days * DAY_MS;
        return 0;
    }
    return timefmt_parse(text, ms);
}

/* Two decimal digits of v (0-99) at p. */
static void put2(char *p, int v)
{
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
}

int timefmt_format(int64_t ms, char *out, size_t cap)
{
    if (cap < TIMEFMT_TEXT_SIZE)
        return -1;
    int64_t days = ms / DAY_MS, ms_of_day = ms % DAY_MS, year;
    if (ms_of_day < 0) { /* C division truncates toward zero; we need the floor */
        ms_of_day += DAY_MS;
        days--;
    }
    int month, day;
    civil_from_days(days, &year, &month, &day);
    out[0] = '\0';
    if (year < 0 || year > 9999)
        return -1;
    /* Digits written directly: through snprintf this was 3,400 instructions a call, 8 % of
     * the engine's (callgrind, tests/bench/README.md). */
    int s = (int)(ms_of_day / 1000), milli = (int)(ms_of_day % 1000);
    memcpy(out, "0000-00-00T00:00:00.000Z", TIMEFMT_TEXT_SIZE);
    put2(out, (int)year / 100);
    put2(out + 2, (int)year % 100);
    put2(out + 5, month);
    put2(out + 8, day);
    put2(out + 11, s / 3600);
    put2(out + 14, s / 60 % 60);
    put2(out + 17, s % 60);
    out[20] = (char)('0' + milli / 100);
    put2(out + 21, milli % 100);
    return TIMEFMT_TEXT_SIZE - 1;
}
