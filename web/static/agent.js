// agent.js - the agent desktop (/): the current customer from the screen pop, alerts as
// pop-ups by severity (critical ones stay until acknowledged) with their reasons in plain
// words and the suggested action, acknowledge and feedback on every alert, the alert history
// of the shift, a notification and a chime for critical alerts while the tab is in the
// background, an ARIA live region, and single-key shortcuts (press ? on the page).
//
// Kept in sessionStorage per agent, so that a reload loses nothing: the last alert seq seen
// (the resume point), the shift's alerts with their ack/feedback state, the current customer.
import { Session } from './conn.js';
import { playChime } from './sound.js';
import {
    $, $$, debounce, fill, fmtAgo, fmtClock, fmtDate, fmtMoney, fmtNumber, fmtPercent, h,
    parseTime, startTicker, storageGet, storageSet, typingIn,
} from './util.js';
import {
    SEVERITY_LABEL, TREND_ARROW, TREND_LABEL, channelLabel, factorText, humanize, reasonTexts,
    riskLevel, ruleLabel,
} from './words.js';

const MAX_HISTORY = 300;
const MAX_POPUPS = 3;
const AUTO_CLOSE_MS = { warning: 45000, info: 20000 };  // critical: never before the ack
const CLOSE_AFTER_ACK_MS = 30000;
const RESEND_AFTER_MS = 15000;
const OUTCOMES = ['Resolved on this contact', 'Escalated to a senior agent', 'Retention offer accepted',
    'Customer left anyway', 'Callback promised', 'Already handled', 'Not relevant'];

// ------------------------------------------------------------------------------------------
// State
// ------------------------------------------------------------------------------------------
let me = null;                 // the agent id (token sub)
let store = emptyStore();      // what is persisted for `me`
const entries = new Map();     // alert id -> entry (store.alerts holds the same objects)
const views = new Map();       // alert id -> Set of rendered cards (pop-up, history)
const timers = new Map();      // alert id -> pop-up auto-close timer

function emptyStore() {
    return { v: 1, lastSeq: null, shiftStart: Date.now(), alerts: [], customer: null, names: {} };
}

const storageKey = (sub) => 'integral.agent.' + sub;
const save = debounce(() => { if (me) storageSet(sessionStorage, storageKey(me), store); }, 150);
window.addEventListener('pagehide', () => save.flush());

function load(sub) {
    if (me === sub) return;
    me = sub;
    const saved = storageGet(sessionStorage, storageKey(sub));
    store = saved && saved.v === 1 ? saved : emptyStore();
    entries.clear();
    for (const e of store.alerts) entries.set(e.id, e);
    views.clear();
    fill($('#alerts-now'));
    renderHistory();
    renderCustomer();
    // Alerts still waiting for an acknowledgement come back as pop-ups; the rest stay closed.
    for (const e of store.alerts) e.popup = e.popup && (e.alert.severity === 'critical' && e.ack !== 'yes');
    renderPopups();
}

// ------------------------------------------------------------------------------------------
// The session
// ------------------------------------------------------------------------------------------
const session = new Session({
    role: 'agent',
    // This tab's shift (alerts, customer, resume point) shows at once, even offline.
    onToken(claims) {
        if (claims.sub) load(claims.sub);
    },
    getResume() {
        if (session.claims && session.claims.sub) load(session.claims.sub);
        return store.lastSeq;
    },
    onBadResume() {
        store.lastSeq = null;
        save();
    },
    onWelcome(msg) {
        load(msg.sub);
        if (msg.resume && msg.resume.after) {
            store.lastSeq = msg.resume.after;
            save();
        }
        banner(msg.resume && msg.resume.gap
            ? `You were away longer than ${Math.round(msg.resume.window_s / 60)} minutes: alerts raised before then could not be recovered.`
            : '');
        resendPending(0);
    },
    onMessage(msg) {
        switch (msg.type) {
        case 'alert':
            if (msg.seq) { store.lastSeq = msg.seq; save(); }
            if (msg.alert) addAlert(msg.alert, msg.seq);
            break;
        case 'screen_pop': onScreenPop(msg); break;
        case 'recorded': onRecorded(msg); break;
        case 'error': onError(msg); break;
        default: break;
        }
    },
    onSignOut() {
        if (me) storageSet(sessionStorage, storageKey(me), null);
        me = null;
        store = emptyStore();
        entries.clear();
        views.clear();
        fill($('#alerts-now'));
        renderPopups();
        renderHistory();
        renderCustomer();
        banner('');
    },
});

function banner(text) {
    const el = $('#banner');
    el.textContent = text;
    el.hidden = !text;
}

// ------------------------------------------------------------------------------------------
// Alerts
// ------------------------------------------------------------------------------------------
function addAlert(alert, seq) {
    if (!alert || !alert.id) return;
    const known = entries.get(alert.id);
    if (known) {
        if (seq && !known.seq) { known.seq = seq; save(); }
        return;
    }
    const e = {
        id: alert.id, seq: seq || null, alert, at: Date.now(),
        ack: 'no', ackAt: null, ackSent: 0,
        fb: null, fbSent: 0, draft: { useful: null, outcome: '' },
        popup: true,
    };
    entries.set(e.id, e);
    store.alerts.unshift(e);
    while (store.alerts.length > MAX_HISTORY) {
        const old = store.alerts.pop();
        entries.delete(old.id);
        views.delete(old.id);
    }
    save();
    prependHistory(e);
    renderPopups();
    announce(e);
    notifyIfHidden(e);
    refreshCustomerFor(alert);
}

function customerName(alert) {
    return store.names[alert.customer_id] || alert.customer_id || 'Unknown customer';
}

function ack(e) {
    if (e.ack !== 'no') return;
    e.ack = 'sending';
    e.ackSent = 0;
    save();
    update(e);
    resendPending(0);
}

function chooseUseful(e, useful) {
    e.draft.useful = e.draft.useful === useful ? null : useful;
    save();
    update(e);
}

function sendFeedback(e) {
    if (e.draft.useful === null) return;
    e.fb = { useful: e.draft.useful, outcome: e.draft.outcome.trim().slice(0, 300), state: 'sending' };
    e.fbSent = 0;
    // Feedback implies the alert was seen.
    if (e.ack === 'no') { e.ack = 'sending'; e.ackSent = 0; }
    save();
    update(e);
    resendPending(0);
}

// Sends what is not recorded yet: at once, and again when no answer came within a while.
function resendPending(minAge = RESEND_AFTER_MS) {
    const now = Date.now();
    for (const e of store.alerts) {
        if (e.ack === 'sending' && now - e.ackSent >= minAge) {
            if (session.send({ type: 'ack', alert_id: e.id })) e.ackSent = now;
        }
        if (e.fb && e.fb.state === 'sending' && now - e.fbSent >= minAge) {
            const msg = { type: 'feedback', alert_id: e.id, useful: e.fb.useful };
            if (e.fb.outcome) msg.outcome = e.fb.outcome;
            if (session.send(msg)) e.fbSent = now;
        }
    }
}
setInterval(() => resendPending(), 5000);

function onRecorded(msg) {
    const e = entries.get(msg.alert_id);
    if (!e) return;
    if (msg.what === 'ack' && e.ack !== 'yes') {
        e.ack = 'yes';
        e.ackAt = Date.now();
        armClose(e);
        say('polite', `Acknowledged: ${e.alert.title}`);
    } else if (msg.what === 'feedback' && e.fb) {
        e.fb.state = 'yes';
        say('polite', 'Feedback recorded. Thank you.');
        if (e.popup && e.ack === 'yes') armClose(e, 4000);
    }
    save();
    update(e);
}

let retrySoon = null;
function onError(msg) {
    if (msg.ref === 'ack' || msg.ref === 'feedback') {
        if (msg.code === 'unavailable' || msg.code === 'rate_limited') {
            // Everything unrecorded goes again shortly (msg.alert_id names the one refused;
            // a rate limit refuses without reading it).
            clearTimeout(retrySoon);
            retrySoon = setTimeout(() => resendPending(0), 2000);
            return;
        }
        banner(`The gateway refused a ${msg.ref}: ${msg.message || msg.code}`);
    }
}

// ------------------------------------------------------------------------------------------
// Alert cards: the same card in a pop-up and in the shift's history, kept in step by update()
// ------------------------------------------------------------------------------------------
let cardSeq = 0;

function card(e, where) {
    const a = e.alert;
    const sev = SEVERITY_LABEL[a.severity] ? a.severity : 'info';
    const id = `c${++cardSeq}`;
    const reasons = reasonTexts(a);
    const v = {};
    v.useful = h('button', { type: 'button', class: 'choice', 'aria-pressed': 'false', onclick: () => chooseUseful(e, true) }, 'Useful');
    v.notUseful = h('button', { type: 'button', class: 'choice', 'aria-pressed': 'false', onclick: () => chooseUseful(e, false) }, 'Not useful');
    v.outcome = h('input', {
        type: 'text', class: 'outcome', maxlength: 300, list: 'outcomes', placeholder: 'Outcome (optional)',
        'aria-label': 'Outcome', autocomplete: 'off',
        oninput: (ev) => { e.draft.outcome = ev.target.value; save(); syncDrafts(e, ev.target); },
        onkeydown: (ev) => { if (ev.key === 'Enter') { ev.preventDefault(); sendFeedback(e); } },
    });
    v.outcome.value = e.draft.outcome;
    v.send = h('button', { type: 'button', class: 'send', onclick: () => sendFeedback(e) }, 'Send');
    v.ack = h('button', { type: 'button', class: 'ack primary', onclick: () => ack(e) }, 'Acknowledge');
    v.ackState = h('span', { class: 'ack-state' });
    v.fbState = h('span', { class: 'fb-state' });
    v.close = where === 'popup'
        ? h('button', { type: 'button', class: 'close', 'aria-label': 'Close this pop-up (the alert stays in the list)', title: 'Close (Esc)', onclick: () => closePopup(e) }, '×')
        : null;
    v.root = h('article', {
        class: ['alert', 'sev-' + sev, where], dataset: { alertId: a.id, severity: sev, rule: a.rule, customerId: a.customer_id },
        'aria-labelledby': id + 't', tabindex: '-1',
    },
    h('header', { class: 'alert-head' },
        h('span', { class: 'sev-chip' }, SEVERITY_LABEL[sev]),
        h('h3', { id: id + 't', class: 'alert-title' }, a.title || ruleLabel(a.rule)),
        h('time', { class: 'alert-time', datetime: a.time }, fmtClock(a.time)),
        v.close),
    h('p', { class: 'alert-meta' },
        [customerName(a), a.queue && `queue ${a.queue}`, a.channel && channelLabel(a.channel), ruleLabel(a.rule)]
            .filter(Boolean).join(' · ')),
    reasons.length ? h('div', { class: 'why' },
        h('h4', {}, 'Why'),
        h('ul', {}, reasons.map((r) => h('li', {}, r)))) : null,
    where === 'history' && a.message ? h('p', { class: 'alert-message' }, a.message) : null,
    a.action ? h('div', { class: 'action' }, h('h4', {}, 'Suggested action'), h('p', {}, a.action)) : null,
    h('div', { class: 'controls' },
        h('div', { class: 'ack-row' }, v.ack, v.ackState),
        h('div', { class: 'fb-row', role: 'group', 'aria-label': 'Was this alert useful?' },
            v.useful, v.notUseful, v.outcome, v.send),
        v.fbState));
    if (!views.has(e.id)) views.set(e.id, new Set());
    views.get(e.id).add(v);
    v.where = where;
    updateView(v, e);
    return v;
}

function syncDrafts(e, source) {
    for (const v of views.get(e.id) || []) if (v.outcome !== source) v.outcome.value = e.draft.outcome;
}

function updateView(v, e) {
    const acked = e.ack === 'yes';
    v.root.dataset.ack = e.ack;
    v.root.dataset.feedback = e.fb ? e.fb.state : 'no';
    v.ack.hidden = acked;
    v.ack.disabled = e.ack === 'sending';
    v.ack.textContent = e.ack === 'sending' ? 'Acknowledging…' : 'Acknowledge';
    fill(v.ackState, acked ? `Acknowledged at ${fmtClock(e.ackAt || Date.now())}` : '');
    v.useful.setAttribute('aria-pressed', String(e.draft.useful === true));
    v.notUseful.setAttribute('aria-pressed', String(e.draft.useful === false));
    const sent = e.fb && e.fb.useful === e.draft.useful && e.fb.outcome === e.draft.outcome.trim();
    v.send.disabled = e.draft.useful === null || (sent && e.fb.state === 'yes');
    v.send.textContent = e.fb && e.fb.state === 'sending' && sent ? 'Sending…' : e.fb && !sent ? 'Update' : 'Send';
    v.send.setAttribute('aria-label', e.fb ? 'Update the feedback' : 'Send the feedback');
    fill(v.fbState, !e.fb ? ''
        : e.fb.state === 'yes'
            ? `Feedback recorded: ${e.fb.useful ? 'useful' : 'not useful'}${e.fb.outcome ? ' – ' + e.fb.outcome : ''}`
            : 'Sending feedback…');
    if (v.close) {
        // A critical pop-up stays until it is acknowledged.
        v.close.hidden = e.alert.severity === 'critical' && !acked;
    }
    if (v.status) {
        v.status.dataset.state = e.fb && e.fb.state === 'yes' ? 'feedback' : acked ? 'acked' : 'new';
        v.status.textContent = e.fb && e.fb.state === 'yes' ? (e.fb.useful ? 'Useful' : 'Not useful') : acked ? 'Acknowledged' : 'New';
    }
}

function update(e) {
    for (const v of views.get(e.id) || []) updateView(v, e);
    updateTitle();
    updateCounts();
}

// ------------------------------------------------------------------------------------------
// Pop-ups
// ------------------------------------------------------------------------------------------
function popupOrder(a, b) {
    const crit = (e) => (e.alert.severity === 'critical' && e.ack !== 'yes' ? 0 : 1);
    return crit(a) - crit(b) || b.at - a.at;
}

function renderPopups() {
    const box = $('#alerts-now');
    const open = store.alerts.filter((e) => e.popup).sort(popupOrder);
    const shown = open.slice(0, MAX_POPUPS);
    const keep = new Set(shown.map((e) => e.id));
    for (const el of $$('article.popup', box)) {
        if (!keep.has(el.dataset.alertId)) {
            dropView(el);
            el.remove();
        }
    }
    let prev = null;
    for (const e of shown) {
        let el = $(`article.popup[data-alert-id="${CSS.escape(e.id)}"]`, box);
        if (!el) {
            el = card(e, 'popup').root;
            el.classList.add('enter');
            el.addEventListener('animationend', () => el.classList.remove('enter'), { once: true });
            armClose(e);
        }
        const first = $('.more', box) ? $('.more', box).nextElementSibling : box.firstElementChild;
        if (prev ? prev.nextElementSibling !== el : first !== el) {
            if (prev) prev.after(el); else if ($('.more', box)) $('.more', box).after(el); else box.prepend(el);
        }
        prev = el;
    }
    let more = $('.more', box);
    const hidden = open.length - shown.length;
    if (hidden > 0) {
        if (!more) more = h('p', { class: 'more' });
        fill(more, `${hidden} more new alert${hidden === 1 ? '' : 's'} below, in the list`);
        if (box.firstElementChild !== more) box.prepend(more);
    } else if (more) more.remove();
    box.hidden = shown.length === 0;
    updateTitle();
}

function dropView(el) {
    const set = views.get(el.dataset.alertId);
    if (!set) return;
    for (const v of set) if (v.root === el) set.delete(v);
}

function closePopup(e, moveFocus = true) {
    if (!e.popup) return;
    const hadFocus = document.activeElement && document.activeElement.closest(`article.popup[data-alert-id="${CSS.escape(e.id)}"]`);
    e.popup = false;
    clearTimeout(timers.get(e.id));
    timers.delete(e.id);
    save();
    renderPopups();
    if (hadFocus && moveFocus) {
        const next = $('#alerts-now article.popup');
        (next || $('#history-h')).focus();
    }
}

// Non-critical pop-ups close by themselves, critical ones after their acknowledgement;
// never while the pointer or the focus is on them.
function armClose(e, delay) {
    clearTimeout(timers.get(e.id));
    if (!e.popup) return;
    let ms = delay;
    if (!ms) {
        if (e.ack === 'yes') ms = CLOSE_AFTER_ACK_MS;
        else if (e.alert.severity === 'critical') return;
        else ms = AUTO_CLOSE_MS[e.alert.severity] || AUTO_CLOSE_MS.info;
    }
    timers.set(e.id, setTimeout(function check() {
        const el = $(`#alerts-now article.popup[data-alert-id="${CSS.escape(e.id)}"]`);
        if (el && (el.matches(':hover') || el.matches(':focus-within') || (e.draft.useful !== null && (!e.fb || e.fb.state !== 'yes')))) {
            timers.set(e.id, setTimeout(check, 5000));
            return;
        }
        closePopup(e, false);
    }, ms));
}

// ------------------------------------------------------------------------------------------
// The shift's history
// ------------------------------------------------------------------------------------------
function historyItem(e) {
    const a = e.alert;
    const v = card(e, 'history');
    const status = h('span', { class: 'status-chip' });
    v.status = status;
    updateView(v, e);
    const li = h('li', { class: ['hist', 'sev-' + a.severity], dataset: { alertId: a.id, rule: a.rule, customerId: a.customer_id } },
        h('details', {},
            h('summary', {},
                h('span', { class: 'sev-dot', 'aria-hidden': 'true' }),
                h('span', { class: 'sr-only' }, SEVERITY_LABEL[a.severity] || a.severity),
                h('span', { class: 'hist-title' }, a.title || ruleLabel(a.rule)),
                h('span', { class: 'hist-meta' }, `${customerName(a)} · ${fmtClock(a.time)}`),
                status),
            v.root));
    return li;
}

function prependHistory(e) {
    const list = $('#history');
    list.prepend(historyItem(e));
    while (list.children.length > MAX_HISTORY) {
        dropView($('article', list.lastElementChild));
        list.lastElementChild.remove();
    }
    updateCounts();
}

function renderHistory() {
    const list = $('#history');
    fill(list, store.alerts.map(historyItem));
    updateCounts();
    $('#shift-start').textContent = `since ${fmtClock(store.shiftStart)}`;
}

function updateCounts() {
    const open = store.alerts.filter((e) => e.ack !== 'yes').length;
    $('#history-count').textContent = store.alerts.length
        ? `${store.alerts.length} · ${open} to acknowledge` : '';
    $('#history-empty').hidden = store.alerts.length > 0;
}

// ------------------------------------------------------------------------------------------
// Announcements, notifications, the tab title
// ------------------------------------------------------------------------------------------
function say(politeness, text) {
    const el = $(politeness === 'assertive' ? '#live-assertive' : '#live-polite');
    // Clear first so that the same text is announced again.
    el.textContent = '';
    setTimeout(() => { el.textContent = text; }, 50);
}

function announce(e) {
    const a = e.alert;
    const reasons = reasonTexts(a);
    say(a.severity === 'critical' ? 'assertive' : 'polite',
        `${SEVERITY_LABEL[a.severity] || ''} alert for ${customerName(a)}: ${a.title}. ` +
        (reasons.length ? `Why: ${reasons.join('; ')}. ` : '') +
        (a.action ? `Suggested action: ${a.action}` : '') + ' Press A to acknowledge.');
}

const NOTIFY_KEY = 'integral.notify';
function notifyOn() {
    return storageGet(localStorage, NOTIFY_KEY) === 'on';
}

function renderNotifyButton() {
    const btn = $('#notify-btn');
    const on = notifyOn();
    const denied = 'Notification' in window && Notification.permission === 'denied';
    btn.setAttribute('aria-pressed', String(on));
    btn.textContent = on ? (denied ? 'Sound on (notifications blocked)' : 'Sound & notifications on') : 'Turn on sound & notifications';
    btn.title = 'For critical alerts while this tab is in the background';
}

async function toggleNotify() {
    if (notifyOn()) {
        storageSet(localStorage, NOTIFY_KEY, 'off');
    } else {
        storageSet(localStorage, NOTIFY_KEY, 'on');
        if ('Notification' in window && Notification.permission === 'default') {
            try { await Notification.requestPermission(); } catch { /* older API: ignored */ }
        }
        playChime(); // this is how a critical alert will sound
    }
    renderNotifyButton();
}

function notifyIfHidden(e) {
    const a = e.alert;
    if (a.severity !== 'critical' || document.visibilityState !== 'hidden' || !notifyOn()) return;
    playChime();
    if (!('Notification' in window) || Notification.permission !== 'granted') return;
    try {
        const n = new Notification(`Critical alert: ${a.title}`, {
            body: [customerName(a), ...reasonTexts(a), a.action].filter(Boolean).join('\n'),
            tag: a.id,
            requireInteraction: true,
        });
        n.onclick = () => {
            window.focus();
            const el = $(`#alerts-now article.popup[data-alert-id="${CSS.escape(a.id)}"]`);
            if (el) el.focus();
            n.close();
        };
    } catch { /* notifications unavailable in this context */ }
}

function updateTitle() {
    const n = store.alerts.filter((e) => e.alert.severity === 'critical' && e.ack !== 'yes').length;
    document.title = (n ? `(${n}) ` : '') + 'Agent desktop – Integral';
}

// ------------------------------------------------------------------------------------------
// The current customer
// ------------------------------------------------------------------------------------------
function onScreenPop(msg) {
    const c = msg.customer || null;
    const name = c && c.profile && c.profile.name;
    if (c && name) store.names[c.id] = name;
    else if (msg.contact && msg.contact.customer_id && !store.names[msg.contact.customer_id]) store.names[msg.contact.customer_id] = msg.contact.customer_id;
    store.customer = { contact: msg.contact || null, customer: c, at: Date.now() };
    save();
    renderCustomer();
    for (const a of msg.alerts || []) addAlert(a, null);
    const who = name || (msg.contact && msg.contact.customer_id) || 'unknown customer';
    say('polite', `New contact: ${who}` + (c ? `, tier ${c.tier || 'unknown'}, churn risk ${fmtPercent(c.churn_risk)}.` : '.'));
}

// The screen pop is a snapshot: the document is read again when an alert says it changed,
// or when an alert arrives and no customer is on screen (e.g. the pop was missed offline).
let fetching = null;
function refreshCustomerFor(alert) {
    const current = store.customer && store.customer.customer;
    const cid = alert.customer_id;
    if (!cid || !session.token || fetching === cid) return;
    if (store.customer && (!current || current.id !== cid)) return;
    fetching = cid;
    fetch('/api/customers/' + encodeURIComponent(cid), { headers: { Authorization: 'Bearer ' + session.token } })
        .then((r) => (r.ok ? r.json() : null))
        .then((doc) => {
            if (!doc || doc.id !== cid) return;
            if (store.customer && store.customer.customer && store.customer.customer.id !== cid) return;
            const contact = store.customer ? store.customer.contact : (doc.contact ? {
                customer_id: cid, contact_id: doc.contact.id, channel: doc.contact.channel,
                queue: doc.contact.queue, time: doc.contact.started || doc.contact.queued_since,
            } : null);
            if (doc.profile && doc.profile.name) store.names[cid] = doc.profile.name;
            store.customer = { contact, customer: doc, at: store.customer ? store.customer.at : Date.now() };
            save();
            renderCustomer();
        })
        .catch(() => { /* offline: the snapshot stays */ })
        .finally(() => { fetching = null; });
}

function badge(cls, text, label) {
    return h('span', { class: ['badge', cls], title: label || null }, text);
}

function tierBadge(tier) {
    return tier ? badge('tier tier-' + tier, `Tier ${tier}`, `Customer tier ${tier}`) : badge('tier', 'Tier –', 'Not scored yet');
}

function riskBadge(churn) {
    const level = riskLevel(churn);
    return badge('risk risk-' + level, `Churn risk ${fmtPercent(churn)}`, `Churn risk ${level}`);
}

function stat(label, value, note) {
    return h('div', { class: 'stat' }, h('div', { class: 'stat-label' }, label), h('div', { class: 'stat-value' }, value),
        note ? h('div', { class: 'stat-note' }, note) : null);
}

const ORDER_STATUS = { placed: 'Placed', shipped: 'Shipped', delayed: 'Delayed', out_of_stock: 'Out of stock', delivered: 'Delivered', cancelled: 'Cancelled', returned: 'Returned' };

function renderCustomer() {
    const box = $('#customer-body');
    const cur = store.customer;
    $('#customer-clear').hidden = !cur;
    if (!cur) {
        fill(box, h('div', { class: 'empty' },
            h('p', { class: 'empty-title' }, 'No customer yet'),
            h('p', {}, 'When a contact reaches you, the customer’s details appear here: value, churn risk and why, open orders and the last interactions.')));
        return;
    }
    const c = cur.customer;
    const k = cur.contact || {};
    const started = parseTime(k.time) || cur.at;
    const contactLine = h('p', { class: 'contact-line' },
        h('span', { class: 'chan' }, channelLabel(k.channel)),
        k.queue ? ` · queue ${k.queue}` : '',
        k.contact_id ? ` · contact ${k.contact_id}` : '',
        ' · with you for ', h('span', { dataset: { tickSince: Math.min(started, Date.now()), tickFormat: 'span' } }, ''));
    if (!c) {
        fill(box, h('div', { class: 'cust-head' }, h('h3', { class: 'cust-name' }, k.customer_id || 'Unknown customer')),
            contactLine,
            h('p', { class: 'empty' }, 'Integral knows nothing about this customer yet.'));
        return;
    }
    const p = c.profile || {};
    const counts = c.counts || {};
    const money = c.money || {};
    const survey = c.survey || {};
    const churn = (c.factors && c.factors.churn) || [];
    const orders = c.open_orders || [];
    const timeline = (c.timeline || []).slice(0, 12);
    const profileBits = [p.segment && `segment ${p.segment}`, p.language && `language ${p.language}`,
        p.since && `customer since ${fmtDate(p.since)}`, c.partner && 'partner account'].filter(Boolean);

    fill(box,
        h('div', { class: 'cust-head' },
            h('h3', { class: 'cust-name' }, p.name || c.id),
            h('div', { class: 'badges' }, tierBadge(c.tier), riskBadge(c.churn_risk),
                c.trend ? badge('trend trend-' + c.trend, `${TREND_ARROW[c.trend] || ''} ${TREND_LABEL[c.trend] || c.trend}`, 'Revenue trend over 90 days') : null)),
        contactLine,
        profileBits.length ? h('p', { class: 'profile-line' }, profileBits.join(' · ')) : null,
        h('div', { class: 'stats' },
            stat('Value, 12 months', fmtMoney(c.value)),
            stat('Revenue, 12 months', fmtMoney(money.revenue_12m), `${fmtNumber(money.orders_12m)} orders`),
            stat('Contacts, 30 days', fmtNumber(counts.contacts_30d), `${fmtNumber(counts.support_contacts_30d)} for support`),
            stat('Satisfaction', survey.csat !== null && survey.csat !== undefined ? `${survey.csat}/5` : '–',
                survey.nps !== null && survey.nps !== undefined ? `NPS ${survey.nps}/10` : 'no survey')),
        h('div', { class: 'cust-cols' },
            h('section', { class: 'sub', 'aria-labelledby': 'why-h' },
                h('h4', { id: 'why-h' }, `Why the churn risk is ${fmtPercent(c.churn_risk)}`),
                churn.length ? h('ul', { class: 'factors' }, churn.map((f) => h('li', {}, factorText(f))))
                    : h('p', { class: 'muted' }, 'Nothing raises it.'),
                h('h4', {}, 'Orders'),
                orders.length ? h('table', { class: 'orders' },
                    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Order'), h('th', { scope: 'col' }, 'Status'),
                        h('th', { scope: 'col', class: 'num' }, 'Amount'), h('th', { scope: 'col' }, 'Updated'))),
                    h('tbody', {}, orders.slice(0, 6).map((o) => h('tr', { class: 'st-' + o.status },
                        h('td', {}, o.id),
                        h('td', {}, h('span', { class: ['pill', 'st-' + o.status] }, ORDER_STATUS[o.status] || humanize(o.status))),
                        h('td', { class: 'num' }, o.amount === null ? '–' : fmtMoney(o.amount)),
                        h('td', {}, fmtAgo(o.time))))))
                    : h('p', { class: 'muted' }, 'No open orders.'),
                counts.delayed_orders ? h('p', { class: 'warn-note' },
                    `${counts.delayed_orders} order${counts.delayed_orders === 1 ? ' is' : 's are'} delayed or out of stock.`) : null),
            h('section', { class: 'sub', 'aria-labelledby': 'tl-h' },
                h('h4', { id: 'tl-h' }, 'Last interactions'),
                timeline.length ? h('ol', { class: 'timeline' }, timeline.map((t) => h('li', {},
                    h('time', { datetime: t.time, dataset: { tickSince: parseTime(t.time), tickFormat: 'ago' } }, fmtAgo(t.time)),
                    h('span', {}, t.text)))) : h('p', { class: 'muted' }, 'None yet.'))));
}

// ------------------------------------------------------------------------------------------
// Keyboard
// ------------------------------------------------------------------------------------------
// The alert a shortcut acts on: the one holding the focus, else the first pop-up, else the
// newest one not acknowledged.
function targetEntry() {
    const el = document.activeElement && document.activeElement.closest && document.activeElement.closest('article.alert');
    if (el && entries.has(el.dataset.alertId)) return entries.get(el.dataset.alertId);
    const pop = $('#alerts-now article.popup');
    if (pop) return entries.get(pop.dataset.alertId);
    return store.alerts.find((e) => e.ack !== 'yes') || null;
}

function focusCard(e) {
    const el = $(`#alerts-now article.popup[data-alert-id="${CSS.escape(e.id)}"]`) ||
        $(`#history li[data-alert-id="${CSS.escape(e.id)}"] article`);
    if (el) {
        const d = el.closest('details');
        if (d) d.open = true;
        el.focus();
    }
    return el;
}

document.addEventListener('keydown', (ev) => {
    if (ev.defaultPrevented || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if ($('#signin').open) return;
    if (ev.key === 'Escape') {
        if ($('#help').open) return;
        const e = targetEntry();
        if (e && e.popup && !(e.alert.severity === 'critical' && e.ack !== 'yes')) {
            ev.preventDefault();
            closePopup(e);
        }
        return;
    }
    if (typingIn(ev.target)) return;
    const key = ev.key.toLowerCase();
    const e = ['a', 'u', 'n', 'o'].includes(key) ? targetEntry() : null;
    switch (key) {
    case 'a': if (e) { ack(e); focusCard(e); } break;
    case 'u': if (e) { e.draft.useful = true; sendFeedback(e); focusCard(e); } break;
    case 'n': if (e) { e.draft.useful = false; sendFeedback(e); focusCard(e); } break;
    case 'o': if (e) { const el = focusCard(e); if (el) $('.outcome', el).focus(); } break;
    case 'p': { const el = $('#alerts-now article.popup'); if (el) el.focus(); break; }
    case 'h': $('#history-h').focus(); break;
    case 'c': $('#customer-h').focus(); break;
    case '?': $('#help').showModal(); break;
    default: return;
    }
    ev.preventDefault();
});

// ------------------------------------------------------------------------------------------
// Start
// ------------------------------------------------------------------------------------------
fill($('#outcomes'), OUTCOMES.map((o) => h('option', { value: o })));
$('#notify-btn').addEventListener('click', toggleNotify);
$('#help-btn').addEventListener('click', () => $('#help').showModal());
$('#help-close').addEventListener('click', () => $('#help').close());
$('#customer-clear').addEventListener('click', () => {
    store.customer = null;
    save();
    renderCustomer();
    $('#customer-h').focus();
});
document.addEventListener('visibilitychange', updateTitle);
renderNotifyButton();
renderHistory();
renderCustomer();
renderPopups();
startTicker();
session.begin();
