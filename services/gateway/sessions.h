/* sessions.h - the people connected to this gateway: one session per WebSocket connection.
 *
 * A session starts unauthenticated: the client's first message must be `auth` with a token,
 * within gateway.auth_timeout_ms; nothing is sent before it succeeds. Then:
 *   - an agent's session delivers the agent's alert log (gwstore.h) in log order, from where
 *     the client says it stopped (`resume`), then live: every session of one agent pulls the
 *     same log, so an agent connected twice, or reconnecting to another gateway, sees every
 *     alert once, in one order;
 *   - a supervisor's session gets the recent alerts of its scope, then every new one, and the
 *     live queue (wallboard.c) once a second.
 * Client messages (ack, feedback) go to Kafka's feedback topic and are recorded in Redis; the
 * client hears "recorded" once Kafka acknowledged. The protocol: PROTOCOL.md. */
#ifndef INTEGRAL_GATEWAY_SESSIONS_H
#define INTEGRAL_GATEWAY_SESSIONS_H

#include "gateway.h"

#include <stdbool.h>
#include <stddef.h>

/* Close codes the gateway sends (ws.h has the protocol's own). */
#define GW_CLOSE_UNAUTHORIZED 4001 /* no or bad token; the reason names why ("expired", ...) */
#define GW_CLOSE_TOKEN_EXPIRED 4003 /* the token expired during the session */
#define GW_CLOSE_AUTH_TIMEOUT 4008 /* no auth message within gateway.auth_timeout_ms */

typedef struct session session_t;

int sessions_init(gw_t *gw);
void sessions_free(gw_t *gw);

/* The HTTP_ROUTE_UPGRADE handler of /ws (data: the gw_t). */
void sessions_on_upgrade(http_request_t *req, void *data);

/* New entries in agent's alert log: its sessions here pull them. */
void sessions_agent_log_changed(gw_t *gw, const char *agent);

/* True when agent has an authenticated session on this gateway. */
bool sessions_agent_connected(gw_t *gw, const char *agent);

/* Sends msg (a complete server message) to every authenticated session of agent. */
void sessions_send_to_agent(gw_t *gw, const char *agent, const char *msg, size_t len);

/* A new alert for supervisors: kept for the snapshot of those who connect later, and sent to
 * every supervisor whose scope covers queue (NULL: no queue; only unscoped supervisors).
 * alert is the alert's JSON. */
void sessions_supervisor_alert(gw_t *gw, const char *queue, const char *alert, size_t len);

/* Supervisors, for the wallboard: calls cb for every authenticated supervisor session. */
typedef void (*sessions_supervisor_cb)(session_t *s, const auth_claims_t *claims, void *data);
void sessions_each_supervisor(gw_t *gw, sessions_supervisor_cb cb, void *data);
size_t sessions_supervisors(const gw_t *gw);

/* The session's token claims (valid once it is authenticated). */
const auth_claims_t *session_claims(const session_t *s);

/* Sends msg to one session (dropped silently once it is closing). */
void session_send(session_t *s, const char *msg, size_t len);

/* A feedback message's fate, from the producer's delivery report (opaque of the send). */
void sessions_on_feedback_delivery(gw_t *gw, void *opaque, bool delivered);

/* Bytes queued for every authenticated client together (for /metrics; walks the sessions). */
size_t sessions_backlog_bytes(const gw_t *gw);

/* Counts a screen pop sent (feed.c). */
void sessions_note_screen_pop(gw_t *gw);

/* Counts for /metrics: live, valid as long as the sessions. */
typedef struct {
    size_t agents, supervisors, unauthenticated;
    uint64_t auth_failures, alerts_sent, screen_pops, feedback, rate_limited, errors_sent;
} sessions_stats_t;
const sessions_stats_t *sessions_stats(const gw_t *gw);

#endif
