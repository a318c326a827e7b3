import type { AuditEntry, AuditEvent } from '../audit/index.js';
import { ANONYMOUS_EMAIL_DOMAIN } from '../auth/index.js';
import type { Queryable } from '../db/index.js';
import { type Mailer, securityNoticeEmail } from '../email/index.js';
import { sendDeferred } from './deferred.js';

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

/**
 * An audit observer (createAuditLog's `observe`) that emails those notices. It runs as the event is recorded and sends
 * after the request has answered (sendDeferred); a failure is logged, never the caller's. Users without an address of
 * their own (the anonymous placeholder) get none.
 */
export function createSecurityNotices(deps: {
  db: Queryable;
  mailer: Mailer;
  appName: string;
  log: { error(obj: object, msg: string): void };
}): (entry: AuditEntry) => void {
  const send = async (userId: string, what: string) => {
    const { rows } = await deps.db.query<{ email: string }>('SELECT email FROM users WHERE id = $1', [userId]);
    const to = rows[0]?.email;
    if (!to || to.endsWith(`@${ANONYMOUS_EMAIL_DOMAIN}`)) return;
    sendDeferred(deps.mailer, securityNoticeEmail({ to, appName: deps.appName, what }), deps.log);
  };
  return (entry) => {
    const what = NOTICES[entry.event];
    if (!what || !entry.userId) return;
    send(entry.userId, what).catch((err: Error) => {
      deps.log.error({ err: { message: err.message }, event: entry.event }, 'preparing a security notice failed');
    });
  };
}
