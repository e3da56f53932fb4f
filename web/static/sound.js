// sound.js - a short two-tone chime for critical alerts, generated as a WAV data: URI (no
// file, no library; the gateway's CSP allows media from data:). Browsers play it only after
// the user interacted with the page once, which the "turn on" button provides.

function chimeWav() {
    const rate = 16000;
    const tones = [[880, 0.13], [0, 0.05], [1175, 0.2]]; // Hz, seconds (0: silence)
    const total = Math.round(tones.reduce((s, [, d]) => s + d, 0) * rate);
    const buf = new ArrayBuffer(44 + total * 2);
    const v = new DataView(buf);
    const str = (o, s) => { for (let i = 0; i < s.length; i++) v.setUint8(o + i, s.charCodeAt(i)); };
    str(0, 'RIFF'); v.setUint32(4, 36 + total * 2, true); str(8, 'WAVE');
    str(12, 'fmt '); v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
    v.setUint32(24, rate, true); v.setUint32(28, rate * 2, true); v.setUint16(32, 2, true); v.setUint16(34, 16, true);
    str(36, 'data'); v.setUint32(40, total * 2, true);
    let i = 0;
    for (const [freq, dur] of tones) {
        const n = Math.round(dur * rate);
        const fade = Math.round(0.012 * rate);
        for (let k = 0; k < n && i < total; k++, i++) {
            const env = Math.min(1, k / fade, (n - k) / fade);
            const s = freq ? Math.sin(2 * Math.PI * freq * k / rate) * 0.35 * env : 0;
            v.setInt16(44 + i * 2, Math.round(s * 32767), true);
        }
    }
    let bin = '';
    const bytes = new Uint8Array(buf);
    for (let k = 0; k < bytes.length; k += 0x8000) bin += String.fromCharCode.apply(null, bytes.subarray(k, k + 0x8000));
    return 'data:audio/wav;base64,' + btoa(bin);
}

let uri = null;

export function playChime() {
    uri = uri || chimeWav();
    const audio = new Audio(uri);
    audio.volume = 0.8;
    return audio.play().catch(() => { /* not allowed yet (no interaction since load) */ });
}
