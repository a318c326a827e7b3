import type { EmailMessage } from './mailer.js';

/**
 * The account emails: plain text and HTML from one set of strings. Links are absolute (built by the caller from
 * server.base_url); every interpolated value is HTML-escaped.
 *
 * No email carries text a user chose, such as the account's name: whoever registers an address first names the
 * account, and its emails go to the address's owner, who may be someone else. A name like "Alice,\n\nSECURITY ALERT:
 * confirm your identity at https://evil.example/reset" would write the opening lines of a genuine email from us.
 */

const greeting = 'Hello,';

export interface LinkEmailInput {
  to: string;
  /** Absolute URL carrying the single-use token. */
  link: string;
  /** Seconds the link stays valid, stated in the message. */
  ttlSeconds: number;
  appName: string;
}

export function verificationEmail(input: LinkEmailInput): EmailMessage {
  return linkEmail(input, {
    subject: `Verify your email address for ${input.appName}`,
    lead: `Confirm that ${input.to} is your email address by opening this link:`,
    action: 'Verify email address',
    ignore: 'If you did not create an account, ignore this email.',
  });
}

export function passwordResetEmail(input: LinkEmailInput): EmailMessage {
  return linkEmail(input, {
    subject: `Reset your ${input.appName} password`,
    lead: 'Someone (hopefully you) asked to reset the password of your account. Choose a new password here:',
    action: 'Choose a new password',
    ignore: 'If you did not ask for this, ignore this email: your password stays as it is.',
  });
}

/**
 * A reset link for an account whose address is not verified yet (a password reset, or the verification resend's
 * answer to anyone not signed in to that account): following it proves the address, and the password chosen there
 * replaces whatever the registrant set, so a link the address's owner asked for never confirms someone else's account
 * and password for them.
 */
export function confirmAddressEmail(input: LinkEmailInput): EmailMessage {
  return linkEmail(input, {
    subject: `Choose your ${input.appName} password`,
    lead: 'Someone (hopefully you) asked for a link to choose the password of your account. Choosing it also confirms this email address:',
    action: 'Choose a password',
    ignore: 'If you did not ask for this, ignore this email: nothing changes.',
  });
}

/** Sent after a password change or reset: the owner learns of it even if someone else did it. */
export function passwordChangedEmail(input: { to: string; appName: string }): EmailMessage {
  const body = `The password of your ${input.appName} account was just changed and your other sessions were signed out.`;
  const warn = 'If this was not you, reset your password at once and review your account.';
  return {
    to: input.to,
    subject: `Your ${input.appName} password was changed`,
    text: `${greeting}\n\n${body}\n\n${warn}\n`,
    html: page(`<p>${escapeHtml(greeting)}</p><p>${escapeHtml(body)}</p><p>${escapeHtml(warn)}</p>`),
  };
}

/**
 * Sent when a way into the account was added or a protection changed (src/account/security-notices.ts): `what` is one
 * of the gateway's fixed sentences, never text a user chose.
 */
export function securityNoticeEmail(input: { to: string; appName: string; what: string }): EmailMessage {
  const warn = 'If this was not you, sign in, reset your password, and review your passkeys and linked accounts.';
  return {
    to: input.to,
    subject: `Security notice for your ${input.appName} account`,
    text: `${greeting}\n\n${input.what}\n\n${warn}\n`,
    html: page(`<p>${escapeHtml(greeting)}</p><p>${escapeHtml(input.what)}</p><p>${escapeHtml(warn)}</p>`),
  };
}

/**
 * Sent to the owner of an address instead of a verification link when someone signs up with it (or upgrades an
 * anonymous user to it) while it already has an account: the sign-up answered as for a new address, so the person who
 * tried learns nothing, and the owner learns of the attempt. No link: the account needs nothing from them.
 */
export function signUpAttemptEmail(input: { to: string; appName: string }): EmailMessage {
  const body = `Someone (hopefully you) tried to create a new ${input.appName} account with ${input.to}. This address already has an account, so nothing was created and nothing in your account changed.`;
  const hint = 'If it was you, sign in with your account instead; if you forgot its password, reset it.';
  const ignore = 'If it was not you, you can ignore this email.';
  return {
    to: input.to,
    subject: `You already have an account with ${input.appName}`,
    text: `${greeting}\n\n${body}\n\n${hint}\n${ignore}\n`,
    html: page(
      `<p>${escapeHtml(greeting)}</p><p>${escapeHtml(body)}</p><p>${escapeHtml(hint)}</p><p>${escapeHtml(ignore)}</p>`,
    ),
  };
}

function linkEmail(
  input: LinkEmailInput,
  copy: { subject: string; lead: string; action: string; ignore: string },
): EmailMessage {
  const expiry = `The link works once and expires in ${describeDuration(input.ttlSeconds)}.`;
  const text = `${greeting}\n\n${copy.lead}\n\n${input.link}\n\n${expiry}\n${copy.ignore}\n`;
  const href = escapeHtml(input.link);
  const html = page(
    `<p>${escapeHtml(greeting)}</p>
<p>${escapeHtml(copy.lead)}</p>
<p><a href="${href}" style="display:inline-block;padding:10px 16px;background:#1a56db;color:#fff;text-decoration:none;border-radius:4px">${escapeHtml(copy.action)}</a></p>
<p style="font-size:13px;color:#555">Or paste this address into your browser:<br><a href="${href}">${href}</a></p>
<p style="font-size:13px;color:#555">${escapeHtml(expiry)} ${escapeHtml(copy.ignore)}</p>`,
  );
  return { to: input.to, subject: copy.subject, text, html };
}

function page(body: string): string {
  return `<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"></head>
<body style="font-family:system-ui,sans-serif;line-height:1.5;color:#111;max-width:560px">
${body}
</body></html>
`;
}

export function describeDuration(seconds: number): string {
  const plural = (n: number, unit: string) => `${n} ${unit}${n === 1 ? '' : 's'}`;
  if (seconds % 86400 === 0) return plural(seconds / 86400, 'day');
  if (seconds % 3600 === 0) return plural(seconds / 3600, 'hour');
  if (seconds >= 60) return plural(Math.round(seconds / 60), 'minute');
  return plural(seconds, 'second');
}

export function escapeHtml(value: string): string {
  return value.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string,
  );
}
