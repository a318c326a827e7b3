import type { AddressInfo } from 'node:net';
import WebSocket from 'ws';
import type { TestApp } from './test-app.js';

export type Frame = { type: string; [k: string]: unknown };

/** A real `ws` client with a queue of received JSON frames and the close it got. */
export interface WsClient {
  ws: WebSocket;
  /** The next frame (already received or arriving later); rejects after timeoutMs. */
  next(timeoutMs?: number): Promise<Frame>;
  send(frame: unknown): void;
  /** Resolves with the close code and reason once the socket is closed. */
  closed: Promise<{ code: number; reason: string }>;
}

/** Starts listening on 127.0.0.1 (once) and returns the ws:// base URL. */
export async function listen(app: TestApp['app']): Promise<string> {
  if (!app.server.listening) await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as AddressInfo;
  return `ws://127.0.0.1:${port}`;
}

/** Opens a socket; resolves once open. Rejects with the HTTP status when the upgrade is refused. */
export function connect(url: string, headers: Record<string, string> = {}): Promise<WsClient> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers, perMessageDeflate: false });
    const frames: Frame[] = [];
    const waiters: Array<(f: Frame) => void> = [];
    ws.on('message', (data) => {
      const frame = JSON.parse(data.toString()) as Frame;
      const waiter = waiters.shift();
      if (waiter) waiter(frame);
      else frames.push(frame);
    });
    const closed = new Promise<{ code: number; reason: string }>((res) =>
      ws.on('close', (code, reason) => res({ code, reason: reason.toString() })),
    );
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => {
        body += c.toString();
      });
      res.on('end', () => reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode, body })));
    });
    ws.on('error', (err) => reject(err));
    ws.on('open', () =>
      resolve({
        ws,
        closed,
        send: (frame) => ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame)),
        next(timeoutMs = 3000) {
          const ready = frames.shift();
          if (ready) return Promise.resolve(ready);
          return new Promise((res, rej) => {
            const timer = setTimeout(() => rej(new Error('no frame in time')), timeoutMs);
            waiters.push((f) => {
              clearTimeout(timer);
              res(f);
            });
          });
        },
      }),
    );
  });
}

/** A socket authenticated by its Authorization header: it has answered `auth_ok`. */
export async function connectSignedIn(url: string, token: string): Promise<WsClient> {
  const c = await connect(url, { authorization: `Bearer ${token}` });
  const first = await c.next();
  if (first.type !== 'auth_ok') throw new Error(`expected auth_ok, got ${JSON.stringify(first)}`);
  return c;
}

/** What `p` resolves with, or 'still open' after `ms` (a socket expected to close, that did not). */
export const within = <T>(p: Promise<T>, ms: number) =>
  Promise.race([p, new Promise<'still open'>((r) => setTimeout(() => r('still open'), ms))]);
