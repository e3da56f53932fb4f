// charts.js - two tiny inline-SVG charts for the wallboard, drawn into a fixed viewBox that
// stretches to its box (labels are HTML around it, so text never stretches).
import { h } from './util.js';

const W = 600;
const H = 100;

function svgRoot(svg) {
    svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
    svg.setAttribute('preserveAspectRatio', 'none');
    svg.replaceChildren();
    return svg;
}

// values: numbers, oldest first (one per minute). Returns the scale's maximum.
export function drawBars(svg, values) {
    svgRoot(svg);
    const n = Math.max(values.length, 1);
    const max = Math.max(1, ...values.map((v) => Number(v) || 0));
    const step = W / n;
    const gap = Math.min(2, step * 0.2);
    for (let i = 0; i < H; i += H / 4) {
        svg.append(h('svg:line', { x1: 0, x2: W, y1: i, y2: i, class: 'grid' }));
    }
    values.forEach((v, i) => {
        const val = Number(v) || 0;
        if (!val) return;
        const bh = Math.max(2, (val / max) * (H - 4));
        svg.append(h('svg:rect', { x: i * step + gap / 2, y: H - bh, width: step - gap, height: bh, class: i === n - 1 ? 'bar now' : 'bar' }));
    });
    svg.append(h('svg:line', { x1: 0, x2: W, y1: H - 0.5, y2: H - 0.5, class: 'axis' }));
    return max;
}

// values: 0..1 or null (nothing offered that minute), oldest first; target: a dashed line.
export function drawLevel(svg, values, target) {
    svgRoot(svg);
    const n = Math.max(values.length, 2);
    const x = (i) => (i / (n - 1)) * W;
    const y = (v) => H - 3 - v * (H - 6);
    for (const g of [0, 0.5, 1]) svg.append(h('svg:line', { x1: 0, x2: W, y1: y(g), y2: y(g), class: 'grid' }));
    if (target !== null && target !== undefined) {
        svg.append(h('svg:line', { x1: 0, x2: W, y1: y(target), y2: y(target), class: 'target' }));
    }
    // Runs of consecutive minutes with a value are joined; lone points get a dot.
    let run = [];
    const flush = () => {
        if (run.length > 1) {
            const d = run.map(([i, v], k) => `${k ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
            svg.append(h('svg:path', { d, class: 'level' }));
        }
        for (const [i, v] of run.length === 1 ? run : []) {
            svg.append(h('svg:line', { x1: x(i), x2: x(i), y1: y(v), y2: y(v), class: 'dot' }));
        }
        run = [];
    };
    values.forEach((v, i) => {
        if (v === null || v === undefined || Number.isNaN(Number(v))) flush();
        else run.push([i, Math.max(0, Math.min(1, Number(v)))]);
    });
    flush();
    svg.append(h('svg:line', { x1: 0, x2: W, y1: H - 0.5, y2: H - 0.5, class: 'axis' }));
}
