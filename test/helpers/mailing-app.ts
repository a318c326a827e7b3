import { type SmtpSink, startSmtpSink } from './smtp-sink.js';
import { createTestApp, type TestApp } from './test-app.js';

/**
 * A test app whose account emails go to a local SMTP sink (real SMTP), with `config` over the test defaults, and the
 * sink; `close()` ends both. For a describe block:
 *   beforeAll(async () => ({ t, smtp, close } = await startMailingApp()));
 *   afterAll(() => close?.());
 */
export async function startMailingApp(
  config: NonNullable<Parameters<typeof createTestApp>[0]>['config'] = {},
): Promise<{ t: TestApp; smtp: SmtpSink; close(): Promise<void> }> {
  const smtp = await startSmtpSink();
  const t = await createTestApp({ config: { ...config, email: { ...config.email, smtp_url: smtp.url } } });
  return {
    t,
    smtp,
    async close() {
      await t.close();
      await smtp.close();
    },
  };
}
