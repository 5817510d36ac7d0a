// A small SVG line chart for time series: a few series over a shared time axis, horizontal grid
// lines with "nice" values, a legend with each series' latest value, and a cursor with a tooltip
// on hover. Redrawn whole on each update (a few hundred points: cheap), and on resize.
import {h, s, fill, clear, fmtClock} from './dom.js';

const PAD = {left: 44, right: 10, top: 10, bottom: 22};

// The smallest "nice" number (1, 2, 4, 8 × 10^k) at or above `v`: its quarters, the grid
// lines, are nice too.
function niceCeil(v) {
  if (!(v > 0)) return 1;
  const exp = Math.floor(Math.log10(v));
  const base = 10 ** exp;
  for (const m of [1, 2, 4, 8, 10]) if (m * base >= v) return m * base;
  return 10 * base;
}

export class LineChart {
  // series: [{key, label, cls}] (cls names the colour: allowed, rejected, p50…);
  // format(value) → text for the axis, tooltip and legend; unit: shown after legend values.
  constructor(container, {series, format, unit = '', minMax = 1, label}) {
    this.series = series;
    this.format = format;
    this.unit = unit;
    this.minMax = minMax;
    this.points = [];
    this.hover = null;
    this.legend = h('div', {class: 'legend'});
    this.box = h('div', {class: 'chart', role: 'img', 'aria-label': label || 'chart'});
    this.svg = s('svg', {preserveAspectRatio: 'none'});
    this.tooltip = h('div', {class: 'tooltip', hidden: true});
    this.box.append(this.svg, this.tooltip);
    fill(container, this.legend, this.box);
    this.box.addEventListener('mousemove', (e) => this.onMove(e));
    this.box.addEventListener('mouseleave', () => {
      this.hover = null;
      this.tooltip.hidden = true;
      this.draw();
    });
    this.resize = new ResizeObserver(() => this.draw());
    this.resize.observe(this.box);
  }

  destroy() {
    this.resize.disconnect();
  }

  // points: [{at: unix seconds, <series key>: number, …}], oldest first.
  update(points) {
    this.points = points || [];
    this.draw();
    this.drawLegend();
  }

  drawLegend() {
    const last = this.points[this.points.length - 1];
    fill(this.legend, this.series.map((sr) => h('span', {},
      h('i', {class: ['swatch', sr.cls]}), sr.label,
      h('b', {}, last ? `${this.format(last[sr.key] ?? 0)}${this.unit}` : '—'))));
  }

  geometry() {
    const width = Math.max(this.box.clientWidth, 100);
    const height = Math.max(this.box.clientHeight, 80);
    const pts = this.points;
    const t0 = pts.length ? pts[0].at : 0;
    const t1 = pts.length ? pts[pts.length - 1].at : 1;
    let max = 0;
    for (const p of pts) for (const sr of this.series) max = Math.max(max, p[sr.key] ?? 0);
    const top = niceCeil(Math.max(max, this.minMax));
    const x = (t) => PAD.left + ((t - t0) / Math.max(t1 - t0, 1)) * (width - PAD.left - PAD.right);
    const y = (v) => PAD.top + (1 - v / top) * (height - PAD.top - PAD.bottom);
    return {width, height, t0, t1, top, x, y};
  }

  draw() {
    const svg = this.svg;
    clear(svg);
    const g = this.geometry();
    svg.setAttribute('viewBox', `0 0 ${g.width} ${g.height}`);
    // Grid: four steps from 0 to the nice top.
    for (let i = 0; i <= 4; i++) {
      const v = (g.top * i) / 4;
      const yy = g.y(v);
      svg.append(s('line', {class: 'grid-line', x1: PAD.left, x2: g.width - PAD.right, y1: yy, y2: yy}),
                 s('text', {class: 'axis-label', x: PAD.left - 8, y: yy + 4, 'text-anchor': 'end', text: this.format(v)}));
    }
    if (this.points.length < 2) return;
    // Time labels: a round step giving about one label per 110 px.
    const span = g.t1 - g.t0;
    const slots = Math.max(1, Math.floor((g.width - PAD.left - PAD.right) / 110));
    const step = [5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600].find((st) => span / st <= slots) || 3600;
    for (let t = Math.ceil(g.t0 / step) * step; t <= g.t1; t += step) {
      svg.append(s('text', {class: 'axis-label', x: g.x(t), y: g.height - 4, 'text-anchor': 'middle', text: fmtClock(t)}));
    }
    const base = g.y(0);
    for (const sr of this.series) {
      let d = '';
      for (const p of this.points) d += `${d ? 'L' : 'M'}${g.x(p.at).toFixed(1)},${g.y(p[sr.key] ?? 0).toFixed(1)}`;
      const first = g.x(this.points[0].at).toFixed(1);
      const last = g.x(this.points[this.points.length - 1].at).toFixed(1);
      if (sr.area !== false) svg.append(s('path', {class: `area s-${sr.cls}`, d: `${d}L${last},${base}L${first},${base}Z`}));
      svg.append(s('path', {class: `line s-${sr.cls}`, d, 'data-series': sr.key}));
    }
    if (this.hover) {
      const p = this.hover;
      const xx = g.x(p.at);
      svg.append(s('line', {class: 'cursor', x1: xx, x2: xx, y1: PAD.top, y2: g.height - PAD.bottom}));
      for (const sr of this.series) {
        svg.append(s('circle', {class: `marker s-${sr.cls}`, cx: xx, cy: g.y(p[sr.key] ?? 0), r: 3.5}));
      }
    }
  }

  onMove(e) {
    if (this.points.length < 2) return;
    const rect = this.box.getBoundingClientRect();
    const g = this.geometry();
    const px = e.clientX - rect.left;
    const t = g.t0 + ((px - PAD.left) / (g.width - PAD.left - PAD.right)) * (g.t1 - g.t0);
    let best = this.points[0];
    for (const p of this.points) if (Math.abs(p.at - t) < Math.abs(best.at - t)) best = p;
    this.hover = best;
    fill(this.tooltip,
         h('div', {class: 't-time'}, fmtClock(best.at)),
         this.series.map((sr) => h('div', {class: 't-row'},
           h('span', {}, h('i', {class: ['swatch', sr.cls]}), sr.label),
           h('b', {}, `${this.format(best[sr.key] ?? 0)}${this.unit}`))));
    this.tooltip.hidden = false;
    const left = Math.min(Math.max(g.x(best.at) + 12, 0), rect.width - 170);
    this.tooltip.style.left = `${left}px`;
    this.tooltip.style.top = '8px';
    this.draw();
  }
}
