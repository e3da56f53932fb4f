/* test_engine_store.c - the batch write's arguments (store_command_build): one write, and
 * the group commit of several writes of a partition: each document once with its
 * newest value, the live-queue operations of all of them in order, the last write's applied
 * offset; documents serialized in place (begin/commit); a recycled write; and the cache's
 * watch list that the 1-second timer walks. */
#include "cache.h"
#include "store.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *arg(const store_command_t *c, int i, char *buf, size_t cap)
{
    snprintf(buf, cap, "%.*s", (int)c->lens[i], c->argv[i]);
    return buf;
}

#define ARG(c, i) arg((c), (i), (char[512]){0}, 512)

/* The value written for key, or NULL when the command does not write it. */
static const char *value_of(const store_command_t *c, const char *key, char *buf, size_t cap)
{
    for (size_t k = 0; k + 2 < c->pair_args; k += 2) { /* the last pair: the applied offset */
        if (strcmp(ARG(c, (int)k), key) == 0)
            return arg(c, (int)k + 1, buf, cap);
    }
    return NULL;
}

#define VALUE(c, key) value_of((c), (key), (char[512]){0}, 512)

static void one_write_is_mset_pairs_then_operations(void **state)
{
    (void)state;
    store_write_t *w = store_write_new("interactions", 7, 3, 101);
    assert_int_equal(store_write_add(w, "{c:a}:state", "A1", 2), 0);
    assert_int_equal(store_write_add(w, "{c:b}:state", "B1", 2), 0);
    assert_int_equal(store_write_add_op(w, STORE_OP_QUEUED, 5000, "k1", "billing", "{}", 2), 0);
    store_command_t c;
    assert_int_equal(store_command_build(&c, &w, 1), 0);
    /* ka va kb vb applied 101 | Q 5000 k1 billing {} */
    assert_int_equal(c.pair_args, 6);
    assert_int_equal(c.op_args, 5);
    assert_int_equal(c.docs, 2);
    assert_string_equal(c.owner, "{p:interactions:7}:owner");
    assert_string_equal(c.epoch, "3");
    const char *want[] = {"{c:a}:state", "A1", "{c:b}:state", "B1",
                          "{p:interactions:7}:applied", "101", "Q", "5000", "k1", "billing",
                          "{}"};
    for (int i = 0; i < 11; i++)
        assert_string_equal(ARG(&c, i), want[i]);
    store_command_free(&c);
    store_write_free(w);
}

static void merged_writes_keep_each_document_once_with_its_newest_value(void **state)
{
    (void)state;
    store_write_t *ws[3];
    ws[0] = store_write_new("t", 0, 9, 11);
    ws[1] = store_write_new("t", 0, 9, 21);
    ws[2] = store_write_new("t", 0, 9, 31);
    store_write_add(ws[0], "{c:a}:state", "a@10", 4);
    store_write_add(ws[0], "{c:b}:state", "b@10", 4);
    store_write_add_op(ws[0], STORE_OP_QUEUED, 1, "c1", "q", "i1", 2);
    store_write_add(ws[1], "{c:b}:state", "b@20", 4);
    store_write_add(ws[1], "{c:c}:state", "c@20", 4);
    store_write_add_op(ws[1], STORE_OP_ANSWERED, 2, "c1", NULL, NULL, 0);
    store_write_add(ws[2], "{c:a}:state", "a@30", 4);
    store_write_add_op(ws[2], STORE_OP_AGENT, 3, "agent:x", NULL, "{\"s\":1}", 7);
    store_write_add_op(ws[2], STORE_OP_ENDED, 4, "c2", NULL, NULL, 0);
    store_command_t c;
    assert_int_equal(store_command_build(&c, ws, 3), 0);
    assert_int_equal(c.docs, 3);
    assert_int_equal(c.pair_args, 2 * 3 + 2);
    assert_string_equal(c.epoch, "9");
    assert_string_equal(ARG(&c, 7), "31"); /* the last write's applied offset */
    assert_string_equal(VALUE(&c, "{c:a}:state"), "a@30");
    assert_string_equal(VALUE(&c, "{c:b}:state"), "b@20");
    assert_string_equal(VALUE(&c, "{c:c}:state"), "c@20");
    /* The operations, oldest write first, in their order. */
    int ops = 2 * 3 + 2;
    assert_int_equal(c.op_args, 4 * 5);
    const char *want[4][5] = {{"Q", "1", "c1", "q", "i1"},
                              {"S", "2", "c1", "", ""},
                              {"G", "3", "agent:x", "", "{\"s\":1}"},
                              {"E", "4", "c2", "", ""}};
    for (int k = 0; k < 4; k++)
        for (int f = 0; f < 5; f++)
            assert_string_equal(ARG(&c, ops + 5 * k + f), want[k][f]);
    store_command_free(&c);
    for (int i = 0; i < 3; i++)
        store_write_free(ws[i]);
}

static void many_merged_writes_dedupe_every_key(void **state)
{
    (void)state;
    enum { WRITES = 40, KEYS = 300 };
    store_write_t *ws[WRITES];
    for (int i = 0; i < WRITES; i++) {
        ws[i] = store_write_new("t", 1, 1, i + 1);
        for (int k = i % 7; k < KEYS; k += 1 + i % 5) {
            char key[32], value[32];
            snprintf(key, sizeof key, "{c:%d}:state", k);
            int n = snprintf(value, sizeof value, "%d@%d", k, i);
            assert_int_equal(store_write_add(ws[i], key, value, (size_t)n), 0);
        }
    }
    store_command_t c;
    assert_int_equal(store_command_build(&c, ws, WRITES), 0);
    /* Expected: for each key, the last write that has it. */
    size_t expected = 0;
    for (int k = 0; k < KEYS; k++) {
        int last = -1;
        for (int i = 0; i < WRITES; i++)
            if (k >= i % 7 && (k - i % 7) % (1 + i % 5) == 0)
                last = i;
        char key[32], value[32];
        snprintf(key, sizeof key, "{c:%d}:state", k);
        const char *got = VALUE(&c, key);
        if (last < 0) {
            assert_null(got);
            continue;
        }
        expected++;
        snprintf(value, sizeof value, "%d@%d", k, last);
        assert_non_null(got);
        assert_string_equal(got, value);
    }
    assert_int_equal(c.docs, expected);
    assert_int_equal(c.pair_args, 2 * expected + 2);
    assert_int_equal(c.op_args, 0);
    assert_string_equal(ARG(&c, 2 * (int)expected + 1), "40");
    store_command_free(&c);
    for (int i = 0; i < WRITES; i++)
        store_write_free(ws[i]);
}

static void documents_serialized_in_place_and_recycled_writes(void **state)
{
    (void)state;
    store_write_t *w = store_write_new("t", 2, 5, -1);
    char *at = store_write_begin(w, "{c:a}:state", 100000);
    assert_non_null(at);
    memcpy(at, "first try", 9); /* abandoned: begun again with more room */
    at = store_write_begin(w, "{c:a}:state", 300000);
    assert_non_null(at);
    memcpy(at, "doc-a", 5);
    store_write_commit(w, 5);
    at = store_write_begin(w, "{c:b}:state", 64);
    memcpy(at, "doc-b", 5);
    store_write_commit(w, 5);
    store_write_set_offset(w, 77);
    assert_int_equal(store_write_count(w), 2);
    store_command_t c;
    assert_int_equal(store_command_build(&c, &w, 1), 0);
    assert_string_equal(ARG(&c, 5), "77");
    assert_string_equal(VALUE(&c, "{c:a}:state"), "doc-a");
    assert_string_equal(VALUE(&c, "{c:b}:state"), "doc-b");
    store_command_free(&c);
    size_t capacity = store_write_capacity(w);
    store_write_reset(w, "u", 3, 6, 12);
    assert_int_equal(store_write_count(w), 0);
    assert_int_equal(store_write_ops(w), 0);
    assert_int_equal(store_write_bytes(w), 0);
    assert_int_equal(store_write_capacity(w), capacity); /* buffers kept */
    store_write_add(w, "{c:z}:state", "z", 1);
    assert_int_equal(store_command_build(&c, &w, 1), 0);
    assert_string_equal(c.owner, "{p:u:3}:owner");
    assert_string_equal(c.epoch, "6");
    assert_string_equal(ARG(&c, 2), "{p:u:3}:applied");
    assert_string_equal(ARG(&c, 3), "12");
    assert_string_equal(VALUE(&c, "{c:z}:state"), "z");
    assert_null(VALUE(&c, "{c:a}:state"));
    store_command_free(&c);
    store_write_free(w);
}

static void copied_operations_keep_long_fields(void **state)
{
    (void)state;
    char id[600], info[3000];
    memset(id, 'i', sizeof id - 1);
    id[sizeof id - 1] = '\0';
    memset(info, 'x', sizeof info);
    store_write_t *src = store_write_new("t", 0, 1, -1), *dst = store_write_new("t", 0, 1, 5);
    assert_int_equal(store_write_add_op(src, STORE_OP_QUEUED, 123, id, "q", info, sizeof info), 0);
    assert_int_equal(store_write_copy_ops(dst, src), 0);
    store_command_t c;
    assert_int_equal(store_command_build(&c, &dst, 1), 0);
    assert_int_equal(c.pair_args, 2);
    assert_int_equal(c.op_args, 5);
    assert_int_equal(c.lens[4], strlen(id));
    assert_memory_equal(c.argv[4], id, strlen(id));
    assert_int_equal(c.lens[6], sizeof info);
    assert_memory_equal(c.argv[6], info, sizeof info);
    store_command_free(&c);
    store_write_free(src);
    store_write_free(dst);
}

/* The names of the commands in a RESP text, space-separated. */
static void command_names(const char *resp, size_t len, char *out, size_t cap)
{
    const char *p = resp, *end = resp + len;
    size_t at = 0;
    out[0] = '\0';
    while (p < end) {
        assert_int_equal(*p, '*');
        long argc = strtol(p + 1, (char **)&p, 10);
        p += 2;
        for (long i = 0; i < argc; i++) {
            long l = strtol(p + 1, (char **)&p, 10);
            p += 2;
            if (i == 0)
                at += (size_t)snprintf(out + at, cap - at, at ? " %.*s" : "%.*s", (int)l, p);
            p += l + 2;
        }
    }
}

/* A write's operations say each queue's listing and each done list's trim once. */
static void live_queue_listing_and_trims_once_per_job(void **state)
{
    (void)state;
    store_write_t *ws[2] = {store_write_new("t", 0, 1, 5), store_write_new("t", 0, 1, 6)};
    store_write_add_op(ws[0], STORE_OP_QUEUED, 1000, "c1", "q", "{}", 2);
    store_write_add_op(ws[0], STORE_OP_QUEUED, 1001, "c2", "q", "{}", 2);
    store_write_add_op(ws[0], STORE_OP_QUEUED, 1002, "c3", "r", "{}", 2);
    store_write_add_op(ws[1], STORE_OP_ANSWERED, 5000, "c1", "q", "1000", 4);
    store_write_add_op(ws[1], STORE_OP_ANSWERED, 7000, "c2", "q", "1001", 4);
    store_write_add_op(ws[1], STORE_OP_ABANDONED, 6000, "c3", "r", "1002", 4);
    store_write_add_op(ws[1], STORE_OP_QUEUED, 8000, "c4", "q", "{}", 2);
    char *resp, names[1024];
    size_t len, commands;
    assert_int_equal(store_write_encode(ws, 2, &resp, &len, &commands), 0);
    command_names(resp, len, names, sizeof names);
    assert_string_equal(names, "MSET"
                               " ZADD HSET SADD"                  /* c1 lists q */
                               " ZADD HSET"                       /* c2: q listed already */
                               " ZADD HSET SADD"                  /* c3 lists r */
                               " ZREM HDEL ZADD"                  /* c1 answered */
                               " ZREM HDEL ZADD"                  /* c2 answered */
                               " ZREM HDEL ZADD"                  /* c3 abandoned */
                               " ZADD HSET"                       /* c4 */
                               " ZREMRANGEBYSCORE ZREMRANGEBYSCORE"); /* q answered, r */
    assert_int_equal(commands, 22);
    /* The trims go to the newest time asked for, an hour back. */
    assert_non_null(strstr(resp, "{q}:answered:q\r\n$4\r\n-inf\r\n$8\r\n-3593000\r\n"));
    assert_non_null(strstr(resp, "{q}:abandoned:r\r\n$4\r\n-inf\r\n$8\r\n-3594000\r\n"));
    free(resp);
    store_write_free(ws[0]);
    store_write_free(ws[1]);
}

static void free_doc(void *doc)
{
    (void)doc;
}

static void watch_list_follows_entries(void **state)
{
    (void)state;
    cache_t cache;
    assert_int_equal(cache_init(&cache, 2), 0);
    cache_entry_t *e[4];
    for (int i = 0; i < 4; i++) {
        char subject[16];
        snprintf(subject, sizeof subject, "s%d", i);
        e[i] = cache_add(&cache, subject, i % 2, NULL, free_doc);
        e[i]->state = CACHE_READY;
    }
    cache_watch(&cache, e[0], true);
    cache_watch(&cache, e[1], true);
    cache_watch(&cache, e[2], true);
    cache_watch(&cache, e[2], true); /* twice: once in the list */
    assert_int_equal(cache.watched, 3);
    cache_watch(&cache, e[1], false);
    cache_watch(&cache, e[3], false); /* not in it: nothing */
    assert_int_equal(cache.watched, 2);
    int seen = 0;
    for (cache_entry_t *x = cache.watch_head; x; x = x->watch_next)
        seen |= 1 << (x->subject[1] - '0');
    assert_int_equal(seen, 1 | 4);
    /* Dropping partition 0 (s0, s2) empties the list; eviction of the rest is fine too. */
    cache_drop_partition(&cache, 0);
    assert_int_equal(cache.watched, 0);
    assert_null(cache.watch_head);
    cache_watch(&cache, e[3], true);
    cache_trim(&cache); /* 2 entries left, max 2: nothing evicted */
    assert_int_equal(cache.watched, 1);
    cache.max_entries = 0;
    cache_trim(&cache);
    assert_int_equal(cache.count, 0);
    assert_int_equal(cache.watched, 0);
    assert_null(cache.watch_head);
    cache_close(&cache);
}

/* Eviction takes the least recently used entries, never a pinned or loading one. */
static void eviction_takes_least_recently_used_unpinned_ready(void **state)
{
    (void)state;
    cache_t cache;
    assert_int_equal(cache_init(&cache, 3), 0);
    cache_entry_t *e[6];
    for (int i = 0; i < 6; i++) {
        char subject[16];
        snprintf(subject, sizeof subject, "s%d", i);
        e[i] = cache_add(&cache, subject, 0, NULL, free_doc);
        e[i]->state = i == 2 ? CACHE_LOADING : CACHE_READY;
    }
    e[3]->pins = 1;
    assert_ptr_equal(cache_find(&cache, "s0"), e[0]); /* the oldest, found again */
    assert_null(cache_find(&cache, "s9"));
    cache_trim(&cache); /* 6 > 3: s1, s4, s5 go; s0 was used last, s2 loads, s3 is pinned */
    assert_int_equal(cache.count, 3);
    assert_int_equal(cache.evictions, 3);
    assert_ptr_equal(cache_find(&cache, "s0"), e[0]); /* spared */
    assert_null(cache_find(&cache, "s1"));
    assert_null(cache_find(&cache, "s4"));
    assert_null(cache_find(&cache, "s5"));
    assert_non_null(cache_add(&cache, "s6", 0, NULL, free_doc));
    cache_trim(&cache); /* 4 > 3: s0 is the only one that can go */
    assert_null(cache_find(&cache, "s0"));
    assert_non_null(cache_find(&cache, "s6"));
    assert_int_equal(cache.count, 3);
    cache_close(&cache);
}

int main(void)
{
#define T(name) cmocka_unit_test(name)
    const struct CMUnitTest tests[] = {
        T(eviction_takes_least_recently_used_unpinned_ready),
        T(one_write_is_mset_pairs_then_operations),
        T(merged_writes_keep_each_document_once_with_its_newest_value),
        T(many_merged_writes_dedupe_every_key),
        T(documents_serialized_in_place_and_recycled_writes),
        T(copied_operations_keep_long_fields),
        T(live_queue_listing_and_trims_once_per_job),
        T(watch_list_follows_entries),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
