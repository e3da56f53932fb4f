/* customers.h - customers in the engine: their documents (state.h), scores (scores.h), and
 * the rules that turn a change into an alert (rules.h).
 *
 * After each applied customer event: the scores are recomputed, the features filled once,
 * and every rule triggered by the event's type evaluated; a rule that holds and is out of its
 * per-customer cooldown (in event time) raises an alert, unless the event is late (older than
 * engine.lateness_ms). Cooldowns are part of the customer's state, so a replay decides the
 * same. Rules triggered by "timer" are evaluated every second, on the wall clock, for the
 * customers waiting in a queue (no event arrives while someone waits).
 *
 * An alert, on the alerts topic with the customer id as key:
 *   {"id":"<32 hex: rule + triggering event>","time":"<raised, RFC 3339>","rule":"repeat_contact",
 *    "severity":"critical","customer_id":"c-1","partner":false,"agent_id":"a-9"|null,
 *    "contact_id":"k-7"|null,"queue":"billing"|null,"channel":"phone"|null,"title":"...",
 *    "message":"...","action":"...","reasons":[{"feature":"support_contacts_30d","value":4,
 *    "op":">=","threshold":4}],"scores":{"value":812.5,"tier":"A","churn_risk":0.31,
 *    "trend":"stable"},"event_id":"e-1","event_type":"contact.started",
 *    "event_time":"<RFC 3339>"}
 * A timer alert's event is the customer's queued contact: its id is the contact's id. */
#ifndef INTEGRAL_ENGINE_CUSTOMERS_H
#define INTEGRAL_ENGINE_CUSTOMERS_H

#include "engine.h"
#include "state.h"
#include "pipeline.h"

#include <stdbool.h>

extern const doc_ops_t customer_doc_ops;

/* Loads the model and the rules (paths from engine.cfg) and starts the timers. Returns 0, or
 * -1 with one line in err naming the file and the place. */
int customers_init(engine_t *e, char *err, size_t errlen);

/* The pipeline's on_applied hook: scores are already current; evaluates the rules. */
void customers_on_applied(pipeline_t *p, batch_t *batch, const doc_ops_t *ops, void *doc,
                          const event_t *ev, bool late, void *data);

/* Reloads the rules file (SIGHUP); a broken file keeps the rules in force and logs where it is
 * broken. */
void customers_reload(engine_t *e);

/* What the latest customer apply said (valid until the next apply): the on_applied hooks that
 * run after customers_on_applied read it. */
const apply_result_t *customers_last_result(const engine_t *e);

/* Stops the timers and frees the model and the rules. */
void customers_close(engine_t *e);

#endif
