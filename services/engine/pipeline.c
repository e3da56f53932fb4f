/* pipeline.c - partitions, batches, the apply queue and the fenced writes. See pipeline.h.
 *
 * Lifetimes. A batch belongs to its partition's list until it completes, and is referenced
 * by the events of it still queued, by its deliveries in flight and by its write in flight.
 * When a partition is revoked or re-synced its batches are detached ("orphaned"): no offset
 * is stored for them any more, and each is freed when its last reference goes. A generation
 * number on the partition tells late claim replies that they are stale. */
#include "pipeline.h"

#include "deadletter.h"
#include "log.h"
#include "store.h"

#include <stdlib.h>
#include <string.h>

#define PARTITIONS_MAX 4096
#define CLAIM_RETRY_MS 500
#define FENCED_RETRY_MS 15000 /* let the group settle before taking a fenced partition again */
#define DOC_BYTES_DEFAULT (64 * 1024) /* largest document when max_doc_bytes is 0 */
#define DOC_BYTES_FIRST (16 * 1024)   /* room a document is first serialized into */
#define PUMP_BATCH 2000 /* events applied per loop iteration at most */
/* Group commit. A partition has at most one write in flight; the batches that become ready
 * meanwhile go out together in the next one, up to WRITE_MAX_BYTES (a larger single batch
 * still goes alone). The engine keeps at most WRITES_IN_FLIGHT_MAX_BYTES in flight to Redis
 * (one write may exceed it alone), so that Redis never has a deep backlog (loads queue behind
 * writes, and the command timeout runs from the time a command is queued). A write carries
 * each customer once however many of its batches changed it, so under a backlog a larger
 * write means fewer documents: 4 MiB instead of 1 wrote 0.60 instead of 0.76 documents per
 * event in the benchmark (tests/bench/README.md, session 10). Without a backlog writes stay
 * small: this bounds only how much a partition catches up in one write. */
#define WRITE_MAX_BYTES (4 * 1024 * 1024)
#define WRITES_IN_FLIGHT_MAX_BYTES (4 * 1024 * 1024)
#define WRITES_PENDING_MAX_BYTES (64 * 1024 * 1024) /* built, not sent: past it, hold the consumer */
#define WRITES_SPARE 128            /* recycled store writes (their buffers) */
#define WRITE_SPARE_MAX_CAPACITY (2 * 1024 * 1024)

enum { HOLD_LOADS, HOLD_WRITES, HOLD_REASONS }; /* why the consumer is held */

typedef enum {
    PARTITION_UNASSIGNED,
    PARTITION_CLAIMING,   /* assigned by the group; claim in Redis under way (or to retry) */
    PARTITION_RESYNCING,  /* a write failed: claim again, then rewind to the applied offset */
    PARTITION_ACTIVE,
} partition_state_t;

typedef struct partition {
    int32_t id;
    partition_state_t state;
    uint32_t generation;
    int64_t epoch;
    int64_t applied;         /* where processing resumes after a claim */
    bool claim_in_flight;
    uint64_t retry_at_ms;    /* next claim attempt (CLAIMING, RESYNCING) */
    bool assign_pending;     /* claimed for a deferred group assignment */
    batch_t *open;           /* collecting this loop iteration's messages */
    batch_t *head, *tail;    /* sealed batches, oldest first */
    struct flight *flight;   /* the partition's write in flight (NULL: none) */
    bool waiting_bytes;      /* in the pipeline's queue of writes waiting for room */
    bool said_log_behind;    /* since the claim: warn_if_log_behind logged */
} partition_t;

/* One write in flight: the consecutive batches of one partition it covers, oldest first. */
typedef struct flight {
    pipeline_t *pipeline;
    size_t bytes;
    size_t n;
    batch_t *batches[];
} flight_t;

struct batch {
    pipeline_t *pipeline;
    partition_t *partition; /* NULL once orphaned */
    uint64_t id;
    int64_t last_offset;
    unsigned queued;        /* its events still in the apply queue */
    unsigned deliveries;    /* alerts and dead letters not yet acknowledged */
    bool sealed;
    bool write_in_flight, written;
    store_write_t *write;   /* built when sealed and nothing is queued */
    size_t write_bytes;     /* its size, counted in the pipeline's bytes_pending */
    store_write_t *queue_ops; /* live-queue operations raised so far: becomes the write */
    cache_entry_t **dirty;  /* documents changed by this batch (pinned) */
    size_t n_dirty, cap_dirty;
    batch_t *next;
};

typedef struct item {
    struct item *next;
    batch_t *batch;
    cache_entry_t *entry;
    const doc_ops_t *ops;
    int64_t offset;
    int64_t produced_ms; /* the message's Kafka timestamp */
    uint64_t received_ns; /* uv_hrtime when the loop took it from the consumer's queue */
    event_t event;
} item_t;

typedef enum { DELIVERY_DEADLETTER, DELIVERY_ALERT } delivery_kind_t;

typedef struct delivery {
    delivery_kind_t kind;
    batch_t *batch;
    deadletter_t *deadletter;     /* dead letter: a copy of the message, with why */
    const char *topic;            /* alert or notice: its topic (configuration, kept) */
    char *key, *value;
    size_t key_len, value_len;
    int64_t produced_ms;          /* alert: Kafka timestamp of the event that raised it */
    bool retrying;                /* a send was refused (logged once) */
    struct delivery *next_retry;
} delivery_t;

struct pipeline {
    pipeline_options_t opts;
    kafka_consumer_t *consumer;
    partition_t *partitions[PARTITIONS_MAX];
    cache_t cache;
    item_t *queue_head, *queue_tail;
    size_t queued;
    item_t *free_items;
    size_t n_free_items;
    partition_t *open_parts[PARTITIONS_MAX]; /* partitions with an open batch, to seal */
    int n_open;
    uint64_t next_batch_id;
    size_t batches_live;
    size_t deliveries_live;
    delivery_t *retry_head;
    bool held;
    int held_reason;          /* HOLD_LOADS or HOLD_WRITES: why, when it began */
    uint64_t held_since_ns;   /* uv_hrtime when it began */
    double held_s[HOLD_REASONS]; /* time held by reason, finished holds */
    bool joined; /* the group has given this engine its first assignment (possibly empty) */
    uv_check_t seal_check;
    uv_idle_t pump_idle;
    uv_timer_t retry_timer;
    int open_handles;
    void (*close_cb)(void *data);
    void *close_data;
    size_t max_doc_bytes;
    size_t bytes_in_flight;                 /* of the writes sent and not answered */
    size_t bytes_pending;                   /* of the writes built and not sent */
    int32_t waiting[PARTITIONS_MAX];        /* partitions whose write waits for room (FIFO) */
    int wait_head, n_waiting;
    partition_t *serving;                   /* the waiting partition being served */
    bool serving_blocked;                   /* ... and it still found no room */
    store_write_t *spare_writes[WRITES_SPARE];
    store_writer_t *writer; /* the fenced transactions to Redis */
    int n_spare_writes;
    /* metrics */
    metrics_counter_t *events_by_type[EVENT_TYPE_COUNT];
    metrics_counter_t *deadlettered[EVENT_REASON_COUNT];
    metrics_counter_t *duplicates, *skipped_applied, *writes, *writes_failed, *writes_fenced;
    metrics_counter_t *transactions, *transaction_aborts; /* the writer's, synced on replies */
    store_writer_stats_t writer_seen;
    metrics_counter_t *docs_written, *loads, *load_errors, *apply_errors;
    metrics_histogram_t *latency, *alert_latency, *alert_build_latency;
    int64_t applying_produced_ms; /* of the event being applied: alerts it raises inherit it */
    uint64_t applying_received_ns; /* ... and this */
};

static void pump(pipeline_t *p);
static void on_pump_idle(uv_idle_t *idle);
static void batch_progress(batch_t *b);
static void partition_progress(pipeline_t *p, partition_t *part);
static void partition_resync(pipeline_t *p, partition_t *part, const char *why);

/* ------------------------------------------------------------------------------------------
 * Small helpers
 * ---------------------------------------------------------------------------------------- */

static uint64_t now_ms(const pipeline_t *p)
{
    return uv_now(p->opts.loop);
}

static int64_t wall_ms(void)
{
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static partition_t *partition_get(pipeline_t *p, int32_t id)
{
    if (id < 0 || id >= PARTITIONS_MAX)
        return NULL;
    if (!p->partitions[id]) {
        p->partitions[id] = calloc(1, sizeof(partition_t));
        if (p->partitions[id])
            p->partitions[id]->id = id;
    }
    return p->partitions[id];
}

static item_t *item_alloc(pipeline_t *p)
{
    item_t *it = p->free_items;
    if (it) {
        p->free_items = it->next;
        p->n_free_items--;
        return it;
    }
    return malloc(sizeof *it);
}

static void item_release(pipeline_t *p, item_t *it)
{
    /* Freed items are kept up to the queue's bound (engine.max_queued_events, past which the
     * consumer is held), which is also the most that can be alive: under a backlog the
     * queue fills again and again, and each item past a smaller spare list was freed and
     * malloc'ed again (2.3 KB, its event inline). */
    if (p->n_free_items >= p->opts.max_queued_events) {
        free(it);
        return;
    }
    it->next = p->free_items;
    p->free_items = it;
    p->n_free_items++;
}

/* The consumer is held while too many events wait for their documents to load, or too many
 * bytes of writes wait to be sent: the time held, by reason, tells an operator (and the
 * benchmark) whether the engine waits for Redis. */
static void update_hold(pipeline_t *p)
{
    bool by_writes = p->bytes_pending > WRITES_PENDING_MAX_BYTES;
    bool hold = by_writes || p->queued >= p->opts.max_queued_events;
    if (hold != p->held && p->consumer) {
        uint64_t now = uv_hrtime();
        if (hold) {
            p->held_reason = by_writes ? HOLD_WRITES : HOLD_LOADS;
            p->held_since_ns = now;
        } else {
            p->held_s[p->held_reason] += (double)(now - p->held_since_ns) / 1e9;
        }
        p->held = hold;
        kafka_consumer_hold(p->consumer, hold);
    }
}

/* ------------------------------------------------------------------------------------------
 * Batches
 * ---------------------------------------------------------------------------------------- */

static batch_t *batch_new(pipeline_t *p, partition_t *part)
{
    batch_t *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->pipeline = p;
    b->partition = part;
    b->id = ++p->next_batch_id;
    b->last_offset = -1;
    p->batches_live++;
    if (part->tail)
        part->tail->next = b;
    else
        part->head = b;
    part->tail = b;
    return b;
}

static void batch_unpin_dirty(batch_t *b)
{
    for (size_t i = 0; i < b->n_dirty; i++)
        b->dirty[i]->pins--;
    free(b->dirty);
    b->dirty = NULL;
    b->n_dirty = b->cap_dirty = 0;
}

static store_write_t *write_alloc(pipeline_t *p, partition_t *part, int64_t next_offset)
{
    if (p->n_spare_writes == 0)
        return store_write_new(p->opts.topic, part->id, part->epoch, next_offset);
    store_write_t *w = p->spare_writes[--p->n_spare_writes];
    store_write_reset(w, p->opts.topic, part->id, part->epoch, next_offset);
    return w;
}

static void write_recycle(pipeline_t *p, store_write_t *w)
{
    if (!w)
        return;
    if (p->n_spare_writes < WRITES_SPARE && store_write_capacity(w) <= WRITE_SPARE_MAX_CAPACITY)
        p->spare_writes[p->n_spare_writes++] = w;
    else
        store_write_free(w);
}

/* The batch's write leaves it (sent or dropped): no longer pending. */
static store_write_t *batch_take_write(batch_t *b)
{
    store_write_t *w = b->write;
    b->write = NULL;
    b->pipeline->bytes_pending -= b->write_bytes;
    b->write_bytes = 0;
    return w;
}

static void batch_free(batch_t *b)
{
    write_recycle(b->pipeline, batch_take_write(b));
    batch_unpin_dirty(b);
    write_recycle(b->pipeline, b->queue_ops);
    b->pipeline->batches_live--;
    free(b);
}

/* A detached batch is freed as soon as nothing refers to it any more. */
static void batch_release_if_orphan(batch_t *b)
{
    if (!b->partition && b->queued == 0 && b->deliveries == 0 && !b->write_in_flight)
        batch_free(b);
}

static int batch_mark_dirty(batch_t *b, cache_entry_t *e)
{
    if (e->batch_id == b->id)
        return 0;
    if (b->n_dirty == b->cap_dirty) {
        size_t cap = b->cap_dirty ? b->cap_dirty * 2 : 16;
        cache_entry_t **d = realloc(b->dirty, cap * sizeof *d);
        if (!d)
            return -1;
        b->dirty = d;
        b->cap_dirty = cap;
    }
    b->dirty[b->n_dirty++] = e;
    e->batch_id = b->id;
    e->pins++;
    return 0;
}

/* Detaches every batch of the partition. Queued events of the partition are dropped first
 * by the caller, so an orphan never builds a write; one already built still goes out (it is
 * complete and fenced, so it is either right or refused). */
static void partition_orphan_batches(partition_t *part)
{
    batch_t *b = part->head;
    part->head = part->tail = part->open = NULL;
    part->flight = NULL; /* it still completes: its batches stay alive until then */
    while (b) {
        batch_t *next = b->next;
        b->partition = NULL;
        b->next = NULL;
        batch_unpin_dirty(b); /* its documents go with the partition */
        batch_release_if_orphan(b);
        b = next;
    }
}

/* Serializes every document the batch changed into its write: the documents as they are
 * now, which is as of the batch's last event (later events wait behind it in the queue).
 * Each is serialized straight into the write's buffer. The live-queue operations raised by
 * the batch are already in b->queue_ops, which becomes the write (the command puts the
 * documents first). */
static int batch_build_write(pipeline_t *p, batch_t *b)
{
    partition_t *part = b->partition;
    store_write_t *w = b->queue_ops;
    b->queue_ops = NULL;
    if (w)
        store_write_set_offset(w, b->last_offset + 1);
    else if (!(w = write_alloc(p, part, b->last_offset + 1)))
        return -1;
    b->write = w;
    for (size_t i = 0; i < b->n_dirty; i++) {
        cache_entry_t *e = b->dirty[i];
        const doc_ops_t *ops = e->subject[0] == 'a' && strncmp(e->subject, "agent:", 6) == 0
                                   ? p->opts.agent_ops
                                   : p->opts.customer_ops;
        char key[STORE_KEY_MAX];
        size_t len = 0, room = DOC_BYTES_FIRST < p->max_doc_bytes ? DOC_BYTES_FIRST
                                                                  : p->max_doc_bytes;
        char *at = NULL;
        int rc = ops->key(key, sizeof key, e->subject);
        if (rc >= 0) {
            at = store_write_begin(w, key, room);
            rc = at ? ops->serialize(e->doc, at, room, &len, p->opts.doc_ctx) : -1;
        }
        if (rc < 0 && at && room < p->max_doc_bytes) { /* a large one: all the room allowed */
            room = p->max_doc_bytes;
            at = store_write_begin(w, key, room);
            rc = at ? ops->serialize(e->doc, at, room, &len, p->opts.doc_ctx) : -1;
        }
        if (rc < 0) {
            log_error("engine: cannot serialize %s %s", ops->kind, e->subject);
            return -1;
        }
        store_write_commit(w, len);
    }
    b->write_bytes = store_write_bytes(w);
    p->bytes_pending += b->write_bytes;
    batch_unpin_dirty(b);
    return 0;
}

static void on_write_done(void *data, int status, const char *reason);

/* Queues the partition for room among the writes in flight (once). The one being served
 * from the head of the queue stays there. */
static void wait_for_room(pipeline_t *p, partition_t *part)
{
    if (part == p->serving) {
        p->serving_blocked = true;
        return;
    }
    if (part->waiting_bytes)
        return;
    part->waiting_bytes = true;
    p->waiting[(p->wait_head + p->n_waiting) % PARTITIONS_MAX] = part->id;
    p->n_waiting++;
}

/* Group commit: unless the partition already has a write in flight, sends the ready batches
 * after its last written one - consecutive, each with its write built and its deliveries
 * acknowledged - as one write. Writes therefore reach Redis in batch order, one at a time per
 * partition, and a batch's applied offset never before an earlier batch's documents. */
static void partition_send_writes(pipeline_t *p, partition_t *part)
{
    if (part->flight)
        return;
    batch_t *first = part->head;
    while (first && first != part->open && first->written)
        first = first->next;
    if (!first || first == part->open || !first->write || first->deliveries > 0 ||
        first->write_in_flight)
        return; /* nothing ready */
    if (p->n_waiting > 0 && part != p->serving) {
        wait_for_room(p, part); /* behind the others (without walking its batches) */
        return;
    }
    size_t n = 0, bytes = 0;
    for (batch_t *b = first; b && b != part->open; b = b->next) {
        if (!b->write || b->deliveries > 0 || b->written || b->write_in_flight)
            break;
        size_t size = store_write_bytes(b->write);
        if (n > 0 && bytes + size > WRITE_MAX_BYTES)
            break;
        n++;
        bytes += size;
    }
    /* Room among the writes in flight, first come first served. */
    if (p->bytes_in_flight > 0 && p->bytes_in_flight + bytes > WRITES_IN_FLIGHT_MAX_BYTES) {
        wait_for_room(p, part);
        return;
    }
    flight_t *f = malloc(sizeof *f + n * sizeof f->batches[0]);
    store_write_t **ws = malloc(n * sizeof *ws);
    if (!f || !ws) {
        free(f);
        free(ws);
        partition_resync(p, part, "out of memory");
        return;
    }
    *f = (flight_t){.pipeline = p, .bytes = bytes, .n = n};
    batch_t *b = first;
    for (size_t i = 0; i < n; i++, b = b->next) {
        f->batches[i] = b;
        ws[i] = b->write;
    }
    size_t docs = 0;
    int rc = store_write_send_many(p->writer, ws, n, on_write_done, f, &docs);
    for (size_t i = 0; i < n; i++) {
        write_recycle(p, batch_take_write(f->batches[i]));
        f->batches[i]->write_in_flight = rc == 0;
    }
    free(ws);
    update_hold(p);
    if (rc != 0) {
        free(f);
        partition_resync(p, part, "Redis refused the write");
        return;
    }
    part->flight = f;
    p->bytes_in_flight += bytes;
    metrics_counter_inc(p->writes);
    metrics_counter_add(p->docs_written, docs);
}

/* Completes the finished batches at the head, in order, and stores the last one's offset in
 * Kafka: everything up to it is in Redis and every delivery of it acknowledged. */
static void partition_complete(pipeline_t *p, partition_t *part)
{
    int64_t last = -1;
    while (part->head && part->head->written && part->head->deliveries == 0 &&
           part->head != part->open) {
        batch_t *done = part->head;
        part->head = done->next;
        if (!part->head)
            part->tail = NULL;
        last = done->last_offset;
        batch_free(done);
    }
    if (last < 0)
        return;
    rd_kafka_resp_err_t err = p->consumer
                                  ? kafka_consumer_done(p->consumer, p->opts.topic, part->id, last)
                                  : RD_KAFKA_RESP_ERR__STATE;
    if (err)
        log_warn("engine: cannot store offset %lld of partition %d: %s", (long long)last,
                 (int)part->id, rd_kafka_err2str(err));
}

static void partition_progress(pipeline_t *p, partition_t *part)
{
    uint32_t generation = part->generation;
    partition_send_writes(p, part);
    if (part->generation != generation)
        return; /* the send failed and re-synced the partition: its batches are gone */
    partition_complete(p, part);
}

/* Writes that waited for room go out as writes in flight are answered, oldest wait first:
 * the head of the queue stays there until it found room. The queue is never left waiting
 * with nothing in flight: a partition is queued only when there is no room (something is in
 * flight, and its answer comes here) or behind others. */
static void send_waiting(pipeline_t *p)
{
    while (p->n_waiting > 0) {
        partition_t *part = p->partitions[p->waiting[p->wait_head]];
        if (part) {
            part->waiting_bytes = false;
            p->serving = part;
            p->serving_blocked = false;
            partition_progress(p, part);
            p->serving = NULL;
            if (p->serving_blocked) {
                part->waiting_bytes = true; /* still at the head */
                return;
            }
        }
        p->wait_head = (p->wait_head + 1) % PARTITIONS_MAX;
        p->n_waiting--;
    }
}

/* Moves a batch forward: builds its write once all its events are applied, then lets its
 * partition send what is ready and complete what is done. */
static void batch_progress(batch_t *b)
{
    pipeline_t *p = b->pipeline;
    partition_t *part = b->partition;
    if (!part) {
        batch_release_if_orphan(b);
        return;
    }
    if (b->sealed && b->queued == 0 && !b->write && !b->write_in_flight && !b->written &&
        b->last_offset >= 0) {
        if (batch_build_write(p, b) < 0) {
            partition_resync(p, part, "cannot build a batch write");
            return;
        }
    }
    partition_progress(p, part);
}

/* The writer's counters into the metrics (they only grow). */
static void sync_writer_metrics(pipeline_t *p)
{
    const store_writer_stats_t *st = store_writer_stats(p->writer);
    metrics_counter_add(p->transactions, st->transactions - p->writer_seen.transactions);
    metrics_counter_add(p->transaction_aborts, st->aborted - p->writer_seen.aborted);
    p->writer_seen = *st;
}

static void on_write_done(void *data, int status, const char *reason)
{
    flight_t *f = data;
    pipeline_t *p = f->pipeline;
    sync_writer_metrics(p);
    p->bytes_in_flight -= f->bytes;
    /* A flight's batches are detached together (partition_orphan_batches). They stay "in
     * flight" until the end: a re-sync below orphans them, and must not free them. */
    partition_t *part = f->batches[f->n - 1]->partition;
    if (part && part->flight == f)
        part->flight = NULL;
    if (part && status == STORE_OK) {
        for (size_t i = 0; i < f->n; i++) {
            f->batches[i]->write_in_flight = false;
            f->batches[i]->written = true;
        }
        free(f);
        partition_progress(p, part);
        send_waiting(p);
        return;
    }
    if (part && status == STORE_FENCED) {
        metrics_counter_inc(p->writes_fenced);
        log_error("engine: partition %d: write refused (%s); another engine owns it: pausing",
                  (int)part->id, reason);
        partition_resync(p, part, NULL);
        part->retry_at_ms = now_ms(p) + FENCED_RETRY_MS;
    } else if (part) {
        metrics_counter_inc(p->writes_failed);
        partition_resync(p, part, reason);
    }
    for (size_t i = 0; i < f->n; i++) {
        f->batches[i]->write_in_flight = false;
        batch_release_if_orphan(f->batches[i]);
    }
    free(f);
    send_waiting(p);
}

/* ------------------------------------------------------------------------------------------
 * Partitions: claim, assign, re-sync, revoke
 * ---------------------------------------------------------------------------------------- */

/* Drops queued events of one partition, in place. */
static void queue_drop_partition(pipeline_t *p, int32_t partition)
{
    item_t **pp = &p->queue_head;
    p->queue_tail = NULL;
    while (*pp) {
        item_t *it = *pp;
        if (it->entry->partition == partition) {
            *pp = it->next;
            it->entry->pins--;
            it->batch->queued--;
            p->queued--;
            item_release(p, it);
        } else {
            p->queue_tail = it;
            pp = &it->next;
        }
    }
    update_hold(p);
}

/* Forgets everything of the partition this process held: queued events, batches (orphaned)
 * and documents. */
static void partition_forget(pipeline_t *p, partition_t *part)
{
    queue_drop_partition(p, part->id);
    partition_orphan_batches(part);
    cache_drop_partition(&p->cache, part->id);
    part->generation++;
}

static void claim_start(pipeline_t *p, partition_t *part);

/* Starts over from what Redis holds: pause, forget, claim, rewind (see on_claimed). why NULL
 * means no log line (the caller logged). */
static void partition_resync(pipeline_t *p, partition_t *part, const char *why)
{
    if (!part || part->state == PARTITION_UNASSIGNED)
        return;
    if (why)
        log_warn("engine: partition %d: %s; re-reading it from Redis's applied offset",
                 (int)part->id, why);
    if (p->consumer)
        kafka_consumer_pause(p->consumer, p->opts.topic, part->id);
    partition_forget(p, part);
    part->state = PARTITION_RESYNCING;
    part->retry_at_ms = now_ms(p) + CLAIM_RETRY_MS;
    part->claim_in_flight = false;
}

void pipeline_resync_all(pipeline_t *p, const char *why)
{
    int n = 0;
    for (int32_t id = 0; id < PARTITIONS_MAX; id++) {
        partition_t *part = p->partitions[id];
        if (!part || part->state == PARTITION_UNASSIGNED)
            continue;
        partition_resync(p, part, NULL);
        n++;
    }
    if (n)
        log_warn("engine: %s; re-reading %d partition(s) from Redis's applied offsets", why, n);
}

typedef struct {
    pipeline_t *pipeline;
    int32_t partition;
    uint32_t generation;
} claim_ctx_t;

static void assign_claimed(pipeline_t *p);

static void on_claimed(void *data, int status, int64_t epoch, int64_t applied,
                       const char *reason)
{
    claim_ctx_t ctx = *(claim_ctx_t *)data;
    free(data);
    pipeline_t *p = ctx.pipeline;
    partition_t *part = p->partitions[ctx.partition];
    if (!part || part->generation != ctx.generation || part->state == PARTITION_UNASSIGNED)
        return; /* revoked or restarted meanwhile */
    part->claim_in_flight = false;
    if (status != STORE_OK) {
        log_warn("engine: partition %d: claim failed (%s); retrying", (int)part->id,
                 reason ? reason : "?");
        part->retry_at_ms = now_ms(p) + CLAIM_RETRY_MS;
        return;
    }
    part->epoch = epoch;
    part->applied = applied;
    part->said_log_behind = false;
    if (applied < 0)
        log_info("engine: partition %d claimed (epoch %lld), nothing applied yet: from the "
                 "beginning",
                 (int)part->id, (long long)epoch);
    else
        log_info("engine: partition %d claimed (epoch %lld), resuming at offset %lld",
                 (int)part->id, (long long)epoch, (long long)applied);
    if (!p->consumer)
        return; /* shutting down */
    if (part->state == PARTITION_RESYNCING) {
        part->state = PARTITION_ACTIVE;
        kafka_consumer_seek(p->consumer, p->opts.topic, part->id,
                            applied < 0 ? RD_KAFKA_OFFSET_BEGINNING : applied);
        kafka_consumer_resume(p->consumer, p->opts.topic, part->id);
    } else {
        part->assign_pending = true;
        assign_claimed(p);
    }
}

static void claim_start(pipeline_t *p, partition_t *part)
{
    claim_ctx_t *ctx = malloc(sizeof *ctx);
    if (!ctx)
        return;
    *ctx = (claim_ctx_t){p, part->id, part->generation};
    part->claim_in_flight = true;
    if (store_claim(p->opts.redis, p->opts.topic, part->id, on_claimed, ctx) != 0) {
        free(ctx);
        part->claim_in_flight = false;
        part->retry_at_ms = now_ms(p) + CLAIM_RETRY_MS;
    }
}

/* Assigns, in one call, the partitions of the deferred group assignment once every one of
 * them is claimed: each at Redis's applied offset. */
static void assign_claimed(pipeline_t *p)
{
    int waiting = 0, ready = 0;
    for (int i = 0; i < PARTITIONS_MAX; i++) {
        partition_t *part = p->partitions[i];
        if (part && part->state == PARTITION_CLAIMING)
            part->assign_pending ? ready++ : waiting++;
    }
    if (waiting > 0 || ready == 0 || !p->consumer)
        return;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(ready);
    for (int i = 0; i < PARTITIONS_MAX; i++) {
        partition_t *part = p->partitions[i];
        if (!part || part->state != PARTITION_CLAIMING)
            continue;
        rd_kafka_topic_partition_list_add(list, p->opts.topic, part->id)->offset =
            part->applied < 0 ? RD_KAFKA_OFFSET_BEGINNING : part->applied;
        part->state = PARTITION_ACTIVE;
        part->assign_pending = false;
    }
    kafka_consumer_assign(p->consumer, list);
    rd_kafka_topic_partition_list_destroy(list);
}

int pipeline_on_assign(kafka_consumer_t *c, const rd_kafka_topic_partition_list_t *parts,
                       void *data)
{
    pipeline_t *p = data;
    p->joined = true;
    if (parts->cnt == 0)
        return 0; /* nothing to claim; the group still waits for the (empty) assign call */
    for (int i = 0; i < parts->cnt; i++) {
        partition_t *part = partition_get(p, parts->elems[i].partition);
        if (!part) {
            log_error("engine: partition %d is beyond %d partitions", parts->elems[i].partition,
                      PARTITIONS_MAX);
            continue;
        }
        part->state = PARTITION_CLAIMING;
        part->generation++;
        part->assign_pending = false;
        claim_start(p, part);
    }
    return KAFKA_ASSIGN_LATER;
}

void pipeline_on_revoke(kafka_consumer_t *c, const rd_kafka_topic_partition_list_t *parts,
                        void *data)
{
    pipeline_t *p = data;
    pipeline_flush(p);
    for (int i = 0; i < parts->cnt; i++) {
        int32_t id = parts->elems[i].partition;
        partition_t *part = id >= 0 && id < PARTITIONS_MAX ? p->partitions[id] : NULL;
        if (!part)
            continue;
        partition_forget(p, part);
        part->state = PARTITION_UNASSIGNED;
    }
    assign_claimed(p); /* a deferred assignment may now be complete */
}

/* ------------------------------------------------------------------------------------------
 * Messages: parse, dead-letter, queue, apply
 * ---------------------------------------------------------------------------------------- */

static batch_t *open_batch(pipeline_t *p, partition_t *part)
{
    if (!part->open && (part->open = batch_new(p, part)) != NULL)
        p->open_parts[p->n_open++] = part;
    return part->open;
}

static delivery_t *delivery_new(pipeline_t *p, delivery_kind_t kind, batch_t *b)
{
    delivery_t *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->kind = kind;
    d->batch = b;
    if (b)
        b->deliveries++;
    p->deliveries_live++;
    return d;
}

static void delivery_free(pipeline_t *p, delivery_t *d)
{
    deadletter_free(d->deadletter);
    free(d->key);
    free(d->value);
    free(d);
    p->deliveries_live--;
}

static rd_kafka_resp_err_t delivery_send(pipeline_t *p, delivery_t *d)
{
    if (!p->opts.producer)
        return RD_KAFKA_RESP_ERR__DESTROY; /* shutting down: kept for the retry list */
    if (d->kind == DELIVERY_DEADLETTER)
        return deadletter_send(p->opts.producer, p->opts.deadletter_topic, d->deadletter, d);
    return kafka_producer_send(p->opts.producer, d->topic, RD_KAFKA_PARTITION_UA,
                               d->key, d->key_len, d->value, d->value_len, NULL, d);
}

/* A send refused now (queue full, producer being replaced) is retried on the timer. */
static void delivery_send_or_retry(pipeline_t *p, delivery_t *d)
{
    rd_kafka_resp_err_t err = delivery_send(p, d);
    if (err) {
        if (!d->retrying && p->opts.producer)
            log_warn("engine: cannot send %s now (%s); retrying",
                     d->kind == DELIVERY_ALERT ? "an alert" : "a dead letter",
                     rd_kafka_err2str(err));
        d->retrying = true;
        d->next_retry = p->retry_head;
        p->retry_head = d;
    }
}

/* Sends m (taken: freed here) to the dead-letter topic as part of batch b. */
static void deadletter(pipeline_t *p, batch_t *b, rd_kafka_message_t *m,
                       const event_error_t *err)
{
    if (err->reason > EVENT_REASON_NONE && err->reason < EVENT_REASON_COUNT)
        metrics_counter_inc(p->deadlettered[err->reason]);
    deadletter_t *copy = deadletter_new(m, event_reason_name(err->reason), err->detail);
    rd_kafka_message_destroy(m);
    delivery_t *d = copy ? delivery_new(p, DELIVERY_DEADLETTER, b) : NULL;
    if (!d) {
        deadletter_free(copy);
        partition_resync(p, b->partition, "out of memory");
        return;
    }
    d->deadletter = copy;
    delivery_send_or_retry(p, d);
}

int pipeline_send_alert(pipeline_t *p, batch_t *b, const char *key, const char *value,
                        size_t len)
{
    return pipeline_publish(p, b, p->opts.alerts_topic, key, value, len);
}

int pipeline_queue_op(batch_t *b, store_op_kind_t op, int64_t time_ms, const char *id,
                      const char *queue, const char *info, size_t info_len)
{
    partition_t *part = b->partition;
    if (!part)
        return -1;
    if (!b->queue_ops && !(b->queue_ops = write_alloc(b->pipeline, part, -1)))
        return -1;
    return store_write_add_op(b->queue_ops, op, time_ms, id, queue, info, info_len);
}

int pipeline_publish(pipeline_t *p, batch_t *b, const char *topic, const char *key,
                     const char *value, size_t len)
{
    delivery_t *d = delivery_new(p, DELIVERY_ALERT, b);
    if (!d)
        return -1;
    d->key_len = strlen(key);
    d->key = malloc(d->key_len + 1);
    d->value = malloc(len);
    if (!d->key || !d->value) {
        if (b)
            b->deliveries--;
        delivery_free(p, d);
        return -1;
    }
    d->topic = topic;
    memcpy(d->key, key, d->key_len + 1);
    memcpy(d->value, value, len);
    d->value_len = len;
    d->produced_ms = b ? p->applying_produced_ms : 0;
    if (b && topic == p->opts.alerts_topic && p->applying_received_ns > 0)
        metrics_histogram_observe(p->alert_build_latency,
                                  (double)(uv_hrtime() - p->applying_received_ns) / 1e9);
    delivery_send_or_retry(p, d);
    return 0;
}

void pipeline_on_delivery(kafka_producer_t *prod, rd_kafka_resp_err_t err, void *opaque,
                          void *data)
{
    pipeline_t *p = data;
    delivery_t *d = opaque;
    batch_t *b = d->batch;
    if (err && (!b || b->partition)) {
        /* Not acknowledged: send again (same key and value, so the same alert id). Kafka's
         * own retries are exhausted by now, or the producer was replaced. An orphaned batch's
         * alerts are not retried: its events are replayed by the partition's next owner. */
        delivery_send_or_retry(p, d);
        return;
    }
    if (d->kind == DELIVERY_ALERT && d->produced_ms > 0 && d->topic == p->opts.alerts_topic)
        metrics_histogram_observe(p->alert_latency,
                                  (double)(wall_ms() - d->produced_ms) / 1000.0);
    delivery_free(p, d);
    if (b) {
        b->deliveries--;
        batch_progress(b);
    }
}

static const doc_ops_t *entry_ops(const pipeline_t *p, const cache_entry_t *e)
{
    return strncmp(e->subject, "agent:", 6) == 0 ? p->opts.agent_ops : p->opts.customer_ops;
}

/* Keeps e in the cache's watch list while its document asks for the periodic scan. */
static void entry_update_watch(pipeline_t *p, cache_entry_t *e, const doc_ops_t *ops)
{
    cache_watch(&p->cache, e, ops->timed && e->state == CACHE_READY && ops->timed(e->doc));
}

size_t pipeline_timed_pass_start(pipeline_t *p)
{
    return cache_watch_pass_start(&p->cache);
}

bool pipeline_timed_pass_step(pipeline_t *p, size_t max, pipeline_each_cb cb, void *data)
{
    for (size_t i = 0; i < max; i++) {
        cache_entry_t *e = cache_watch_pass_next(&p->cache);
        if (!e)
            return false;
        if (e->state == CACHE_READY)
            cb(entry_ops(p, e), e->doc, data);
    }
    return p->cache.watch_cursor != NULL;
}

void pipeline_each_document(pipeline_t *p, pipeline_each_cb cb, void *data)
{
    for (cache_entry_t *e = p->cache.lru_head; e; e = e->lru_next) {
        if (e->state != CACHE_READY)
            continue;
        bool agent = strncmp(e->subject, "agent:", 6) == 0;
        cb(agent ? p->opts.agent_ops : p->opts.customer_ops, e->doc, data);
    }
}

static void on_loaded(void *data, int status, const char *value, size_t len);

typedef struct {
    pipeline_t *pipeline;
    cache_entry_t *entry;
    uint32_t generation;
    int32_t partition;
    char subject[EVENT_SUBJECT_MAX + 1];
} load_ctx_t;

/* The entry of the event's subject, created (LOADING, load sent) on first touch. */
static cache_entry_t *entry_for(pipeline_t *p, partition_t *part, const event_t *ev,
                                const doc_ops_t *ops)
{
    cache_entry_t *e = cache_find(&p->cache, ev->subject);
    if (e)
        return e;
    void *doc = ops->create(ev->subject, p->opts.doc_ctx);
    if (!doc || !(e = cache_add(&p->cache, ev->subject, part->id, doc, ops->destroy)))
        return NULL;
    load_ctx_t *ctx = malloc(sizeof *ctx);
    char key[STORE_KEY_MAX];
    if (!ctx || ops->key(key, sizeof key, ev->subject) < 0) {
        free(ctx);
        return NULL;
    }
    *ctx = (load_ctx_t){p, e, part->generation, part->id, ""};
    snprintf(ctx->subject, sizeof ctx->subject, "%s", ev->subject);
    metrics_counter_inc(p->loads);
    e->pins++; /* the load refers to it */
    if (store_load(p->opts.redis, key, on_loaded, ctx) != 0) {
        e->pins--;
        free(ctx);
        return NULL;
    }
    return e;
}

static void on_loaded(void *data, int status, const char *value, size_t len)
{
    load_ctx_t ctx = *(load_ctx_t *)data;
    free(data);
    pipeline_t *p = ctx.pipeline;
    partition_t *part = p->partitions[ctx.partition];
    if (!part || part->generation != ctx.generation)
        return; /* the entry was dropped with its partition */
    cache_entry_t *e = ctx.entry;
    e->pins--;
    if (status != STORE_OK) {
        metrics_counter_inc(p->load_errors);
        partition_resync(p, part, "cannot load a document from Redis");
        return;
    }
    const doc_ops_t *ops = strncmp(ctx.subject, "agent:", 6) == 0 ? p->opts.agent_ops
                                                                   : p->opts.customer_ops;
    char err[256];
    if (value && ops->load(e->doc, value, len, err, sizeof err) < 0) {
        /* What Redis holds is not ours to guess at: stop this partition loudly rather than
         * overwrite it. */
        metrics_counter_inc(p->load_errors);
        log_error("engine: %s %s: stored document unreadable: %s", ops->kind, ctx.subject, err);
        partition_resync(p, part, "unreadable document");
        return;
    }
    e->state = CACHE_READY;
    entry_update_watch(p, e, ops);
    pump(p);
}

static void apply_item(pipeline_t *p, item_t *it)
{
    batch_t *b = it->batch;
    int rc = it->ops->apply(it->entry->doc, &it->event, it->offset, p->opts.doc_ctx);
    if (rc == DOC_DUPLICATE) {
        metrics_counter_inc(p->duplicates);
    } else if (rc == DOC_NO_MEMORY) {
        partition_resync(p, b->partition, "out of memory");
    } else if (rc < 0) {
        metrics_counter_inc(p->apply_errors);
        log_error("engine: %s %s: cannot apply event %s (offset %lld)", it->ops->kind,
                  it->entry->subject, it->event.id, (long long)it->offset);
    } else if (batch_mark_dirty(b, it->entry) < 0) {
        partition_resync(p, b->partition, "out of memory");
        return;
    } else {
        entry_update_watch(p, it->entry, it->ops);
        bool late = wall_ms() - it->event.time_ms > p->opts.lateness_ms;
        if (p->opts.on_applied)
            p->opts.on_applied(p, b, it->ops, it->entry->doc, &it->event, late, p->opts.data);
    }
}

/* Applies queued events from the head while their documents are loaded: at most
 * PUMP_BATCH per call, the rest on the next loop iteration (an idle handle), so that a long
 * backlog (every event waiting behind one load) does not hold the loop for seconds: the Redis
 * watchdog, timers and I/O must keep running. */
static void pump(pipeline_t *p)
{
    int budget = PUMP_BATCH;
    while (p->queue_head && p->queue_head->entry->state == CACHE_READY && budget-- > 0) {
        item_t *it = p->queue_head;
        p->queue_head = it->next;
        if (!p->queue_head)
            p->queue_tail = NULL;
        p->queued--;
        batch_t *b = it->batch;
        partition_t *part = b->partition;
        uint32_t generation = part->generation; /* queued items' batches are never orphans */
        p->applying_produced_ms = it->produced_ms;
        p->applying_received_ns = it->received_ns;
        apply_item(p, it);
        bool resynced = part->generation != generation;
        if (!resynced)
            it->entry->pins--; /* after a re-sync the entry is gone with its partition */
        item_release(p, it);
        b->queued--;
        if (resynced)
            batch_release_if_orphan(b); /* detached by the re-sync */
        else if (b->queued == 0 && b->sealed)
            batch_progress(b); /* its last event: the write can be built */
    }
    if (p->queue_head && p->queue_head->entry->state == CACHE_READY)
        uv_idle_start(&p->pump_idle, on_pump_idle); /* more ready: continue next iteration */
    else
        uv_idle_stop(&p->pump_idle);
    update_hold(p);
    cache_trim(&p->cache);
}

static void on_pump_idle(uv_idle_t *idle)
{
    pump(idle->data);
}

/* The contract: the Kafka key is the subject, so that one partition (one engine) holds all
 * of a subject's events, in order. A message keyed otherwise could race with its subject's
 * other events on another engine. */
static bool key_is_subject(const rd_kafka_message_t *m, const char *subject)
{
    size_t n = strlen(subject);
    return m->key && m->key_len == n && memcmp(m->key, subject, n) == 0;
}

/* A message below the applied offset is normal just after a claim: fetched before the seek
 * took effect. From a log that ends below the applied offset it is not: the topic was
 * recreated or the broker lost data, and every event of the partition below the offset Redis
 * holds will be skipped. Logged once per claim, from the consumer's cached watermarks. */
static void warn_if_log_behind(pipeline_t *p, partition_t *part)
{
    int64_t low, high;
    if (part->said_log_behind || !p->consumer ||
        rd_kafka_get_watermark_offsets(kafka_consumer_rk(p->consumer), p->opts.topic, part->id,
                                       &low, &high) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        high < 0 || high >= part->applied)
        return;
    part->said_log_behind = true;
    log_error("engine: partition %d: Redis holds applied offset %lld but the log ends at %lld: "
              "the topic was recreated or the broker lost data; its events below %lld are "
              "skipped (integral_engine_skipped_total)",
              (int)part->id, (long long)part->applied, (long long)high,
              (long long)part->applied);
}

void pipeline_on_message(kafka_consumer_t *c, rd_kafka_message_t *m, void *data)
{
    pipeline_t *p = data;
    uint64_t received_ns = uv_hrtime();
    partition_t *part = m->partition < PARTITIONS_MAX ? p->partitions[m->partition] : NULL;
    if (!part || part->state != PARTITION_ACTIVE || m->offset < part->applied) {
        /* Fetched before a pause or seek took effect, or already applied: not ours to
         * process now, and not marked done. */
        if (part && part->state == PARTITION_ACTIVE) {
            metrics_counter_inc(p->skipped_applied);
            warn_if_log_behind(p, part);
        }
        rd_kafka_message_destroy(m);
        return;
    }
    batch_t *b = open_batch(p, part);
    item_t *it = b ? item_alloc(p) : NULL;
    if (!it) {
        rd_kafka_message_destroy(m);
        partition_resync(p, part, "out of memory");
        return;
    }
    b->last_offset = m->offset;
    event_limits_t limits = {p->opts.max_event_bytes, wall_ms(), p->opts.max_future_ms};
    event_error_t err;
    if (event_parse(m->payload, m->len, &limits, &it->event, &err) < 0) {
        item_release(p, it);
        deadletter(p, b, m, &err); /* takes m */
        return;
    }
    if (!key_is_subject(m, it->event.subject)) {
        err.reason = EVENT_REASON_KEY_MISMATCH;
        snprintf(err.detail, sizeof err.detail, "the Kafka key (%zu bytes%s) is not the subject %.60s",
                 m->key_len, m->key ? "" : ", absent", it->event.subject);
        item_release(p, it);
        deadletter(p, b, m, &err);
        return;
    }
    metrics_counter_inc(p->events_by_type[it->event.type]);
    const doc_ops_t *ops = it->event.is_agent ? p->opts.agent_ops : p->opts.customer_ops;
    cache_entry_t *e = entry_for(p, part, &it->event, ops);
    if (!e) {
        item_release(p, it);
        rd_kafka_message_destroy(m);
        partition_resync(p, part, "cannot track a document (out of memory or Redis busy)");
        return;
    }
    int64_t produced_ms = rd_kafka_message_timestamp(m, NULL);
    if (produced_ms > 0)
        metrics_histogram_observe(p->latency, (double)(wall_ms() - produced_ms) / 1000.0);
    it->next = NULL;
    it->batch = b;
    it->entry = e;
    it->ops = ops;
    it->offset = m->offset;
    it->produced_ms = produced_ms;
    it->received_ns = received_ns;
    rd_kafka_message_destroy(m);
    e->pins++;
    b->queued++;
    if (p->queue_tail)
        p->queue_tail->next = it;
    else
        p->queue_head = it;
    p->queue_tail = it;
    p->queued++;
    pump(p);
}

/* ------------------------------------------------------------------------------------------
 * Loop phases: seal after I/O, retry on a timer
 * ---------------------------------------------------------------------------------------- */

void pipeline_flush(pipeline_t *p)
{
    /* A partition is in the list once per open batch; one forgotten meanwhile (revoked,
     * re-synced) has no open batch any more. The list is copied first: sealing runs callbacks
     * that could, in principle, open new batches. */
    partition_t *sealing[PARTITIONS_MAX];
    int n = p->n_open;
    memcpy(sealing, p->open_parts, (size_t)n * sizeof *sealing);
    p->n_open = 0;
    for (int i = 0; i < n; i++) {
        partition_t *part = sealing[i];
        batch_t *b = part->open;
        if (!b)
            continue;
        part->open = NULL;
        b->sealed = true;
        batch_progress(b);
    }
}

/* After every poll phase: the messages of this iteration form one batch per partition. */
static void on_seal_check(uv_check_t *check)
{
    pipeline_flush(check->data);
}

static void on_retry_timer(uv_timer_t *timer)
{
    pipeline_t *p = timer->data;
    delivery_t *retry = p->retry_head;
    p->retry_head = NULL;
    while (retry) {
        delivery_t *d = retry;
        retry = d->next_retry;
        d->next_retry = NULL;
        delivery_send_or_retry(p, d);
    }
    uint64_t now = now_ms(p);
    for (int i = 0; i < PARTITIONS_MAX; i++) {
        partition_t *part = p->partitions[i];
        if (part && (part->state == PARTITION_CLAIMING || part->state == PARTITION_RESYNCING) &&
            !part->claim_in_flight && !part->assign_pending && now >= part->retry_at_ms &&
            redis_client_state(p->opts.redis) == REDIS_STATE_READY)
            claim_start(p, part);
    }
}

/* ------------------------------------------------------------------------------------------
 * Life cycle
 * ---------------------------------------------------------------------------------------- */

static void register_metrics(pipeline_t *p)
{
    metrics_t *m = p->opts.metrics;
    char labels[96];
    for (int t = 0; t < EVENT_TYPE_COUNT; t++) {
        snprintf(labels, sizeof labels, "type=\"%s\"", event_type_name((event_type_t)t));
        p->events_by_type[t] =
            metrics_counter(m, "integral_engine_events_total", "Events parsed, by type.", labels);
    }
    for (int r = 1; r < EVENT_REASON_COUNT; r++) {
        snprintf(labels, sizeof labels, "reason=\"%s\"", event_reason_name((event_reason_t)r));
        p->deadlettered[r] = metrics_counter(m, "integral_engine_deadlettered_total",
                                             "Messages sent to the dead-letter topic.", labels);
    }
    p->duplicates = metrics_counter(m, "integral_engine_duplicates_total",
                                    "Events already applied (redelivered or re-sent).", NULL);
    p->skipped_applied = metrics_counter(m, "integral_engine_skipped_total",
                                         "Messages skipped below the applied offset.", NULL);
    p->writes = metrics_counter(m, "integral_engine_writes_total", "Batch writes sent.", NULL);
    p->writes_failed = metrics_counter(m, "integral_engine_write_failures_total",
                                       "Batch writes without a reply.", NULL);
    p->writes_fenced = metrics_counter(m, "integral_engine_writes_fenced_total",
                                       "Batch writes refused: another engine owns the partition.",
                                       NULL);
    p->docs_written = metrics_counter(m, "integral_engine_documents_written_total",
                                      "Documents written to Redis.", NULL);
    p->transactions = metrics_counter(m, "integral_engine_redis_transactions_total",
                                      "Fenced transactions sent to Redis (each holds the writes "
                                      "ready at the time).",
                                      NULL);
    p->transaction_aborts =
        metrics_counter(m, "integral_engine_redis_transaction_aborts_total",
                        "Transactions EXEC refused (an owner key changed after WATCH) and started "
                        "over.",
                        NULL);
    p->loads = metrics_counter(m, "integral_engine_loads_total",
                               "Documents loaded from Redis on first touch.", NULL);
    p->load_errors = metrics_counter(m, "integral_engine_load_errors_total",
                                     "Document loads that failed.", NULL);
    p->apply_errors = metrics_counter(m, "integral_engine_apply_errors_total",
                                      "Events a document refused.", NULL);
    p->latency = metrics_histogram(m, "integral_engine_consume_latency_seconds",
                                   "From the message's Kafka timestamp to its processing.", NULL,
                                   metrics_latency_buckets, metrics_latency_buckets_count);
    p->alert_latency = metrics_histogram(
        m, "integral_engine_alert_latency_seconds",
        "From the triggering message's Kafka timestamp to the alert acknowledged by Kafka.", NULL,
        metrics_latency_buckets, metrics_latency_buckets_count);
    /* The engine's own part of the above: it tells a slow engine from slow Kafka (the
     * producer's batching, the broker, the fetch, the alert's acknowledgement), which the
     * Kafka timestamp alone cannot. */
    p->alert_build_latency = metrics_histogram(
        m, "integral_engine_alert_build_latency_seconds",
        "From the triggering message taken from the consumer's queue to its alert handed to "
        "the Kafka producer.",
        NULL, metrics_latency_buckets, metrics_latency_buckets_count);
}

static double read_queued(void *ctx)
{
    return (double)((pipeline_t *)ctx)->queued;
}

static double read_cached(void *ctx)
{
    return (double)((pipeline_t *)ctx)->cache.count;
}

static double read_in_flight(void *ctx)
{
    return (double)pipeline_in_flight(ctx);
}

static double held_seconds(const pipeline_t *p, int reason)
{
    double s = p->held_s[reason];
    if (p->held && p->held_reason == reason)
        s += (double)(uv_hrtime() - p->held_since_ns) / 1e9;
    return s;
}

static double read_held_loads(void *ctx)
{
    return held_seconds(ctx, HOLD_LOADS);
}

static double read_held_writes(void *ctx)
{
    return held_seconds(ctx, HOLD_WRITES);
}

int pipeline_new(pipeline_t **out, const pipeline_options_t *opts)
{
    pipeline_t *p = calloc(1, sizeof *p);
    if (!p)
        return -1;
    p->opts = *opts;
    p->max_doc_bytes = opts->max_doc_bytes ? opts->max_doc_bytes : DOC_BYTES_DEFAULT;
    if (!(p->writer = store_writer_new(opts->redis, opts->loop, STORE_PACE_MS)) ||
        cache_init(&p->cache, opts->cache_max_entries) < 0) {
        store_writer_free(p->writer);
        free(p);
        return -1;
    }
    register_metrics(p);
    metrics_gauge_fn(opts->metrics, "integral_engine_queued_events", "Events waiting to apply.",
                     NULL, read_queued, p);
    metrics_gauge_fn(opts->metrics, "integral_engine_cached_documents",
                     "Documents held in memory.", NULL, read_cached, p);
    metrics_gauge_fn(opts->metrics, "integral_engine_in_flight",
                     "Events and batches not yet acknowledged.", NULL, read_in_flight, p);
    static const char held_help[] =
        "Seconds the consumer was held since the start: events waiting for their documents "
        "to load (loads), or writes waiting to be sent (writes).";
    metrics_gauge_fn(opts->metrics, "integral_engine_consumer_held_seconds", held_help,
                     "reason=\"loads\"", read_held_loads, p);
    metrics_gauge_fn(opts->metrics, "integral_engine_consumer_held_seconds", held_help,
                     "reason=\"writes\"", read_held_writes, p);
    uv_check_init(opts->loop, &p->seal_check);
    uv_idle_init(opts->loop, &p->pump_idle);
    uv_timer_init(opts->loop, &p->retry_timer);
    p->seal_check.data = p->pump_idle.data = p->retry_timer.data = p;
    uv_check_start(&p->seal_check, on_seal_check);
    uv_timer_start(&p->retry_timer, on_retry_timer, 100, 100);
    *out = p;
    return 0;
}

void pipeline_attach_consumer(pipeline_t *p, kafka_consumer_t *consumer)
{
    p->consumer = consumer;
}

void pipeline_detach_producer(pipeline_t *p)
{
    p->opts.producer = NULL;
}

bool pipeline_ready(const pipeline_t *p, const char **why)
{
    if (redis_client_state(p->opts.redis) != REDIS_STATE_READY) {
        *why = "redis not ready";
        return false;
    }
    if (!p->joined) {
        *why = "joining the consumer group";
        return false;
    }
    for (int i = 0; i < PARTITIONS_MAX; i++) {
        const partition_t *part = p->partitions[i];
        if (part && (part->state == PARTITION_CLAIMING || part->state == PARTITION_RESYNCING)) {
            *why = "claiming partitions";
            return false;
        }
    }
    *why = "ready";
    return true;
}

size_t pipeline_in_flight(const pipeline_t *p)
{
    return p->queued + p->batches_live + p->deliveries_live;
}

static void on_handle_closed(uv_handle_t *handle)
{
    pipeline_t *p = handle->data;
    if (--p->open_handles > 0)
        return;
    void (*cb)(void *) = p->close_cb;
    void *data = p->close_data;
    free(p);
    if (cb)
        cb(data);
}

void pipeline_close(pipeline_t *p, void (*close_cb)(void *data), void *data)
{
    metrics_gauge_fn(p->opts.metrics, "integral_engine_queued_events", NULL, NULL, NULL, NULL);
    metrics_gauge_fn(p->opts.metrics, "integral_engine_cached_documents", NULL, NULL, NULL, NULL);
    metrics_gauge_fn(p->opts.metrics, "integral_engine_in_flight", NULL, NULL, NULL, NULL);
    for (int i = 0; i < PARTITIONS_MAX; i++) {
        partition_t *part = p->partitions[i];
        if (!part)
            continue;
        queue_drop_partition(p, part->id);
        partition_orphan_batches(part);
        free(part);
        p->partitions[i] = NULL;
    }
    /* Deliveries still in flight keep their batch alive; at close nothing answers any more. */
    while (p->retry_head) {
        delivery_t *d = p->retry_head;
        p->retry_head = d->next_retry;
        delivery_free(p, d);
    }
    while (p->free_items) {
        item_t *it = p->free_items;
        p->free_items = it->next;
        free(it);
    }
    cache_close(&p->cache);
    while (p->n_spare_writes > 0)
        store_write_free(p->spare_writes[--p->n_spare_writes]);
    store_writer_free(p->writer);
    p->writer = NULL;
    p->close_cb = close_cb;
    p->close_data = data;
    p->open_handles = 3;
    uv_close((uv_handle_t *)&p->seal_check, on_handle_closed);
    uv_close((uv_handle_t *)&p->pump_idle, on_handle_closed);
    uv_close((uv_handle_t *)&p->retry_timer, on_handle_closed);
}
