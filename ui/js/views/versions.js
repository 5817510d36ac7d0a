// Versions: every version of the rules database, newest first, and rolling back: restoring
// rules, lists and tiers exactly as they were at a version, as a new version (after asking).
import {h, fill, icon, badge, emptyState, fmtInt, fmtTime, fmtAgo} from '../dom.js';
import {admin} from '../api.js';
import {pageHead, card, notice, errorNotice, toast, confirmDialog, writeButton} from '../ui.js';

export function mountVersions(app, el) {
  const body = h('div', {});
  const status = h('div', {});
  fill(el, pageHead('Versions', 'Each change makes a version. Rolling back restores rules, lists and tiers as they were, as a new version: nothing is lost.'),
    status, card({body, flush: true, testid: 'versions-table'}));

  async function load() {
    try {
      const {data} = await admin.versions(200);
      render(data.versions || []);
    } catch (e) {
      fill(body, h('div', {class: 'card-body'}, errorNotice(e, 'Loading the versions')));
    }
  }

  function render(versions) {
    if (!versions.length) {
      return fill(body, emptyState('versions', app.health && !app.hasDatabase
        ? 'No rules database is configured: rules come from files only, without versions.'
        : 'No change has been made yet.'));
    }
    const current = versions[0].version;
    fill(body, h('div', {class: 'table-wrap'}, h('table', {},
      h('thead', {}, h('tr', {}, ['Version', 'When', 'Who', 'Change', ''].map((t) => h('th', {}, t)))),
      h('tbody', {}, versions.map((v) => h('tr', {'data-version': v.version},
        h('td', {class: 'tabular'}, h('b', {}, fmtInt(v.version)), v.version === current ? [' ', badge('current', 'ok')] : null),
        h('td', {class: 'nowrap'}, fmtTime(v.at), h('div', {class: 'sub'}, fmtAgo(v.at))),
        h('td', {}, h('span', {class: 'mono'}, v.actor)),
        h('td', {}, v.summary),
        h('td', {class: 'actions'}, v.version === current ? null
          : writeButton(app, {class: 'small', 'data-action': 'restore', onclick: () => restore(v)}, icon('restore'), 'Roll back to this'))))))));
  }

  async function restore(v) {
    const ok = await confirmDialog({
      title: `Roll back to version ${v.version}?`,
      text: `Rules, allow and deny lists and tiers become exactly what they were at version ${v.version} (${fmtTime(v.at)}), on every server sharing the database. This is recorded as a new version, so it can itself be rolled back.`,
      confirm: `Roll back to ${v.version}`, danger: true});
    if (!ok) return;
    try {
      const {data} = await admin.restore(v.version);
      const changed = data.changes === 0 ? 'nothing differed: no new version' : `${fmtInt(data.changes)} change${data.changes === 1 ? '' : 's'}, now version ${fmtInt(data.version)}`;
      toast(`Rolled back to version ${v.version}: ${changed}`);
      fill(status, notice('ok', `Rolled back to version ${v.version}`, changed));
    } catch (e) {
      fill(status, errorNotice(e, 'Rolling back'));
    }
    load();
  }

  load();
  return null;
}
