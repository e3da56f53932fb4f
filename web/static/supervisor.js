// supervisor.js - the wallboard (/supervisor): totals, queues, the waiting contacts in the
// suggested answer order with tier and risk badges and their wait ticking, agents by state,
// alerts per minute and the service level over the last hour, and the live alert feed with
// filters by severity and rule. Fed by the gateway's "queue" (every second), "feed" and
// "alert" messages (services/gateway/PROTOCOL.md).
import { drawBars, drawLevel } from './charts.js';
import { Session } from './conn.js';
import {
    $, $$, fill, fmtClock, fmtNumber, fmtPercent, fmtWait, h, parseTime, startTicker, storageGet,
    storageSet,
} from './util.js';
import {
    AGENT_STATES, SEVERITIES, SEVERITY_LABEL, STATE_LABEL, channelLabel, reasonTexts,
    riskLevel, ruleLabel,
} from './words.js';

let SL_TARGET = 0.8;          // the line drawn on the chart and the colour of the figures:
                              // the gateway's gateway.service_level_target, once it says
const FEED_MAX = 200;
const STALE_AFTER_MS = 5000;  // no queue message for this long: the board says so
const FILTER_KEY = 'integral.wallboard.filter';

let board = null;             // the last queue message
let boardAt = 0;              // when it arrived (local clock)
let queueFilter = null;       // a queue name: the waiting list shows only that queue
const feed = [];              // alerts, newest first
const feedIds = new Set();
let filter = Object.assign({ severities: [...SEVERITIES], rule: '' }, storageGet(sessionStorage, FILTER_KEY, {}));

const session = new Session({
    role: 'supervisor',
    onWelcome(msg) {
        // The scope as the gateway verified it (not the token's unverified claims).
        const scope = Array.isArray(msg.queues) && msg.queues.length
            ? 'Queues: ' + msg.queues.join(', ') : 'All queues';
        $('#scope').textContent = scope;
        if (msg.expires) $('#scope').title = `Signed in as ${msg.sub} until ${fmtClock(msg.expires)}`;
    },
    onMessage(msg) {
        if (msg.type === 'queue') onQueue(msg);
        else if (msg.type === 'feed') onFeed(msg.alerts || []);
        else if (msg.type === 'alert' && msg.alert) addAlert(msg.alert, true);
    },
    onSignOut() {
        board = null;
        feed.length = 0;
        feedIds.clear();
        renderBoard();
        renderFeed();
    },
});

// ------------------------------------------------------------------------------------------
// Keyed lists: rows are updated in place, so focus and hover survive the updates
// ------------------------------------------------------------------------------------------
function sync(container, items, keyOf, create, update) {
    const existing = new Map();
    for (const el of Array.from(container.children)) {
        if (el.dataset.key !== undefined) existing.set(el.dataset.key, el);
        else el.remove();
    }
    let prev = null;
    for (const item of items) {
        const key = String(keyOf(item));
        let el = existing.get(key);
        if (el) existing.delete(key);
        else {
            el = create(item);
            el.dataset.key = key;
        }
        update(el, item);
        const want = prev ? prev.nextSibling : container.firstChild;
        if (want !== el) container.insertBefore(el, want);
        prev = el;
    }
    for (const el of existing.values()) el.remove();
}

function setText(el, text) {
    const t = String(text);
    if (el.textContent !== t) el.textContent = t;
}

// ------------------------------------------------------------------------------------------
// The queue message
// ------------------------------------------------------------------------------------------
function onQueue(msg) {
    if (msg.service_level && typeof msg.service_level.target === 'number')
        SL_TARGET = msg.service_level.target;
    board = msg;
    boardAt = Date.now();
    renderBoard();
}

function slClass(sl) {
    if (sl === null || sl === undefined) return 'sl-none';
    return sl >= SL_TARGET ? 'sl-good' : sl >= SL_TARGET - 0.2 ? 'sl-warn' : 'sl-bad';
}

// The service level of summed counters, with the formula the gateway names.
function serviceLevel(formula, q) {
    const within = q.answered_within_15m;
    let denom;
    if (formula === 'answered') denom = q.answered_15m;
    else if (formula === 'offered_minus_short_abandons') denom = q.answered_15m + q.abandoned_15m - q.abandoned_within_15m;
    else denom = q.answered_15m + q.abandoned_15m;
    return denom > 0 ? within / denom : null;
}

function totals(msg) {
    const t = { waiting: 0, longest: 0, answered_15m: 0, answered_within_15m: 0, abandoned_15m: 0, abandoned_within_15m: 0 };
    for (const q of msg.queues || []) {
        t.waiting += q.waiting || 0;
        t.longest = Math.max(t.longest, q.longest_wait_s || 0);
        for (const k of ['answered_15m', 'answered_within_15m', 'abandoned_15m', 'abandoned_within_15m']) t[k] += q[k] || 0;
    }
    t.sl = serviceLevel(msg.service_level && msg.service_level.formula, t);
    return t;
}

// Minute by minute over the hour: the service level of all queues, weighted by contacts.
function levelSeries(msg) {
    const out = [];
    const queues = msg.queues || [];
    const n = Math.max(0, ...queues.map((q) => (q.history || []).length));
    for (let i = 0; i < n; i++) {
        let w = 0;
        let sum = 0;
        for (const q of queues) {
            const m = (q.history || [])[i];
            if (!m || m.service_level === null || m.service_level === undefined) continue;
            const weight = (m.answered || 0) + (m.abandoned || 0) || 1;
            w += weight;
            sum += m.service_level * weight;
        }
        out.push(w ? sum / w : null);
    }
    return out;
}

// Local "since" for a wait the gateway measured when it sent the message.
const sinceOf = (waitS) => boardAt - (waitS || 0) * 1000;

function renderBoard() {
    const msg = board || { queues: [], agents: [], alerts_per_minute: [] };
    // Queues in a stable order (by name), so rows never jump around.
    const queues = (msg.queues || []).slice().sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const t = totals(msg);
    const agents = msg.agents || [];
    const available = agents.filter((a) => a.state === 'available').length;
    const staffed = agents.filter((a) => a.state !== 'offline').length;
    const threshold = msg.service_level ? msg.service_level.threshold_s : 20;

    // Totals
    setText($('#k-waiting'), board ? fmtNumber(t.waiting) : '–');
    const longest = $('#k-longest');
    const longestQ = queues.filter((q) => q.waiting).sort((a, b) => b.longest_wait_s - a.longest_wait_s)[0];
    if (t.waiting) {
        longest.dataset.tickSince = sinceOf(t.longest);
        longest.dataset.tickWarn = threshold;
        setText(longest, fmtWait(t.longest));
    } else {
        delete longest.dataset.tickSince;
        longest.classList.remove('over');
        setText(longest, '–');
    }
    setText($('#k-longest-note'), longestQ ? `in ${longestQ.name}` : 'nobody waiting');
    const sl = $('#k-sl');
    setText(sl, fmtPercent(t.sl));
    sl.className = 'kpi-value ' + slClass(t.sl);
    setText($('#k-sl-note'), msg.service_level
        ? `within ${msg.service_level.threshold_s} s · ${msg.service_level.formula.replace(/_/g, ' ')}` : 'last 15 min');
    $('#k-sl-note').title = (msg.service_level && msg.service_level.definition) || '';
    setText($('#k-answered'), board ? fmtNumber(t.answered_15m) : '–');
    setText($('#k-abandoned'), board ? fmtNumber(t.abandoned_15m) : '–');
    $('#k-abandoned').classList.toggle('bad', t.abandoned_15m > 0);
    setText($('#k-agents'), board ? fmtNumber(available) : '–');
    setText($('#k-agents-note'), `of ${fmtNumber(staffed)} signed in`);

    // Queues
    if (queueFilter && !queues.some((q) => q.name === queueFilter)) queueFilter = null;
    sync($('#queues-body'), queues, (q) => q.name, (q) => {
        const btn = h('button', { type: 'button', class: 'qname', 'aria-pressed': 'false', title: 'Show only this queue’s waiting contacts' }, q.name);
        btn.addEventListener('click', () => {
            queueFilter = queueFilter === q.name ? null : q.name;
            renderBoard();
        });
        return h('tr', { dataset: { queue: q.name } },
            h('th', { scope: 'row' }, btn),
            h('td', { class: 'num', dataset: { field: 'waiting' } }),
            h('td', { class: 'num', dataset: { field: 'longest' } }),
            h('td', { class: 'num', dataset: { field: 'sl' } }),
            h('td', { class: 'num', dataset: { field: 'answered' } }),
            h('td', { class: 'num', dataset: { field: 'abandoned' } }),
            h('td', { class: 'num', dataset: { field: 'agents' } }));
    }, (row, q) => {
        const f = (name) => $(`[data-field="${name}"]`, row);
        $('.qname', row).setAttribute('aria-pressed', String(queueFilter === q.name));
        setText(f('waiting'), fmtNumber(q.waiting));
        f('waiting').classList.toggle('hot', q.waiting > 0);
        const lw = f('longest');
        if (q.waiting) {
            lw.dataset.tickSince = sinceOf(q.longest_wait_s);
            lw.dataset.tickWarn = threshold;
            setText(lw, fmtWait(q.longest_wait_s));
        } else {
            delete lw.dataset.tickSince;
            lw.classList.remove('over');
            setText(lw, '–');
        }
        setText(f('sl'), fmtPercent(q.service_level));
        f('sl').className = 'num ' + slClass(q.service_level);
        setText(f('answered'), fmtNumber(q.answered_15m));
        setText(f('abandoned'), fmtNumber(q.abandoned_15m));
        f('abandoned').classList.toggle('bad', q.abandoned_15m > 0);
        const a = q.agents || {};
        setText(f('agents'), `${fmtNumber(a.available || 0)} / ${fmtNumber(a.busy || 0)}`);
        f('agents').title = AGENT_STATES.map((s) => `${STATE_LABEL[s]}: ${a[s] || 0}`).join(', ');
    });
    $('#queues-empty').hidden = queues.length > 0;

    // Waiting contacts: each queue's in its suggested order (rank), queues as listed above.
    const order = new Map(queues.map((q, i) => [q.name, i]));
    const waiting = queues.flatMap((q) => (q.contacts || []).map((c) => Object.assign({ queue: q.name }, c)))
        .filter((c) => !queueFilter || c.queue === queueFilter)
        .sort((a, b) => order.get(a.queue) - order.get(b.queue) || a.rank - b.rank);
    const listed = queues.filter((q) => !queueFilter || q.name === queueFilter).reduce((s, q) => s + (q.waiting || 0), 0);
    sync($('#waiting-body'), waiting, (c) => c.contact_id, (c) => h('tr', { dataset: { contactId: c.contact_id } },
        h('td', { class: 'rank', dataset: { field: 'rank' } }),
        h('td', { class: 'who' }, h('span', { class: 'cname', dataset: { field: 'name' } }),
            h('span', { class: 'cflags', dataset: { field: 'flags' } })),
        h('td', { dataset: { field: 'tier' } }),
        h('td', { dataset: { field: 'risk' } }),
        h('td', { class: 'chan', dataset: { field: 'channel' } }),
        h('td', { class: 'q', dataset: { field: 'queue' } }),
        h('td', { class: 'num wait', dataset: { field: 'wait' } })),
    (row, c) => {
        const f = (name) => $(`[data-field="${name}"]`, row);
        row.dataset.rank = c.rank;
        row.dataset.queue = c.queue;
        setText(f('rank'), c.rank);
        setText(f('name'), c.name || c.customer_id);
        const flags = Array.isArray(c.flags) ? c.flags : [];
        setText(f('flags'), [flags.includes('vip') ? 'VIP' : '', c.partner ? 'partner' : ''].filter(Boolean).join(' · '));
        const tierKey = c.tier || '–';
        if (f('tier').dataset.v !== tierKey) {
            f('tier').dataset.v = tierKey;
            fill(f('tier'), h('span', { class: ['badge', 'tier-' + (c.tier || 'none')] }, `Tier ${tierKey}`));
        }
        const level = riskLevel(c.churn_risk);
        const riskKey = level + fmtPercent(c.churn_risk);
        if (f('risk').dataset.v !== riskKey) {
            f('risk').dataset.v = riskKey;
            fill(f('risk'), h('span', { class: ['badge', 'risk-' + level], title: `Churn risk ${level}` },
                level === 'high' ? `At risk ${fmtPercent(c.churn_risk)}` : `Risk ${fmtPercent(c.churn_risk)}`));
        }
        setText(f('channel'), channelLabel(c.channel));
        setText(f('queue'), c.queue);
        const w = f('wait');
        w.dataset.tickSince = sinceOf(c.wait_s);
        w.dataset.tickWarn = threshold;
        setText(w, fmtWait(c.wait_s));
    });
    $('#waiting-empty').hidden = waiting.length > 0;
    setText($('#waiting-count'), listed > waiting.length ? `${waiting.length} of ${listed} shown` : '');
    setText($('#waiting-scope'), queueFilter ? `queue ${queueFilter} · ` : '');

    // Agents by state
    const byState = new Map(AGENT_STATES.map((s) => [s, []]));
    for (const a of agents) (byState.get(a.state) || byState.get('offline')).push(a);
    sync($('#agent-states'), AGENT_STATES, (s) => s, (s) => h('li', { class: 'st st-' + s, dataset: { state: s } },
        h('span', { class: 'st-n' }), h('span', { class: 'st-label' }, STATE_LABEL[s])),
    (el, s) => setText($('.st-n', el), byState.get(s).length));
    const people = AGENT_STATES.filter((s) => s !== 'offline').flatMap((s) => byState.get(s)
        .sort((a, b) => parseTime(a.since) - parseTime(b.since)));
    sync($('#agent-list'), people, (a) => a.id, (a) => h('li', { class: 'agent' },
        h('span', { class: 'agent-dot', 'aria-hidden': 'true' }), h('span', { class: 'agent-id' }, a.id),
        h('span', { class: 'agent-for' })),
    (el, a) => {
        el.className = 'agent st-' + a.state;
        el.title = `${a.id}: ${STATE_LABEL[a.state] || a.state}` + (a.queues && a.queues.length ? ` · ${a.queues.join(', ')}` : '');
        const since = parseTime(a.since);
        const span = $('.agent-for', el);
        if (Number.isFinite(since)) {
            // Event times: measured against the gateway's clock at the message, then ticking.
            const serverNow = parseTime(msg.time);
            span.dataset.tickSince = boardAt - Math.max(0, (Number.isFinite(serverNow) ? serverNow : Date.now()) - since);
        }
    });
    $('#agents-empty').hidden = agents.length > 0;

    // Charts
    const apm = msg.alerts_per_minute || [];
    const max = drawBars($('#chart-alerts'), apm);
    setText($('#chart-alerts-max'), fmtNumber(max));
    setText($('#chart-alerts-now'), `${fmtNumber(apm.length ? apm[apm.length - 1] : 0)} now · ${fmtNumber(apm.reduce((s, v) => s + (v || 0), 0))} in 1 h`);
    const series = levelSeries(msg);
    drawLevel($('#chart-sl'), series, SL_TARGET);
    const lastSl = [...series].reverse().find((v) => v !== null && v !== undefined);
    setText($('#chart-sl-now'), lastSl === undefined ? 'no contacts' : `latest ${fmtPercent(lastSl)}`);

    $('#updated').dataset.tickSince = boardAt || Date.now();
    checkStale();
}

function checkStale() {
    const stale = !board || Date.now() - boardAt > STALE_AFTER_MS;
    document.body.classList.toggle('stale', Boolean(board) && stale);
    $('#stale-note').hidden = !(board && stale);
}

// ------------------------------------------------------------------------------------------
// The alert feed
// ------------------------------------------------------------------------------------------
function onFeed(alerts) {
    // Oldest first: each goes on top of the ones before it.
    for (const a of alerts) addAlert(a, false);
}

function addAlert(a, live) {
    if (!a || !a.id || feedIds.has(a.id)) return;
    feedIds.add(a.id);
    feed.unshift({ alert: a, live, at: Date.now() });
    while (feed.length > FEED_MAX) feedIds.delete(feed.pop().alert.id);
    renderFeed();
    if (live) {
        const el = $(`#feed li[data-alert-id="${CSS.escape(a.id)}"]`);
        if (el) {
            el.classList.add('fresh');
            setTimeout(() => el.classList.remove('fresh'), 4000);
        }
    }
}

function feedItem(entry) {
    const a = entry.alert;
    const sev = SEVERITY_LABEL[a.severity] ? a.severity : 'info';
    const reasons = reasonTexts(a);
    return h('li', { class: ['feed-item', 'sev-' + sev], dataset: { alertId: a.id, severity: sev, rule: a.rule } },
        h('time', { datetime: a.time }, fmtClock(a.time)),
        h('span', { class: 'sev-chip' }, SEVERITY_LABEL[sev]),
        h('div', { class: 'feed-main' },
            h('div', { class: 'feed-title' }, a.title || ruleLabel(a.rule)),
            h('div', { class: 'feed-meta' }, [
                reasons[0],
                a.queue && `queue ${a.queue}`,
                a.agent_id ? `agent ${a.agent_id}` : a.queue ? 'waiting' : null,
            ].filter(Boolean).join(' · '))));
}

function visible(entry) {
    const a = entry.alert;
    return filter.severities.includes(SEVERITY_LABEL[a.severity] ? a.severity : 'info') && (!filter.rule || filter.rule === a.rule);
}

function renderFeed() {
    const shown = feed.filter(visible);
    sync($('#feed'), shown.slice(0, 60), (e) => e.alert.id, feedItem, () => {});
    // Counts per severity and the rules seen, for the filters.
    const counts = Object.fromEntries(SEVERITIES.map((s) => [s, 0]));
    const rules = new Map();
    for (const e of feed) {
        counts[SEVERITY_LABEL[e.alert.severity] ? e.alert.severity : 'info']++;
        rules.set(e.alert.rule, (rules.get(e.alert.rule) || 0) + 1);
    }
    for (const s of SEVERITIES) {
        const btn = $(`#sev-filter button[data-severity="${s}"]`);
        btn.setAttribute('aria-pressed', String(filter.severities.includes(s)));
        setText($('.n', btn), counts[s]);
    }
    const sel = $('#rule-filter');
    const names = [...rules.keys()].sort();
    if (filter.rule && !rules.has(filter.rule)) names.push(filter.rule);
    const want = ['', ...names].join('|');
    if (sel.dataset.options !== want) {
        sel.dataset.options = want;
        fill(sel, h('option', { value: '' }, 'All rules'), names.map((r) => h('option', { value: r }, ruleLabel(r))));
    }
    sel.value = filter.rule;
    $('#feed-empty').hidden = shown.length > 0;
    setText($('#feed-empty'), feed.length ? 'No alert matches the filters.' : 'No alerts in the last hour.');
    setText(sel.options[0], feed.length ? `All rules (${feed.length})` : 'All rules');
    $('#feed-h').title = feed.length ? `${shown.length} of ${feed.length} alerts shown` : '';
}

function saveFilter() {
    storageSet(sessionStorage, FILTER_KEY, filter);
    renderFeed();
}

// ------------------------------------------------------------------------------------------
// Start
// ------------------------------------------------------------------------------------------
fill($('#sev-filter'), SEVERITIES.map((s) => h('button', {
    type: 'button', class: 'sev-' + s, dataset: { severity: s }, 'aria-pressed': 'true',
    onclick: () => {
        const on = filter.severities.includes(s);
        filter.severities = on ? filter.severities.filter((x) => x !== s) : [...filter.severities, s];
        saveFilter();
    },
}, h('span', { class: 'sev-swatch', 'aria-hidden': 'true' }), SEVERITY_LABEL[s], ' ', h('span', { class: 'n' }, '0'))));
$('#rule-filter').addEventListener('change', (e) => { filter.rule = e.target.value; saveFilter(); });

function clock() {
    setText($('#clock'), fmtClock(Date.now(), true));
    checkStale();
}

renderBoard();
renderFeed();
startTicker(clock);
session.begin();
