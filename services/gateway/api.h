/* api.h - the gateway's HTTP routes besides /healthz, /readyz and /metrics (service.c):
 *   GET /ws                   the WebSocket (sessions.c, PROTOCOL.md)
 *   GET /api/customers/{id}   a customer's summary (the engine's document without its
 *                             internals), for "Authorization: Bearer <token>": supervisors
 *                             any customer, agents only the one they serve now (else 403);
 *                             401 without a valid token, 404 for an unknown customer
 *   GET /                     the agent desktop (gateway.web_dir/agent.html)
 *   GET /supervisor           the wallboard (gateway.web_dir/supervisor.html)
 *   GET /static/...           the UI's other files under gateway.web_dir/static/ */
#ifndef INTEGRAL_GATEWAY_API_H
#define INTEGRAL_GATEWAY_API_H

#include "gateway.h"

int api_routes(gw_t *gw);

#endif
