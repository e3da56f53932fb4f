/* jsonw.h - a small JSON writer into a caller's buffer, for documents built on hot paths
 * (alerts, live updates) where building a cJSON tree and printing it would cost more than the
 * rest of the work.
 *
 *   char buf[1024];
 *   jsonw_t w;
 *   jsonw_init(&w, buf, sizeof buf);
 *   jsonw_object_begin(&w);
 *   jsonw_key(&w, "rule");  jsonw_string(&w, "repeat_contact");
 *   jsonw_key(&w, "count"); jsonw_int(&w, 4);
 *   jsonw_object_end(&w);
 *   if (jsonw_finish(&w) < 0) ...   // too long for buf, or unbalanced
 *
 * Commas are placed by the writer. Strings are escaped as RFC 8259 requires (quote,
 * backslash, control characters); bytes that are not valid UTF-8 become U+FFFD, so the output
 * is always valid JSON text. Numbers that are not finite are written as null. Nothing is
 * allocated; past the buffer's end the writer only counts, and jsonw_finish says so. */
#ifndef INTEGRAL_JSONW_H
#define INTEGRAL_JSONW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JSONW_MAX_DEPTH 32

typedef struct {
    char *buf;
    size_t cap;
    size_t len;       /* bytes the document needs so far (may exceed cap) */
    int depth;
    bool failed;      /* unbalanced, or too deep */
    bool need_comma[JSONW_MAX_DEPTH + 1];
    bool after_key;
} jsonw_t;

void jsonw_init(jsonw_t *w, char *buf, size_t cap);

void jsonw_object_begin(jsonw_t *w);
void jsonw_object_end(jsonw_t *w);
void jsonw_array_begin(jsonw_t *w);
void jsonw_array_end(jsonw_t *w);

/* An object member's name; the value written next belongs to it. */
void jsonw_key(jsonw_t *w, const char *key);

void jsonw_string(jsonw_t *w, const char *s);            /* NULL writes null */
void jsonw_stringn(jsonw_t *w, const char *s, size_t n);
void jsonw_int(jsonw_t *w, int64_t v);
void jsonw_number(jsonw_t *w, double v);                 /* shortest form that reads back */
void jsonw_fixed(jsonw_t *w, double v, int decimals);    /* e.g. amounts with 2 decimals */
void jsonw_bool(jsonw_t *w, bool v);
void jsonw_null(jsonw_t *w);
/* A value that is already JSON text (e.g. a stored object), written as it is. */
void jsonw_raw(jsonw_t *w, const char *json, size_t n);

/* NUL-terminates the document. Returns its length, or -1 when it did not fit in cap - 1
 * bytes or the nesting is unbalanced. */
long jsonw_finish(jsonw_t *w);


/* Writes v in decimal backwards, ending just before end; returns where the digits start (at
 * most 20 bytes before end). The one integer formatter of the JSON writers and the engine's
 * Redis commands: printf costs ~700-900 instructions a number. */
static inline char *jsonw_digits(char *end, uint64_t v)
{
    do
        *--end = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    return end;
}

/* The bytes of x (8 bytes of a string, in memory order) that are below 0x20, '"' or '\\', i.e.
 * need escaping in JSON, as their high bits: (v - 0x01..) & ~v & 0x80.. marks the bytes of v
 * that are zero ("Bit Twiddling Hacks"), and (x - 0x20..) & ~x & 0x80.. those of x below 0x20.
 * Bytes >= 0x80 never match. A borrow can only mark a byte above a true match, so the lowest
 * set bit is always a true one: on a little-endian machine, the first such byte in memory. */
static inline uint64_t jsonw_word_escape_bits(uint64_t x)
{
    const uint64_t ones = UINT64_C(0x0101010101010101), highs = UINT64_C(0x8080808080808080);
    uint64_t quote = x ^ (ones * '"'), backslash = x ^ (ones * '\\');
    uint64_t hits =
        ((x - ones * 0x20) & ~x) | ((quote - ones) & ~quote) | ((backslash - ones) & ~backslash);
    return hits & highs;
}

/* Whether any of the 8 bytes needs escaping. Shared with the engine's document writer and its
 * JSON scanner. */
static inline bool jsonw_word_needs_escape(uint64_t x)
{
    return jsonw_word_escape_bits(x) != 0;
}

#endif
