import type { AuditEntry, AuditEvent } from '../audit/index.js';
import { ANONYMOUS_EMAIL_DOMAIN } from '../auth/index.js';
import type { Queryable } from '../db/index.js';
import { type EmailMessage, type Mailer, securityNoticeEmail } from '../email/index.js';
import type { SendLimit } from './send-slots.js';

/**
 * What the owner of an account is told by email as it happens, whoever did it (OWASP ASVS V2.2.3): a new way in
 * (a passkey, a Telegram account), or a protection switched on or off (two-factor authentication). These are the steps
 * an account takeover takes to stay in. A password change or reset has its own notice (passwordChangedEmail).
 */
const NOTICES: Partial<Record<AuditEvent, string>> = {
  'passkey.added': 'A passkey was added to your account: it can sign in without your password.',
  'twofactor.enabled': 'Two-factor authentication was turned on for your account.',
  'twofactor.disabled': 'Two-factor authentication was turned off for your account: your password alone signs in now.',
  'channel.linked': 'A Telegram account was linked to your account: it can use the bot as you.',
};

export interface SecurityNotices {
  /** An audit observer (createAuditLog's `observe`) that emails NOTICES to the user the entry names. */
  observe(entry: AuditEntry): void;
  /** Sends `message`, a notice of `kind` (the audit event it tells of), as every notice is sent: the password's. */
  send(message: EmailMessage, kind: AuditEvent): void;
}

/**
 * Security notices, sent after the request has answered; a failure is logged, never the caller's. Users without an
 * address of their own (the anonymous placeholder) get none. Every notice passes the address's notice limit (`limit`):
 * whoever registers an address, which nothing proves by default, could otherwise have the gateway mail it once per
 * passkey added. A notice over the limit is dropped, and logged: the owner has just had the limit's worth of them.
 */
export function createSecurityNotices(deps: {
  db: Queryable;
  mailer: Mailer;
  appName: string;
  limit: SendLimit;
  log: { info(obj: object, msg: string): void; error(obj: object, msg: string): void };
}): SecurityNotices {
  const { log } = deps;
  const send = (message: EmailMessage, kind: AuditEvent) => {
    setImmediate(() => {
      const address = message.to.trim().toLowerCase();
      deps.limit
        .run(address, () => deps.mailer.send(message))
        .then(
          (sent) => {
            if (!sent) log.info({ kind }, 'security notice not sent: the address had its notices for this interval');
          },
          (err: Error) => log.error({ err: { message: err.message }, kind }, 'sending a security notice failed'),
        );
    });
  };
  const notify = async (userId: string, event: AuditEvent, what: string) => {
    const { rows } = await deps.db.query<{ email: string }>('SELECT email FROM users WHERE id = $1', [userId]);
    const to = rows[0]?.email;
    if (!to || to.endsWith(`@${ANONYMOUS_EMAIL_DOMAIN}`)) return;
    send(securityNoticeEmail({ to, appName: deps.appName, what }), event);
  };
  return {
    observe(entry) {
      const what = NOTICES[entry.event];
      if (!what || !entry.userId) return;
      notify(entry.userId, entry.event, what).catch((err: Error) => {
        log.error({ err: { message: err.message }, event: entry.event }, 'preparing a security notice failed');
      });
    },
    send,
  };
}
