/* agents.h - the document of one agent, from agent.state events (subject "agent:<id>"), so
 * that the live queue knows who is available for which queue.
 *
 * Stored at {a:ID}:state as
 *   {"v":1,"id":"a-9","state":"available","queues":["billing","vip"],
 *    "updated":"2026-11-30T17:02:20.123Z","offset":1234,"ids":["e-1","e-2"]}
 * "updated" is the newest event time applied; an older agent.state event is recorded as
 * applied but does not roll the state back. "ids" are the last event ids applied
 * (idempotency for re-sent events); "offset" the last Kafka offset applied. Agents are few
 * and change state rarely, so this document goes through cJSON both ways. */
#ifndef INTEGRAL_ENGINE_AGENTS_H
#define INTEGRAL_ENGINE_AGENTS_H

#include "pipeline.h"

/* The document model of agents, for the pipeline. */
extern const doc_ops_t agent_doc_ops;

/* The agent as the live queue shows it: {"id","state","queues","since"} (since: the time of
 * its latest state). Returns the length written to buf, or -1 when it does not fit. */
long agent_summary_json(const void *doc, char *buf, size_t cap);

#endif
