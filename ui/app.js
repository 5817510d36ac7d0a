// The Sluice dashboard: sign-in, then a shell (sidebar, banners, page) whose page is chosen by
// the location's hash (#/overview, #/rules, #/rules/edit/ID, …), so that the server serves one
// index.html and reloading any screen works.
import {h, fill, icon, logo, badge} from './js/dom.js';
import {session, hooks, probeRole, health} from './js/api.js';
import {notice, poller} from './js/ui.js';
import {mountSignIn} from './js/views/signin.js';
import {mountOverview} from './js/views/overview.js';
import {mountRules, mountRuleEditor} from './js/views/rules.js';
import {mountLists} from './js/views/lists.js';
import {mountTiers} from './js/views/tiers.js';
import {mountAudit} from './js/views/audit.js';
import {mountVersions} from './js/views/versions.js';

const NAV = [
  {path: 'overview', label: 'Overview', icon: 'overview'},
  {path: 'rules', label: 'Rules', icon: 'rules'},
  {path: 'lists', label: 'Allow & deny lists', icon: 'lists'},
  {path: 'tiers', label: 'Tiers & users', icon: 'tiers'},
  {path: 'audit', label: 'Audit log', icon: 'audit'},
  {path: 'versions', label: 'Versions', icon: 'versions'},
];

// hash → [mount function, params].
function route(hash) {
  const parts = hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  switch (parts[0]) {
    case 'rules':
      if (parts[1] === 'new') return [mountRuleEditor, {id: null}];
      if (parts[1] === 'edit' && parts[2]) return [mountRuleEditor, {id: parts.slice(2).join('/')}];
      return [mountRules, {}];
    case 'lists': return [mountLists, {kind: parts[1] === 'deny' ? 'deny' : 'allow'}];
    case 'tiers': return [mountTiers, {user: parts[1]}];
    case 'audit': return [mountAudit, {}];
    case 'versions': return [mountVersions, {}];
    default: return [mountOverview, {}];
  }
}

const root = document.getElementById('app');

const app = {
  role: null,          // 'write' | 'read', learned at sign-in
  health: null,        // the latest /health body (null until known)
  reachable: true,
  cleanup: null,       // the mounted page's clean-up
  healthPoll: null,
  healthListeners: new Set(),

  navigate(hash) {
    if (location.hash === hash) this.renderPage();
    else location.hash = hash;
  },

  // Whether the server keeps rules in a database (the admin API can change them).
  get hasDatabase() {
    return !!this.health?.database;
  },

  async start() {
    hooks.onUnauthorized = () => this.signOut('The server no longer accepts your token (401 Unauthorized). Sign in again.');
    hooks.onReachable = (ok) => this.setReachable(ok);
    window.addEventListener('hashchange', () => this.renderPage());
    const token = session.token;
    if (!token) return this.showSignIn();
    try {
      this.role = await probeRole(token);
    } catch (e) {
      if (e.status === 401) session.clear();
      return this.showSignIn({error: e, token: e.status === 401 ? '' : token});
    }
    this.showShell();
  },

  showSignIn(options = {}) {
    this.teardown();
    root.className = '';
    mountSignIn(root, {
      ...options,
      onSignedIn: (token, role) => {
        session.set(token);
        this.role = role;
        if (!location.hash || location.hash === '#/') location.hash = '#/overview';
        this.showShell();
      },
    });
  },

  signOut(message) {
    session.clear();
    this.role = null;
    this.showSignIn(message ? {message} : {});
  },

  teardown() {
    if (this.cleanup) this.cleanup();
    this.cleanup = null;
    if (this.healthPoll) this.healthPoll.stop();
    this.healthPoll = null;
  },

  showShell() {
    this.teardown();
    root.className = '';
    this.nav = h('nav', {class: 'nav', 'aria-label': 'Sections'},
      NAV.map((n) => h('a', {href: `#/${n.path}`, 'data-nav': n.path}, icon(n.icon), n.label)));
    this.serverState = h('div', {class: 'who'});
    this.banners = h('div', {class: 'banners'});
    this.page = h('main', {class: 'page', id: 'page'});
    fill(root, h('div', {class: 'shell'},
      h('aside', {class: 'sidebar'},
        h('div', {class: 'brand'}, logo(), h('div', {},
          h('div', {class: 'brand-name'}, 'Sluice'), h('div', {class: 'brand-sub'}, 'Rate limiter console'))),
        this.nav,
        h('div', {class: 'sidebar-foot'},
          this.serverState,
          h('div', {class: 'who'},
            this.role === 'write' ? badge('Read & write', 'accent') : badge('Read only', 'warn'),
            h('button', {type: 'button', class: 'ghost small', 'data-testid': 'sign-out',
                         onclick: () => this.signOut()}, icon('logout'), 'Sign out')))),
      h('div', {class: 'main'}, this.banners, this.page)));
    this.healthPoll = poller(() => this.refreshHealth(), 5000);
    this.renderPage();
  },

  renderPage() {
    if (!this.page) return;
    if (this.cleanup) this.cleanup();
    this.cleanup = null;
    const [mount, params] = route(location.hash);
    const section = (location.hash.replace(/^#\/?/, '').split('/')[0]) || 'overview';
    for (const a of this.nav.querySelectorAll('a')) {
      a.classList.toggle('active', a.dataset.nav === section);
      if (a.dataset.nav === section) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    fill(this.page);
    window.scrollTo(0, 0);
    this.cleanup = mount(this, this.page, params) || null;
    this.renderBanners();
  },

  async refreshHealth() {
    const res = await health();
    if (res) this.health = res.data;
    this.renderBanners();
    this.renderServerState();
    for (const fn of this.healthListeners) fn(this.health);
  },

  onHealth(fn) {
    this.healthListeners.add(fn);
    if (this.health) fn(this.health);
    return () => this.healthListeners.delete(fn);
  },

  setReachable(ok) {
    if (ok === this.reachable) return;
    this.reachable = ok;
    this.renderBanners();
    this.renderServerState();
    for (const fn of this.healthListeners) fn(this.health);
  },

  renderServerState() {
    if (!this.serverState) return;
    const hl = this.health;
    const status = !this.reachable ? ['Unreachable', 'danger'] :
      !hl ? ['Connecting…', null] :
      hl.status === 'healthy' ? ['Healthy', 'ok'] : hl.status === 'degraded' ? ['Degraded', 'warn'] : ['Unhealthy', 'danger'];
    fill(this.serverState, h('span', {class: 'muted'}, hl?.version ? `Sluice ${hl.version}` : 'Sluice'),
         badge(status[0], status[1]));
  },

  renderBanners() {
    if (!this.banners) return;
    const out = [];
    if (!this.reachable) {
      out.push(notice('danger', 'The Sluice server cannot be reached',
        'Nothing on this page is current. The page keeps trying and recovers on its own when the server answers again.'));
    } else if (this.health) {
      if (this.health.status === 'unhealthy') {
        out.push(notice('danger', 'Sluice cannot decide checks', 'The store is down and on_failure is fail_closed: checks answer 503 until it is back.'));
      }
      if (this.health.database?.status === 'down') {
        out.push(notice('warn', 'The rules database is unavailable',
          'The last good rules stay in force and checks go on. Editing is unavailable until the database is back (503 DATABASE_UNAVAILABLE).'));
      }
      if (this.health.store?.status === 'down' && this.health.status !== 'unhealthy') {
        out.push(notice('warn', 'The store is down', 'Checks follow the configured on_failure policy until it reconnects.'));
      }
    }
    if (this.role === 'read') {
      const b = notice('info', 'Signed in with a read-only token', 'You can look at everything; creating, editing, deleting and rolling back need a write token.');
      b.dataset.testid = 'read-only-banner';
      out.push(b);
    }
    fill(this.banners, out);
  },
};

app.start();
