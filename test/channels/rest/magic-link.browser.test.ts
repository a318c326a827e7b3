import { createServer, type Server } from 'node:http';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { freePort } from '../../../bench/lib.js';
import { launchChromium } from '../../helpers/browser.js';
import { addressOf, linkIn, type SmtpSink, startSmtpSink } from '../../helpers/smtp-sink.js';
import { createTestApp, registerUser, type TestApp } from '../../helpers/test-app.js';

/**
 * A magic link followed in real Chromium, with the front end on another origin (the documented setup): the page's
 * button posts the token, and the answer's redirect to the front end must get through the page's own CSP.
 * Regression: form-action 'self' alone let Chrome stop at that redirect, with the link already spent. And: under
 * Referrer-Policy no-referrer the page's POST went out with `Origin: null` and the device cookie, which the
 * cross-site check refused.
 */
let t: TestApp;
let smtp: SmtpSink;
let browser: Browser;
let front: Server;
const frontHits: URL[] = [];

beforeAll(async () => {
  front = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://front.test');
    // The front end's page only (the browser also asks for /favicon.ico).
    if (url.pathname === '/signed-in') frontHits.push(url);
    res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><p>front end</p>');
  });
  await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
  const frontUrl = `http://127.0.0.1:${(front.address() as { port: number }).port}/signed-in`;
  const port = await freePort();
  const baseUrl = `http://localhost:${port}`;
  smtp = await startSmtpSink();
  t = await createTestApp({
    config: {
      server: { base_url: baseUrl, trusted_origins: [baseUrl] },
      email: { smtp_url: smtp.url },
      oauth: { redirect_url: frontUrl },
    },
  });
  await t.app.listen({ port, host: '127.0.0.1' });
  browser = await launchChromium();
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await t?.close();
  await smtp?.close();
  front?.close();
});

it('opening the link and pressing Sign in reaches the front end with a one-time code', async () => {
  const user = await registerUser(t.app, { email: 'browser.link@example.com' });
  expect(
    (await t.app.inject({ method: 'POST', url: '/auth/magic-link', payload: { email: user.email } })).statusCode,
  ).toBe(200);
  const mail = await smtp.waitFor((m) => addressOf(m) === user.email && m.subject === 'Your sign-in link');
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const violations: string[] = [];
    page.on('console', (m) => {
      if (/Content Security Policy|violates/.test(m.text())) violations.push(m.text());
    });
    await page.goto(linkIn(mail, '/auth/magic-link/verify').toString());
    await page.click('button[type="submit"]');
    await expect.poll(() => frontHits.length, { timeout: 10_000 }).toBe(1);
    const code = frontHits[0]?.searchParams.get('code');
    expect(code).toMatch(/^[\w-]{43}$/);
    expect(violations).toEqual([]);
    const exchanged = await t.app.inject({ method: 'POST', url: '/auth/oauth/exchange', payload: { code } });
    expect(exchanged.json().userId).toBe(user.userId);
  } finally {
    await context.close();
  }
});
