// The Node peer in bench/redis_vs_peers.sh: POST /v1/ratelimit/check answered by
// rate-limiter-flexible's RateLimiterRedis on ioredis, keyed on user_id in the JSON body, with
// the same limit as Sluice's rule (POINTS per DURATION seconds, a fixed window). 200 when the
// request is allowed, 429 with Retry-After when not, each with a small JSON body and the
// X-RateLimit-* headers, as Sluice answers.
//
// GET /stats answers {"allowed":N,"rejected":N,"errors":N}: the decisions made so far, for the
// bench script to check that every answer was a real decision.
//
// Environment: PORT (HTTP, on 127.0.0.1), REDIS_URL (redis://127.0.0.1:6379), POINTS, DURATION;
// AUTO_PIPELINING=1 turns on ioredis's enableAutoPipelining (commands issued in the same event-loop
// tick go to Redis as one pipeline; off by default, as in ioredis); BLOCK_ON_CONSUMED sets
// inMemoryBlockOnConsumed (default POINTS + 1: a key is blocked in memory from its first refused
// request; POINTS blocks it from the request that takes its last point, the earliest the library
// allows). bench/redis_vs_peers.sh uses the defaults, bench/redis_modes.sh AUTO_PIPELINING=1 and
// BLOCK_ON_CONSUMED=POINTS (the library at its fastest).
// Prints "listening" once Redis is connected and the HTTP port is open.
'use strict';

const http = require('node:http');
const Redis = require('ioredis');
const { RateLimiterRedis, RateLimiterRes } = require('rate-limiter-flexible');

const port = Number(process.env.PORT || 8090);
const points = Number(process.env.POINTS || 1000000);
const duration = Number(process.env.DURATION || 1);
const blockOnConsumed = Number(process.env.BLOCK_ON_CONSUMED || points + 1);

const redis = new Redis(process.env.REDIS_URL || 'redis://127.0.0.1:6379', {
  enableAutoPipelining: process.env.AUTO_PIPELINING === '1',
});
const limiter = new RateLimiterRedis({
  storeClient: redis,
  keyPrefix: 'rlflx',
  points,
  duration,
  // The library's local block of keys over their limit until their window ends: the
  // counterpart of Sluice's over-limit cache, which is on by default.
  inMemoryBlockOnConsumed: blockOnConsumed,
});

const stats = { allowed: 0, rejected: 0, errors: 0 };

function answer(res, status, body, headers) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

function limitHeaders(r) {
  return {
    'X-RateLimit-Limit': points,
    'X-RateLimit-Remaining': r.remainingPoints,
    'X-RateLimit-Reset': Math.ceil((Date.now() + r.msBeforeNext) / 1000),
  };
}

async function check(req, res, raw) {
  let user;
  try {
    user = JSON.parse(raw).user_id;
  } catch {
    return answer(res, 400, { error: { code: 'INVALID_REQUEST', message: 'Malformed JSON.' } });
  }
  if (typeof user !== 'string' || user === '') {
    return answer(res, 400, { error: { code: 'INVALID_REQUEST', message: 'user_id is required.' } });
  }
  try {
    const r = await limiter.consume(user, 1);
    stats.allowed++;
    answer(res, 200, { allowed: true, limit: points, remaining: r.remainingPoints }, limitHeaders(r));
  } catch (e) {
    if (!(e instanceof RateLimiterRes)) {
      stats.errors++;
      return answer(res, 503, { error: { code: 'STORE_UNAVAILABLE', message: String(e) } });
    }
    stats.rejected++;
    const retryAfter = Math.ceil(e.msBeforeNext / 1000);
    answer(res, 429,
      { allowed: false, error: { code: 'RATE_LIMIT_EXCEEDED', limit: points, retry_after: retryAfter } },
      { ...limitHeaders(e), 'Retry-After': retryAfter });
  }
}

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/stats') return answer(res, 200, stats);
  if (req.method !== 'POST' || req.url !== '/v1/ratelimit/check') {
    return answer(res, 404, { error: { code: 'NOT_FOUND' } });
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => check(req, res, Buffer.concat(chunks).toString()));
});
server.keepAliveTimeout = 60000;

redis.once('ready', () => {
  server.listen(port, '127.0.0.1', () => console.log('listening'));
});
redis.on('error', (e) => console.error('redis:', e.message));
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    redis.disconnect();
    process.exit(0);
  });
}
