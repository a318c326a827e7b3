import type { AuditLog } from '../audit/index.js';
import type { AccountHooks } from '../auth/index.js';
import { confirmAddressEmail, type Mailer, passwordChangedEmail, passwordResetEmail } from '../email/index.js';
import { afterAnswer, sendDeferred } from './deferred.js';
import type { EmailVerification } from './email-verification.js';
import type { SecurityNotices } from './security-notices.js';

export interface AccountHooksOptions {
  mailer: Mailer;
  audit: AuditLog;
  verification: EmailVerification;
  /** The password-changed notice after a reset goes as every security notice does: within the address's limit. */
  notices: Pick<SecurityNotices, 'send'>;
  log: { error(obj: object, msg: string): void };
  baseUrl: string;
  appName: string;
  /** The web page that reads ?token= and POSTs /auth/password/reset; relative to baseUrl or absolute. */
  resetPage: string;
  resetTtlSeconds: number;
  /**
   * A reset link was followed: the address is proven. An account whose email was not verified is reclaimed for its
   * owner (proveAddress, keeping the password just set): a registrant's passkeys, 2FA, links and providers go.
   */
  addressProven(userId: string): Promise<void>;
}

/** What Better Auth calls when it has decided to send an account email or has reset a password. */
export function createAccountHooks(options: AccountHooksOptions): AccountHooks {
  const { mailer, audit, log } = options;
  return {
    sendVerificationEmail: (user) => options.verification.issueLimited(user),
    existingUserSignUp: (user) => options.verification.issueLimited(user, { existingAccount: true }),

    async sendPasswordReset(user, token) {
      // As a directory (the loaded base_url has no trailing slash): a relative page resolves under its path.
      const link = new URL(options.resetPage, options.baseUrl.replace(/\/*$/, '/'));
      link.searchParams.set('token', token);
      const input = {
        to: user.email,
        link: link.toString(),
        ttlSeconds: options.resetTtlSeconds,
        appName: options.appName,
      };
      // An unverified account's reset proves the address and sets the password its owner will use: said so. Called
      // inside the address's send limit (resetEmails.run), which waits for this send and frees the slot if it fails.
      sendDeferred(mailer, user.emailVerified === false ? confirmAddressEmail(input) : passwordResetEmail(input), log);
      // Not awaited: a known address must cost what an unknown one costs (audit.record never throws). Shutdown waits
      // for it before the pool closes.
      void afterAnswer(audit.record({ event: 'password.reset_requested', userId: user.id, channel: 'rest' }));
    },

    async passwordReset(user) {
      await options.addressProven(user.id);
      await audit.record({ event: 'password.reset_completed', userId: user.id, channel: 'rest' });
      options.notices.send(
        passwordChangedEmail({ to: user.email, appName: options.appName }),
        'password.reset_completed',
      );
    },
  };
}
