/* metrics.c - a registry of counters, gauges and histograms, rendered in the Prometheus text
 * exposition format 0.0.4. See metrics.h.
 *
 * A family (one per metric name) holds its children (one per label body) in a list kept in
 * registration order, which is also the order they render in. Lookups go through two chained
 * hash tables, families by name and children by name and labels, so that registering the
 * 10,000th series costs what the first did: a label value can come from input (an event
 * type), and a caller may look its child up once per event. The tables only grow, and a
 * failed grow merely leaves longer chains. Label bodies are compared byte for byte as given,
 * so `a="1",b="2"` and `b="2",a="1"` are two children: callers format them one way.
 *
 * A callback gauge (metrics_gauge_fn) is a type of its own here: a name is either all
 * metrics_gauge() children or all metrics_gauge_fn() ones, though both render as "gauge". */
#include "metrics.h"

#include "log.h"

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define METRICS_MAX_BOUNDS 64
#define TABLE_INITIAL_BUCKETS 64
#define RENDER_INITIAL_CAP 4096
#define NUMBER_MAX 32 /* "%.17g" of any double, "-1.7976931348623157e+308", fits */
#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

#define DROPPED_NAME "integral_metrics_dropped_series_total"
#define DROPPED_HELP "Series not added because the metrics registry was full or out of memory."

/* Fine from 0.5 to 50 ms, where alert latencies are judged (a target of p99 <= 5 ms needs
 * bounds around 5 ms: a quantile is interpolated inside its bucket, and with 10-25 ms as one
 * bucket a p99 of 12 ms read as 24), coarse beyond. */
const double metrics_latency_buckets[] = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.0025, 0.003,
    0.004,   0.005,  0.006,   0.008,  0.01,    0.0125, 0.015, 0.02,  0.025,  0.03,
    0.04,    0.05,   0.075,   0.1,    0.25,    0.5,   1,     2.5,   5,      10,
};
const size_t metrics_latency_buckets_count =
    sizeof metrics_latency_buckets / sizeof metrics_latency_buckets[0];

typedef enum {
    KIND_COUNTER,
    KIND_GAUGE,
    KIND_GAUGE_FN,
    KIND_HISTOGRAM,
} kind_t;

static const char *const kind_types[] = {"counter", "gauge", "gauge", "histogram"};
static const char *const kind_names[] = {"counter", "gauge", "callback gauge", "histogram"};

struct metrics_histogram {
    double sum;
    uint64_t count;
    size_t n_bounds;
    const double *bounds; /* n_bounds, ascending; stored after counts in this allocation */
    uint64_t counts[];    /* n_bounds + 1 buckets, not cumulative; the last one is +Inf */
};

/* A hash table entry; the first member of family_t and child_t, so a node casts to either. */
typedef struct hnode {
    struct hnode *next;
    uint64_t hash;
} hnode_t;

typedef struct {
    hnode_t **buckets;
    size_t mask; /* number of buckets - 1; the number is a power of two */
    size_t count;
} table_t;

typedef struct child child_t;

typedef struct family {
    hnode_t node; /* first: see hnode_t */
    struct family *next;
    kind_t kind;
    char *help; /* owned; NULL: no # HELP line */
    child_t *first, *last;
    char name[];
} family_t;

struct child {
    hnode_t node; /* first: see hnode_t */
    child_t *next;
    family_t *family;
    union {
        metrics_counter_t counter;
        metrics_gauge_t gauge;
        struct {
            metrics_read_cb read; /* NULL: unregistered, not rendered */
            void *ctx;
        } fn;
        metrics_histogram_t *histogram; /* owned */
    } u;
    char labels[]; /* "" for none */
};

struct metrics {
    family_t *first, *last;
    table_t families;
    table_t children;
    size_t n_series; /* children counted against max_series */
    size_t max_series;
    bool warned;                /* the first refusal is logged, later ones only counted */
    metrics_counter_t *dropped; /* integral_metrics_dropped_series_total */
    metrics_counter_t overflow_counter;
    metrics_gauge_t overflow_gauge;
    metrics_histogram_t *overflow_histogram;
};

/* What a registration asks for. */
typedef struct {
    kind_t kind;
    const char *name;
    const char *help;
    const char *labels;
    const double *bounds;
    size_t n_bounds;
} spec_t;

/* Where a registration lands: the family and child when they exist, and the hashes to add
 * them under when not. */
typedef struct {
    const char *labels; /* never NULL */
    uint64_t name_hash;
    uint64_t hash;
    family_t *family;
    child_t *child;
} slot_t;

/* ---- Hash tables */

static uint64_t hash_string(uint64_t h, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        h ^= *p;
        h *= FNV_PRIME;
    }
    return h;
}

static int table_init(table_t *t)
{
    t->buckets = calloc(TABLE_INITIAL_BUCKETS, sizeof *t->buckets);
    t->mask = TABLE_INITIAL_BUCKETS - 1;
    t->count = 0;
    return t->buckets ? 0 : -1;
}

/* Doubles the buckets. On OOM the table keeps its size: lookups stay correct, only slower. */
static void table_grow(table_t *t)
{
    size_t n = (t->mask + 1) * 2;
    hnode_t **buckets = calloc(n, sizeof *buckets);
    if (!buckets)
        return;
    for (size_t i = 0; i <= t->mask; i++) {
        hnode_t *node = t->buckets[i];
        while (node) {
            hnode_t *next = node->next;
            node->next = buckets[node->hash & (n - 1)];
            buckets[node->hash & (n - 1)] = node;
            node = next;
        }
    }
    free(t->buckets);
    t->buckets = buckets;
    t->mask = n - 1;
}

static void table_add(table_t *t, hnode_t *node)
{
    if (t->count > t->mask)
        table_grow(t);
    node->next = t->buckets[node->hash & t->mask];
    t->buckets[node->hash & t->mask] = node;
    t->count++;
}

static family_t *family_find(const metrics_t *m, const char *name, uint64_t hash)
{
    for (hnode_t *n = m->families.buckets[hash & m->families.mask]; n; n = n->next) {
        family_t *f = (family_t *)n;
        if (n->hash == hash && strcmp(f->name, name) == 0)
            return f;
    }
    return NULL;
}

static child_t *child_find(const metrics_t *m, const family_t *f, const char *labels,
                           uint64_t hash)
{
    for (hnode_t *n = m->children.buckets[hash & m->children.mask]; n; n = n->next) {
        child_t *c = (child_t *)n;
        if (n->hash == hash && c->family == f && strcmp(c->labels, labels) == 0)
            return c;
    }
    return NULL;
}

/* ---- Validation. Letters are tested by hand: isalpha() depends on the locale. */

static bool is_letter(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool metric_name_valid(const char *name)
{
    if (!name || !(is_letter(*name) || *name == ':'))
        return false;
    for (const char *p = name + 1; *p; p++)
        if (!is_letter(*p) && !is_digit(*p) && *p != ':')
            return false;
    return true;
}

/* Parses one name="value" pair at *p: sets the name's span and moves *p past the closing
 * quote. The value may hold only the escapes \\, \" and \n, and no raw newline. */
static bool parse_label(const char **p, const char **name, size_t *name_len)
{
    const char *s = *p;
    if (!is_letter(*s))
        return false;
    *name = s;
    while (is_letter(*s) || is_digit(*s))
        s++;
    *name_len = (size_t)(s - *name);
    if (*s++ != '=' || *s++ != '"')
        return false;
    for (; *s != '"'; s++) {
        if (*s == '\0' || *s == '\n')
            return false;
        if (*s == '\\') {
            s++;
            if (*s != '\\' && *s != '"' && *s != 'n')
                return false;
        }
    }
    *p = s + 1;
    return true;
}

/* True when a pair in labels before end (a valid prefix) has this name. O(pairs): label
 * bodies are short and checked once, at registration. */
static bool label_name_seen(const char *labels, const char *end, const char *name, size_t len)
{
    const char *p = labels;
    while (p < end) {
        const char *seen;
        size_t seen_len;
        parse_label(&p, &seen, &seen_len);
        if (seen_len == len && memcmp(seen, name, len) == 0)
            return true;
        p++; /* the comma */
    }
    return false;
}

/* Returns NULL for a valid label body, else why it is not. A trailing comma is refused:
 * histograms append ",le=..." to the body. */
static const char *labels_error(const char *labels, kind_t kind)
{
    const char *p = labels;
    if (*p == '\0')
        return NULL;
    for (;;) {
        const char *start = p, *name;
        size_t len;
        if (!parse_label(&p, &name, &len))
            return "is not name=\"value\" pairs separated by commas";
        if (len >= 2 && name[0] == '_' && name[1] == '_')
            return "uses a reserved label name (starting with \"__\")";
        if (kind == KIND_HISTOGRAM && len == 2 && memcmp(name, "le", 2) == 0)
            return "uses \"le\", which histograms reserve for their buckets";
        if (label_name_seen(labels, start, name, len))
            return "repeats a label name";
        if (*p == '\0')
            return NULL;
        if (*p++ != ',')
            return "is not name=\"value\" pairs separated by commas";
    }
}

static const char *bounds_error(const double *bounds, size_t n)
{
    if (!bounds || n == 0 || n > METRICS_MAX_BOUNDS)
        return "must be 1 to 64 upper bounds";
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(bounds[i]))
            return "must be finite (+Inf is added)";
        if (i > 0 && !(bounds[i] > bounds[i - 1]))
            return "must be strictly ascending";
    }
    return NULL;
}

/* Checks the spec and finds its family and child. Returns 0, or METRICS_EINVAL (logged). */
static int resolve(const metrics_t *m, const spec_t *s, slot_t *slot)
{
    const char *why;
    slot->labels = s->labels ? s->labels : "";
    if (!metric_name_valid(s->name)) {
        log_error("metrics: invalid metric name \"%s\"", s->name ? s->name : "(null)");
        return METRICS_EINVAL;
    }
    if ((why = labels_error(slot->labels, s->kind))) {
        log_error("metrics: %s: label body '%s' %s", s->name, slot->labels, why);
        return METRICS_EINVAL;
    }
    if (s->kind == KIND_HISTOGRAM && (why = bounds_error(s->bounds, s->n_bounds))) {
        log_error("metrics: %s: histogram bounds %s", s->name, why);
        return METRICS_EINVAL;
    }
    slot->name_hash = hash_string(FNV_OFFSET, s->name);
    /* '{' cannot occur in a name, so name{labels hashes each pair to its own string. */
    slot->hash = hash_string(hash_string(slot->name_hash, "{"), slot->labels);
    slot->family = family_find(m, s->name, slot->name_hash);
    slot->child = NULL;
    if (slot->family && slot->family->kind != s->kind) {
        log_error("metrics: %s is registered as a %s, not a %s", s->name,
                  kind_names[slot->family->kind], kind_names[s->kind]);
        return METRICS_EINVAL;
    }
    if (slot->family)
        slot->child = child_find(m, slot->family, slot->labels, slot->hash);
    return METRICS_OK;
}

/* ---- Registration */

static metrics_histogram_t *histogram_new(const double *bounds, size_t n)
{
    metrics_histogram_t *h =
        calloc(1, sizeof *h + (n + 1) * sizeof h->counts[0] + n * sizeof bounds[0]);
    if (!h)
        return NULL;
    double *stored = (double *)(h->counts + n + 1);
    memcpy(stored, bounds, n * sizeof bounds[0]);
    h->bounds = stored;
    h->n_bounds = n;
    return h;
}

static family_t *family_new(const spec_t *s, uint64_t hash)
{
    size_t name_len = strlen(s->name);
    family_t *f = calloc(1, sizeof *f + name_len + 1);
    if (!f)
        return NULL;
    if (s->help && !(f->help = strdup(s->help))) {
        free(f);
        return NULL;
    }
    memcpy(f->name, s->name, name_len + 1);
    f->node.hash = hash;
    f->kind = s->kind;
    return f;
}

static child_t *child_new(const spec_t *s, const slot_t *slot)
{
    size_t labels_len = strlen(slot->labels);
    child_t *c = calloc(1, sizeof *c + labels_len + 1);
    if (!c)
        return NULL;
    if (s->kind == KIND_HISTOGRAM && !(c->u.histogram = histogram_new(s->bounds, s->n_bounds))) {
        free(c);
        return NULL;
    }
    memcpy(c->labels, slot->labels, labels_len + 1);
    c->node.hash = slot->hash;
    return c;
}

/* Counts a series that was not added, and says so in the log the first time only: lookups
 * past the limit may happen once per event. Returns err. */
static int refuse(metrics_t *m, int err, const char *name)
{
    metrics_counter_inc(m->dropped);
    if (!m->warned) {
        m->warned = true;
        log_warn("metrics: %s: series not added (%s, limit %zu); further refusals are only "
                 "counted in " DROPPED_NAME,
                 name, metrics_strerror(err), m->max_series);
    }
    return err;
}

/* Adds the new child of a resolved slot, and its family when the name is new. limited: the
 * child counts against max_series. Returns 0, METRICS_EFULL or METRICS_ENOMEM (counted). */
static int add_child(metrics_t *m, const spec_t *s, slot_t *slot, bool limited)
{
    if (limited && m->n_series >= m->max_series)
        return refuse(m, METRICS_EFULL, s->name);
    family_t *f = slot->family;
    if (!f) {
        if (!(f = family_new(s, slot->name_hash)))
            return refuse(m, METRICS_ENOMEM, s->name);
        table_add(&m->families, &f->node);
        if (m->last)
            m->last->next = f;
        else
            m->first = f;
        m->last = f;
        slot->family = f;
    }
    child_t *c = child_new(s, slot);
    if (!c)
        return refuse(m, METRICS_ENOMEM, s->name); /* the family stays, empty: not rendered */
    c->family = f;
    table_add(&m->children, &c->node);
    if (f->last)
        f->last->next = c;
    else
        f->first = c;
    f->last = c;
    slot->child = c;
    if (limited)
        m->n_series++;
    return METRICS_OK;
}

/* Finds or adds the child for a spec. Returns it, or NULL with *err set to METRICS_EINVAL,
 * METRICS_EFULL or METRICS_ENOMEM. */
static child_t *lookup(metrics_t *m, const spec_t *s, int *err)
{
    slot_t slot;
    if ((*err = resolve(m, s, &slot)) < 0)
        return NULL;
    if (!slot.child && (*err = add_child(m, s, &slot, true)) < 0)
        return NULL;
    return slot.child;
}

metrics_t *metrics_new(void)
{
    metrics_t *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->max_series = METRICS_DEFAULT_MAX_SERIES;
    m->dropped = &m->overflow_counter; /* until the real one exists: refuse() counts into it */
    /* The overflow histogram must exist before it is needed: it is what OOM returns. */
    m->overflow_histogram = histogram_new(metrics_latency_buckets, metrics_latency_buckets_count);
    spec_t s = {.kind = KIND_COUNTER, .name = DROPPED_NAME, .help = DROPPED_HELP};
    slot_t slot;
    if (!m->overflow_histogram || table_init(&m->families) < 0 ||
        table_init(&m->children) < 0 || resolve(m, &s, &slot) < 0 ||
        add_child(m, &s, &slot, false) < 0) {
        metrics_free(m);
        return NULL;
    }
    m->dropped = &slot.child->u.counter;
    return m;
}

void metrics_free(metrics_t *m)
{
    if (!m)
        return;
    family_t *f = m->first;
    while (f) {
        family_t *next_family = f->next;
        child_t *c = f->first;
        while (c) {
            child_t *next_child = c->next;
            if (f->kind == KIND_HISTOGRAM)
                free(c->u.histogram);
            free(c);
            c = next_child;
        }
        free(f->help);
        free(f);
        f = next_family;
    }
    free(m->families.buckets);
    free(m->children.buckets);
    free(m->overflow_histogram);
    free(m);
}

void metrics_set_max_series(metrics_t *m, size_t max_series)
{
    m->max_series = max_series;
}

const char *metrics_strerror(int err)
{
    switch (err) {
    case METRICS_OK: return "success";
    case METRICS_ENOMEM: return "out of memory";
    case METRICS_EINVAL: return "invalid name, labels or bounds, or a type conflict";
    case METRICS_EFULL: return "series limit reached";
    }
    return "unknown metrics error";
}

metrics_counter_t *metrics_counter(metrics_t *m, const char *name, const char *help,
                                   const char *labels)
{
    spec_t s = {.kind = KIND_COUNTER, .name = name, .help = help, .labels = labels};
    int err;
    child_t *c = lookup(m, &s, &err);
    if (!c)
        return err == METRICS_EINVAL ? NULL : &m->overflow_counter;
    return &c->u.counter;
}

metrics_gauge_t *metrics_gauge(metrics_t *m, const char *name, const char *help,
                               const char *labels)
{
    spec_t s = {.kind = KIND_GAUGE, .name = name, .help = help, .labels = labels};
    int err;
    child_t *c = lookup(m, &s, &err);
    if (!c)
        return err == METRICS_EINVAL ? NULL : &m->overflow_gauge;
    return &c->u.gauge;
}

int metrics_gauge_fn(metrics_t *m, const char *name, const char *help, const char *labels,
                     metrics_read_cb read, void *ctx)
{
    spec_t s = {.kind = KIND_GAUGE_FN, .name = name, .help = help, .labels = labels};
    slot_t slot;
    int err = resolve(m, &s, &slot);
    if (err < 0)
        return err;
    if (!slot.child) {
        if (!read)
            return METRICS_OK; /* unregistering what was never registered */
        if ((err = add_child(m, &s, &slot, true)) < 0)
            return err;
    }
    slot.child->u.fn.read = read;
    slot.child->u.fn.ctx = read ? ctx : NULL;
    return METRICS_OK;
}

metrics_histogram_t *metrics_histogram(metrics_t *m, const char *name, const char *help,
                                       const char *labels, const double *upper_bounds,
                                       size_t n)
{
    spec_t s = {.kind = KIND_HISTOGRAM,
                .name = name,
                .help = help,
                .labels = labels,
                .bounds = upper_bounds,
                .n_bounds = n};
    int err;
    child_t *c = lookup(m, &s, &err);
    if (!c)
        return err == METRICS_EINVAL ? NULL : m->overflow_histogram;
    return c->u.histogram;
}

/* ---- Histograms */

void metrics_histogram_observe(metrics_histogram_t *h, double v)
{
    if (isnan(v))
        return;
    /* The first bound >= v: a bucket counts values "less than or equal" to its bound. */
    size_t lo = 0, hi = h->n_bounds;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (h->bounds[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    h->counts[lo]++;
    h->count++;
    h->sum += v;
}

uint64_t metrics_histogram_count(const metrics_histogram_t *h)
{
    return h->count;
}

double metrics_histogram_sum(const metrics_histogram_t *h)
{
    return h->sum;
}

/* Follows Prometheus's bucketQuantile (promql/quantile.go) step by step, quirks included: for
 * q == 0 the rank is 0, the first bucket holds it, and if that bucket is empty the
 * interpolation is 0/0, so the result is NaN there too. */
double metrics_histogram_quantile(const metrics_histogram_t *h, double q)
{
    if (isnan(q))
        return NAN;
    if (q < 0)
        return -INFINITY;
    if (q > 1)
        return INFINITY;
    if (h->count == 0)
        return NAN;
    double rank = q * (double)h->count;
    uint64_t below = 0; /* observations in the buckets before b */
    size_t b = 0;
    while (b < h->n_bounds && (double)(below + h->counts[b]) < rank)
        below += h->counts[b++];
    if (b == h->n_bounds)
        return h->bounds[h->n_bounds - 1];
    if (b == 0 && h->bounds[0] <= 0)
        return h->bounds[0];
    double start = b == 0 ? 0 : h->bounds[b - 1];
    return start + (h->bounds[b] - start) * ((rank - (double)below) / (double)h->counts[b]);
}

/* ---- Output */

typedef struct {
    char *data;
    size_t len;
    size_t cap;
    bool oom;
} buf_t;

/* Makes room for n more bytes and a NUL; false (and oom set) when out of memory. */
static bool buf_reserve(buf_t *b, size_t n)
{
    if (b->oom)
        return false;
    if (b->len + n + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : RENDER_INITIAL_CAP;
    while (cap < b->len + n + 1)
        cap *= 2;
    char *data = realloc(b->data, cap);
    if (!data) {
        b->oom = true;
        return false;
    }
    b->data = data;
    b->cap = cap;
    return true;
}

static void buf_append(buf_t *b, const char *s, size_t n)
{
    if (!buf_reserve(b, n))
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void buf_puts(buf_t *b, const char *s)
{
    buf_append(b, s, strlen(s));
}

/* Help text escapes only backslash and newline (a quote is literal there). */
static void buf_put_help(buf_t *b, const char *help)
{
    const char *run = help;
    for (const char *p = help; *p; p++) {
        if (*p != '\\' && *p != '\n')
            continue;
        buf_append(b, run, (size_t)(p - run));
        buf_puts(b, *p == '\\' ? "\\\\" : "\\n");
        run = p + 1;
    }
    buf_puts(b, run);
}

/* Formats v as Prometheus reads it: NaN, +Inf and -Inf by name, integers up to 2^53 (which a
 * double holds exactly) without exponent or fraction, anything else in the fewest of 15..17
 * significant digits that read back as v (0.1, not 0.10000000000000001). Assumes the "C"
 * locale's decimal point, as the services never call setlocale(). Returns out or a literal. */
static const char *format_double(char *out, size_t cap, double v)
{
    if (isnan(v))
        return "NaN";
    if (isinf(v))
        return v > 0 ? "+Inf" : "-Inf";
    if (v == floor(v) && fabs(v) <= 9007199254740992.0) {
        snprintf(out, cap, "%.0f", v);
        return out;
    }
    for (int precision = 15; precision < 17; precision++) {
        snprintf(out, cap, "%.*g", precision, v);
        if (strtod(out, NULL) == v)
            return out;
    }
    snprintf(out, cap, "%.17g", v);
    return out;
}

/* Appends one sample line: name+suffix, then {labels,extra} unless both are empty. */
static void put_sample(buf_t *b, const family_t *f, const char *suffix, const char *labels,
                       const char *extra, const char *value)
{
    buf_puts(b, f->name);
    buf_puts(b, suffix);
    if (*labels || *extra) {
        buf_puts(b, "{");
        buf_puts(b, labels);
        if (*labels && *extra)
            buf_puts(b, ",");
        buf_puts(b, extra);
        buf_puts(b, "}");
    }
    buf_puts(b, " ");
    buf_puts(b, value);
    buf_puts(b, "\n");
}

static void put_histogram(buf_t *b, const family_t *f, const child_t *c)
{
    const metrics_histogram_t *h = c->u.histogram;
    char number[NUMBER_MAX], bound[NUMBER_MAX], le[NUMBER_MAX + 8];
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= h->n_bounds; i++) {
        cumulative += h->counts[i];
        snprintf(le, sizeof le, "le=\"%s\"",
                 i < h->n_bounds ? format_double(bound, sizeof bound, h->bounds[i]) : "+Inf");
        snprintf(number, sizeof number, "%" PRIu64, cumulative);
        put_sample(b, f, "_bucket", c->labels, le, number);
    }
    put_sample(b, f, "_sum", c->labels, "", format_double(number, sizeof number, h->sum));
    snprintf(number, sizeof number, "%" PRIu64, h->count);
    put_sample(b, f, "_count", c->labels, "", number);
}

/* Calls read callbacks: one may register metrics, which only appends to the lists being
 * walked, so the walk stays valid. */
static void put_child(buf_t *b, const family_t *f, const child_t *c)
{
    char number[NUMBER_MAX];
    switch (f->kind) {
    case KIND_COUNTER:
        snprintf(number, sizeof number, "%" PRIu64, c->u.counter.value);
        put_sample(b, f, "", c->labels, "", number);
        break;
    case KIND_GAUGE:
        put_sample(b, f, "", c->labels, "",
                   format_double(number, sizeof number, c->u.gauge.value));
        break;
    case KIND_GAUGE_FN:
        if (c->u.fn.read)
            put_sample(b, f, "", c->labels, "",
                       format_double(number, sizeof number, c->u.fn.read(c->u.fn.ctx)));
        break;
    case KIND_HISTOGRAM: put_histogram(b, f, c); break;
    }
}

/* A family with nothing to show (every callback unregistered, or its only child lost to
 * OOM) is left out entirely rather than rendered as a bare # HELP/# TYPE. */
static bool family_renders(const family_t *f)
{
    for (const child_t *c = f->first; c; c = c->next)
        if (f->kind != KIND_GAUGE_FN || c->u.fn.read)
            return true;
    return false;
}

static void put_family(buf_t *b, const family_t *f)
{
    if (!family_renders(f))
        return;
    if (f->help) {
        buf_puts(b, "# HELP ");
        buf_puts(b, f->name);
        buf_puts(b, " ");
        buf_put_help(b, f->help);
        buf_puts(b, "\n");
    }
    buf_puts(b, "# TYPE ");
    buf_puts(b, f->name);
    buf_puts(b, " ");
    buf_puts(b, kind_types[f->kind]);
    buf_puts(b, "\n");
    for (const child_t *c = f->first; c; c = c->next)
        put_child(b, f, c);
}

int metrics_render(metrics_t *m, char **out, size_t *len)
{
    buf_t b = {0};
    buf_reserve(&b, 0);
    for (const family_t *f = m->first; f && !b.oom; f = f->next)
        put_family(&b, f);
    if (b.oom) {
        free(b.data);
        *out = NULL;
        *len = 0;
        return METRICS_ENOMEM;
    }
    b.data[b.len] = '\0';
    *out = b.data;
    *len = b.len;
    return METRICS_OK;
}

/* Drops the bytes of a UTF-8 character cut in half by truncation (at most 3 before the cut),
 * so that a truncated value is still valid UTF-8, which Prometheus requires of labels. */
static size_t trim_partial_utf8(const char *out, size_t len)
{
    for (size_t k = 1; k <= 3 && k <= len; k++) {
        unsigned char c = (unsigned char)out[len - k];
        if (c >= 0xC0)
            return len - k; /* the lead byte of the cut character */
        if ((c & 0xC0) != 0x80)
            break; /* ASCII: the input was not valid UTF-8 here; leave it */
    }
    return len;
}

size_t metrics_label_escape(char *out, size_t cap, const char *value)
{
    size_t need = 0, len = 0;
    bool truncated = cap == 0;
    for (const char *p = value; *p; p++) {
        const char *escape = *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : *p == '\n' ? "\\n" : NULL;
        size_t n = escape ? 2 : 1;
        need += n;
        if (truncated)
            continue;
        if (len + n >= cap) {
            /* Stop before an escape or a character that does not fit whole: half of one
             * would make the label body invalid. */
            truncated = true;
            if (((unsigned char)*p & 0xC0) == 0x80)
                len = trim_partial_utf8(out, len);
            continue;
        }
        if (escape)
            memcpy(out + len, escape, 2);
        else
            out[len] = *p;
        len += n;
    }
    if (cap > 0)
        out[len] = '\0';
    return need;
}
