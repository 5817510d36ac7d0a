// Tiers and users: the stored user → tier assignments (a check with a user_id and no tier is
// matched as if it carried the stored one), setting and removing one, and a user lookup: every
// rule applying to a user with what remains of it now (/v1/stats/users/{id}, nothing consumed).
import {h, fill, icon, badge, emptyState, fmtInt, fmtTime, fmtDuration} from '../dom.js';
import {admin, stats, ApiError} from '../api.js';
import {pageHead, card, notice, errorNotice, toast, confirmDialog, writeButton} from '../ui.js';

export function mountTiers(app, el, {user}) {
  const body = h('div', {});
  const status = h('div', {});
  const lookupBox = h('div', {'data-testid': 'user-lookup'});
  const filter = h('input', {type: 'search', class: 'search', placeholder: 'Filter users…', 'aria-label': 'Filter users',
                             oninput: () => render()});
  let tiers = null;

  // ---- set a tier ----
  const userInput = h('input', {type: 'text', name: 'user_id', id: 'f-user', autocomplete: 'off', spellcheck: 'false', placeholder: 'user_12345'});
  const tierInput = h('input', {type: 'text', name: 'tier', id: 'f-tier', autocomplete: 'off', list: 'known-tiers', placeholder: 'premium'});
  const tierList = h('datalist', {id: 'known-tiers'});
  const userError = h('p', {class: 'field-error', hidden: true, 'data-error-for': 'user_id'});
  const tierError = h('p', {class: 'field-error', hidden: true, 'data-error-for': 'tier'});
  const formError = h('div', {});
  const setButton = writeButton(app, {class: 'primary', type: 'submit', 'data-testid': 'set-tier'}, 'Set tier');
  const form = h('form', {novalidate: true, onsubmit: (e) => {
    e.preventDefault();
    setTier();
  }}, h('div', {class: 'inline-form'},
    h('div', {class: 'field'}, h('label', {for: 'f-user'}, 'User id'), userInput, userError),
    h('div', {class: 'field'}, h('label', {for: 'f-tier'}, 'Tier'), tierInput, tierList, tierError),
    h('div', {class: 'field'}, setButton)), formError);

  // ---- user lookup ----
  const lookupInput = h('input', {type: 'search', name: 'lookup', placeholder: 'A user id', 'aria-label': 'User id to look up', value: user || ''});
  const lookupForm = h('form', {class: 'gap', onsubmit: (e) => {
    e.preventDefault();
    lookup(lookupInput.value.trim());
  }}, lookupInput, h('button', {type: 'submit'}, icon('search'), 'Look up'));

  const canWrite = () => app.role === 'write' && (!app.health || app.hasDatabase);
  fill(el, pageHead('Tiers & users', 'A check with a user_id and no tier is matched as if it carried the user\u2019s stored tier.', filter),
    status,
    h('div', {class: 'grid two-one'},
      h('div', {}, app.role === 'write' ? card({title: 'Set a user\u2019s tier', body: form}) : null,
        card({title: 'Stored tiers', body, flush: true, testid: 'tiers-table'})),
      card({title: 'Look up a user', subtitle: 'Every rule that applies to the user now, nothing consumed', body: [lookupForm, lookupBox]})));
  const offHealth = app.onHealth(() => {
    setButton.disabled = !canWrite();
  });

  async function load() {
    try {
      const {data} = await admin.tiers();
      tiers = data.tiers || [];
      fill(tierList, [...new Set(tiers.map((t) => t.tier))].map((t) => h('option', {value: t})));
      render();
    } catch (e) {
      fill(body, h('div', {class: 'card-body'}, errorNotice(e, 'Loading the tiers')));
    }
  }

  function render() {
    if (!tiers) return;
    const f = filter.value.trim().toLowerCase();
    const rows = tiers.filter((t) => !f || t.user_id.toLowerCase().includes(f) || t.tier.toLowerCase().includes(f));
    if (!rows.length) return fill(body, emptyState('tiers', tiers.length ? 'No user matches the filter.' : 'No tier is stored: checks carry their own.'));
    fill(body, h('div', {class: 'table-wrap'}, h('table', {},
      h('thead', {}, h('tr', {}, h('th', {}, 'User'), h('th', {}, 'Tier'), h('th', {class: 'num'}, 'Revision'), h('th', {}, ''))),
      h('tbody', {}, rows.map((t) => h('tr', {'data-user': t.user_id},
        h('td', {}, h('a', {class: 'id', href: '#', onclick: (e) => {
          e.preventDefault();
          lookupInput.value = t.user_id;
          lookup(t.user_id);
        }}, t.user_id)),
        h('td', {}, h('span', {class: 'chip'}, t.tier)),
        h('td', {class: 'num faint'}, fmtInt(t.revision)),
        h('td', {class: 'actions'},
          writeButton(app, {class: 'small', onclick: () => {
            userInput.value = t.user_id;
            tierInput.value = t.tier;
            tierInput.focus();
          }}, icon('edit'), 'Change'), ' ',
          writeButton(app, {class: 'small danger', 'data-action': 'delete', onclick: () => remove(t)}, icon('trash'), 'Remove'))))))));
  }

  async function setTier() {
    userError.hidden = tierError.hidden = true;
    fill(formError);
    const u = userInput.value.trim();
    if (!u) {
      userError.textContent = 'A user id is required.';
      userError.hidden = false;
      return;
    }
    try {
      const res = await admin.setTier(u, tierInput.value.trim());
      toast(`${u} is now ${tierInput.value.trim()}${res.status === 201 ? '' : ' (replaced)'}`);
      userInput.value = tierInput.value = '';
      load();
    } catch (e) {
      if (e instanceof ApiError && e.status === 422) {
        for (const d of e.details) {
          const slot = d.field === 'tier' ? tierError : d.field === 'user_id' ? userError : null;
          if (slot) {
            slot.textContent = d.message;
            slot.hidden = false;
          } else {
            fill(formError, notice('danger', 'Not saved', d.message));
          }
        }
      } else if (e instanceof ApiError && e.status === 400) {
        userError.textContent = e.message;
        userError.hidden = false;
      } else {
        fill(formError, errorNotice(e, 'Setting the tier'));
      }
    }
  }

  async function remove(t) {
    const ok = await confirmDialog({title: `Remove ${t.user_id}'s tier?`,
      text: `Checks for ${t.user_id} without a tier of their own will no longer be matched as ${t.tier}.`, confirm: 'Remove tier', danger: true});
    if (!ok) return;
    try {
      await admin.deleteTier(t.user_id);
      toast(`Tier of ${t.user_id} removed`);
    } catch (e) {
      fill(status, errorNotice(e, 'Removing the tier'));
    }
    load();
  }

  async function lookup(u) {
    if (!u) return;
    fill(lookupBox, h('p', {class: 'muted'}, h('span', {class: 'spinner'}), ' Looking up…'));
    try {
      const {data} = await stats.user(u);
      const rules = data.rules || [];
      const recent = data.recent || {};
      fill(lookupBox,
        data.store_error ? notice('warn', 'The store did not answer', `Remaining quotas are unknown: ${data.store_error}`) : null,
        h('dl', {class: 'kv'},
          h('dt', {}, 'User'), h('dd', {class: 'id'}, data.user_id),
          h('dt', {}, 'Tier'), h('dd', {}, data.tier || h('span', {class: 'faint'}, 'none stored')),
          h('dt', {}, `Allowed, last ${fmtDuration(recent.window_seconds)}`), h('dd', {}, fmtInt(recent.allowed)),
          h('dt', {}, `Rejected, last ${fmtDuration(recent.window_seconds)}`), h('dd', {}, fmtInt(recent.rejected))),
        rules.length ? h('div', {class: 'rule-bars'}, rules.map((r) => {
          const known = r.remaining !== null && r.remaining !== undefined;
          const left = known && r.limit ? Math.max(0, Math.min(1, r.remaining / r.limit)) : 0;
          const bar = h('div', {class: 'bar'}, h('i', {class: left <= 0 ? 'rejected' : 'allowed'}));
          bar.firstChild.style.width = `${(left <= 0 ? 1 : left) * 100}%`;
          return h('div', {'data-rule': r.rule_id},
            h('div', {class: 'rule-bar-head'},
              h('span', {class: 'gap'}, h('span', {class: 'id'}, r.rule_id), r.mode === 'shadow' ? badge('shadow', 'warn') : null),
              h('span', {}, known ? `${fmtInt(r.remaining)} of ${fmtInt(r.limit)} left` : 'remaining unknown')),
            bar,
            h('div', {class: 'sub faint'},
              `${r.algorithm} · ${fmtInt(r.limit)} per ${fmtDuration(r.window_seconds)}`,
              r.reset_at ? ` · full again ${fmtTime(r.reset_at)}` : '',
              r.recent ? ` · recently ${fmtInt(r.recent.requests)} checks, ${fmtInt(r.recent.rejected)} rejected` : ''));
        })) : h('p', {class: 'muted'}, 'No rule applies to a check carrying only this user id (rules keyed or matched on other attributes may still apply to the user\u2019s requests).'));
    } catch (e) {
      fill(lookupBox, errorNotice(e, 'Looking up the user'));
    }
  }

  load();
  if (user) lookup(user);
  return offHealth;
}
