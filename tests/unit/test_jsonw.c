/* test_jsonw.c - the JSON writer: structure, escaping, numbers, overflow. */
#include "jsonw.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cJSON.h>
#include <math.h>
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
        cmocka_unit_test(numbers_read_back_exactly),
        cmocka_unit_test(overflow_is_reported_and_terminated),
        cmocka_unit_test(unbalanced_nesting_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
