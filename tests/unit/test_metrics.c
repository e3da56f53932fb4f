/* test_metrics.c - unit tests for common/metrics.c: the registry's lookups and limits, the
 * text format 0.0.4 it renders, histogram quantiles and label escaping. Each test gets a
 * fresh registry from setup() and teardown() frees it, so LeakSanitizer checks every test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

#define DROPPED "integral_metrics_dropped_series_total"

static int setup(void **state)
{
    *state = metrics_new();
    return *state ? 0 : -1;
}

static int teardown(void **state)
{
    metrics_free(*state);
    return 0;
}

/* ---- Helpers */

/* Renders m and checks the length it reports. The caller frees the text. Not inlined: GCC 12
 * at -O2 inlines it and then warns, wrongly, that pointers into the text dangle
 * (-Wdangling-pointer confuses the local out-parameter with the heap text). */
__attribute__((noinline)) static char *render(metrics_t *m)
{
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(metrics_render(m, &text, &len), METRICS_OK);
    assert_non_null(text);
    assert_int_equal(len, strlen(text));
    return text;
}

static size_t count_of(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* True when text holds line as a whole line (line given without its newline). */
static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = strstr(text, line); p; p = strstr(p + 1, line))
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return true;
    return false;
}

/* The value of the unlabelled dropped-series counter, as rendered. */
static unsigned long dropped_rendered(metrics_t *m)
{
    char *text = render(m);
    const char *p = strstr(text, "\n" DROPPED " ");
    assert_non_null(p);
    unsigned long v = strtoul(p + strlen("\n" DROPPED " "), NULL, 10);
    free(text);
    return v;
}

static double read_double(void *ctx)
{
    return *(double *)ctx;
}

static int read_calls;

static double read_counting(void *ctx)
{
    read_calls++;
    return 7;
}

static const double two_bounds[] = {1, 2};

/* A histogram with bounds 1, 2, 4 and the given number of observations in each bucket
 * (0..1], (1..2], (2..4], (4..+Inf), observed at the bucket's upper bound (or 8). */
static metrics_histogram_t *histogram_with(metrics_t *m, unsigned a, unsigned b, unsigned c,
                                           unsigned inf)
{
    static const double bounds[] = {1, 2, 4};
    metrics_histogram_t *h = metrics_histogram(m, "q_seconds", NULL, NULL, bounds, 3);
    assert_non_null(h);
    for (unsigned i = 0; i < a; i++)
        metrics_histogram_observe(h, 1);
    for (unsigned i = 0; i < b; i++)
        metrics_histogram_observe(h, 2);
    for (unsigned i = 0; i < c; i++)
        metrics_histogram_observe(h, 4);
    for (unsigned i = 0; i < inf; i++)
        metrics_histogram_observe(h, 8);
    return h;
}

/* ---- Registry */

static void new_registry_holds_dropped_series_counter_at_zero(void **state)
{
    char *text = render(*state);
    assert_true(has_line(text, "# TYPE " DROPPED " counter"));
    assert_true(has_line(text, DROPPED " 0"));
    free(text);
}

static void free_of_null_is_a_no_op(void **state)
{
    metrics_free(NULL);
}

static void counter_add_and_inc_accumulate(void **state)
{
    metrics_counter_t *c = metrics_counter(*state, "events_total", "Events.", NULL);
    assert_non_null(c);
    assert_int_equal(metrics_counter_value(c), 0);
    metrics_counter_inc(c);
    metrics_counter_add(c, 41);
    assert_int_equal(metrics_counter_value(c), 42);
}

static void gauge_set_and_add(void **state)
{
    metrics_gauge_t *g = metrics_gauge(*state, "depth", "Depth.", NULL);
    assert_non_null(g);
    metrics_gauge_set(g, 10);
    metrics_gauge_add(g, -2.5);
    assert_true(metrics_gauge_value(g) == 7.5);
}

static void same_name_and_labels_return_same_child(void **state)
{
    metrics_counter_t *a = metrics_counter(*state, "x_total", NULL, "type=\"a\"");
    metrics_counter_t *b = metrics_counter(*state, "x_total", NULL, "type=\"a\"");
    assert_non_null(a);
    assert_ptr_equal(a, b);
    metrics_gauge_t *g = metrics_gauge(*state, "g", NULL, "k=\"v\"");
    assert_ptr_equal(g, metrics_gauge(*state, "g", NULL, "k=\"v\""));
    metrics_histogram_t *h = metrics_histogram(*state, "h", NULL, "k=\"v\"", two_bounds, 2);
    assert_ptr_equal(h, metrics_histogram(*state, "h", NULL, "k=\"v\"", two_bounds, 2));
}

static void different_labels_return_different_children(void **state)
{
    metrics_counter_t *a = metrics_counter(*state, "x_total", NULL, "type=\"a\"");
    metrics_counter_t *b = metrics_counter(*state, "x_total", NULL, "type=\"b\"");
    metrics_counter_t *none = metrics_counter(*state, "x_total", NULL, NULL);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(none);
    assert_ptr_not_equal(a, b);
    assert_ptr_not_equal(a, none);
    metrics_counter_inc(a);
    assert_int_equal(metrics_counter_value(b), 0);
}

static void null_and_empty_labels_are_the_same_child(void **state)
{
    metrics_counter_t *a = metrics_counter(*state, "x_total", NULL, NULL);
    assert_ptr_equal(a, metrics_counter(*state, "x_total", NULL, ""));
}

static void many_series_keep_their_children(void **state)
{
    /* Enough to grow the hash tables several times over. */
    enum { N = 3000 };
    metrics_counter_t *children[N];
    char labels[64];
    for (int i = 0; i < N; i++) {
        snprintf(labels, sizeof labels, "id=\"%d\"", i);
        children[i] = metrics_counter(*state, "many_total", NULL, labels);
        assert_non_null(children[i]);
        metrics_counter_add(children[i], (uint64_t)i);
    }
    for (int i = 0; i < N; i++) {
        snprintf(labels, sizeof labels, "id=\"%d\"", i);
        metrics_counter_t *c = metrics_counter(*state, "many_total", NULL, labels);
        assert_ptr_equal(c, children[i]);
        assert_int_equal(metrics_counter_value(c), i);
    }
    assert_int_equal(dropped_rendered(*state), 0);
}

static void name_registered_with_another_type_returns_null(void **state)
{
    assert_non_null(metrics_counter(*state, "thing", NULL, NULL));
    assert_null(metrics_gauge(*state, "thing", NULL, NULL));
    assert_null(metrics_gauge(*state, "thing", NULL, "other=\"labels\""));
    assert_null(metrics_histogram(*state, "thing", NULL, NULL, two_bounds, 2));
    assert_int_equal(metrics_gauge_fn(*state, "thing", NULL, NULL, read_counting, NULL),
                     METRICS_EINVAL);
}

static void gauge_and_callback_gauge_of_one_name_conflict(void **state)
{
    assert_non_null(metrics_gauge(*state, "open", NULL, "a=\"1\""));
    assert_int_equal(metrics_gauge_fn(*state, "open", NULL, "b=\"2\"", read_counting, NULL),
                     METRICS_EINVAL);
}

static void dropped_series_name_is_a_counter(void **state)
{
    assert_null(metrics_gauge(*state, DROPPED, NULL, NULL));
    assert_non_null(metrics_counter(*state, DROPPED, NULL, NULL));
}

static void invalid_metric_names_return_null(void **state)
{
    static const char *const names[] = {"", "1abc", "a-b", "a b", "a.b", "a{b}", "é"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        assert_null(metrics_counter(*state, names[i], NULL, NULL));
        assert_null(metrics_gauge(*state, names[i], NULL, NULL));
        assert_null(metrics_histogram(*state, names[i], NULL, NULL, two_bounds, 2));
        assert_int_equal(metrics_gauge_fn(*state, names[i], NULL, NULL, read_counting, NULL),
                         METRICS_EINVAL);
    }
    assert_null(metrics_counter(*state, NULL, NULL, NULL));
}

static void names_with_colons_underscores_and_digits_are_valid(void **state)
{
    assert_non_null(metrics_counter(*state, "a:b_c9", NULL, NULL));
    assert_non_null(metrics_counter(*state, ":x", NULL, NULL));
    assert_non_null(metrics_counter(*state, "_x", NULL, NULL));
}

static void malformed_label_bodies_return_null(void **state)
{
    static const char *const bodies[] = {
        "a",                /* no value */
        "a=b",              /* unquoted */
        "a=\"b",            /* unterminated */
        "a=\"b\",",         /* trailing comma */
        ",a=\"b\"",         /* leading comma */
        "a=\"b\" ,c=\"d\"", /* space */
        "a=\"b\"c=\"d\"",   /* no comma */
        "1a=\"b\"",         /* name starts with a digit */
        "a-b=\"c\"",        /* invalid name character */
        "a=\"b\nc\"",       /* raw newline */
        "a=\"b\\x\"",       /* unknown escape */
        "a=\"b\\\"",        /* escaped closing quote: unterminated */
        "=\"b\"",           /* empty name */
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        assert_null(metrics_counter(*state, "x_total", NULL, bodies[i]));
        assert_null(metrics_gauge(*state, "g", NULL, bodies[i]));
    }
}

static void well_formed_label_bodies_are_accepted(void **state)
{
    assert_non_null(metrics_counter(*state, "x_total", NULL, "a=\"\""));
    assert_non_null(metrics_counter(*state, "x_total", NULL, "a=\"b\",c_2=\"d e\""));
    assert_non_null(metrics_counter(*state, "x_total", NULL, "a=\"q\\\"\\\\\\n,=\""));
}

static void reserved_label_names_return_null(void **state)
{
    assert_null(metrics_counter(*state, "x_total", NULL, "__name__=\"y\""));
    assert_null(metrics_counter(*state, "x_total", NULL, "a=\"1\",__b=\"2\""));
    assert_non_null(metrics_counter(*state, "x_total", NULL, "_b=\"2\""));
}

static void repeated_label_names_return_null(void **state)
{
    assert_null(metrics_counter(*state, "x_total", NULL, "a=\"1\",a=\"2\""));
    assert_null(metrics_counter(*state, "x_total", NULL, "a=\"1\",b=\"2\",a=\"3\""));
    assert_non_null(metrics_counter(*state, "x_total", NULL, "a=\"1\",ab=\"2\""));
}

static void histogram_label_le_returns_null(void **state)
{
    assert_null(metrics_histogram(*state, "h", NULL, "le=\"1\"", two_bounds, 2));
    assert_null(metrics_histogram(*state, "h", NULL, "a=\"1\",le=\"1\"", two_bounds, 2));
    assert_non_null(metrics_counter(*state, "c_total", NULL, "le=\"1\""));
    assert_non_null(metrics_histogram(*state, "h", NULL, "lex=\"1\"", two_bounds, 2));
}

static void histogram_invalid_bounds_return_null(void **state)
{
    double many[65];
    for (size_t i = 0; i < 65; i++)
        many[i] = (double)i;
    assert_null(metrics_histogram(*state, "h", NULL, NULL, NULL, 2));
    assert_null(metrics_histogram(*state, "h", NULL, NULL, two_bounds, 0));
    assert_null(metrics_histogram(*state, "h", NULL, NULL, many, 65));
    assert_null(metrics_histogram(*state, "h", NULL, NULL, (const double[]){2, 1}, 2));
    assert_null(metrics_histogram(*state, "h", NULL, NULL, (const double[]){1, 1}, 2));
    assert_null(metrics_histogram(*state, "h", NULL, NULL, (const double[]){1, NAN}, 2));
    assert_null(metrics_histogram(*state, "h", NULL, NULL, (const double[]){1, INFINITY}, 2));
    assert_null(metrics_histogram(*state, "h", NULL, NULL, (const double[]){-INFINITY, 1}, 2));
}

static void histogram_accepts_one_to_sixty_four_bounds(void **state)
{
    double many[64];
    for (size_t i = 0; i < 64; i++)
        many[i] = (double)i - 10;
    assert_non_null(metrics_histogram(*state, "one", NULL, NULL, two_bounds, 1));
    metrics_histogram_t *h = metrics_histogram(*state, "many", NULL, NULL, many, 64);
    assert_non_null(h);
    char *text = render(*state);
    assert_int_equal(count_of(text, "many_bucket{"), 65);
    free(text);
}

static void histogram_registered_again_ignores_new_bounds(void **state)
{
    metrics_histogram_t *h = metrics_histogram(*state, "h", NULL, NULL, two_bounds, 2);
    static const double other[] = {5, 6, 7};
    assert_ptr_equal(metrics_histogram(*state, "h", NULL, NULL, other, 3), h);
    char *text = render(*state);
    assert_int_equal(count_of(text, "h_bucket{"), 3);
    assert_null(strstr(text, "le=\"5\""));
    free(text);
}

/* ---- Series limit */

static void past_series_limit_counter_is_the_overflow_child(void **state)
{
    metrics_set_max_series(*state, 2);
    metrics_counter_t *a = metrics_counter(*state, "x_total", NULL, "n=\"1\"");
    metrics_counter_t *b = metrics_counter(*state, "x_total", NULL, "n=\"2\"");
    metrics_counter_t *c = metrics_counter(*state, "x_total", NULL, "n=\"3\"");
    metrics_counter_t *d = metrics_counter(*state, "y_total", NULL, NULL);
    assert_non_null(c);
    assert_ptr_not_equal(c, a);
    assert_ptr_not_equal(c, b);
    assert_ptr_equal(c, d);
}

static void past_series_limit_gauge_and_histogram_get_overflow_children(void **state)
{
    metrics_set_max_series(*state, 0);
    metrics_gauge_t *g1 = metrics_gauge(*state, "g1", NULL, NULL);
    metrics_gauge_t *g2 = metrics_gauge(*state, "g2", NULL, NULL);
    assert_non_null(g1);
    assert_ptr_equal(g1, g2);
    metrics_gauge_set(g1, 3);
    metrics_histogram_t *h1 = metrics_histogram(*state, "h1", NULL, NULL, two_bounds, 2);
    metrics_histogram_t *h2 = metrics_histogram(*state, "h2", NULL, NULL, two_bounds, 2);
    assert_non_null(h1);
    assert_ptr_equal(h1, h2);
    metrics_histogram_observe(h1, 0.5);
    assert_int_equal(metrics_histogram_count(h1), 1);
}

static void past_series_limit_refusals_are_counted(void **state)
{
    metrics_set_max_series(*state, 1);
    metrics_counter(*state, "x_total", NULL, "n=\"1\"");
    metrics_counter(*state, "x_total", NULL, "n=\"2\"");
    metrics_gauge(*state, "g", NULL, NULL);
    metrics_histogram(*state, "h", NULL, NULL, two_bounds, 2);
    assert_int_equal(dropped_rendered(*state), 3);
}

static void overflow_children_are_not_rendered(void **state)
{
    metrics_set_max_series(*state, 0);
    metrics_counter_inc(metrics_counter(*state, "lost_total", "Lost.", "n=\"1\""));
    metrics_gauge_set(metrics_gauge(*state, "lost_gauge", NULL, NULL), 1);
    metrics_histogram_observe(metrics_histogram(*state, "lost_h", NULL, NULL, two_bounds, 2), 1);
    char *text = render(*state);
    assert_null(strstr(text, "lost"));
    free(text);
}

static void past_series_limit_existing_series_are_still_returned(void **state)
{
    metrics_set_max_series(*state, 1);
    metrics_counter_t *a = metrics_counter(*state, "x_total", NULL, "n=\"1\"");
    metrics_counter(*state, "x_total", NULL, "n=\"2\"");
    assert_ptr_equal(metrics_counter(*state, "x_total", NULL, "n=\"1\""), a);
    assert_int_equal(dropped_rendered(*state), 1);
}

static void past_series_limit_invalid_names_still_return_null(void **state)
{
    metrics_set_max_series(*state, 0);
    assert_null(metrics_counter(*state, "bad-name", NULL, NULL));
    assert_null(metrics_counter(*state, "x_total", NULL, "bad"));
    assert_int_equal(dropped_rendered(*state), 0);
}

static void dropped_series_counter_does_not_count_against_limit(void **state)
{
    metrics_set_max_series(*state, 1);
    metrics_counter_t *a = metrics_counter(*state, "a_total", NULL, NULL);
    metrics_counter_t *b = metrics_counter(*state, "b_total", NULL, NULL);
    assert_ptr_not_equal(a, b); /* a is real, b the overflow */
    assert_int_equal(dropped_rendered(*state), 1);
}

static void raising_max_series_allows_later_registrations(void **state)
{
    metrics_set_max_series(*state, 0);
    metrics_counter_t *overflow = metrics_counter(*state, "a_total", NULL, NULL);
    metrics_set_max_series(*state, 1);
    metrics_counter_t *a = metrics_counter(*state, "a_total", NULL, NULL);
    assert_ptr_not_equal(a, overflow);
    metrics_counter_inc(a);
    char *text = render(*state);
    assert_true(has_line(text, "a_total 1"));
    free(text);
}

static void lowering_max_series_keeps_existing_series(void **state)
{
    metrics_counter_inc(metrics_counter(*state, "a_total", NULL, NULL));
    metrics_set_max_series(*state, 0);
    char *text = render(*state);
    assert_true(has_line(text, "a_total 1"));
    free(text);
}

static void gauge_fn_past_series_limit_is_efull_and_counted(void **state)
{
    double v = 1;
    metrics_set_max_series(*state, 0);
    assert_int_equal(metrics_gauge_fn(*state, "lag", NULL, NULL, read_double, &v), METRICS_EFULL);
    assert_int_equal(dropped_rendered(*state), 1);
    char *text = render(*state);
    assert_null(strstr(text, "lag"));
    free(text);
}

/* ---- Callback gauges */

static void gauge_fn_is_read_at_render_time(void **state)
{
    double v = 1.5;
    assert_int_equal(metrics_gauge_fn(*state, "lag", "Lag.", "p=\"0\"", read_double, &v), 0);
    v = 2.5;
    char *text = render(*state);
    assert_true(has_line(text, "# TYPE lag gauge"));
    assert_true(has_line(text, "lag{p=\"0\"} 2.5"));
    free(text);
}

static void gauge_fn_is_called_once_per_render(void **state)
{
    read_calls = 0;
    metrics_gauge_fn(*state, "calls", NULL, NULL, read_counting, NULL);
    assert_int_equal(read_calls, 0);
    free(render(*state));
    free(render(*state));
    assert_int_equal(read_calls, 2);
}

static void gauge_fn_registered_again_replaces_callback(void **state)
{
    double first = 1, second = 2;
    metrics_gauge_fn(*state, "lag", NULL, NULL, read_double, &first);
    assert_int_equal(metrics_gauge_fn(*state, "lag", NULL, NULL, read_double, &second), 0);
    char *text = render(*state);
    assert_true(has_line(text, "lag 2"));
    assert_int_equal(count_of(text, "\nlag "), 1);
    free(text);
}

static void gauge_fn_with_null_read_stops_rendering(void **state)
{
    double v = 1;
    metrics_gauge_fn(*state, "lag", "Lag.", "p=\"0\"", read_double, &v);
    metrics_gauge_fn(*state, "lag", NULL, "p=\"1\"", read_double, &v);
    assert_int_equal(metrics_gauge_fn(*state, "lag", NULL, "p=\"0\"", NULL, NULL), 0);
    char *text = render(*state);
    assert_null(strstr(text, "lag{p=\"0\"}"));
    assert_true(has_line(text, "lag{p=\"1\"} 1"));
    free(text);
}

static void gauge_fn_family_with_no_callback_left_is_not_rendered(void **state)
{
    double v = 1;
    metrics_gauge_fn(*state, "lag", "Lag.", NULL, read_double, &v);
    metrics_gauge_fn(*state, "lag", NULL, NULL, NULL, NULL);
    char *text = render(*state);
    assert_null(strstr(text, "lag"));
    free(text);
}

static void gauge_fn_unregistered_keeps_its_slot_reserved(void **state)
{
    double v = 1;
    metrics_set_max_series(*state, 1);
    metrics_gauge_fn(*state, "lag", NULL, "p=\"0\"", read_double, &v);
    metrics_gauge_fn(*state, "lag", NULL, "p=\"0\"", NULL, NULL);
    assert_int_equal(metrics_gauge_fn(*state, "lag", NULL, "p=\"1\"", read_double, &v),
                     METRICS_EFULL);
    assert_int_equal(metrics_gauge_fn(*state, "lag", NULL, "p=\"0\"", read_double, &v), 0);
    char *text = render(*state);
    assert_true(has_line(text, "lag{p=\"0\"} 1"));
    free(text);
}

/* ---- Rendering */

static void render_matches_text_format_exactly(void **state)
{
    metrics_t *m = *state;
    metrics_counter_add(metrics_counter(m, "a_total", "Things done.", "k=\"v\""), 3);
    metrics_counter_inc(metrics_counter(m, "a_total", NULL, "k=\"w\""));
    metrics_gauge_set(metrics_gauge(m, "b", "A gauge.", NULL), -0.25);
    static const double bounds[] = {0.1, 1};
    metrics_histogram_t *h = metrics_histogram(m, "lat_seconds", "Latency.", "s=\"x\"", bounds, 2);
    metrics_histogram_observe(h, 0.0625);
    metrics_histogram_observe(h, 0.5);
    metrics_histogram_observe(h, 4);
    char *text = render(m);
    const char *ours = strstr(text, "# HELP a_total");
    assert_non_null(ours);
    assert_string_equal(ours, "# HELP a_total Things done.\n"
                              "# TYPE a_total counter\n"
                              "a_total{k=\"v\"} 3\n"
                              "a_total{k=\"w\"} 1\n"
                              "# HELP b A gauge.\n"
                              "# TYPE b gauge\n"
                              "b -0.25\n"
                              "# HELP lat_seconds Latency.\n"
                              "# TYPE lat_seconds histogram\n"
                              "lat_seconds_bucket{s=\"x\",le=\"0.1\"} 1\n"
                              "lat_seconds_bucket{s=\"x\",le=\"1\"} 2\n"
                              "lat_seconds_bucket{s=\"x\",le=\"+Inf\"} 3\n"
                              "lat_seconds_sum{s=\"x\"} 4.5625\n"
                              "lat_seconds_count{s=\"x\"} 3\n");
    free(text);
}

static void render_writes_one_help_and_type_per_family(void **state)
{
    metrics_counter(*state, "x_total", "X.", "n=\"1\"");
    metrics_counter(*state, "y_total", "Y.", NULL);
    metrics_counter(*state, "x_total", "X.", "n=\"2\"");
    metrics_histogram(*state, "h", "H.", "n=\"1\"", two_bounds, 2);
    metrics_histogram(*state, "h", "H.", "n=\"2\"", two_bounds, 2);
    char *text = render(*state);
    assert_int_equal(count_of(text, "# HELP x_total "), 1);
    assert_int_equal(count_of(text, "# TYPE x_total "), 1);
    assert_int_equal(count_of(text, "# HELP h "), 1);
    assert_int_equal(count_of(text, "# TYPE h "), 1);
    assert_int_equal(count_of(text, "# TYPE "), 4); /* with the dropped-series counter */
    free(text);
}

static void render_groups_children_under_their_family_in_registration_order(void **state)
{
    metrics_counter(*state, "x_total", NULL, "n=\"2\"");
    metrics_counter(*state, "y_total", NULL, NULL);
    metrics_counter(*state, "x_total", NULL, "n=\"1\"");
    char *text = render(*state);
    const char *x_type = strstr(text, "# TYPE x_total");
    const char *x2 = strstr(text, "x_total{n=\"2\"}");
    const char *x1 = strstr(text, "x_total{n=\"1\"}");
    const char *y_type = strstr(text, "# TYPE y_total");
    const char *dropped = strstr(text, "# TYPE " DROPPED);
    assert_true(dropped && x_type && x2 && x1 && y_type);
    assert_true(dropped < x_type);
    assert_true(x_type < x2 && x2 < x1 && x1 < y_type);
    free(text);
}

static void render_omits_braces_without_labels(void **state)
{
    metrics_counter_inc(metrics_counter(*state, "plain_total", NULL, NULL));
    metrics_histogram_observe(metrics_histogram(*state, "h", NULL, NULL, two_bounds, 2), 1);
    char *text = render(*state);
    assert_true(has_line(text, "plain_total 1"));
    assert_true(has_line(text, "h_bucket{le=\"1\"} 1"));
    assert_true(has_line(text, "h_sum 1"));
    assert_true(has_line(text, "h_count 1"));
    free(text);
}

static void render_help_from_first_registration_wins(void **state)
{
    metrics_counter(*state, "x_total", "First.", "n=\"1\"");
    metrics_counter(*state, "x_total", "Second.", "n=\"2\"");
    char *text = render(*state);
    assert_true(has_line(text, "# HELP x_total First."));
    assert_null(strstr(text, "Second."));
    free(text);
}

static void render_omits_help_line_when_help_is_null(void **state)
{
    metrics_counter(*state, "x_total", NULL, NULL);
    char *text = render(*state);
    assert_null(strstr(text, "# HELP x_total"));
    assert_true(has_line(text, "# TYPE x_total counter"));
    free(text);
}

static void render_escapes_backslash_and_newline_in_help(void **state)
{
    metrics_counter(*state, "x_total", "a\\b\nc \"quoted\"", NULL);
    char *text = render(*state);
    assert_true(has_line(text, "# HELP x_total a\\\\b\\nc \"quoted\""));
    free(text);
}

static void render_keeps_escaped_label_values(void **state)
{
    char value[64], labels[80];
    metrics_label_escape(value, sizeof value, "a\"b\\c\nd");
    snprintf(labels, sizeof labels, "v=\"%s\"", value);
    metrics_counter_inc(metrics_counter(*state, "x_total", NULL, labels));
    char *text = render(*state);
    assert_true(has_line(text, "x_total{v=\"a\\\"b\\\\c\\nd\"} 1"));
    free(text);
}

static void render_histogram_buckets_are_cumulative_and_end_at_inf(void **state)
{
    static const double bounds[] = {1, 2, 4};
    metrics_histogram_t *h = metrics_histogram(*state, "h", NULL, NULL, bounds, 3);
    metrics_histogram_observe(h, 0.5);
    metrics_histogram_observe(h, 1.5);
    metrics_histogram_observe(h, 1.5);
    metrics_histogram_observe(h, 100);
    char *text = render(*state);
    const char *b1 = strstr(text, "h_bucket{le=\"1\"} 1\n");
    const char *b2 = strstr(text, "h_bucket{le=\"2\"} 3\n");
    const char *b4 = strstr(text, "h_bucket{le=\"4\"} 3\n");
    const char *inf = strstr(text, "h_bucket{le=\"+Inf\"} 4\n");
    const char *sum = strstr(text, "h_sum 103.5\n");
    const char *count = strstr(text, "h_count 4\n");
    assert_true(b1 && b2 && b4 && inf && sum && count);
    assert_true(b1 < b2 && b2 < b4 && b4 < inf && inf < sum && sum < count);
    free(text);
}

static void render_histogram_labels_come_before_le(void **state)
{
    metrics_histogram(*state, "h", NULL, "a=\"1\",b=\"2\"", two_bounds, 2);
    char *text = render(*state);
    assert_true(has_line(text, "h_bucket{a=\"1\",b=\"2\",le=\"+Inf\"} 0"));
    assert_true(has_line(text, "h_sum{a=\"1\",b=\"2\"} 0"));
    assert_true(has_line(text, "h_count{a=\"1\",b=\"2\"} 0"));
    free(text);
}

static void render_formats_nan_and_infinities_by_name(void **state)
{
    metrics_gauge_set(metrics_gauge(*state, "g", NULL, "v=\"nan\""), NAN);
    metrics_gauge_set(metrics_gauge(*state, "g", NULL, "v=\"inf\""), INFINITY);
    metrics_gauge_set(metrics_gauge(*state, "g", NULL, "v=\"-inf\""), -INFINITY);
    char *text = render(*state);
    assert_true(has_line(text, "g{v=\"nan\"} NaN"));
    assert_true(has_line(text, "g{v=\"inf\"} +Inf"));
    assert_true(has_line(text, "g{v=\"-inf\"} -Inf"));
    free(text);
}

static void render_formats_integers_without_exponent(void **state)
{
    metrics_gauge_set(metrics_gauge(*state, "g", NULL, "v=\"a\""), 1e15);
    metrics_gauge_set(metrics_gauge(*state, "g", NULL, "v=\"b\""), -42);
    metrics_gauge_set(metrics_gauge(*state, "g", NULL, "v=\"c\""), 9007199254740992.0);
    metrics_counter_add(metrics_counter(*state, "c_total", NULL, NULL), UINT64_MAX);
    char *text = render(*state);
    assert_true(has_line(text, "g{v=\"a\"} 1000000000000000"));
    assert_true(has_line(text, "g{v=\"b\"} -42"));
    assert_true(has_line(text, "g{v=\"c\"} 9007199254740992"));
    assert_true(has_line(text, "c_total 18446744073709551615"));
    free(text);
}

static void render_formats_fractions_in_shortest_round_trip_form(void **state)
{
    metrics_gauge_set(metrics_gauge(*state, "g", NULL, "v=\"a\""), 0.1);
    metrics_gauge_set(metrics_gauge(*state, "g", NULL, "v=\"b\""), 1.0 / 3.0);
    metrics_gauge_set(metrics_gauge(*state, "g", NULL, "v=\"c\""), 1e-7);
    metrics_gauge_set(metrics_gauge(*state, "g", NULL, "v=\"d\""), 1e300);
    char *text = render(*state);
    assert_true(has_line(text, "g{v=\"a\"} 0.1"));
    assert_true(has_line(text, "g{v=\"c\"} 1e-07"));
    assert_true(has_line(text, "g{v=\"d\"} 1e+300"));
    const char *third = strstr(text, "g{v=\"b\"} ");
    assert_non_null(third);
    assert_true(strtod(third + strlen("g{v=\"b\"} "), NULL) == 1.0 / 3.0);
    free(text);
}

static void render_formats_le_of_default_latency_buckets(void **state)
{
    metrics_histogram(*state, "lat_seconds", NULL, NULL, metrics_latency_buckets,
                      metrics_latency_buckets_count);
    char *text = render(*state);
    assert_true(has_line(text, "lat_seconds_bucket{le=\"5e-05\"} 0"));
    assert_true(has_line(text, "lat_seconds_bucket{le=\"0.0025\"} 0"));
    assert_true(has_line(text, "lat_seconds_bucket{le=\"10\"} 0"));
    free(text);
}

static void latency_buckets_are_thirty_ascending_from_50us_to_10s(void **state)
{
    assert_int_equal(metrics_latency_buckets_count, 30);
    assert_true(metrics_latency_buckets[0] == 0.00005);
    assert_true(metrics_latency_buckets[11] == 0.005); /* the alert latency target */
    assert_true(metrics_latency_buckets[29] == 10);
    for (size_t i = 1; i < metrics_latency_buckets_count; i++)
        assert_true(metrics_latency_buckets[i] > metrics_latency_buckets[i - 1]);
}

/* ---- Histograms and quantiles */

static void histogram_counts_and_sums_observations(void **state)
{
    metrics_histogram_t *h = metrics_histogram(*state, "h", NULL, NULL, two_bounds, 2);
    metrics_histogram_observe(h, 0.5);
    metrics_histogram_observe(h, 3);
    assert_int_equal(metrics_histogram_count(h), 2);
    assert_true(metrics_histogram_sum(h) == 3.5);
}

static void histogram_ignores_nan(void **state)
{
    metrics_histogram_t *h = metrics_histogram(*state, "h", NULL, NULL, two_bounds, 2);
    metrics_histogram_observe(h, NAN);
    assert_int_equal(metrics_histogram_count(h), 0);
    assert_true(metrics_histogram_sum(h) == 0);
}

static void histogram_value_on_a_bound_counts_in_that_bucket(void **state)
{
    metrics_histogram_t *h = metrics_histogram(*state, "h", NULL, NULL, two_bounds, 2);
    metrics_histogram_observe(h, 1);
    metrics_histogram_observe(h, 2);
    char *text = render(*state);
    assert_true(has_line(text, "h_bucket{le=\"1\"} 1"));
    assert_true(has_line(text, "h_bucket{le=\"2\"} 2"));
    free(text);
}

static void quantile_of_empty_histogram_is_nan(void **state)
{
    metrics_histogram_t *h = histogram_with(*state, 0, 0, 0, 0);
    assert_true(isnan(metrics_histogram_quantile(h, 0.5)));
}

static void quantile_out_of_range_is_infinite(void **state)
{
    metrics_histogram_t *h = histogram_with(*state, 1, 0, 0, 0);
    double below = metrics_histogram_quantile(h, -0.1);
    double above = metrics_histogram_quantile(h, 1.1);
    assert_true(isinf(below) && below < 0);
    assert_true(isinf(above) && above > 0);
}

static void quantile_of_nan_is_nan(void **state)
{
    metrics_histogram_t *h = histogram_with(*state, 1, 0, 0, 0);
    assert_true(isnan(metrics_histogram_quantile(h, NAN)));
}

static void quantile_interpolates_linearly_inside_the_bucket(void **state)
{
    /* 10 in (0,1], 10 in (1,2], 20 in (2,4]: rank 0.75 * 40 = 30 is half way through the
     * third bucket, so 2 + (4 - 2) * 10/20 = 3. */
    metrics_histogram_t *h = histogram_with(*state, 10, 10, 20, 0);
    assert_true(fabs(metrics_histogram_quantile(h, 0.75) - 3.0) < 1e-12);
    /* rank 0.3 * 40 = 12: 2 of 10 into the second bucket: 1 + 0.2. */
    assert_true(fabs(metrics_histogram_quantile(h, 0.3) - 1.2) < 1e-12);
}

static void quantile_first_bucket_starts_at_zero(void **state)
{
    /* rank 0.25 * 4 = 1 of the 2 observations in (0,1]: 0 + 1 * 1/2. */
    metrics_histogram_t *h = histogram_with(*state, 2, 2, 0, 0);
    assert_true(fabs(metrics_histogram_quantile(h, 0.25) - 0.5) < 1e-12);
}

static void quantile_first_bucket_at_or_below_zero_returns_its_bound(void **state)
{
    static const double bounds[] = {-1, 5};
    metrics_histogram_t *h = metrics_histogram(*state, "neg", NULL, NULL, bounds, 2);
    metrics_histogram_observe(h, -3);
    metrics_histogram_observe(h, -2);
    assert_true(metrics_histogram_quantile(h, 0.5) == -1);
}

static void quantile_in_inf_bucket_returns_highest_finite_bound(void **state)
{
    metrics_histogram_t *h = histogram_with(*state, 1, 0, 0, 9);
    assert_true(metrics_histogram_quantile(h, 0.5) == 4);
    assert_true(metrics_histogram_quantile(h, 1) == 4);
}

static void quantile_one_is_the_bound_of_the_last_non_empty_bucket(void **state)
{
    metrics_histogram_t *h = histogram_with(*state, 3, 1, 0, 0);
    assert_true(metrics_histogram_quantile(h, 1) == 2);
}

static void quantile_at_a_bucket_edge_takes_the_lower_bucket(void **state)
{
    /* rank 0.5 * 4 = 2 equals the first bucket's cumulative count: its upper bound. */
    metrics_histogram_t *h = histogram_with(*state, 2, 0, 2, 0);
    assert_true(metrics_histogram_quantile(h, 0.5) == 1);
}

static void quantile_zero_with_empty_first_bucket_is_nan_as_in_prometheus(void **state)
{
    metrics_histogram_t *h = histogram_with(*state, 0, 4, 0, 0);
    assert_true(isnan(metrics_histogram_quantile(h, 0)));
    metrics_histogram_observe(h, 0.5);
    assert_true(metrics_histogram_quantile(h, 0) == 0);
}

/* ---- Label escaping */

static void label_escape_escapes_backslash_quote_and_newline(void **state)
{
    char out[32];
    size_t n = metrics_label_escape(out, sizeof out, "a\\b\"c\nd");
    assert_string_equal(out, "a\\\\b\\\"c\\nd");
    assert_int_equal(n, strlen("a\\\\b\\\"c\\nd"));
}

static void label_escape_copies_other_bytes_unchanged(void **state)
{
    char out[32];
    const char *plain = "tab\there é";
    assert_int_equal(metrics_label_escape(out, sizeof out, plain), strlen(plain));
    assert_string_equal(out, plain);
}

static void label_escape_truncates_and_returns_full_length(void **state)
{
    char out[4];
    memset(out, 'X', sizeof out);
    size_t n = metrics_label_escape(out, sizeof out, "abcdef");
    assert_int_equal(n, 6);
    assert_true(n >= sizeof out);
    assert_string_equal(out, "abc");
}

static void label_escape_exact_fit_is_not_truncated(void **state)
{
    char out[4];
    size_t n = metrics_label_escape(out, sizeof out, "a\"");
    assert_int_equal(n, 3);
    assert_true(n < sizeof out);
    assert_string_equal(out, "a\\\"");
}

static void label_escape_does_not_split_an_escape(void **state)
{
    char out[3];
    size_t n = metrics_label_escape(out, sizeof out, "a\"b");
    assert_int_equal(n, 4);
    assert_string_equal(out, "a");
}

static void label_escape_does_not_split_a_utf8_character(void **state)
{
    char out[4];
    /* "aé" fits in 3 bytes and the NUL; "a€" (4 bytes) does not, and loses the € whole. */
    assert_int_equal(metrics_label_escape(out, sizeof out, "aéz"), 4);
    assert_string_equal(out, "aé");
    assert_int_equal(metrics_label_escape(out, sizeof out, "a€"), 4);
    assert_string_equal(out, "a");
}

static void label_escape_with_zero_cap_writes_nothing(void **state)
{
    char out[1] = {'X'};
    assert_int_equal(metrics_label_escape(out, 0, "abc"), 3);
    assert_int_equal(out[0], 'X');
    assert_int_equal(metrics_label_escape(NULL, 0, "a\n"), 3);
}

static void label_escape_with_cap_one_writes_only_the_nul(void **state)
{
    char out[1] = {'X'};
    assert_int_equal(metrics_label_escape(out, 1, "abc"), 3);
    assert_int_equal(out[0], '\0');
}

static void label_escape_output_is_a_valid_label_value(void **state)
{
    static const char *const inputs[] = {"\\", "\"", "\n", "x\\\"\n\\", "a\"b"};
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        for (size_t cap = 1; cap <= 12; cap++) {
            char value[12], labels[32];
            metrics_label_escape(value, cap, inputs[i]);
            snprintf(labels, sizeof labels, "v=\"%s\"", value);
            assert_non_null(metrics_counter(*state, "x_total", NULL, labels));
        }
    }
}

static void strerror_describes_each_error(void **state)
{
    const char *ok = metrics_strerror(METRICS_OK);
    const char *nomem = metrics_strerror(METRICS_ENOMEM);
    const char *inval = metrics_strerror(METRICS_EINVAL);
    const char *full = metrics_strerror(METRICS_EFULL);
    const char *unknown = metrics_strerror(-99);
    assert_true(ok && nomem && inval && full && unknown);
    assert_string_not_equal(nomem, inval);
    assert_string_not_equal(inval, full);
    assert_string_not_equal(full, nomem);
    assert_string_not_equal(unknown, ok);
}

#define TEST(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(new_registry_holds_dropped_series_counter_at_zero),
        TEST(free_of_null_is_a_no_op),
        TEST(counter_add_and_inc_accumulate),
        TEST(gauge_set_and_add),
        TEST(same_name_and_labels_return_same_child),
        TEST(different_labels_return_different_children),
        TEST(null_and_empty_labels_are_the_same_child),
        TEST(many_series_keep_their_children),
        TEST(name_registered_with_another_type_returns_null),
        TEST(gauge_and_callback_gauge_of_one_name_conflict),
        TEST(dropped_series_name_is_a_counter),
        TEST(invalid_metric_names_return_null),
        TEST(names_with_colons_underscores_and_digits_are_valid),
        TEST(malformed_label_bodies_return_null),
        TEST(well_formed_label_bodies_are_accepted),
        TEST(reserved_label_names_return_null),
        TEST(repeated_label_names_return_null),
        TEST(histogram_label_le_returns_null),
        TEST(histogram_invalid_bounds_return_null),
        TEST(histogram_accepts_one_to_sixty_four_bounds),
        TEST(histogram_registered_again_ignores_new_bounds),
        TEST(past_series_limit_counter_is_the_overflow_child),
        TEST(past_series_limit_gauge_and_histogram_get_overflow_children),
        TEST(past_series_limit_refusals_are_counted),
        TEST(overflow_children_are_not_rendered),
        TEST(past_series_limit_existing_series_are_still_returned),
        TEST(past_series_limit_invalid_names_still_return_null),
        TEST(dropped_series_counter_does_not_count_against_limit),
        TEST(raising_max_series_allows_later_registrations),
        TEST(lowering_max_series_keeps_existing_series),
        TEST(gauge_fn_past_series_limit_is_efull_and_counted),
        TEST(gauge_fn_is_read_at_render_time),
        TEST(gauge_fn_is_called_once_per_render),
        TEST(gauge_fn_registered_again_replaces_callback),
        TEST(gauge_fn_with_null_read_stops_rendering),
        TEST(gauge_fn_family_with_no_callback_left_is_not_rendered),
        TEST(gauge_fn_unregistered_keeps_its_slot_reserved),
        TEST(render_matches_text_format_exactly),
        TEST(render_writes_one_help_and_type_per_family),
        TEST(render_groups_children_under_their_family_in_registration_order),
        TEST(render_omits_braces_without_labels),
        TEST(render_help_from_first_registration_wins),
        TEST(render_omits_help_line_when_help_is_null),
        TEST(render_escapes_backslash_and_newline_in_help),
        TEST(render_keeps_escaped_label_values),
        TEST(render_histogram_buckets_are_cumulative_and_end_at_inf),
        TEST(render_histogram_labels_come_before_le),
        TEST(render_formats_nan_and_infinities_by_name),
        TEST(render_formats_integers_without_exponent),
        TEST(render_formats_fractions_in_shortest_round_trip_form),
        TEST(render_formats_le_of_default_latency_buckets),
        TEST(latency_buckets_are_thirty_ascending_from_50us_to_10s),
        TEST(histogram_counts_and_sums_observations),
        TEST(histogram_ignores_nan),
        TEST(histogram_value_on_a_bound_counts_in_that_bucket),
        TEST(quantile_of_empty_histogram_is_nan),
        TEST(quantile_out_of_range_is_infinite),
        TEST(quantile_of_nan_is_nan),
        TEST(quantile_interpolates_linearly_inside_the_bucket),
        TEST(quantile_first_bucket_starts_at_zero),
        TEST(quantile_first_bucket_at_or_below_zero_returns_its_bound),
        TEST(quantile_in_inf_bucket_returns_highest_finite_bound),
        TEST(quantile_one_is_the_bound_of_the_last_non_empty_bucket),
        TEST(quantile_at_a_bucket_edge_takes_the_lower_bucket),
        TEST(quantile_zero_with_empty_first_bucket_is_nan_as_in_prometheus),
        TEST(label_escape_escapes_backslash_quote_and_newline),
        TEST(label_escape_copies_other_bytes_unchanged),
        TEST(label_escape_truncates_and_returns_full_length),
        TEST(label_escape_exact_fit_is_not_truncated),
        TEST(label_escape_does_not_split_an_escape),
        TEST(label_escape_does_not_split_a_utf8_character),
        TEST(label_escape_with_zero_cap_writes_nothing),
        TEST(label_escape_with_cap_one_writes_only_the_nul),
        TEST(label_escape_output_is_a_valid_label_value),
        TEST(strerror_describes_each_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
