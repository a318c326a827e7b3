import type { AddressInfo } from 'node:net';
import type { LightMyRequestResponse } from 'fastify';
import { type ParsedMail, simpleParser } from 'mailparser';
import { SMTPServer } from 'smtp-server';

export interface ReceivedMail extends ParsedMail {
  /** Envelope recipients. */
  rcpt: string[];
}

/** A real SMTP server on 127.0.0.1 (the `smtp-server` package) that parses every message it receives. */
export interface SmtpSink {
  url: string;
  messages: ReceivedMail[];
  /** Resolves with the first message (received or future) that matches; rejects after `timeoutMs`. */
  waitFor(match: (mail: ReceivedMail) => boolean, timeoutMs?: number): Promise<ReceivedMail>;
  close(): Promise<void>;
}

export async function startSmtpSink(): Promise<SmtpSink> {
  const messages: ReceivedMail[] = [];
  const waiters = new Set<{ match: (m: ReceivedMail) => boolean; resolve: (m: ReceivedMail) => void }>();
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onData(stream, session, callback) {
      simpleParser(stream)
        .then((parsed) => {
          const mail: ReceivedMail = { ...parsed, rcpt: session.envelope.rcptTo.map((r) => r.address) };
          messages.push(mail);
          for (const w of waiters) {
            if (w.match(mail)) {
              waiters.delete(w);
              w.resolve(mail);
            }
          }
          callback();
        })
        .catch(callback);
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.server.address() as AddressInfo;
  return {
    url: `smtp://127.0.0.1:${port}`,
    messages,
    waitFor(match, timeoutMs = 5000) {
      const found = messages.find(match);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const waiter = { match, resolve };
        waiters.add(waiter);
        setTimeout(() => {
          if (waiters.delete(waiter)) reject(new Error('no matching email arrived'));
        }, timeoutMs).unref();
      });
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

export const addressOf = (mail: ParsedMail): string => {
  const to = Array.isArray(mail.to) ? mail.to[0] : mail.to;
  return to?.value[0]?.address ?? '';
};

/** The first link in a message's plain-text body that contains `path`. */
export function linkIn(mail: ParsedMail, path: string): URL {
  const found = (mail.text ?? '').match(/https?:\/\/\S+/g)?.find((u) => u.includes(path));
  if (!found) throw new Error(`no ${path} link in the email`);
  return new URL(found);
}

/**
 * Follows an emailed link (verification or sign-in) as its owner does: opens the page (a GET, which spends nothing),
 * then presses its button, which posts the page's form. Returns the form's answer: for a verification link an HTML page
 * (200 when verified); for a sign-in link the redirect with a code, or the JSON answer. `headers` go with both requests
 * (a browser's user agent, say). A GET that is not the page (a 400 for a malformed link) is returned as it is.
 */
export async function openEmailedLink(
  app: { inject(options: object): Promise<LightMyRequestResponse> },
  link: URL | string,
  headers: Record<string, string> = {},
): Promise<LightMyRequestResponse> {
  const url = typeof link === 'string' ? new URL(link, 'http://localhost') : link;
  const page = await app.inject({ url: `${url.pathname}${url.search}`, headers });
  const token = /name="token" value="([^"]*)"/.exec(page.body)?.[1];
  const action = /<form method="post" action="([^"]+)"/.exec(page.body)?.[1];
  if (page.statusCode !== 200 || token === undefined || !action) return page;
  return app.inject({
    method: 'POST',
    url: new URL(action, url).pathname,
    headers: { ...headers, 'content-type': 'application/x-www-form-urlencoded' },
    payload: new URLSearchParams({ token: decodeHtml(token) }).toString(),
  });
}

const decodeHtml = (value: string) =>
  value.replace(
    /&(amp|lt|gt|quot|#39);/g,
    (_, e: string) => ({ amp: '&', lt: '<', gt: '>', quot: '"', '#39': "'" })[e] ?? _,
  );

/**
 * A real SMTP server recording the recipients of what it accepted, in a mood the test sets at any time: `refuse`
 * (421 at connection: the mail server is down) or `greetAfterMs` (a slow relay). `connections` counts attempts.
 */
export async function startMoodySmtp(mood: { refuse?: boolean; greetAfterMs?: number }) {
  const received: string[] = [];
  const state = { connections: 0 };
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onConnect(_session, callback) {
      state.connections++;
      if (mood.refuse) return callback(Object.assign(new Error('service not available'), { responseCode: 421 }));
      setTimeout(() => callback(), mood.greetAfterMs ?? 0);
    },
    onData(stream, session, callback) {
      stream.on('data', () => {});
      stream.on('end', () => {
        received.push(session.envelope.rcptTo.map((r) => r.address).join(','));
        callback();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.server.address() as AddressInfo;
  return {
    url: `smtp://127.0.0.1:${port}`,
    received,
    get connections() {
      return state.connections;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
