/* test_config.c - table-driven configuration: defaults, JSON file, environment, and the one
 * line that names the key when something is wrong. */
#include "config.h"
#include "config_keys.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    char *name;
    long count;
    double ratio;
    bool enabled;
    char *mode;
} sample_t;

static const config_key_t sample_keys[] = {
    {"sample.name", CONFIG_STRING, offsetof(sample_t, name), "alice", 0, 16, NULL, "A name."},
    {"sample.count", CONFIG_INT, offsetof(sample_t, count), "3", 1, 100, NULL, "A count."},
    {"sample.ratio", CONFIG_DOUBLE, offsetof(sample_t, ratio), "0.5", 0, 1, NULL, "A ratio."},
    {"sample.enabled", CONFIG_BOOL, offsetof(sample_t, enabled), "false", 0, 0, NULL, "A flag."},
    {"sample.mode", CONFIG_STRING, offsetof(sample_t, mode), "fast", 0, 0, "fast|safe", "Mode."},
};

static sample_t sample;
static char path[64];
static char err[512];
static const config_section_t sections[] = {CONFIG_SECTION(sample_keys, &sample)};

static int load_json(const char *json)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(json, f);
    fclose(f);
    config_free(sections, 1);
    err[0] = '\0';
    return config_load(sections, 1, path, err, sizeof err);
}

static int setup(void **state)
{
    snprintf(path, sizeof path, "/tmp/test_config.%d.json", (int)getpid());
    return 0;
}

static int teardown(void **state)
{
    config_free(sections, 1);
    unlink(path);
    unsetenv("INTEGRAL_SAMPLE_COUNT");
    return 0;
}

static void defaults_apply_without_a_file(void **state)
{
    assert_int_equal(config_load(sections, 1, NULL, err, sizeof err), 0);
    assert_string_equal(sample.name, "alice");
    assert_int_equal(sample.count, 3);
    assert_true(sample.ratio == 0.5);
    assert_false(sample.enabled);
    assert_string_equal(sample.mode, "fast");
}

static void nested_objects_name_dotted_keys(void **state)
{
    assert_int_equal(load_json("{\"sample\": {\"name\": \"bob\", \"count\": 7, \"ratio\": 0.25, "
                               "\"enabled\": true, \"mode\": \"safe\"}}"),
                     0);
    assert_string_equal(sample.name, "bob");
    assert_int_equal(sample.count, 7);
    assert_true(sample.ratio == 0.25);
    assert_true(sample.enabled);
    assert_string_equal(sample.mode, "safe");
}

static void dotted_keys_work_at_the_top_level(void **state)
{
    assert_int_equal(load_json("{\"sample.count\": 9}"), 0);
    assert_int_equal(sample.count, 9);
}

static void environment_overrides_the_file(void **state)
{
    setenv("INTEGRAL_SAMPLE_COUNT", "42", 1);
    assert_int_equal(load_json("{\"sample\": {\"count\": 7}}"), 0);
    assert_int_equal(sample.count, 42);
}

static void unknown_key_is_named(void **state)
{
    assert_int_equal(load_json("{\"sample\": {\"cuont\": 7}}"), -1);
    assert_non_null(strstr(err, "sample.cuont: unknown key"));
    assert_null(strchr(err, '\n'));
}

static void wrong_type_is_named(void **state)
{
    assert_int_equal(load_json("{\"sample\": {\"count\": \"7\"}}"), -1);
    assert_non_null(strstr(err, "sample.count: expected an integer"));
    assert_int_equal(load_json("{\"sample\": {\"enabled\": 1}}"), -1);
    assert_non_null(strstr(err, "sample.enabled: expected a boolean"));
    assert_int_equal(load_json("{\"sample\": {\"name\": 5}}"), -1);
    assert_non_null(strstr(err, "sample.name: expected a string"));
}

static void out_of_range_is_named(void **state)
{
    assert_int_equal(load_json("{\"sample\": {\"count\": 101}}"), -1);
    assert_non_null(strstr(err, "sample.count: 101 is out of range [1, 100]"));
    assert_int_equal(load_json("{\"sample\": {\"count\": 2.5}}"), -1);
    assert_non_null(strstr(err, "sample.count: 2.5 is not an integer"));
    assert_int_equal(load_json("{\"sample\": {\"name\": \"a name far too long\"}}"), -1);
    assert_non_null(strstr(err, "sample.name: longer than 16 characters"));
}

static void choice_outside_the_list_is_named(void **state)
{
    assert_int_equal(load_json("{\"sample\": {\"mode\": \"slow\"}}"), -1);
    assert_non_null(strstr(err, "sample.mode: \"slow\" is not one of fast|safe"));
}

static void missing_file_is_named(void **state)
{
    assert_int_equal(config_load(sections, 1, "/nonexistent/x.json", err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent/x.json: cannot open"));
}

static void invalid_json_gives_line_and_column(void **state)
{
    assert_int_equal(load_json("{\n  \"sample\": {\n    \"count\": ,\n  }\n}"), -1);
    assert_non_null(strstr(err, "invalid JSON at line 3"));
}

static void duplicate_key_is_refused(void **state)
{
    assert_int_equal(load_json("{\"sample\": {\"count\": 1, \"count\": 2}}"), -1);
    assert_non_null(strstr(err, "sample.count: duplicate key"));
}

static void bad_environment_value_names_the_variable(void **state)
{
    setenv("INTEGRAL_SAMPLE_COUNT", "many", 1);
    assert_int_equal(config_load(sections, 1, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "INTEGRAL_SAMPLE_COUNT: sample.count: \"many\" is not a valid"));
}

static void env_name_maps_dots_to_underscores(void **state)
{
    char name[64];
    config_env_name("kafka.session_timeout_ms", name, sizeof name);
    assert_string_equal(name, "INTEGRAL_KAFKA_SESSION_TIMEOUT_MS");
}

static void split_list_trims_and_bounds(void **state)
{
    char buf[] = " a, b ,,c ";
    char *items[3];
    assert_int_equal(config_split_list(buf, items, 3), 3);
    assert_string_equal(items[0], "a");
    assert_string_equal(items[1], "b");
    assert_string_equal(items[2], "c");
    char buf2[] = "a,b,c,d";
    assert_int_equal(config_split_list(buf2, items, 3), -1);
}

static void shared_sections_have_valid_defaults(void **state)
{
    log_config_t log = {0};
    http_config_t http = {0};
    kafka_config_t kafka = {0};
    redis_config_t redis = {0};
    const config_section_t shared[] = {
        LOG_CONFIG_SECTION(&log),
        HTTP_CONFIG_SECTION(&http),
        KAFKA_CONFIG_SECTION(&kafka),
        REDIS_CONFIG_SECTION(&redis),
    };
    for (size_t s = 0; s < 4; s++)
        for (size_t k = 0; k < shared[s].n_keys; k++)
            assert_non_null(shared[s].keys[k].name); /* the declared count is filled */
    assert_int_equal(config_load(shared, 4, NULL, err, sizeof err), 0);
    assert_string_equal(log.level, "info");
    assert_int_equal(redis.port, 6379);
    config_free(shared, 4);
    assert_null(log.level);
}

static void doc_lists_every_key_with_its_variable(void **state)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    config_write_doc(f, sections, 1);
    fclose(f);
    for (size_t i = 0; i < sizeof sample_keys / sizeof sample_keys[0]; i++)
        assert_non_null(strstr(text, sample_keys[i].name));
    assert_non_null(strstr(text, "INTEGRAL_SAMPLE_ENABLED"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(defaults_apply_without_a_file, teardown),
        cmocka_unit_test_teardown(nested_objects_name_dotted_keys, teardown),
        cmocka_unit_test_teardown(dotted_keys_work_at_the_top_level, teardown),
        cmocka_unit_test_teardown(environment_overrides_the_file, teardown),
        cmocka_unit_test_teardown(unknown_key_is_named, teardown),
        cmocka_unit_test_teardown(wrong_type_is_named, teardown),
        cmocka_unit_test_teardown(out_of_range_is_named, teardown),
        cmocka_unit_test_teardown(choice_outside_the_list_is_named, teardown),
        cmocka_unit_test_teardown(missing_file_is_named, teardown),
        cmocka_unit_test_teardown(invalid_json_gives_line_and_column, teardown),
        cmocka_unit_test_teardown(duplicate_key_is_refused, teardown),
        cmocka_unit_test_teardown(bad_environment_value_names_the_variable, teardown),
        cmocka_unit_test(env_name_maps_dots_to_underscores),
        cmocka_unit_test(split_list_trims_and_bounds),
        cmocka_unit_test(shared_sections_have_valid_defaults),
        cmocka_unit_test(doc_lists_every_key_with_its_variable),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
