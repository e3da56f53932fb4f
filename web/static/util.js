// util.js - small helpers shared by both pages: DOM building (text only, never HTML from
// data), number and time formatting, and a one-second ticker for "how long ago" labels.

// h('div', {class: 'x', dataset: {id: 1}, onclick: f, 'aria-label': 'y'}, child, 'text', ...)
// Children may be nodes, strings, numbers, arrays, or null/undefined/false (skipped).
export function h(tag, attrs, ...children) {
    const el = tag.startsWith('svg:')
        ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4))
        : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
        if (v === null || v === undefined || v === false) continue;
        if (k === 'class') el.setAttribute('class', Array.isArray(v) ? v.filter(Boolean).join(' ') : v);
        else if (k === 'dataset') Object.entries(v).forEach(([dk, dv]) => { if (dv !== null && dv !== undefined) el.dataset[dk] = dv; });
        else if (k === 'text') el.textContent = v;
        else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
        else if (v === true) el.setAttribute(k, '');
        else el.setAttribute(k, String(v));
    }
    append(el, children);
    return el;
}

function append(el, children) {
    for (const c of children) {
        if (c === null || c === undefined || c === false) continue;
        if (Array.isArray(c)) append(el, c);
        else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
}

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

// Replaces every child of el.
export function fill(el, ...children) {
    el.replaceChildren();
    append(el, children);
    return el;
}

const numberFmt = new Intl.NumberFormat('en-GB', { maximumFractionDigits: 0 });
const numberFmt1 = new Intl.NumberFormat('en-GB', { maximumFractionDigits: 1 });

export function fmtNumber(n, decimals = 0) {
    if (n === null || n === undefined || Number.isNaN(Number(n))) return '–';
    return (decimals ? numberFmt1 : numberFmt).format(Number(n));
}

// Amounts: the engine sums one currency per deployment and does not name it.
export function fmtMoney(n) {
    return fmtNumber(n);
}

export function fmtPercent(x) {
    if (x === null || x === undefined || Number.isNaN(Number(x))) return '–';
    return Math.round(Number(x) * 100) + '%';
}

// 7 -> "7 s", 95 -> "1:35", 3700 -> "1 h 01"; compact, for wait and handle times.
export function fmtWait(seconds) {
    if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '–';
    const s = Math.max(0, Math.floor(seconds));
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ':' + String(s % 60).padStart(2, '0');
    return Math.floor(s / 3600) + ' h ' + String(Math.floor((s % 3600) / 60)).padStart(2, '0');
}

// Spoken-style durations: "45 seconds", "3 minutes", "2 hours", "5 days".
export function fmtSpan(seconds) {
    const s = Math.max(0, Math.round(seconds));
    const unit = (n, w) => n + ' ' + w + (n === 1 ? '' : 's');
    if (s < 60) return unit(s, 'second');
    if (s < 3600) return unit(Math.floor(s / 60), 'minute');
    if (s < 86400 * 2) return unit(Math.floor(s / 3600), 'hour');
    if (s < 86400 * 60) return unit(Math.floor(s / 86400), 'day');
    if (s < 86400 * 730) return unit(Math.floor(s / (86400 * 30.4)), 'month');
    return unit(Math.floor(s / (86400 * 365.25)), 'year');
}

export function parseTime(t) {
    if (t === null || t === undefined) return NaN;
    return typeof t === 'number' ? t : Date.parse(t);
}

// "14:05" (today) or "28 Nov 14:05".
export function fmtClock(t, withSeconds = false) {
    const ms = parseTime(t);
    if (!Number.isFinite(ms)) return '–';
    const d = new Date(ms);
    const hm = String(d.getHours()).padStart(2, '0') + ':' + String(d.getMinutes()).padStart(2, '0') +
        (withSeconds ? ':' + String(d.getSeconds()).padStart(2, '0') : '');
    const today = new Date();
    if (d.toDateString() === today.toDateString()) return hm;
    return d.getDate() + ' ' + d.toLocaleString('en-GB', { month: 'short' }) + ' ' + hm;
}

export function fmtDate(t) {
    const ms = parseTime(t);
    if (!Number.isFinite(ms)) return '–';
    return new Date(ms).toLocaleDateString('en-GB', { day: 'numeric', month: 'short', year: 'numeric' });
}

export function fmtAgo(t, now = Date.now()) {
    const ms = parseTime(t);
    if (!Number.isFinite(ms)) return '–';
    const s = (now - ms) / 1000;
    if (s < 45) return 'just now';
    return fmtSpan(s) + ' ago';
}

// Elements with data-tick-since (ms, local clock) and data-tick-format ("wait" | "ago" |
// "span") are re-rendered every second, so waits and durations move between messages.
export function tickNow(root = document) {
    const now = Date.now();
    for (const el of root.querySelectorAll('[data-tick-since]')) {
        const since = Number(el.dataset.tickSince);
        const s = (now - since) / 1000;
        const f = el.dataset.tickFormat;
        const text = f === 'ago' ? fmtAgo(since, now) : f === 'span' ? fmtSpan(s) : fmtWait(s);
        if (el.textContent !== text) el.textContent = text;
        if (el.dataset.tickWarn) el.classList.toggle('over', s >= Number(el.dataset.tickWarn));
    }
}

export function startTicker(extra) {
    const tick = () => { tickNow(); if (extra) extra(); };
    tick();
    return setInterval(tick, 1000);
}

// Debounced calls (e.g. saving state): at most one per delay.
export function debounce(fn, delay) {
    let timer = null;
    const run = () => { timer = null; fn(); };
    const call = () => { if (!timer) timer = setTimeout(run, delay); };
    call.flush = () => { if (timer) { clearTimeout(timer); run(); } };
    return call;
}

export function storageGet(storage, key, fallback = null) {
    try {
        const v = storage.getItem(key);
        return v === null ? fallback : JSON.parse(v);
    } catch {
        return fallback;
    }
}

export function storageSet(storage, key, value) {
    try {
        if (value === null || value === undefined) storage.removeItem(key);
        else storage.setItem(key, JSON.stringify(value));
    } catch {
        // Full or disabled storage: the page works on, it only forgets on reload.
    }
}

// True while the user types: single-key shortcuts must not fire then.
export function typingIn(target) {
    if (!target || !(target instanceof Element)) return false;
    return target.closest('input, textarea, select, [contenteditable=""], [contenteditable="true"]') !== null;
}
