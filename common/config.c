/* config.c - table-driven configuration: defaults, a JSON file, the environment. See config.h. */
#include "config.h"

#include <cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_FILE_MAX (1024 * 1024)
#define CONFIG_STRING_DEFAULT_MAX 4096

typedef struct {
    const config_section_t *sections;
    size_t n_sections;
    const char *origin; /* file path or "environment", for messages */
    char *err;
    size_t errlen;
} loader_t;

static int fail(loader_t *l, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(loader_t *l, const char *key, const char *fmt, ...)
{
    char reason[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    if (key)
        snprintf(l->err, l->errlen, "%s: %s: %s", l->origin, key, reason);
    else
        snprintf(l->err, l->errlen, "%s: %s", l->origin, reason);
    return -1;
}

static const config_key_t *find_key(const loader_t *l, const char *name, void **base)
{
    for (size_t s = 0; s < l->n_sections; s++) {
        const config_section_t *sec = &l->sections[s];
        for (size_t k = 0; k < sec->n_keys; k++) {
            if (strcmp(sec->keys[k].name, name) == 0) {
                *base = sec->base;
                return &sec->keys[k];
            }
        }
    }
    return NULL;
}

/* True when some key starts with "prefix." (so a JSON object of that name is a group). */
static bool is_group(const loader_t *l, const char *prefix)
{
    size_t n = strlen(prefix);
    for (size_t s = 0; s < l->n_sections; s++)
        for (size_t k = 0; k < l->sections[s].n_keys; k++) {
            const char *name = l->sections[s].keys[k].name;
            if (strncmp(name, prefix, n) == 0 && name[n] == '.')
                return true;
        }
    return false;
}

void config_env_name(const char *key, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "INTEGRAL_");
    for (const char *p = key; *p && n + 1 < cap; p++)
        out[n++] = (*p == '.' || *p == '-') ? '_' : (char)toupper((unsigned char)*p);
    out[n < cap ? n : cap - 1] = '\0';
}

static double string_max(const config_key_t *key)
{
    return key->max > 0 ? key->max : CONFIG_STRING_DEFAULT_MAX;
}

static bool in_choices(const char *choices, const char *value)
{
    size_t n = strlen(value);
    for (const char *p = choices; p && *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, value, n) == 0)
            return true;
        p = bar ? bar + 1 : NULL;
    }
    return false;
}

/* Stores a string value after checking its length and choices. */
static int set_string(loader_t *l, const config_key_t *key, void *base, const char *value)
{
    if (strlen(value) > string_max(key))
        return fail(l, key->name, "longer than %.0f characters", string_max(key));
    if (key->choices && !in_choices(key->choices, value))
        return fail(l, key->name, "\"%s\" is not one of %s", value, key->choices);
    char *copy = strdup(value);
    if (!copy)
        return fail(l, key->name, "out of memory");
    char **slot = (char **)((char *)base + key->offset);
    free(*slot);
    *slot = copy;
    return 0;
}

static int set_number(loader_t *l, const config_key_t *key, void *base, double value)
{
    if (isnan(value) || value < key->min || value > key->max)
        return fail(l, key->name, "%g is out of range [%g, %g]", value, key->min, key->max);
    if (key->type == CONFIG_INT) {
        if (value != floor(value))
            return fail(l, key->name, "%g is not an integer", value);
        *(long *)((char *)base + key->offset) = (long)value;
    } else {
        *(double *)((char *)base + key->offset) = value;
    }
    return 0;
}

static int set_bool(void *base, const config_key_t *key, bool value)
{
    *(bool *)((char *)base + key->offset) = value;
    return 0;
}

static const char *type_name(config_type_t t)
{
    switch (t) {
    case CONFIG_STRING: return "string";
    case CONFIG_INT: return "integer";
    case CONFIG_DOUBLE: return "number";
    case CONFIG_BOOL: return "boolean";
    }
    return "?";
}

/* Parses a value given as text: defaults and environment variables. */
static int set_from_text(loader_t *l, const config_key_t *key, void *base, const char *text)
{
    if (key->type == CONFIG_STRING)
        return set_string(l, key, base, text);
    if (key->type == CONFIG_BOOL) {
        if (!strcmp(text, "true") || !strcmp(text, "1") || !strcmp(text, "yes"))
            return set_bool(base, key, true);
        if (!strcmp(text, "false") || !strcmp(text, "0") || !strcmp(text, "no"))
            return set_bool(base, key, false);
        return fail(l, key->name, "\"%s\" is not a boolean (true or false)", text);
    }
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end != '\0' || errno == ERANGE)
        return fail(l, key->name, "\"%s\" is not a valid %s", text, type_name(key->type));
    return set_number(l, key, base, v);
}

static int set_from_json(loader_t *l, const config_key_t *key, void *base, const cJSON *item)
{
    switch (key->type) {
    case CONFIG_STRING:
        if (!cJSON_IsString(item))
            return fail(l, key->name, "expected a string");
        return set_string(l, key, base, item->valuestring);
    case CONFIG_BOOL:
        if (!cJSON_IsBool(item))
            return fail(l, key->name, "expected a boolean (true or false)");
        return set_bool(base, key, cJSON_IsTrue(item));
    case CONFIG_INT:
    case CONFIG_DOUBLE:
        if (!cJSON_IsNumber(item))
            return fail(l, key->name, "expected %s",
                        key->type == CONFIG_INT ? "an integer" : "a number");
        return set_number(l, key, base, item->valuedouble);
    }
    return fail(l, key->name, "unsupported type");
}

static int apply_object(loader_t *l, const cJSON *obj, const char *prefix)
{
    for (const cJSON *item = obj->child; item; item = item->next) {
        char name[256];
        if (prefix[0])
            snprintf(name, sizeof name, "%s.%s", prefix, item->string);
        else
            snprintf(name, sizeof name, "%s", item->string);
        for (const cJSON *prev = obj->child; prev != item; prev = prev->next)
            if (strcmp(prev->string, item->string) == 0)
                return fail(l, name, "duplicate key");
        void *base;
        const config_key_t *key = find_key(l, name, &base);
        if (!key && cJSON_IsObject(item) && is_group(l, name)) {
            if (apply_object(l, item, name) < 0)
                return -1;
            continue;
        }
        if (!key)
            return fail(l, name, "unknown key");
        if (set_from_json(l, key, base, item) < 0)
            return -1;
    }
    return 0;
}

static char *read_file(loader_t *l, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fail(l, NULL, "cannot open: %s", strerror(errno));
        return NULL;
    }
    char *text = malloc(CONFIG_FILE_MAX + 1);
    size_t n = text ? fread(text, 1, CONFIG_FILE_MAX + 1, f) : 0;
    bool error = ferror(f);
    fclose(f);
    if (!text || error || n > CONFIG_FILE_MAX) {
        free(text);
        fail(l, NULL, error ? "read error" : "larger than 1 MiB or out of memory");
        return NULL;
    }
    text[n] = '\0';
    return text;
}

static int apply_file(loader_t *l, const char *path)
{
    char *text = read_file(l, path);
    if (!text)
        return -1;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, true);
    int rc;
    if (!root) {
        int line = 1, col = 1;
        for (const char *p = text; end && p < end; p++) {
            col++;
            if (*p == '\n')
                line++, col = 1;
        }
        rc = fail(l, NULL, "invalid JSON at line %d, column %d", line, col);
    } else if (!cJSON_IsObject(root)) {
        rc = fail(l, NULL, "the top level must be a JSON object");
    } else {
        rc = apply_object(l, root, "");
    }
    cJSON_Delete(root);
    free(text);
    return rc;
}

static int apply_defaults(loader_t *l)
{
    for (size_t s = 0; s < l->n_sections; s++) {
        const config_section_t *sec = &l->sections[s];
        for (size_t k = 0; k < sec->n_keys; k++)
            if (set_from_text(l, &sec->keys[k], sec->base, sec->keys[k].def) < 0)
                return -1;
    }
    return 0;
}

static int apply_environment(loader_t *l)
{
    for (size_t s = 0; s < l->n_sections; s++) {
        const config_section_t *sec = &l->sections[s];
        for (size_t k = 0; k < sec->n_keys; k++) {
            char env[128];
            config_env_name(sec->keys[k].name, env, sizeof env);
            const char *value = getenv(env);
            l->origin = env;
            if (value && set_from_text(l, &sec->keys[k], sec->base, value) < 0)
                return -1;
        }
    }
    return 0;
}

int config_load(const config_section_t *sections, size_t n_sections, const char *path, char *err,
                size_t errlen)
{
    loader_t l = {sections, n_sections, "defaults", err, errlen};
    if (apply_defaults(&l) < 0)
        return -1;
    l.origin = path;
    if (path && apply_file(&l, path) < 0)
        return -1;
    return apply_environment(&l);
}

void config_free(const config_section_t *sections, size_t n_sections)
{
    for (size_t s = 0; s < n_sections; s++)
        for (size_t k = 0; k < sections[s].n_keys; k++)
            if (sections[s].keys[k].type == CONFIG_STRING) {
                char **slot = (char **)((char *)sections[s].base + sections[s].keys[k].offset);
                free(*slot);
                *slot = NULL;
            }
}

/* Writes text for a Markdown table cell: '|' would end the cell, so it is escaped. */
static void write_cell(FILE *out, const char *text)
{
    for (const char *p = text; *p; p++) {
        if (*p == '|')
            fputc('\\', out);
        fputc(*p, out);
    }
}

static void write_bounds(FILE *out, const config_key_t *key)
{
    if (key->type == CONFIG_INT) {
        fprintf(out, "%.0f .. %.0f", key->min, key->max);
    } else if (key->type == CONFIG_DOUBLE) {
        fprintf(out, "%g .. %g", key->min, key->max);
    } else if (key->type == CONFIG_STRING && key->choices) {
        fprintf(out, "one of `");
        write_cell(out, key->choices);
        fprintf(out, "`");
    } else if (key->type == CONFIG_STRING) {
        fprintf(out, "≤ %.0f chars", string_max(key));
    }
}

void config_write_doc(FILE *out, const config_section_t *sections, size_t n_sections)
{
    fprintf(out, "| key | environment | type | default | bounds | meaning |\n");
    fprintf(out, "|---|---|---|---|---|---|\n");
    for (size_t s = 0; s < n_sections; s++) {
        for (size_t k = 0; k < sections[s].n_keys; k++) {
            const config_key_t *key = &sections[s].keys[k];
            char env[128];
            config_env_name(key->name, env, sizeof env);
            fprintf(out, "| `%s` | `%s` | %s | ", key->name, env, type_name(key->type));
            if (key->def[0]) {
                fprintf(out, "`");
                write_cell(out, key->def);
                fprintf(out, "`");
            } else {
                fprintf(out, "(empty)");
            }
            fprintf(out, " | ");
            write_bounds(out, key);
            fprintf(out, " | ");
            write_cell(out, key->help);
            fprintf(out, " |\n");
        }
    }
}

int config_split_list(char *buf, char **items, int max)
{
    int n = 0;
    char *save = NULL;
    for (char *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        while (*item == ' ')
            item++;
        size_t len = strlen(item);
        while (len > 0 && item[len - 1] == ' ')
            item[--len] = '\0';
        if (len == 0)
            continue;
        if (n == max)
            return -1;
        items[n++] = item;
    }
    return n;
}
