import * as OTPAuth from 'otpauth';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasChromium, type LiveGateway, launchChromium, openPage, startGateway } from '../helpers/browser.js';
import { registerUser } from '../helpers/test-app.js';

/**
 * The console's feature panels in Chromium, against a gateway with every feature: a missing route fails its test.
 * A server without a feature is simulated in the browser (its API calls answered with the gateway's 404 "No route"
 * envelope): the panel says so in words.
 */
describe.skipIf(!hasChromium)('console feature panels in Chromium', () => {
  let browser: Browser;
  let gw: LiveGateway;

  beforeAll(async () => {
    [browser, gw] = await Promise.all([launchChromium(), startGateway()]);
  });
  afterAll(async () => {
    await browser?.close();
    await gw?.close();
  });

  /** Opens the console already signed in with this token (as if the person had signed in in this tab). */
  async function signedInConsole(page: Page, token: string): Promise<void> {
    await page.goto(`${gw.baseUrl}/`);
    await page.evaluate((t) => sessionStorage.setItem('gateway.token', t), token);
    await page.reload();
    await page.waitForSelector('#profile-email');
  }

  /** Turns two-factor on for a user through the API (enrol, confirm now); returns the app's TOTP generator. */
  async function enableTwoFactor(token: string, password: string): Promise<OTPAuth.TOTP> {
    const headers = { authorization: `Bearer ${token}` };
    const enrol = await gw.app.inject({ method: 'POST', url: '/auth/2fa/enable', headers, payload: { password } });
    expect(enrol.statusCode, enrol.body).toBe(200);
    const totp = OTPAuth.URI.parse((enrol.json() as { otpauthUri: string }).otpauthUri) as OTPAuth.TOTP;
    const confirm = await gw.app.inject({
      method: 'POST',
      url: '/auth/2fa/confirm',
      headers,
      payload: { code: totp.generate() },
    });
    expect(confirm.statusCode, confirm.body).toBe(200);
    return totp;
  }

  /** The JSON bodies the page sends to a path, in order. */
  function bodiesSentTo(page: Page, path: string): unknown[] {
    const bodies: unknown[] = [];
    page.on('request', (request) => {
      if (new URL(request.url()).pathname === path) bodies.push(request.postDataJSON());
    });
    return bodies;
  }

  async function signInThroughForm(page: Page, email: string, password: string): Promise<void> {
    const form = page.locator('#signin-form');
    await form.getByLabel('Email').fill(email);
    await form.getByLabel('Password').fill(password);
    await form.getByRole('button', { name: 'Sign in', exact: true }).click();
  }

  it('says in words when a feature is not available on this server', async (ctx) => {
    // A server without these features, simulated in the browser: each feature's API call is answered the way the
    // gateway answers a route it does not have (404 with its own error envelope, "No route ...").
    const { page, cspViolations } = await openPage(browser, ctx);
    const absent = [
      { method: 'GET', path: '/auth/passkeys' },
      { method: 'GET', path: '/auth/sessions' },
      { method: 'GET', path: '/auth/audit' },
      { method: 'POST', path: '/auth/channels/telegram/link-code' },
      { method: 'POST', path: '/auth/2fa/enable' },
      { method: 'GET', path: '/ws/chat' },
    ] as const;
    const answered: string[] = [];
    await page.route(
      (url) => absent.some((a) => a.path === url.pathname),
      async (route) => {
        const request = route.request();
        const { pathname } = new URL(request.url());
        if (!absent.some((a) => a.path === pathname && a.method === request.method())) return route.fallback();
        answered.push(`${request.method()} ${pathname}`);
        await route.fulfill({
          status: 404,
          contentType: 'application/json; charset=utf-8',
          body: JSON.stringify({
            success: false,
            error: { code: 'NOT_FOUND', message: `No route ${request.method()} ${pathname}.` },
          }),
        });
      },
    );
    // The WebSocket handshake is refused before it opens, as a server without the route does.
    await page.routeWebSocket(
      (url) => url.pathname === '/ws/chat',
      (ws) => ws.close(),
    );

    const { token } = await registerUser(gw.app);
    await signedInConsole(page, token);
    const panels = [
      { id: 'passkeys', text: 'Passkeys is not available on this server.' },
      { id: 'sessions', text: 'Session management is not available on this server.' },
      { id: 'audit', text: 'The audit trail is not available on this server.' },
    ] as const;
    for (const p of panels) {
      await expect.poll(() => page.locator(`#${p.id} .message`).textContent(), { timeout: 5000 }).toBe(p.text);
    }

    await page.getByRole('button', { name: 'Get a link code' }).click();
    await expect
      .poll(() => page.locator('#telegram .message').textContent())
      .toBe('Telegram linking is not available on this server.');

    await page.locator('#chat-connect').click();
    await expect
      .poll(() => page.locator('#chat .message').textContent(), { timeout: 5000 })
      .toBe('Chat over WebSocket is not available on this server.');

    const form = page.locator('#two-factor-enable-form');
    await form.getByLabel('Current password').fill('whatever-password');
    await form.getByRole('button', { name: 'Turn on two-factor' }).click();
    await expect
      .poll(() => page.locator('#two-factor .message').textContent())
      .toBe('Two-factor authentication is not available on this server.');

    // The messages came from the simulated 404s, not from something else going wrong.
    expect(new Set(answered)).toEqual(new Set(absent.map((a) => `${a.method} ${a.path}`)));
    expect(cspViolations()).toEqual([]);
  });

  it('registers a passkey with a virtual authenticator and signs in with it alone', async (ctx) => {
    const { context, page, cspViolations } = await openPage(browser, ctx);
    const cdp = await context.newCDPSession(page);
    await cdp.send('WebAuthn.enable');
    await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: {
        protocol: 'ctap2',
        transport: 'internal',
        hasResidentKey: true,
        hasUserVerification: true,
        isUserVerified: true,
        automaticPresenceSimulation: true,
      },
    });
    const user = await registerUser(gw.app);
    await signedInConsole(page, user.token);

    await page
      .locator('#passkey-register-form')
      .getByLabel(/Name for the new passkey/)
      .fill('Virtual key');
    await page.getByRole('button', { name: 'Add a passkey' }).click();
    await expect
      .poll(() => page.locator('#passkeys .message').textContent(), { timeout: 10_000 })
      .toBe('Passkey added.');
    await expect.poll(() => page.locator('#passkey-list').textContent()).toContain('Virtual key');

    await page.getByRole('button', { name: 'Sign out', exact: true }).click();
    await expect.poll(() => page.locator('#who').textContent()).toBe('Not signed in.');

    // Usernameless: no email typed, the discoverable credential names the account.
    await page.getByRole('button', { name: 'Sign in with a passkey' }).click();
    await expect.poll(() => page.locator('#profile-email').textContent(), { timeout: 10_000 }).toBe(user.email);
    const token = await page.evaluate(() => sessionStorage.getItem('gateway.token'));
    const session = await gw.app.inject({
      method: 'GET',
      url: '/auth/session',
      headers: { authorization: `Bearer ${token}` },
    });
    expect(session.statusCode).toBe(200);
    expect(session.json()).toMatchObject({ user: { email: user.email } });
    expect(cspViolations()).toEqual([]);
  });

  it('lists sessions and revokes another one, which disappears and stops working', async (ctx) => {
    const user = await registerUser(gw.app);
    // A second session of the same user, "on another device".
    const other = await gw.app.inject({
      method: 'POST',
      url: '/auth/login',
      headers: { 'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0' },
      payload: { email: user.email, password: user.password },
    });
    expect(other.statusCode).toBe(200);
    const otherToken = (other.json() as { token: string }).token;

    const { page, cspViolations } = await openPage(browser, ctx);
    await signedInConsole(page, user.token);
    const items = page.locator('#session-list li');
    await expect.poll(() => items.count()).toBe(2);
    const others = page.locator('#session-list li[data-current="false"]');
    await expect.poll(() => others.count()).toBe(1);
    await others.getByRole('button', { name: /^End the session on / }).click();
    await expect.poll(() => page.locator('#sessions .message').textContent()).toBe('Session ended.');
    await expect.poll(() => items.count()).toBe(1);
    expect(await page.locator('#session-list li').getAttribute('data-current')).toBe('true');

    const refused = await gw.app.inject({
      method: 'GET',
      url: '/auth/session',
      headers: { authorization: `Bearer ${otherToken}` },
    });
    expect(refused.statusCode).toBe(401);
    expect(cspViolations()).toEqual([]);
  });

  // Regression: ending the current session left the tab "signed in" with a dead token.
  it("signs the tab out when it ends the tab's own session", async (ctx) => {
    const user = await registerUser(gw.app);
    const { page, cspViolations } = await openPage(browser, ctx);
    await signedInConsole(page, user.token);
    await page.getByRole('button', { name: 'End this session (sign out here)' }).click();
    await expect.poll(() => page.locator('#who').textContent()).toBe('Not signed in.');
    expect(await page.evaluate(() => sessionStorage.getItem('gateway.token'))).toBeNull();
    await page.locator('#signin-form').waitFor({ state: 'visible' });
    expect(await page.locator('#sessions .message').textContent()).toBe('Session ended; this tab is signed out.');
    const refused = await gw.app.inject({
      method: 'GET',
      url: '/auth/session',
      headers: { authorization: `Bearer ${user.token}` },
    });
    expect(refused.statusCode).toBe(401);
    expect(cspViolations()).toEqual([]);
  });

  // Regression: a session whose device the gateway could not name ('') was listed with a blank name.
  it('names a session on a device the gateway could not name "Unknown device"', async (ctx) => {
    const user = await registerUser(gw.app);
    // A user agent with no product token: the gateway's device name for it is ''.
    const other = await gw.app.inject({
      method: 'POST',
      url: '/auth/login',
      headers: { 'user-agent': '()' },
      payload: { email: user.email, password: user.password },
    });
    expect(other.statusCode).toBe(200);
    const listed = await gw.app.inject({
      method: 'GET',
      url: '/auth/sessions',
      headers: { authorization: `Bearer ${user.token}` },
    });
    const sessions = (listed.json() as { sessions: { current: boolean; device: { name: string } }[] }).sessions;
    expect(sessions.find((s) => !s.current)?.device.name).toBe('');

    const { page, cspViolations } = await openPage(browser, ctx);
    await signedInConsole(page, user.token);
    const item = page.locator('#session-list li[data-current="false"]');
    await expect.poll(() => item.locator('strong').textContent()).toBe('Unknown device');
    expect(await item.getByRole('button').getAttribute('aria-label')).toBe('End the session on Unknown device');
    expect(cspViolations()).toEqual([]);
  });

  // Regression: the one "password or code" field sent an all-digit password as {code}: always wrong, and counted
  // toward the 2FA lockout.
  it('turns two-factor off with an all-digit password, sent as the password', async (ctx) => {
    const user = await registerUser(gw.app, { password: '48203917' });
    await enableTwoFactor(user.token, user.password);
    const { page, cspViolations } = await openPage(browser, ctx);
    const sent = bodiesSentTo(page, '/auth/2fa/disable');
    await signedInConsole(page, user.token);

    const form = page.locator('#two-factor-disable-password-form');
    await form.getByLabel('Current password').fill(user.password);
    await form.getByRole('button', { name: 'Turn off with password' }).click();
    await expect
      .poll(() => page.locator('#two-factor .message').textContent())
      .toBe('Two-factor authentication is off.');
    expect(sent).toEqual([{ password: '48203917' }]);
    const login = await gw.app.inject({
      method: 'POST',
      url: '/auth/login',
      payload: { email: user.email, password: user.password },
    });
    expect(login.json()).toMatchObject({ success: true, token: expect.any(String) });
    expect(login.json()).not.toHaveProperty('twoFactorRequired');
    expect(cspViolations()).toEqual([]);
  });

  it('turns two-factor off with a code from the app, and sends no backup code as one', async (ctx) => {
    const user = await registerUser(gw.app);
    const totp = await enableTwoFactor(user.token, user.password);
    const { page, cspViolations } = await openPage(browser, ctx);
    const sent = bodiesSentTo(page, '/auth/2fa/disable');
    await signedInConsole(page, user.token);

    const form = page.locator('#two-factor-disable-code-form');
    const code = form.getByLabel('Code from the app');
    const submit = form.getByRole('button', { name: 'Turn off with code' });
    // The route checks TOTP codes only: a backup code would be one more wrong code toward the lockout.
    await code.fill('a1b2c-d3e4f');
    await submit.click();
    expect(await code.evaluate((input: HTMLInputElement) => input.validity.valid)).toBe(false);

    // The confirmation used this period's code: take the next period's (inside the usual ±1 window).
    const next = totp.generate({ timestamp: Date.now() + 30_000 });
    await code.fill(next);
    await submit.click();
    await expect
      .poll(() => page.locator('#two-factor .message').textContent())
      .toBe('Two-factor authentication is off.');
    expect(sent).toEqual([{ code: next }]);
    expect(cspViolations()).toEqual([]);
  });

  it('turns on two-factor from the page (secret read, code computed) and signs in with a code', async (ctx) => {
    const user = await registerUser(gw.app);
    const { page, cspViolations } = await openPage(browser, ctx);
    await signedInConsole(page, user.token);

    const enable = page.locator('#two-factor-enable-form');
    await enable.getByLabel('Current password').fill(user.password);
    await enable.getByRole('button', { name: 'Turn on two-factor' }).click();
    const secretText = (await page.locator('#two-factor-secret').textContent({ timeout: 10_000 })) ?? '';
    expect(secretText).toMatch(/^[A-Z2-7]+=*$/);
    expect(await page.locator('#two-factor-setup svg.qr').count()).toBe(1);
    const totp = new OTPAuth.TOTP({ secret: OTPAuth.Secret.fromBase32(secretText), digits: 6, period: 30 });

    const confirm = page.locator('#two-factor-confirm-form');
    await confirm.getByLabel('Code from the app').fill(totp.generate());
    await confirm.getByRole('button', { name: 'Confirm' }).click();
    await expect
      .poll(() => page.locator('#two-factor .message').textContent())
      .toBe('Two-factor authentication is on.');

    await page.getByRole('button', { name: 'Sign out', exact: true }).click();
    await signInThroughForm(page, user.email, user.password);
    const second = page.locator('#second-factor-form');
    await second.waitFor({ state: 'visible' });
    // A code already used is refused by a careful server: take the next period's code (inside the usual ±1 window).
    await second.getByLabel('Authentication code').fill(totp.generate({ timestamp: Date.now() + 30_000 }));
    await second.getByRole('button', { name: 'Verify' }).click();
    await expect.poll(() => page.locator('#profile-email').textContent(), { timeout: 10_000 }).toBe(user.email);
    expect(cspViolations()).toEqual([]);
  });

  it('exchanges a chat message over the WebSocket panel', async (ctx) => {
    const user = await registerUser(gw.app);
    const { page, cspViolations } = await openPage(browser, ctx);
    await signedInConsole(page, user.token);
    await page.locator('#chat-connect').click();
    await expect
      .poll(() => page.locator('#chat .message').textContent(), { timeout: 10_000 })
      .toBe('Connected and authenticated.');
    await page.locator('#chat-form').getByLabel('Message').fill('hello from the console');
    await page.locator('#chat-form').getByRole('button', { name: 'Send' }).click();
    await expect
      .poll(() => page.locator('#chat-log li.chat-out').last().textContent())
      .toContain('hello from the console');
    await expect
      .poll(() => page.locator('#chat-log li.chat-in').last().textContent(), { timeout: 10_000 })
      .toContain('hello from the console');
    await page.locator('#chat-disconnect').click();
    await expect.poll(() => page.locator('#chat .message').textContent()).toBe('Disconnected.');
    expect(cspViolations()).toEqual([]);
  });
});
