import { createServer } from 'node:net';
import websocket from '@fastify/websocket';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { hasChromium, launchChromium, openPage } from '../helpers/browser.js';
import { createTestDatabase, registerUser, type TestDatabase, testConfig } from '../helpers/test-app.js';

/**
 * The chat panel against a stand-in /ws/chat that speaks the documented protocol (first message
 * {"type":"auth","token"} -> {"type":"auth_ok"}; {"type":"message","id","text"} answered by {"type":"reply","id","text"} chunks and {"type":"reply_end","id"}, as the
 * channels branch speaks it), so the
 * panel is proven on this branch too; the real channel's own test runs in console.features.e2e once it is merged.
 * Also proves that a WebSocket route (hidden from @fastify/swagger by @fastify/websocket) is still documented.
 */
describe.skipIf(!hasChromium)('chat panel against a stand-in WebSocket route', () => {
  let browser: Browser;
  let testDb: TestDatabase;
  let app: Awaited<ReturnType<typeof buildApp>>;
  let baseUrl: string;

  beforeAll(async () => {
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const a = s.address();
        s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
      });
    });
    baseUrl = `http://localhost:${port}`;
    [browser, testDb] = await Promise.all([launchChromium(), createTestDatabase({ kind: 'pglite' })]);
    const config = testConfig(testDb.dataDir, { server: { base_url: baseUrl, trusted_origins: [baseUrl] } } as never);
    app = await buildApp({ config, db: testDb.db, logger: false });
    await app.register(websocket);
    app.get('/ws/chat', { websocket: true }, (socket) => {
      let userId: string | null = null;
      socket.on('message', async (raw: Buffer) => {
        const msg = JSON.parse(raw.toString()) as { type: string; token?: string; id?: string; text?: string };
        if (!userId) {
          const auth = msg.type === 'auth' && msg.token ? await app.authenticator.authenticateToken(msg.token) : null;
          if (!auth) {
            socket.send(JSON.stringify({ type: 'auth_error', code: 'INVALID_TOKEN' }));
            return socket.close(4001, 'unauthenticated');
          }
          userId = auth.userId;
          return socket.send(JSON.stringify({ type: 'auth_ok', userId, license: auth.license.type }));
        }
        if (msg.type === 'message')
          socket.send(JSON.stringify({ type: 'message', id: msg.id, text: `echo: ${msg.text}` }));
      });
    });
    await app.listen({ port, host: '127.0.0.1' });
  });
  afterAll(async () => {
    await browser?.close();
    await app?.close();
    await testDb?.drop();
  });

  it('connects with the tab token, shows both directions, disconnects', async (ctx) => {
    const user = await registerUser(app);
    const { page, cspViolations } = await openPage(browser, ctx);
    await page.goto(`${baseUrl}/`);
    await page.evaluate((t) => sessionStorage.setItem('gateway.token', t), user.token);
    await page.reload();
    await page.waitForSelector('#profile-email');

    await page.locator('#chat-connect').click();
    await expect.poll(() => page.locator('#chat .message').textContent()).toBe('Connected and authenticated.');
    await page.locator('#chat-form').getByLabel('Message').fill('hello over the socket');
    await page.keyboard.press('Enter');
    await expect
      .poll(() => page.locator('#chat-log li.chat-in').last().textContent())
      .toContain('echo: hello over the socket');
    expect(await page.locator('#chat-log li.chat-out').last().textContent()).toContain('hello over the socket');
    expect(await page.locator('#chat-log li.chat-in').count()).toBe(1); // two chunks, one line
    await page.locator('#chat-disconnect').click();
    await expect.poll(() => page.locator('#chat .message').textContent()).toBe('Disconnected.');
    expect(cspViolations()).toEqual([]);
  });

  it('shows the refusal when the token no longer works', async (ctx) => {
    const user = await registerUser(app);
    const { page } = await openPage(browser, ctx);
    await page.goto(`${baseUrl}/`);
    await page.evaluate((t) => sessionStorage.setItem('gateway.token', t), user.token);
    await page.reload();
    await page.waitForSelector('#profile-email');
    // The session ends behind the page's back (another tab signed out).
    await app.inject({ method: 'POST', url: '/auth/logout', headers: { authorization: `Bearer ${user.token}` } });
    await page.locator('#chat-connect').click();
    await expect
      .poll(() => page.locator('#chat .message.error').textContent())
      .toBe('Authentication failed (INVALID_TOKEN). The connection closed: unauthenticated.');
  });

  it('documents the WebSocket route although it hides itself from @fastify/swagger', async () => {
    const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json() as {
      paths: Record<string, { get?: { summary?: string; description?: string } }>;
    };
    expect(doc.paths['/ws/chat']?.get?.summary).toMatch(/WebSocket/);
    expect(doc.paths['/ws/chat']?.get?.description).toContain('{"type":"auth","token":"<token>"}');
  });
});
