/* jsonw.c - JSON writer into a caller's buffer. See jsonw.h. */
#include "jsonw.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void jsonw_init(jsonw_t *w, char *buf, size_t cap)
{
    memset(w, 0, sizeof *w);
    w->buf = buf;
    w->cap = cap;
}

static void put(jsonw_t *w, const char *s, size_t n)
{
    if (w->len < w->cap) {
        size_t room = w->cap - w->len;
        memcpy(w->buf + w->len, s, n < room ? n : room);
    }
    w->len += n;
}

static void put_char(jsonw_t *w, char c)
{
    if (w->len < w->cap)
        w->buf[w->len] = c;
    w->len++;
}

/* Before any value: the comma between siblings (none right after a key). */
static void before_value(jsonw_t *w)
{
    if (w->after_key) {
        w->after_key = false;
        return;
    }
    if (w->need_comma[w->depth])
        put_char(w, ',');
    w->need_comma[w->depth] = true;
}

static void container_begin(jsonw_t *w, char c)
{
    before_value(w);
    put_char(w, c);
    if (w->depth == JSONW_MAX_DEPTH) {
        w->failed = true;
        return;
    }
    w->need_comma[++w->depth] = false;
}

static void container_end(jsonw_t *w, char c)
{
    if (w->depth == 0 || w->after_key)
        w->failed = true;
    else
        w->depth--;
    put_char(w, c);
}

void jsonw_object_begin(jsonw_t *w)
{
    container_begin(w, '{');
}

void jsonw_object_end(jsonw_t *w)
{
    container_end(w, '}');
}

void jsonw_array_begin(jsonw_t *w)
{
    container_begin(w, '[');
}

void jsonw_array_end(jsonw_t *w)
{
    container_end(w, ']');
}

/* Length of the valid UTF-8 character at s (at most n bytes), or 0 when invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, cp = c & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

static void put_escaped(jsonw_t *w, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    put_char(w, '"');
    size_t i = 0;
    while (i < n) {
        /* A run of printable ASCII other than '"' and '\\' goes as it is, in one copy: most
         * strings are nothing else (one put per byte was 12 % of the engine's instructions). */
        size_t run = i;
        for (uint64_t x; run + 8 <= n; run += 8) {
            memcpy(&x, p + run, 8);
            if (jsonw_word_needs_escape(x) || (x & UINT64_C(0x8080808080808080)))
                break;
        }
        while (run < n && p[run] >= 0x20 && p[run] < 0x80 && p[run] != '"' && p[run] != '\\')
            run++;
        if (run > i) {
            put(w, s + i, run - i);
            i = run;
            continue;
        }
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            put_char(w, '\\');
            put_char(w, (char)c);
            i++;
        } else if (c < 0x20) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04x", c);
            put(w, esc, 6);
            i++;
        } else {
            size_t len = utf8_len(p + i, n - i);
            if (len == 0) {
                put(w, "\xef\xbf\xbd", 3); /* U+FFFD for a byte that is not UTF-8 */
                i++;
            } else {
                put(w, s + i, len);
                i += len;
            }
        }
    }
    put_char(w, '"');
}

void jsonw_key(jsonw_t *w, const char *key)
{
    if (w->after_key)
        w->failed = true;
    before_value(w);
    put_escaped(w, key, strlen(key));
    put_char(w, ':');
    w->after_key = true;
}

void jsonw_stringn(jsonw_t *w, const char *s, size_t n)
{
    before_value(w);
    put_escaped(w, s, n);
}

void jsonw_string(jsonw_t *w, const char *s)
{
    if (!s) {
        jsonw_null(w);
        return;
    }
    jsonw_stringn(w, s, strlen(s));
}

/* The digits of u, `decimals` of them after a point, with a leading '-' when negative, ending
 * at end; returns where they start (at most 41 bytes before end). */
static char *digits_back(char *end, uint64_t u, int decimals, bool negative)
{
    char *at = end;
    for (int i = 0; i < decimals; i++, u /= 10)
        *--at = (char)('0' + u % 10);
    if (decimals > 0)
        *--at = '.';
    at = jsonw_digits(at, u);
    if (negative)
        *--at = '-';
    return at;
}

void jsonw_int(jsonw_t *w, int64_t v)
{
    char num[24], *end = num + sizeof num;
    char *at = digits_back(end, v < 0 ? 0 - (uint64_t)v : (uint64_t)v, 0, v < 0);
    before_value(w);
    put(w, at, (size_t)(end - at));
}

void jsonw_number(jsonw_t *w, double v)
{
    if (!isfinite(v)) {
        jsonw_null(w);
        return;
    }
    /* Whole numbers (counts, most feature values) below 10^15 print as "%.15g" prints them,
     * without printf and strtod: ~1,700 instructions a number otherwise (callgrind). -0 goes
     * the slow way, which keeps its sign. */
    if (v == nearbyint(v) && fabs(v) < 1e15 && !(v == 0 && signbit(v))) {
        jsonw_int(w, (int64_t)v);
        return;
    }
    char num[32];
    int n = 0;
    /* The shortest of 15..17 significant digits that reads back as the same double. */
    for (int digits = 15; digits <= 17; digits++) {
        n = snprintf(num, sizeof num, "%.*g", digits, v);
        if (strtod(num, NULL) == v)
            break;
    }
    before_value(w);
    put(w, num, (size_t)n);
}

void jsonw_fixed(jsonw_t *w, double v, int decimals)
{
    if (!isfinite(v)) {
        jsonw_null(w);
        return;
    }
    char num[48];
    /* Without printf when v * 10^decimals is within 1e-6 of a whole number below 2^53 (amounts
     * in cents, most scores): "%.*f" rounds to that same number, as no tie is that close. */
    double scaled = decimals >= 0 && decimals <= 9 ? v * pow(10, decimals) : INFINITY;
    double whole = nearbyint(scaled);
    if (fabs(scaled) < 9007199254740992.0 && fabs(scaled - whole) < 1e-6) {
        char *end = num + sizeof num;
        char *at = digits_back(end, (uint64_t)fabs(whole), decimals, signbit(v));
        before_value(w);
        put(w, at, (size_t)(end - at));
        return;
    }
    int n = snprintf(num, sizeof num, "%.*f", decimals, v);
    if (n < 0 || (size_t)n >= sizeof num) {
        jsonw_number(w, v); /* too large for fixed notation */
        return;
    }
    before_value(w);
    put(w, num, (size_t)n);
}

void jsonw_bool(jsonw_t *w, bool v)
{
    before_value(w);
    put(w, v ? "true" : "false", v ? 4 : 5);
}

void jsonw_null(jsonw_t *w)
{
    before_value(w);
    put(w, "null", 4);
}

void jsonw_raw(jsonw_t *w, const char *json, size_t n)
{
    before_value(w);
    put(w, json, n);
}

long jsonw_finish(jsonw_t *w)
{
    if (w->failed || w->depth != 0 || w->after_key || w->len + 1 > w->cap) {
        if (w->cap > 0)
            w->buf[w->len < w->cap ? w->len : w->cap - 1] = '\0';
        return -1;
    }
    w->buf[w->len] = '\0';
    return (long)w->len;
}
