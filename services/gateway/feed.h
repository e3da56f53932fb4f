/* feed.h - the gateway's Kafka side: alerts and assignment notices in.
 *
 * Each gateway consumes every partition of the alerts and assignments topics in its own
 * consumer group, integral-gateway-<gateway.instance>, so that a restarted gateway resumes
 * where it stopped and nothing raised meanwhile escapes the agents' logs.
 *
 * An alert goes
 *   - to the supervisors of its queue at once (once per alert id per gateway);
 *   - into its agent's log in Redis (gwstore.h), or, when nobody serves the customer yet,
 *     into the customer's held alerts; the sessions of that agent then pull the log.
 * An assignment notice (an agent started a contact) moves the customer's held alerts into
 * the agent's log and pops the customer on the agent's screen: the summary from Redis with
 * the held alerts in one "screen_pop" message, then the alerts themselves.
 * A message counts as done (its offset stored) once Redis acknowledged its effect; when Redis
 * fails, the partition rewinds to it and tries again a second later. Alerts older than the
 * resume window and screen pops older than gateway.screen_pop_max_age_s are not shown. */
#ifndef INTEGRAL_GATEWAY_FEED_H
#define INTEGRAL_GATEWAY_FEED_H

#include "gateway.h"

#include <stddef.h>

int feed_start(gw_t *gw, char *err, size_t errlen);

/* Stops taking messages; in_flight says when the ones taken are finished. */
void feed_hold(gw_t *gw);
size_t feed_in_flight(const gw_t *gw);

/* After the consumer closed and Redis replied to everything: frees the rest. */
void feed_free(gw_t *gw);

/* Counters for /metrics. */
typedef struct {
    uint64_t alerts, assignments, skipped_old, invalid, redis_failures;
} feed_stats_t;
void feed_stats(const gw_t *gw, feed_stats_t *out);

#endif
