import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/test-app.js';

// Regression (review F): a request reaching the router on a kept-alive connection after the close began (SIGTERM)
// was answered by Fastify's return503OnClosing fast path: no code, no request id, no Retry-After, no security headers.
describe('a request refused while the gateway shuts down', () => {
  let t: TestApp;
  let port: number;
  beforeAll(async () => {
    t = await createTestApp();
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    port = (t.app.server.address() as { port: number }).port;
  });
  afterAll(() => t?.close());

  it('is answered 503 in the gateway error envelope, with a code, X-Request-Id and Retry-After', async () => {
    const socket = connect(port, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    let received = '';
    socket.on('data', (d) => {
      received += d.toString();
    });
    const body = JSON.stringify({ email: 'nobody@example.com', password: 'wrong-password' });
    // Request 1 is in flight (its body not complete) when the shutdown starts; request 2 follows it on the connection.
    socket.write(
      `POST /auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 5)}`,
    );
    await new Promise((r) => setTimeout(r, 200));
    const closing = t.app.close();
    await new Promise((r) => setTimeout(r, 200));
    socket.write(`${body.slice(5)}GET /auth/health HTTP/1.1\r\nHost: localhost\r\n\r\n`);
    await Promise.race([new Promise((r) => socket.once('close', r)), new Promise((r) => setTimeout(r, 5000))]);
    socket.destroy();
    await closing;
    const responses = received.split(/(?=HTTP\/1\.1 )/);
    const second = responses[1] ?? '';
    const [head = '', payload = ''] = second.split('\r\n\r\n');
    expect(head.split('\r\n')[0]).toBe('HTTP/1.1 503 Service Unavailable');
    expect({
      body: JSON.parse(payload),
      requestId: /\r\nx-request-id: /i.test(head),
      retryAfter: /\r\nretry-after: /i.test(head),
    }).toEqual({
      body: { success: false, error: { code: expect.any(String), message: expect.any(String) } },
      requestId: true,
      retryAfter: true,
    });
    expect(JSON.parse(payload).error.code).toBe('SERVER_BUSY');
    expect(head).toMatch(/\r\nconnection: close/i);
    expect(head).toMatch(/\r\nx-content-type-options: nosniff/i);
  });
});
