// Sign-in: the user types an admin token (read or write); it is checked against the server and
// then kept in this tab's sessionStorage only.
import {h, fill, icon, logo} from '../dom.js';
import {probeRole, ApiError} from '../api.js';
import {notice} from '../ui.js';

function explain(e) {
  if (!(e instanceof ApiError)) return ['The token could not be checked', String(e?.message || e)];
  if (e.network) return ['The Sluice server cannot be reached', 'Check that it is running and try again.'];
  if (e.status === 401) return ['That token is not accepted', 'The server knows no such token (401 Unauthorized). Check for a typo or a missing character.'];
  if (e.adminDisabled) return ['The admin API is turned off on this server', 'It has no admin tokens: configure admin.tokens in the server config, or start it with SLUICE_ADMIN_TOKEN.'];
  return [`The server answered ${e.status} ${e.code}`, e.message];
}

export function mountSignIn(root, {message, error, token = '', onSignedIn}) {
  const input = h('input', {type: 'password', id: 'token', name: 'token', autocomplete: 'off', spellcheck: 'false',
                            placeholder: 'Paste your token', required: true, value: token, 'data-testid': 'token'});
  const status = h('div', {});
  const submit = h('button', {type: 'submit', class: 'primary', 'data-testid': 'sign-in'}, 'Sign in');
  const show = (kind, [title, text]) => fill(status, notice(kind, title, text));
  if (error) show('danger', explain(error));
  else if (message) show('warn', ['Signed out', message]);

  const form = h('form', {
    onsubmit: async (e) => {
      e.preventDefault();
      const value = input.value.trim();
      if (!value) return;
      submit.disabled = true;
      fill(submit, h('span', {class: 'spinner'}), 'Checking…');
      try {
        const role = await probeRole(value);
        onSignedIn(value, role);
      } catch (err) {
        show('danger', explain(err));
        input.setAttribute('aria-invalid', 'true');
        input.focus();
        input.select();
      } finally {
        submit.disabled = false;
        fill(submit, 'Sign in');
      }
    },
  },
  h('div', {class: 'field'}, h('label', {for: 'token'}, 'Admin token'), input,
    h('div', {class: 'hint'}, 'A read token shows everything; a write token can also change rules, lists and tiers.')),
  status, submit);

  fill(root, h('div', {class: 'signin'},
    h('section', {class: 'card signin-card', 'data-testid': 'signin-screen'},
      h('div', {class: 'brand'}, logo(), h('div', {}, h('div', {class: 'brand-name'}, 'Sluice'),
        h('div', {class: 'brand-sub'}, 'Rate limiter console'))),
      h('h1', {}, 'Sign in'),
      h('p', {}, 'Use a token from the server\u2019s admin.tokens.'),
      form,
      h('div', {class: 'signin-foot gap'}, icon('lock'),
        'The token stays in this browser tab only (session storage) and is sent only to this server.'))));
  input.focus();
}
