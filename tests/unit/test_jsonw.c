/* test_jsonw.c - the JSON writer: structure, escaping, numbers, overflow. */
#include "jsonw.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void nested_document_with_commas(void **state)
{
    char buf[256];
    jsonw_t w;
    jsonw_init(&w, buf, sizeof buf);
    jsonw_object_begin(&w);
    jsonw_key(&w, "a");
    jsonw_int(&w, 1);
    jsonw_key(&w, "b");
    jsonw_array_begin(&w);
    jsonw_string(&w, "x");
    jsonw_bool(&w, true);
    jsonw_null(&w);
    jsonw_object_begin(&w);
    jsonw_object_end(&w);
    jsonw_array_end(&w);
    jsonw_key(&w, "c");
    jsonw_raw(&w, "{\"d\":2}", 7);
    jsonw_object_end(&w);
    long len = jsonw_finish(&w);
    assert_int_equal(len, (long)strlen(buf));
    assert_string_equal(buf, "{\"a\":1,\"b\":[\"x\",true,null,{}],\"c\":{\"d\":2}}");
}

static void strings_are_escaped_and_valid_utf8(void **state)
{
    char buf[128];
    jsonw_t w;
    jsonw_init(&w, buf, sizeof buf);
    jsonw_string(&w, "q\"b\\n\n\x01 \xc3\xa9 \xff end");
    assert_true(jsonw_finish(&w) > 0);
    assert_string_equal(buf, "\"q\\\"b\\\\n\\u000a\\u0001 \xc3\xa9 \xef\xbf\xbd end\"");
    cJSON *parsed = cJSON_Parse(buf);
    assert_non_null(parsed);
    cJSON_Delete(parsed);
}

/* Every character that needs escaping, at every position of a long string: the writer
 * copies runs of plain ASCII 8 bytes at a time, and each of these must stop the run there. */
static void escapes_found_at_every_offset(void **state)
{
    static const struct {
        const char *in, *out;
    } specials[] = {{"\"", "\\\""}, {"\\", "\\\\"}, {"\x01", "\\u0001"},
                    {"\x1f", "\\u001f"}, {"\xc3\xa9", "\xc3\xa9"}, {"\xff", "\xef\xbf\xbd"},
                    {"\x7f", "\x7f"}, {" ", " "}};
    for (size_t k = 0; k < sizeof specials / sizeof specials[0]; k++) {
        for (size_t at = 0; at <= 24; at++) {
            char in[64], want[96], buf[128];
            memset(in, 'a', at);
            snprintf(in + at, sizeof in - at, "%s%s", specials[k].in, "bcdefghijklmnopq");
            want[0] = '"';
            memset(want + 1, 'a', at);
            snprintf(want + 1 + at, sizeof want - 1 - at, "%s%s\"", specials[k].out,
                     "bcdefghijklmnopq");
            jsonw_t w;
            jsonw_init(&w, buf, sizeof buf);
            jsonw_string(&w, in);
            assert_true(jsonw_finish(&w) > 0);
            assert_string_equal(buf, want);
        }
    }
}

static void integers_at_the_limits(void **state)
{
    const struct {
        int64_t v;
        const char *text;
    } cases[] = {{0, "0"}, {-1, "-1"}, {1234567890123, "1234567890123"},
                 {INT64_MAX, "9223372036854775807"}, {INT64_MIN, "-9223372036854775808"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[32];
        jsonw_t w;
        jsonw_init(&w, buf, sizeof buf);
        jsonw_int(&w, cases[i].v);
        assert_true(jsonw_finish(&w) > 0);
        assert_string_equal(buf, cases[i].text);
    }
}

/* The printf-free paths of jsonw_fixed and jsonw_number print what printf prints: values
 * from whole cents and ten-thousandths (what the engine writes), whole numbers, signs, zeros,
 * and values just off them. */
static void fast_number_paths_match_printf(void **state)
{
    uint64_t x = 88172645463325252u; /* xorshift64 */
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int decimals = (int)(x % 5);
        double whole = (double)(int64_t)(x >> 20) / 1e6 * ((x & 1) ? -1 : 1);
        double values[] = {whole / pow(10, decimals), (double)(int64_t)(x % 2000001) - 1e6,
                           whole / pow(10, decimals) + 1e-9, -0.0, 0.0,
                           (double)(x % 100000) / 100.0, -(double)(x % 100000) / 10000.0};
        for (size_t k = 0; k < sizeof values / sizeof values[0]; k++) {
            char buf[64], want[64];
            jsonw_t w;
            jsonw_init(&w, buf, sizeof buf);
            jsonw_fixed(&w, values[k], decimals);
            assert_true(jsonw_finish(&w) > 0);
            snprintf(want, sizeof want, "%.*f", decimals, values[k]);
            assert_string_equal(buf, want);
            jsonw_init(&w, buf, sizeof buf);
            jsonw_number(&w, values[k]);
            assert_true(jsonw_finish(&w) > 0);
            assert_true(strtod(buf, NULL) == values[k]);
            if (values[k] == nearbyint(values[k])) {
                snprintf(want, sizeof want, "%.15g", values[k]);
                assert_string_equal(buf, want);
            }
        }
    }
}

static void numbers_read_back_exactly(void **state)
{
    const double values[] = {0.1, 1e300, -2.5, 123456789.123, 1.0 / 3.0};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        char buf[64];
        jsonw_t w;
        jsonw_init(&w, buf, sizeof buf);
        jsonw_number(&w, values[i]);
        assert_true(jsonw_finish(&w) > 0);
        assert_true(strtod(buf, NULL) == values[i]);
    }
    char buf[16];
    jsonw_t w;
    jsonw_init(&w, buf, sizeof buf);
    jsonw_number(&w, NAN);
    jsonw_finish(&w);
    assert_string_equal(buf, "null");
    jsonw_init(&w, buf, sizeof buf);
    jsonw_fixed(&w, 12.345, 2);
    jsonw_finish(&w);
    assert_string_equal(buf, "12.35");
}

static void overflow_is_reported_and_terminated(void **state)
{
    char buf[8];
    jsonw_t w;
    jsonw_init(&w, buf, sizeof buf);
    jsonw_string(&w, "far too long for eight bytes");
    assert_int_equal(jsonw_finish(&w), -1);
    assert_int_equal(strlen(buf), 7);
}

static void unbalanced_nesting_fails(void **state)
{
    char buf[32];
    jsonw_t w;
    jsonw_init(&w, buf, sizeof buf);
    jsonw_object_begin(&w);
    jsonw_key(&w, "a");
    assert_int_equal(jsonw_finish(&w), -1);
    jsonw_init(&w, buf, sizeof buf);
    jsonw_array_end(&w);
    assert_int_equal(jsonw_finish(&w), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(nested_document_with_commas),
        cmocka_unit_test(strings_are_escaped_and_valid_utf8),
        cmocka_unit_test(escapes_found_at_every_offset),
        cmocka_unit_test(integers_at_the_limits),
        cmocka_unit_test(fast_number_paths_match_printf),
        cmocka_unit_test(numbers_read_back_exactly),
        cmocka_unit_test(overflow_is_reported_and_terminated),
        cmocka_unit_test(unbalanced_nesting_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
