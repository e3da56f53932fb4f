/* cache.c - subject -> document entries with LRU eviction. See cache.h.
 *
 * A chained hash table (FNV-1a of the subject, power-of-two buckets grown at load 1) plus a
 * doubly linked LRU list. Lookups happen once per event, so both are O(1). */
#include "cache.h"

#include <stdlib.h>
#include <string.h>

#define INITIAL_BUCKETS 1024

static uint64_t hash_subject(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

int cache_init(cache_t *cache, size_t max_entries)
{
    memset(cache, 0, sizeof *cache);
    cache->buckets = calloc(INITIAL_BUCKETS, sizeof *cache->buckets);
    if (!cache->buckets)
        return -1;
    cache->mask = INITIAL_BUCKETS - 1;
    cache->max_entries = max_entries;
    return 0;
}

static void lru_unlink(cache_t *cache, cache_entry_t *e)
{
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        cache->lru_head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        cache->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_push_front(cache_t *cache, cache_entry_t *e)
{
    e->lru_prev = NULL;
    e->lru_next = cache->lru_head;
    if (cache->lru_head)
        cache->lru_head->lru_prev = e;
    cache->lru_head = e;
    if (!cache->lru_tail)
        cache->lru_tail = e;
}

static void entry_free(cache_entry_t *e)
{
    if (e->doc)
        e->free_doc(e->doc);
    free(e);
}

void cache_watch(cache_t *cache, cache_entry_t *e, bool on)
{
    if (on == e->watched)
        return;
    if (on) {
        e->watch_prev = NULL;
        e->watch_next = cache->watch_head;
        if (cache->watch_head)
            cache->watch_head->watch_prev = e;
        cache->watch_head = e;
        cache->watched++;
    } else {
        if (e->watch_prev)
            e->watch_prev->watch_next = e->watch_next;
        else
            cache->watch_head = e->watch_next;
        if (e->watch_next)
            e->watch_next->watch_prev = e->watch_prev;
        if (cache->watch_cursor == e) /* a pass is under way: it goes on after e */
            cache->watch_cursor = e->watch_next;
        e->watch_prev = e->watch_next = NULL;
        cache->watched--;
    }
    e->watched = on;
}

size_t cache_watch_pass_start(cache_t *cache)
{
    cache->watch_cursor = cache->watch_head;
    return cache->watched;
}

cache_entry_t *cache_watch_pass_next(cache_t *cache)
{
    cache_entry_t *e = cache->watch_cursor;
    if (e)
        cache->watch_cursor = e->watch_next;
    return e;
}

/* Unlinks e from its bucket, the LRU list and the watch list and frees it. */
static void entry_remove(cache_t *cache, cache_entry_t *e)
{
    cache_watch(cache, e, false);
    cache_entry_t **pp = &cache->buckets[e->hash & cache->mask];
    while (*pp != e)
        pp = &(*pp)->hash_next;
    *pp = e->hash_next;
    lru_unlink(cache, e);
    cache->count--;
    entry_free(e);
}

void cache_close(cache_t *cache)
{
    for (cache_entry_t *e = cache->lru_head, *next; e; e = next) {
        next = e->lru_next;
        entry_free(e);
    }
    free(cache->buckets);
    memset(cache, 0, sizeof *cache);
}

cache_entry_t *cache_find(cache_t *cache, const char *subject)
{
    uint64_t h = hash_subject(subject);
    for (cache_entry_t *e = cache->buckets[h & cache->mask]; e; e = e->hash_next) {
        if (e->hash == h && strcmp(e->subject, subject) == 0) {
            if (cache->lru_head != e) {
                lru_unlink(cache, e);
                lru_push_front(cache, e);
            }
            return e;
        }
    }
    return NULL;
}

/* Doubles the bucket array; on failure the chains just get longer. */
static void grow(cache_t *cache)
{
    size_t n = (cache->mask + 1) * 2;
    cache_entry_t **buckets = calloc(n, sizeof *buckets);
    if (!buckets)
        return;
    for (size_t i = 0; i <= cache->mask; i++) {
        for (cache_entry_t *e = cache->buckets[i], *next; e; e = next) {
            next = e->hash_next;
            e->hash_next = buckets[e->hash & (n - 1)];
            buckets[e->hash & (n - 1)] = e;
        }
    }
    free(cache->buckets);
    cache->buckets = buckets;
    cache->mask = n - 1;
}

cache_entry_t *cache_add(cache_t *cache, const char *subject, int32_t partition, void *doc,
                         void (*free_doc)(void *doc))
{
    size_t len = strlen(subject);
    cache_entry_t *e = calloc(1, sizeof *e + len + 1);
    if (!e) {
        free_doc(doc);
        return NULL;
    }
    e->free_doc = free_doc;
    memcpy(e->subject, subject, len + 1);
    e->hash = hash_subject(subject);
    e->partition = partition;
    e->state = CACHE_LOADING;
    e->doc = doc;
    if (cache->count + 1 > cache->mask + 1)
        grow(cache);
    cache_entry_t **bucket = &cache->buckets[e->hash & cache->mask];
    e->hash_next = *bucket;
    *bucket = e;
    lru_push_front(cache, e);
    cache->count++;
    return e;
}

void cache_trim(cache_t *cache)
{
    cache_entry_t *e = cache->lru_tail;
    while (cache->count > cache->max_entries && e) {
        cache_entry_t *prev = e->lru_prev;
        if (e->pins == 0 && e->state == CACHE_READY) {
            entry_remove(cache, e);
            cache->evictions++;
        }
        e = prev;
    }
}

void cache_drop_partition(cache_t *cache, int32_t partition)
{
    for (cache_entry_t *e = cache->lru_head, *next; e; e = next) {
        next = e->lru_next;
        if (e->partition == partition)
            entry_remove(cache, e);
    }
}
