/* replay.c - runs a libFuzzer target over saved inputs, without libFuzzer, so any compiler
 * (CI's gcc with ASan/UBSan) can check that a corpus and past crashes still pass:
 *   gcc ... tests/fuzz/replay.c tests/fuzz/fuzz_event.c services/engine/event.c -lcjson -lm
 *   ./replay tests/fuzz/corpus/event
 * Each argument is a file or a directory (its files, not recursively; dot files skipped).
 * Each input is read into a buffer of exactly its size, so a sanitizer sees any read past
 * the end. A failing input aborts inside the target; the line before names it.
 * Exit status: 0 when every input ran, 1 when an argument could not be read or none was given. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REPLAY_INPUT_MAX (16 * 1024 * 1024) /* larger than any fuzzer input; guards typos */

/* Reads the whole file into a malloc'd buffer of exactly its size (the caller frees it).
 * Returns 0, or -1 after printing why. */
static int read_input(const char *path, uint8_t **data, size_t *size)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) < 0 || st.st_size > REPLAY_INPUT_MAX) {
        fprintf(stderr, "replay: %s: %s\n", path, f ? "too large or unreadable" : strerror(errno));
        if (f)
            fclose(f);
        return -1;
    }
    *size = (size_t)st.st_size;
    *data = malloc(*size ? *size : 1);
    if (!*data || fread(*data, 1, *size, f) != *size) {
        fprintf(stderr, "replay: %s: short read\n", path);
        free(*data);
        fclose(f);
        return -1;
    }
    fclose(f);
    return 0;
}

static int replay_file(const char *path)
{
    uint8_t *data;
    size_t size;
    if (read_input(path, &data, &size) < 0)
        return -1;
    fprintf(stderr, "replay: %s (%zu bytes)\n", path, size);
    LLVMFuzzerTestOneInput(data, size);
    free(data);
    return 0;
}

/* Replays every regular file directly in dir. Returns the number replayed, or -1. */
static int replay_dir(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) {
        fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        char path[4096];
        struct stat st;
        if (e->d_name[0] == '.' ||
            (size_t)snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= sizeof path ||
            stat(path, &st) < 0 || !S_ISREG(st.st_mode))
            continue;
        if (replay_file(path) < 0) {
            closedir(d);
            return -1;
        }
        n++;
    }
    closedir(d);
    return n;
}

/* Replays a file or a directory's files. Returns the number replayed, or -1. */
static int replay_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return replay_dir(path);
    return replay_file(path) < 0 ? -1 : 1;
}

int main(int argc, char **argv)
{
    int total = 0;
    for (int i = 1; i < argc; i++) {
        int n = replay_path(argv[i]);
        if (n < 0)
            return 1;
        total += n;
    }
    fprintf(stderr, "replay: %d inputs ran\n", total);
    return total > 0 ? 0 : 1;
}
