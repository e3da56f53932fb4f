// conn.js - sign-in and the WebSocket session both pages share (services/gateway/PROTOCOL.md).
//
// The token comes from ?token= (then removed from the address bar) or the sign-in form, and
// is kept in sessionStorage for this tab only. The socket authenticates with its first
// message, and reconnects by itself with exponential backoff (0.5 s doubling to 10 s, with
// jitter) after a drop, a gateway restart (1001) or a silent network; it asks the page for
// the resume point at every (re)connect. A refused or expired token (4001, 4003) signs out.
import { $, fill, h, storageGet, storageSet } from './util.js';

const PROTOCOL = 'integral.v1';
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 10000;
const OPEN_TIMEOUT_MS = 10000;   // connect + welcome
const PING_AFTER_MS = 20000;     // silence before we ping
const DEAD_AFTER_MS = 45000;     // silence before we give the socket up

const REFUSED = {
    missing: 'no token was given',
    too_long: 'the token is too long',
    malformed: 'this is not a valid token',
    bad_signature: 'the token was not signed by this gateway',
    bad_alg: 'the token uses an algorithm the gateway refuses',
    expired: 'the token has expired',
    not_yet_valid: 'the token is not valid yet',
    bad_claims: 'the token lacks a user or a role',
    wrong_role: 'the token has an unknown role',
};

// The claims of a JWT, read without verifying it (the gateway verifies); null if unreadable.
export function readToken(token) {
    const parts = String(token || '').split('.');
    if (parts.length !== 3) return null;
    try {
        const b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
        const json = decodeURIComponent(Array.from(atob(b64 + '==='.slice((b64.length + 3) % 4)))
            .map((c) => '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join(''));
        const claims = JSON.parse(json);
        return claims && typeof claims === 'object' ? claims : null;
    } catch {
        return null;
    }
}

// What a user may paste: the token, "Bearer <token>", or a whole demo URL with ?token=.
function cleanToken(text) {
    let t = String(text || '').trim();
    const m = t.match(/[?&]token=([^&#\s]+)/);
    if (m) t = decodeURIComponent(m[1]);
    return t.replace(/^Bearer\s+/i, '').trim();
}

export class Session {
    // role: 'agent' | 'supervisor'. Callbacks: onToken(claims) (a token is in use, before
    // connecting), onWelcome(msg), onMessage(msg), getResume() -> seq | null (agents),
    // onBadResume(), onSignOut(), onState(state).
    constructor(opts) {
        this.role = opts.role;
        this.opts = opts;
        this.key = 'integral.token.' + this.role;
        this.token = null;
        this.claims = null;
        this.ws = null;
        this.authed = false;
        this.stopped = true;
        this.attempt = 0;
        this.retryAt = 0;
        this.retryTimer = null;
        this.openTimer = null;
        this.lastHeard = 0;
        this.state = 'signed-out';
        this.detail = '';
        this.indicator = $('#conn');
        this.dialog = $('#signin');
        this.wireIndicator();
        this.wireSignIn();
        setInterval(() => this.heartbeat(), 1000);
        window.addEventListener('online', () => this.retryNow());
        window.addEventListener('offline', () => this.setState(this.state, 'no network'));
        document.addEventListener('visibilitychange', () => {
            if (document.visibilityState === 'visible') this.retryNow();
        });
    }

    // Starts with the token of the URL, else this tab's, else asks for one.
    begin() {
        const url = new URL(location.href);
        const fromUrl = url.searchParams.get('token');
        if (fromUrl !== null) {
            url.searchParams.delete('token');
            history.replaceState(history.state, '', url.pathname + url.search + url.hash);
        }
        const token = fromUrl ? cleanToken(fromUrl) : storageGet(sessionStorage, this.key);
        if (!token || !this.useToken(token)) this.askToken(this.detail);
    }

    // Checks what can be checked locally; starts the session when it looks usable.
    useToken(token) {
        const claims = readToken(token);
        if (!claims) { this.detail = 'That is not a valid token.'; return false; }
        if (claims.role && claims.role !== this.role) {
            this.detail = claims.role === 'supervisor'
                ? 'This is a supervisor token: open the wallboard at /supervisor.'
                : 'This is an agent token: open the agent desktop at /.';
            return false;
        }
        if (typeof claims.exp === 'number' && claims.exp * 1000 < Date.now()) {
            this.detail = 'This token has expired. Ask for a new one.';
            storageSet(sessionStorage, this.key, null);
            return false;
        }
        this.token = token;
        this.claims = claims;
        storageSet(sessionStorage, this.key, token);
        if (this.opts.onToken) this.opts.onToken(claims);
        this.stopped = false;
        this.attempt = 0;
        if (this.dialog.open) this.dialog.close();
        this.connect();
        return true;
    }

    signOut(message) {
        this.stopped = true;
        this.token = null;
        storageSet(sessionStorage, this.key, null);
        this.closeSocket(1000, 'signed out');
        clearTimeout(this.retryTimer);
        this.setState('signed-out', message || '');
        if (this.opts.onSignOut) this.opts.onSignOut();
        this.askToken(message || '');
    }

    askToken(message) {
        this.setState('signed-out', message || '');
        const err = $('#signin-error');
        err.textContent = message || '';
        err.hidden = !message;
        if (!this.dialog.open) this.dialog.showModal();
        $('#signin-token').focus();
    }

    wireSignIn() {
        $('#signin-form').addEventListener('submit', (e) => {
            e.preventDefault();
            const token = cleanToken($('#signin-token').value);
            this.detail = '';
            if (!token) {
                this.askToken('Paste your access token.');
                return;
            }
            $('#signin-token').value = '';
            if (!this.useToken(token)) this.askToken(this.detail);
        });
        // The page is useless without a session: Escape does not close the sign-in.
        this.dialog.addEventListener('cancel', (e) => e.preventDefault());
        const out = $('#signout-btn');
        if (out) out.addEventListener('click', () => this.signOut('You signed out.'));
    }

    // ---------------------------------------------------------------------------------
    // The socket
    // ---------------------------------------------------------------------------------
    connect() {
        if (this.stopped) return;
        clearTimeout(this.retryTimer);
        this.closeSocket(1000, 'reconnecting');
        this.authed = false;
        const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
        let ws;
        try {
            ws = new WebSocket(`${scheme}//${location.host}/ws`, PROTOCOL);
        } catch (e) {
            this.scheduleRetry('cannot open a WebSocket');
            return;
        }
        this.ws = ws;
        this.setState(this.attempt ? 'reconnecting' : 'connecting', '');
        clearTimeout(this.openTimer);
        this.openTimer = setTimeout(() => {
            if (this.ws === ws && !this.authed) this.drop(ws, 'no answer from the gateway');
        }, OPEN_TIMEOUT_MS);
        ws.onopen = () => {
            if (this.ws !== ws) return;
            const auth = { type: 'auth', token: this.token };
            const resume = this.opts.getResume ? this.opts.getResume() : null;
            if (resume) auth.resume = resume;
            ws.send(JSON.stringify(auth));
        };
        ws.onmessage = (ev) => {
            if (this.ws !== ws) return;
            this.lastHeard = Date.now();
            let msg;
            try { msg = JSON.parse(ev.data); } catch { return; }
            if (!msg || typeof msg.type !== 'string') return;
            if (msg.type === 'welcome') {
                if (msg.role !== this.role) {
                    this.signOut(msg.role === 'supervisor'
                        ? 'This is a supervisor token: open the wallboard at /supervisor.'
                        : 'This is an agent token: open the agent desktop at /.');
                    return;
                }
                clearTimeout(this.openTimer);
                this.authed = true;
                this.attempt = 0;
                this.welcome = msg;
                this.setState('online', '');
                if (this.opts.onWelcome) this.opts.onWelcome(msg);
                return;
            }
            if (msg.type === 'pong') return;
            if (this.opts.onMessage) this.opts.onMessage(msg);
        };
        ws.onclose = (ev) => {
            if (this.ws !== ws) return;
            this.ws = null;
            this.authed = false;
            clearTimeout(this.openTimer);
            this.closed(ev.code, ev.reason || '');
        };
        ws.onerror = () => { /* a close event follows */ };
    }

    closed(code, reason) {
        if (this.stopped) return;
        if (code === 4001) {
            this.signOut('The gateway refused the token: ' + (REFUSED[reason] || reason || 'unknown reason') + '.');
            return;
        }
        if (code === 4003) {
            this.signOut('Your token expired during the session. Sign in with a new one.');
            return;
        }
        if (code === 1008 && reason === 'bad resume' && this.opts.onBadResume) this.opts.onBadResume();
        const why = code === 1001 ? 'the gateway restarted'
            : code === 1008 ? reason || 'closed by the gateway'
                : code === 4002 ? 'the connection went quiet'
                    : navigator.onLine === false ? 'no network' : 'connection lost';
        // A gateway that shut down cleanly is usually back soon: try at once.
        this.scheduleRetry(why, code === 1001);
    }

    scheduleRetry(why, soon = false) {
        if (this.stopped) return;
        const base = soon && this.attempt === 0 ? 250 : Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempt);
        const delay = Math.round(base * (0.8 + Math.random() * 0.4));
        this.attempt++;
        this.retryAt = Date.now() + delay;
        clearTimeout(this.retryTimer);
        this.retryTimer = setTimeout(() => this.connect(), delay);
        this.setState('reconnecting', why);
    }

    retryNow() {
        if (!this.stopped && !this.ws && this.retryTimer) this.connect();
    }

    drop(ws, why) {
        ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
        try { ws.close(4000, why.slice(0, 100)); } catch { /* already closed */ }
        if (this.ws === ws) {
            this.ws = null;
            this.authed = false;
            this.scheduleRetry(why);
        }
    }

    closeSocket(code, reason) {
        const ws = this.ws;
        if (!ws) return;
        this.ws = null;
        this.authed = false;
        ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
        try { ws.close(code, reason); } catch { /* already closed */ }
    }

    // Pings a quiet gateway, gives up a silent socket, and keeps the countdown current.
    heartbeat() {
        const now = Date.now();
        if (this.ws && this.authed) {
            if (now - this.lastHeard > DEAD_AFTER_MS) this.drop(this.ws, 'the gateway stopped answering');
            else if (now - this.lastHeard > PING_AFTER_MS && now - (this.lastPing || 0) > PING_AFTER_MS) {
                this.lastPing = now;
                this.send({ type: 'ping' });
            }
        }
        if (this.state === 'reconnecting' && !this.ws) this.renderIndicator();
    }

    // Sends a message once authenticated; false when it could not be sent now.
    send(msg) {
        if (!this.ws || !this.authed || this.ws.readyState !== WebSocket.OPEN) return false;
        this.ws.send(JSON.stringify(msg));
        return true;
    }

    get online() {
        return this.authed;
    }

    // ---------------------------------------------------------------------------------
    // The connection indicator
    // ---------------------------------------------------------------------------------
    setState(state, detail) {
        this.state = state;
        this.detail = detail;
        this.renderIndicator();
        if (this.opts.onState) this.opts.onState(state);
    }

    wireIndicator() {
        const btn = $('.conn-retry', this.indicator);
        if (btn) btn.addEventListener('click', () => this.retryNow());
    }

    renderIndicator() {
        const el = this.indicator;
        if (!el) return;
        const offline = navigator.onLine === false;
        let text;
        switch (this.state) {
        case 'online': text = 'Connected'; break;
        case 'connecting': text = 'Connecting…'; break;
        case 'reconnecting':
            if (this.ws) text = 'Reconnecting…';
            else {
                const s = Math.max(1, Math.ceil((this.retryAt - Date.now()) / 1000));
                text = (offline ? 'Offline' : 'Disconnected') + ` – retrying in ${s} s`;
            }
            break;
        default: text = 'Signed out';
        }
        el.dataset.state = this.state;
        el.title = this.detail ? text + ' (' + this.detail + ')' : text;
        fill($('.conn-text', el), text);
        const btn = $('.conn-retry', el);
        if (btn) btn.hidden = !(this.state === 'reconnecting' && !this.ws);
        const out = $('#signout-btn');
        if (out) out.hidden = this.state === 'signed-out';
        const who = $('#who');
        if (who) {
            fill(who, this.claims && this.state !== 'signed-out'
                ? [h('span', { class: 'who-label' }, this.role === 'agent' ? 'Agent ' : 'Supervisor '), h('strong', {}, this.claims.sub || '?')]
                : []);
        }
    }
}
