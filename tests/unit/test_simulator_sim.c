/* The simulator's model: deterministic from its seed, a plausible contact center, and every
 * event a valid CloudEvent of the engine's contract (checked field by field here; the engine's
 * own codec checks them again in the integration test). */
#include "sim.h"
#include "timefmt.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define START_MS INT64_C(1796000000000)
#define HOUR_MS INT64_C(3600000)

static sim_config_t config(uint64_t seed)
{
    sim_config_t c = {.seed = seed, .customers = 300, .partners = 3, .agents = 6,
                      .history_days = 20, .contacts_per_hour = 120, .start_hour = 10};
    const char *queues[] = {"support", "billing", "sales", "retention"};
    c.n_queues = 4;
    for (int i = 0; i < 4; i++)
        snprintf(c.queues[i], sizeof c.queues[i], "%s", queues[i]);
    return c;
}

typedef struct {
    int history, live, by_type_started, by_type_queued, by_type_ended, abandoned, sentiment;
    int agent_states, orders, bad;
    int64_t last_history_ms;
} tally_t;

/* Runs the simulation until `hours` of simulated live time have passed; the wall clock moves
 * with simulated time (speed 1). Returns a digest of every event's key and body, minus the
 * time, so that runs can be compared. */
static uint64_t run(uint64_t seed, double hours, tally_t *t)
{
    sim_config_t c = config(seed);
    sim_t *s = sim_new(&c, START_MS);
    assert_non_null(s);
    memset(t, 0, sizeof *t);
    uint64_t digest = 1469598103934665603ull;
    sim_event_t ev;
    int64_t until = START_MS + (int64_t)(hours * HOUR_MS);
    while (sim_next(s, until, sim_next_due(s) > START_MS ? sim_next_due(s) : START_MS, &ev)) {
        cJSON *o = cJSON_ParseWithLength(ev.json, ev.len);
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
        const cJSON *time = cJSON_GetObjectItemCaseSensitive(o, "time");
        const cJSON *subject = cJSON_GetObjectItemCaseSensitive(o, "subject");
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(o, "type");
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(o, "data");
        if (!cJSON_IsString(id) || !cJSON_IsString(time) || !cJSON_IsString(subject) ||
            !cJSON_IsString(type) || !cJSON_IsObject(data) ||
            strcmp(subject->valuestring, ev.key) != 0 || strcmp(type->valuestring, ev.type) != 0)
            t->bad++;
        if (ev.history)
            t->history++;
        else
            t->live++;
        if (!ev.history) {
            t->by_type_queued += strcmp(ev.type, "contact.queued") == 0;
            t->by_type_started += strcmp(ev.type, "contact.started") == 0;
            t->by_type_ended += strcmp(ev.type, "contact.ended") == 0;
            t->abandoned += strcmp(ev.type, "contact.abandoned") == 0;
            t->sentiment += strcmp(ev.type, "sentiment.sampled") == 0;
            t->agent_states += strcmp(ev.type, "agent.state") == 0;
        }
        t->orders += strcmp(ev.type, "order.placed") == 0;
        if (strcmp(ev.type, "contact.started") == 0) {
            const cJSON *agent = cJSON_GetObjectItemCaseSensitive(data, "agent_id");
            if (!cJSON_IsString(agent) || strncmp(agent->valuestring, "A0", 2) != 0)
                t->bad++;
        }
        /* Everything but the time goes into the digest. */
        cJSON_DeleteItemFromObjectCaseSensitive(o, "time");
        char *text = cJSON_PrintUnformatted(o);
        for (const char *p = text; p && *p; p++)
            digest = (digest ^ (unsigned char)*p) * 1099511628211ull;
        free(text);
        cJSON_Delete(o);
    }
    const sim_stats_t *st = sim_stats(s);
    assert_int_equal(st->events, (uint64_t)(t->history + t->live));
    sim_free(s);
    return digest;
}

static void same_seed_same_events(void **state)
{
    tally_t a, b, c;
    uint64_t d1 = run(7, 2, &a), d2 = run(7, 2, &b), d3 = run(8, 2, &c);
    assert_int_equal(d1, d2);
    assert_int_equal(a.history + a.live, b.history + b.live);
    assert_true(d1 != d3); /* another seed, another day */
}

static void a_plausible_contact_center(void **state)
{
    tally_t t;
    run(3, 8, &t);
    printf("8 h: %d history, %d live: %d queued, %d started, %d ended, %d abandoned\n", t.history,
           t.live, t.by_type_queued, t.by_type_started, t.by_type_ended, t.abandoned);
    assert_int_equal(t.bad, 0);
    assert_true(t.history > 1000); /* 20 days of orders, visits and contacts */
    assert_int_equal(t.agent_states >= 6, 1);
    /* Eight busy hours at 120 contacts an hour at the peak, six agents: contacts queue up,
     * most are answered, some are abandoned, and conversations are analysed. */
    assert_true(t.by_type_queued > 300);
    assert_true(t.by_type_started > 200);
    assert_true(t.by_type_ended > 150);
    assert_true(t.abandoned > 0);
    assert_true(t.sentiment > 100);
    assert_true(t.orders > 100);
}

static void live_events_are_never_dated_in_the_future(void **state)
{
    sim_config_t c = config(5);
    sim_t *s = sim_new(&c, START_MS);
    sim_event_t ev;
    int64_t wall = START_MS + 1000; /* the wall clock lags simulated time by far */
    char wall_text[32];
    timefmt_format(wall, wall_text, sizeof wall_text);
    int live = 0;
    while (sim_next(s, START_MS + 2 * HOUR_MS, wall, &ev)) {
        cJSON *o = cJSON_ParseWithLength(ev.json, ev.len);
        const char *time = cJSON_GetObjectItemCaseSensitive(o, "time")->valuestring;
        if (!ev.history) {
            assert_string_equal(time, wall_text); /* the wall clock, not simulated time */
            live++;
        } else {
            assert_true(strcmp(time, wall_text) < 0);
        }
        cJSON_Delete(o);
    }
    assert_true(live > 50);
    sim_free(s);
}

static void bad_configurations_are_refused(void **state)
{
    sim_config_t c = config(1);
    c.agents = 0;
    assert_null(sim_new(&c, START_MS));
    c = config(1);
    c.n_queues = 0;
    assert_null(sim_new(&c, START_MS));
    c = config(1);
    c.start_hour = 24;
    assert_null(sim_new(&c, START_MS));
    c = config(1);
    c.agents = 10000; /* the ids have four digits at most */
    assert_null(sim_new(&c, START_MS));
}

/* A001 .. A999, then A1000 ..: 2,000 agents (the gateway benchmark's) have 2,000 ids. */
static void agent_ids_are_unique_past_999(void **state)
{
    (void)state;
    char id[8];
    sim_agent_id(0, id);
    assert_string_equal(id, "A001");
    sim_agent_id(998, id);
    assert_string_equal(id, "A999");
    sim_agent_id(999, id);
    assert_string_equal(id, "A1000");
    sim_agent_id(9998, id);
    assert_string_equal(id, "A9999");

    enum { AGENTS = 2000 };
    sim_config_t c = config(3);
    c.agents = AGENTS;
    c.history_days = 0;
    sim_t *s = sim_new(&c, START_MS);
    assert_non_null(s);
    static bool seen[AGENTS + 1];
    memset(seen, 0, sizeof seen);
    int distinct = 0;
    sim_event_t ev;
    /* Every agent says it is available at the start. */
    while (sim_next(s, START_MS, START_MS, &ev)) {
        if (strcmp(ev.type, "agent.state") != 0)
            continue;
        int n = 0;
        char extra;
        assert_int_equal(sscanf(ev.key, "agent:A%d%c", &n, &extra), 1);
        assert_true(n >= 1 && n <= AGENTS);
        sim_agent_id(n - 1, id);
        assert_string_equal(ev.key + 6, id); /* no leading zeros past three digits */
        if (!seen[n]) {
            seen[n] = true;
            distinct++;
        }
    }
    assert_int_equal(distinct, AGENTS);
    sim_free(s);
}

/* Without history, the customers' profiles are spread over the first simulated day rather
 * than sent all at once before the first contact. */
static void live_only_profiles_are_spread(void **state)
{
    (void)state;
    sim_config_t c = config(4);
    c.history_days = 0;
    c.customers = 2400;
    sim_t *s = sim_new(&c, START_MS);
    assert_non_null(s);
    int profiles = 0, contacts = 0;
    sim_event_t ev;
    int64_t now = START_MS;
    while (sim_next(s, START_MS + HOUR_MS, now, &ev)) {
        profiles += strcmp(ev.type, "customer.profile") == 0;
        contacts += strncmp(ev.type, "contact.", 8) == 0;
    }
    /* ~100 an hour (2,410 over 24 h); at the peak, contacts arrive from the first minutes. */
    assert_true(profiles > 40 && profiles < 200);
    assert_true(contacts > 50);
    sim_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(same_seed_same_events),
        cmocka_unit_test(a_plausible_contact_center),
        cmocka_unit_test(live_events_are_never_dated_in_the_future),
        cmocka_unit_test(bad_configurations_are_refused),
        cmocka_unit_test(agent_ids_are_unique_past_999),
        cmocka_unit_test(live_only_profiles_are_spread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
