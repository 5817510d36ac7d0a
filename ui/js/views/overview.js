// Overview: live rates and check latency (a chart that moves, from /v1/stats/timeline every
// second), totals for a chosen window (/v1/stats/global), the heaviest keys (/v1/stats/top), and
// the health of the store and the rules database (/health).
import {h, fill, icon, badge, chip, emptyState, flatAttributes,
        fmtInt, fmtRate, fmtMs, fmtPercent, fmtDuration, fmtCompact} from '../dom.js';
import {stats} from '../api.js';
import {LineChart} from '../chart.js';
import {pageHead, card, segmented, poller, errorNotice} from '../ui.js';

const WINDOWS = [{value: '1m', label: '1m'}, {value: '5m', label: '5m'}, {value: '15m', label: '15m'}, {value: '1h', label: '1h'}];
const WINDOW_NAMES = {'1m': 'last minute', '5m': 'last 5 minutes', '15m': 'last 15 minutes', '1h': 'last hour'};
const SCOPE_KEY = 'sluice.scope';

function kpi(label, cls, unit, testid) {
  const value = h('span', {}, '—');
  const foot = h('div', {class: 'kpi-foot'}, '\u00a0');
  const el = h('div', {class: 'card kpi', 'data-testid': testid},
    h('div', {class: 'kpi-label'}, h('i', {class: ['dot', cls]}), label),
    h('div', {class: 'kpi-value'}, value, h('span', {class: 'kpi-unit'}, unit)), foot);
  return {el, set(v, f) {
    fill(value, v);
    fill(foot, f || '\u00a0');
  }};
}

function stat(label, cls, testid) {
  const value = h('div', {class: 'stat-value', 'data-testid': testid}, '—');
  return {
    el: h('div', {}, h('div', {class: 'stat-label'}, cls ? h('i', {class: ['dot', cls]}) : null, label), value),
    set(text, raw) {
      fill(value, text);
      if (raw !== undefined) value.dataset.value = String(raw);
    },
  };
}

export function mountOverview(app, el) {
  const state = {
    window: '5m', by: 'rejected', ruleId: '',
    scope: sessionStorage.getItem(SCOPE_KEY) || '',
  };
  const scopeParam = () => (state.scope === 'cluster' ? 'cluster' : undefined);

  // ---- Header: scope (only where there is a cluster to sum: a Redis store) and liveness ----
  const live = h('span', {class: 'live', 'data-testid': 'live'}, h('i', {class: 'dot'}), 'Live');
  const scopeBox = h('span', {});
  const renderScope = (hl) => {
    const shared = hl?.store?.backend && hl.store.backend !== 'memory';
    if (!shared && state.scope) state.scope = '';
    fill(scopeBox, shared ? segmented([{value: '', label: 'This server'}, {value: 'cluster', label: 'Cluster'}],
      state.scope, (v) => {
        state.scope = v;
        sessionStorage.setItem(SCOPE_KEY, v);
        timeline.now();
        totals.now();
        top.now();
      }, 'Scope') : null);
  };

  // ---- Live figures ----
  const kRequests = kpi('Requests', 'requests', '/s', 'kpi-requests');
  const kAllowed = kpi('Allowed', 'allowed', '/s', 'kpi-allowed');
  const kRejected = kpi('Rejected', 'rejected', '/s', 'kpi-rejected');
  const kBlocked = kpi('Blocked', 'blocked', '/s', 'kpi-blocked');
  const kLatency = kpi('Check latency p99', 'p99', 'ms', 'kpi-latency');

  const trafficBox = h('div', {});
  const latencyBox = h('div', {});
  const traffic = new LineChart(trafficBox, {
    label: 'Checks per second by result',
    series: [{key: 'allowed', label: 'Allowed', cls: 'allowed'}, {key: 'rejected', label: 'Rejected', cls: 'rejected'},
             {key: 'blocked', label: 'Blocked', cls: 'blocked'}],
    format: fmtRate, unit: '/s', minMax: 4});
  const latency = new LineChart(latencyBox, {
    label: 'Check latency percentiles',
    series: [{key: 'p50_ms', label: 'p50', cls: 'p50', area: false}, {key: 'p99_ms', label: 'p99', cls: 'p99'}],
    format: fmtMs, unit: ' ms', minMax: 0.01});
  const trafficError = h('div', {});
  const latencyError = h('div', {});

  // ---- Totals for the window ----
  const tRequests = stat('Requests', 'requests', 'total-requests');
  const tAllowed = stat('Allowed', 'allowed', 'total-allowed');
  const tRejected = stat('Rejected', 'rejected', 'total-rejected');
  const tBlocked = stat('Blocked', 'blocked', 'total-blocked');
  const tShadow = stat('Shadow rejected', 'shadow', 'total-shadow');
  const tErrors = stat('Store errors', 'errors', 'total-errors');
  const tRate = stat('Rejection rate', null, 'total-rate');
  const tP50 = stat('Latency p50', 'p50', 'total-p50');
  const tP99 = stat('Latency p99', 'p99', 'total-p99');
  const byRule = h('div', {class: 'rule-bars', 'data-testid': 'by-rule'});
  const totalsError = h('div', {});
  // One window for the whole page: the charts' span, the totals and the top keys.
  const windowPicker = segmented(WINDOWS, state.window, (v) => {
    state.window = v;
    renderWindowNames();
    timeline.now();
    totals.now();
    top.now();
  }, 'Window');
  const trafficSpan = h('span', {});
  const latencySpan = h('span', {});
  const totalsSpan = h('span', {});
  const renderWindowNames = () => {
    fill(trafficSpan, `Checks per second by result, ${WINDOW_NAMES[state.window]}`);
    fill(latencySpan, `Percentiles in milliseconds, ${WINDOW_NAMES[state.window]}`);
    fill(totalsSpan, `Every check of the ${WINDOW_NAMES[state.window]}`);
  };
  renderWindowNames();

  // ---- Top keys ----
  const ruleSelect = h('select', {class: 'compact', 'aria-label': 'Rule', onchange: () => {
    state.ruleId = ruleSelect.value;
    top.now();
  }}, h('option', {value: ''}, 'All rules'));
  const topBody = h('div', {'data-testid': 'top-keys'});
  const byPicker = segmented([{value: 'rejected', label: 'Rejected'}, {value: 'requests', label: 'Requests'}], state.by, (v) => {
    state.by = v;
    top.now();
  }, 'Rank by');

  // ---- Health ----
  const healthBody = h('div', {'data-testid': 'health'});
  const healthBadge = h('span', {});

  fill(el,
    pageHead('Overview', 'What the limiter decides, live.', scopeBox, windowPicker, live),
    h('div', {class: 'grid kpis'}, kRequests.el, kAllowed.el, kRejected.el, kBlocked.el, kLatency.el),
    h('div', {class: 'grid two'},
      card({title: 'Traffic', subtitle: trafficSpan, body: [trafficError, trafficBox], testid: 'traffic-chart'}),
      card({title: 'Check latency', subtitle: latencySpan, body: [latencyError, latencyBox], testid: 'latency-chart'})),
    h('div', {class: 'grid two-one'},
      card({title: 'Totals', subtitle: totalsSpan, testid: 'totals',
            body: [totalsError, h('div', {class: 'stats'}, tRequests.el, tAllowed.el, tRejected.el, tBlocked.el,
                                  tShadow.el, tErrors.el, tRate.el, tP50.el, tP99.el), byRule]}),
      card({title: 'Health', actions: healthBadge, body: healthBody})),
    card({title: 'Top limited keys', subtitle: 'Heaviest keys in the window (a bounded summary: counts may be overestimated by at most ± error)',
          actions: [ruleSelect, byPicker], body: topBody, flush: true}));

  // ---- Polling ----
  const timeline = poller(async () => {
    try {
      const {data} = await stats.timeline({window: state.window, scope: scopeParam()});
      const step = data.step_seconds || 1;
      const points = (data.points || []).map((p) => ({
        at: p.at, allowed: p.allowed / step, rejected: p.rejected / step, blocked: p.blocked / step,
        requests: p.requests / step, p50_ms: p.p50_ms, p99_ms: p.p99_ms,
      }));
      traffic.update(points);
      latency.update(points);
      fill(trafficError);
      fill(latencyError);
      // The live figures: the last five whole steps (the newest point is still filling).
      const recent = points.slice(-6, -1);
      const span = `last ${5 * step} s`;
      const avg = (k) => (recent.length ? recent.reduce((a, p) => a + p[k], 0) / recent.length : NaN);
      const last = recent[recent.length - 1];
      kRequests.set(fmtRate(avg('requests')), span);
      kAllowed.set(fmtRate(avg('allowed')), span);
      kRejected.set(fmtRate(avg('rejected')), span);
      kBlocked.set(fmtRate(avg('blocked')), span);
      kLatency.set(fmtMs(last ? last.p99_ms : NaN), last ? `p50 ${fmtMs(last.p50_ms)} ms` : '');
      live.classList.remove('stale');
      fill(live, h('i', {class: 'dot'}), 'Live');
    } catch (e) {
      live.classList.add('stale');
      fill(live, h('i', {class: 'dot'}), 'Paused');
      fill(trafficError, errorNotice(e, 'Loading the timeline'));
    }
  }, 1000);

  const totals = poller(async () => {
    try {
      const {data} = await stats.global({window: state.window, scope: scopeParam()});
      tRequests.set(fmtInt(data.requests), data.requests);
      tAllowed.set(fmtInt(data.allowed), data.allowed);
      tRejected.set(fmtInt(data.rejected), data.rejected);
      tBlocked.set(fmtInt(data.blocked), data.blocked);
      tShadow.set(fmtInt(data.shadow_rejected), data.shadow_rejected);
      tErrors.set(fmtInt(data.errors), data.errors);
      tRate.set(fmtPercent(data.rejection_rate), data.rejection_rate);
      tP50.set(`${fmtMs(data.p50_ms)} ms`, data.p50_ms);
      tP99.set(`${fmtMs(data.p99_ms)} ms`, data.p99_ms);
      renderByRule(data.by_rule || []);
      fill(totalsError);
    } catch (e) {
      fill(totalsError, errorNotice(e, 'Loading the totals'));
    }
  }, 2000);

  function renderByRule(rows) {
    // Rules for the top-keys filter, kept in the select's order of appearance.
    const known = new Set([...ruleSelect.options].map((o) => o.value));
    for (const r of rows) if (!known.has(r.rule_id)) ruleSelect.append(h('option', {value: r.rule_id}, r.rule_id));
    const sorted = [...rows].sort((a, b) => (b.allowed + b.rejected) - (a.allowed + a.rejected)).slice(0, 8);
    if (!sorted.length) return fill(byRule);
    const max = Math.max(...sorted.map((r) => r.allowed + r.rejected), 1);
    fill(byRule, h('h3', {class: 'muted'}, 'By rule'), sorted.map((r) => {
      const total = r.allowed + r.rejected;
      return h('div', {'data-rule': r.rule_id},
        h('div', {class: 'rule-bar-head'}, h('span', {class: 'id'}, r.rule_id),
          h('span', {}, `${fmtCompact(r.allowed)} allowed · ${fmtCompact(r.rejected)} rejected`)),
        barOf([[r.allowed / max, 'allowed'], [r.rejected / max, 'rejected']], total));
    }));
  }

  function barOf(parts) {
    const bar = h('div', {class: 'bar'});
    for (const [fraction, cls] of parts) {
      const i = h('i', {class: cls});
      i.style.width = `${Math.max(0, Math.min(1, fraction)) * 100}%`;
      bar.append(i);
    }
    return bar;
  }

  const top = poller(async () => {
    try {
      const {data} = await stats.top({by: state.by, ruleId: state.ruleId || undefined, window: state.window,
                                      limit: 10, scope: scopeParam()});
      const rows = Array.isArray(data) ? data : [];
      if (!rows.length) {
        return fill(topBody, emptyState('inbox', state.by === 'rejected' ? 'No key was rejected in this window.' : 'No checks in this window.'));
      }
      const max = Math.max(...rows.map((r) => r.count), 1);
      fill(topBody, h('div', {class: 'table-wrap'}, h('table', {},
        h('thead', {}, h('tr', {}, h('th', {}, '#'), h('th', {}, 'Key'), h('th', {}, 'Rule'),
          h('th', {class: 'num'}, state.by === 'rejected' ? 'Rejected' : 'Requests'), h('th', {}, ''), h('th', {class: 'num'}, '± error'))),
        h('tbody', {}, rows.map((r, i) => h('tr', {},
          h('td', {class: 'faint'}, String(i + 1)),
          h('td', {}, h('div', {class: 'chips'}, flatAttributes(r.key).map(([k, v]) => chip(k, v)))),
          h('td', {}, h('span', {class: 'id'}, r.rule_id)),
          h('td', {class: 'num'}, fmtInt(r.count)),
          h('td', {}, barOf([[r.count / max, state.by === 'rejected' ? 'rejected' : 'requests']])),
          h('td', {class: 'num faint'}, r.error ? fmtInt(r.error) : '0')))))));
    } catch (e) {
      fill(topBody, h('div', {class: 'card-body'}, errorNotice(e, 'Loading the top keys')));
    }
  }, 4000);

  const offHealth = app.onHealth((hl) => {
    renderScope(hl);
    renderHealth(hl);
  });

  function renderHealth(hl) {
    if (!hl) return;
    if (!app.reachable) {
      // What /health said last is no longer known to be true.
      fill(healthBadge, badge('unreachable', 'danger'));
      healthBody.classList.add('stale');
      return;
    }
    healthBody.classList.remove('stale');
    const statusKind = (s) => (s === 'healthy' || s === 'connected' || s === 'accepting' ? 'ok' : s === 'degraded' ? 'warn' : 'danger');
    fill(healthBadge, badge(hl.status, statusKind(hl.status)));
    const kv = (rows) => h('dl', {class: 'kv'}, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
    fill(healthBody,
      h('div', {class: 'health-section', 'data-testid': 'health-store'},
        h('h3', {}, h('span', {class: 'gap'}, icon('plug'), 'Store'), badge(hl.store?.status || 'unknown', statusKind(hl.store?.status))),
        kv([['Backend', hl.store?.backend || '—'], ['Round trip', `${fmtMs(hl.store?.latency_ms)} ms`]])),
      h('div', {class: 'health-section', 'data-testid': 'health-database'},
        h('h3', {}, h('span', {class: 'gap'}, icon('database'), 'Rules database'),
          hl.database ? badge(hl.database.status, statusKind(hl.database.status)) : badge('none')),
        hl.database ? kv([['Backend', hl.database.backend], ['Version', fmtInt(hl.database.version)]])
                    : h('p', {class: 'muted'}, 'Rules come from files only.')),
      h('div', {class: 'health-section'},
        h('h3', {}, 'Server'),
        kv([['Version', hl.version || '—'], ['Up for', fmtDuration(hl.uptime_seconds)],
            ['Rules in force', fmtInt(hl.rules?.count)], ['Rules version', fmtInt(hl.rules?.version)],
            ...Object.entries(hl.listeners || {}).map(([name, st]) => [`Listener ${name}`, badge(st, statusKind(st))])])));
  }

  return () => {
    timeline.stop();
    totals.stop();
    top.stop();
    offHealth();
    traffic.destroy();
    latency.destroy();
  };
}
