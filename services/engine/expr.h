/* expr.h - rule conditions: compiled once from readable text, evaluated on every event.
 *
 * A condition reads like
 *     tier == "A" && churn_risk >= 0.7
 *     (tier == "A" || tier == "B") && !(open_orders == 0) && channel in ["phone", "chat"]
 * and compiles into a small program of jumps and comparisons. Feature names are resolved
 * to indexes and type-checked at compile time through the caller's resolver, so evaluation
 * does no name lookup, no allocation and no parsing: it reads values[index] and compares.
 *
 * Grammar (lowest precedence first; && binds tighter than ||):
 *     condition  := or
 *     or         := and ( "||" and )*
 *     and        := unary ( "&&" unary )*
 *     unary      := "!" unary | "(" or ")" | comparison
 *     comparison := feature op literal | literal op feature
 *                 | feature "in" "[" literal ( "," literal )* "]"
 *                 | feature                          a bool feature alone means feature == true
 *     op         := "==" | "!=" | "<" | "<=" | ">" | ">="
 *     literal    := number | string | "true" | "false"
 *     number     := "-"? digit+ ( "." digit+ )? ( ("e"|"E") ("+"|"-")? digit+ )?
 *     string     := '"' ( UTF-8 character but '"', '\', U+0000-001F, U+007F | escape )* '"'
 *     escape     := \" \\ \/ \n \t \r \b \f \uXXXX (Basic Multilingual Plane, not a surrogate)
 *     feature    := [A-Za-z_] [A-Za-z0-9_.]*   ("true", "false" and "in" are reserved)
 * Spaces, tabs and newlines separate tokens. Types: numbers take every op; strings and bools
 * take == and != only; "in" takes a list of literals of the feature's type. Comparing two
 * features or two literals is an error. A literal on the left is turned around
 * (4 <= x is x >= 4), so reasons always read feature op threshold.
 *
 * Missing values: a comparison whose feature value is missing is false, whatever the
 * operator: with channel missing, `channel == "phone"` and `channel != "phone"` are both
 * false, while `!(channel == "phone")` is true. A number value that is NaN, a value of
 * another type than the resolver declared, and an index beyond n_values count as missing.
 *
 * Reasons: for a true result, evaluation can list the comparisons that made it true — the
 * true comparisons on the deciding path: both sides of a true &&, the first true operand of
 * a ||, nothing under a ! (its operand was false, or it is the thing that did not happen).
 * For `a >= 4 && (b == "A" || c > 1)` with b true, that is a and b, in source order. */
#ifndef INTEGRAL_EXPR_H
#define INTEGRAL_EXPR_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits, each a compile error (EXPR_ELIMIT) with the offset where it was reached. */
#define EXPR_MAX_LEN 1024      /* bytes of source */
#define EXPR_MAX_DEPTH 32      /* nesting of "(" and "!" */
#define EXPR_MAX_INSNS 256     /* program instructions (about two per comparison) */
#define EXPR_MAX_CONSTS 256    /* literals, counting every element of every list */
#define EXPR_MAX_FEATURES 4096 /* feature indexes are 0 .. EXPR_MAX_FEATURES - 1 */

typedef enum {
    EXPR_OK = 0,
    EXPR_ESYNTAX = -1,  /* not a valid condition or template */
    EXPR_EUNKNOWN = -2, /* a feature name the resolver does not know */
    EXPR_ETYPE = -3,    /* an operator or literal that does not fit the feature's type */
    EXPR_ELIMIT = -4,   /* too long, too deep or too large */
    EXPR_ENOMEM = -5,   /* out of memory */
} expr_err_t;

/* A value's type. EXPR_MISSING is 0, so a zeroed values array is all missing. */
typedef enum {
    EXPR_MISSING = 0,
    EXPR_NUMBER,
    EXPR_STRING,
    EXPR_BOOL,
} expr_type_t;

/* One feature value, or a literal of the program. Strings are borrowed: ptr/len need not
 * be NUL-terminated and must stay valid while the value is used. */
typedef struct {
    expr_type_t type;
    union {
        double number;
        struct {
            const char *ptr;
            size_t len;
        } string;
        bool boolean;
    } as;
} expr_value_t;

static inline expr_value_t expr_number(double n)
{
    expr_value_t v = {.type = EXPR_NUMBER, .as.number = n};
    return v;
}

static inline expr_value_t expr_string(const char *ptr, size_t len)
{
    expr_value_t v = {.type = EXPR_STRING, .as.string = {ptr, len}};
    return v;
}

static inline expr_value_t expr_bool(bool b)
{
    expr_value_t v = {.type = EXPR_BOOL, .as.boolean = b};
    return v;
}

static inline expr_value_t expr_missing(void)
{
    expr_value_t v = {.type = EXPR_MISSING};
    return v;
}

/* What a resolver says about a feature name. */
typedef struct {
    unsigned index;   /* where its value sits in the values array, < EXPR_MAX_FEATURES */
    expr_type_t type; /* EXPR_NUMBER, EXPR_STRING or EXPR_BOOL */
} expr_feature_t;

/* Maps feature names to indexes and types at compile time. Embed it in your own struct and
 * get back to that with container_of. name is borrowed and not NUL-terminated. Returns 0
 * and fills *out, or -1 when there is no such feature. */
typedef struct expr_resolver expr_resolver_t;
struct expr_resolver {
    int (*resolve)(const expr_resolver_t *self, const char *name, size_t len,
                   expr_feature_t *out);
};

/* Where and why a compile failed: offset is a byte offset into the source, message a short
 * sentence such as `unknown feature "suport_contacts_30d"` or `expected ')'`. */
typedef struct {
    int code; /* expr_err_t */
    size_t offset;
    char message[128];
} expr_error_t;

/* One comparison that made a condition true. Every pointer is borrowed: name, op, threshold
 * and thresholds from the program (valid until expr_free), value from the caller's values. */
typedef struct {
    unsigned feature;                /* index, as the resolver gave it */
    const char *name;                /* feature name, NUL-terminated */
    const char *op;                  /* "==", "!=", "<", "<=", ">", ">=" or "in" */
    const char *threshold;           /* as text: 4, 0.7, "A", true, ["phone", "chat"] */
    const expr_value_t *thresholds;  /* typed: one literal, or the list of "in" */
    size_t n_thresholds;
    const expr_value_t *value;       /* the feature's value that was compared */
} expr_reason_t;

typedef struct expr_program expr_program_t;

/* Compiles len bytes of src (need not be NUL-terminated). Returns 0 and a new program in *out
 * (free it with expr_free), or a negative expr_err_t with err filled and *out NULL. src and
 * resolver are only used during the call. */
int expr_compile(const char *src, size_t len, const expr_resolver_t *resolver,
                 expr_program_t **out, expr_error_t *err);

/* Frees a program; every reason taken from it becomes invalid. NULL is ok. */
void expr_free(expr_program_t *p);

/* Evaluates the program against values[0 .. n_values - 1], indexed by feature index.
 * Allocates nothing and never fails. Returns the condition's truth. When reasons is not NULL,
 * fills up to max_reasons of them (see the file comment) and sets *n_reasons to how many were
 * written; a false result has none. Reasons point into values: keep it alive while using them. */
bool expr_eval(const expr_program_t *p, const expr_value_t *values, size_t n_values,
               expr_reason_t *reasons, size_t max_reasons, size_t *n_reasons);

/* Number of comparisons in the program: the most reasons one evaluation can give. */
size_t expr_comparisons(const expr_program_t *p);

/* Returns a static string describing an expr_err_t. */
const char *expr_strerror(int err);

/* Shared with template.c: the length of the UTF-8 character at s (1..4 bytes; at most n), or 0
 * when s does not start a valid, shortest-form, non-surrogate character (RFC 3629). */
size_t expr__utf8_char_len(const char *s, size_t n);

/* Shared with template.c: fills err (message from fmt) and returns code. */
int expr__verror(expr_error_t *err, int code, size_t offset, const char *fmt, va_list ap);

/* Shared with template.c, so that feature names read the same in both: the length of the
 * feature name at the start of s[0 .. n - 1], or 0 when there is none. */
size_t expr__name_len(const char *s, size_t n);

#endif
