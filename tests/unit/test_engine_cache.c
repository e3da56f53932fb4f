/* The engine's document cache (services/engine/cache.c): the watch list and its pass in
 * steps, which the timer rules' check spreads over many turns of the loop while events keep
 * adding and removing entries. */
#include "cache.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#define N 8

typedef struct {
    cache_t cache;
    cache_entry_t *e[N];
} fixture_t;

static void free_doc(void *doc)
{
    free(doc);
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(cache_init(&f->cache, 100), 0);
    for (int i = 0; i < N; i++) {
        char subject[16];
        snprintf(subject, sizeof subject, "c-%d", i);
        f->e[i] = cache_add(&f->cache, subject, i % 2, malloc(1), free_doc);
        assert_non_null(f->e[i]);
        f->e[i]->state = CACHE_READY;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    cache_close(&f->cache);
    free(f);
    return 0;
}

/* Takes the rest of the pass; returns how many entries it gave, marking them in seen[]. */
static int drain(fixture_t *f, int seen[N])
{
    int n = 0;
    for (cache_entry_t *e; (e = cache_watch_pass_next(&f->cache)); n++)
        for (int i = 0; i < N; i++)
            if (f->e[i] == e) seen[i]++;
    return n;
}

/* Watches every entry, starts a pass and takes its first entry. */
static cache_entry_t *watch_all_and_take_first(fixture_t *f)
{
    for (int i = 0; i < N; i++)
        cache_watch(&f->cache, f->e[i], true);
    cache_watch_pass_start(&f->cache);
    cache_entry_t *first = cache_watch_pass_next(&f->cache);
    assert_non_null(first);
    return first;
}

static void a_pass_gives_every_watched_entry_once(void **state)
{
    fixture_t *f = *state;
    for (int i = 0; i < N; i += 2)
        cache_watch(&f->cache, f->e[i], true);
    assert_int_equal(cache_watch_pass_start(&f->cache), N / 2);
    int seen[N] = {0};
    assert_int_equal(drain(f, seen), N / 2);
    for (int i = 0; i < N; i++)
        assert_int_equal(seen[i], i % 2 == 0 ? 1 : 0);
    assert_null(cache_watch_pass_next(&f->cache)); /* over, and stays over */
    assert_null(cache_watch_pass_next(&f->cache));
}

static void an_entry_unwatched_before_its_turn_is_skipped(void **state)
{
    fixture_t *f = *state;
    cache_entry_t *first = watch_all_and_take_first(f);
    /* the entry the cursor is on and one further on leave the list */
    cache_entry_t *cursor = f->cache.watch_cursor, *later = cursor->watch_next->watch_next;
    cache_watch(&f->cache, cursor, false);
    cache_watch(&f->cache, later, false);
    cache_watch(&f->cache, first, false); /* already given: changes nothing for the pass */
    int seen[N] = {0};
    assert_int_equal(drain(f, seen), N - 3);
    for (int i = 0; i < N; i++) {
        bool gone = f->e[i] == cursor || f->e[i] == later || f->e[i] == first;
        assert_int_equal(seen[i], gone ? 0 : 1);
    }
}

static void an_entry_watched_during_a_pass_waits_for_the_next(void **state)
{
    fixture_t *f = *state;
    for (int i = 0; i < N - 1; i++)
        cache_watch(&f->cache, f->e[i], true);
    cache_watch_pass_start(&f->cache);
    assert_non_null(cache_watch_pass_next(&f->cache));
    cache_watch(&f->cache, f->e[N - 1], true);
    int seen[N] = {0};
    assert_int_equal(drain(f, seen), N - 2);
    assert_int_equal(seen[N - 1], 0);
    assert_int_equal(cache_watch_pass_start(&f->cache), N);
    int again[N] = {0};
    assert_int_equal(drain(f, again), N);
    assert_int_equal(again[N - 1], 1);
}

static void dropping_a_partition_during_a_pass_skips_its_entries(void **state)
{
    fixture_t *f = *state;
    cache_entry_t *first = watch_all_and_take_first(f);
    int first_partition = first->partition;
    cache_drop_partition(&f->cache, 1 - first_partition); /* frees the entries */
    int n = 0;
    for (cache_entry_t *e; (e = cache_watch_pass_next(&f->cache)); n++)
        assert_int_equal(e->partition, first_partition);
    assert_int_equal(n, N / 2 - 1);
    assert_int_equal(f->cache.watched, N / 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(a_pass_gives_every_watched_entry_once, setup, teardown),
        cmocka_unit_test_setup_teardown(an_entry_unwatched_before_its_turn_is_skipped, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(an_entry_watched_during_a_pass_waits_for_the_next, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(dropping_a_partition_during_a_pass_skips_its_entries, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
