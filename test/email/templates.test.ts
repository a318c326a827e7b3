import { describe, expect, it } from 'vitest';
import { passwordChangedEmail, passwordResetEmail, verificationEmail } from '../../src/email/index.js';
import { describeDuration, escapeHtml, signUpAttemptEmail } from '../../src/email/templates.js';

describe('account email templates', () => {
  const input = {
    to: 'user@example.com',
    name: '<script>alert(1)</script>',
    link: 'https://auth.example.com/auth/email/verify?token=abc_DEF-123&x="y"',
    ttlSeconds: 86400,
    appName: 'Acme',
  };

  it('verification: plain text and HTML carry the same absolute link; the name is escaped in HTML', () => {
    const mail = verificationEmail(input);
    expect(mail.to).toBe('user@example.com');
    expect(mail.subject).toBe('Verify your email address for Acme');
    expect(mail.text).toContain(input.link);
    expect(mail.text).toContain('expires in 1 day');
    expect(mail.html).toContain(
      'href="https://auth.example.com/auth/email/verify?token=abc_DEF-123&amp;x=&quot;y&quot;"',
    );
    expect(mail.html).not.toContain('<script>');
    expect(mail.html).toContain('&lt;script&gt;');
  });

  it('password reset and change notice', () => {
    const reset = passwordResetEmail({ ...input, name: '', ttlSeconds: 3600 });
    expect(reset.subject).toBe('Reset your Acme password');
    expect(reset.text.startsWith('Hello,')).toBe(true);
    expect(reset.text).toContain('expires in 1 hour');
    const notice = passwordChangedEmail({ to: input.to, name: 'Ann', appName: 'Acme' });
    expect(notice.text).toContain('Hello Ann,');
    expect(notice.html).toContain('<p>Hello Ann,</p>');
  });

  it('sign-up attempt notice: no link, the name escaped in HTML', () => {
    const notice = signUpAttemptEmail({ to: input.to, name: input.name, appName: 'Acme' });
    expect(notice.subject).toBe('You already have an account with Acme');
    expect(notice.text).toContain('tried to create a new Acme account with user@example.com');
    expect(`${notice.text}${notice.html}`).not.toMatch(/https?:\/\//);
    expect(notice.html).not.toContain('<script>');
    expect(notice.html).toContain('&lt;script&gt;');
  });

  it('durations and escaping', () => {
    expect(describeDuration(600)).toBe('10 minutes');
    expect(describeDuration(7200)).toBe('2 hours');
    expect(describeDuration(30)).toBe('30 seconds');
    expect(escapeHtml(`&<>"'`)).toBe('&amp;&lt;&gt;&quot;&#39;');
  });
});
