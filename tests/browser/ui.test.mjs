// ui.test.mjs - the agent desktop and the wallboard in Debian's chromium, driven by
// playwright-core. Run by tests/integration/it_browser.py, which owns the stack (engine,
// gateway, Kafka) and answers this script's requests ("@@ {json}" lines on stdout, one JSON
// answer line on stdin). Every wait is on a condition; nothing sleeps for a fixed time.
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { chromium } from 'playwright-core';

const env = (k) => {
    if (!process.env[k]) throw new Error(`missing environment variable ${k}`);
    return process.env[k];
};
const BASE = env('BASE_URL');
const A1 = env('AGENT_1');
const A2 = env('AGENT_2');
const Q1 = env('QUEUE_1');
const Q2 = env('QUEUE_2');
const ADA = env('CUSTOMER_ADA');
const BARBARA = env('CUSTOMER_BARBARA');
const ARTIFACTS = env('ARTIFACTS');
const TIMEOUT = 20000;

// ------------------------------------------------------------------------------------------
// Talking to it_browser.py
// ------------------------------------------------------------------------------------------
const pending = new Map();
let nextId = 1;
const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
    const m = JSON.parse(line);
    const p = pending.get(m.id);
    if (!p) return;
    pending.delete(m.id);
    if (m.ok) p.resolve(m.result);
    else p.reject(new Error(`stack request failed: ${m.error}`));
});

function ctl(op, args = {}) {
    const id = nextId++;
    process.stdout.write('@@ ' + JSON.stringify({ id, op, ...args }) + '\n');
    return new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
}

// ------------------------------------------------------------------------------------------
// Checks
// ------------------------------------------------------------------------------------------
function ok(cond, what) {
    if (!cond) throw new Error(what);
    console.log('ok - ' + what);
}

// Waits until fn(arg) is truthy in the page; fails naming what was awaited.
async function until(page, what, fn, arg, timeout = TIMEOUT) {
    const t0 = Date.now();
    try {
        const handle = await page.waitForFunction(fn, arg, { timeout, polling: 100 });
        const value = await handle.jsonValue();
        const ms = Date.now() - t0;
        console.log('ok - ' + what + (ms >= 500 ? ` (${(ms / 1000).toFixed(1)} s)` : ''));
        return value;
    } catch (e) {
        throw new Error(`${what}: not within ${timeout} ms (${e.message.split('\n')[0]})`);
    }
}

const errors = [];
function watch(page, name) {
    page.on('pageerror', (e) => errors.push(`${name}: uncaught ${e.message}`));
    page.on('console', (m) => {
        // A WebSocket that cannot connect while the gateway is down is expected.
        if (m.type() === 'error' && !/WebSocket connection to .* failed/.test(m.text())) errors.push(`${name}: console: ${m.text()}`);
    });
    page.on('response', (r) => { if (r.status() >= 400) errors.push(`${name}: HTTP ${r.status()} ${r.url()}`); });
}

// In the first agent's page: a switchable "tab hidden", and recorders for notifications and
// sounds (a headless browser has no notification centre and no speakers).
function instrument() {
    let hidden = false;
    window.__notes = { notifications: [], plays: 0 };
    window.__setHidden = (v) => {
        hidden = v;
        document.dispatchEvent(new Event('visibilitychange'));
    };
    Object.defineProperty(Document.prototype, 'visibilityState', { configurable: true, get: () => (hidden ? 'hidden' : 'visible') });
    Object.defineProperty(Document.prototype, 'hidden', { configurable: true, get: () => hidden });
    window.Notification = class {
        static get permission() { return 'granted'; }
        static requestPermission() { return Promise.resolve('granted'); }
        constructor(title, opts = {}) { window.__notes.notifications.push({ title, body: opts.body, tag: opts.tag }); }
        close() {}
    };
    HTMLMediaElement.prototype.play = function play() {
        window.__notes.plays++;
        return Promise.resolve();
    };
}

const popup = (rule) => `#alerts-now article.popup[data-rule="${rule}"]`;

async function main() {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    // As root (CI) chromium needs --no-sandbox; containers often have a tiny /dev/shm.
    const browser = await chromium.launch({ executablePath: env('CHROMIUM'), args: ['--no-sandbox', '--disable-dev-shm-usage'] });
    const pages = {};
    try {
        const context = async () => browser.newContext({ viewport: { width: 1366, height: 768 }, deviceScaleFactor: 1, locale: 'en-GB' });
        const c1 = await context();
        await c1.addInitScript(instrument);
        const p1 = pages.agent1 = await c1.newPage();
        const p2 = pages.agent2 = await (await context()).newPage();
        const ps = pages.supervisor = await (await context()).newPage();
        for (const [name, p] of Object.entries(pages)) watch(p, name);
        await run(p1, p2, ps);
    } catch (e) {
        console.log('FAIL: ' + e.message);
        for (const [name, p] of Object.entries(pages)) {
            const file = path.join(ARTIFACTS, `failed-${name}.png`);
            await p.screenshot({ path: file }).catch(() => {});
            console.log(`# screenshot at the failure: ${file}`);
        }
        process.exitCode = 1;
    } finally {
        await browser.close();
        rl.close();
    }
}

async function run(p1, p2, ps) {
    // -- Signing in -----------------------------------------------------------------------
    await p1.goto(`${BASE}/?token=${env('TOKEN_1')}`);
    await until(p1, 'agent 1 connects with the token of the URL', () => document.querySelector('#conn').dataset.state === 'online');
    ok(!p1.url().includes('token='), 'the token is removed from the address bar');
    ok(await p1.evaluate(() => sessionStorage.getItem('integral.token.agent')) === JSON.stringify(env('TOKEN_1')),
        'the token is kept in sessionStorage');
    ok((await p1.textContent('#who')).includes(A1), 'the page names the agent');

    await p2.goto(`${BASE}/`);
    await until(p2, 'without a token the sign-in form opens', () => document.querySelector('#signin').open);
    await p2.fill('#signin-token', 'not-a-token');
    await p2.click('#signin button[type=submit]');
    await until(p2, 'a malformed token is refused in the form', () => !document.querySelector('#signin-error').hidden);
    await p2.fill('#signin-token', env('TOKEN_SUP'));
    await p2.click('#signin button[type=submit]');
    await until(p2, 'a supervisor token on the agent desktop is refused with a pointer to /supervisor',
        () => document.querySelector('#signin-error').textContent.includes('/supervisor'));
    await p2.fill('#signin-token', env('TOKEN_2'));
    await p2.click('#signin button[type=submit]');
    await until(p2, 'agent 2 signs in with the form', () => !document.querySelector('#signin').open && document.querySelector('#conn').dataset.state === 'online');

    await ps.goto(`${BASE}/supervisor?token=${env('TOKEN_SUP')}`);
    await until(ps, 'the wallboard connects', () => document.querySelector('#conn').dataset.state === 'online');
    ok((await ps.textContent('#scope')).includes(Q1), 'the wallboard names its queues');

    // -- Contacts queue up ------------------------------------------------------------------
    await ctl('produce', { step: 'setup' });
    const queueIs = (q, field, value) => ({ q, field, value });
    const cell = ({ q, field, value }) => {
        const el = document.querySelector(`#queues-body tr[data-queue="${q}"] [data-field="${field}"]`);
        return el && el.textContent.trim() === value;
    };
    await until(ps, `the wallboard shows 3 waiting in ${Q1}`, cell, queueIs(Q1, 'waiting', '3'));
    await until(ps, `and 2 waiting in ${Q2}`, cell, queueIs(Q2, 'waiting', '2'));
    const waitingIn = (q) => ps.$$eval(`#waiting-body tr[data-queue="${q}"]`, (rows) => rows.map((r) => ({
        rank: Number(r.dataset.rank),
        name: r.querySelector('[data-field="name"]').textContent,
        tier: r.querySelector('[data-field="tier"]').textContent,
        risk: r.querySelector('[data-field="risk"]').textContent,
        wait: r.querySelector('[data-field="wait"]').textContent,
    })), q);
    let rows = await waitingIn(Q1);
    ok(JSON.stringify(rows.map((r) => r.name)) === JSON.stringify(['Grace Hopper', 'Ada Lovelace', 'Alan Turing']) &&
        JSON.stringify(rows.map((r) => r.rank)) === '[1,2,3]',
    `the waiting contacts are listed in the suggested order, by value (${rows.map((r) => r.name).join(', ')})`);
    ok(rows[0].tier === 'Tier A' && rows[2].tier === 'Tier C' && rows.every((r) => /Risk|At risk/.test(r.risk)),
        `with tier and risk badges (${rows.map((r) => `${r.tier}/${r.risk}`).join(', ')})`);
    await until(ps, 'and their waits tick', (first) => {
        const el = document.querySelector('#waiting-body tr [data-field="wait"]');
        return el && el.textContent !== first;
    }, rows[0].wait);
    await until(ps, 'the alert feed shows the repeat-contact alert raised while Ada waits',
        () => document.querySelector('#feed li[data-rule="repeat_contact"]') !== null);
    ok((await ps.textContent('#k-waiting')).trim() === '5', 'the total says 5 waiting');

    // -- Agent 1 answers Ada: screen pop and her alerts ---------------------------------------
    await ctl('produce', { step: 'answer' });
    await until(p1, 'the screen pop fills the customer panel of agent 1',
        () => (document.querySelector('#customer-body .cust-name') || {}).textContent === 'Ada Lovelace');
    const panel = await p1.textContent('#customer-body');
    ok(/Tier B/.test(panel) && /Churn risk \d+%/.test(panel) && panel.includes('Delayed') && panel.includes('support contacts in 30 days'),
        'with tier, churn risk and why, and the delayed order');
    const crit = await until(p1, 'the repeat-contact alert pops up, critical',
        (sel) => { const el = document.querySelector(sel); return el && el.dataset.severity === 'critical' && el.dataset.alertId; },
        popup('repeat_contact'));
    const critText = await p1.textContent(popup('repeat_contact'));
    ok(critText.includes('4th support contact in 30 days'), 'its reason reads in plain words: "4th support contact in 30 days"');
    ok(critText.includes('Escalate to a senior agent'), 'with the suggested action');
    ok(await p1.isHidden(`${popup('repeat_contact')} button.close`), 'a critical pop-up cannot be closed before it is acknowledged');
    await until(p1, 'the alert is announced in the assertive live region',
        () => document.querySelector('#live-assertive').textContent.includes('support contact #4'));
    await until(p1, 'the order problem pops up too, as a warning',
        (sel) => { const el = document.querySelector(sel); return el && el.dataset.severity === 'warning'; }, popup('order_problem'));
    await until(ps, `the wallboard: Ada answered, 2 waiting and 1 answered in ${Q1}`,
        ({ q }) => {
            const row = document.querySelector(`#queues-body tr[data-queue="${q}"]`);
            const names = [...document.querySelectorAll(`#waiting-body tr[data-queue="${q}"] [data-field="name"]`)].map((e) => e.textContent);
            return row && row.querySelector('[data-field="waiting"]').textContent === '2' &&
                row.querySelector('[data-field="answered"]').textContent === '1' &&
                names.join(',') === 'Grace Hopper,Alan Turing';
        }, { q: Q1 });

    // -- Live alerts go to the right agent only -----------------------------------------------
    await ctl('produce', { step: 'live' });
    await until(p1, 'negative sentiment on Ada pops up for agent 1',
        ({ sel, c }) => { const el = document.querySelector(sel); return el && el.dataset.customerId === c; },
        { sel: popup('negative_sentiment'), c: ADA });
    await until(p2, 'negative sentiment on Barbara pops up for agent 2',
        ({ sel, c }) => { const el = document.querySelector(sel); return el && el.dataset.customerId === c; },
        { sel: popup('negative_sentiment'), c: BARBARA });
    // Ada's alerts: raised while she waited (repeat contact, order problem), then live.
    const forA1 = (await ctl('raised', { step: 'setup', customer: ADA, expect: 2 }))
        .concat(await ctl('raised', { step: 'live', agent: A1 }));
    const forA2 = await ctl('raised', { step: 'live', agent: A2 });
    const idsOn = (p) => p.$$eval('#history li[data-alert-id]', (els) => els.map((e) => ({ id: e.dataset.alertId, c: e.dataset.customerId })));
    await until(p1, `every alert of agent 1 is in its list (${forA1.map((a) => a.rule).join(', ')})`,
        (ids) => ids.every((id) => document.querySelector(`#history li[data-alert-id="${id}"]`)), forA1.map((a) => a.id));
    const on1 = await idsOn(p1);
    const on2 = await idsOn(p2);
    ok(on1.every((a) => a.c === ADA) && !on1.some((a) => forA2.some((b) => b.id === a.id)), "agent 1's page has none of agent 2's alerts");
    ok(on2.length >= 1 && on2.every((a) => a.c === BARBARA) && !on2.some((a) => forA1.some((b) => b.id === a.id)),
        `agent 2's page has only its own alert(s) (${on2.length}), none of agent 1's`);

    // -- Screenshots: a real alert, a real queue ----------------------------------------------
    const shotAgent = path.join(ARTIFACTS, 'agent-desktop-1366x768.png');
    const shotBoard = path.join(ARTIFACTS, 'wallboard-1366x768.png');
    await p1.evaluate(() => document.activeElement && document.activeElement.blur());
    await p1.screenshot({ path: shotAgent });
    await ps.screenshot({ path: shotBoard });
    console.log(`# screenshot: ${shotAgent}`);
    console.log(`# screenshot: ${shotBoard}`);

    // -- Acknowledge and feedback, with the keyboard and the mouse ------------------------------
    const critSel = `#alerts-now article.popup[data-alert-id="${crit}"]`;
    await p1.focus(critSel);
    await p1.keyboard.press('Escape');
    ok(await p1.isVisible(critSel), 'Escape does not close a critical pop-up that is not acknowledged');
    await p1.keyboard.press('a');
    await until(p1, 'the A key acknowledges the focused alert, and the gateway records it',
        (sel) => document.querySelector(sel).dataset.ack === 'yes', critSel);
    await p1.click(`${critSel} button.choice >> text="Useful"`);
    await p1.fill(`${critSel} input.outcome`, 'Escalated to a senior agent');
    await p1.click(`${critSel} button.send`);
    await until(p1, 'feedback (useful, with an outcome) is recorded', (sel) => document.querySelector(sel).dataset.feedback === 'yes', critSel);
    let fb = await ctl('feedback', { alert_id: crit, expect: 2 });
    const ackMsg = fb.find((m) => m.type === 'ack');
    const fbMsg = fb.find((m) => m.type === 'feedback');
    ok(ackMsg && ackMsg.agent_id === A1, 'the ack is on the feedback topic with the agent id (read with kcat)');
    ok(fbMsg && fbMsg.agent_id === A1 && fbMsg.useful === true && fbMsg.outcome === 'Escalated to a senior agent',
        'the feedback is on the feedback topic: useful, with its outcome');
    await p1.click(`${critSel} button.close`);
    await until(p1, 'once acknowledged, the critical pop-up can be closed', (sel) => !document.querySelector(sel), critSel);
    ok((await p1.textContent(`#history li[data-alert-id="${crit}"] .status-chip`)) === 'Useful', 'the shift list shows it as useful');

    const neg = await p1.getAttribute(popup('negative_sentiment'), 'data-alert-id');
    await p1.focus(popup('negative_sentiment'));
    await p1.keyboard.press('n');
    await until(p1, 'the N key sends "not useful" for the focused alert',
        (sel) => { const el = document.querySelector(sel); return el && el.dataset.feedback === 'yes'; },
        `article[data-alert-id="${neg}"]`);
    fb = await ctl('feedback', { alert_id: neg, expect: 2 });
    ok(fb.some((m) => m.type === 'feedback' && m.useful === false) && fb.some((m) => m.type === 'ack'),
        'and it reaches the feedback topic, with the implied ack');

    // -- The queue moves: abandoned, answered; the feed's filters -------------------------------
    await ctl('produce', { step: 'abandon' });
    await until(ps, `the wallboard: Alan abandoned, 1 waiting and 1 abandoned in ${Q1}`, ({ q }) => {
        const row = document.querySelector(`#queues-body tr[data-queue="${q}"]`);
        const names = [...document.querySelectorAll(`#waiting-body tr[data-queue="${q}"] [data-field="name"]`)].map((e) => e.textContent);
        return row.querySelector('[data-field="waiting"]').textContent === '1' &&
            row.querySelector('[data-field="abandoned"]').textContent === '1' && names.join(',') === 'Grace Hopper';
    }, { q: Q1 });
    await ctl('produce', { step: 'answer_q2' });
    await until(ps, `the wallboard: Linus answered, 1 waiting and 1 answered in ${Q2}`, cell, queueIs(Q2, 'answered', '1'));
    await until(ps, 'the totals follow (3 waiting → 2, 1 abandoned)',
        () => document.querySelector('#k-waiting').textContent === '2' && document.querySelector('#k-abandoned').textContent === '1');

    await ps.click('#sev-filter button[data-severity="warning"]');
    await until(ps, 'the severity filter hides warnings', () => {
        const items = [...document.querySelectorAll('#feed li')];
        return items.length > 0 && items.every((li) => li.dataset.severity !== 'warning');
    });
    await ps.click('#sev-filter button[data-severity="warning"]');
    await ps.selectOption('#rule-filter', 'order_problem');
    await until(ps, 'the rule filter shows only that rule', () => {
        const items = [...document.querySelectorAll('#feed li')];
        return items.length > 0 && items.every((li) => li.dataset.rule === 'order_problem');
    });
    await ps.selectOption('#rule-filter', '');

    // -- The gateway restarts: the page reconnects by itself and shows what it missed ----------
    await p1.click('#notify-btn');
    await until(p1, 'turning sound and notifications on plays the chime once', () => window.__notes.plays === 1);
    await p1.evaluate(() => window.__setHidden(true));
    await ctl('gateway_stop');
    await until(p1, 'agent 1 sees the connection drop', () => document.querySelector('#conn').dataset.state === 'reconnecting');
    await until(ps, 'so does the wallboard', () => document.querySelector('#conn').dataset.state === 'reconnecting');
    await ctl('produce', { step: 'while_down' });
    const missed = await ctl('raised', { step: 'while_down', agent: A1 });
    console.log(`# raised while the gateway was down: ${missed.map((a) => a.rule).join(', ')}`);
    await ctl('gateway_start');
    await until(p1, 'agent 1 reconnects by itself', () => document.querySelector('#conn').dataset.state === 'online', undefined, 30000);
    await until(p1, `and shows the ${missed.length} alert(s) raised while the gateway was down, once each`,
        (ids) => ids.every((id) => document.querySelectorAll(`#history li[data-alert-id="${id}"]`).length === 1), missed.map((a) => a.id));
    const cancel = missed.find((a) => a.rule === 'cancel_intent');
    ok(cancel && cancel.severity === 'critical', 'among them the critical cancel-intent alert');
    ok(await p1.isVisible(`#alerts-now article.popup[data-alert-id="${cancel.id}"]`), 'which pops up');
    const notes = await p1.evaluate(() => window.__notes);
    ok(notes.notifications.some((nt) => nt.tag === cancel.id && nt.title.startsWith('Critical alert')),
        'the tab being hidden, a notification was shown for it');
    ok(notes.plays >= 2, 'and the chime played');
    ok(/^\(\d+\) /.test(await p1.title()), 'the tab title counts the critical alerts to acknowledge');
    await p1.evaluate(() => window.__setHidden(false));
    await until(ps, 'the wallboard reconnects by itself', () => document.querySelector('#conn').dataset.state === 'online', undefined, 30000);

    // -- A reload resumes where the page was ---------------------------------------------------
    const before = await idsOn(p1);
    await p1.reload();
    await until(p1, 'after a reload the page signs in again from sessionStorage', () => document.querySelector('#conn').dataset.state === 'online');
    const after = await idsOn(p1);
    ok(after.length === before.length && after.every((a, i) => a.id === before[i].id), `the shift list survives the reload (${after.length} alerts, no duplicate)`);
    ok((await p1.textContent(`#history li[data-alert-id="${crit}"] .status-chip`)) === 'Useful', 'with the feedback state');
    ok(await p1.isVisible(`#alerts-now article.popup[data-alert-id="${cancel.id}"]`), 'and the unacknowledged critical alert still pops up');
    ok((await p1.textContent('#customer-body .cust-name')) === 'Ada Lovelace', 'and the current customer stays');

    ok(errors.length === 0, 'no page error, console error or failed request' + (errors.length ? ':\n  ' + errors.join('\n  ') : ''));
}

await main();
