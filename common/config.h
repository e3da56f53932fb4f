/* config.h - typed, table-driven configuration from one JSON file plus the environment.
 *
 * Each service describes its keys in tables (name, type, default, bounds, help, and where the
 * value lands in a struct, by offsetof) — one table per concern, e.g. the common "log.*",
 * "http.*", "kafka.*" and "redis.*" tables plus the service's own. Loading:
 *   1. every key gets its default;
 *   2. the JSON file (if a path is given) is read; nested objects name dotted keys, so
 *      {"kafka": {"brokers": "h:9092"}} sets "kafka.brokers";
 *   3. every key can be overridden from the environment: INTEGRAL_ + the key in upper case
 *      with dots as underscores ("kafka.brokers" -> INTEGRAL_KAFKA_BROKERS);
 *   4. every value is checked against its type and bounds.
 * An unknown key, a wrong type, an out-of-range value or a missing/unreadable file fails with
 * one line naming the key (or the file) and the reason, e.g.
 *   config/engine.json: kafka.brokrs: unknown key
 * A reload builds a fresh struct with config_load and swaps it in only when it succeeded. */
#ifndef INTEGRAL_CONFIG_H
#define INTEGRAL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef enum {
    CONFIG_STRING, /* char * (owned by the struct; config_free releases it) */
    CONFIG_INT,    /* long; bounds min..max */
    CONFIG_DOUBLE, /* double; bounds min..max */
    CONFIG_BOOL,   /* bool */
} config_type_t;

typedef struct {
    const char *name;    /* dotted key, e.g. "kafka.brokers" */
    config_type_t type;
    size_t offset;       /* where the value lands, offsetof(struct, field) */
    const char *def;     /* default, as text (parsed like an environment value) */
    double min, max;     /* bounds for numbers; max length for strings (0 = 4096) */
    const char *choices; /* strings only: allowed values separated by '|', or NULL */
    const char *help;    /* one sentence for --help and config/README.md */
} config_key_t;

/* A table of keys and the struct its offsets point into. */
typedef struct {
    const config_key_t *keys;
    size_t n_keys;
    void *base;
} config_section_t;

#define CONFIG_SECTION(keys, base) {(keys), sizeof(keys) / sizeof((keys)[0]), (base)}

/* Fills every section from defaults, the JSON file at path (NULL: defaults and environment
 * only) and the environment. Returns 0, or -1 with one line in err (no trailing newline).
 * On failure the sections may hold partial values: call config_free on them. */
int config_load(const config_section_t *sections, size_t n_sections, const char *path, char *err,
                size_t errlen);

/* Frees the strings config_load allocated in every section (and NULLs them). */
void config_free(const config_section_t *sections, size_t n_sections);

/* Writes a Markdown table of every key: name, environment variable, type, default, bounds,
 * help. This is what config/README.md is made of. */
void config_write_doc(FILE *out, const config_section_t *sections, size_t n_sections);

/* The environment variable that overrides a key: "kafka.brokers" -> "INTEGRAL_KAFKA_BROKERS". */
void config_env_name(const char *key, char *out, size_t cap);

/* Splits a comma-separated list in place: at most max items, each trimmed of spaces, empty
 * ones skipped; items point into buf. Returns the count, or -1 when there are more than max. */
int config_split_list(char *buf, char **items, int max);

#endif
