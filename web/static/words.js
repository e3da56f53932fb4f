// words.js - the engine's names in plain words: alert reasons ("4th support contact in 30
// days"), churn factors, rules, severities, channels and agent states. Feature names are
// those of services/engine/feature.h; an unknown one is still shown, humanized.
import { fmtMoney, fmtNumber, fmtPercent, fmtSpan } from './util.js';

export const SEVERITIES = ['critical', 'warning', 'info'];
export const SEVERITY_LABEL = { critical: 'Critical', warning: 'Warning', info: 'Info' };

export const RULE_LABEL = {
    repeat_contact: 'Repeat contact',
    at_risk_high_value: 'At-risk high value',
    vip_waiting: 'VIP waiting',
    negative_sentiment: 'Negative sentiment',
    order_problem: 'Order problem',
    cancel_intent: 'Cancel intent',
    rising_value: 'Rising value',
};

export function ruleLabel(rule) {
    return RULE_LABEL[rule] || humanize(rule || 'alert');
}

export const CHANNEL_LABEL = {
    phone: 'Phone', chat: 'Chat', email: 'Email', web: 'Web', mobile: 'Mobile app',
    store: 'Store', kiosk: 'Kiosk', fax: 'Fax', field: 'Field visit',
};

export function channelLabel(c) {
    return c ? CHANNEL_LABEL[c] || humanize(c) : 'Unknown channel';
}

export const AGENT_STATES = ['available', 'busy', 'wrapup', 'away', 'offline'];
export const STATE_LABEL = { available: 'Available', busy: 'On a contact', wrapup: 'Wrap-up', away: 'Away', offline: 'Offline' };

export const TREND_LABEL = { rising: 'Rising', stable: 'Stable', falling: 'Falling' };
export const TREND_ARROW = { rising: '↗', stable: '→', falling: '↘' };

export function humanize(name) {
    const s = String(name).replace(/[_.]+/g, ' ').trim();
    return s.charAt(0).toUpperCase() + s.slice(1);
}

export function ordinal(n) {
    const v = Math.round(Number(n));
    const mod100 = v % 100;
    const suffix = mod100 >= 11 && mod100 <= 13 ? 'th' : ({ 1: 'st', 2: 'nd', 3: 'rd' }[v % 10] || 'th');
    return v + suffix;
}

const plural = (n, one, many) => fmtNumber(n) + ' ' + (Number(n) === 1 ? one : many || one + 's');

export function riskLevel(churn) {
    if (churn === null || churn === undefined) return 'unknown';
    return churn >= 0.7 ? 'high' : churn >= 0.4 ? 'medium' : 'low';
}

export function sentimentWord(v) {
    if (v === null || v === undefined) return '';
    if (v <= -0.5) return 'very negative';
    if (v < -0.15) return 'negative';
    if (v <= 0.15) return 'neutral';
    if (v < 0.5) return 'positive';
    return 'very positive';
}

const signed = (v) => (v < 0 ? '−' : '') + Math.abs(Number(v)).toFixed(2);

// What a feature's value says, in words. mode "alert": an alert just fired on a new contact,
// so contact counts read as ordinals ("4th support contact in 30 days"); mode "factor": a
// churn factor ("4 support contacts in 30 days").
function phrase(feature, value, mode) {
    const n = Number(value);
    switch (feature) {
    case 'support_contacts_30d':
        return mode === 'alert' ? `${ordinal(n)} support contact in 30 days` : plural(n, 'support contact') + ' in 30 days';
    case 'contacts_24h':
        return mode === 'alert' ? `${ordinal(n)} contact in 24 hours` : plural(n, 'contact') + ' in 24 hours';
    case 'contacts_7d':
        return mode === 'alert' ? `${ordinal(n)} contact in 7 days` : plural(n, 'contact') + ' in 7 days';
    case 'contacts_30d':
        return mode === 'alert' ? `${ordinal(n)} contact in 30 days` : plural(n, 'contact') + ' in 30 days';
    case 'abandoned_7d': return `Gave up waiting ${n === 1 ? 'once' : fmtNumber(n) + ' times'} in 7 days`;
    case 'complaints_90d': return plural(n, 'complaint') + ' in 90 days';
    case 'failed_payments_30d': return plural(n, 'failed payment') + ' in 30 days';
    case 'cancel_signals_30d': return plural(n, 'cancellation signal') + ' in 30 days';
    case 'revenue_12m': return `Revenue of ${fmtMoney(n)} over 12 months`;
    case 'margin_12m': return `Margin of ${fmtMoney(n)} over 12 months`;
    case 'orders_12m': return plural(n, 'order') + ' in 12 months';
    case 'revenue_90d': return `Revenue of ${fmtMoney(n)} in the last 90 days`;
    case 'revenue_prev_90d': return `Revenue of ${fmtMoney(n)} in the 90 days before`;
    case 'days_since_last_order': return `No order for ${fmtSpan(n * 86400)}`;
    case 'open_orders': return plural(n, 'open order');
    case 'delayed_orders': return `${plural(n, 'order')} delayed or out of stock`;
    case 'cost_to_serve_12m': return `Cost to serve of ${fmtMoney(n)} over 12 months`;
    case 'mrr': return `Subscription of ${fmtMoney(n)} a month`;
    case 'value': return `Customer value ${fmtMoney(n)}`;
    case 'churn_risk': return `Churn risk ${fmtPercent(n)}`;
    case 'sentiment_last': return `Sentiment ${signed(n)} right now (${sentimentWord(n)})`;
    case 'sentiment_contact_mean': return `Sentiment ${signed(n)} on average in this contact`;
    case 'sentiment_30d_mean': return `Sentiment ${signed(n)} on average over 30 days`;
    case 'wait_s': return `Waiting for ${fmtSpan(n)}`;
    case 'tenure_days': return `Customer for ${fmtSpan(n * 86400)}`;
    case 'csat_last': return `Last satisfaction score ${fmtNumber(n)} out of 5`;
    case 'nps_last': return `Last recommendation score ${fmtNumber(n)} out of 10`;
    case 'tier': return `Tier ${value} customer`;
    case 'trend': return `Spending is ${value}`;
    case 'channel': return `On ${channelLabel(value).toLowerCase()}`;
    case 'queue': return `In queue ${value}`;
    case 'segment': return `Segment ${value}`;
    case 'language': return `Speaks ${value}`;
    case 'contact_reason': return `Contact reason: ${value}`;
    case 'order_status': return `Order ${String(value).replace(/_/g, ' ')}`;
    case 'last_order_status': return `Latest order is ${String(value).replace(/_/g, ' ')}`;
    case 'last_order_id': return `Latest order ${value}`;
    case 'intent': return value === 'cancel' ? 'Visited a cancellation page' : `Web visit with intent “${value}”`;
    case 'subscription_action':
        return value === 'cancel_requested' ? 'Asked to cancel the subscription'
            : value === 'cancelled' ? 'Cancelled the subscription'
                : `Subscription ${String(value).replace(/_/g, ' ')}`;
    case 'complaint_severity': return `Complaint of ${value} severity`;
    case 'complaint_category': return `Complaint about ${value}`;
    case 'event_type': return `After ${String(value).replace('.', ' ')}`;
    case 'in_contact': return value ? 'In contact now' : 'Not in contact';
    case 'queued': return value ? 'Waiting in a queue' : 'Not queued';
    case 'is_partner': return value ? 'Partner account' : 'Not a partner account';
    case 'new_contact': return value ? 'A new contact' : 'A contact already under way';
    case 'support_contact': return value ? 'A support contact' : 'Not a support contact';
    case 'cancel_signal': return value ? 'A cancellation signal' : 'No cancellation signal';
    default:
        return `${humanize(feature)}: ${typeof value === 'number' ? fmtNumber(value, 1) : value}`;
    }
}

// The threshold, when it says more than the value ("churn risk 82% (from 70%)").
function limit(r) {
    const n = Number(r.threshold);
    if (typeof r.threshold !== 'number' || typeof r.value !== 'number' || r.value === r.threshold) return '';
    switch (r.feature) {
    case 'churn_risk': return ` (alert from ${fmtPercent(n)})`;
    case 'wait_s': return ` (alert from ${fmtSpan(n)})`;
    case 'sentiment_last': case 'sentiment_contact_mean': return ` (alert from ${signed(n)})`;
    case 'support_contacts_30d': case 'contacts_24h': case 'contacts_7d': case 'contacts_30d':
    case 'delayed_orders': case 'open_orders': return '';
    default: return '';
    }
}

// Reasons that only restate the obvious; hidden when an alert has other reasons.
const CONTEXT_ONLY = new Set(['new_contact', 'in_contact', 'queued', 'event_type']);

// ["4th support contact in 30 days", ...] for an alert's reasons.
export function reasonTexts(alert) {
    const reasons = Array.isArray(alert.reasons) ? alert.reasons : [];
    const main = reasons.filter((r) => !CONTEXT_ONLY.has(r.feature));
    const shown = main.length ? main : reasons;
    return shown.map((r) => phrase(r.feature, r.value, 'alert') + limit(r));
}

// "4 support contacts in 30 days" for a churn factor {feature, value, ...}.
export function factorText(f) {
    return phrase(f.feature, f.value, 'factor');
}
