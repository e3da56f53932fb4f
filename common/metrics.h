/* metrics.h - a small registry of counters, gauges and histograms, rendered in the
 * Prometheus text exposition format 0.0.4.
 *
 * A registry is single-threaded: every service runs on one libuv loop, so updates are plain
 * stores with no atomics. Metrics are looked up by name and a preformatted label body
 * (`type="contact.queued",source="x"`); the same name and labels always return the same
 * child, which the registry owns until metrics_free(). Children of one name render as one
 * family (one # HELP and one # TYPE line), in registration order.
 *
 * Memory is bounded: past metrics_set_max_series() children (default 10,000) the lookup
 * functions return a shared, never-rendered "overflow" child of the right type instead of
 * allocating, and count the refusal in `integral_metrics_dropped_series_total`. So a label
 * value taken from input (an event type, say) can never grow memory without bound, and
 * callers never get NULL for a valid name.
 *
 * Programming errors (an invalid metric name or label body, one name registered with two
 * types) return NULL and log an error; callers may assert on that. */
#ifndef INTEGRAL_METRICS_H
#define INTEGRAL_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct metrics metrics_t;
typedef struct metrics_histogram metrics_histogram_t;

/* The value lives in a visible struct so that the hot-path updates are inline stores. */
typedef struct metrics_counter {
    uint64_t value;
} metrics_counter_t;

typedef struct metrics_gauge {
    double value;
} metrics_gauge_t;

/* Reads a callback gauge at render time; ctx is the pointer given at registration. */
typedef double (*metrics_read_cb)(void *ctx);

typedef enum {
    METRICS_OK = 0,
    METRICS_ENOMEM = -1, /* out of memory */
    METRICS_EINVAL = -2, /* bad name, labels, bounds, or a type conflict */
    METRICS_EFULL = -3,  /* the series limit was reached; the series was not added */
} metrics_err_t;

/* Default number of children (series) a registry holds, over all families. */
#define METRICS_DEFAULT_MAX_SERIES 10000

/* Default latency buckets in seconds, 50 us .. 10 s (30 bounds, fine from 0.5 to 50 ms; +Inf
 * is implicit). */
extern const double metrics_latency_buckets[];
extern const size_t metrics_latency_buckets_count;

/* Returns a new empty registry (NULL on OOM); it already holds the counter
 * integral_metrics_dropped_series_total, which does not count against the limit. */
metrics_t *metrics_new(void);

/* Frees the registry and every child; every pointer it returned becomes invalid. NULL is ok. */
void metrics_free(metrics_t *m);

/* Sets the maximum number of children; applies to later registrations only. */
void metrics_set_max_series(metrics_t *m, size_t max_series);

/* Returns a static string describing a metrics_err_t. */
const char *metrics_strerror(int err);

/* ---- Lookups. For all of them:
 * name:   borrowed; must match [a-zA-Z_:][a-zA-Z0-9_:]*.
 * help:   borrowed, may be NULL; copied when the family is first registered (later values
 *         for the same name are ignored). Escaped on output.
 * labels: borrowed, may be NULL or "" (no labels); copied on first registration. A label
 *         body: name="value" pairs separated by commas, values escaped as the format
 *         requires (\\, \" and \n; see metrics_label_escape). Names starting with "__" are
 *         reserved, and histograms may not use "le".
 * The returned child is owned by the registry and valid until metrics_free(). Past the
 * series limit (or on OOM) the overflow child is returned instead. NULL only for a
 * programming error (invalid name or labels, or the name has another type). */

metrics_counter_t *metrics_counter(metrics_t *m, const char *name, const char *help,
                                   const char *labels);

metrics_gauge_t *metrics_gauge(metrics_t *m, const char *name, const char *help,
                               const char *labels);

/* A gauge whose value is read(ctx) at render time, e.g. consumer lag or open connections.
 * ctx is kept (not owned): it must stay valid while registered. Registering the same name
 * and labels again replaces read and ctx; read == NULL unregisters it (it stops rendering;
 * the slot stays reserved). Returns 0, METRICS_EINVAL, or METRICS_EFULL / METRICS_ENOMEM
 * (not registered, refusal counted). */
int metrics_gauge_fn(metrics_t *m, const char *name, const char *help, const char *labels,
                     metrics_read_cb read, void *ctx);

/* A histogram with the given upper bounds (borrowed, copied; strictly ascending, finite,
 * 1..64 of them; seconds by convention). +Inf is added. Registering an existing name and
 * labels returns the existing child and ignores the bounds. */
metrics_histogram_t *metrics_histogram(metrics_t *m, const char *name, const char *help,
                                       const char *labels, const double *upper_bounds,
                                       size_t n);

/* ---- Updates. */

static inline void metrics_counter_add(metrics_counter_t *c, uint64_t n)
{
    c->value += n;
}

static inline void metrics_counter_inc(metrics_counter_t *c)
{
    c->value++;
}

static inline uint64_t metrics_counter_value(const metrics_counter_t *c)
{
    return c->value;
}

static inline void metrics_gauge_set(metrics_gauge_t *g, double v)
{
    g->value = v;
}

static inline void metrics_gauge_add(metrics_gauge_t *g, double delta)
{
    g->value += delta;
}

static inline double metrics_gauge_value(const metrics_gauge_t *g)
{
    return g->value;
}

/* Counts v in its bucket (O(log buckets)). NaN is ignored. */
void metrics_histogram_observe(metrics_histogram_t *h, double v);

uint64_t metrics_histogram_count(const metrics_histogram_t *h);
double metrics_histogram_sum(const metrics_histogram_t *h);

/* Estimates the q-quantile (0 <= q <= 1) from the buckets by linear interpolation inside
 * the bucket that holds the rank, as Prometheus's histogram_quantile() does: the first
 * bucket starts at 0, and a rank in the +Inf bucket returns the highest finite bound.
 * Returns NaN when nothing was observed, -Inf for q < 0 and +Inf for q > 1. */
double metrics_histogram_quantile(const metrics_histogram_t *h, double q);

/* ---- Output. */

/* Renders every family in text format 0.0.4 into a malloc'd buffer. On success *out (taken:
 * the caller frees it) is NUL-terminated and *len excludes the NUL. Callback gauges are
 * read now. Returns 0, or METRICS_ENOMEM (then *out is NULL). */
int metrics_render(metrics_t *m, char **out, size_t *len);

/* Escapes value (borrowed) for use inside a label body's quotes into out (cap bytes,
 * always NUL-terminated when cap > 0). Returns the length the full escape needs, excluding
 * the NUL, like snprintf: a result >= cap means out was truncated. */
size_t metrics_label_escape(char *out, size_t cap, const char *value);

#endif
