/* template.c - compiles message templates into literal runs and fields, renders them into a
 * bounded buffer. See template.h.
 *
 * A compiled template is a list of parts, each a run of literal text (braces already
 * unescaped, in one pool) followed by at most one field. Rendering appends each part through a
 * writer that never overruns its buffer and, once full, cuts at a UTF-8 character boundary. */
#include "template.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_QUOTE_MAX 60
#define REPLACEMENT "\xef\xbf\xbd" /* U+FFFD, for bytes of a value that are not UTF-8 */

typedef enum { FORMAT_PLAIN, FORMAT_FIXED, FORMAT_PERCENT } format_t;

typedef struct {
    uint16_t text, text_len; /* literal before the field, in the pool */
    bool has_field;          /* false only for the last part */
    uint8_t type;            /* expr_type_t of the feature */
    uint8_t format;          /* format_t */
    uint8_t decimals;
    uint16_t feature;
} part_t;

struct template {
    size_t n_parts;
    part_t *parts;
    char *pool;
};

/* ------------------------------------------------------------------------------------------
 * Compile
 * ------------------------------------------------------------------------------------------ */

typedef struct {
    const char *src;
    size_t len;
    const expr_resolver_t *resolver;
    expr_error_t *err;
    part_t parts[TEMPLATE_MAX_FIELDS + 1];
    size_t n_parts;
    char pool[TEMPLATE_MAX_LEN]; /* literal text is never longer than its source */
    size_t pool_len;
} compiler_t;

static int fail(compiler_t *c, int code, size_t offset, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(compiler_t *c, int code, size_t offset, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    expr__verror(c->err, code, offset, fmt, ap);
    va_end(ap);
    return code;
}

static void add_text(compiler_t *c, const char *s, size_t n)
{
    assert(c->pool_len + n <= sizeof c->pool);
    memcpy(c->pool + c->pool_len, s, n);
    c->pool_len += n;
}

static const char *type_name(expr_type_t t)
{
    return t == EXPR_STRING ? "a string" : t == EXPR_BOOL ? "a bool" : "a number";
}

/* ":.Nf" or ":.N%" at src[i] (the colon); sets *end past it. */
static int parse_format(compiler_t *c, size_t i, part_t *part, const char *name, size_t *end)
{
    const char *s = c->src;
    if (i + 3 >= c->len || s[i + 1] != '.' || s[i + 2] < '0' || s[i + 2] > '9' ||
        (s[i + 3] != 'f' && s[i + 3] != '%'))
        return fail(c, EXPR_ESYNTAX, i + 1, "expected a format: .Nf or .N%% (N is 0-9)");
    if (part->type != EXPR_NUMBER)
        return fail(c, EXPR_ETYPE, i + 1, "format .%c%c needs a number; %s is %s", s[i + 2],
                    s[i + 3], name, type_name((expr_type_t)part->type));
    part->format = s[i + 3] == 'f' ? FORMAT_FIXED : FORMAT_PERCENT;
    part->decimals = (uint8_t)(s[i + 2] - '0');
    *end = i + 4;
    return 0;
}

/* A field at src[i] (the opening brace): name, optional format, closing brace. Sets *end past
 * it and fills part's field. */
static int parse_field(compiler_t *c, size_t i, part_t *part, size_t *end)
{
    if (c->n_parts > TEMPLATE_MAX_FIELDS)
        return fail(c, EXPR_ELIMIT, i, "more than %d fields", TEMPLATE_MAX_FIELDS);
    size_t at = i + 1, n = expr__name_len(c->src + at, c->len - at);
    if (n == 0)
        return fail(c, EXPR_ESYNTAX, at, "expected a feature name after '{'");
    char name[NAME_QUOTE_MAX + 1];
    snprintf(name, sizeof name, "%.*s", (int)(n < NAME_QUOTE_MAX ? n : NAME_QUOTE_MAX),
             c->src + at);
    expr_feature_t f;
    if (c->resolver->resolve(c->resolver, c->src + at, n, &f) != 0)
        return fail(c, EXPR_EUNKNOWN, at, "unknown feature \"%s\"", name);
    if (f.index >= EXPR_MAX_FEATURES || f.type < EXPR_NUMBER || f.type > EXPR_BOOL)
        return fail(c, EXPR_EUNKNOWN, at, "feature \"%s\" has an invalid index or type", name);
    part->has_field = true;
    part->feature = (uint16_t)f.index;
    part->type = (uint8_t)f.type;
    part->format = FORMAT_PLAIN;
    size_t k = at + n;
    int rc;
    if (k < c->len && c->src[k] == ':' && (rc = parse_format(c, k, part, name, &k)) < 0)
        return rc;
    if (k >= c->len || c->src[k] != '}')
        return fail(c, EXPR_ESYNTAX, k, "expected '}'");
    *end = k + 1;
    return 0;
}

static part_t *begin_part(compiler_t *c)
{
    part_t *p = &c->parts[c->n_parts++];
    *p = (part_t){.text = (uint16_t)c->pool_len};
    return p;
}

static int parse(compiler_t *c)
{
    part_t *part = begin_part(c);
    size_t i = 0;
    while (i < c->len) {
        const char *s = c->src + i;
        bool doubled = i + 1 < c->len && s[1] == s[0];
        if ((s[0] == '{' || s[0] == '}') && doubled) {
            add_text(c, s, 1);
            i += 2;
        } else if (s[0] == '}') {
            return fail(c, EXPR_ESYNTAX, i, "unmatched '}' (write '}}' for a literal brace)");
        } else if (s[0] == '{') {
            part->text_len = (uint16_t)(c->pool_len - part->text);
            int rc = parse_field(c, i, part, &i);
            if (rc < 0)
                return rc;
            part = begin_part(c);
        } else if (s[0] == '\0') {
            return fail(c, EXPR_ESYNTAX, i, "NUL byte in template");
        } else {
            size_t n = expr__utf8_char_len(s, c->len - i);
            if (n == 0)
                return fail(c, EXPR_ESYNTAX, i, "invalid UTF-8 in template");
            add_text(c, s, n);
            i += n;
        }
    }
    part->text_len = (uint16_t)(c->pool_len - part->text);
    return 0;
}

static template_t *build(const compiler_t *c)
{
    size_t parts = c->n_parts * sizeof(part_t);
    char *block = malloc(sizeof(template_t) + parts + c->pool_len);
    if (!block)
        return NULL;
    template_t *t = (template_t *)block;
    t->n_parts = c->n_parts;
    t->parts = (part_t *)(block + sizeof *t);
    t->pool = (char *)t->parts + parts;
    memcpy(t->parts, c->parts, parts);
    memcpy(t->pool, c->pool, c->pool_len);
    return t;
}

int template_compile(const char *src, size_t len, const expr_resolver_t *resolver,
                     template_t **out, expr_error_t *err)
{
    *out = NULL;
    *err = (expr_error_t){0};
    if (len > TEMPLATE_MAX_LEN) {
        snprintf(err->message, sizeof err->message, "template longer than %d bytes",
                 TEMPLATE_MAX_LEN);
        err->offset = TEMPLATE_MAX_LEN;
        return err->code = EXPR_ELIMIT;
    }
    compiler_t *c = malloc(sizeof *c);
    if (!c) {
        snprintf(err->message, sizeof err->message, "out of memory");
        return err->code = EXPR_ENOMEM;
    }
    *c = (compiler_t){.src = src, .len = len, .resolver = resolver, .err = err};
    int rc = parse(c);
    if (rc == 0 && !(*out = build(c)))
        rc = fail(c, EXPR_ENOMEM, 0, "out of memory");
    free(c);
    return rc;
}

void template_free(template_t *t)
{
    free(t);
}

/* ------------------------------------------------------------------------------------------
 * Render
 * ------------------------------------------------------------------------------------------ */

typedef struct {
    char *out;
    size_t cap, len; /* len < cap: one byte stays for the NUL */
    bool truncated;
} writer_t;

/* Bytes of a UTF-8 sequence, from its first byte (the text is known to be valid). */
static size_t sequence_len(unsigned char lead)
{
    return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
}

/* The longest prefix of s[0 .. n - 1] made of whole characters. */
static size_t whole_chars(const char *s, size_t n)
{
    size_t i = n;
    while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80)
        i--;
    if (i == 0)
        return 0;
    size_t lead = i - 1;
    return lead + sequence_len((unsigned char)s[lead]) <= n ? n : lead;
}

/* The buffer is full and more was coming: end it at a character boundary, with the ellipsis
 * when there is room for it. */
static void cut(writer_t *w)
{
    size_t ellipsis = sizeof TEMPLATE_ELLIPSIS - 1;
    bool room = w->len >= ellipsis;
    w->len = whole_chars(w->out, room ? w->len - ellipsis : w->len);
    if (room) {
        memcpy(w->out + w->len, TEMPLATE_ELLIPSIS, ellipsis);
        w->len += ellipsis;
    }
    w->truncated = true;
}

/* Appends n bytes of valid UTF-8. */
static void put(writer_t *w, const char *s, size_t n)
{
    if (w->truncated)
        return;
    size_t room = w->cap - 1 - w->len;
    size_t k = n < room ? n : room;
    memcpy(w->out + w->len, s, k);
    w->len += k;
    if (k < n)
        cut(w);
}

/* Appends a string value, replacing bytes that are not UTF-8 (and NULs) with U+FFFD. */
static void put_sanitized(writer_t *w, const char *s, size_t n)
{
    size_t run = 0, i = 0;
    while (i < n) {
        size_t k = expr__utf8_char_len(s + i, n - i);
        if (k > 0 && s[i] != '\0') {
            i += k;
            continue;
        }
        put(w, s + run, i - run);
        put(w, REPLACEMENT, sizeof REPLACEMENT - 1);
        run = ++i;
    }
    put(w, s + run, n - run);
}

/* "-0", "-0.00", "-0%": a value that rounded to zero shows no sign. */
static void drop_negative_zero(char *text)
{
    if (text[0] != '-')
        return;
    for (const char *p = text + 1; *p; p++)
        if (*p >= '1' && *p <= '9')
            return;
    memmove(text, text + 1, strlen(text));
}

static void put_number(writer_t *w, double x, format_t format, int decimals)
{
    char text[64];
    double shown = format == FORMAT_PERCENT ? x * 100 : x;
    /* Fixed notation of a huge number is hundreds of digits: fall back to %g for those. */
    if (format == FORMAT_PLAIN || !(fabs(shown) < 1e15))
        snprintf(text, sizeof text, "%.15g", shown);
    else
        snprintf(text, sizeof text, "%.*f", decimals, shown);
    drop_negative_zero(text);
    put(w, text, strlen(text));
    if (format == FORMAT_PERCENT)
        put(w, "%", 1);
}

static void put_field(writer_t *w, const part_t *part, const expr_value_t *values,
                      size_t n_values)
{
    const expr_value_t *v = part->feature < n_values ? &values[part->feature] : NULL;
    if (!v || v->type != part->type || (v->type == EXPR_NUMBER && isnan(v->as.number))) {
        put(w, TEMPLATE_MISSING, sizeof TEMPLATE_MISSING - 1);
        return;
    }
    switch (v->type) {
    case EXPR_NUMBER:
        put_number(w, v->as.number, (format_t)part->format, part->decimals);
        break;
    case EXPR_STRING:
        put_sanitized(w, v->as.string.ptr, v->as.string.len);
        break;
    case EXPR_BOOL:
        put(w, v->as.boolean ? "true" : "false", v->as.boolean ? 4 : 5);
        break;
    case EXPR_MISSING:
        break;
    }
}

int template_render(const template_t *t, const expr_value_t *values, size_t n_values, char *out,
                    size_t cap, size_t *len)
{
    if (len)
        *len = 0;
    if (cap == 0)
        return TEMPLATE_TRUNCATED;
    writer_t w = {.out = out, .cap = cap};
    for (size_t i = 0; i < t->n_parts && !w.truncated; i++) {
        const part_t *part = &t->parts[i];
        put(&w, t->pool + part->text, part->text_len);
        if (part->has_field)
            put_field(&w, part, values, n_values);
    }
    out[w.len] = '\0';
    if (len)
        *len = w.len;
    return w.truncated ? TEMPLATE_TRUNCATED : 0;
}
