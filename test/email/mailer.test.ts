import type { AddressInfo } from 'node:net';
import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMailer } from '../../src/email/mailer.js';

// Regression: with nodemailer's defaults a mail server that accepted connections and never greeted held each send's
// socket for 30 s (the greeting), and one that stalled later for 10 minutes.
describe('SMTP mailer against a server that accepts and never answers', () => {
  let server: Server;
  const sockets = new Set<Socket>();
  let port = 0;
  beforeAll(async () => {
    server = createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('gives up after the greeting timeout (10 s) and closes its socket', { timeout: 20_000 }, async () => {
    const mailer = createMailer({
      from: 'gateway@example.com',
      smtpUrl: `smtp://127.0.0.1:${port}`,
      outboxDir: '',
      log: { info() {} },
    });
    const started = Date.now();
    await expect(
      mailer.send({ to: 'someone@example.com', subject: 'Hello', text: 'Hello', html: '<p>Hello</p>' }),
    ).rejects.toThrow(/greeting/i);
    expect(Date.now() - started).toBeLessThan(15_000);
    await expect.poll(() => sockets.size, { timeout: 2000 }).toBe(0);
    mailer.close();
  });
});
