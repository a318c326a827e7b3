import { Writable } from 'node:stream';
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { genReqId, lazyChildLogger, loggerOptions } from '../../src/http/logging.js';

/** A Fastify app with the gateway's logger options and the lazy request logger, writing lines to an array. */
function appLoggingTo(level: string) {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  const options = loggerOptions(level) as Record<string, unknown>;
  const app = Fastify({ logger: { ...options, stream }, genReqId, childLoggerFactory: lazyChildLogger });
  app.get('/quiet', async (request) => {
    request.log.info({ note: 'below warn' }, 'info line');
    request.log.debug('debug line');
    return { ok: true };
  });
  app.get('/loud', async (request) => {
    request.log.warn({ body: { password: 'hunter2-secret' } }, 'warn line');
    request.log.child({ part: 'inner' }).error('child line');
    return { ok: true };
  });
  app.get('/verbose', { logLevel: 'debug' }, async (request) => {
    request.log.debug('debug line on a debug route');
    return { level: request.log.level };
  });
  return { app, lines };
}

describe('request loggers made on first use', () => {
  it('at warn, a request that logs nothing writes nothing; one that logs writes with its request id', async () => {
    const { app, lines } = appLoggingTo('warn');
    await app.inject({ url: '/quiet', headers: { 'x-request-id': 'quiet-1' } });
    expect(lines).toEqual([]);
    await app.inject({ url: '/loud', headers: { 'x-request-id': 'loud-1' } });
    expect(lines.map((l) => [l.msg, l.reqId, l.level])).toEqual([
      ['warn line', 'loud-1', 40],
      ['child line', 'loud-1', 50],
    ]);
    expect(lines[0]?.body).toEqual({ password: '[redacted]' }); // redaction applies as on Fastify's own child
    expect(lines[1]?.part).toBe('inner');
    await app.close();
  });

  it("at info, Fastify's request lines and the route's own carry the request id", async () => {
    const { app, lines } = appLoggingTo('info');
    await app.inject({ url: '/quiet', headers: { 'x-request-id': 'info-1' } });
    expect(lines.map((l) => l.msg)).toEqual(['incoming request', 'info line', 'request completed']);
    expect(new Set(lines.map((l) => l.reqId))).toEqual(new Set(['info-1']));
    await app.close();
  });

  it("a route's own logLevel holds", async () => {
    const { app, lines } = appLoggingTo('warn');
    const res = await app.inject({ url: '/verbose', headers: { 'x-request-id': 'verbose-1' } });
    expect(res.json()).toEqual({ level: 'debug' });
    expect(lines.map((l) => [l.msg, l.reqId])).toContainEqual(['debug line on a debug route', 'verbose-1']);
    await app.close();
  });

  it('with logging off (logger: false) requests are served as before', async () => {
    const app = Fastify({ logger: false, childLoggerFactory: lazyChildLogger });
    app.get('/x', async (request) => {
      request.log.info('nowhere');
      return { ok: true };
    });
    expect((await app.inject({ url: '/x' })).json()).toEqual({ ok: true });
    await app.close();
  });
});
