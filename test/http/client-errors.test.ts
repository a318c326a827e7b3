import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect as tcpConnect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { createClientErrorHandler } from '../../src/http/client-errors.js';
import { loggerOptions } from '../../src/http/logging.js';
import {
  createTestApp,
  createTestDatabase,
  LogCapture,
  type TestApp,
  type TestDatabase,
  testConfig,
} from '../helpers/test-app.js';

interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Bytes no HTTP client library would send, over a raw TCP socket; resolves with the answer once the server closes. */
function rawExchange(port: number, request: string): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect({ port, host: '127.0.0.1' });
    let received = '';
    const timer = setTimeout(() => reject(new Error(`no close from the server; got: ${received}`)), 3000);
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('utf8');
    });
    socket.on('close', () => {
      clearTimeout(timer);
      const [head = '', body = ''] = received.split('\r\n\r\n', 2);
      const [statusLine = '', ...lines] = head.split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of lines) {
        const colon = line.indexOf(':');
        headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      resolve({ status: Number(statusLine.split(' ')[1]), headers, body });
    });
    socket.on('error', reject);
    socket.write(request);
  });
}

/**
 * The log as text, with every serialised Buffer ({"type":"Buffer","data":[...]}) spelled out: a raw request packet
 * logged that way carries its secrets as byte values, which a plain text search would miss.
 */
function readableLog(lines: string[]): string {
  return lines
    .map((line) =>
      JSON.stringify(JSON.parse(line), (_key, value) =>
        value && value.type === 'Buffer' && Array.isArray(value.data)
          ? Buffer.from(value.data as number[]).toString('latin1')
          : value,
      ),
    )
    .join('\n');
}

// Regression: a request Node could not parse was answered with Fastify's default body ({"error":"Bad Request",
// "message":"Client Error","statusCode":400}: no envelope, no code, no security headers), and at LOG_LEVEL=trace
// Fastify's default handler logged the error whole, its rawPacket holding the raw request (Authorization, password).
describe('requests Node cannot parse', () => {
  let testDb: TestDatabase;
  let app: Awaited<ReturnType<typeof buildApp>>;
  let port: number;
  const logs = new LogCapture();
  const token = `eyJtrace-bearer-${Math.random().toString(36).slice(2)}`;
  const password = `S3cret-trace-password-${Math.random().toString(36).slice(2)}`;

  beforeAll(async () => {
    testDb = await createTestDatabase();
    const logger = { ...(loggerOptions('trace') as object), stream: logs };
    app = await buildApp({ config: testConfig(testDb.dataDir), db: testDb.db, logger: logger as never });
    await app.listen({ port: 0, host: '127.0.0.1' });
    port = (app.server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await app?.close();
    await testDb?.drop();
  });

  const expectEnvelope = (answer: RawAnswer, status: number, code: string) => {
    expect(answer.status).toBe(status);
    expect(answer.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(answer.headers.connection).toBe('close');
    expect(Number(answer.headers['content-length'])).toBe(Buffer.byteLength(answer.body));
    expect(JSON.parse(answer.body)).toEqual({ success: false, error: { code, message: expect.any(String) } });
    // The same security headers as every other answer.
    expect(answer.headers['x-content-type-options']).toBe('nosniff');
    expect(answer.headers['content-security-policy']).toBe("default-src 'none';frame-ancestors 'none'");
    expect(answer.headers['cache-control']).toBe('no-store');
  };

  it('answers a malformed header with 400 BAD_REQUEST in the JSON envelope, with the security headers', async () => {
    const answer = await rawExchange(
      port,
      `GET /auth/session HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nBad Header\r\n\r\n`,
    );
    expectEnvelope(answer, 400, 'BAD_REQUEST');
  });

  it('answers a malformed chunk size with 400 BAD_REQUEST', async () => {
    const body = JSON.stringify({ email: 'chunk@example.com', password });
    const answer = await rawExchange(
      port,
      'POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n' +
        `${body.length.toString(16)}\r\n${body}\r\nnot-a-size\r\n`,
    );
    expectEnvelope(answer, 400, 'BAD_REQUEST');
  });

  // Regression (review F): Fastify 5 sets Node's requestTimeout from its own option, 0 (off) unless given, so the
  // documented 300 s did not exist and a client trickling a body held its socket (and shutdown) forever. Node checks
  // it every 30 s, too slow for a test to wait for: the setting is asserted, the 408 answer is tested below.
  it('times out a body that does not arrive within 300 s (requestTimeout), as documented', () => {
    expect(app.server.requestTimeout).toBe(300_000);
    expect(app.server.headersTimeout).toBe(60_000);
  });

  it('answers headers over the size limit with 431 HEADERS_TOO_LARGE', async () => {
    // Over Node's 16 KiB limit, and sent whole: the server reads it all before answering and closing.
    const answer = await rawExchange(
      port,
      `GET /auth/health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(17_000)}\r\n\r\n`,
    );
    expectEnvelope(answer, 431, 'HEADERS_TOO_LARGE');
  });

  it('logs the error code at most: no bearer token and no password, even at trace level', async () => {
    const body = JSON.stringify({ email: 'trace@example.com', password });
    await rawExchange(
      port,
      `POST /auth/login HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\n` +
        `Transfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\nzz\r\n`,
    );
    await rawExchange(port, `GET /auth/session HTTP/1.1\r\nAuthorization: Bearer ${token}\r\nBad Header\r\n\r\n`);
    const text = readableLog(logs.lines);
    expect(text).not.toContain(token);
    expect(text).not.toContain(password);
    // What the log keeps: Node's code for what was wrong.
    expect(text).toContain('"reason":"HPE_INVALID_CHUNK_SIZE"');
    expect(text).toContain('"reason":"HPE_INVALID_HEADER_TOKEN"');
  });

  it('redacts a raw packet wherever an error carrying one is logged', () => {
    const before = logs.lines.length;
    const err = Object.assign(new Error('Parse Error'), { rawPacket: Buffer.from(`Authorization: Bearer ${token}`) });
    app.log.error({ err }, 'some client error');
    const line = logs.lines.slice(before).join('\n');
    expect(line).toContain('"rawPacket":"[redacted]"');
    expect(readableLog(logs.lines.slice(before))).not.toContain(token);
  });
});

// Regression: an Expect header other than 100-continue got Node's own bare 417 (no body, no code, none of the
// security headers), the one refusal outside the envelope.
describe('Expect headers', () => {
  let t: TestApp;
  let port: number;
  beforeAll(async () => {
    t = await createTestApp({});
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    port = (t.app.server.address() as AddressInfo).port;
  });
  afterAll(() => t?.close());

  const body = JSON.stringify({ email: 'expect@example.com', password: 'wrong-password' });

  it('answers one other than 100-continue with 417 EXPECTATION_FAILED in the envelope, and closes', async () => {
    const answer = await rawExchange(
      port,
      'POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 200-ok\r\n' +
        `X-Request-Id: expect-417-test\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
    );
    expect(answer.status).toBe(417);
    expect(answer.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(answer.headers.connection).toBe('close');
    expect(Number(answer.headers['content-length'])).toBe(Buffer.byteLength(answer.body));
    expect(JSON.parse(answer.body)).toEqual({
      success: false,
      error: { code: 'EXPECTATION_FAILED', message: 'Only Expect: 100-continue is supported.' },
    });
    expect(answer.headers['x-content-type-options']).toBe('nosniff');
    expect(answer.headers['content-security-policy']).toBe("default-src 'none';frame-ancestors 'none'");
    expect(answer.headers['cache-control']).toBe('no-store');
    expect(answer.headers['x-request-id']).toBe('expect-417-test');
    // Not served: no sign-in was attempted.
    const failures = await t.db.query("SELECT 1 FROM auth_audit_log WHERE event = 'login.failure'");
    expect(failures.rows).toHaveLength(0);
  });

  it('still answers Expect: 100-continue with 100 Continue, then serves the request with its body', async () => {
    const answer = await new Promise<{ continued: boolean; status: number; body: string }>((resolve, reject) => {
      let continued = false;
      const req = httpRequest({
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/auth/login',
        headers: { 'content-type': 'application/json', 'content-length': body.length, expect: '100-continue' },
      });
      // The body is sent only once the server has said 100 Continue.
      req.on('continue', () => {
        continued = true;
        req.end(body);
      });
      req.on('response', (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => {
          text += chunk.toString('utf8');
        });
        res.on('end', () => resolve({ continued, status: res.statusCode ?? 0, body: text }));
      });
      req.on('error', reject);
      req.flushHeaders();
    });
    expect(answer.continued).toBe(true);
    expect(answer.status).toBe(401);
    expect(JSON.parse(answer.body).error.code).toBe('INVALID_CREDENTIALS');
  });
});

describe('the client error handler alone', () => {
  const fakeSocket = (inFlight?: { headersSent: boolean }) => {
    const written: string[] = [];
    const socket = {
      writable: true,
      destroyed: false,
      _httpMessage: inFlight ?? null,
      write(text: string) {
        written.push(text);
        return true;
      },
      destroy() {
        socket.destroyed = true;
      },
    };
    return { socket, written };
  };
  const lines: unknown[] = [];
  const self = { log: { info: (fields: unknown) => lines.push(fields) } };
  const handler = createClientErrorHandler({ 'x-content-type-options': 'nosniff' });
  const fail = (code: string, socket: object) =>
    handler.call(self as never, Object.assign(new Error(code), { code }) as never, socket as never);

  // Regression: the 408 went out without a body, the one error answer without the envelope and its stable code.
  it('answers a request that did not arrive in time with 408 REQUEST_TIMEOUT in the envelope, and closes', () => {
    const { socket, written } = fakeSocket();
    fail('ERR_HTTP_REQUEST_TIMEOUT', socket);
    const body = JSON.stringify({
      success: false,
      error: { code: 'REQUEST_TIMEOUT', message: 'The request did not arrive in time.' },
    });
    expect(written).toEqual([
      'HTTP/1.1 408 Request Timeout\r\nx-content-type-options: nosniff\r\nconnection: close\r\n' +
        `content-type: application/json; charset=utf-8\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
    ]);
    expect(socket.destroyed).toBe(true);
    expect(lines.at(-1)).toEqual({ code: 'REQUEST_TIMEOUT', status: 408, reason: 'ERR_HTTP_REQUEST_TIMEOUT' });
  });

  it('writes nothing into an answer already under way on the connection, and closes it', () => {
    const { socket, written } = fakeSocket({ headersSent: true });
    fail('HPE_INVALID_METHOD', socket);
    expect(written).toEqual([]);
    expect(socket.destroyed).toBe(true);
    const ready = fakeSocket({ headersSent: false });
    fail('HPE_INVALID_METHOD', ready.socket);
    expect(ready.written[0]).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
  });
});
