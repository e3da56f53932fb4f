/* it_env.c - reads the shared test stack's env file. See it_env.h. */
#include "it_env.h"

#include <stdbool.h>
#include <uv.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define IT_ENV_MAX 32

static struct {
    char key[64];
    char value[1024];
} entries[IT_ENV_MAX];
static int n_entries = -1;

static void load(void)
{
    const char *path = getenv("INTEGRAL_IT_ENV");
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!f) {
        fprintf(stderr, "it_env: cannot read $INTEGRAL_IT_ENV (%s): is the stack fixture up?\n",
                path ? path : "unset");
        abort();
    }
    n_entries = 0;
    char line[1200];
    while (n_entries < IT_ENV_MAX && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        char *eq = strchr(line, '=');
        if (!eq || line[0] == '#')
            continue;
        *eq = '\0';
        if (strlen(line) >= sizeof entries[0].key || strlen(eq + 1) >= sizeof entries[0].value)
            continue; /* no key or value the stack writes is that long */
        memcpy(entries[n_entries].key, line, strlen(line) + 1);
        memcpy(entries[n_entries].value, eq + 1, strlen(eq + 1) + 1);
        n_entries++;
    }
    fclose(f);
}

const char *it_env(const char *key)
{
    if (n_entries < 0)
        load();
    for (int i = 0; i < n_entries; i++)
        if (strcmp(entries[i].key, key) == 0)
            return entries[i].value;
    fprintf(stderr, "it_env: %s missing from %s\n", key, getenv("INTEGRAL_IT_ENV"));
    abort();
}

int it_env_int(const char *key)
{
    return atoi(it_env(key));
}

int it_sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    fprintf(stderr, "+ %s\n", cmd);
    int status = system(cmd);
    if (status == -1 || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

void it_wait_expired(uv_timer_t *timer)
{
    *(bool *)timer->data = true;
}
