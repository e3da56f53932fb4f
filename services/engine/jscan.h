/* jscan.h - a strict JSON scanner for the engine's event codec: one pass over a message
 * checks it against RFC 8259 and records its values as a flat array of tokens in document
 * order. Nothing is allocated and nothing is decoded until asked: a string token is a span of
 * the message, decoded by jscan_string only when its value is wanted.
 *
 * Why not a library: cJSON (which the codec used before) builds a tree with a malloc per node
 * and string and was a quarter of the engine's instructions per event; Debian's jsmn
 * tokenizer is as cheap but accepts invalid JSON ({"a":1,}, [1 2], {"a":}, ["a":1], tru,
 * 1.2.3, raw control characters in strings), so it would need a validator as large as this.
 *
 * Stricter than cJSON 1.7.15 where RFC 8259 is: leading zeros (01), a bare fraction point
 * (1.), raw control characters inside strings, lone UTF-16 surrogates, and more than
 * JSCAN_DEPTH_MAX levels of nesting are errors. */
#ifndef INTEGRAL_JSCAN_H
#define INTEGRAL_JSCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JSCAN_DEPTH_MAX 64
/* Values in one message: an event has about 30, 64 KiB of [0,0,...] has 32k. */
#define JSCAN_TOKENS_MAX 65536

typedef enum {
    JSCAN_OBJECT,
    JSCAN_ARRAY,
    JSCAN_STRING,
    JSCAN_NUMBER,
    JSCAN_TRUE,
    JSCAN_FALSE,
    JSCAN_NULL,
} jscan_type_t;

/* An object's members are its key (a string token) followed by its value; next skips a value
 * with everything inside it. */
typedef struct {
    uint8_t type;    /* jscan_type_t */
    uint8_t escaped; /* a string with a backslash: jscan_string decodes it */
    uint32_t start;  /* offset of the value; of a string, of its first byte after the quote */
    uint32_t len;    /* bytes; of a string, its bytes between the quotes, still escaped */
    uint32_t next;   /* index of the token after this value */
} jscan_token_t;

typedef struct {
    const char *text;
    jscan_token_t *tokens;
    uint32_t count;
} jscan_doc_t;

/* Scans text[0..len) (need not be NUL-terminated) into doc, using tokens[0..cap). Returns 0,
 * or -1 with *error_at the offset of the first byte that is not valid JSON (len when the text
 * ends early) and *what a short description. */
int jscan_parse(const char *text, size_t len, jscan_token_t *tokens, uint32_t cap,
                jscan_doc_t *doc, size_t *error_at, const char **what);

/* Index of the member of object token obj whose key is name (length name_len); -1 when it is
 * absent, -2 when it occurs more than once. */
int jscan_member(const jscan_doc_t *doc, uint32_t obj, const char *name, size_t name_len);

/* Decodes string token t into out (cap >= 1), as snprintf does: at most cap - 1 bytes and a
 * NUL are written, and the whole decoded length is returned (the value was cut when that is
 * cap or more), or -1 when it holds \u0000. */
long jscan_string(const jscan_doc_t *doc, uint32_t t, char *out, size_t cap);

/* The number token t as the nearest double (±inf when out of range). */
double jscan_number(const jscan_doc_t *doc, uint32_t t);

/* Number of elements of array token t. */
uint32_t jscan_array_size(const jscan_doc_t *doc, uint32_t t);

#endif
