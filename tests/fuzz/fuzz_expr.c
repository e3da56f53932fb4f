/* fuzz_expr.c - libFuzzer target for rule conditions and message templates.
 *
 * The input is compiled as a condition and as a template against a small fixed resolver.
 * Whatever compiles is evaluated or rendered against a few sets of values (present, absent,
 * NaN, strings that are not UTF-8), and the results are checked against what the headers
 * promise: evaluation agrees with itself with and without reasons, reasons are true
 * comparisons and only come with a true result, !(input) evaluates to the opposite, rendered
 * text is NUL-terminated, bounded, valid UTF-8 and a prefix of the uncut text. Inputs that
 * start with a NUL byte instead describe a generated condition, checked against a reference
 * evaluator (see below). A failed check aborts, so libFuzzer reports it like a crash.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
 *       -Iservices/engine services/engine/expr.c services/engine/template.c \
 *       tests/fuzz/fuzz_expr.c -lm -o /tmp/fuzz_expr
 *   mkdir -p /tmp/fuzz_expr.corpus     # new inputs go to the first directory, not the seeds
 *   /tmp/fuzz_expr -max_len=1100 /tmp/fuzz_expr.corpus tests/fuzz/corpus/expr */
#include "expr.h"
#include "template.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                             \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);            \
            abort();                                                                            \
        }                                                                                       \
    } while (0)

enum { N_FEATURES = 8, N_SETS = 4, MAX_REASONS = 8 };

static const struct {
    const char *name;
    expr_type_t type;
} features[N_FEATURES] = {
    {"n", EXPR_NUMBER},
    {"s", EXPR_STRING},
    {"b", EXPR_BOOL},
    {"support_contacts_30d", EXPR_NUMBER},
    {"tier", EXPR_STRING},
    {"churn_risk", EXPR_NUMBER},
    {"channel", EXPR_STRING},
    {"vip", EXPR_BOOL},
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

static const char *const ops[] = {"==", "!=", "<", "<=", ">", ">=", "in"};

/* Value sets: a typical customer, another one, nothing known, and awkward values. */
static expr_value_t sets[N_SETS][N_FEATURES];

static void init_sets(void)
{
    expr_value_t *a = sets[0], *b = sets[1], *odd = sets[3];
    a[0] = expr_number(4), a[1] = expr_string("A", 1), a[2] = expr_bool(true);
    a[3] = expr_number(4), a[4] = expr_string("A", 1), a[5] = expr_number(0.7);
    a[6] = expr_string("phone", 5), a[7] = expr_bool(false);
    b[0] = expr_number(-1.5), b[1] = expr_string("", 0), b[2] = expr_bool(false);
    b[3] = expr_number(0), b[4] = expr_string("B", 1), b[5] = expr_number(1e300);
    b[6] = expr_string("chat", 4), b[7] = expr_bool(true);
    /* sets[2] stays zeroed: everything missing. */
    odd[0] = expr_number(NAN), odd[1] = expr_string("\xff\0\xc3", 3), odd[2] = expr_number(1);
    odd[3] = expr_number(INFINITY), odd[4] = expr_string("caf\xc3\xa9", 5);
    odd[5] = expr_number(-0.0), odd[6] = expr_missing(), odd[7] = expr_bool(true);
}

static bool valid_utf8(const char *s, size_t n)
{
    for (size_t i = 0, k; i < n; i += k)
        if ((k = expr__utf8_char_len(s + i, n - i)) == 0)
            return false;
    return true;
}

static void check_error(int rc, const expr_error_t *err, const void *out, size_t size)
{
    CHECK(rc < 0 && err->code == rc && out == NULL);
    CHECK(err->offset <= size);
    size_t n = strnlen(err->message, sizeof err->message);
    CHECK(n > 0 && n < sizeof err->message && valid_utf8(err->message, n));
}

static void check_reason(const expr_value_t *values, const expr_reason_t *r)
{
    bool known_op = false;
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        known_op |= strcmp(r->op, ops[i]) == 0;
    CHECK(known_op);
    CHECK(r->feature < N_FEATURES && r->value == &values[r->feature]);
    CHECK(strcmp(r->name, features[r->feature].name) == 0);
    CHECK(r->value->type == features[r->feature].type);
    CHECK(valid_utf8(r->threshold, strlen(r->threshold)));
    CHECK(r->n_thresholds >= 1 && (r->n_thresholds == 1 || strcmp(r->op, "in") == 0));
    for (size_t i = 0; i < r->n_thresholds; i++)
        CHECK(r->thresholds[i].type == r->value->type);
    /* The single comparison it names, compiled on its own, must hold too. */
    char src[EXPR_MAX_LEN + 64];
    int n = snprintf(src, sizeof src, "%s %s %s", r->name, r->op, r->threshold);
    expr_program_t *leaf;
    expr_error_t err;
    if (n > 0 && (size_t)n < sizeof src &&
        expr_compile(src, (size_t)n, &resolver, &leaf, &err) == 0) {
        CHECK(expr_eval(leaf, values, N_FEATURES, NULL, 0, NULL));
        expr_free(leaf);
    } else {
        CHECK(n > EXPR_MAX_LEN);
    }
}

/* Evaluates p with and without reasons; returns the result. */
static bool check_eval(const expr_program_t *p, const expr_value_t *values)
{
    expr_reason_t many[MAX_REASONS], one;
    size_t n_many = 99, n_one = 99;
    bool plain = expr_eval(p, values, N_FEATURES, NULL, 0, NULL);
    CHECK(expr_eval(p, values, N_FEATURES, many, MAX_REASONS, &n_many) == plain);
    CHECK(expr_eval(p, values, N_FEATURES, &one, 1, &n_one) == plain);
    CHECK(n_many <= MAX_REASONS && n_many <= expr_comparisons(p) && n_one <= 1);
    if (!plain)
        CHECK(n_many == 0 && n_one == 0);
    CHECK(n_one == (n_many > 0 ? 1u : 0u));
    if (n_one)
        CHECK(one.feature == many[0].feature && one.op == many[0].op &&
              one.threshold == many[0].threshold && one.value == many[0].value);
    for (size_t i = 0; i < n_many; i++)
        check_reason(values, &many[i]);
    /* A short values array makes the later features missing; it must not read past it. */
    expr_eval(p, values, N_FEATURES / 2, many, MAX_REASONS, &n_many);
    return plain;
}

/* !(src) must compile too (unless that hits a limit) and mean the opposite. */
static void check_negation(const uint8_t *data, size_t size, const bool *results)
{
    char *neg = malloc(size + 3);
    if (!neg)
        return;
    neg[0] = '!';
    neg[1] = '(';
    memcpy(neg + 2, data, size);
    neg[size + 2] = ')';
    expr_program_t *p;
    expr_error_t err;
    int rc = expr_compile(neg, size + 3, &resolver, &p, &err);
    if (rc == 0) {
        for (int s = 0; s < N_SETS; s++)
            CHECK(expr_eval(p, sets[s], N_FEATURES, NULL, 0, NULL) == !results[s]);
        expr_free(p);
    } else {
        CHECK(rc == EXPR_ELIMIT);
    }
    free(neg);
}

static void fuzz_condition(const uint8_t *data, size_t size)
{
    expr_program_t *p;
    expr_error_t err;
    int rc = expr_compile((const char *)data, size, &resolver, &p, &err);
    if (rc < 0) {
        check_error(rc, &err, p, size);
        return;
    }
    CHECK(rc == 0 && p != NULL);
    bool results[N_SETS];
    for (int s = 0; s < N_SETS; s++)
        results[s] = check_eval(p, sets[s]);
    expr_free(p);
    check_negation(data, size, results);
}

static void check_render(const template_t *t, const expr_value_t *values)
{
    static char full[8192], cut[8192];
    size_t full_len, len;
    CHECK(template_render(t, values, N_FEATURES, full, sizeof full, &full_len) == 0);
    CHECK(full_len == strlen(full) && valid_utf8(full, full_len));
    static const size_t caps[] = {0, 1, 2, 3, 4, 5, 8, 17, 64, 300, 1024};
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
        size_t cap = caps[i];
        memset(cut, 'X', cap + 1);
        int rc = template_render(t, values, N_FEATURES, cut, cap, &len);
        CHECK(cut[cap] == 'X');
        CHECK(rc == (full_len < cap ? 0 : TEMPLATE_TRUNCATED));
        if (cap == 0) {
            CHECK(len == 0);
            continue;
        }
        CHECK(len < cap && len == strlen(cut) && valid_utf8(cut, len));
        size_t kept = len;
        if (rc && len >= 3 && memcmp(cut + len - 3, TEMPLATE_ELLIPSIS, 3) == 0)
            kept -= 3;
        CHECK(memcmp(cut, full, kept) == 0);
        if (!rc)
            CHECK(len == full_len);
    }
}

static void fuzz_template(const uint8_t *data, size_t size)
{
    template_t *t;
    expr_error_t err;
    int rc = template_compile((const char *)data, size, &resolver, &t, &err);
    if (rc < 0) {
        check_error(rc, &err, t, size);
        return;
    }
    CHECK(rc == 0 && t != NULL);
    for (int s = 0; s < N_SETS; s++)
        check_render(t, sets[s]);
    template_free(t);
}

/* ------------------------------------------------------------------------------------------
 * Generated conditions, checked against a reference evaluator
 *
 * An input that starts with a NUL byte (never a valid condition) is a recipe instead: its
 * bytes pick a condition tree, which is written out with only the parentheses precedence needs
 * (plus a few redundant ones), compiled, and evaluated both by the program and by a direct walk
 * of the tree, reasons included. Arbitrary bytes rarely build deep valid conditions; this does.
 * ------------------------------------------------------------------------------------------ */

enum { G_LEAF, G_AND, G_OR, G_NOT, G_KINDS, G_MAX_NODES = 48, G_MAX_HEIGHT = 6 };
enum { OP_IN = 6 };

typedef struct {
    int kind;
    int a, b;     /* operands (a only for G_NOT) */
    int feature;
    int op;       /* index into ops: the comparison as the reason reads it */
    int n_lits;
    int lits[3];  /* indexes into the literal table of the feature's type */
    bool alone;   /* a bool feature written alone */
    bool literal_left;
    char text[96]; /* "name op threshold", as the reason should render it */
} gnode_t;

typedef struct {
    const uint8_t *recipe;
    size_t size, used;
    gnode_t nodes[G_MAX_NODES];
    int n_nodes;
    char src[4096];
    size_t len;
} gen_t;

static const char *const mirrored[] = {"==", "!=", ">", ">=", "<", "<="};
static const double numbers[] = {-1, 0, 0.7, 4, 1e300};
static const char *const number_text[] = {"-1", "0", "0.7", "4", "1e300"};
static const char *const strings[] = {"A", "B", "", "phone", "chat"};

static unsigned pick(gen_t *g, unsigned choices)
{
    return g->used < g->size ? g->recipe[g->used++] % choices : 0;
}

static const char *literal_text(int feature, int lit, char *buf, size_t cap)
{
    switch (features[feature].type) {
    case EXPR_NUMBER: return number_text[lit];
    case EXPR_STRING: snprintf(buf, cap, "\"%s\"", strings[lit]); return buf;
    default: return lit ? "true" : "false";
    }
}

/* The threshold as reasons render it: one literal, or "[a, b]". */
static void threshold_text(const gnode_t *x, char *out, size_t cap)
{
    char buf[16];
    if (x->op != OP_IN) {
        snprintf(out, cap, "%s", literal_text(x->feature, x->lits[0], buf, sizeof buf));
        return;
    }
    size_t n = (size_t)snprintf(out, cap, "[");
    for (int k = 0; k < x->n_lits; k++)
        n += (size_t)snprintf(out + n, cap - n, "%s%s", k ? ", " : "",
                              literal_text(x->feature, x->lits[k], buf, sizeof buf));
    snprintf(out + n, cap - n, "]");
}

static void gen_leaf(gen_t *g, gnode_t *x)
{
    x->feature = (int)pick(g, N_FEATURES);
    expr_type_t type = features[x->feature].type;
    unsigned choice = pick(g, 8);
    if (type == EXPR_NUMBER)
        x->op = (int)(choice % 7);
    else
        x->op = choice % 3 == 2 ? OP_IN : (int)(choice % 3);
    x->alone = type == EXPR_BOOL && choice == 7;
    if (x->alone)
        x->op = 0;
    x->n_lits = x->op == OP_IN ? 1 + (int)pick(g, 3) : 1;
    for (int k = 0; k < x->n_lits; k++)
        x->lits[k] = (int)pick(g, type == EXPR_BOOL ? 2 : 5);
    if (x->alone)
        x->lits[0] = 1;
    x->literal_left = x->op != OP_IN && !x->alone && pick(g, 4) == 0;
    char threshold[64];
    threshold_text(x, threshold, sizeof threshold);
    snprintf(x->text, sizeof x->text, "%s %s %s", features[x->feature].name, ops[x->op],
             threshold);
}

static int gen_node(gen_t *g, int height)
{
    CHECK(g->n_nodes < G_MAX_NODES);
    int i = g->n_nodes++;
    gnode_t *x = &g->nodes[i];
    memset(x, 0, sizeof *x);
    /* Room for the worst case below: two operands per level. */
    bool room = height < G_MAX_HEIGHT && g->n_nodes + 2 <= G_MAX_NODES - G_MAX_HEIGHT;
    x->kind = room ? (int)pick(g, G_KINDS) : G_LEAF;
    if (x->kind == G_LEAF) {
        gen_leaf(g, x);
        return i;
    }
    int a = gen_node(g, height + 1);
    int b = x->kind == G_NOT ? -1 : gen_node(g, height + 1);
    g->nodes[i].a = a;
    g->nodes[i].b = b;
    return i;
}

static void put_src(gen_t *g, const char *s)
{
    size_t n = strlen(s);
    CHECK(g->len + n < sizeof g->src);
    memcpy(g->src + g->len, s, n + 1);
    g->len += n;
}

static int precedence(int kind)
{
    return kind == G_OR ? 1 : kind == G_AND ? 2 : 3;
}

static void write_leaf(gen_t *g, const gnode_t *x)
{
    const char *name = features[x->feature].name;
    char threshold[64], line[128];
    threshold_text(x, threshold, sizeof threshold);
    if (x->alone)
        snprintf(line, sizeof line, "%s", name);
    else if (x->literal_left)
        snprintf(line, sizeof line, "%s %s %s", threshold, mirrored[x->op], name);
    else
        snprintf(line, sizeof line, "%s %s %s", name, ops[x->op], threshold);
    put_src(g, line);
}

static void write_node(gen_t *g, int i, int outer)
{
    const gnode_t *x = &g->nodes[i];
    bool parens = precedence(x->kind) < outer || pick(g, 8) == 0;
    if (parens)
        put_src(g, "(");
    if (x->kind == G_LEAF) {
        write_leaf(g, x);
    } else if (x->kind == G_NOT) {
        put_src(g, "!");
        write_node(g, x->a, 3);
    } else {
        write_node(g, x->a, precedence(x->kind));
        put_src(g, x->kind == G_AND ? " && " : " || ");
        write_node(g, x->b, precedence(x->kind));
    }
    if (parens)
        put_src(g, ")");
}

static bool same(const expr_value_t *v, expr_type_t type, int lit)
{
    switch (type) {
    case EXPR_NUMBER: return v->as.number == numbers[lit];
    case EXPR_STRING:
        return v->as.string.len == strlen(strings[lit]) &&
               memcmp(v->as.string.ptr, strings[lit], v->as.string.len) == 0;
    default: return v->as.boolean == (lit == 1);
    }
}

static bool reference_leaf(const gnode_t *x, const expr_value_t *values)
{
    const expr_value_t *v = &values[x->feature];
    expr_type_t type = features[x->feature].type;
    if (v->type != type || (type == EXPR_NUMBER && isnan(v->as.number)))
        return false;
    double n = type == EXPR_NUMBER ? v->as.number : 0, t = numbers[x->lits[0]];
    switch (x->op) {
    case 0: return same(v, type, x->lits[0]);
    case 1: return !same(v, type, x->lits[0]);
    case 2: return n < t;
    case 3: return n <= t;
    case 4: return n > t;
    case 5: return n >= t;
    }
    for (int k = 0; k < x->n_lits; k++)
        if (same(v, type, x->lits[k]))
            return true;
    return false;
}

/* The tree's value; path collects the deciding true comparisons (see expr.h). */
static bool reference(const gen_t *g, int i, const expr_value_t *values, int *path, int *n)
{
    const gnode_t *x = &g->nodes[i];
    int mark = *n;
    bool result;
    switch (x->kind) {
    case G_LEAF:
        result = reference_leaf(x, values);
        if (result)
            path[(*n)++] = i;
        return result;
    case G_AND:
        result = reference(g, x->a, values, path, n) && reference(g, x->b, values, path, n);
        break;
    case G_OR:
        result = reference(g, x->a, values, path, n);
        if (!result) {
            *n = mark;
            result = reference(g, x->b, values, path, n);
        }
        break;
    default:
        result = !reference(g, x->a, values, path, n);
        *n = mark;
        return result;
    }
    if (!result)
        *n = mark;
    return result;
}

static void fuzz_generated(const uint8_t *recipe, size_t size)
{
    static gen_t g;
    g = (gen_t){.recipe = recipe, .size = size};
    gen_node(&g, 0);
    write_node(&g, 0, 0);
    expr_program_t *p;
    expr_error_t err;
    if (expr_compile(g.src, g.len, &resolver, &p, &err) != 0) {
        fprintf(stderr, "%s\n%s at %zu\n", g.src, err.message, err.offset);
        CHECK(!"a generated condition compiles");
    }
    for (int s = 0; s < N_SETS; s++) {
        int path[G_MAX_NODES], n_path = 0;
        bool expected = reference(&g, 0, sets[s], path, &n_path);
        expr_reason_t reasons[G_MAX_NODES];
        size_t n_reasons;
        bool got = expr_eval(p, sets[s], N_FEATURES, reasons, G_MAX_NODES, &n_reasons);
        if (got != expected || (expected && n_reasons != (size_t)n_path))
            fprintf(stderr, "%s\nset %d: got %d with %zu reasons, expected %d with %d\n", g.src,
                    s, got, n_reasons, expected, n_path);
        CHECK(got == expected);
        CHECK(!expected || n_reasons == (size_t)n_path);
        for (size_t k = 0; got && k < n_reasons; k++) {
            char text[256];
            snprintf(text, sizeof text, "%s %s %s", reasons[k].name, reasons[k].op,
                     reasons[k].threshold);
            CHECK(strcmp(text, g.nodes[path[k]].text) == 0);
        }
    }
    expr_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        init_sets();
        ready = true;
    }
    if (size > 0 && data[0] == '\0') {
        fuzz_generated(data + 1, size - 1);
        return 0;
    }
    fuzz_condition(data, size);
    fuzz_template(data, size);
    return 0;
}
