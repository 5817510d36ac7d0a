// Allow and deny lists: the entries in force (files' ones read-only), adding an entry (one or
// more attributes, a reason, an optional expiry) and deleting a database entry.
import {h, fill, icon, chip, badge, emptyState, fmtTime} from '../dom.js';
import {admin, ApiError} from '../api.js';
import {pageHead, card, notice, errorNotice, toast, confirmDialog, segmented, writeButton} from '../ui.js';

const ATTRIBUTES = ['ip_address', 'user_id', 'api_key', 'endpoint', 'method', 'tier'];
const NOT_ATTRIBUTES = new Set(['id', 'reason', 'expires_at', 'source', 'revision']);

function entryChips(entry) {
  const chips = [];
  for (const [k, v] of Object.entries(entry)) {
    if (NOT_ATTRIBUTES.has(k)) continue;
    if (v !== null && typeof v === 'object') for (const [hk, hv] of Object.entries(v)) chips.push(chip(`${k}.${hk}`, String(hv)));
    else chips.push(chip(k, String(v)));
  }
  return h('div', {class: 'chips'}, chips);
}

export function mountLists(app, el, {kind}) {
  const formBox = h('div', {});
  const body = h('div', {});
  const status = h('div', {});
  const tabs = segmented([{value: 'allow', label: 'Allow list'}, {value: 'deny', label: 'Deny list'}], kind,
                         (v) => app.navigate(`#/lists/${v}`), 'List');
  const what = kind === 'allow'
    ? 'A request matching an entry skips every rule: allowed, without limit headers.'
    : 'A request matching an entry is refused with 403, whatever the rules say. Deny wins over allow.';
  fill(el, pageHead('Allow & deny lists', what, tabs), status, formBox, card({title: kind === 'allow' ? 'Allowed' : 'Denied', body, flush: true, testid: `list-${kind}`}));

  // ---- add form ----
  const rows = h('div', {class: 'rows'});
  const errors = new Map();
  const addRow = (attr = 'ip_address', value = '') => {
    const select = h('select', {name: 'entry-attr', 'aria-label': 'Attribute'}, [...ATTRIBUTES, 'headers.'].map((a) =>
      h('option', {value: a, selected: a === attr}, a === 'headers.' ? 'header…' : a)));
    const header = h('input', {type: 'text', name: 'entry-header', placeholder: 'header name', hidden: attr !== 'headers.', 'aria-label': 'Header name'});
    const input = h('input', {type: 'text', name: 'entry-value', value, autocomplete: 'off', spellcheck: 'false',
                              placeholder: 'e.g. 10.0.0.0/8, ops-bot', 'aria-label': 'Value'});
    select.addEventListener('change', () => {
      header.hidden = select.value !== 'headers.';
    });
    const err = h('p', {class: 'field-error', hidden: true});
    const row = h('div', {}, h('div', {class: 'row'}, h('div', {class: 'gap'}, select, header), input,
      h('button', {type: 'button', class: 'icon ghost', 'aria-label': 'Remove attribute', onclick: () => {
        if (rows.children.length > 1) row.remove();
      }}, icon('trash'))), err);
    row.name = () => (select.value === 'headers.' ? `headers.${header.value.trim().toLowerCase()}` : select.value);
    row.input = input;
    row.error = err;
    rows.append(row);
  };
  const reason = h('input', {type: 'text', name: 'reason', placeholder: kind === 'deny' ? 'e.g. abuse' : 'e.g. internal monitoring'});
  const expires = h('input', {type: 'datetime-local', name: 'expires_at'});
  const formError = h('div', {});
  const slot = (name) => {
    const p = h('p', {class: 'field-error', hidden: true, 'data-error-for': name});
    errors.set(name, p);
    return p;
  };
  const addButton = writeButton(app, {class: 'primary', type: 'submit', 'data-testid': 'add-entry'}, icon('plus'), 'Add entry');
  const form = h('form', {novalidate: true, onsubmit: (e) => {
    e.preventDefault();
    add();
  }},
    h('div', {class: 'form-grid'},
      h('div', {class: 'field span-2'}, h('label', {}, 'Matches requests with'), rows,
        h('button', {type: 'button', class: 'small ghost', onclick: () => addRow('user_id')}, icon('plus'), 'And another attribute'), slot('')),
      h('div', {class: 'field'}, h('label', {for: 'f-reason'}, 'Reason'), Object.assign(reason, {id: 'f-reason'}), slot('reason')),
      h('div', {class: 'field'}, h('label', {for: 'f-expires'}, 'Expires (optional)'), Object.assign(expires, {id: 'f-expires'}),
        h('div', {class: 'hint'}, 'Your local time; ignored once past'), slot('expires_at'))),
    formError,
    h('div', {class: 'gap'}, addButton));
  addRow('ip_address');

  const updateForm = () => {
    const canWrite = app.role === 'write' && (!app.health || app.hasDatabase);
    fill(formBox, canWrite ? card({title: `Add to the ${kind} list`, body: form}) :
      app.health && !app.hasDatabase ? notice('info', 'Lists come from files only', 'This server has no rules database: add entries in the rules files.') : null);
  };
  const offHealth = app.onHealth(updateForm);
  updateForm();

  async function add() {
    for (const p of errors.values()) p.hidden = true;
    for (const r of rows.children) {
      r.error.hidden = true;
      r.input.removeAttribute('aria-invalid');
    }
    fill(formError);
    const entry = {};
    for (const r of rows.children) {
      const name = r.name();
      if (name.startsWith('headers.')) entry[name] = r.input.value;
      else entry[name] = r.input.value.trim();
    }
    if (reason.value.trim()) entry.reason = reason.value.trim();
    if (expires.value) entry.expires_at = new Date(expires.value).toISOString().replace(/\.\d{3}Z$/, 'Z');
    try {
      const {data} = await admin.addEntry(kind, entry);
      toast(`Entry ${data.id} added to the ${kind} list`);
      for (const r of rows.children) r.input.value = '';
      reason.value = '';
      expires.value = '';
      load();
    } catch (e) {
      if (e instanceof ApiError && e.status === 422) {
        const loose = [];
        for (const d of e.details) {
          const row = [...rows.children].find((r) => r.name() === d.field);
          const target = row ? row.error : errors.get(d.field);
          if (row) row.input.setAttribute('aria-invalid', 'true');
          if (target) {
            target.textContent = d.message;
            target.hidden = false;
          } else {
            loose.push(d.field ? `${d.field}: ${d.message}` : d.message);
          }
        }
        fill(formError, notice('danger', 'The entry was not added', loose.join(' · ') || 'Each problem is shown next to its field.'));
      } else {
        fill(formError, errorNotice(e, 'Adding the entry'));
      }
    }
  }

  // ---- the list ----
  async function load() {
    try {
      const {data} = await admin.list(kind);
      render(data.entries || []);
    } catch (e) {
      fill(body, h('div', {class: 'card-body'}, errorNotice(e, 'Loading the list')));
    }
  }

  function render(entries) {
    if (!entries.length) return fill(body, emptyState('lists', `The ${kind} list is empty.`));
    const now = Date.now();
    fill(body, h('div', {class: 'table-wrap'}, h('table', {},
      h('thead', {}, h('tr', {}, ['Matches', 'Reason', 'Expires', 'Source', ''].map((t) => h('th', {}, t)))),
      h('tbody', {}, entries.map((e) => {
        const expired = e.expires_at && Date.parse(e.expires_at) < now;
        const fromDb = e.source === 'database';
        return h('tr', {'data-entry-id': e.id},
          h('td', {}, entryChips(e)),
          h('td', {}, e.reason || h('span', {class: 'faint'}, '—')),
          h('td', {class: 'nowrap'}, e.expires_at ? [fmtTime(e.expires_at), expired ? [' ', badge('expired', 'warn')] : null]
                                                  : h('span', {class: 'faint'}, 'never')),
          h('td', {}, fromDb ? badge('database', 'accent') : h('div', {}, badge('file'), h('div', {class: 'sub mono'}, e.id))),
          h('td', {class: 'actions'}, fromDb ? writeButton(app, {class: 'small danger', 'data-action': 'delete', onclick: () => remove(e)},
                                                           icon('trash'), 'Delete') : null));
      })))));
  }

  async function remove(entry) {
    const ok = await confirmDialog({title: `Remove this ${kind} list entry?`, details: entryChips(entry),
      text: kind === 'deny' ? 'Matching requests are no longer refused.' : 'Matching requests go through the rules again.',
      confirm: 'Remove entry', danger: true});
    if (!ok) return;
    try {
      await admin.deleteEntry(kind, entry.id);
      toast('Entry removed');
    } catch (e) {
      fill(status, errorNotice(e, 'Removing the entry'));
    }
    load();
  }

  load();
  return offHealth;
}
