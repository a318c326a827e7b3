import { AsyncLocalStorage } from 'node:async_hooks';
import type { EmailMessage, Mailer } from '../email/index.js';

/**
 * Work a request does after it has answered (an account email on its way, the decision whether to send it). Nothing
 * waits for it but shutdown: settleAfterAnswer, before the pool and the mailer close, so that a SIGTERM right after a
 * 202 does not lose the email that answer promised. One registry per process: a process runs one app.
 */
const pending = new Set<Promise<unknown>>();

/** Registers `work` as after-answer work of this process (see settleAfterAnswer); returns it. */
export function afterAnswer<T>(work: Promise<T>): Promise<T> {
  pending.add(work);
  const done = () => pending.delete(work);
  work.then(done, done);
  return work;
}

/**
 * Waits for the after-answer work, including what it starts meanwhile, until `deadline` (epoch ms). Whether all of it
 * ended; its failures are its own to report.
 */
export async function settleAfterAnswer(deadline: number): Promise<boolean> {
  while (pending.size > 0) {
    const left = deadline - Date.now();
    if (left <= 0) return false;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, left);
    });
    await Promise.race([Promise.allSettled([...pending]), late]);
    clearTimeout(timer);
  }
  return true;
}

/** The sends started inside withSends' work (see there). */
const collected = new AsyncLocalStorage<Promise<void>[]>();

/**
 * Sends after the current request has answered. A request for a known address then costs what one for an unknown
 * address costs (no timing oracle from SMTP latency), and a slow or failing mail server never fails the request.
 * A failure is logged; inside withSends, withSends also throws it.
 */
export function sendDeferred(mailer: Mailer, message: EmailMessage, log: { error(obj: object, msg: string): void }) {
  const sent = afterAnswer(new Promise<void>((resolve) => setImmediate(resolve)).then(() => mailer.send(message)));
  collected.getStore()?.push(sent);
  sent.catch((err: Error) => {
    log.error({ err: { message: err.message }, subject: message.subject }, 'sending an account email failed');
  });
}

/**
 * Runs `work`, then waits for the emails it started with sendDeferred (however deep, Better Auth's hooks included):
 * rejects when `work` failed, or else when one of them could not be sent. For what must know whether its email went
 * out (createSendLimit frees the address's slot when it did not); call it after the answer, it takes the SMTP time.
 */
export async function withSends<T>(work: () => Promise<T>): Promise<T> {
  const sends: Promise<void>[] = [];
  const result = await collected.run(sends, work);
  const failed = (await Promise.allSettled(sends)).find((s) => s.status === 'rejected');
  if (failed) throw failed.reason;
  return result;
}
