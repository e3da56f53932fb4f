/* sim.h - a synthetic contact center: the model behind integral-sim, without Kafka or a loop,
 * so that it can be tested and replayed.
 *
 * Customers have hidden traits drawn from the seed: a value segment (how often and how much
 * they buy), a churn propensity (how often things go wrong for them, how they feel about it,
 * whether they look at the cancel page), and a preferred channel, drawn independently of value
 * (a high-value customer may well prefer the phone). A few partner accounts (subject
 * "partner:<id>") buy in bulk. Agents have skills (queues) and states.
 *
 * It is a discrete-event simulation in simulated time: contact arrivals follow the hour of the
 * day; a contact is queued on a queue, answered by an available agent of that queue (first
 * come, first served), or abandoned when the caller's patience runs out; during a contact the
 * customer's sentiment is sampled; it ends with a wrap-up, sometimes a survey. Unhappy
 * customers contact again and again, complain, visit the cancel page and sometimes cancel.
 * Orders are placed, shipped, sometimes delayed or out of stock, delivered; payments fail now
 * and then. Before the live part, history_days of the past are replayed (orders and contacts
 * with their past times), so that customers have a value and a history from the first minute.
 *
 * Everything follows from the seed: the same seed gives the same events in the same order
 * (same ids, subjects, types and data); only live events' times follow the clock. */
#ifndef INTEGRAL_SIM_H
#define INTEGRAL_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SIM_QUEUES_MAX 16
#define SIM_EVENT_MAX 2048

typedef struct {
    uint64_t seed;
    int customers;
    int partners;
    int agents;
    int n_queues;
    char queues[SIM_QUEUES_MAX][32];
    int history_days;       /* replayed before the live part; 0: none */
    double contacts_per_hour; /* arrivals at the daily peak (simulated time) */
    int start_hour;           /* the hour of the simulated day the live part starts at */
} sim_config_t;

typedef struct {
    char key[80];            /* the Kafka key: the event's subject */
    char json[SIM_EVENT_MAX]; /* the CloudEvent */
    size_t len;
    const char *type;        /* static */
    bool history;            /* a replayed past event */
} sim_event_t;

typedef struct sim sim_t;

/* A new simulation whose live part starts at start_ms (simulated time = wall time then).
 * NULL when cfg is unusable or out of memory. */
sim_t *sim_new(const sim_config_t *cfg, int64_t start_ms);
void sim_free(sim_t *s);

/* The simulated time of the next thing that happens. */
int64_t sim_next_due(const sim_t *s);

/* Takes the next thing that happens at or before until_ms (simulated time) and writes the
 * event it produces into out. now_ms (wall clock) is the time of live events: an event is
 * never dated after the moment it is produced. Returns true with an event, false when
 * nothing is due by until_ms. Some steps produce no event (e.g. an agent ending wrap-up
 * with nothing to do produces its agent.state); they are taken in passing. */
bool sim_next(sim_t *s, int64_t until_ms, int64_t now_ms, sim_event_t *out);

/* Counters. */
typedef struct {
    uint64_t events, history_events, contacts, answered, abandoned, orders;
} sim_stats_t;
const sim_stats_t *sim_stats(const sim_t *s);

/* The ids of the simulated agents: "A001", "A002", ... */
void sim_agent_id(int index, char out[8]);

#endif
