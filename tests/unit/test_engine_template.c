/* test_engine_template.c - alert message templates: formats, braces, missing values, what
 * they refuse (and where), and truncation that never breaks UTF-8. */
#include "template.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SUPPORT, STATUS, CHURN, REVENUE, VIP, TIER, N_FEATURES };

static const struct {
    const char *name;
    expr_type_t type;
} features[N_FEATURES] = {
    [SUPPORT] = {"support_contacts_30d", EXPR_NUMBER},
    [STATUS] = {"last_order_status", EXPR_STRING},
    [CHURN] = {"churn_risk", EXPR_NUMBER},
    [REVENUE] = {"revenue_12m", EXPR_NUMBER},
    [VIP] = {"vip", EXPR_BOOL},
    [TIER] = {"tier", EXPR_STRING},
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
static char out[256];

#define STR(s) expr_string((s), strlen(s))

static int set_customer(void **state)
{
    values[SUPPORT] = expr_number(5);
    values[STATUS] = STR("delayed");
    values[CHURN] = expr_number(0.734);
    values[REVENUE] = expr_number(1234.5);
    values[VIP] = expr_bool(true);
    values[TIER] = STR("A");
    return 0;
}

static template_t *compile_ok(const char *src)
{
    template_t *t = NULL;
    if (template_compile(src, strlen(src), &resolver, &t, &err) != 0)
        fail_msg("%s: %s at %zu", src, err.message, err.offset);
    return t;
}

/* Renders src into out with the given capacity; returns template_render's result. */
static int render_cap(const char *src, size_t cap)
{
    template_t *t = compile_ok(src);
    memset(out, 'X', sizeof out);
    size_t len = 999;
    int rc = template_render(t, values, N_FEATURES, out, cap, &len);
    template_free(t);
    assert_int_equal(len, strlen(out));
    return rc;
}

static const char *render(const char *src)
{
    assert_int_equal(render_cap(src, sizeof out), 0);
    return out;
}

static void assert_error(const char *src, int code, size_t offset, const char *message)
{
    template_t *t = (template_t *)&err; /* must be reset to NULL */
    int rc = template_compile(src, strlen(src), &resolver, &t, &err);
    assert_null(t);
    assert_string_equal(err.message, message);
    assert_int_equal(rc, code);
    assert_int_equal(err.code, code);
    assert_int_equal(err.offset, offset);
}

static bool valid_utf8(const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0, k; i < n; i += k)
        if ((k = expr__utf8_char_len(s + i, n - i)) == 0)
            return false;
    return true;
}

/* ------------------------------------------------------------------------------------------
 * Rendering
 * ------------------------------------------------------------------------------------------ */

static void fields_render_between_literal_text(void **state)
{
    const char *src =
        "{support_contacts_30d} support contacts in 30 days; last order {last_order_status}";
    assert_string_equal(render(src), "5 support contacts in 30 days; last order delayed");
}

static void plain_numbers_show_no_trailing_zeros(void **state)
{
    values[CHURN] = expr_number(0.7);
    assert_string_equal(render("{support_contacts_30d}|{churn_risk}"), "5|0.7");
    values[REVENUE] = expr_number(0.1 + 0.2);
    assert_string_equal(render("{revenue_12m}"), "0.3");
}

static void plain_large_numbers_use_exponents_past_15_digits(void **state)
{
    values[REVENUE] = expr_number(123456789012345.0);
    assert_string_equal(render("{revenue_12m}"), "123456789012345");
    values[REVENUE] = expr_number(1e20);
    assert_string_equal(render("{revenue_12m}"), "1e+20");
}

static void fixed_format_gives_exact_decimals(void **state)
{
    assert_string_equal(render("{revenue_12m:.2f}"), "1234.50");
    values[REVENUE] = expr_number(1234.567);
    assert_string_equal(render("{revenue_12m:.2f}"), "1234.57");
    assert_string_equal(render("{revenue_12m:.0f}"), "1235");
}

static void percent_format_scales_by_100(void **state)
{
    assert_string_equal(render("{churn_risk:.0%}"), "73%");
    assert_string_equal(render("{churn_risk:.1%}"), "73.4%");
    values[CHURN] = expr_number(1);
    assert_string_equal(render("{churn_risk:.0%}"), "100%");
}

static void rounding_to_zero_shows_no_minus_sign(void **state)
{
    values[CHURN] = expr_number(-0.001);
    assert_string_equal(render("{churn_risk:.0%}"), "0%");
    values[REVENUE] = expr_number(-0.004);
    assert_string_equal(render("{revenue_12m:.2f}"), "0.00");
    values[REVENUE] = expr_number(-0.0);
    assert_string_equal(render("{revenue_12m}"), "0");
    values[REVENUE] = expr_number(-0.006);
    assert_string_equal(render("{revenue_12m:.2f}"), "-0.01");
}

static void huge_numbers_in_a_fixed_format_fall_back_to_exponents(void **state)
{
    values[REVENUE] = expr_number(-1e300);
    assert_string_equal(render("{revenue_12m:.9f}"), "-1e+300");
    values[REVENUE] = expr_number(INFINITY);
    assert_string_equal(render("{revenue_12m:.2f}"), "inf");
}

static void strings_render_as_they_are(void **state)
{
    values[STATUS] = STR("caf\xc3\xa9 \"{x}\" \\n");
    assert_string_equal(render("[{last_order_status}]"), "[caf\xc3\xa9 \"{x}\" \\n]");
}

static void bools_render_as_true_and_false(void **state)
{
    assert_string_equal(render("{vip}"), "true");
    values[VIP] = expr_bool(false);
    assert_string_equal(render("{vip}"), "false");
}

static void doubled_braces_are_literal_braces(void **state)
{
    assert_string_equal(render("{{tier}} is {tier}}}{{"), "{tier} is A}{");
}

static void template_without_fields_is_its_text(void **state)
{
    assert_string_equal(render("call the customer back \xe2\x98\x8e"),
                        "call the customer back \xe2\x98\x8e");
    assert_string_equal(render(""), "");
}

static void missing_value_renders_the_placeholder(void **state)
{
    values[STATUS] = expr_missing();
    values[CHURN] = expr_missing();
    assert_string_equal(render("last order {last_order_status}, risk {churn_risk:.0%}"),
                        "last order n/a, risk n/a");
}

static void nan_renders_the_placeholder(void **state)
{
    values[CHURN] = expr_number(NAN);
    assert_string_equal(render("{churn_risk:.1%}"), "n/a");
}

static void value_of_another_type_renders_the_placeholder(void **state)
{
    values[TIER] = expr_number(3);
    assert_string_equal(render("{tier}"), "n/a");
}

static void index_beyond_the_values_renders_the_placeholder(void **state)
{
    template_t *t = compile_ok("{tier}/{support_contacts_30d}");
    assert_int_equal(template_render(t, values, TIER, out, sizeof out, NULL), 0);
    assert_string_equal(out, "n/a/5");
    template_free(t);
}

static void invalid_utf8_in_a_value_becomes_replacement_characters(void **state)
{
    values[STATUS] = expr_string("a\xff" "b\xc3", 4);
    assert_string_equal(render("{last_order_status}"), "a\xef\xbf\xbd" "b\xef\xbf\xbd");
}

static void nul_in_a_value_becomes_a_replacement_character(void **state)
{
    values[STATUS] = expr_string("a\0b", 3);
    assert_string_equal(render("{last_order_status}"), "a\xef\xbf\xbd" "b");
}

/* ------------------------------------------------------------------------------------------
 * Truncation
 * ------------------------------------------------------------------------------------------ */

static void exact_fit_is_not_truncated(void **state)
{
    assert_int_equal(render_cap("tier {tier}", 7), 0);
    assert_string_equal(out, "tier A");
}

static void one_byte_short_is_cut_with_an_ellipsis(void **state)
{
    assert_int_equal(render_cap("tier {tier}", 6), TEMPLATE_TRUNCATED);
    assert_string_equal(out, "ti\xe2\x80\xa6");
}

static void cut_never_splits_a_character(void **state)
{
    values[STATUS] = STR("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"); /* four 2-byte characters */
    /* cap 8: 7 bytes of room, 4 for text before the ellipsis: two whole characters. */
    assert_int_equal(render_cap("{last_order_status}!", 8), TEMPLATE_TRUNCATED);
    assert_string_equal(out, "\xc3\xa9\xc3\xa9\xe2\x80\xa6");
    /* cap 7: 3 bytes before the ellipsis: the second character would be split. */
    assert_int_equal(render_cap("{last_order_status}!", 7), TEMPLATE_TRUNCATED);
    assert_string_equal(out, "\xc3\xa9\xe2\x80\xa6");
}

static void buffer_of_just_the_ellipsis_holds_only_it(void **state)
{
    assert_int_equal(render_cap("tier {tier}", 4), TEMPLATE_TRUNCATED);
    assert_string_equal(out, "\xe2\x80\xa6");
}

static void buffer_too_small_for_the_ellipsis_is_cut_without_it(void **state)
{
    assert_int_equal(render_cap("tier {tier}", 3), TEMPLATE_TRUNCATED);
    assert_string_equal(out, "ti");
    assert_int_equal(render_cap("tier {tier}", 1), TEMPLATE_TRUNCATED);
    assert_string_equal(out, "");
}

static void zero_capacity_writes_nothing(void **state)
{
    template_t *t = compile_ok("{tier}");
    out[0] = 'X';
    size_t len = 7;
    assert_int_equal(template_render(t, values, N_FEATURES, out, 0, &len), TEMPLATE_TRUNCATED);
    assert_int_equal(len, 0);
    assert_int_equal(out[0], 'X');
    template_free(t);
}

/* Every capacity: valid UTF-8, within the buffer, and a prefix of the full message. */
static void every_cut_is_valid_utf8_and_a_prefix(void **state)
{
    values[STATUS] = STR("\xf0\x9f\x93\xa6 d\xc3\xa9lay\xe2\x82\xac");
    const char *src = "\xe2\x98\x8e {last_order_status} {churn_risk:.1%} \xf0\x9f\x93\xa6";
    char full[sizeof out];
    snprintf(full, sizeof full, "%s", render(src));
    size_t full_len = strlen(full);
    for (size_t cap = 1; cap <= full_len + 1; cap++) {
        int rc = render_cap(src, cap);
        assert_int_equal(rc, cap <= full_len ? TEMPLATE_TRUNCATED : 0);
        assert_true(strlen(out) < cap);
        assert_true(valid_utf8(out));
        size_t n = strlen(out);
        if (rc == TEMPLATE_TRUNCATED && n >= 3 && memcmp(out + n - 3, TEMPLATE_ELLIPSIS, 3) == 0)
            n -= 3;
        assert_memory_equal(out, full, n);
    }
}

/* ------------------------------------------------------------------------------------------
 * Compile errors, with positions
 * ------------------------------------------------------------------------------------------ */

static void unknown_feature_is_named_at_its_position(void **state)
{
    assert_error("{support_contacts_30d} contacts, {suport_contacts_30d}", EXPR_EUNKNOWN, 34,
                 "unknown feature \"suport_contacts_30d\"");
}

static void unmatched_closing_brace_is_refused(void **state)
{
    assert_error("tier} {tier}", EXPR_ESYNTAX, 4,
                 "unmatched '}' (write '}}' for a literal brace)");
}

static void unclosed_field_expects_a_brace(void **state)
{
    assert_error("risk {churn_risk", EXPR_ESYNTAX, 16, "expected '}'");
    assert_error("risk {churn_risk x}", EXPR_ESYNTAX, 16, "expected '}'");
}

static void field_without_a_name_is_refused(void **state)
{
    assert_error("a {} b", EXPR_ESYNTAX, 3, "expected a feature name after '{'");
    assert_error("a { tier }", EXPR_ESYNTAX, 3, "expected a feature name after '{'");
    assert_error("a {", EXPR_ESYNTAX, 3, "expected a feature name after '{'");
}

static void format_on_a_string_is_a_type_error(void **state)
{
    assert_error("{tier:.2f}", EXPR_ETYPE, 6, "format .2f needs a number; tier is a string");
}

static void format_on_a_bool_is_a_type_error(void **state)
{
    assert_error("{vip:.0%}", EXPR_ETYPE, 5, "format .0% needs a number; vip is a bool");
}

static void unknown_format_is_refused(void **state)
{
    const char *message = "expected a format: .Nf or .N% (N is 0-9)";
    assert_error("{churn_risk:.2x}", EXPR_ESYNTAX, 12, message);
    assert_error("{churn_risk:.12f}", EXPR_ESYNTAX, 12, message);
    assert_error("{churn_risk:}", EXPR_ESYNTAX, 12, message);
    assert_error("{churn_risk:2f}", EXPR_ESYNTAX, 12, message);
    assert_error("{churn_risk:.2", EXPR_ESYNTAX, 12, message);
}

static void invalid_utf8_in_the_template_is_refused(void **state)
{
    assert_error("ok \xc3\x28", EXPR_ESYNTAX, 3, "invalid UTF-8 in template");
    assert_error("ok \xe2\x82", EXPR_ESYNTAX, 3, "invalid UTF-8 in template");
}

static void nul_byte_in_the_template_is_refused(void **state)
{
    template_t *t;
    assert_int_equal(template_compile("a\0b", 3, &resolver, &t, &err), EXPR_ESYNTAX);
    assert_int_equal(err.offset, 1);
    assert_string_equal(err.message, "NUL byte in template");
}

static void template_over_the_maximum_length_is_refused(void **state)
{
    char *s = malloc(TEMPLATE_MAX_LEN + 2);
    memset(s, 'a', TEMPLATE_MAX_LEN + 1);
    s[TEMPLATE_MAX_LEN + 1] = '\0';
    assert_error(s, EXPR_ELIMIT, TEMPLATE_MAX_LEN, "template longer than 1024 bytes");
    s[TEMPLATE_MAX_LEN] = '\0';
    template_free(compile_ok(s));
    free(s);
}

static void fields_past_the_maximum_are_refused(void **state)
{
    char s[TEMPLATE_MAX_LEN];
    s[0] = '\0';
    for (int i = 0; i < TEMPLATE_MAX_FIELDS; i++)
        strcat(s, "{vip}");
    template_free(compile_ok(s));
    strcat(s, "{vip}");
    assert_error(s, EXPR_ELIMIT, 5 * TEMPLATE_MAX_FIELDS, "more than 32 fields");
}

int main(void)
{
#define T(name) cmocka_unit_test_setup(name, set_customer)
    const struct CMUnitTest tests[] = {
        T(fields_render_between_literal_text),
        T(plain_numbers_show_no_trailing_zeros),
        T(plain_large_numbers_use_exponents_past_15_digits),
        T(fixed_format_gives_exact_decimals),
        T(percent_format_scales_by_100),
        T(rounding_to_zero_shows_no_minus_sign),
        T(huge_numbers_in_a_fixed_format_fall_back_to_exponents),
        T(strings_render_as_they_are),
        T(bools_render_as_true_and_false),
        T(doubled_braces_are_literal_braces),
        T(template_without_fields_is_its_text),
        T(missing_value_renders_the_placeholder),
        T(nan_renders_the_placeholder),
        T(value_of_another_type_renders_the_placeholder),
        T(index_beyond_the_values_renders_the_placeholder),
        T(invalid_utf8_in_a_value_becomes_replacement_characters),
        T(nul_in_a_value_becomes_a_replacement_character),
        T(exact_fit_is_not_truncated),
        T(one_byte_short_is_cut_with_an_ellipsis),
        T(cut_never_splits_a_character),
        T(buffer_of_just_the_ellipsis_holds_only_it),
        T(buffer_too_small_for_the_ellipsis_is_cut_without_it),
        T(zero_capacity_writes_nothing),
        T(every_cut_is_valid_utf8_and_a_prefix),
        T(unknown_feature_is_named_at_its_position),
        T(unmatched_closing_brace_is_refused),
        T(unclosed_field_expects_a_brace),
        T(field_without_a_name_is_refused),
        T(format_on_a_string_is_a_type_error),
        T(format_on_a_bool_is_a_type_error),
        T(unknown_format_is_refused),
        T(invalid_utf8_in_the_template_is_refused),
        T(nul_byte_in_the_template_is_refused),
        T(template_over_the_maximum_length_is_refused),
        T(fields_past_the_maximum_are_refused),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
