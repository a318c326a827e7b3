import type { EmailMessage, Mailer } from '../email/index.js';

/**
 * Sends after the current request has answered. A request for a known address then costs what one for an unknown
 * address costs (no timing oracle from SMTP latency), and a slow or failing mail server never fails the request.
 */
export function sendDeferred(mailer: Mailer, message: EmailMessage, log: { error(obj: object, msg: string): void }) {
  setImmediate(() => {
    mailer.send(message).catch((err: Error) => {
      log.error({ err: { message: err.message }, subject: message.subject }, 'sending an account email failed');
    });
  });
}
