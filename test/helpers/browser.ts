import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import type { TestContext } from 'vitest';
import { freePort } from '../../bench/lib.js';
import { createTestApp, REPO_ROOT, type TestApp } from './test-app.js';

/** Debian's Chromium (installed by .ci/run with apt when missing); never a downloaded browser. */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const TEST_OUTPUT_DIR = join(REPO_ROOT, 'test-output');

export const hasChromium = existsSync(CHROMIUM_PATH);

/**
 * One headless Chromium for a test file. Playwright's launch() gives it a fresh temporary profile (its own
 * --user-data-dir, deleted on close); each test gets its own context on top.
 */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: CHROMIUM_ARGS });
}

/** Headless, no sandbox (root in CI), and no background networking: this machine has no network but loopback. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export interface LiveGateway extends TestApp {
  baseUrl: string;
}

/**
 * A gateway on the embedded database, listening on 127.0.0.1. base_url is http://localhost:<port> (a secure context
 * for WebAuthn, and the passkey rpID "localhost"), so the port is chosen before the app is built.
 */
export async function startGateway(): Promise<LiveGateway> {
  const port = await freePort();
  const baseUrl = `http://localhost:${port}`;
  const testApp = await createTestApp({
    kind: 'pglite',
    config: { server: { base_url: baseUrl, trusted_origins: [baseUrl] } } as never,
  });
  await testApp.app.listen({ port, host: '127.0.0.1' });
  return { ...testApp, baseUrl };
}

export interface PageHandle {
  context: BrowserContext;
  page: Page;
  /** CSP violations and console errors seen so far (CSP ones start with "CSP"). */
  problems: string[];
  cspViolations(): string[];
}

/**
 * A fresh context and page for one test: CSP violations recorded (securitypolicyviolation events and console
 * messages), a screenshot under test-output/ if the test fails, the context closed when it finishes.
 */
export async function openPage(
  browser: Browser,
  ctx: TestContext,
  options: { viewport?: { width: number; height: number } } = {},
): Promise<PageHandle> {
  const context = await browser.newContext({ viewport: options.viewport ?? { width: 1200, height: 900 } });
  // Below the test timeout, so a missing element fails the test with a message (and a screenshot), not a timeout.
  context.setDefaultTimeout(10_000);
  const page = await context.newPage();
  const problems: string[] = [];
  // Init scripts are injected by the DevTools protocol: the page's CSP does not apply to them.
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(
        `CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || 'inline'} (${e.sourceFile}:${e.lineNumber})`,
      );
    });
  });
  page.on('console', (message) => {
    const text = message.text();
    if (/Content[- ]Security[- ]Policy|CSP violation/i.test(text)) problems.push(`CSP ${text}`);
    else if (message.type() === 'error') problems.push(`console error: ${text}`);
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));

  ctx.onTestFinished(async ({ task }) => {
    if (task.result?.state === 'fail') {
      mkdirSync(TEST_OUTPUT_DIR, { recursive: true });
      const name = task.name.replace(/[^\w-]+/g, '-').slice(0, 80);
      await page.screenshot({ path: join(TEST_OUTPUT_DIR, `${name}.png`), fullPage: true }).catch(() => {});
      if (problems.length > 0) writeFileSync(join(TEST_OUTPUT_DIR, `${name}.console.txt`), `${problems.join('\n')}\n`);
    }
    await context.close().catch(() => {});
  });
  return { context, page, problems, cspViolations: () => problems.filter((p) => p.startsWith('CSP')) };
}
