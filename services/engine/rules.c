/* rules.c - loading and compiling the rules file. See rules.h. */
#include "rules.h"

#include "jsonw.h"
#include "log.h"

#include <cJSON.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RULES_FILE_MAX (1024 * 1024)

static const char *const severity_names[] = {"info", "warning", "critical"};

const char *rule_severity_name(rule_severity_t severity)
{
    return severity <= RULE_CRITICAL ? severity_names[severity] : "unknown";
}

void rules_alert_id(const char *rule_id, const char *event_id, char out[33])
{
    /* The digest fetched from the provider and the context once, reused by every call (the
     * engine's loop is one thread): with a new context and EVP_sha256()'s implicit fetch
     * each time, an id cost 7,800 instructions (callgrind, tests/bench/README.md). They stay
     * allocated until exit, reachable. */
    static EVP_MD *sha256;
    static EVP_MD_CTX *reused;
    if (!sha256)
        sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!reused)
        reused = EVP_MD_CTX_new();
    EVP_MD_CTX *ctx = reused ? reused : EVP_MD_CTX_new();
    unsigned char digest[EVP_MAX_MD_SIZE] = {0};
    unsigned int len = 0;
    if (!ctx || !EVP_DigestInit_ex2(ctx, sha256 ? sha256 : EVP_sha256(), NULL) ||
        !EVP_DigestUpdate(ctx, rule_id, strlen(rule_id) + 1) || /* the NUL separates the two */
        !EVP_DigestUpdate(ctx, event_id, strlen(event_id)) ||
        !EVP_DigestFinal_ex(ctx, digest, &len))
        log_error("engine: SHA-256 of an alert id failed");
    if (ctx != reused)
        EVP_MD_CTX_free(ctx);
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 15];
    }
    out[32] = '\0';
}

/* ------------------------------------------------------------------------------------------
 * Error positions
 * ---------------------------------------------------------------------------------------- */

typedef struct {
    const char *text;
    size_t len;
    const char *origin;
    char *err;
    size_t errlen;
} loader_t;

static void line_col(const char *text, size_t at, int *line, int *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < at; i++) {
        if (text[i] == '\n')
            ++*line, *col = 1;
        else
            ++*col;
    }
}

static void fail(loader_t *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(loader_t *l, const char *fmt, ...)
{
    char why[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    snprintf(l->err, l->errlen, "%s: %s", l->origin, why);
}

/* Where, in the file, byte `offset` of a string value lies: finds the value written as JSON
 * (quotes escaped the usual way) after `from` and maps the offset through the escapes.
 * Returns the file position, or -1 when the value is written some other way. */
static long locate(const loader_t *l, size_t from, const char *value, size_t offset)
{
    char quoted[4096];
    jsonw_t w;
    jsonw_init(&w, quoted, sizeof quoted);
    jsonw_string(&w, value);
    long n = jsonw_finish(&w);
    if (n < 0 || from >= l->len)
        return -1;
    const char *hit = memmem(l->text + from, l->len - from, quoted, (size_t)n);
    if (!hit)
        return -1;
    size_t pos = (size_t)(hit - l->text) + 1; /* after the opening quote */
    for (size_t i = 0; i < offset && value[i]; i++)
        pos += (value[i] == '"' || value[i] == '\\') ? 2 : 1;
    return (long)pos;
}

/* Reports a compile error of a rule's field, at its line and column when it can be found. */
static void fail_at(loader_t *l, size_t rule_at, const char *rule_id, const char *field,
                    const char *value, const expr_error_t *e)
{
    long pos = locate(l, rule_at, value, e->offset);
    if (pos < 0) {
        fail(l, "rule %s: %s: at offset %zu: %s", rule_id, field, e->offset, e->message);
        return;
    }
    int line, col;
    line_col(l->text, (size_t)pos, &line, &col);
    snprintf(l->err, l->errlen, "%s:%d:%d: rule %s: %s: %s", l->origin, line, col, rule_id,
             field, e->message);
}

/* ------------------------------------------------------------------------------------------
 * Parsing
 * ---------------------------------------------------------------------------------------- */

static const cJSON *field(const cJSON *o, const char *name)
{
    return cJSON_GetObjectItemCaseSensitive(o, name);
}

static bool valid_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > RULE_ID_MAX)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    return true;
}

/* A resolver that asks another one and remembers which features it resolved. */
typedef struct {
    expr_resolver_t base;
    const expr_resolver_t *inner;
    uint64_t used; /* bit per feature index (indexes of 64 and above are not recorded) */
} recording_resolver_t;

static int record_feature(const expr_resolver_t *self, const char *name, size_t len,
                          expr_feature_t *out)
{
    recording_resolver_t *rec = (recording_resolver_t *)(void *)self; /* base is first */
    int rc = rec->inner->resolve(rec->inner, name, len, out);
    if (rc == 0)
        rec->used |= out->index < 64 ? UINT64_C(1) << out->index : UINT64_MAX;
    return rc;
}

static int parse_triggers(loader_t *l, rule_t *r, const cJSON *on)
{
    if (!cJSON_IsArray(on) || cJSON_GetArraySize(on) == 0) {
        fail(l, "rule %s: \"on\" must be a non-empty array of event types or \"timer\"", r->id);
        return -1;
    }
    const cJSON *t;
    cJSON_ArrayForEach(t, on)
    {
        event_type_t type;
        if (cJSON_IsString(t) && strcmp(t->valuestring, "timer") == 0) {
            r->triggers |= RULE_TRIGGER_TIMER;
        } else if (cJSON_IsString(t) && event_type_from_name(t->valuestring, &type) &&
                   type != EVENT_AGENT_STATE) {
            r->triggers |= 1u << type;
        } else {
            fail(l, "rule %s: \"on\": %s%s%s is not a customer event type or \"timer\"", r->id,
                 cJSON_IsString(t) ? "\"" : "", cJSON_IsString(t) ? t->valuestring : "a value",
                 cJSON_IsString(t) ? "\"" : "");
            return -1;
        }
    }
    return 0;
}

static int compile_template(loader_t *l, size_t at, rule_t *r, const cJSON *o, const char *name,
                            const expr_resolver_t *resolver, template_t **out)
{
    const cJSON *v = field(o, name);
    if (!cJSON_IsString(v) || !v->valuestring[0]) {
        fail(l, "rule %s: \"%s\" must be a non-empty string", r->id, name);
        return -1;
    }
    expr_error_t e;
    if (template_compile(v->valuestring, strlen(v->valuestring), resolver, out, &e) < 0) {
        fail_at(l, at, r->id, name, v->valuestring, &e);
        return -1;
    }
    return 0;
}

static int parse_rule(loader_t *l, rules_t *set, const cJSON *o, size_t *search_from,
                      const expr_resolver_t *resolver)
{
    rule_t *r = &set->rules[set->n];
    memset(r, 0, sizeof *r);
    const cJSON *id = field(o, "id");
    if (!cJSON_IsObject(o) || !cJSON_IsString(id) || !valid_id(id->valuestring)) {
        fail(l, "rules[%d]: \"id\" must be 1-%d characters of a-z, 0-9 and _", set->n,
             RULE_ID_MAX);
        return -1;
    }
    snprintf(r->id, sizeof r->id, "%s", id->valuestring);
    for (int i = 0; i < set->n; i++) {
        if (strcmp(set->rules[i].id, r->id) == 0) {
            fail(l, "rule %s: the id is used twice", r->id);
            return -1;
        }
    }
    long at = locate(l, *search_from, r->id, 0);
    size_t rule_at = at < 0 ? *search_from : (size_t)at;
    *search_from = rule_at;
    set->n++; /* from here on rules_free releases what this rule holds */
    if (parse_triggers(l, r, field(o, "on")) < 0)
        return -1;
    const cJSON *cond = field(o, "condition");
    if (!cJSON_IsString(cond) || !cond->valuestring[0]) {
        fail(l, "rule %s: \"condition\" must be a non-empty string", r->id);
        return -1;
    }
    expr_error_t e;
    recording_resolver_t rec = {{record_feature}, resolver, 0};
    if (expr_compile(cond->valuestring, strlen(cond->valuestring), &rec.base, &r->condition,
                     &e) < 0) {
        fail_at(l, rule_at, r->id, "condition", cond->valuestring, &e);
        return -1;
    }
    r->condition_features = rec.used;
    const cJSON *sev = field(o, "severity");
    int s = 0;
    while (s < 3 && !(cJSON_IsString(sev) && strcmp(sev->valuestring, severity_names[s]) == 0))
        s++;
    if (s == 3) {
        fail(l, "rule %s: \"severity\" must be info, warning or critical", r->id);
        return -1;
    }
    r->severity = (rule_severity_t)s;
    if (compile_template(l, rule_at, r, o, "title", resolver, &r->title) < 0 ||
        compile_template(l, rule_at, r, o, "message", resolver, &r->message) < 0)
        return -1;
    const cJSON *action = field(o, "action");
    if (!cJSON_IsString(action) || strlen(action->valuestring) > RULE_ACTION_MAX) {
        fail(l, "rule %s: \"action\" must be a string of at most %d bytes", r->id,
             RULE_ACTION_MAX);
        return -1;
    }
    snprintf(r->action, sizeof r->action, "%s", action->valuestring);
    const cJSON *cooldown = field(o, "cooldown_s");
    if (!cJSON_IsNumber(cooldown) || cooldown->valuedouble < 0 ||
        cooldown->valuedouble > 366 * 86400.0) {
        fail(l, "rule %s: \"cooldown_s\" must be a number of seconds, 0 .. 31622400", r->id);
        return -1;
    }
    r->cooldown_ms = (int64_t)(cooldown->valuedouble * 1000);
    static const char *const known[] = {"id",    "on",      "condition", "severity",
                                        "title", "message", "action",    "cooldown_s"};
    for (const cJSON *f = o->child; f; f = f->next) {
        size_t k = 0;
        while (k < 8 && strcmp(f->string, known[k]) != 0)
            k++;
        if (k == 8) {
            fail(l, "rule %s: unknown field \"%s\"", r->id, f->string);
            return -1;
        }
    }
    set->all_triggers |= r->triggers;
    if (r->triggers & RULE_TRIGGER_TIMER)
        set->timer_features |= r->condition_features;
    return 0;
}

rules_t *rules_parse(const char *text, size_t len, const char *origin,
                     const expr_resolver_t *resolver, char *err, size_t errlen)
{
    loader_t l = {text, len, origin, err, errlen};
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, false);
    if (!root) {
        int line, col;
        line_col(text, end ? (size_t)(end - text) : 0, &line, &col);
        snprintf(err, errlen, "%s:%d:%d: invalid JSON", origin, line, col);
        return NULL;
    }
    rules_t *set = calloc(1, sizeof *set);
    const cJSON *list = field(root, "rules");
    int rc = 0;
    if (!set) {
        fail(&l, "out of memory");
        rc = -1;
    } else if (!cJSON_IsObject(root) || !cJSON_IsArray(list) || root->child->next) {
        fail(&l, "the file must be an object with one member, \"rules\": an array");
        rc = -1;
    } else if (cJSON_GetArraySize(list) > RULES_MAX) {
        fail(&l, "more than %d rules", RULES_MAX);
        rc = -1;
    }
    size_t search_from = 0;
    const cJSON *o;
    if (rc == 0) {
        cJSON_ArrayForEach(o, list)
        {
            if (parse_rule(&l, set, o, &search_from, resolver) < 0) {
                rc = -1;
                break;
            }
        }
    }
    cJSON_Delete(root);
    if (rc < 0) {
        rules_free(set);
        return NULL;
    }
    return set;
}

rules_t *rules_load(const char *path, const expr_resolver_t *resolver, char *err,
                    size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *text = malloc(RULES_FILE_MAX + 1);
    size_t n = text ? fread(text, 1, RULES_FILE_MAX + 1, f) : 0;
    bool read_error = ferror(f);
    fclose(f);
    if (!text || read_error || n > RULES_FILE_MAX) {
        snprintf(err, errlen, "%s: %s", path,
                 read_error ? "read error" : "larger than 1 MiB or out of memory");
        free(text);
        return NULL;
    }
    text[n] = '\0';
    rules_t *set = rules_parse(text, n, path, resolver, err, errlen);
    free(text);
    return set;
}

void rules_free(rules_t *rules)
{
    if (!rules)
        return;
    for (int i = 0; i < rules->n; i++) {
        expr_free(rules->rules[i].condition);
        template_free(rules->rules[i].title);
        template_free(rules->rules[i].message);
    }
    free(rules);
}
