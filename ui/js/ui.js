// Widgets every screen uses: cards, page headers, notices, toasts, a confirmation dialog, a
// segmented control, and the one place that turns an API error into words.
import {h, icon, fill} from './dom.js';
import {ApiError} from './api.js';

export function pageHead(title, subtitle, ...actions) {
  return h('div', {class: 'page-head'},
    h('div', {}, h('h1', {}, title), subtitle ? h('p', {}, subtitle) : null),
    h('div', {class: 'page-actions'}, actions));
}

export function card({title, subtitle, actions, body, flush, testid, cls} = {}) {
  return h('section', {class: ['card', cls], 'data-testid': testid},
    title || actions ? h('div', {class: 'card-head'},
      h('div', {}, h('h2', {}, title), subtitle ? h('p', {}, subtitle) : null),
      actions ? h('div', {class: 'gap'}, actions) : null) : null,
    h('div', {class: flush ? 'card-body flush' : 'card-body'}, body));
}

export function notice(kind, title, text, ...actions) {
  const iconName = kind === 'danger' || kind === 'warn' ? 'alert' : kind === 'ok' ? 'check' : 'info';
  return h('div', {class: ['notice', kind], role: kind === 'danger' ? 'alert' : 'status'},
    icon(iconName),
    h('div', {}, h('strong', {}, title), text ? h('p', {}, text) : null),
    actions.length ? h('div', {class: 'notice-actions'}, actions) : null);
}

// What an API error means to the person looking at the page.
export function describeError(e, doing = 'This') {
  if (!(e instanceof ApiError)) return {title: `${doing} failed`, text: String(e?.message || e)};
  if (e.network) return {title: 'The server cannot be reached', text: 'Sluice did not answer. It may be restarting or down; the page keeps trying.'};
  if (e.forbidden) return {title: 'Your token may only read', text: `${doing} needs a token with the write role (403 FORBIDDEN). ${e.message}`};
  if (e.adminDisabled) return {title: 'The admin API is turned off', text: 'This server has no admin tokens configured (admin.tokens or SLUICE_ADMIN_TOKEN).'};
  if (e.databaseDown) return {title: 'The rules database is unavailable', text: 'The rules in force stay in force and checks go on; viewing and editing come back when the database does. ' + e.message};
  if (e.status === 409 && e.code === 'READ_ONLY') return {title: 'Read-only here', text: e.message};
  return {title: `${doing} failed (${e.status} ${e.code})`, text: e.message};
}

export function errorNotice(e, doing) {
  const d = describeError(e, doing);
  return notice(e instanceof ApiError && (e.databaseDown || e.forbidden) ? 'warn' : 'danger', d.title, d.text);
}

let toastBox = null;
export function toast(text, kind = 'ok') {
  if (!toastBox || !toastBox.isConnected) {
    toastBox = h('div', {class: 'toasts', 'aria-live': 'polite'});
    document.body.append(toastBox);
  }
  const t = h('div', {class: ['toast', kind === 'error' ? 'error' : null], role: 'status'},
              icon(kind === 'error' ? 'alert' : 'check'), text);
  toastBox.append(t);
  while (toastBox.children.length > 3) toastBox.firstChild.remove();
  setTimeout(() => t.remove(), kind === 'error' ? 7000 : 4000);
}

// A modal question. Resolves to true when confirmed. `danger` colours the confirm button.
export function confirmDialog({title, text, confirm = 'Confirm', danger = false, details}) {
  return new Promise((resolve) => {
    const dialog = h('dialog', {'aria-labelledby': 'dlg-title', 'data-testid': 'confirm-dialog'});
    const close = (value) => {
      dialog.close();
      dialog.remove();
      resolve(value);
    };
    fill(dialog,
      h('div', {class: 'dialog-body'}, h('h2', {id: 'dlg-title'}, title), h('p', {}, text), details || null),
      h('div', {class: 'dialog-actions'},
        h('button', {type: 'button', onclick: () => close(false)}, 'Cancel'),
        h('button', {type: 'button', class: danger ? 'danger solid' : 'primary', 'data-testid': 'confirm',
                     onclick: () => close(true)}, confirm)));
    dialog.addEventListener('cancel', (e) => {
      e.preventDefault();
      close(false);
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

// Buttons of which one is pressed: options [{value, label}], onchange(value).
export function segmented(options, value, onchange, label) {
  const box = h('div', {class: 'segmented', role: 'group', 'aria-label': label});
  const render = (current) => fill(box, options.map((o) => h('button', {
    type: 'button', 'aria-pressed': String(o.value === current), 'data-value': o.value,
    onclick: () => {
      render(o.value);
      onchange(o.value);
    },
  }, o.label)));
  render(value);
  return box;
}

// Calls `fn` now and then every `ms` after each call finishes (never two at once), until
// stopped. Skips beats while the tab is hidden.
export function poller(fn, ms) {
  let timer = null;
  let stopped = false;
  const beat = async () => {
    if (stopped) return;
    if (!document.hidden) {
      try {
        await fn();
      } catch (e) {
        // The callee shows its own errors; a poller never dies of one.
        console.debug('poll failed', e);
      }
    }
    if (!stopped) timer = setTimeout(beat, ms);
  };
  beat();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
    now() {
      clearTimeout(timer);
      beat();
    },
  };
}

// A button for a change: disabled, with the reason as its title, for a read-only token.
export function writeButton(app, props, ...children) {
  const readOnly = app.role !== 'write';
  return h('button', {
    type: 'button', ...props, disabled: readOnly || props.disabled,
    title: readOnly ? 'Your token may only read' : props.title,
    'data-write': '',
  }, children);
}
