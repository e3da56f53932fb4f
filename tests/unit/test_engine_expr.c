/* test_engine_expr.c - rule conditions: what they mean, what they refuse (and where), the
 * limits, and the reasons a true condition gives. */
#include "expr.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SUPPORT, TIER, CHURN, OPEN_ORDERS, CHANNEL, VIP, N_FEATURES };

static const struct {
    const char *name;
    expr_type_t type;
} features[N_FEATURES] = {
    [SUPPORT] = {"support_contacts_30d", EXPR_NUMBER},
    [TIER] = {"tier", EXPR_STRING},
    [CHURN] = {"churn_risk", EXPR_NUMBER},
    [OPEN_ORDERS] = {"open_orders", EXPR_NUMBER},
    [CHANNEL] = {"channel", EXPR_STRING},
    [VIP] = {"vip", EXPR_BOOL},
};

static int resolve(const expr_resolver_t *self, const char *name, size_t len,
                   expr_feature_t *out)
{
    for (unsigned i = 0; i < N_FEATURES; i++) {
        if (strlen(features[i].name) == len && memcmp(features[i].name, name, len) == 0) {
            *out = (expr_feature_t){.index = i, .type = features[i].type};
            return 0;
        }
    }
    return -1;
}

static const expr_resolver_t resolver = {resolve};
static expr_value_t values[N_FEATURES];
static expr_error_t err;

#define STR(s) expr_string((s), strlen(s))

/* A customer for whom most conditions below are true. */
static int set_customer(void **state)
{
    values[SUPPORT] = expr_number(4);
    values[TIER] = STR("A");
    values[CHURN] = expr_number(0.8);
    values[OPEN_ORDERS] = expr_number(2);
    values[CHANNEL] = STR("phone");
    values[VIP] = expr_bool(false);
    return 0;
}

static expr_program_t *compile_ok(const char *src)
{
    expr_program_t *p = NULL;
    if (expr_compile(src, strlen(src), &resolver, &p, &err) != 0)
        fail_msg("%s: %s at %zu", src, err.message, err.offset);
    return p;
}

static bool holds(const char *src)
{
    expr_program_t *p = compile_ok(src);
    bool result = expr_eval(p, values, N_FEATURES, NULL, 0, NULL);
    expr_free(p);
    return result;
}

static void assert_error(const char *src, int code, size_t offset, const char *message)
{
    expr_program_t *p = (expr_program_t *)&err; /* must be reset to NULL */
    int rc = expr_compile(src, strlen(src), &resolver, &p, &err);
    assert_null(p);
    assert_string_equal(err.message, message);
    assert_int_equal(rc, code);
    assert_int_equal(err.code, code);
    assert_int_equal(err.offset, offset);
}

/* ------------------------------------------------------------------------------------------
 * Meaning
 * ------------------------------------------------------------------------------------------ */

static void greater_or_equal_includes_the_threshold(void **state)
{
    assert_true(holds("support_contacts_30d >= 4"));
    values[SUPPORT] = expr_number(3);
    assert_false(holds("support_contacts_30d >= 4"));
}

static void greater_than_excludes_the_threshold(void **state)
{
    assert_false(holds("support_contacts_30d > 4"));
    assert_true(holds("support_contacts_30d > 3.5"));
}

static void less_or_equal_includes_the_threshold(void **state)
{
    assert_true(holds("support_contacts_30d <= 4"));
    assert_false(holds("support_contacts_30d <= 3"));
}

static void less_than_excludes_the_threshold(void **state)
{
    assert_false(holds("support_contacts_30d < 4"));
    assert_true(holds("support_contacts_30d < 5"));
}

static void equal_matches_only_the_same_number(void **state)
{
    assert_true(holds("open_orders == 2"));
    assert_false(holds("open_orders == 2.5"));
}

static void not_equal_matches_every_other_number(void **state)
{
    assert_true(holds("open_orders != 0"));
    assert_false(holds("open_orders != 2"));
}

static void negative_decimal_and_exponent_numbers_parse(void **state)
{
    values[CHURN] = expr_number(-0.25);
    assert_true(holds("churn_risk == -0.25"));
    assert_true(holds("churn_risk > -1"));
    values[SUPPORT] = expr_number(1500);
    assert_true(holds("support_contacts_30d == 1.5e3"));
    assert_true(holds("support_contacts_30d < 2E+3"));
}

static void string_equality_is_exact_and_case_sensitive(void **state)
{
    assert_true(holds("tier == \"A\""));
    assert_false(holds("tier == \"a\""));
    assert_false(holds("tier == \"A \""));
    assert_true(holds("tier != \"B\""));
    assert_false(holds("tier != \"A\""));
}

static void string_escapes_decode(void **state)
{
    values[TIER] = STR("say \"hi\"\\\n\tcaf\xc3\xa9/");
    assert_true(holds("tier == \"say \\\"hi\\\"\\\\\\n\\tcaf\\u00e9\\/\""));
    assert_true(holds("tier == \"say \\\"hi\\\"\\\\\\n\\tcaf\xc3\xa9/\""));
}

static void string_values_need_not_be_nul_terminated(void **state)
{
    values[TIER] = expr_string("AB", 1);
    assert_true(holds("tier == \"A\""));
}

static void bool_feature_alone_means_true(void **state)
{
    assert_false(holds("vip"));
    values[VIP] = expr_bool(true);
    assert_true(holds("vip"));
}

static void bool_compares_with_true_and_false(void **state)
{
    assert_true(holds("vip == false"));
    assert_false(holds("vip == true"));
    assert_true(holds("vip != true"));
}

static void in_matches_any_listed_string(void **state)
{
    const char *src = "channel in [\"phone\", \"chat\"]";
    assert_true(holds(src));
    values[CHANNEL] = STR("chat");
    assert_true(holds(src));
    values[CHANNEL] = STR("email");
    assert_false(holds(src));
}

static void in_matches_listed_numbers(void **state)
{
    assert_true(holds("open_orders in [1, 2, 3]"));
    assert_false(holds("open_orders in [0, -2]"));
}

static void literal_on_the_left_is_turned_around(void **state)
{
    /* support_contacts_30d is 4. */
    assert_true(holds("3 < support_contacts_30d"));
    assert_false(holds("4 < support_contacts_30d"));
    assert_true(holds("4 <= support_contacts_30d"));
    assert_false(holds("5 <= support_contacts_30d"));
    assert_true(holds("5 > support_contacts_30d"));
    assert_false(holds("4 > support_contacts_30d"));
    assert_true(holds("4 >= support_contacts_30d"));
    assert_false(holds("3 >= support_contacts_30d"));
    assert_true(holds("4 == support_contacts_30d"));
    assert_true(holds("3 != support_contacts_30d"));
    assert_true(holds("\"A\" == tier"));
    expr_program_t *p = compile_ok("5 > support_contacts_30d");
    expr_reason_t r;
    size_t n;
    assert_true(expr_eval(p, values, N_FEATURES, &r, 1, &n));
    assert_int_equal(n, 1);
    assert_string_equal(r.op, "<");
    assert_string_equal(r.threshold, "5");
    expr_free(p);
}

static void and_needs_both_sides(void **state)
{
    assert_true(holds("tier == \"A\" && churn_risk >= 0.7"));
    assert_false(holds("tier == \"A\" && churn_risk >= 0.9"));
    assert_false(holds("tier == \"B\" && churn_risk >= 0.7"));
}

static void or_needs_either_side(void **state)
{
    assert_true(holds("tier == \"B\" || churn_risk >= 0.7"));
    assert_true(holds("tier == \"A\" || churn_risk >= 0.9"));
    assert_false(holds("tier == \"B\" || churn_risk >= 0.9"));
}

/* With || binding tighter, a || b && c would be (a || b) && c: false here. */
static void and_binds_tighter_than_or(void **state)
{
    assert_true(holds("tier == \"A\" || tier == \"B\" && vip"));
    assert_true(holds("vip && tier == \"B\" || tier == \"A\""));
}

static void parentheses_override_precedence(void **state)
{
    assert_false(holds("(tier == \"A\" || tier == \"B\") && vip"));
    assert_false(holds("tier == \"B\" && (vip || tier == \"A\")"));
}

static void not_inverts_its_operand(void **state)
{
    assert_true(holds("!(open_orders == 0)"));
    assert_false(holds("!(open_orders == 2)"));
    assert_true(holds("!vip"));
    assert_false(holds("!!vip"));
}

static void not_binds_tighter_than_and(void **state)
{
    /* !vip && vip is (!vip) && vip, never !(vip && vip). */
    assert_false(holds("!vip && vip"));
    assert_true(holds("!vip && tier == \"A\""));
}

static void the_long_example_reads_as_written(void **state)
{
    const char *src = "(tier == \"A\" || tier == \"B\") && !(open_orders == 0) && "
                      "channel in [\"phone\", \"chat\"]";
    assert_true(holds(src));
    values[OPEN_ORDERS] = expr_number(0);
    assert_false(holds(src));
}

static void whitespace_and_newlines_separate_tokens(void **state)
{
    assert_true(holds("\n\ttier==\"A\"\r\n&&\tchurn_risk>=0.7 "));
}

/* ------------------------------------------------------------------------------------------
 * Missing values
 * ------------------------------------------------------------------------------------------ */

static void missing_value_makes_every_comparison_false(void **state)
{
    values[CHANNEL] = expr_missing();
    assert_false(holds("channel == \"phone\""));
    assert_false(holds("channel != \"phone\""));
    assert_false(holds("channel in [\"phone\", \"chat\"]"));
    values[SUPPORT] = expr_missing();
    assert_false(holds("support_contacts_30d >= 0"));
    assert_false(holds("support_contacts_30d < 0"));
}

static void not_of_a_missing_comparison_is_true(void **state)
{
    values[CHANNEL] = expr_missing();
    assert_true(holds("!(channel == \"phone\")"));
}

static void nan_counts_as_missing(void **state)
{
    values[CHURN] = expr_number(NAN);
    assert_false(holds("churn_risk != 0.5"));
    assert_false(holds("churn_risk >= 0"));
}

static void value_of_another_type_counts_as_missing(void **state)
{
    values[TIER] = expr_number(1);
    assert_false(holds("tier != \"B\""));
}

static void index_beyond_the_values_counts_as_missing(void **state)
{
    expr_program_t *p = compile_ok("vip != true");
    assert_true(expr_eval(p, values, N_FEATURES, NULL, 0, NULL));
    assert_false(expr_eval(p, values, VIP, NULL, 0, NULL));
    expr_free(p);
}

static void zeroed_values_are_all_missing(void **state)
{
    expr_value_t none[N_FEATURES] = {0};
    expr_program_t *p = compile_ok("!(open_orders == 0) && !(tier != \"A\")");
    assert_true(expr_eval(p, none, N_FEATURES, NULL, 0, NULL));
    expr_free(p);
}

/* ------------------------------------------------------------------------------------------
 * Compile errors, with positions
 * ------------------------------------------------------------------------------------------ */

static void unknown_feature_is_named_at_its_position(void **state)
{
    assert_error("support_contacts_30d >= 4 && suport_contacts_30d > 1", EXPR_EUNKNOWN, 29,
                 "unknown feature \"suport_contacts_30d\"");
}

static void unknown_feature_on_the_right_is_named(void **state)
{
    assert_error("4 <= tiers", EXPR_EUNKNOWN, 5, "unknown feature \"tiers\"");
}

static void unclosed_parenthesis_expects_one(void **state)
{
    assert_error("(tier == \"A\" || vip", EXPR_ESYNTAX, 19, "expected ')'");
}

static void stray_closing_parenthesis_is_refused(void **state)
{
    assert_error("tier == \"A\")", EXPR_ESYNTAX, 11, "expected '&&', '||' or the end");
}

static void empty_condition_is_refused(void **state)
{
    assert_error("", EXPR_ESYNTAX, 0, "empty condition");
    assert_error("  \n", EXPR_ESYNTAX, 3, "empty condition");
}

static void dangling_and_is_refused_at_the_end(void **state)
{
    assert_error("tier == \"A\" &&", EXPR_ESYNTAX, 14, "unexpected end of condition");
}

static void missing_value_after_operator_is_refused(void **state)
{
    assert_error("tier ==", EXPR_ESYNTAX, 7, "expected a number, a string, true or false");
}

static void single_ampersand_suggests_two(void **state)
{
    assert_error("vip & vip", EXPR_ESYNTAX, 4, "unexpected '&' (did you mean '&&'?)");
}

static void single_equals_suggests_two(void **state)
{
    assert_error("tier = \"A\"", EXPR_ESYNTAX, 5, "unexpected '=' (did you mean '=='?)");
}

static void unexpected_character_is_shown(void **state)
{
    assert_error("vip # x", EXPR_ESYNTAX, 4, "unexpected character '#'");
    assert_error("vip \xff", EXPR_ESYNTAX, 4, "unexpected byte 0xFF");
}

static void nul_byte_is_refused(void **state)
{
    expr_program_t *p;
    assert_int_equal(expr_compile("vip\0 && vip", 11, &resolver, &p, &err), EXPR_ESYNTAX);
    assert_int_equal(err.offset, 3);
    assert_string_equal(err.message, "unexpected byte 0x00");
}

static void unterminated_string_points_at_its_quote(void **state)
{
    assert_error("tier == \"A && vip", EXPR_ESYNTAX, 8, "unterminated string");
}

static void invalid_escape_points_at_the_backslash(void **state)
{
    assert_error("tier == \"a\\qb\"", EXPR_ESYNTAX, 10,
                 "invalid escape in string (use \\\" \\\\ \\n \\t \\r \\uXXXX)");
}

static void short_unicode_escape_is_refused(void **state)
{
    assert_error("tier == \"\\u12\"", EXPR_ESYNTAX, 9, "\\u needs four hex digits");
}

static void surrogate_and_nul_escapes_are_refused(void **state)
{
    assert_error("tier == \"\\ud800\"", EXPR_ESYNTAX, 9, "\\uD800 is not allowed in a string");
    assert_error("tier == \"\\u0000\"", EXPR_ESYNTAX, 9, "\\u0000 is not allowed in a string");
}

static void invalid_utf8_in_string_is_refused(void **state)
{
    assert_error("tier == \"A\xc3(\"", EXPR_ESYNTAX, 10, "invalid UTF-8 in string");
    assert_error("tier == \"\xed\xa0\x80\"", EXPR_ESYNTAX, 9, "invalid UTF-8 in string");
}

static void control_character_in_string_is_refused(void **state)
{
    assert_error("tier == \"A\nB\"", EXPR_ESYNTAX, 10,
                 "control character in string (use an escape)");
}

static void malformed_numbers_are_refused(void **state)
{
    assert_error("open_orders > 4abc", EXPR_ESYNTAX, 14, "invalid number");
    assert_error("open_orders > 4.", EXPR_ESYNTAX, 14, "invalid number");
    assert_error("open_orders > 1.2.3", EXPR_ESYNTAX, 14, "invalid number");
    assert_error("open_orders > 1e", EXPR_ESYNTAX, 14, "invalid number");
    assert_error("open_orders > - 1", EXPR_ESYNTAX, 14, "unexpected character '-'");
}

static void number_out_of_range_is_refused(void **state)
{
    assert_error("open_orders > 1e999", EXPR_ESYNTAX, 14, "number out of range");
}

static void string_feature_against_a_number_is_a_type_error(void **state)
{
    assert_error("tier == 4", EXPR_ETYPE, 8, "tier is a string, not a number");
}

static void number_feature_against_a_string_is_a_type_error(void **state)
{
    assert_error("churn_risk >= \"high\"", EXPR_ETYPE, 14, "churn_risk is a number, not a string");
}

static void bool_feature_against_a_number_is_a_type_error(void **state)
{
    assert_error("vip == 1", EXPR_ETYPE, 7, "vip is a bool, not a number");
}

static void ordering_a_string_is_a_type_error(void **state)
{
    assert_error("tier < \"B\"", EXPR_ETYPE, 5, "'<' needs a number; tier is a string");
    assert_error("\"B\" > tier", EXPR_ETYPE, 4, "'<' needs a number; tier is a string");
}

static void ordering_a_bool_is_a_type_error(void **state)
{
    assert_error("vip >= true", EXPR_ETYPE, 4, "'>=' needs a number; vip is a bool");
}

static void list_element_of_another_type_is_a_type_error(void **state)
{
    assert_error("channel in [\"phone\", 3]", EXPR_ETYPE, 21, "channel is a string, not a number");
}

static void empty_list_is_refused(void **state)
{
    assert_error("channel in []", EXPR_ESYNTAX, 12, "empty list");
}

static void in_needs_a_bracketed_list(void **state)
{
    assert_error("channel in \"phone\"", EXPR_ESYNTAX, 11, "expected '[' after 'in'");
    assert_error("channel in [\"phone\" \"chat\"]", EXPR_ESYNTAX, 20,
                 "expected ',' or ']' in list");
    assert_error("channel in [\"phone\",", EXPR_ESYNTAX, 20,
                 "expected a number, a string, true or false");
}

static void comparing_two_features_is_refused(void **state)
{
    assert_error("support_contacts_30d > open_orders", EXPR_ESYNTAX, 23,
                 "compare a feature with a value, not with another feature");
}

static void comparing_two_literals_is_refused(void **state)
{
    assert_error("1 < 2", EXPR_ESYNTAX, 4, "one side of a comparison must be a feature");
}

static void literal_left_of_in_is_refused(void **state)
{
    assert_error("\"phone\" in [\"a\"]", EXPR_ESYNTAX, 0,
                 "the left side of 'in' must be a feature");
}

static void number_feature_alone_needs_a_comparison(void **state)
{
    assert_error("churn_risk && vip", EXPR_ESYNTAX, 11, "expected a comparison after churn_risk");
}

static void reserved_word_is_not_a_feature(void **state)
{
    assert_error("in == 1", EXPR_ESYNTAX, 0, "expected a comparison");
}

/* ------------------------------------------------------------------------------------------
 * Limits
 * ------------------------------------------------------------------------------------------ */

/* "vip" padded with spaces to exactly len bytes. */
static char *padded(size_t len)
{
    char *s = malloc(len + 1);
    memset(s, ' ', len);
    memcpy(s, "vip", 3);
    s[len] = '\0';
    return s;
}

static void condition_of_the_maximum_length_compiles(void **state)
{
    char *s = padded(EXPR_MAX_LEN);
    expr_free(compile_ok(s));
    free(s);
}

static void condition_over_the_maximum_length_is_refused(void **state)
{
    char *s = padded(EXPR_MAX_LEN + 1);
    assert_error(s, EXPR_ELIMIT, EXPR_MAX_LEN, "condition longer than 1024 bytes");
    free(s);
}

/* prefix repeated n times, then core, then suffix repeated n times. */
static char *nest(const char *prefix, int n, const char *core, const char *suffix)
{
    char *s = malloc(n * (strlen(prefix) + strlen(suffix)) + strlen(core) + 1);
    s[0] = '\0';
    for (int i = 0; i < n; i++)
        strcat(s, prefix);
    strcat(s, core);
    for (int i = 0; i < n; i++)
        strcat(s, suffix);
    return s;
}

static void nesting_to_the_maximum_depth_compiles(void **state)
{
    char *s = nest("(", EXPR_MAX_DEPTH, "vip", ")");
    expr_free(compile_ok(s));
    free(s);
    s = nest("!(vip || ", EXPR_MAX_DEPTH / 2, "vip", ")");
    expr_free(compile_ok(s));
    free(s);
}

static void nesting_past_the_maximum_depth_is_refused(void **state)
{
    char *s = nest("(", EXPR_MAX_DEPTH + 1, "vip", ")");
    assert_error(s, EXPR_ELIMIT, EXPR_MAX_DEPTH, "nested deeper than 32");
    free(s);
    s = nest("!", EXPR_MAX_DEPTH + 1, "vip", "");
    assert_error(s, EXPR_ELIMIT, EXPR_MAX_DEPTH, "nested deeper than 32");
    free(s);
}

static char *and_chain(int n)
{
    char *s = malloc((size_t)n * 5 + 1);
    s[0] = '\0';
    for (int i = 0; i < n; i++)
        strcat(s, i ? "&&vip" : "vip");
    return s;
}

/* n comparisons joined by && take 2n - 1 instructions. */
static void largest_program_compiles(void **state)
{
    char *s = and_chain(128);
    expr_program_t *p = compile_ok(s);
    assert_int_equal(expr_comparisons(p), 128);
    values[VIP] = expr_bool(true);
    assert_true(expr_eval(p, values, N_FEATURES, NULL, 0, NULL));
    expr_free(p);
    free(s);
}

static void program_past_the_instruction_limit_is_refused(void **state)
{
    char *s = and_chain(129);
    assert_error(s, EXPR_ELIMIT, 128 * 5,
                 "condition too large (more than 256 comparisons or 256 steps)");
    free(s);
}

static void list_past_the_constant_limit_is_refused(void **state)
{
    char s[EXPR_MAX_LEN];
    strcpy(s, "open_orders in [0");
    for (int i = 1; i <= EXPR_MAX_CONSTS; i++)
        strcat(s, ",1");
    strcat(s, "]");
    assert_error(s, EXPR_ELIMIT, strlen("open_orders in [0") + 2 * (EXPR_MAX_CONSTS - 1) + 1,
                 "condition too large (more than 256 comparisons or 256 steps)");
}

static void over_long_number_is_refused(void **state)
{
    char s[128] = "open_orders == ";
    for (int i = 0; i < 64; i++)
        strcat(s, "1");
    assert_error(s, EXPR_ELIMIT, 15, "number longer than 63 characters");
}

/* ------------------------------------------------------------------------------------------
 * Reasons
 * ------------------------------------------------------------------------------------------ */

static expr_reason_t reasons[8];
static size_t n_reasons;

static bool eval_reasons(const char *src, size_t max)
{
    expr_program_t *p = compile_ok(src);
    n_reasons = 99;
    bool result = expr_eval(p, values, N_FEATURES, reasons, max, &n_reasons);
    /* The reasons point into the program; tests only look at what outlives it. */
    static char names[8][32];
    for (size_t i = 0; i < n_reasons && i < 8; i++) {
        snprintf(names[i], sizeof names[i], "%s %s %s", reasons[i].name, reasons[i].op,
                 reasons[i].threshold);
        reasons[i].name = names[i];
        reasons[i].op = reasons[i].threshold = NULL;
        reasons[i].thresholds = NULL;
    }
    expr_free(p);
    return result;
}

static void and_reports_both_sides(void **state)
{
    assert_true(eval_reasons("support_contacts_30d >= 4 && tier == \"A\"", 8));
    assert_int_equal(n_reasons, 2);
    assert_string_equal(reasons[0].name, "support_contacts_30d >= 4");
    assert_int_equal(reasons[0].feature, SUPPORT);
    assert_ptr_equal(reasons[0].value, &values[SUPPORT]);
    assert_string_equal(reasons[1].name, "tier == \"A\"");
    assert_int_equal(reasons[1].feature, TIER);
    assert_ptr_equal(reasons[1].value, &values[TIER]);
}

static void or_reports_only_the_first_true_operand(void **state)
{
    assert_true(eval_reasons("tier == \"A\" || churn_risk >= 0.7", 8));
    assert_int_equal(n_reasons, 1);
    assert_string_equal(reasons[0].name, "tier == \"A\"");
}

static void or_reports_the_operand_that_decided(void **state)
{
    /* a >= 4 && (b == "A" || c > 1) with b true and c false: a and b. */
    assert_true(eval_reasons("support_contacts_30d >= 4 && (tier == \"A\" || open_orders > 5)", 8));
    assert_int_equal(n_reasons, 2);
    assert_string_equal(reasons[0].name, "support_contacts_30d >= 4");
    assert_string_equal(reasons[1].name, "tier == \"A\"");
}

static void false_operand_of_or_leaves_no_reasons(void **state)
{
    /* support_contacts_30d >= 4 was true, but its && was false, so it decided nothing. */
    assert_true(
        eval_reasons("(support_contacts_30d >= 4 && tier == \"B\") || churn_risk >= 0.7", 8));
    assert_int_equal(n_reasons, 1);
    assert_string_equal(reasons[0].name, "churn_risk >= 0.7");
}

static void comparisons_under_not_are_not_reasons(void **state)
{
    assert_true(eval_reasons("!(open_orders == 0) && tier == \"A\"", 8));
    assert_int_equal(n_reasons, 1);
    assert_string_equal(reasons[0].name, "tier == \"A\"");
    /* tier == "A" is true inside the !, yet the ! is what held: no reasons at all. */
    assert_true(eval_reasons("!(tier == \"A\" && vip)", 8));
    assert_int_equal(n_reasons, 0);
}

static void in_reports_the_list(void **state)
{
    expr_program_t *p = compile_ok("channel in [\"phone\", \"chat\"]");
    expr_reason_t r;
    size_t n;
    assert_true(expr_eval(p, values, N_FEATURES, &r, 1, &n));
    assert_int_equal(n, 1);
    assert_string_equal(r.op, "in");
    assert_string_equal(r.threshold, "[\"phone\", \"chat\"]");
    assert_int_equal(r.n_thresholds, 2);
    assert_int_equal(r.thresholds[1].type, EXPR_STRING);
    assert_memory_equal(r.thresholds[1].as.string.ptr, "chat", 4);
    assert_int_equal(r.value->as.string.len, 5);
    expr_free(p);
}

static void threshold_text_keeps_the_number_as_written(void **state)
{
    assert_true(eval_reasons("churn_risk >= 0.70 && open_orders < 1e1", 8));
    assert_string_equal(reasons[0].name, "churn_risk >= 0.70");
    assert_string_equal(reasons[1].name, "open_orders < 1e1");
}

static void threshold_text_escapes_strings(void **state)
{
    values[TIER] = STR("a\"b\\c\x01");
    assert_true(eval_reasons("tier == \"a\\\"b\\\\c\\u0001\"", 8));
    assert_string_equal(reasons[0].name, "tier == \"a\\\"b\\\\c\\u0001\"");
}

static void typed_threshold_is_given(void **state)
{
    expr_program_t *p = compile_ok("churn_risk >= 0.7 && vip == false");
    expr_reason_t r[2];
    size_t n;
    assert_true(expr_eval(p, values, N_FEATURES, r, 2, &n));
    assert_int_equal(n, 2);
    assert_int_equal(r[0].n_thresholds, 1);
    assert_true(r[0].thresholds[0].as.number == 0.7);
    assert_int_equal(r[1].thresholds[0].type, EXPR_BOOL);
    assert_false(r[1].thresholds[0].as.boolean);
    assert_string_equal(r[1].threshold, "false");
    expr_free(p);
}

static void bool_feature_alone_reports_equal_true(void **state)
{
    values[VIP] = expr_bool(true);
    assert_true(eval_reasons("vip", 8));
    assert_int_equal(n_reasons, 1);
    assert_string_equal(reasons[0].name, "vip == true");
}

static void reasons_stop_at_the_maximum(void **state)
{
    reasons[2].feature = 12345;
    assert_true(eval_reasons("support_contacts_30d >= 4 && tier == \"A\" && churn_risk > 0.5", 2));
    assert_int_equal(reasons[2].feature, 12345);
    assert_int_equal(n_reasons, 2);
    assert_string_equal(reasons[0].name, "support_contacts_30d >= 4");
    assert_string_equal(reasons[1].name, "tier == \"A\"");
}

/* Three true comparisons overflow max 2, then turn out not to decide anything: the deciding
 * comparison after them must still be reported, in the first slot. */
static void dropped_reasons_free_their_slots_even_past_the_maximum(void **state)
{
    assert_true(eval_reasons("(support_contacts_30d >= 4 && tier == \"A\" && churn_risk > 0.5 "
                             "&& vip) || open_orders == 2",
                             2));
    assert_int_equal(n_reasons, 1);
    assert_string_equal(reasons[0].name, "open_orders == 2");
}

static void false_result_has_no_reasons(void **state)
{
    assert_false(eval_reasons("support_contacts_30d >= 4 && tier == \"B\"", 8));
    assert_int_equal(n_reasons, 0);
}

static void comparisons_counts_every_leaf(void **state)
{
    expr_program_t *p = compile_ok("(tier == \"A\" || tier == \"B\") && !(open_orders == 0) && "
                                   "channel in [\"phone\", \"chat\"]");
    assert_int_equal(expr_comparisons(p), 4);
    expr_free(p);
}

static void strerror_names_every_code(void **state)
{
    assert_string_equal(expr_strerror(EXPR_EUNKNOWN), "unknown feature");
    assert_string_equal(expr_strerror(EXPR_ETYPE), "type mismatch");
    assert_string_equal(expr_strerror(42), "unknown error");
}

int main(void)
{
#define T(name) cmocka_unit_test_setup(name, set_customer)
    const struct CMUnitTest tests[] = {
        T(greater_or_equal_includes_the_threshold),
        T(greater_than_excludes_the_threshold),
        T(less_or_equal_includes_the_threshold),
        T(less_than_excludes_the_threshold),
        T(equal_matches_only_the_same_number),
        T(not_equal_matches_every_other_number),
        T(negative_decimal_and_exponent_numbers_parse),
        T(string_equality_is_exact_and_case_sensitive),
        T(string_escapes_decode),
        T(string_values_need_not_be_nul_terminated),
        T(bool_feature_alone_means_true),
        T(bool_compares_with_true_and_false),
        T(in_matches_any_listed_string),
        T(in_matches_listed_numbers),
        T(literal_on_the_left_is_turned_around),
        T(and_needs_both_sides),
        T(or_needs_either_side),
        T(and_binds_tighter_than_or),
        T(parentheses_override_precedence),
        T(not_inverts_its_operand),
        T(not_binds_tighter_than_and),
        T(the_long_example_reads_as_written),
        T(whitespace_and_newlines_separate_tokens),
        T(missing_value_makes_every_comparison_false),
        T(not_of_a_missing_comparison_is_true),
        T(nan_counts_as_missing),
        T(value_of_another_type_counts_as_missing),
        T(index_beyond_the_values_counts_as_missing),
        T(zeroed_values_are_all_missing),
        T(unknown_feature_is_named_at_its_position),
        T(unknown_feature_on_the_right_is_named),
        T(unclosed_parenthesis_expects_one),
        T(stray_closing_parenthesis_is_refused),
        T(empty_condition_is_refused),
        T(dangling_and_is_refused_at_the_end),
        T(missing_value_after_operator_is_refused),
        T(single_ampersand_suggests_two),
        T(single_equals_suggests_two),
        T(unexpected_character_is_shown),
        T(nul_byte_is_refused),
        T(unterminated_string_points_at_its_quote),
        T(invalid_escape_points_at_the_backslash),
        T(short_unicode_escape_is_refused),
        T(surrogate_and_nul_escapes_are_refused),
        T(invalid_utf8_in_string_is_refused),
        T(control_character_in_string_is_refused),
        T(malformed_numbers_are_refused),
        T(number_out_of_range_is_refused),
        T(string_feature_against_a_number_is_a_type_error),
        T(number_feature_against_a_string_is_a_type_error),
        T(bool_feature_against_a_number_is_a_type_error),
        T(ordering_a_string_is_a_type_error),
        T(ordering_a_bool_is_a_type_error),
        T(list_element_of_another_type_is_a_type_error),
        T(empty_list_is_refused),
        T(in_needs_a_bracketed_list),
        T(comparing_two_features_is_refused),
        T(comparing_two_literals_is_refused),
        T(literal_left_of_in_is_refused),
        T(number_feature_alone_needs_a_comparison),
        T(reserved_word_is_not_a_feature),
        T(condition_of_the_maximum_length_compiles),
        T(condition_over_the_maximum_length_is_refused),
        T(nesting_to_the_maximum_depth_compiles),
        T(nesting_past_the_maximum_depth_is_refused),
        T(largest_program_compiles),
        T(program_past_the_instruction_limit_is_refused),
        T(list_past_the_constant_limit_is_refused),
        T(over_long_number_is_refused),
        T(and_reports_both_sides),
        T(or_reports_only_the_first_true_operand),
        T(or_reports_the_operand_that_decided),
        T(false_operand_of_or_leaves_no_reasons),
        T(comparisons_under_not_are_not_reasons),
        T(in_reports_the_list),
        T(threshold_text_keeps_the_number_as_written),
        T(threshold_text_escapes_strings),
        T(typed_threshold_is_given),
        T(bool_feature_alone_reports_equal_true),
        T(reasons_stop_at_the_maximum),
        T(dropped_reasons_free_their_slots_even_past_the_maximum),
        T(false_result_has_no_reasons),
        T(comparisons_counts_every_leaf),
        T(strerror_names_every_code),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
