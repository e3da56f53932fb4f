/* jscan.c - a strict JSON scanner: see jscan.h. */
#include "jscan.h"

#include "jsonw.h"
#include "utf8.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *s;
    size_t len, at;
    jscan_token_t *tokens;
    uint32_t cap, count;
    const char *what; /* why scanning stopped */
} scan_t;

/* ---- Scanning */

static int fail(scan_t *sc, const char *what)
{
    sc->what = what;
    return -1;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static void skip_space(scan_t *sc)
{
    while (sc->at < sc->len) {
        char c = sc->s[sc->at];
        if (c != ' ' && c != '\n' && c != '\r' && c != '\t')
            return;
        sc->at++;
    }
}

/* Appends a token for the value at s[start .. start + len); returns its index or -1. */
static long add_token(scan_t *sc, jscan_type_t type, size_t start, size_t len)
{
    if (sc->count == sc->cap)
        return fail(sc, "too many values");
    jscan_token_t *t = &sc->tokens[sc->count];
    t->type = (uint8_t)type;
    t->escaped = 0;
    t->start = (uint32_t)start;
    t->len = (uint32_t)len;
    t->next = sc->count + 1;
    return sc->count++;
}

/* The 4 hex digits at s[0..3], or -1. */
static long hex4(const char *s)
{
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int d = hex_digit_value(s[i]);
        if (d < 0)
            return -1;
        v = v << 4 | d;
    }
    return v;
}

/* Checks the escape at sc->at (the backslash) and moves past it. A UTF-16 high surrogate must
 * be followed by an escaped low one, and a low one must not come alone. */
static int scan_escape(scan_t *sc)
{
    const char *s = sc->s;
    size_t left = sc->len - sc->at;
    if (left < 2)
        return fail(sc, "unterminated string");
    switch (s[sc->at + 1]) {
    case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
        sc->at += 2;
        return 0;
    case 'u':
        break;
    default:
        return fail(sc, "bad escape");
    }
    long unit = left >= 6 ? hex4(s + sc->at + 2) : -1;
    if (unit < 0)
        return fail(sc, "bad \\u escape");
    if (unit >= 0xDC00 && unit <= 0xDFFF)
        return fail(sc, "lone UTF-16 low surrogate");
    if (unit >= 0xD800 && unit <= 0xDBFF) {
        long low = left >= 12 && s[sc->at + 6] == '\\' && s[sc->at + 7] == 'u'
                       ? hex4(s + sc->at + 8)
                       : -1;
        if (low < 0xDC00 || low > 0xDFFF)
            return fail(sc, "UTF-16 high surrogate without its low half");
        sc->at += 6;
    }
    sc->at += 6;
    return 0;
}

/* Moves sc->at to the next quote, backslash or control character (or the end), 8 bytes at a
 * time: on a little-endian machine the lowest marked byte of a word is the one. */
static void skip_plain(scan_t *sc)
{
    const unsigned char *s = (const unsigned char *)sc->s;
    while (sc->len - sc->at >= 8) {
        uint64_t word;
        memcpy(&word, s + sc->at, 8);
        uint64_t bits = jsonw_word_escape_bits(word);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        if (bits) {
            sc->at += (size_t)__builtin_ctzll(bits) / 8;
            return;
        }
#else
        if (bits)
            break;
#endif
        sc->at += 8;
    }
    while (sc->at < sc->len && s[sc->at] != '"' && s[sc->at] != '\\' && s[sc->at] >= 0x20)
        sc->at++;
}

/* A string from its opening quote at sc->at. */
static int scan_string(scan_t *sc)
{
    size_t start = ++sc->at;
    bool escaped = false;
    for (;;) {
        skip_plain(sc);
        if (sc->at >= sc->len)
            return fail(sc, "unterminated string");
        unsigned char c = (unsigned char)sc->s[sc->at];
        if (c == '"')
            break;
        if (c < 0x20)
            return fail(sc, "control character in a string");
        escaped = true;
        if (scan_escape(sc) < 0)
            return -1;
    }
    long t = add_token(sc, JSCAN_STRING, start, sc->at - start);
    if (t < 0)
        return -1;
    sc->tokens[t].escaped = escaped;
    sc->at++; /* the closing quote */
    return 0;
}

static int bad_number(scan_t *sc, size_t at)
{
    sc->at = at;
    return fail(sc, "bad number");
}

static size_t skip_digits(const char *s, size_t i, size_t len)
{
    while (i < len && is_digit(s[i]))
        i++;
    return i;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int scan_number(scan_t *sc)
{
    const char *s = sc->s;
    size_t i = sc->at, start = sc->at;
    if (s[i] == '-')
        i++;
    if (i < sc->len && s[i] == '0')
        i++;
    else if (i < sc->len && is_digit(s[i]))
        i = skip_digits(s, i, sc->len);
    else
        return bad_number(sc, i);
    if (i < sc->len && s[i] == '.') {
        if (++i >= sc->len || !is_digit(s[i]))
            return bad_number(sc, i);
        i = skip_digits(s, i, sc->len);
    }
    if (i < sc->len && (s[i] == 'e' || s[i] == 'E')) {
        if (++i < sc->len && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= sc->len || !is_digit(s[i]))
            return bad_number(sc, i);
        i = skip_digits(s, i, sc->len);
    }
    sc->at = i;
    return add_token(sc, JSCAN_NUMBER, start, i - start) < 0 ? -1 : 0;
}

static int scan_literal(scan_t *sc, const char *word, size_t n, jscan_type_t type)
{
    if (sc->len - sc->at < n || memcmp(sc->s + sc->at, word, n) != 0)
        return fail(sc, "expected a value");
    sc->at += n;
    return add_token(sc, type, sc->at - n, n) < 0 ? -1 : 0;
}

/* A member's name and its colon; sc->at is on the first byte after '{' or ','. */
static int scan_key(scan_t *sc)
{
    skip_space(sc);
    if (sc->at >= sc->len || sc->s[sc->at] != '"')
        return fail(sc, "expected a member name");
    if (scan_string(sc) < 0)
        return -1;
    skip_space(sc);
    if (sc->at >= sc->len || sc->s[sc->at] != ':')
        return fail(sc, "expected ':'");
    sc->at++;
    return 0;
}

typedef struct {
    uint32_t open[JSCAN_DEPTH_MAX]; /* token indices of the containers around sc->at */
    int depth;
} nesting_t;

static void close_container(scan_t *sc, nesting_t *n)
{
    jscan_token_t *t = &sc->tokens[n->open[--n->depth]];
    sc->at++;
    t->len = (uint32_t)(sc->at - t->start);
    t->next = sc->count;
}

/* One value, or the opening of a container. Returns 1 when a container was opened and its
 * first value (or member name) comes next, 0 when a whole value was scanned, -1 on error. */
static int scan_value(scan_t *sc, nesting_t *n)
{
    skip_space(sc);
    if (sc->at >= sc->len)
        return fail(sc, "expected a value");
    char c = sc->s[sc->at];
    switch (c) {
    case '{':
    case '[': {
        if (n->depth == JSCAN_DEPTH_MAX)
            return fail(sc, "nested too deeply");
        long t = add_token(sc, c == '{' ? JSCAN_OBJECT : JSCAN_ARRAY, sc->at, 0);
        if (t < 0)
            return -1;
        n->open[n->depth++] = (uint32_t)t;
        sc->at++;
        skip_space(sc);
        if (sc->at < sc->len && sc->s[sc->at] == (c == '{' ? '}' : ']')) {
            close_container(sc, n);
            return 0;
        }
        return c == '{' && scan_key(sc) < 0 ? -1 : 1;
    }
    case '"':
        return scan_string(sc);
    case 't':
        return scan_literal(sc, "true", 4, JSCAN_TRUE);
    case 'f':
        return scan_literal(sc, "false", 5, JSCAN_FALSE);
    case 'n':
        return scan_literal(sc, "null", 4, JSCAN_NULL);
    default:
        if (c == '-' || is_digit(c))
            return scan_number(sc);
        return fail(sc, "expected a value");
    }
}

/* After a whole value: closes what ends here. Returns 1 when another value (or member) comes
 * next, 0 at the end of the text, -1 on error. */
static int after_value(scan_t *sc, nesting_t *n)
{
    for (;;) {
        skip_space(sc);
        if (n->depth == 0)
            return sc->at == sc->len ? 0 : fail(sc, "bytes after the value");
        if (sc->at >= sc->len)
            return fail(sc, "unexpected end");
        bool object = sc->tokens[n->open[n->depth - 1]].type == JSCAN_OBJECT;
        char c = sc->s[sc->at];
        if (c == ',') {
            sc->at++;
            return object && scan_key(sc) < 0 ? -1 : 1;
        }
        if (c != (object ? '}' : ']'))
            return fail(sc, object ? "expected ',' or '}'" : "expected ',' or ']'");
        close_container(sc, n);
    }
}

int jscan_parse(const char *text, size_t len, jscan_token_t *tokens, uint32_t cap,
                jscan_doc_t *doc, size_t *error_at, const char **what)
{
    scan_t sc = {.s = text, .len = len, .tokens = tokens, .cap = cap};
    nesting_t n = {.depth = 0};
    int rc;
    if (len > UINT32_MAX - 1) {
        sc.what = "text too long";
        rc = -1;
    } else {
        do {
            rc = scan_value(&sc, &n);
            if (rc == 0)
                rc = after_value(&sc, &n);
        } while (rc == 1);
    }
    doc->text = text;
    doc->tokens = tokens;
    doc->count = sc.count;
    if (rc < 0) {
        *error_at = sc.at < len ? sc.at : len;
        *what = sc.what;
        return -1;
    }
    return 0;
}

/* ---- Reading */

/* Appends the UTF-8 of code point cp to out within cap (the NUL's byte kept free); o counts
 * every byte, written or not. */
static size_t put_utf8(char *out, size_t cap, size_t o, uint32_t cp)
{
    char bytes[4];
    size_t n = utf8_encode(cp, bytes);
    for (size_t i = 0; i < n; i++, o++)
        if (o + 1 < cap)
            out[o] = bytes[i];
    return o;
}

static char simple_escape(char e)
{
    switch (e) {
    case 'b': return '\b';
    case 'f': return '\f';
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    default: return e; /* " \ / */
    }
}

long jscan_string(const jscan_doc_t *doc, uint32_t t, char *out, size_t cap)
{
    const jscan_token_t *k = &doc->tokens[t];
    const char *s = doc->text + k->start;
    size_t o = 0;
    if (!k->escaped) {
        size_t n = k->len < cap ? k->len : cap - 1;
        memcpy(out, s, n);
        out[n] = '\0';
        return (long)k->len;
    }
    for (size_t i = 0; i < k->len;) {
        if (s[i] != '\\') {
            if (o + 1 < cap)
                out[o] = s[i];
            o++, i++;
            continue;
        }
        if (s[i + 1] != 'u') {
            if (o + 1 < cap)
                out[o] = simple_escape(s[i + 1]);
            o++, i += 2;
            continue;
        }
        long cp = hex4(s + i + 2); /* the scanner checked the digits and the pairs */
        i += 6;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (hex4(s + i + 2) - 0xDC00);
            i += 6;
        }
        if (cp == 0)
            return -1;
        o = put_utf8(out, cap, o, (uint32_t)cp);
    }
    out[o < cap ? o : cap - 1] = '\0';
    return (long)o;
}

static bool key_is(const jscan_doc_t *doc, uint32_t k, const char *name, size_t name_len)
{
    const jscan_token_t *t = &doc->tokens[k];
    const char *key = doc->text + t->start;
    if (!t->escaped) /* the first byte inline: most names differ there */
        return t->len == name_len && (name_len == 0 || key[0] == name[0]) &&
               memcmp(key, name, name_len) == 0;
    char decoded[64];
    long n = jscan_string(doc, k, decoded, sizeof decoded);
    return n >= 0 && (size_t)n == name_len && name_len < sizeof decoded &&
           memcmp(decoded, name, name_len) == 0;
}

int jscan_member(const jscan_doc_t *doc, uint32_t obj, const char *name, size_t name_len)
{
    const jscan_token_t *tok = doc->tokens;
    int found = -1;
    for (uint32_t k = obj + 1; k < tok[obj].next; k = tok[k + 1].next) {
        if (!key_is(doc, k, name, name_len))
            continue;
        if (found >= 0)
            return -2;
        found = (int)(k + 1);
    }
    return found;
}

uint32_t jscan_array_size(const jscan_doc_t *doc, uint32_t t)
{
    uint32_t n = 0;
    for (uint32_t e = t + 1; e < doc->tokens[t].next; e = doc->tokens[e].next)
        n++;
    return n;
}

/* Powers of ten that a double holds exactly. */
static const double exact_tens[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                    1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                    1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* Up to 15 digits without an exponent: the digits as an integer (exact below 2^53) divided
 * by an exact power of ten is one correctly rounded operation, so the result is the double
 * nearest the decimal, as strtod gives. Anything else goes to strtod. */
double jscan_number(const jscan_doc_t *doc, uint32_t t)
{
    const jscan_token_t *k = &doc->tokens[t];
    const char *s = doc->text + k->start;
    size_t i = s[0] == '-', digits = 0, decimals = 0;
    uint64_t mantissa = 0;
    bool fraction = false;
    for (; i < k->len; i++) {
        char c = s[i];
        if (c == '.') {
            fraction = true;
            continue;
        }
        if (!is_digit(c) || ++digits > 15)
            break;
        mantissa = mantissa * 10 + (uint64_t)(c - '0');
        decimals += fraction;
    }
    if (i == k->len) {
        double v = (double)mantissa / exact_tens[decimals];
        return s[0] == '-' ? -v : v;
    }
    char small[64];
    char *copy = k->len < sizeof small ? small : malloc(k->len + 1);
    if (!copy)
        return s[0] == '-' ? -HUGE_VAL : HUGE_VAL; /* out of memory: refused as out of range */
    memcpy(copy, s, k->len);
    copy[k->len] = '\0';
    double v = strtod(copy, NULL);
    if (copy != small)
        free(copy);
    return v;
}
