// What changed between two JSON values (an audit entry's before and after): one row per leaf
// path whose value differs, arrays compared as whole values (a rule's `key` is read as a whole).
import {h} from './dom.js';

function isObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

// [{path, before, after}] with `undefined` for a side where the path is absent.
export function diffValues(before, after, path = '') {
  if (isObject(before) && isObject(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
    return keys.flatMap((k) => diffValues(before[k], after[k], path ? `${path}.${k}` : k));
  }
  if (isObject(before) && after === undefined) return diffValues(before, {}, path);
  if (isObject(after) && before === undefined) return diffValues({}, after, path);
  if (JSON.stringify(before) === JSON.stringify(after)) return [];
  return [{path: path || '(value)', before, after}];
}

const show = (v) => (v === undefined ? '—' : typeof v === 'string' ? v : JSON.stringify(v));

// A three-column table: field, before, after.
export function renderDiff(before, after) {
  const rows = diffValues(before === null ? undefined : before, after === null ? undefined : after);
  if (!rows.length) return h('p', {class: 'muted'}, 'No difference.');
  return h('div', {class: 'diff', 'data-testid': 'diff'},
    h('div', {class: 'd-head'}, 'Field'), h('div', {class: 'd-head'}, 'Before'), h('div', {class: 'd-head'}, 'After'),
    rows.map((r) => [
      h('div', {class: 'd-path'}, r.path),
      h('div', {class: r.before === undefined ? 'd-none' : 'd-old'}, show(r.before)),
      h('div', {class: r.after === undefined ? 'd-none' : 'd-new'}, show(r.after)),
    ]));
}
