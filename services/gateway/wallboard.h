/* wallboard.h - the live queue for supervisors.
 *
 * Every gateway.queue_interval_ms (1 s) while supervisors are connected, one read-only
 * FCALL gathers the engine's live-queue keys ({q}:*, services/engine/README.md) and each
 * supervisor gets a "queue" message for its scope (PROTOCOL.md): per queue the waiting
 * contacts in the suggested answer order (by customer value, then by wait; never by
 * channel) with tier and risk flags and their wait, the longest wait, answered and abandoned
 * contacts of the last 15 minutes, the service level with the formula's name and the raw
 * counters behind it, agents by state, and the last hour minute by minute; alerts per minute
 * as this gateway saw them. A supervisor who connects gets the latest one at once. */
#ifndef INTEGRAL_GATEWAY_WALLBOARD_H
#define INTEGRAL_GATEWAY_WALLBOARD_H

#include "gateway.h"
#include "sessions.h"

int wallboard_start(gw_t *gw);
void wallboard_stop(gw_t *gw);

/* Sends the latest queue message to a supervisor who just authenticated. */
void wallboard_greet(gw_t *gw, session_t *s);

/* Counts an alert (queue may be NULL) for the alerts-per-minute series. */
void wallboard_count_alert(gw_t *gw, const char *queue);

/* The service-level formulas gateway.service_level_formula may name. */
#define WALLBOARD_FORMULAS "answered|offered|offered_minus_short_abandons"

#endif
