/**
 * Screenshots of the console and the API reference for the README, taken with the same Debian Chromium the browser
 * tests use, against a gateway on a fresh embedded database:
 *
 *   npx tsx test/helpers/console-screenshots.ts      # writes docs/console-*.png and docs/api-reference.png
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { launchChromium, startGateway } from './browser.js';
import { REPO_ROOT, registerUser } from './test-app.js';

const OUT = join(REPO_ROOT, 'docs');

async function main(): Promise<void> {
  mkdirSync(OUT, { recursive: true });
  const [browser, gw] = await Promise.all([launchChromium(), startGateway()]);
  try {
    const desktop = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await desktop.newPage();
    await page.goto(`${gw.baseUrl}/`);
    await page.waitForSelector('html[data-ready="true"]');
    await page.screenshot({ path: join(OUT, 'console-signed-out.png'), fullPage: true });

    const user = await registerUser(gw.app, { email: 'ada@example.com', name: 'Ada Lovelace' });
    await page.evaluate((t) => sessionStorage.setItem('gateway.token', t), user.token);
    await page.reload();
    await page.waitForSelector('#profile-email');
    await page.waitForTimeout(300); // let the panels' first requests settle before the picture
    await page.screenshot({ path: join(OUT, 'console-signed-in.png'), fullPage: true });

    const phone = await browser.newContext({ viewport: { width: 360, height: 740 }, deviceScaleFactor: 2 });
    const small = await phone.newPage();
    await small.goto(`${gw.baseUrl}/`);
    await small.waitForSelector('html[data-ready="true"]');
    const form = small.locator('#signin-form');
    await form.getByLabel('Email').fill('ada@example.com');
    await form.getByLabel('Password').fill('not-the-password');
    await form.getByRole('button', { name: 'Sign in', exact: true }).click();
    await small.waitForSelector('#account .message.error');
    await small.screenshot({ path: join(OUT, 'console-phone-failed-login.png') });

    const docs = await desktop.newPage();
    await docs.goto(`${gw.baseUrl}/docs`);
    await docs.getByText('Register with email and password, and sign in').first().waitFor({ timeout: 20_000 });
    await docs.waitForTimeout(500);
    await docs.screenshot({ path: join(OUT, 'api-reference.png') });
  } finally {
    await browser.close();
    await gw.close();
  }
}

await main();
