import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { freePort } from '../../bench/lib.js';
import { buildApp } from '../../src/app.js';
import { CHROMIUM_ARGS } from '../helpers/browser.js';
import { createTestDatabase, LogCapture, REPO_ROOT, type TestDatabase, testConfig } from '../helpers/test-app.js';

/**
 * The design's client code, run by real Chromium against the gateway: a CDP virtual authenticator (CTAP2, resident
 * keys, user verification) stands in for Touch ID. Never skipped: CI installs Debian's chromium (CHROMIUM_PATH).
 */

// The design's "Client-Side Integration" code, verbatim but for the import path (the gateway serves the module).
const PAGE_SCRIPT = `
import { startRegistration, startAuthentication } from '/vendor/simplewebauthn-browser.js';

// 1. Register a passkey (user must be logged in)
async function registerPasskey(token) {
  // Get options from server
  const optionsResponse = await fetch('/auth/passkey/register/options', {
    method: 'POST',
    headers: {
      'Authorization': \`Bearer \${token}\`
    }
  });
  const options = await optionsResponse.json();

  // Start WebAuthn registration
  const credential = await startRegistration(options);

  // Send credential to server
  const response = await fetch('/api/auth/passkey/register', {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      'Authorization': \`Bearer \${token}\`
    },
    body: JSON.stringify({ credential })
  });

  return response.json();
}

// 2. Authenticate with passkey
async function authenticateWithPasskey() {
  // Get challenge from server
  const optionsResponse = await fetch('/api/auth/passkey/authenticate/options');
  const options = await optionsResponse.json();

  // Start WebAuthn authentication
  const credential = await startAuthentication(options);

  // Verify with server
  const response = await fetch('/auth/passkey/authenticate', {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json'
    },
    body: JSON.stringify({ credential })
  });

  const { token, userId } = await response.json();
  return { token, userId };
}

window.registerPasskey = registerPasskey;
window.authenticateWithPasskey = authenticateWithPasskey;
document.body.dataset.ready = 'yes';
`;

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>Passkeys</title></head>
<body><h1>Passkey test page</h1><script type="module" src="/test/passkeys.js"></script></body></html>`;

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

let testDb: TestDatabase;
let app: Awaited<ReturnType<typeof buildApp>>;
let base: string;
let context: BrowserContext;
let profile: string;

beforeAll(async () => {
  testDb = await createTestDatabase();
  // rpID must be "localhost": http://localhost is a secure context, and the gateway listens on 127.0.0.1.
  const port = await freePort();
  base = `http://localhost:${port}`;
  const config = testConfig(testDb.dataDir, { server: { base_url: base, trusted_origins: [] } });
  app = await buildApp({ config, db: testDb.db, logger: { level: 'info', stream: new LogCapture() } as never });
  app.get('/test/passkeys.html', { schema: { hide: true } }, (_req, reply) =>
    reply
      .type('text/html; charset=utf-8')
      .header('content-security-policy', "default-src 'none'; script-src 'self'; connect-src 'self'")
      .send(PAGE),
  );
  app.get('/test/passkeys.js', { schema: { hide: true } }, (_req, reply) =>
    reply.type('text/javascript; charset=utf-8').send(PAGE_SCRIPT),
  );
  await app.listen({ port, host: '127.0.0.1' });

  profile = mkdtempSync(join(tmpdir(), 'gw-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
  });
}, 60_000);

afterAll(async () => {
  await context?.close();
  await app?.close();
  await testDb?.drop();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

async function api(path: string, init: { method?: string; token?: string; body?: unknown } = {}) {
  const res = await fetch(`${base}${path}`, {
    method: init.method ?? 'GET',
    headers: {
      ...(init.token ? { authorization: `Bearer ${init.token}` } : {}),
      ...(init.body ? { 'content-type': 'application/json' } : {}),
    },
    body: init.body ? JSON.stringify(init.body) : undefined,
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function screenshotOnFailure(page: Page, run: () => Promise<void>): Promise<void> {
  try {
    await run();
  } catch (err) {
    const dir = join(REPO_ROOT, 'test-output');
    mkdirSync(dir, { recursive: true });
    await page.screenshot({ path: join(dir, 'passkeys.browser.png'), fullPage: true }).catch(() => {});
    throw err;
  }
}

it('registers a passkey in Chromium, signs out, and signs in with the passkey alone', async () => {
  const page = await context.newPage();
  const consoleErrors: string[] = [];
  page.on('pageerror', (err) => consoleErrors.push(err.message));

  await screenshotOnFailure(page, async () => {
    const cdp = await context.newCDPSession(page);
    await cdp.send('WebAuthn.enable');
    const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: {
        protocol: 'ctap2',
        transport: 'internal',
        hasResidentKey: true,
        hasUserVerification: true,
        isUserVerified: true,
      },
    });

    const signup = await api('/auth/register', {
      method: 'POST',
      body: { email: 'browser@example.com', password: 'SecurePassword123!', name: 'Browser User' },
    });
    expect(signup.status).toBe(201);
    const { token, userId } = signup.body as { token: string; userId: string };

    await page.goto(`${base}/test/passkeys.html`);
    await page.waitForSelector('body[data-ready="yes"]', { timeout: 10_000 });

    const registered = (await page.evaluate((t) => (window as never as Api).registerPasskey(t), token)) as {
      success: boolean;
      passkey: { id: string };
    };
    expect(registered.success).toBe(true);
    const { rows } = await testDb.db.query<{ id: string; credential_id: string; user_id: string }>(
      'SELECT id, credential_id, user_id FROM passkeys',
    );
    expect(rows).toEqual([{ id: registered.passkey.id, credential_id: expect.any(String), user_id: userId }]);
    // The virtual authenticator holds the same (resident) credential.
    const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
    expect(credentials.map((c) => Buffer.from(c.credentialId, 'base64').toString('base64url'))).toEqual([
      rows[0]?.credential_id,
    ]);
    expect(credentials[0]?.isResidentCredential).toBe(true);

    // Sign out: the token stops working.
    expect((await api('/auth/logout', { method: 'POST', token })).status).toBe(200);
    expect((await api('/auth/session', { token })).status).toBe(401);

    // Usernameless sign-in: no email, no cookie, just the passkey.
    const signedIn = (await page.evaluate(() => (window as never as Api).authenticateWithPasskey())) as {
      token: string;
      userId: string;
    };
    expect(signedIn.userId).toBe(userId);
    const session = await api('/auth/session', { token: signedIn.token });
    expect(session.status).toBe(200);
    expect(session.body.user).toEqual({ id: userId, email: 'browser@example.com', name: 'Browser User' });

    const { rows: after } = await testDb.db.query<{ counter: string | number }>('SELECT counter FROM passkeys');
    expect(Number(after[0]?.counter)).toBeGreaterThanOrEqual(0);
    expect(consoleErrors).toEqual([]);
  });
  await page.close();
});

interface Api {
  registerPasskey(token: string): Promise<unknown>;
  authenticateWithPasskey(): Promise<unknown>;
}
