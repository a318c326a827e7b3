import { describe, expect, it } from 'vitest';
import { gatewayLink, passwordChangedEmail, passwordResetEmail, verificationEmail } from '../../src/email/index.js';
import { describeDuration, escapeHtml, signUpAttemptEmail } from '../../src/email/templates.js';

describe('account email templates', () => {
  const input = {
    to: 'user@example.com',
    name: '<script>alert(1)</script>',
    link: 'https://auth.example.com/auth/email/verify?token=abc_DEF-123&x="y"',
    ttlSeconds: 86400,
    appName: 'Acme',
  };

  it('verification: plain text and HTML carry the same absolute link, escaped in HTML', () => {
    const mail = verificationEmail(input);
    expect(mail.to).toBe('user@example.com');
    expect(mail.subject).toBe('Verify your email address for Acme');
    expect(mail.text).toContain(input.link);
    expect(mail.text).toContain('expires in 1 day');
    expect(mail.html).toContain(
      'href="https://auth.example.com/auth/email/verify?token=abc_DEF-123&amp;x=&quot;y&quot;"',
    );
    expect(mail.html).not.toContain('script');
  });

  it('password reset and change notice', () => {
    const reset = passwordResetEmail({ ...input, ttlSeconds: 3600 });
    expect(reset.subject).toBe('Reset your Acme password');
    expect(reset.text.startsWith('Hello,')).toBe(true);
    expect(reset.text).toContain('expires in 1 hour');
    const notice = passwordChangedEmail({ to: input.to, appName: 'Acme' });
    expect(notice.subject).toBe('Your Acme password was changed');
    expect(notice.html).toContain('<p>Hello,</p>');
  });

  it('sign-up attempt notice: no link', () => {
    const notice = signUpAttemptEmail({ to: input.to, appName: 'Acme' });
    expect(notice.subject).toBe('You already have an account with Acme');
    expect(notice.text).toContain('tried to create a new Acme account with user@example.com');
    expect(`${notice.text}${notice.html}`).not.toMatch(/https?:\/\//);
  });

  it('gatewayLink: the route under base_url, with or without a trailing slash, keeping a path prefix', () => {
    expect(gatewayLink('http://localhost:3000', '/auth/email/verify', 'a_b-1')).toBe(
      'http://localhost:3000/auth/email/verify?token=a_b-1',
    );
    expect(gatewayLink('http://localhost:3000/', '/auth/magic-link/verify', 't')).toBe(
      'http://localhost:3000/auth/magic-link/verify?token=t',
    );
    expect(gatewayLink('https://example.com/gateway/', '/auth/magic-link/verify', 't')).toBe(
      'https://example.com/gateway/auth/magic-link/verify?token=t',
    );
  });

  it('durations and escaping', () => {
    expect(describeDuration(600)).toBe('10 minutes');
    expect(describeDuration(7200)).toBe('2 hours');
    expect(describeDuration(30)).toBe('30 seconds');
    expect(escapeHtml(`&<>"'`)).toBe('&amp;&lt;&gt;&quot;&#39;');
  });
});
