/* template.h - alert messages: text with {feature} placeholders, compiled once, rendered into
 * a bounded buffer on every alert.
 *
 *     "{support_contacts_30d} support contacts in 30 days; last order {last_order_status}"
 *     "churn risk {churn_risk:.0%}, revenue {revenue_12m:.2f}"
 *
 * Syntax:
 *     {name}      the feature's value, plain (see below)
 *     {name:.Nf}  a number with exactly N decimals (N is one digit, 0-9): 1234.5 -> "1234.50"
 *     {name:.N%}  a number times 100 with N decimals and a percent sign: 0.734 -> "73%" (.0%)
 *     {{ and }}   a literal { and }; a lone } is an error
 * Names are feature names as in conditions (expr.h), resolved at compile time with the same
 * resolver; a format on a string or bool feature is an error. Plain values render as: numbers
 * with up to 15 significant digits ("4", "0.7", "1e+20"), strings as they are, bools as "true"
 * or "false". Rounding is printf's (to nearest, ties to even on the binary value), and a
 * result that rounds to zero never shows a minus sign.
 *
 * A missing value (or NaN, or a value of another type than the resolver declared) renders as
 * TEMPLATE_MISSING, "n/a".
 *
 * The output is always NUL-terminated, valid UTF-8: the template text must be valid UTF-8 (a
 * compile error otherwise) and invalid bytes or NULs in string values render as U+FFFD. When it
 * does not fit, it is cut at a character boundary and ends with TEMPLATE_ELLIPSIS ("…") when
 * there is room for it. The output is not escaped for JSON or HTML: that is the caller's job. */
#ifndef INTEGRAL_TEMPLATE_H
#define INTEGRAL_TEMPLATE_H

#include "expr.h"

#include <stdbool.h>
#include <stddef.h>

#define TEMPLATE_MAX_LEN 1024   /* bytes of template source */
#define TEMPLATE_MAX_FIELDS 32  /* placeholders per template */
#define TEMPLATE_MISSING "n/a"
#define TEMPLATE_ELLIPSIS "\xe2\x80\xa6" /* U+2026 */

/* template_render's result when the output was cut. Not an error: the text is still usable. */
#define TEMPLATE_TRUNCATED 1

typedef struct template template_t;

/* Compiles len bytes of src (need not be NUL-terminated). Returns 0 and a new template in *out
 * (free it with template_free), or a negative expr_err_t with err filled (offset is a byte
 * offset into src) and *out NULL: EXPR_ESYNTAX, EXPR_EUNKNOWN (unknown name), EXPR_ETYPE (a
 * format on a string or bool), EXPR_ELIMIT, EXPR_ENOMEM. src and resolver are only used during
 * the call. */
int template_compile(const char *src, size_t len, const expr_resolver_t *resolver,
                     template_t **out, expr_error_t *err);

/* Frees a template. NULL is ok. */
void template_free(template_t *t);

/* Renders the template with values[0 .. n_values - 1] (indexed by feature index; an index past
 * n_values is missing) into out[0 .. cap - 1], always NUL-terminated when cap > 0. Sets *len
 * (if not NULL) to the bytes written before the NUL. Allocates nothing. Returns 0 when the
 * whole message fit, TEMPLATE_TRUNCATED when it was cut (see the file comment). */
int template_render(const template_t *t, const expr_value_t *values, size_t n_values, char *out,
                    size_t cap, size_t *len);

#endif
