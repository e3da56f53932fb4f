/* livequeue.h - what the engine tells the rest of Integral about contacts as they happen:
 *
 *  - the live queue in Redis (store.h, keys {q}:*), for supervisors: who waits in which queue
 *    since when (with a snapshot of the customer's tier, value and churn risk), who was
 *    answered or abandoned after how long, and every agent's state;
 *  - a notice on the assignments topic (key = agent id) when a contact reaches an agent
 *    (contact.started, or contact.transferred to an agent), so that the gateway can pop the
 *    customer on that agent's screen:
 *      {"type":"contact.started","agent_id":"a-9","customer_id":"c-1","contact_id":"k-7",
 *       "queue":"billing","channel":"phone","time":"<event time>","event_id":"e-1"}
 *    Notices ride with the batch like alerts: its offsets are stored only after Kafka
 *    acknowledged them. A late event (older than engine.lateness_ms) sends none.
 *
 * Queue operations follow the customer's state after the event, so a late or repeated event
 * cannot put back in a queue a contact that has already been answered or has ended. */
#ifndef INTEGRAL_ENGINE_LIVEQUEUE_H
#define INTEGRAL_ENGINE_LIVEQUEUE_H

#include "engine.h"
#include "pipeline.h"

#include <stdbool.h>

/* The pipeline's on_applied work for the live queue (called for customers and agents). */
void livequeue_on_applied(engine_t *e, batch_t *batch, const doc_ops_t *ops, void *doc,
                          const event_t *ev, bool late);

#endif
