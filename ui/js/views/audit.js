// Audit log: every change, newest first, with who made it and, opened, what it changed (a
// field-by-field diff of before and after).
import {h, fill, icon, badge, emptyState, fmtInt, fmtTime, fmtAgo} from '../dom.js';
import {admin} from '../api.js';
import {renderDiff} from '../diff.js';
import {pageHead, card, errorNotice, segmented} from '../ui.js';

const ACTION_KIND = {create: 'ok', update: 'accent', delete: 'danger', reset: 'warn', restore: 'warn'};
const KINDS = [{value: '', label: 'All'}, {value: 'rule', label: 'Rules'}, {value: 'allow', label: 'Allow'},
               {value: 'deny', label: 'Deny'}, {value: 'tier', label: 'Tiers'}, {value: 'counter', label: 'Counters'}];

export function mountAudit(app, el) {
  const state = {entries: null, limit: 100, kind: '', open: new Set()};
  const body = h('div', {});
  const more = h('button', {type: 'button', hidden: true, onclick: () => {
    state.limit *= 2;
    load();
  }}, 'Show older entries');
  const kinds = segmented(KINDS, '', (v) => {
    state.kind = v;
    render();
  }, 'Kind');
  fill(el, pageHead('Audit log', 'Every change to rules, lists, tiers and counters: who, when, and what it was before and after.', kinds),
    card({body, flush: true, testid: 'audit-table'}), h('div', {class: 'gap'}, more));

  async function load() {
    try {
      const {data} = await admin.audit(state.limit);
      state.entries = data.entries || [];
      more.hidden = state.entries.length < state.limit || state.limit >= 10000;
      render();
    } catch (e) {
      fill(body, h('div', {class: 'card-body'}, errorNotice(e, 'Loading the audit log')));
    }
  }

  const kindOf = (e) => (e.kind === 'allow_list' ? 'allow' : e.kind === 'deny_list' ? 'deny' : e.kind);

  function render() {
    if (!state.entries) return;
    const rows = state.entries.filter((e) => !state.kind || kindOf(e) === state.kind || (e.kind || '').startsWith(state.kind));
    if (!rows.length) return fill(body, emptyState('audit', state.entries.length ? 'No entry of this kind.' : 'No change has been made yet.'));
    fill(body, h('div', {class: 'table-wrap'}, h('table', {},
      h('thead', {}, h('tr', {}, ['', 'Version', 'When', 'Who', 'Action', 'What'].map((t) => h('th', {}, t)))),
      h('tbody', {}, rows.flatMap((e, i) => {
        const key = `${e.version}:${e.kind}:${e.target}:${i}`;
        const open = state.open.has(key);
        const toggle = () => {
          if (open) state.open.delete(key);
          else state.open.add(key);
          render();
        };
        const row = h('tr', {class: ['audit-row', open ? 'open' : null], 'data-version': e.version, onclick: toggle},
          h('td', {}, h('button', {type: 'button', class: 'icon ghost', 'aria-expanded': String(open), 'aria-label': 'Show the change',
                                   onclick: (ev) => {
                                     ev.stopPropagation();
                                     toggle();
                                   }}, icon('chevron', 'expand'))),
          h('td', {class: 'tabular'}, h('b', {}, fmtInt(e.version))),
          h('td', {class: 'nowrap'}, fmtTime(e.at), h('div', {class: 'sub'}, fmtAgo(e.at))),
          h('td', {}, h('span', {class: 'mono'}, e.actor)),
          h('td', {}, badge(e.action, ACTION_KIND[e.action])),
          h('td', {}, h('span', {class: 'faint'}, `${(e.kind || '').replace('_', ' ')} `), h('span', {class: 'id'}, e.target)));
        if (!open) return [row];
        return [row, h('tr', {class: 'audit-detail'}, h('td', {}), h('td', {colspan: 5}, renderDiff(e.before, e.after)))];
      })))));
  }

  load();
  return null;
}
