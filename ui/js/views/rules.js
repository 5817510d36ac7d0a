// Rules: every rule in force (files' and the database's), and a form that creates or edits a
// database rule with every field of a rules file. The API validates (the same validator files
// go through); its 422 `details` are shown next to the field each names. Edits carry the
// revision read (If-Match), so an edit made on a stale copy is refused and said so.
import {h, fill, icon, chip, badge, emptyState, fmtInt} from '../dom.js';
import {admin, ApiError} from '../api.js';
import {pageHead, card, notice, errorNotice, toast, confirmDialog, writeButton} from '../ui.js';

const ATTRIBUTES = ['user_id', 'api_key', 'ip_address', 'endpoint', 'method', 'tier'];
const ALGORITHMS = ['sliding_window_counter', 'fixed_window', 'sliding_window_log', 'token_bucket', 'gcra', 'leaky_bucket'];
// The fields the form edits; any other field of a rule (from a newer server) is kept as it was.
const FORM_FIELDS = new Set(['id', 'description', 'match', 'key', 'limit', 'window', 'algorithm', 'burst',
                             'group', 'priority', 'mode', 'enabled', 'source', 'revision']);
const DEFAULTS = {algorithm: 'sliding_window_counter', mode: 'enforce', enabled: true};

const isFileRule = (rule) => rule.source && rule.source !== 'database';

function matchChips(match) {
  const entries = Object.entries(match || {});
  if (!entries.length) return h('span', {class: 'faint'}, 'every request');
  return h('div', {class: 'chips'}, entries.map(([k, v]) =>
    typeof v === 'object' && v !== null ? Object.entries(v).map(([hk, hv]) => chip(`${k}.${hk}`, String(hv))) : chip(k, String(v))));
}

function keyChips(key) {
  if (!key || !key.length) return h('span', {class: 'faint'}, 'one shared counter');
  return h('div', {class: 'chips'}, key.map((k) => chip(k)));
}

// ---------------------------------------------------------------- the list
export function mountRules(app, el) {
  const state = {rules: null, version: null, filter: ''};
  const search = h('input', {type: 'search', class: 'search', placeholder: 'Filter by id, match or key…', 'aria-label': 'Filter rules',
                             oninput: () => {
                               state.filter = search.value.trim().toLowerCase();
                               render();
                             }});
  const newButton = writeButton(app, {class: 'primary', 'data-testid': 'new-rule', onclick: () => app.navigate('#/rules/new')},
                                icon('plus'), 'New rule');
  const info = h('div', {});
  const body = h('div', {});
  const subtitle = h('span', {}, 'Every rule in force, from files and from the rules database.');
  fill(el, pageHead('Rules', subtitle, search, newButton), info, card({body, flush: true, testid: 'rules-table'}));

  const offHealth = app.onHealth(() => {
    const filesOnly = app.health && !app.hasDatabase;
    newButton.disabled = app.role !== 'write' || filesOnly;
    if (filesOnly) newButton.title = 'No rules database is configured: rules come from files only';
    fill(info, filesOnly ? notice('info', 'Rules come from files only', 'This server has no rules database (rules.database), so rules are read-only here: edit the rules files instead.') : null);
  });

  async function load() {
    try {
      const {data} = await admin.rules();
      state.rules = data.rules || [];
      state.version = data.version;
      render();
    } catch (e) {
      fill(body, h('div', {class: 'card-body'}, errorNotice(e, 'Loading the rules')));
    }
  }

  function render() {
    if (!state.rules) return;
    fill(subtitle, `${fmtInt(state.rules.length)} rule${state.rules.length === 1 ? '' : 's'} in force · database version ${fmtInt(state.version)}`);
    const f = state.filter;
    const rows = state.rules.filter((r) => !f || JSON.stringify([r.id, r.description, r.match, r.key, r.group]).toLowerCase().includes(f));
    if (!rows.length) {
      return fill(body, emptyState('rules', state.rules.length ? 'No rule matches the filter.' : 'No rules yet: every request is allowed.'));
    }
    fill(body, h('div', {class: 'table-wrap'}, h('table', {},
      h('thead', {}, h('tr', {}, ['Rule', 'Match', 'Key', 'Limit', 'Group', 'Source', ''].map((t) => h('th', {}, t)))),
      h('tbody', {}, rows.map((r) => {
        const file = isFileRule(r);
        const canWrite = app.role === 'write' && !file;
        return h('tr', {'data-rule-id': r.id},
          h('td', {},
            h('div', {class: 'gap'}, h('a', {class: 'id', href: `#/rules/edit/${encodeURIComponent(r.id)}`}, r.id),
              r.mode === 'shadow' ? badge('shadow', 'warn') : null, r.enabled === false ? badge('disabled') : null),
            r.description ? h('div', {class: 'sub'}, r.description) : null),
          h('td', {}, matchChips(r.match)),
          h('td', {}, keyChips(r.key)),
          h('td', {class: 'nowrap'}, h('div', {class: 'tabular'}, h('b', {}, fmtInt(r.limit)), ` / ${r.window ?? '—'}`),
            h('div', {class: 'sub'}, r.algorithm || DEFAULTS.algorithm, r.burst ? ` · burst ${fmtInt(r.burst)}` : '')),
          h('td', {}, r.group ? h('div', {}, h('span', {class: 'mono'}, r.group), h('div', {class: 'sub'}, `priority ${r.priority ?? 100}`)) : h('span', {class: 'faint'}, '—')),
          h('td', {}, file ? h('div', {}, badge('file'), h('div', {class: 'sub mono'}, r.source.replace(/^file:/, '')))
                           : h('div', {}, badge('database', 'accent'), h('div', {class: 'sub'}, `revision ${r.revision}`))),
          h('td', {class: 'actions'},
            canWrite
              ? [h('button', {type: 'button', class: 'small', 'data-action': 'edit', onclick: () => app.navigate(`#/rules/edit/${encodeURIComponent(r.id)}`)}, icon('edit'), 'Edit'),
                 ' ',
                 h('button', {type: 'button', class: 'small danger', 'data-action': 'delete', onclick: () => remove(r)}, icon('trash'), 'Delete')]
              : h('button', {type: 'button', class: 'small', 'data-action': 'view', onclick: () => app.navigate(`#/rules/edit/${encodeURIComponent(r.id)}`)}, icon('eye'), 'View')));
      })))));
  }

  async function remove(rule) {
    const ok = await confirmDialog({
      title: `Delete rule ${rule.id}?`,
      text: 'Checks stop applying it at once, on every server sharing the database. The deletion is a new version: it can be rolled back.',
      confirm: 'Delete rule', danger: true});
    if (!ok) return;
    try {
      await admin.deleteRule(rule.id, `"${rule.revision}"`);
      toast(`Rule ${rule.id} deleted`);
    } catch (e) {
      if (e instanceof ApiError && e.status === 412) toast(`Rule ${rule.id} changed since it was shown: not deleted. The list is reloaded.`, 'error');
      else fill(info, errorNotice(e, 'Deleting the rule'));
    }
    load();
  }

  load();
  return offHealth;
}

// ---------------------------------------------------------------- the form
function intOrText(text) {
  const t = text.trim();
  if (t === '') return undefined;
  return /^-?\d+$/.test(t) ? Number(t) : t;  // a non-integer goes as typed: the API says why not
}

export function mountRuleEditor(app, el, {id}) {
  const creating = id === null;
  let original = null;  // the rule as read (edit), for its unknown fields and revision
  let etag = null;      // its ETag, sent as If-Match
  const slots = new Map();   // field path → its error element
  const inputs = new Map();  // field path → the input to mark invalid
  const formStatus = h('div', {'data-testid': 'form-status'});
  const preview = h('pre', {});

  // ---- field helpers ----
  const errorSlot = (path) => {
    const p = h('p', {class: 'field-error', 'data-error-for': path, hidden: true, id: `err-${path}`});
    slots.set(path, p);
    return p;
  };
  const field = (path, label, input, hint, cls) => {
    input.id = `f-${path}`;
    input.setAttribute('aria-describedby', `err-${path}`);
    inputs.set(path, input);
    input.addEventListener('input', updatePreview);
    input.addEventListener('change', updatePreview);
    return h('div', {class: ['field', cls]}, h('label', {for: input.id}, label), input,
             hint ? h('div', {class: 'hint'}, hint) : null, errorSlot(path));
  };
  const text = (name, props = {}) => h('input', {type: 'text', name, autocomplete: 'off', spellcheck: 'false', ...props});

  const idInput = text('id', {placeholder: 'e.g. free-per-minute', disabled: !creating});
  const description = text('description', {placeholder: 'What this rule is for'});
  const limit = text('limit', {inputmode: 'numeric', placeholder: '100'});
  const windowInput = text('window', {placeholder: '1m', list: 'windows'});
  const algorithm = h('select', {name: 'algorithm'}, ALGORITHMS.map((a) => h('option', {value: a}, a)));
  const burst = text('burst', {inputmode: 'numeric', placeholder: 'same as limit'});
  const group = text('group', {placeholder: 'none'});
  const priority = text('priority', {inputmode: 'numeric', placeholder: '100'});
  const mode = h('select', {name: 'mode'}, h('option', {value: 'enforce'}, 'enforce — rejects over the limit'),
                 h('option', {value: 'shadow'}, 'shadow — counts, never rejects'));
  const enabled = h('input', {type: 'checkbox', name: 'enabled', checked: true});

  // match: rows of attribute = pattern
  const matchRows = h('div', {class: 'rows', 'data-testid': 'match-rows'});
  const addMatchRow = (attr = '', value = '') => {
    const a = text('match-attr', {value: attr, list: 'attributes', placeholder: 'attribute', 'aria-label': 'Attribute'});
    const v = text('match-value', {value, placeholder: 'value, glob (*) or CIDR', 'aria-label': 'Pattern'});
    const err = h('p', {class: 'field-error', hidden: true});
    const row = h('div', {},
      h('div', {class: 'row'}, a, v,
        h('button', {type: 'button', class: 'icon ghost', 'aria-label': 'Remove condition', onclick: () => {
          row.remove();
          updatePreview();
        }}, icon('trash'))), err);
    row.attr = a;
    row.error = err;
    for (const i of [a, v]) i.addEventListener('input', updatePreview);
    matchRows.append(row);
    return row;
  };
  const addCondition = h('button', {type: 'button', class: 'small', onclick: () => addMatchRow().attr.focus()}, icon('plus'), 'Add condition');

  // key: toggles for the usual attributes, free text for headers.NAME
  const keyState = [];
  const keyToggles = h('div', {class: 'toggles', role: 'group', 'aria-label': 'Key attributes'});
  const keyExtra = text('key-extra', {placeholder: 'headers.x-client, …', 'aria-label': 'More key attributes'});
  keyExtra.addEventListener('input', updatePreview);
  const renderKeyToggles = () => fill(keyToggles, ATTRIBUTES.map((a) => h('button', {
    type: 'button', class: 'toggle', 'data-key': a, 'aria-pressed': String(keyState.includes(a)),
    disabled: inputsDisabled(),
    onclick: () => {
      const i = keyState.indexOf(a);
      if (i >= 0) keyState.splice(i, 1);
      else keyState.push(a);
      renderKeyToggles();
      updatePreview();
    },
  }, a)));

  let readOnlyReason = null;
  function inputsDisabled() { return readOnlyReason !== null; }

  const saveButton = h('button', {type: 'submit', class: 'primary', 'data-testid': 'save-rule'}, icon('check'), creating ? 'Create rule' : 'Save changes');
  const checkButton = h('button', {type: 'button', 'data-testid': 'validate-rule', onclick: () => validate()}, 'Check');
  const deleteButton = creating ? null : h('button', {type: 'button', class: 'danger', onclick: () => remove()}, icon('trash'), 'Delete');
  const cancel = h('button', {type: 'button', class: 'ghost', onclick: () => app.navigate('#/rules')}, 'Back to rules');

  const form = h('form', {class: 'card', novalidate: true, 'data-testid': 'rule-form', onsubmit: (e) => {
    e.preventDefault();
    save();
  }},
    h('datalist', {id: 'windows'}, ['1s', '10s', '1m', '5m', '1h', '1d', '1w'].map((w) => h('option', {value: w}))),
    h('datalist', {id: 'attributes'}, [...ATTRIBUTES, 'headers.'].map((a) => h('option', {value: a}))),
    h('div', {class: 'form-section'}, h('h2', {}, 'Rule'), h('p', {}, 'Its id is how checks, metrics, logs and the audit log name it.'),
      h('div', {class: 'form-grid'},
        field('id', 'Id', idInput, creating ? 'Letters, digits and . _ - : @ ~' : 'An id cannot change; delete and create instead.', 'span-2'),
        field('description', 'Description', description, null, 'span-2'))),
    h('div', {class: 'form-section'}, h('h2', {}, 'Limit'), h('p', {}, 'How many requests each key may make per window, and how they are counted.'),
      h('div', {class: 'form-grid'},
        field('limit', 'Limit', limit, 'Requests per window, at least 1'),
        field('window', 'Window', windowInput, 'An integer and a unit: ms, s, m, h, d, w'),
        field('algorithm', 'Algorithm', algorithm),
        field('burst', 'Burst', burst, 'Bucket capacity (token_bucket, gcra, leaky_bucket)'))),
    h('div', {class: 'form-section'}, h('h2', {}, 'Which requests'), h('p', {}, 'Every condition must match (strings exactly or as a glob with *, ip_address also as a CIDR). No condition: every request.'),
      h('div', {class: 'field'}, matchRows, h('div', {class: 'gap'}, addCondition), errorSlot('match')),
      h('div', {class: 'field'}, h('label', {}, 'Counted per'),
        h('div', {class: 'hint'}, 'One counter per distinct value of these attributes; none selected: one shared counter.'),
        h('div', {class: 'rows'}, keyToggles, keyExtra), errorSlot('key'))),
    h('div', {class: 'form-section'}, h('h2', {}, 'Selection and mode'), h('p', {}, 'Within a group only the matching rule with the lowest priority applies.'),
      h('div', {class: 'form-grid'},
        field('group', 'Group', group),
        field('priority', 'Priority', priority, 'Lower wins in a group'),
        field('mode', 'Mode', mode),
        h('div', {class: 'field'}, h('label', {}, 'Enabled'),
          h('label', {class: 'switch', for: 'f-enabled'}, (() => {
            enabled.id = 'f-enabled';
            inputs.set('enabled', enabled);
            enabled.addEventListener('change', updatePreview);
            return enabled;
          })(), 'Applies to checks'), errorSlot('enabled')))),
    h('div', {class: 'form-section'}, h('details', {class: 'json'}, h('summary', {}, 'JSON sent to the API'), preview)),
    h('div', {class: 'form-actions'}, deleteButton, h('span', {class: 'gap'}), cancel, checkButton, saveButton));
  // Space the delete button from the rest.
  if (deleteButton) deleteButton.style.marginRight = 'auto';
  renderKeyToggles();

  const crumbs = h('p', {}, h('a', {href: '#/rules'}, 'Rules'), ' / ', creating ? 'new' : id);
  fill(el, pageHead(creating ? 'New rule' : `Rule ${id}`, crumbs), formStatus, form);

  // ---- form ↔ rule ----
  function setForm(rule) {
    idInput.value = rule.id ?? '';
    description.value = rule.description ?? '';
    limit.value = rule.limit ?? '';
    windowInput.value = rule.window ?? '';
    algorithm.value = rule.algorithm ?? DEFAULTS.algorithm;
    burst.value = rule.burst ?? '';
    group.value = rule.group ?? '';
    priority.value = rule.priority ?? '';
    mode.value = rule.mode ?? DEFAULTS.mode;
    enabled.checked = rule.enabled ?? DEFAULTS.enabled;
    fill(matchRows);
    for (const [k, v] of Object.entries(rule.match || {})) {
      if (v !== null && typeof v === 'object') for (const [hk, hv] of Object.entries(v)) addMatchRow(`${k}.${hk}`, String(hv));
      else addMatchRow(k, String(v));
    }
    keyState.length = 0;
    const extra = [];
    for (const k of rule.key || []) (ATTRIBUTES.includes(k) ? keyState : extra).push(k);
    keyExtra.value = extra.join(', ');
    renderKeyToggles();
    updatePreview();
  }

  function collect() {
    const rule = {};
    if (original) for (const [k, v] of Object.entries(original)) if (!FORM_FIELDS.has(k)) rule[k] = v;
    const had = (k) => original && Object.prototype.hasOwnProperty.call(original, k);
    rule.id = creating ? idInput.value.trim() : id;
    if (description.value.trim()) rule.description = description.value.trim();
    rule.match = {};
    for (const row of matchRows.children) {
      const [a, v] = row.querySelectorAll('input');
      if (a.value.trim() || v.value) rule.match[a.value.trim()] = v.value;
    }
    const extra = keyExtra.value.split(',').map((k) => k.trim()).filter(Boolean);
    rule.key = [...keyState, ...extra];
    const l = intOrText(limit.value);
    if (l !== undefined) rule.limit = l;
    if (windowInput.value.trim()) rule.window = windowInput.value.trim();
    if (algorithm.value !== DEFAULTS.algorithm || had('algorithm')) rule.algorithm = algorithm.value;
    const b = intOrText(burst.value);
    if (b !== undefined) rule.burst = b;
    if (group.value.trim()) rule.group = group.value.trim();
    const p = intOrText(priority.value);
    if (p !== undefined) rule.priority = p;
    if (mode.value !== DEFAULTS.mode || had('mode')) rule.mode = mode.value;
    if (enabled.checked !== DEFAULTS.enabled || had('enabled')) rule.enabled = enabled.checked;
    return rule;
  }

  function updatePreview() {
    preview.textContent = JSON.stringify(collect(), null, 2);
  }

  // ---- errors next to their fields ----
  function clearErrors() {
    for (const slot of slots.values()) {
      slot.hidden = true;
      slot.textContent = '';
    }
    for (const input of inputs.values()) input.removeAttribute('aria-invalid');
    for (const row of matchRows.children) {
      row.error.hidden = true;
      for (const i of row.querySelectorAll('input')) i.removeAttribute('aria-invalid');
    }
    fill(formStatus);
  }

  function showError(path, message) {
    const put = (slot, input) => {
      slot.textContent = slot.textContent ? `${slot.textContent} ${message}` : message;
      slot.hidden = false;
      if (input) input.setAttribute('aria-invalid', 'true');
      return true;
    };
    if (path.startsWith('match.')) {
      const attr = path.slice('match.'.length);
      for (const row of matchRows.children) {
        if (row.attr.value.trim() === attr) return put(row.error, row.querySelectorAll('input')[1]);
      }
    }
    // The field itself, else its nearest parent that has a place: key.2 → key, match.x → match.
    for (let p = path; p; p = p.includes('.') ? p.slice(0, p.lastIndexOf('.')) : '') {
      if (slots.has(p)) return put(slots.get(p), inputs.get(p));
    }
    // A problem with the rule as a whole: a required field missing names it in its message.
    const named = /'(\w+)'/.exec(message);
    if (!path && named && slots.has(named[1])) return put(slots.get(named[1]), inputs.get(named[1]));
    return false;
  }

  function showProblems(e) {
    const loose = [];
    for (const d of e.details) if (!showError(d.field || '', d.message)) loose.push(d);
    const count = e.details.length || 1;
    fill(formStatus, notice('danger', `The rule was not saved: ${count} problem${count > 1 ? 's' : ''}`,
      loose.length ? loose.map((d) => (d.field ? `${d.field}: ${d.message}` : d.message)).join(' · ')
                   : 'Each is shown next to its field.'));
    const first = [...slots.values()].find((s) => !s.hidden) || [...matchRows.children].map((r) => r.error).find((s) => !s.hidden);
    if (first) first.scrollIntoView({block: 'center'});
  }

  // ---- actions ----
  async function validate() {
    clearErrors();
    try {
      await admin.validateRule(collect());
      fill(formStatus, notice('ok', 'The rule is valid', 'Nothing was saved yet.'));
    } catch (e) {
      if (e instanceof ApiError && e.status === 422) showProblems(e);
      else fill(formStatus, errorNotice(e, 'Checking the rule'));
    }
  }

  async function save(overwrite = false) {
    clearErrors();
    saveButton.disabled = true;
    try {
      const rule = collect();
      if (creating) {
        await admin.createRule(rule);
        toast(`Rule ${rule.id} created`);
      } else {
        if (overwrite) etag = (await admin.rule(id)).etag;
        await admin.replaceRule(id, rule, etag);
        toast(`Rule ${id} saved`);
      }
      app.navigate('#/rules');
    } catch (e) {
      if (e instanceof ApiError && e.status === 422) {
        showProblems(e);
      } else if (e instanceof ApiError && e.status === 412) {
        fill(formStatus, conflictNotice());
      } else if (e instanceof ApiError && e.status === 409 && e.code === 'CONFLICT') {
        showError('id', 'A rule with this id already exists (in the database or a rules file).');
        fill(formStatus, notice('danger', 'The rule was not saved', e.message));
      } else if (e instanceof ApiError && e.status === 404 && !creating) {
        fill(formStatus, notice('danger', 'This rule no longer exists', 'Someone deleted it since you opened it. Save creates it again.'));
        etag = null;
      } else {
        fill(formStatus, errorNotice(e, 'Saving the rule'));
      }
    } finally {
      saveButton.disabled = inputsDisabled();
    }
  }

  function conflictNotice() {
    const n = notice('warn', 'Someone else changed this rule since you opened it',
      'Your changes were not saved (412 Precondition Failed): they were made on an older revision. Load the latest version to see theirs, or overwrite it with yours.',
      h('button', {type: 'button', class: 'small', 'data-testid': 'load-latest', onclick: () => load()}, 'Load latest'),
      h('button', {type: 'button', class: 'small danger', 'data-testid': 'overwrite', onclick: () => save(true)}, 'Overwrite'));
    n.dataset.testid = 'conflict';
    return n;
  }

  async function remove() {
    const ok = await confirmDialog({title: `Delete rule ${id}?`,
      text: 'Checks stop applying it at once. The deletion is a new version: it can be rolled back.', confirm: 'Delete rule', danger: true});
    if (!ok) return;
    try {
      await admin.deleteRule(id, etag);
      toast(`Rule ${id} deleted`);
      app.navigate('#/rules');
    } catch (e) {
      if (e instanceof ApiError && e.status === 412) fill(formStatus, conflictNotice());
      else fill(formStatus, errorNotice(e, 'Deleting the rule'));
    }
  }

  function applyReadOnly(reason) {
    readOnlyReason = reason;
    for (const el2 of form.querySelectorAll('input, select')) {
      if (el2 !== idInput || creating) el2.disabled = reason !== null || (el2 === idInput && !creating);
    }
    for (const b of [saveButton, checkButton, addCondition, deleteButton]) if (b) b.disabled = reason !== null;
    for (const b of matchRows.querySelectorAll('button')) b.disabled = reason !== null;
    renderKeyToggles();
    if (reason) fill(formStatus, notice('info', 'Read-only', reason));
  }

  async function load() {
    clearErrors();
    try {
      const res = await admin.rule(id);
      original = res.data;
      etag = res.etag;
      setForm(original);
      fill(crumbs, h('a', {href: '#/rules'}, 'Rules'), ' / ', id, ' · ',
           isFileRule(original) ? original.source : `revision ${original.revision}`);
      applyReadOnly(isFileRule(original) ? `This rule comes from ${original.source.replace(/^file:/, 'the file ')}: edit the file to change it.`
                    : app.role !== 'write' ? 'Your token may only read: the form is shown as it is stored.' : null);
    } catch (e) {
      fill(formStatus, errorNotice(e, 'Loading the rule'));
      form.hidden = true;
    }
  }

  if (creating) {
    setForm({match: {}, key: ['user_id']});
    if (app.role !== 'write') applyReadOnly('Your token may only read: creating a rule needs a write token.');
    idInput.focus();
  } else {
    load();
  }
  return null;
}
