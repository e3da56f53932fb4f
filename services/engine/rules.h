/* rules.h - alert rules from config/rules.json: when to look, what must hold, what to say.
 *
 *   {"rules": [{
 *      "id": "repeat_contact",
 *      "on": ["contact.queued", "contact.started"],       event types that trigger it, or
 *                                                         "timer" (checked every second for
 *                                                         customers waiting in a queue)
 *      "condition": "new_contact && support_contacts_30d >= 4",
 *      "severity": "critical",                            info | warning | critical
 *      "title": "Escalate: support contact #{support_contacts_30d}",
 *      "message": "{support_contacts_30d} support contacts in 30 days",
 *      "action": "Escalate to a senior agent",
 *      "cooldown_s": 0}]}                                 per customer, in event time
 * Conditions and templates name features (features.h); see expr.h and template.h for their
 * syntax. A broken file is refused whole, with one line saying where: the JSON's line and
 * column, or the rule, the field and the line and column inside the file. */
#ifndef INTEGRAL_ENGINE_RULES_H
#define INTEGRAL_ENGINE_RULES_H

#include "event.h"
#include "expr.h"
#include "template.h"

#include <stdbool.h>
#include <stdint.h>

#define RULES_MAX 64
#define RULE_ID_MAX 31
#define RULE_ACTION_MAX 256
#define RULE_TRIGGER_TIMER (1u << EVENT_TYPE_COUNT)

typedef enum { RULE_INFO, RULE_WARNING, RULE_CRITICAL } rule_severity_t;

typedef struct {
    char id[RULE_ID_MAX + 1];
    uint32_t triggers; /* bit per event_type_t, plus RULE_TRIGGER_TIMER */
    expr_program_t *condition;
    uint64_t condition_features; /* bit per feature index the condition reads (all bits:
                                    some index of 64 or above) */
    rule_severity_t severity;
    template_t *title, *message;
    char action[RULE_ACTION_MAX + 1];
    int64_t cooldown_ms;
} rule_t;

typedef struct {
    int n;
    rule_t rules[RULES_MAX];
    uint32_t all_triggers; /* union of the rules' triggers */
    uint64_t timer_features; /* union of the features the timer rules' conditions read */
} rules_t;

/* Loads a rules file. Returns a new set (free with rules_free), or NULL with one line in err
 * ("config/rules.json:12:18: rule vip_waiting: condition: unknown feature \"tierr\""). */
rules_t *rules_load(const char *path, const expr_resolver_t *resolver, char *err,
                    size_t errlen);

/* The same from text in memory (origin names it in errors). */
rules_t *rules_parse(const char *text, size_t len, const char *origin,
                     const expr_resolver_t *resolver, char *err, size_t errlen);

void rules_free(rules_t *rules);

const char *rule_severity_name(rule_severity_t severity);

/* Writes the alert id for a rule fired by an event: 32 hex characters of SHA-256(rule id,
 * event id), so the same rule and event always give the same id (a replay raises no new
 * alert). out needs 33 bytes. */
void rules_alert_id(const char *rule_id, const char *event_id, char out[33]);

#endif
