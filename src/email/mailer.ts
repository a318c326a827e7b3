import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import nodemailer from 'nodemailer';

export interface EmailMessage {
  to: string;
  subject: string;
  text: string;
  html: string;
}

export interface Mailer {
  readonly kind: 'smtp' | 'outbox';
  send(message: EmailMessage): Promise<void>;
  close(): void;
}

export interface MailerOptions {
  from: string;
  /** smtp:// or smtps:// URL; empty: the development file outbox. */
  smtpUrl: string;
  outboxDir: string;
  log: { info(obj: object, msg: string): void };
}

/**
 * Sends email through SMTP (nodemailer) or, in development, writes each message as an .eml file into the outbox
 * directory and logs the file name (never the body: it carries links with tokens).
 */
export function createMailer(options: MailerOptions): Mailer {
  if (options.smtpUrl) {
    const transport = nodemailer.createTransport({
      url: options.smtpUrl,
      // A server that accepts connections and then stalls must not hold a socket per mail for nodemailer's defaults
      // (2 minutes to connect, 30 s for the greeting, 10 minutes idle): sends are deferred, so a stall piles up
      // sockets, not waiting requests. Parameters in the URL win.
      connectionTimeout: 10_000,
      greetingTimeout: 10_000,
      socketTimeout: 30_000,
    });
    return {
      kind: 'smtp',
      async send(message) {
        await transport.sendMail({ from: options.from, ...message });
      },
      close: () => transport.close(),
    };
  }
  const transport = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: 'unix' });
  return {
    kind: 'outbox',
    async send(message) {
      const info = await transport.sendMail({ from: options.from, ...message });
      mkdirSync(options.outboxDir, { recursive: true });
      const file = join(options.outboxDir, `${Date.now()}-${randomBytes(4).toString('hex')}.eml`);
      writeFileSync(file, info.message as Buffer, { mode: 0o600 });
      options.log.info({ file, subject: message.subject }, 'email written to the development outbox');
    },
    close: () => transport.close(),
  };
}
