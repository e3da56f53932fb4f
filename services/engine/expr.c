/* expr.c - compiles rule conditions into a small program and evaluates it. See expr.h.
 *
 * Compiling is three steps over one scratch struct: a lexer that decodes one token at a time,
 * a recursive-descent parser that checks names and types and builds a tree of
 * AND/OR/NOT/comparison nodes, and a code generator that turns the tree into instructions
 * with forward jumps for short-circuiting. The finished program is copied into one
 * exactly-sized allocation. Evaluation is a single loop over the instructions with one
 * boolean accumulator; it touches only the program, the values and the caller's reasons. */
#include "expr.h"

#include "utf8.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Names and rendered thresholds share one pool. The worst case of 1 KiB of source is about
 * 2.5 KiB of pool (`v&&v&&...`: "v" and "true" per three bytes). String literals, decoded, go
 * to their own area: each is shorter than its quoted source, so EXPR_MAX_LEN holds them all. */
#define POOL_MAX (4 * EXPR_MAX_LEN)
#define NUMBER_TEXT_MAX 64
#define NAME_QUOTE_MAX 60 /* bytes of a name quoted in an error message */
#define NONE UINT16_MAX

/* ------------------------------------------------------------------------------------------
 * The program
 * ------------------------------------------------------------------------------------------ */

typedef enum { CMP_EQ, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE, CMP_IN } cmp_t;

static const char *const cmp_text[] = {"==", "!=", "<", "<=", ">", ">=", "in"};

/* One accumulator holds the value of the last comparison or sub-condition. Reasons are kept
 * in order of evaluation; MARK remembers how many there were, so that an operand that turned
 * out false (before another operand of a ||) or anything under a ! can be dropped again. */
typedef enum {
    OP_TEST,     /* acc = comparison leaves[arg]; when true, append it as a reason */
    OP_AND_JUMP, /* between operands of &&: when acc is false the chain is false, go to arg */
    OP_MARK,     /* push the reason count (start of a || chain or of a !) */
    OP_OR_JUMP,  /* between operands of ||: when acc is true go to arg, else drop the reasons
                    of the false operand */
    OP_UNMARK,   /* end of a || chain: pop the mark */
    OP_NOT,      /* acc = !acc; drop the reasons of the operand; pop the mark */
} opcode_t;

typedef struct {
    uint8_t op;   /* opcode_t */
    uint16_t arg; /* leaf index (TEST) or jump target */
} insn_t;

typedef struct {
    uint16_t feature;
    uint8_t cmp;    /* cmp_t */
    uint8_t type;   /* expr_type_t of the feature and of every constant */
    uint16_t first; /* constants first .. first + count - 1 */
    uint16_t count;
    uint16_t name, text; /* pool offsets of the feature name and the rendered threshold */
} leaf_t;

struct expr_program {
    size_t n_insns, n_leaves, n_consts, pool_len;
    insn_t *insns;
    leaf_t *leaves;
    expr_value_t *consts; /* strings point into strings */
    char *pool;
    char *strings;
    size_t strings_len;
};

/* ------------------------------------------------------------------------------------------
 * Compiler state
 * ------------------------------------------------------------------------------------------ */

typedef enum {
    T_END, T_IDENT, T_NUMBER, T_STRING, T_TRUE, T_FALSE, T_IN,
    T_LPAREN, T_RPAREN, T_LBRACKET, T_RBRACKET, T_COMMA,
    T_NOT, T_AND, T_OR, T_EQ, T_NE, T_LT, T_LE, T_GT, T_GE,
} tok_kind_t;

typedef struct {
    tok_kind_t kind;
    size_t start, len; /* in the source */
    double number;     /* T_NUMBER */
    size_t str_len;    /* T_STRING: decoded bytes in compiler_t.scratch */
} token_t;

typedef enum { N_LEAF, N_AND, N_OR, N_NOT } node_kind_t;

typedef struct {
    uint8_t kind;   /* node_kind_t */
    uint16_t child; /* first operand (AND, OR, NOT); leaf index (LEAF) */
    uint16_t next;  /* next operand of the same parent, or NONE */
} node_t;

typedef struct {
    const char *src;
    size_t len, pos;
    token_t tok;
    char scratch[EXPR_MAX_LEN]; /* the current string token, decoded */
    const expr_resolver_t *resolver;
    expr_error_t *err;
    int depth;
    size_t planned_insns; /* counted while parsing, so the limit error has a position */
    node_t nodes[EXPR_MAX_INSNS];
    size_t n_nodes;
    leaf_t leaves[EXPR_MAX_CONSTS];
    size_t n_leaves;
    expr_value_t consts[EXPR_MAX_CONSTS];
    size_t n_consts;
    insn_t insns[EXPR_MAX_INSNS];
    size_t n_insns;
    int marks, max_marks;
    char pool[POOL_MAX];
    size_t pool_len;
    char strings[EXPR_MAX_LEN]; /* string literals, decoded, each NUL-terminated */
    size_t strings_len;
} compiler_t;

static int fail(compiler_t *c, int code, size_t offset, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

int expr__verror(expr_error_t *err, int code, size_t offset, const char *fmt, va_list ap)
{
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    err->code = code;
    err->offset = offset;
    return code;
}

static int fail(compiler_t *c, int code, size_t offset, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    expr__verror(c->err, code, offset, fmt, ap);
    va_end(ap);
    return code;
}

static int fail_limit(compiler_t *c, size_t offset)
{
    return fail(c, EXPR_ELIMIT, offset,
                "condition too large (more than %d comparisons or %d steps)", EXPR_MAX_CONSTS,
                EXPR_MAX_INSNS);
}

/* ------------------------------------------------------------------------------------------
 * UTF-8
 * ------------------------------------------------------------------------------------------ */

size_t expr__utf8_char_len(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    if (n == 0)
        return 0;
    if (u[0] < 0x80)
        return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (u[0] >= 0xC2 && u[0] <= 0xDF) {
        len = 2;
    } else if (u[0] >= 0xE0 && u[0] <= 0xEF) {
        len = 3;
        if (u[0] == 0xE0)
            lo = 0xA0; /* shorter forms are overlong */
        if (u[0] == 0xED)
            hi = 0x9F; /* U+D800..DFFF are surrogates */
    } else if (u[0] >= 0xF0 && u[0] <= 0xF4) {
        len = 4;
        if (u[0] == 0xF0)
            lo = 0x90;
        if (u[0] == 0xF4)
            hi = 0x8F; /* nothing above U+10FFFF */
    } else {
        return 0;
    }
    if (n < len || u[1] < lo || u[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((u[i] & 0xC0) != 0x80)
            return 0;
    return len;
}

/* ------------------------------------------------------------------------------------------
 * Lexer
 * ------------------------------------------------------------------------------------------ */

static bool is_ident_start(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_';
}

static bool is_ident_char(char ch)
{
    return is_ident_start(ch) || (ch >= '0' && ch <= '9') || ch == '.';
}

size_t expr__name_len(const char *s, size_t n)
{
    if (n == 0 || !is_ident_start(s[0]))
        return 0;
    size_t i = 1;
    while (i < n && is_ident_char(s[i]))
        i++;
    return i;
}

static bool is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

static bool at(const compiler_t *c, size_t i, char ch)
{
    return i < c->len && c->src[i] == ch;
}

static bool digit_at(const compiler_t *c, size_t i)
{
    return i < c->len && is_digit(c->src[i]);
}

static size_t skip_digits(const compiler_t *c, size_t i)
{
    while (digit_at(c, i))
        i++;
    return i;
}

static int lex_number(compiler_t *c, size_t start)
{
    size_t i = skip_digits(c, at(c, start, '-') ? start + 1 : start);
    if (at(c, i, '.') && digit_at(c, i + 1))
        i = skip_digits(c, i + 1);
    if (at(c, i, 'e') || at(c, i, 'E')) {
        size_t e = (at(c, i + 1, '+') || at(c, i + 1, '-')) ? i + 2 : i + 1;
        if (digit_at(c, e))
            i = skip_digits(c, e);
    }
    if (i < c->len && is_ident_char(c->src[i]))
        return fail(c, EXPR_ESYNTAX, start, "invalid number");
    if (i - start >= NUMBER_TEXT_MAX)
        return fail(c, EXPR_ELIMIT, start, "number longer than %d characters",
                    NUMBER_TEXT_MAX - 1);
    /* strtod follows LC_NUMERIC; services never call setlocale, so the point is '.'. */
    char text[NUMBER_TEXT_MAX];
    memcpy(text, c->src + start, i - start);
    text[i - start] = '\0';
    double v = strtod(text, NULL);
    if (isinf(v))
        return fail(c, EXPR_ESYNTAX, start, "number out of range");
    c->tok = (token_t){.kind = T_NUMBER, .start = start, .len = i - start, .number = v};
    return 0;
}

/* Decodes \uXXXX at c->src[i] (the backslash) into out; returns bytes written, or an error. */
static int lex_unicode_escape(compiler_t *c, size_t i, char *out)
{
    unsigned cp = 0;
    for (size_t k = i + 2; k < i + 6; k++) {
        int d = k < c->len ? hex_digit_value(c->src[k]) : -1;
        if (d < 0)
            return fail(c, EXPR_ESYNTAX, i, "\\u needs four hex digits");
        cp = cp * 16 + (unsigned)d;
    }
    if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF))
        return fail(c, EXPR_ESYNTAX, i, "\\u%04X is not allowed in a string", cp);
    return (int)utf8_encode(cp, out);
}

/* Decodes the escape at c->src[i] (the backslash); sets *consumed to its source length. */
static int lex_escape(compiler_t *c, size_t i, char *out, size_t *consumed)
{
    static const char from[] = "\"\\/ntrbf", to[] = "\"\\/\n\t\r\b\f";
    char e = i + 1 < c->len ? c->src[i + 1] : '\0';
    const char *hit = e ? strchr(from, e) : NULL;
    *consumed = 2;
    if (hit) {
        out[0] = to[hit - from];
        return 1;
    }
    if (e == 'u') {
        *consumed = 6;
        return lex_unicode_escape(c, i, out);
    }
    return fail(c, EXPR_ESYNTAX, i, "invalid escape in string (use \\\" \\\\ \\n \\t \\r \\uXXXX)");
}

static int lex_string(compiler_t *c, size_t start)
{
    size_t i = start + 1, n = 0;
    for (;;) {
        if (i >= c->len)
            return fail(c, EXPR_ESYNTAX, start, "unterminated string");
        unsigned char ch = (unsigned char)c->src[i];
        if (ch == '"')
            break;
        if (ch < 0x20 || ch == 0x7F)
            return fail(c, EXPR_ESYNTAX, i, "control character in string (use an escape)");
        size_t used;
        int w;
        if (ch == '\\') {
            w = lex_escape(c, i, c->scratch + n, &used);
            if (w < 0)
                return w;
        } else {
            used = expr__utf8_char_len(c->src + i, c->len - i);
            if (used == 0)
                return fail(c, EXPR_ESYNTAX, i, "invalid UTF-8 in string");
            memcpy(c->scratch + n, c->src + i, used);
            w = (int)used;
        }
        /* A decoded string is never longer than its source, so scratch cannot overflow. */
        n += (size_t)w;
        i += used;
    }
    c->tok = (token_t){.kind = T_STRING, .start = start, .len = i + 1 - start, .str_len = n};
    return 0;
}

static int lex_word(compiler_t *c, size_t start)
{
    size_t n = expr__name_len(c->src + start, c->len - start);
    const char *w = c->src + start;
    tok_kind_t kind = T_IDENT;
    if (n == 4 && memcmp(w, "true", 4) == 0)
        kind = T_TRUE;
    else if (n == 5 && memcmp(w, "false", 5) == 0)
        kind = T_FALSE;
    else if (n == 2 && memcmp(w, "in", 2) == 0)
        kind = T_IN;
    c->tok = (token_t){.kind = kind, .start = start, .len = n};
    return 0;
}

/* Operators of one or two characters; the two-character form is tried first. */
static int lex_operator(compiler_t *c, size_t start)
{
    static const struct {
        const char *text;
        tok_kind_t kind;
    } ops[] = {
        {"&&", T_AND}, {"||", T_OR}, {"==", T_EQ}, {"!=", T_NE}, {"<=", T_LE}, {">=", T_GE},
        {"<", T_LT},   {">", T_GT},  {"!", T_NOT}, {"(", T_LPAREN}, {")", T_RPAREN},
        {"[", T_LBRACKET}, {"]", T_RBRACKET}, {",", T_COMMA},
    };
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
        size_t n = strlen(ops[k].text);
        if (start + n <= c->len && memcmp(c->src + start, ops[k].text, n) == 0) {
            c->tok = (token_t){.kind = ops[k].kind, .start = start, .len = n};
            return 0;
        }
    }
    char ch = c->src[start];
    if (ch == '&' || ch == '|' || ch == '=')
        return fail(c, EXPR_ESYNTAX, start, "unexpected '%c' (did you mean '%c%c'?)", ch, ch, ch);
    if (ch > 0x20 && ch < 0x7F)
        return fail(c, EXPR_ESYNTAX, start, "unexpected character '%c'", ch);
    return fail(c, EXPR_ESYNTAX, start, "unexpected byte 0x%02X", (unsigned char)ch);
}

/* Reads the next token into c->tok. */
static int next(compiler_t *c)
{
    size_t i = c->pos;
    while (i < c->len && c->src[i] != '\0' && strchr(" \t\r\n", c->src[i]))
        i++;
    int rc;
    if (i >= c->len) {
        c->tok = (token_t){.kind = T_END, .start = c->len};
        rc = 0;
    } else if (c->src[i] == '"') {
        rc = lex_string(c, i);
    } else if (is_digit(c->src[i]) || (c->src[i] == '-' && digit_at(c, i + 1))) {
        rc = lex_number(c, i);
    } else if (is_ident_start(c->src[i])) {
        rc = lex_word(c, i);
    } else {
        rc = lex_operator(c, i);
    }
    if (rc == 0)
        c->pos = c->tok.start + c->tok.len;
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Pool, constants and leaves
 * ------------------------------------------------------------------------------------------ */

/* Appends n bytes to the pool; *offset (if not NULL) is where they start. */
static int pool_add(compiler_t *c, const char *s, size_t n, size_t *offset)
{
    if (offset)
        *offset = c->pool_len;
    if (c->pool_len + n > POOL_MAX)
        return fail_limit(c, c->tok.start);
    memcpy(c->pool + c->pool_len, s, n);
    c->pool_len += n;
    return 0;
}

static int pool_add_char(compiler_t *c, char ch)
{
    return pool_add(c, &ch, 1, NULL);
}

/* Appends a string literal as it would be written in a condition: quoted and escaped. */
static int pool_add_quoted(compiler_t *c, const char *s, size_t n)
{
    int rc = pool_add_char(c, '"');
    for (size_t i = 0; i < n && rc == 0; i++) {
        unsigned char ch = (unsigned char)s[i];
        char esc[8];
        if (ch == '"' || ch == '\\')
            rc = pool_add(c, esc, (size_t)snprintf(esc, sizeof esc, "\\%c", ch), NULL);
        else if (ch == '\n')
            rc = pool_add(c, "\\n", 2, NULL);
        else if (ch == '\t')
            rc = pool_add(c, "\\t", 2, NULL);
        else if (ch < 0x20 || ch == 0x7F) /* what lex_string refuses raw */
            rc = pool_add(c, esc, (size_t)snprintf(esc, sizeof esc, "\\u%04X", ch), NULL);
        else
            rc = pool_add_char(c, (char)ch);
    }
    return rc ? rc : pool_add_char(c, '"');
}

static const char *type_name(expr_type_t t)
{
    switch (t) {
    case EXPR_NUMBER: return "a number";
    case EXPR_STRING: return "a string";
    case EXPR_BOOL: return "a bool";
    case EXPR_MISSING: break;
    }
    return "missing";
}

static expr_type_t literal_type(tok_kind_t kind)
{
    switch (kind) {
    case T_NUMBER: return EXPR_NUMBER;
    case T_STRING: return EXPR_STRING;
    case T_TRUE:
    case T_FALSE: return EXPR_BOOL;
    default: return EXPR_MISSING;
    }
}

/* Adds the literal in c->tok as a constant of the feature's type, and appends its text to the
 * pool (the caller is building the leaf's rendered threshold there). */
static int add_constant(compiler_t *c, expr_type_t want, const char *feature)
{
    const token_t *t = &c->tok;
    expr_type_t got = literal_type(t->kind);
    if (got == EXPR_MISSING)
        return fail(c, EXPR_ESYNTAX, t->start, "expected a number, a string, true or false");
    if (got != want)
        return fail(c, EXPR_ETYPE, t->start, "%s is %s, not %s", feature, type_name(want),
                    type_name(got));
    if (c->n_consts == EXPR_MAX_CONSTS)
        return fail_limit(c, t->start);
    expr_value_t *v = &c->consts[c->n_consts++];
    int rc = 0;
    if (got == EXPR_NUMBER) {
        *v = expr_number(t->number);
        rc = pool_add(c, c->src + t->start, t->len, NULL);
    } else if (got == EXPR_BOOL) {
        *v = expr_bool(t->kind == T_TRUE);
        rc = pool_add(c, c->src + t->start, t->len, NULL);
    } else {
        /* The pointer is rebased when the program is built. */
        char *copy = c->strings + c->strings_len;
        assert(c->strings_len + t->str_len + 1 <= sizeof c->strings);
        memcpy(copy, c->scratch, t->str_len);
        copy[t->str_len] = '\0';
        c->strings_len += t->str_len + 1;
        *v = expr_string(copy, t->str_len);
        rc = pool_add_quoted(c, c->scratch, t->str_len);
    }
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Parser
 * ------------------------------------------------------------------------------------------ */

static int parse_or(compiler_t *c, uint16_t *node);

static int plan_insns(compiler_t *c, size_t n, size_t offset)
{
    c->planned_insns += n;
    return c->planned_insns > EXPR_MAX_INSNS ? fail_limit(c, offset) : 0;
}

static int new_node(compiler_t *c, node_kind_t kind, uint16_t child, uint16_t *node)
{
    /* Every node costs at least one instruction, so this limit is the instruction limit. */
    if (c->n_nodes == EXPR_MAX_INSNS)
        return fail_limit(c, c->tok.start);
    c->nodes[c->n_nodes] = (node_t){.kind = (uint8_t)kind, .child = child, .next = NONE};
    *node = (uint16_t)c->n_nodes++;
    return 0;
}

static bool is_comparison_op(tok_kind_t k)
{
    return k >= T_EQ && k <= T_GE;
}

static cmp_t cmp_of(tok_kind_t k)
{
    switch (k) {
    case T_EQ: return CMP_EQ;
    case T_NE: return CMP_NE;
    case T_LT: return CMP_LT;
    case T_LE: return CMP_LE;
    case T_GT: return CMP_GT;
    case T_GE: return CMP_GE;
    default: return CMP_IN;
    }
}

/* 4 <= x is x >= 4. */
static cmp_t mirror(cmp_t cmp)
{
    switch (cmp) {
    case CMP_LT: return CMP_GT;
    case CMP_LE: return CMP_GE;
    case CMP_GT: return CMP_LT;
    case CMP_GE: return CMP_LE;
    default: return cmp;
    }
}

/* Resolves the identifier in c->tok and starts a leaf for it: its name goes to the pool. */
static int begin_leaf(compiler_t *c, leaf_t *leaf, expr_feature_t *f)
{
    const token_t *t = &c->tok;
    const char *name = c->src + t->start;
    if (c->resolver->resolve(c->resolver, name, t->len, f) != 0)
        return fail(c, EXPR_EUNKNOWN, t->start, "unknown feature \"%.*s\"",
                    (int)(t->len < NAME_QUOTE_MAX ? t->len : NAME_QUOTE_MAX), name);
    if (f->index >= EXPR_MAX_FEATURES || f->type < EXPR_NUMBER || f->type > EXPR_BOOL)
        return fail(c, EXPR_EUNKNOWN, t->start, "feature \"%.*s\" has an invalid index or type",
                    (int)(t->len < NAME_QUOTE_MAX ? t->len : NAME_QUOTE_MAX), name);
    if (c->n_leaves == EXPR_MAX_CONSTS)
        return fail_limit(c, t->start);
    size_t name_at;
    int rc = pool_add(c, name, t->len, &name_at);
    if (rc < 0 || (rc = pool_add_char(c, '\0')) < 0)
        return rc;
    *leaf = (leaf_t){.feature = (uint16_t)f->index, .type = (uint8_t)f->type,
                     .first = (uint16_t)c->n_consts, .name = (uint16_t)name_at};
    return 0;
}

static int check_operator(compiler_t *c, expr_type_t type, cmp_t cmp, size_t offset,
                          const char *name)
{
    if (type != EXPR_NUMBER && cmp != CMP_EQ && cmp != CMP_NE && cmp != CMP_IN)
        return fail(c, EXPR_ETYPE, offset, "'%s' needs a number; %s is %s", cmp_text[cmp], name,
                    type_name(type));
    return 0;
}

static int finish_leaf(compiler_t *c, leaf_t *leaf, size_t offset, uint16_t *node)
{
    leaf->count = (uint16_t)(c->n_consts - leaf->first);
    int rc = pool_add_char(c, '\0');
    if (rc == 0)
        rc = plan_insns(c, 1, offset);
    if (rc < 0)
        return rc;
    c->leaves[c->n_leaves] = *leaf;
    return new_node(c, N_LEAF, (uint16_t)c->n_leaves++, node);
}

/* After "in": [ literal, ... ]. */
static int parse_list(compiler_t *c, leaf_t *leaf, const char *name)
{
    if (c->tok.kind != T_LBRACKET)
        return fail(c, EXPR_ESYNTAX, c->tok.start, "expected '[' after 'in'");
    int rc = pool_add_char(c, '[');
    while (rc == 0) {
        if ((rc = next(c)) < 0)
            break;
        if (c->tok.kind == T_RBRACKET && c->n_consts == leaf->first)
            return fail(c, EXPR_ESYNTAX, c->tok.start, "empty list");
        if ((rc = add_constant(c, leaf->type, name)) < 0 || (rc = next(c)) < 0)
            break;
        if (c->tok.kind == T_RBRACKET)
            return pool_add_char(c, ']');
        if (c->tok.kind != T_COMMA)
            return fail(c, EXPR_ESYNTAX, c->tok.start, "expected ',' or ']' in list");
        rc = pool_add(c, ", ", 2, NULL);
    }
    return rc;
}

/* feature op literal | feature in [...] | bool feature. c->tok is the feature. */
static int parse_feature_first(compiler_t *c, uint16_t *node)
{
    size_t start = c->tok.start;
    const char *name = c->src + start;
    size_t name_len = c->tok.len;
    leaf_t leaf;
    expr_feature_t f;
    int rc = begin_leaf(c, &leaf, &f);
    if (rc < 0 || (rc = next(c)) < 0)
        return rc;
    char quoted[NAME_QUOTE_MAX + 1];
    snprintf(quoted, sizeof quoted, "%.*s", (int)name_len, name);
    tok_kind_t k = c->tok.kind;
    if (!is_comparison_op(k) && k != T_IN) {
        if (f.type != EXPR_BOOL)
            return fail(c, EXPR_ESYNTAX, c->tok.start, "expected a comparison after %s", quoted);
        /* A bool feature alone reads as feature == true. */
        if (c->n_consts == EXPR_MAX_CONSTS)
            return fail_limit(c, start);
        c->consts[c->n_consts++] = expr_bool(true);
        leaf.cmp = CMP_EQ;
        size_t text_at;
        if ((rc = pool_add(c, "true", 4, &text_at)) < 0)
            return rc;
        leaf.text = (uint16_t)text_at;
        return finish_leaf(c, &leaf, start, node);
    }
    leaf.cmp = (uint8_t)cmp_of(k);
    if ((rc = check_operator(c, f.type, (cmp_t)leaf.cmp, c->tok.start, quoted)) < 0)
        return rc;
    if ((rc = next(c)) < 0)
        return rc;
    leaf.text = (uint16_t)c->pool_len;
    if (k == T_IN)
        rc = parse_list(c, &leaf, quoted);
    else if (c->tok.kind == T_IDENT)
        return fail(c, EXPR_ESYNTAX, c->tok.start,
                    "compare a feature with a value, not with another feature");
    else
        rc = add_constant(c, f.type, quoted);
    if (rc < 0 || (rc = next(c)) < 0)
        return rc;
    return finish_leaf(c, &leaf, start, node);
}

/* literal op feature: turned around so that the leaf reads feature op literal. */
static int parse_literal_first(compiler_t *c, uint16_t *node)
{
    token_t literal = c->tok;
    int rc = next(c);
    if (rc < 0)
        return rc;
    if (c->tok.kind == T_IN)
        return fail(c, EXPR_ESYNTAX, literal.start, "the left side of 'in' must be a feature");
    if (!is_comparison_op(c->tok.kind))
        return fail(c, EXPR_ESYNTAX, c->tok.start, "expected a comparison operator");
    size_t op_at = c->tok.start;
    cmp_t cmp = mirror(cmp_of(c->tok.kind));
    if ((rc = next(c)) < 0)
        return rc;
    if (c->tok.kind != T_IDENT)
        return fail(c, EXPR_ESYNTAX, c->tok.start, "one side of a comparison must be a feature");
    size_t start = c->tok.start;
    char quoted[NAME_QUOTE_MAX + 1];
    snprintf(quoted, sizeof quoted, "%.*s", (int)c->tok.len, c->src + start);
    leaf_t leaf;
    expr_feature_t f;
    if ((rc = begin_leaf(c, &leaf, &f)) < 0)
        return rc;
    leaf.cmp = (uint8_t)cmp;
    if ((rc = check_operator(c, f.type, cmp, op_at, quoted)) < 0)
        return rc;
    token_t feature = c->tok;
    c->tok = literal; /* add_constant reads the literal from c->tok; scratch is untouched */
    leaf.text = (uint16_t)c->pool_len;
    if ((rc = add_constant(c, f.type, quoted)) < 0)
        return rc;
    c->tok = feature;
    if ((rc = next(c)) < 0)
        return rc;
    return finish_leaf(c, &leaf, start, node);
}

static int enter(compiler_t *c)
{
    if (++c->depth > EXPR_MAX_DEPTH)
        return fail(c, EXPR_ELIMIT, c->tok.start, "nested deeper than %d", EXPR_MAX_DEPTH);
    return 0;
}

/* "!" unary | "(" or ")" | comparison */
static int parse_unary(compiler_t *c, uint16_t *node)
{
    int rc;
    tok_kind_t k = c->tok.kind;
    if (k == T_NOT || k == T_LPAREN) {
        size_t open_at = c->tok.start;
        if ((rc = enter(c)) < 0 || (rc = next(c)) < 0)
            return rc;
        if (k == T_NOT) {
            uint16_t operand;
            if ((rc = plan_insns(c, 2, open_at)) < 0 || (rc = parse_unary(c, &operand)) < 0)
                return rc;
            rc = new_node(c, N_NOT, operand, node);
        } else {
            if ((rc = parse_or(c, node)) < 0)
                return rc;
            if (c->tok.kind != T_RPAREN)
                return fail(c, EXPR_ESYNTAX, c->tok.start, "expected ')'");
            rc = next(c);
        }
        c->depth--;
        return rc;
    }
    if (k == T_IDENT)
        return parse_feature_first(c, node);
    if (literal_type(k) != EXPR_MISSING)
        return parse_literal_first(c, node);
    if (k == T_END)
        return fail(c, EXPR_ESYNTAX, c->tok.start, "unexpected end of condition");
    return fail(c, EXPR_ESYNTAX, c->tok.start, "expected a comparison");
}

static int parse_chain(compiler_t *c, tok_kind_t sep, node_kind_t kind, uint16_t *node);

/* An operand of && is a unary; an operand of || is an && chain. */
static int parse_operand(compiler_t *c, node_kind_t chain, uint16_t *node)
{
    return chain == N_AND ? parse_unary(c, node) : parse_chain(c, T_AND, N_AND, node);
}

/* operand ( sep operand )*, where sep is && or ||: one node with the operands as children,
 * or the single operand itself. */
static int parse_chain(compiler_t *c, tok_kind_t sep, node_kind_t kind, uint16_t *node)
{
    uint16_t first;
    int rc = parse_operand(c, kind, &first);
    if (rc < 0 || c->tok.kind != sep) {
        *node = first;
        return rc;
    }
    /* An && chain of n costs n-1 jumps; a || chain n-1 jumps plus MARK and UNMARK. */
    if ((rc = plan_insns(c, kind == N_OR ? 2 : 0, c->tok.start)) < 0 ||
        (rc = new_node(c, kind, first, node)) < 0)
        return rc;
    uint16_t last = first;
    while (c->tok.kind == sep) {
        uint16_t next_operand;
        if ((rc = plan_insns(c, 1, c->tok.start)) < 0 || (rc = next(c)) < 0)
            return rc;
        if ((rc = parse_operand(c, kind, &next_operand)) < 0)
            return rc;
        c->nodes[last].next = next_operand;
        last = next_operand;
    }
    return 0;
}

static int parse_or(compiler_t *c, uint16_t *node)
{
    return parse_chain(c, T_OR, N_OR, node);
}

/* ------------------------------------------------------------------------------------------
 * Code generation
 * ------------------------------------------------------------------------------------------ */

static size_t emit(compiler_t *c, opcode_t op, uint16_t arg)
{
    assert(c->n_insns < EXPR_MAX_INSNS); /* plan_insns counted every instruction */
    c->insns[c->n_insns] = (insn_t){.op = (uint8_t)op, .arg = arg};
    return c->n_insns++;
}

/* Unpatched jumps form a list through their arg fields; point them all here. */
static void patch(compiler_t *c, uint16_t head)
{
    while (head != NONE) {
        uint16_t next_jump = c->insns[head].arg;
        c->insns[head].arg = (uint16_t)c->n_insns;
        head = next_jump;
    }
}

static void push_mark(compiler_t *c)
{
    emit(c, OP_MARK, 0);
    if (++c->marks > c->max_marks)
        c->max_marks = c->marks;
}

static void generate(compiler_t *c, uint16_t n)
{
    const node_t *node = &c->nodes[n];
    if (node->kind == N_LEAF) {
        emit(c, OP_TEST, node->child);
        return;
    }
    if (node->kind == N_NOT) {
        push_mark(c);
        generate(c, node->child);
        emit(c, OP_NOT, 0);
        c->marks--;
        return;
    }
    opcode_t jump = node->kind == N_AND ? OP_AND_JUMP : OP_OR_JUMP;
    if (node->kind == N_OR)
        push_mark(c);
    uint16_t pending = NONE;
    for (uint16_t k = node->child; k != NONE; k = c->nodes[k].next) {
        generate(c, k);
        if (c->nodes[k].next != NONE)
            pending = (uint16_t)emit(c, jump, pending);
    }
    patch(c, pending);
    if (node->kind == N_OR) {
        emit(c, OP_UNMARK, 0);
        c->marks--;
    }
}

/* ------------------------------------------------------------------------------------------
 * Public: compile
 * ------------------------------------------------------------------------------------------ */

/* Copies the compiled parts into one allocation; string constants are rebased into it. */
static expr_program_t *build(const compiler_t *c)
{
    size_t insns = c->n_insns * sizeof(insn_t), leaves = c->n_leaves * sizeof(leaf_t);
    size_t consts = c->n_consts * sizeof(expr_value_t);
    char *block =
        malloc(sizeof(expr_program_t) + consts + leaves + insns + c->pool_len + c->strings_len);
    if (!block)
        return NULL;
    expr_program_t *p = (expr_program_t *)block;
    /* Most-aligned first: the struct, then doubles, then 16-bit fields, then chars. */
    p->consts = (expr_value_t *)(block + sizeof *p);
    p->leaves = (leaf_t *)((char *)p->consts + consts);
    p->insns = (insn_t *)((char *)p->leaves + leaves);
    p->pool = (char *)p->insns + insns;
    p->strings = p->pool + c->pool_len;
    p->n_insns = c->n_insns;
    p->n_leaves = c->n_leaves;
    p->n_consts = c->n_consts;
    p->pool_len = c->pool_len;
    p->strings_len = c->strings_len;
    memcpy(p->consts, c->consts, consts);
    memcpy(p->leaves, c->leaves, leaves);
    memcpy(p->insns, c->insns, insns);
    memcpy(p->pool, c->pool, c->pool_len);
    memcpy(p->strings, c->strings, c->strings_len);
    for (size_t i = 0; i < p->n_consts; i++)
        if (p->consts[i].type == EXPR_STRING)
            p->consts[i].as.string.ptr = p->strings + (c->consts[i].as.string.ptr - c->strings);
    return p;
}

static int compile(compiler_t *c, expr_program_t **out)
{
    if (c->len > EXPR_MAX_LEN)
        return fail(c, EXPR_ELIMIT, EXPR_MAX_LEN, "condition longer than %d bytes",
                    EXPR_MAX_LEN);
    int rc = next(c);
    if (rc < 0)
        return rc;
    if (c->tok.kind == T_END)
        return fail(c, EXPR_ESYNTAX, c->tok.start, "empty condition");
    uint16_t root;
    if ((rc = parse_or(c, &root)) < 0)
        return rc;
    if (c->tok.kind != T_END)
        return fail(c, EXPR_ESYNTAX, c->tok.start, "expected '&&', '||' or the end");
    generate(c, root);
    assert(c->n_insns == c->planned_insns && c->max_marks <= EXPR_MAX_DEPTH + 1);
    *out = build(c);
    return *out ? 0 : fail(c, EXPR_ENOMEM, 0, "out of memory");
}

int expr_compile(const char *src, size_t len, const expr_resolver_t *resolver,
                 expr_program_t **out, expr_error_t *err)
{
    *out = NULL;
    *err = (expr_error_t){0};
    compiler_t *c = malloc(sizeof *c);
    if (!c) {
        snprintf(err->message, sizeof err->message, "out of memory");
        return err->code = EXPR_ENOMEM;
    }
    c->src = src;
    c->len = len;
    c->pos = 0;
    c->resolver = resolver;
    c->err = err;
    c->depth = 0;
    c->planned_insns = c->n_nodes = c->n_leaves = c->n_consts = c->n_insns = 0;
    c->pool_len = c->strings_len = 0;
    c->marks = c->max_marks = 0;
    int rc = compile(c, out);
    free(c);
    return rc;
}

void expr_free(expr_program_t *p)
{
    free(p);
}

size_t expr_comparisons(const expr_program_t *p)
{
    return p->n_leaves;
}

const char *expr_strerror(int err)
{
    switch (err) {
    case EXPR_OK: return "ok";
    case EXPR_ESYNTAX: return "syntax error";
    case EXPR_EUNKNOWN: return "unknown feature";
    case EXPR_ETYPE: return "type mismatch";
    case EXPR_ELIMIT: return "too long, too deep or too large";
    case EXPR_ENOMEM: return "out of memory";
    }
    return "unknown error";
}

/* ------------------------------------------------------------------------------------------
 * Public: evaluate
 * ------------------------------------------------------------------------------------------ */

static bool same_value(const expr_value_t *a, const expr_value_t *b)
{
    switch (a->type) {
    case EXPR_NUMBER: return a->as.number == b->as.number;
    case EXPR_STRING:
        return a->as.string.len == b->as.string.len &&
               memcmp(a->as.string.ptr, b->as.string.ptr, a->as.string.len) == 0;
    case EXPR_BOOL: return a->as.boolean == b->as.boolean;
    case EXPR_MISSING: break;
    }
    return false;
}

/* Whether the comparison holds for v, which is present and of the leaf's type. */
static bool leaf_holds(const expr_program_t *p, const leaf_t *leaf, const expr_value_t *v)
{
    const expr_value_t *k = &p->consts[leaf->first];
    if (leaf->type == EXPR_NUMBER) {
        double x = v->as.number, t = k->as.number;
        switch ((cmp_t)leaf->cmp) {
        case CMP_EQ: return x == t;
        case CMP_NE: return x != t;
        case CMP_LT: return x < t;
        case CMP_LE: return x <= t;
        case CMP_GT: return x > t;
        case CMP_GE: return x >= t;
        case CMP_IN: break;
        }
    } else if (leaf->cmp == CMP_EQ) {
        return same_value(v, k);
    } else if (leaf->cmp == CMP_NE) {
        return !same_value(v, k);
    }
    for (size_t i = 0; i < leaf->count; i++)
        if (same_value(v, &k[i]))
            return true;
    return false;
}

static void set_reason(const expr_program_t *p, const leaf_t *leaf, const expr_value_t *v,
                       expr_reason_t *r)
{
    *r = (expr_reason_t){
        .feature = leaf->feature,
        .name = p->pool + leaf->name,
        .op = cmp_text[leaf->cmp],
        .threshold = p->pool + leaf->text,
        .thresholds = &p->consts[leaf->first],
        .n_thresholds = leaf->count,
        .value = v,
    };
}

bool expr_eval(const expr_program_t *p, const expr_value_t *values, size_t n_values,
               expr_reason_t *reasons, size_t max_reasons, size_t *n_reasons)
{
    size_t marks[EXPR_MAX_DEPTH + 1], n_marks = 0;
    size_t n = 0; /* reasons so far, also those past max_reasons (not stored) */
    bool acc = false;
    size_t pc = 0;
    while (pc < p->n_insns) {
        insn_t in = p->insns[pc++];
        switch ((opcode_t)in.op) {
        case OP_TEST: {
            const leaf_t *leaf = &p->leaves[in.arg];
            const expr_value_t *v = leaf->feature < n_values ? &values[leaf->feature] : NULL;
            acc = v && v->type == leaf->type &&
                  !(v->type == EXPR_NUMBER && isnan(v->as.number)) && leaf_holds(p, leaf, v);
            if (acc && reasons) {
                if (n < max_reasons)
                    set_reason(p, leaf, v, &reasons[n]);
                n++;
            }
            break;
        }
        case OP_AND_JUMP:
            if (!acc)
                pc = in.arg;
            break;
        case OP_MARK:
            marks[n_marks++] = n;
            break;
        case OP_OR_JUMP:
            if (acc)
                pc = in.arg;
            else
                n = marks[n_marks - 1];
            break;
        case OP_UNMARK:
            n_marks--;
            break;
        case OP_NOT:
            n = marks[--n_marks];
            acc = !acc;
            break;
        }
    }
    if (n_reasons)
        *n_reasons = acc ? (n < max_reasons ? n : max_reasons) : 0;
    return acc;
}
