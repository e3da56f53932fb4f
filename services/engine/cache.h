/* cache.h - the engine's in-memory documents: one entry per customer (or agent) of the
 * partitions this process owns, found by subject, bounded by a least-recently-used policy.
 *
 * An entry is LOADING from its first touch until Redis answered (then READY), and pinned
 * while work refers to it (events waiting to be applied, a batch that has not serialized it
 * yet): only unpinned READY entries are evicted. Entries of a partition that moved to
 * another engine are dropped at once. The cache owns each entry's document and frees it with
 * the function given to cache_add. */
#ifndef INTEGRAL_ENGINE_CACHE_H
#define INTEGRAL_ENGINE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    CACHE_LOADING,
    CACHE_READY,
} cache_state_t;

typedef struct cache_entry {
    struct cache_entry *hash_next;
    struct cache_entry *lru_prev, *lru_next; /* most recently used at the head */
    uint64_t hash;
    int32_t partition;
    cache_state_t state;
    unsigned pins;    /* work that refers to this entry; > 0 means not evictable */
    uint64_t batch_id; /* the last batch this entry was written into (pipeline.c) */
    struct cache_entry *watch_prev, *watch_next; /* in the watch list (cache_watch) */
    bool watched;
    void *doc;        /* customer_t * or agent_t *, owned by the cache */
    void (*free_doc)(void *doc);
    char subject[];
} cache_entry_t;

typedef struct {
    cache_entry_t **buckets;
    size_t mask;
    size_t count;
    size_t max_entries;
    cache_entry_t *lru_head, *lru_tail;
    cache_entry_t *watch_head; /* entries marked by cache_watch, newest first */
    cache_entry_t *watch_cursor; /* the next entry of the pass under way, or NULL */
    size_t watched;
    uint64_t evictions;
} cache_t;

/* Sets up an empty cache holding at most max_entries unpinned entries (pinned ones may
 * exceed it for a while). Returns 0, or -1 out of memory. */
int cache_init(cache_t *cache, size_t max_entries);

/* Frees every entry and the table. */
void cache_close(cache_t *cache);

/* The entry of subject, or NULL. Marks it most recently used. */
cache_entry_t *cache_find(cache_t *cache, const char *subject);

/* Adds a LOADING entry for subject (which must not be present) with doc (taken, released
 * with free_doc). Returns it, or NULL out of memory (doc is then freed). */
cache_entry_t *cache_add(cache_t *cache, const char *subject, int32_t partition, void *doc,
                         void (*free_doc)(void *doc));

/* Evicts least recently used unpinned READY entries while over max_entries. */
void cache_trim(cache_t *cache);

/* Drops every entry of partition, pinned or not: the caller has dropped the work first. */
void cache_drop_partition(cache_t *cache, int32_t partition);

/* Adds e to (on) or removes it from (!on) the watch list: the entries a periodic scan
 * visits (customers waiting in a queue), so that it need not walk the whole cache. An entry
 * leaves the list when it is removed. */
void cache_watch(cache_t *cache, cache_entry_t *e, bool on);

/* A pass over the watch list that may be spread over many turns of the loop: start it, then
 * take entries with cache_watch_pass_next until it returns NULL. An entry that leaves the
 * list meanwhile is not returned; one added meanwhile waits for the next pass (they are
 * added at the head). Starting a pass ends the previous one. cache_watch_pass_start
 * returns how many entries the list holds. */
size_t cache_watch_pass_start(cache_t *cache);
cache_entry_t *cache_watch_pass_next(cache_t *cache);

#endif
