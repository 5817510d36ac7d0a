// Building the page: elements are made with h() and never from HTML strings, so that no text
// from the server (rule ids, reasons, audit bodies) can ever become markup or script.

const SVG_NS = 'http://www.w3.org/2000/svg';

// h('button', {class: 'primary', onclick: fn, disabled: true}, 'Save', child, [more]) → element.
// Props: `class`, `text`, `dataset`, on* handlers, `value`/`checked`/`disabled`/`hidden` as
// properties, anything else as an attribute (null/false leave it out).
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  applyProps(el, props);
  append(el, children);
  return el;
}

// The same for SVG elements.
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'text') el.textContent = v;
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function applyProps(el, props) {
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = Array.isArray(v) ? v.filter(Boolean).join(' ') : v;
    else if (k === 'text') el.textContent = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value' || k === 'checked' || k === 'disabled' || k === 'hidden' || k === 'selected') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

// Replaces `el`'s children.
export function fill(el, ...children) {
  clear(el);
  return append(el, children);
}

// ---- Icons: 24×24 strokes, drawn here so that the page needs no icon font or file ----
const ICONS = {
  overview: ['M3 13h4l3-8 4 14 3-6h4'],
  rules: ['M4 6h16', 'M4 12h10', 'M4 18h7', 'M18 15v6', 'M15 18h6'],
  lists: ['M12 3l8 3v6c0 5-3.5 8-8 9-4.5-1-8-4-8-9V6z', 'M9 12l2 2 4-4'],
  tiers: ['M16 19v-1a4 4 0 0 0-4-4H7a4 4 0 0 0-4 4v1', 'M9.5 10a3.5 3.5 0 1 0 0-7 3.5 3.5 0 0 0 0 7z', 'M21 19v-1a4 4 0 0 0-3-3.9', 'M16 3.1a3.5 3.5 0 0 1 0 6.8'],
  audit: ['M12 8v4l3 2', 'M3.05 11a9 9 0 1 1 .5 4', 'M3 4v5h5'],
  versions: ['M6 3v12', 'M18 9a3 3 0 1 0 0-6 3 3 0 0 0 0 6z', 'M6 21a3 3 0 1 0 0-6 3 3 0 0 0 0 6z', 'M18 9a9 9 0 0 1-9 9'],
  logout: ['M9 21H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2h4', 'M16 17l5-5-5-5', 'M21 12H9'],
  plus: ['M12 5v14', 'M5 12h14'],
  trash: ['M3 6h18', 'M8 6V4h8v2', 'M6 6l1 14h10l1-14'],
  edit: ['M12 20h9', 'M16.5 3.5a2.1 2.1 0 0 1 3 3L7 19l-4 1 1-4z'],
  eye: ['M1 12s4-7 11-7 11 7 11 7-4 7-11 7S1 12 1 12z', 'M12 15a3 3 0 1 0 0-6 3 3 0 0 0 0 6z'],
  alert: ['M12 9v4', 'M12 17h.01', 'M10.3 3.9L1.8 18a2 2 0 0 0 1.7 3h17a2 2 0 0 0 1.7-3L13.7 3.9a2 2 0 0 0-3.4 0z'],
  info: ['M12 16v-4', 'M12 8h.01', 'M12 22a10 10 0 1 0 0-20 10 10 0 0 0 0 20z'],
  check: ['M20 6L9 17l-5-5'],
  lock: ['M5 11h14v10H5z', 'M8 11V7a4 4 0 0 1 8 0v4'],
  plug: ['M9 2v6', 'M15 2v6', 'M6 8h12v4a6 6 0 0 1-12 0z', 'M12 18v4'],
  database: ['M12 8c4.4 0 8-1.3 8-3s-3.6-3-8-3-8 1.3-8 3 3.6 3 8 3z', 'M4 5v14c0 1.7 3.6 3 8 3s8-1.3 8-3V5', 'M4 12c0 1.7 3.6 3 8 3s8-1.3 8-3'],
  chevron: ['M9 6l6 6-6 6'],
  restore: ['M3 12a9 9 0 1 0 3-6.7L3 8', 'M3 3v5h5'],
  search: ['M11 19a8 8 0 1 0 0-16 8 8 0 0 0 0 16z', 'M21 21l-4.3-4.3'],
  inbox: ['M22 12h-6l-2 3h-4l-2-3H2', 'M5.5 5h13L22 12v6a2 2 0 0 1-2 2H4a2 2 0 0 1-2-2v-6z'],
  user: ['M20 21v-2a4 4 0 0 0-4-4H8a4 4 0 0 0-4 4v2', 'M12 11a4 4 0 1 0 0-8 4 4 0 0 0 0 8z'],
};

export function icon(name, cls) {
  return s('svg', {viewBox: '0 0 24 24', fill: 'none', stroke: 'currentColor', 'stroke-width': 2,
                   'stroke-linecap': 'round', 'stroke-linejoin': 'round', 'aria-hidden': 'true', class: cls},
           (ICONS[name] || ICONS.info).map((d) => s('path', {d})));
}

export function logo() {
  return s('svg', {viewBox: '0 0 32 32', class: 'brand-mark', 'aria-hidden': 'true'},
           s('rect', {width: 32, height: 32, rx: 8, fill: '#4f46e5'}),
           s('path', {d: 'M7 11h18M7 16h12M7 21h7', stroke: '#fff', 'stroke-width': 3, 'stroke-linecap': 'round'}),
           s('circle', {cx: 23, cy: 21, r: 2.5, fill: '#5eead4'}));
}

// ---- Formatting ----
const intFormat = new Intl.NumberFormat(undefined, {maximumFractionDigits: 0});
const oneDecimal = new Intl.NumberFormat(undefined, {maximumFractionDigits: 1});
const twoDecimals = new Intl.NumberFormat(undefined, {maximumFractionDigits: 2});

export function fmtInt(n) {
  return Number.isFinite(n) ? intFormat.format(n) : '—';
}

export function fmtCompact(n) {
  if (!Number.isFinite(n)) return '—';
  const a = Math.abs(n);
  if (a >= 1e9) return `${oneDecimal.format(n / 1e9)}G`;
  if (a >= 1e6) return `${oneDecimal.format(n / 1e6)}M`;
  if (a >= 1e4) return `${oneDecimal.format(n / 1e3)}k`;
  return a < 10 && a !== Math.floor(a) ? oneDecimal.format(n) : intFormat.format(n);
}

export function fmtRate(n) {
  if (!Number.isFinite(n)) return '—';
  return n >= 100 ? fmtCompact(n) : oneDecimal.format(n);
}

const twoSignificant = new Intl.NumberFormat(undefined, {maximumSignificantDigits: 2});

export function fmtMs(ms) {
  if (!Number.isFinite(ms)) return '—';
  if (ms === 0) return '0';
  if (ms < 1) return twoSignificant.format(ms);  // checks take microseconds: 0.031, not 0
  if (ms < 100) return oneDecimal.format(ms);
  return intFormat.format(ms);
}

export function fmtPercent(fraction) {
  return Number.isFinite(fraction) ? `${twoDecimals.format(fraction * 100)}%` : '—';
}

export function fmtDuration(seconds) {
  if (!Number.isFinite(seconds)) return '—';
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const sec = Math.floor(seconds % 60);
  const two = (a, ua, b, ub) => (b ? `${a}${ua} ${b}${ub}` : `${a}${ua}`);  // "1h", not "1h 0m"
  if (d > 0) return two(d, 'd', h, 'h');
  if (h > 0) return two(h, 'h', m, 'm');
  if (m > 0) return two(m, 'm', sec, 's');
  return `${sec}s`;
}

// A time (RFC 3339 text or Unix seconds) as local date and time.
export function fmtTime(at) {
  const d = typeof at === 'number' ? new Date(at * 1000) : new Date(at);
  if (Number.isNaN(d.getTime())) return String(at ?? '—');
  return d.toLocaleString(undefined, {year: 'numeric', month: 'short', day: 'numeric',
                                      hour: '2-digit', minute: '2-digit', second: '2-digit'});
}

export function fmtClock(unixSeconds) {
  return new Date(unixSeconds * 1000).toLocaleTimeString(undefined, {hour: '2-digit', minute: '2-digit', second: '2-digit'});
}

// "3 min ago" for a time in the past.
export function fmtAgo(at) {
  const t = typeof at === 'number' ? at * 1000 : Date.parse(at);
  if (!Number.isFinite(t)) return '';
  const s = Math.round((Date.now() - t) / 1000);
  if (s < 5) return 'just now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

// {user_id: "alice", headers: {"x-client": "m"}} → [["user_id", "alice"], ["headers.x-client", "m"]].
export function flatAttributes(obj) {
  const out = [];
  for (const [k, v] of Object.entries(obj || {})) {
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      for (const [hk, hv] of Object.entries(v)) out.push([`${k}.${hk}`, String(hv)]);
    } else {
      out.push([k, String(v)]);
    }
  }
  return out;
}

export function chip(name, value) {
  return value === undefined ? h('span', {class: 'chip'}, name)
                             : h('span', {class: 'chip'}, h('b', {}, `${name}=`), value);
}

export function badge(text, kind) {
  return h('span', {class: ['badge', kind]}, text);
}

export function emptyState(iconName, text) {
  return h('div', {class: 'empty'}, icon(iconName), text);
}
