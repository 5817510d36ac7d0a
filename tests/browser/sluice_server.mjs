// Runs the real `sluice serve` for the browser test, as tests/integration/sluice_server.py does
// for the Python suites: its own temporary folder (config, rules file, SQLite rules database), a
// free loopback port, a write and a read token, SIGTERM at the end (a server that does not exit 0
// fails the test).
import {spawn} from 'node:child_process';
import {createHash} from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

// Hang detectors, never assertions on speed (sanitizer builds on busy machines are slow).
const START_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 15_000;

export const WRITE_TOKEN = 'ops-4d1c9a7e2b6f3058';
export const READ_TOKEN = 'viewer-8e2f5b1d9c3a7046';

const sha256 = (text) => createHash('sha256').update(text).digest('hex');

export function sluiceBin() {
  const bin = process.env.SLUICE_BIN;
  if (!bin) throw new Error('SLUICE_BIN is not set (CTest sets it to the built sluice binary)');
  fs.accessSync(bin, fs.constants.X_OK);
  return path.resolve(bin);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const {port} = server.address();
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The rules file beside the database: a file rule and list entries show up read-only in the
// dashboard, and touch nothing the test checks (the rule matches /api/* only, the denied network
// is a documentation one).
const RULES_FILE = `rules:
  - id: api-per-ip
    description: Every client of /api, by address
    match: {endpoint: "/api/*"}
    key: [ip_address]
    limit: 1000
    window: 1s
    algorithm: token_bucket
lists:
  allow:
    - {user_id: ops-bot, reason: internal monitoring}
  deny:
    - {ip_address: 203.0.113.0/24, reason: abuse}
`;

export class SluiceServer {
  constructor() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-browser-'));
    this.proc = null;
    this.port = null;
    this.exit = null;
  }

  get base() {
    return `http://127.0.0.1:${this.port}`;
  }

  config(port) {
    return `listen:
  http: 127.0.0.1:${port}
  grpc: ""
store:
  backend: memory
rules:
  paths: [rules/]
  database: sqlite://rules.db
  poll: 1s
admin:
  tokens:
    - {name: ops, sha256: "${sha256(WRITE_TOKEN)}", role: write}
    - {name: viewer, sha256: "${sha256(READ_TOKEN)}", role: read}
log:
  level: warn
`;
  }

  async start() {
    fs.mkdirSync(path.join(this.dir, 'rules'), {recursive: true});
    fs.writeFileSync(path.join(this.dir, 'rules', 'base.yaml'), RULES_FILE);
    for (let attempt = 0; attempt < 5; attempt++) {
      this.port = await freePort();
      fs.writeFileSync(path.join(this.dir, 'sluice.yaml'), this.config(this.port));
      const log = fs.openSync(path.join(this.dir, 'server.log'), 'a');
      this.exit = null;
      const env = {...process.env};
      delete env.SLUICE_ADMIN_TOKEN;  // only the config's two tokens
      this.proc = spawn(sluiceBin(), ['serve', '--config', path.join(this.dir, 'sluice.yaml')],
                        {cwd: this.dir, stdio: ['ignore', log, log], env});
      fs.closeSync(log);
      const exited = new Promise((resolve) => this.proc.once('exit', (code, signal) => {
        this.exit = {code, signal};
        resolve();
      }));
      this.exited = exited;
      if (await this.waitReady()) return this;
      if (this.exit && this.logs().includes('listen_failed')) continue;  // lost the port: retry
      await this.kill();
      throw new Error(`sluice did not start (${JSON.stringify(this.exit)}); log:\n${this.logs()}`);
    }
    throw new Error('sluice did not start: no free port won in 5 attempts');
  }

  async waitReady() {
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (this.exit) return false;
      try {
        const res = await fetch(`${this.base}/health`);
        if (res.status === 200) {
          await sleep(50);
          return !this.exit;  // ours, not a parallel test's that won the port
        }
      } catch {
        // not listening yet
      }
      await sleep(50);
    }
    return false;
  }

  logs() {
    try {
      return fs.readFileSync(path.join(this.dir, 'server.log'), 'utf8').slice(-8000);
    } catch {
      return '';
    }
  }

  // SIGTERM, then the exit code must be 0.
  async stop() {
    if (!this.proc) return;
    if (!this.exit) this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await this.exited;
    clearTimeout(timer);
    const {code, signal} = this.exit;
    const logs = this.logs();
    this.cleanup();
    if (code !== 0) throw new Error(`sluice exited ${code ?? signal} after SIGTERM; log:\n${logs}`);
  }

  async kill() {
    if (this.proc && !this.exit) {
      this.proc.kill('SIGKILL');
      await this.exited;
    }
    this.cleanup();
  }

  cleanup() {
    this.proc = null;
    fs.rmSync(this.dir, {recursive: true, force: true});
  }

  // One HTTP call: {status, headers, body (parsed JSON or text)}.
  async request(method, urlPath, {body, token, headers = {}} = {}) {
    const h = {...headers};
    if (token) h.Authorization = `Bearer ${token}`;
    if (body !== undefined) h['Content-Type'] = 'application/json';
    const res = await fetch(`${this.base}${urlPath}`, {method, headers: h,
                                                       body: body === undefined ? undefined : JSON.stringify(body)});
    const text = await res.text();
    let parsed = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      // not JSON
    }
    return {status: res.status, headers: res.headers, body: parsed};
  }

  admin(method, urlPath, body, token = WRITE_TOKEN) {
    return this.request(method, `/v1/admin/${urlPath}`, {body, token});
  }

  check(fields) {
    return this.request('POST', '/v1/ratelimit/check', {body: fields});
  }
}
