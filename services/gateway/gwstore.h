/* gwstore.h - the gateway's Redis side: each agent's alert log (what makes resume work across
 * reconnects and across gateways), the alerts waiting for a customer's agent, feedback, and
 * the live-queue snapshot the engine's keys make up.
 *
 * Keys (the gateway's own, tag {g:...}; the live queue {q}:* and customers {c:ID}:state are the
 * engine's, read only):
 *   {g:a:ID}:alerts     STREAM of the alerts addressed to agent ID, field "alert" = the alert
 *                       JSON; entries older than the resume window are trimmed (MINID). The
 *                       entry id is the "seq" clients resume from: one order for every gateway.
 *   {g:a:ID}:seen       ZSET alert id -> when it was appended: an alert id enters the log once,
 *                       however many gateways (or redeliveries) append it.
 *   {g:c:ID}:pending    HASH alert id -> alert JSON, and {g:c:ID}:pending_at ZSET alert id ->
 *                       when: alerts raised while nobody served the customer (still queued),
 *                       handed to the agent who answers. They expire with gateway.pending_ttl.
 *   {g:f:ALERT}         HASH: the front line's word on one alert: agent, acked_at, useful,
 *                       outcome, feedback_at (kept 90 days).
 * Every call is one FCALL of the "integral_gw" library (registered on each connect), so each
 * step is atomic and a race of two gateways appending the same alert is harmless. */
#ifndef INTEGRAL_GATEWAY_GWSTORE_H
#define INTEGRAL_GATEWAY_GWSTORE_H

#include "redis_uv.h"

#include <cJSON.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GWSTORE_SEQ_MAX 48 /* a stream id "1701234567890-12" with its NUL */

const char *gwstore_function_library(void);

/* All callbacks get ok == false when Redis did not answer as expected (down, timeout). */

/* Appends an alert to agent's log unless it is there already (by alert id). */
typedef void (*gwstore_done_cb)(void *data, bool ok);
int gwstore_append_alert(redis_client_t *r, const char *agent, const char *alert_id,
                         const char *json, size_t len, int64_t now_ms, int64_t window_ms,
                         gwstore_done_cb cb, void *data);

/* Keeps an alert for whoever will serve customer. */
int gwstore_hold_alert(redis_client_t *r, const char *customer, const char *alert_id,
                       const char *json, size_t len, int64_t now_ms, int64_t ttl_ms,
                       gwstore_done_cb cb, void *data);

/* Raw replies (NULL when Redis did not answer), borrowed for the call. */
typedef void (*gwstore_reply_cb)(void *data, const redisReply *raw);

/* Moves the alerts held for customer into agent's log (in the order they were raised; each
 * once per agent). They stay held (until they expire) for an agent the contact moves to.
 * The reply is an array of the held alerts' JSON texts, oldest first. */
int gwstore_assign(redis_client_t *r, const char *customer, const char *agent, int64_t now_ms,
                   int64_t window_ms, int64_t ttl_ms, gwstore_reply_cb cb, void *data);

/* The first and last seq of agent's log ("" when empty). */
typedef void (*gwstore_bounds_cb)(void *data, bool ok, const char *first, const char *last);
int gwstore_bounds(redis_client_t *r, const char *agent, gwstore_bounds_cb cb, void *data);

/* Up to count entries of agent's log after seq (exclusive; "0-0" for all). cb gets them in
 * order: seqs[i] and the alert JSON alerts[i] (lens[i] bytes), borrowed for the call. */
typedef void (*gwstore_range_cb)(void *data, bool ok, size_t n, const char *const *seqs,
                                 const char *const *alerts, const size_t *lens);
int gwstore_range(redis_client_t *r, const char *agent, const char *after, unsigned count,
                  gwstore_range_cb cb, void *data);

/* Records an acknowledgement (useful < 0) or feedback (useful 0/1 and outcome) on an alert. */
int gwstore_record(redis_client_t *r, const char *alert_id, const char *agent, int64_t now_ms,
                   int useful, const char *outcome, gwstore_done_cb cb, void *data);

/* A customer as agents see it: the engine's document ({c:ID}:state) without its internals
 * ("w"), with the newest timeline_max entries of its timeline list ({c:ID}:timeline) as
 * "timeline", newest first. cb gets ok false when Redis failed, doc NULL when there is no
 * such customer (or its document is not JSON); doc is cb's to cJSON_Delete. */
typedef void (*gwstore_customer_cb)(void *data, bool ok, cJSON *doc);
int gwstore_customer(redis_client_t *r, const char *customer, unsigned timeline_max,
                     gwstore_customer_cb cb, void *data);

/* The live queue in one reply (the engine's {q}:* keys), see wallboard.c for its shape. */
int gwstore_queues(redis_client_t *r, int64_t now_ms, unsigned max_waiting,
                   int64_t threshold_ms, gwstore_reply_cb cb, void *data);

/* Compares two stream ids ("ms-seq"): <0, 0, >0. A malformed one sorts first. */
int gwstore_seq_cmp(const char *a, const char *b);

/* True for an id that may become part of a Redis key: 1..128 bytes of [A-Za-z0-9._:@+-],
 * the engine's contract for subjects, agent ids and queue names. */
bool gwstore_id_ok(const char *s);

/* True for a syntactically valid stream id ("123-4" or "123"). */
bool gwstore_seq_valid(const char *s);

#endif
