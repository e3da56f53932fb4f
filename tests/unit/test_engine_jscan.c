/* test_engine_jscan.c - the engine's strict JSON scanner (services/engine/jscan.c): what it
 * accepts and refuses, and its strings and numbers against cJSON's. */
#include "jscan.h"

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

static jscan_token_t tokens[4096];
static jscan_doc_t doc;
static size_t error_at;
static const char *what;

static int scan(const char *text)
{
    return jscan_parse(text, strlen(text), tokens, 4096, &doc, &error_at, &what);
}

static void valid_json_is_accepted(void **state)
{
    static const char *const texts[] = {
        "{}", "[]", "0", "-0", "1.5e-3", "-12.25E+2", "\"\"", "true", "false", "null",
        " \t\r\n{ \"a\" : [ 1 , { } , [ ] , \"x\" ] } \n",
        "{\"a\":{\"b\":{\"c\":[null,true,false]}}}", "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\"",
        "\"\\ud83d\\ude00\"", "\"\xc3\xa9 \xff\"", /* bytes >= 0x80 are the caller's to check */
        "[1e400]", "123456789012345678901234567890",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        if (scan(texts[i]) != 0)
            fail_msg("refused %s: %s at %zu", texts[i], what, error_at);
    }
}

/* Each of these is invalid JSON; the jsmn tokenizer accepts the first eleven. */
static void invalid_json_is_refused_where_it_breaks(void **state)
{
    static const struct {
        const char *text;
        size_t at;
    } cases[] = {
        {"{\"a\":1,}", 7},    {"[1 2]", 3},          {"[1,,2]", 3},     {"{\"a\"}", 4},
        {"{\"a\":}", 5},      {"{,\"a\":1}", 1},     {"[\"a\":1]", 4},  {"{\"a\":tru}", 5},
        {"{\"a\":1.2.3}", 8}, {"{\"a\":\"x\ty\"}", 7}, {"{\"a\":1 \"b\":2}", 7},
        {"{\"a\" 1}", 5},     {"{1:2}", 1},          {"{\"a\":1}}", 7}, {"{\"a\":1} x", 8},
        {"{\"a\":01}", 6},    {"{\"a\":-}", 6},      {"{\"a\":1.}", 7}, {"{\"a\":1e}", 7},
        {"{\"a\":+1}", 5},    {"{\"a\":.5}", 5},     {"{\"a\":nullx}", 9}, {"[", 1},
        {"\"abc", 4},         {"\"\\x\"", 1},        {"\"\\u12G4\"", 1}, {"\"\\udc00\"", 1},
        {"\"\\ud800\"", 1},   {"\"\\ud800\\u0041\"", 1}, {"", 0},       {"  ", 2},
        {"[1,]", 3},          {"{\"a\":1,\"b\"}", 10}, {"\"\\u00\"", 1}, {"-01", 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (scan(cases[i].text) == 0)
            fail_msg("accepted %s", cases[i].text);
        if (error_at != cases[i].at)
            fail_msg("%s: error at %zu (%s), expected %zu", cases[i].text, error_at, what,
                     cases[i].at);
        assert_non_null(what);
    }
}

static void nesting_is_bounded(void **state)
{
    char text[2 * JSCAN_DEPTH_MAX + 8];
    size_t n = 0;
    for (int i = 0; i < JSCAN_DEPTH_MAX; i++)
        text[n++] = '[';
    for (int i = 0; i < JSCAN_DEPTH_MAX; i++)
        text[n++] = ']';
    text[n] = '\0';
    assert_int_equal(scan(text), 0);
    memmove(text + 1, text, n + 1);
    text[0] = '[';
    text[n + 1] = ']';
    text[n + 2] = '\0';
    assert_int_equal(scan(text), -1);
    assert_string_equal(what, "nested too deeply");
    assert_int_equal(error_at, JSCAN_DEPTH_MAX);
}

static void too_many_values_are_refused(void **state)
{
    static jscan_token_t few[3];
    assert_int_equal(jscan_parse("[1,2]", 5, few, 3, &doc, &error_at, &what), 0);
    assert_int_equal(jscan_parse("[1,2,3]", 7, few, 3, &doc, &error_at, &what), -1);
    assert_string_equal(what, "too many values");
}

static void tokens_skip_whole_values(void **state)
{
    assert_int_equal(scan("{\"a\":[1,{\"b\":2}],\"c\":\"x\"}"), 0);
    /* 0 {  1 "a"  2 [  3 1  4 {  5 "b"  6 2  7 "c"  8 "x" */
    assert_int_equal(doc.count, 9);
    assert_int_equal(tokens[0].type, JSCAN_OBJECT);
    assert_int_equal(tokens[0].next, 9);
    assert_int_equal(tokens[2].type, JSCAN_ARRAY);
    assert_int_equal(tokens[2].next, 7);
    assert_int_equal(tokens[4].next, 7);
    assert_int_equal(jscan_array_size(&doc, 2), 2);
    assert_int_equal(jscan_member(&doc, 0, "a", 1), 2);
    assert_int_equal(jscan_member(&doc, 0, "c", 1), 8);
    assert_int_equal(jscan_member(&doc, 0, "b", 1), -1); /* not a member of the outer object */
    assert_int_equal(jscan_member(&doc, 4, "b", 1), 6);
}

static void members_match_decoded_names_and_duplicates_are_found(void **state)
{
    assert_int_equal(scan("{\"typ\\u0065\":1,\"ty\":2,\"types\":3}"), 0);
    assert_int_equal(jscan_member(&doc, 0, "type", 4), 2);
    assert_int_equal(scan("{\"id\":1,\"x\":2,\"\\u0069d\":3}"), 0);
    assert_int_equal(jscan_member(&doc, 0, "id", 2), -2);
    assert_int_equal(jscan_member(&doc, 0, "x", 1), 4);
}

/* Decodes the string at the root of text with jscan and with cJSON. */
static void assert_string_like_cjson(const char *text)
{
    char out[256];
    assert_int_equal(scan(text), 0);
    cJSON *oracle = cJSON_Parse(text);
    assert_non_null(oracle);
    long len = jscan_string(&doc, 0, out, sizeof out);
    assert_int_equal(len, (long)strlen(oracle->valuestring));
    assert_string_equal(out, oracle->valuestring);
    cJSON_Delete(oracle);
}

static void strings_decode_as_cjson_decodes_them(void **state)
{
    assert_string_like_cjson("\"plain\"");
    assert_string_like_cjson("\"q\\\"b\\\\s\\/ \\b\\f\\n\\r\\t\"");
    assert_string_like_cjson("\"\\u0041\\u00e9\\u20ac\\uFFFD \\ud83d\\ude00 \\uDBFF\\uDFFF\"");
    assert_string_like_cjson("\"\xc3\xa9 raw\"");
    /* Every escape at every offset of a long string (plain bytes are scanned 8 at a time). */
    for (int at = 0; at < 24; at++) {
        char text[64];
        memset(text, 'x', sizeof text);
        text[0] = '"';
        memcpy(text + 1 + at, "\\n\\u00e9", 8);
        text[40] = '"';
        text[41] = '\0';
        assert_string_like_cjson(text);
    }
}

static void strings_are_cut_to_fit_and_measured(void **state)
{
    char out[4];
    assert_int_equal(scan("\"abcdef\""), 0);
    assert_int_equal(jscan_string(&doc, 0, out, sizeof out), 6);
    assert_string_equal(out, "abc");
    assert_int_equal(scan("\"a\\u00e9\\u00e9\""), 0);
    assert_int_equal(jscan_string(&doc, 0, out, sizeof out), 5);
    assert_int_equal(strlen(out), 3);
    assert_int_equal(scan("\"a\\u0000b\""), 0);
    assert_int_equal(jscan_string(&doc, 0, out, sizeof out), -1);
}

/* The number's text as jscan reads it and as strtod (cJSON) does: bit for bit. */
static void assert_number_like_strtod(const char *text)
{
    assert_int_equal(scan(text), 0);
    double ours = jscan_number(&doc, 0), theirs = strtod(text, NULL);
    if (memcmp(&ours, &theirs, sizeof ours) != 0)
        fail_msg("%s: %.17g, strtod %.17g", text, ours, theirs);
}

static void numbers_match_strtod(void **state)
{
    static const char *const texts[] = {
        "0", "-0", "1", "-1", "0.1", "0.3", "2.675", "123456789012345", "1234567890123456",
        "999999999999999.9", "0.000000000000001", "1e3", "1E-3", "-2.5e+2", "1e400", "-1e400",
        "4.9e-324", "9007199254740993", "0.30000000000000004", "100.00", "12.340",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        assert_number_like_strtod(texts[i]);
    /* Random decimals with up to 17 digits and up to 10 decimals: the fast path and the
     * fallback around its limit. */
    srand(7);
    for (int i = 0; i < 200000; i++) {
        char text[48];
        int digits = 1 + rand() % 17, decimals = rand() % 11;
        size_t n = 0;
        if (rand() % 2)
            text[n++] = '-';
        for (int d = 0; d < digits; d++)
            text[n++] = (char)('0' + (d == 0 && digits > 1 ? 1 + rand() % 9 : rand() % 10));
        if (decimals) {
            text[n++] = '.';
            for (int d = 0; d < decimals; d++)
                text[n++] = (char)('0' + rand() % 10);
        }
        text[n] = '\0';
        assert_number_like_strtod(text);
    }
}

/* Whatever jscan accepts, cJSON accepts too (jscan is the stricter of the two): mutations of a
 * valid event, one byte at a time. */
static void never_laxer_than_cjson(void **state)
{
    static const char base[] =
        "{\"specversion\":\"1.0\",\"id\":\"e-1\",\"type\":\"order.placed\",\"n\":[1.5,-2e3,true,"
        "false,null],\"s\":\"a\\u00e9\\n\",\"data\":{\"amount\":12.5,\"o\":{}}}";
    static const char bytes[] = "{}[]\",:\\0123456789.-+eEtrufalsn \x01\x7f\xc3";
    char text[sizeof base];
    int accepted = 0;
    for (size_t at = 0; at < sizeof base - 1; at++) {
        for (size_t b = 0; b < sizeof bytes - 1; b++) {
            memcpy(text, base, sizeof base);
            text[at] = bytes[b];
            if (scan(text) != 0)
                continue;
            accepted++;
            const char *end = NULL;
            cJSON *oracle = cJSON_ParseWithOpts(text, &end, true);
            if (!oracle)
                fail_msg("jscan accepted what cJSON refuses: %s", text);
            cJSON_Delete(oracle);
        }
    }
    assert_true(accepted > 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_json_is_accepted),
        cmocka_unit_test(invalid_json_is_refused_where_it_breaks),
        cmocka_unit_test(nesting_is_bounded),
        cmocka_unit_test(too_many_values_are_refused),
        cmocka_unit_test(tokens_skip_whole_values),
        cmocka_unit_test(members_match_decoded_names_and_duplicates_are_found),
        cmocka_unit_test(strings_decode_as_cjson_decodes_them),
        cmocka_unit_test(strings_are_cut_to_fit_and_measured),
        cmocka_unit_test(numbers_match_strtod),
        cmocka_unit_test(never_laxer_than_cjson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
