import { readdirSync, readFileSync } from 'node:fs';
import argon2 from 'argon2';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createHashProcess } from '../../src/passwords/hash-process.js';
import { createPasswordHasher } from '../../src/passwords/hasher.js';
import { createTestApp, registerUser, type TestApp } from '../helpers/test-app.js';

const cheap = { memoryCost: 1024, timeCost: 1, parallelism: 1 };
const PASSWORD = 'SecurePassword123!';

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
const killQuietly = (pid: number) => {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {}
};
/** The pids of this process's argon2 children (their parent pid is field 4 of /proc/<pid>/stat). */
const hashChildren = () =>
  readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .filter((pid) => {
      try {
        const ppid = Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ')[1]);
        return ppid === process.pid && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('hash-child.mjs');
      } catch {
        return false; // exited meanwhile
      }
    })
    .map(Number);

// A verify of this hash takes about a second: long enough that it is still in flight when its process is killed.
let slowHash = '';
beforeAll(async () => {
  slowHash = await argon2.hash(PASSWORD, { type: argon2.argon2id, memoryCost: 65536, timeCost: 8, parallelism: 1 });
});

describe('a hashing process that crashes or hangs gives no verdict: SERVER_BUSY, never a wrong password', () => {
  const runners: Array<ReturnType<typeof createHashProcess>> = [];
  /** What each runner reported lost (the operator's log line), by runner. */
  const lostReasons = new Map<ReturnType<typeof createHashProcess>, string[]>();
  const runner = (deadlineMs?: number) => {
    const reasons: string[] = [];
    const r = createHashProcess({ nice: 10, threads: 2, deadlineMs, onLost: (reason) => reasons.push(reason) });
    lostReasons.set(r, reasons);
    runners.push(r);
    return r;
  };
  afterEach(() => {
    for (const r of runners.splice(0)) r.close();
  });

  // Regression: a killed child made the verify in flight `false`, so a right password counted as a wrong one.
  it('a verify and a hash in flight when the child is SIGKILLed reject with SERVER_BUSY; a new child serves the next', async () => {
    const r = runner();
    const hasher = createPasswordHasher(cheap, { maxLength: 128, runner: r });
    const cheapHash = await hasher.hash(PASSWORD);
    const first = r.pid as number;
    const verifying = hasher.verify(slowHash, PASSWORD);
    const hashing = hasher.hash(PASSWORD);
    process.kill(first, 'SIGKILL');
    const busy = { code: 'SERVER_BUSY', status: 503, details: { retryAfter: 1 } };
    await expect(verifying).rejects.toMatchObject(busy);
    await expect(hashing).rejects.toMatchObject(busy);
    expect(await hasher.verify(cheapHash, PASSWORD)).toBe(true);
    expect(await hasher.verify(cheapHash, 'wrong')).toBe(false);
    expect(await hasher.verify('$argon2id$garbage', PASSWORD)).toBe(false); // argon2's own refusal stays `false`
    expect(r.pid).not.toBe(first);
    // Reported once, for the operator; closing the runner ends its child without a report.
    expect(lostReasons.get(r)).toEqual(['exited (SIGKILL)']);
    const second = r.pid as number;
    r.close();
    await expect.poll(() => alive(second)).toBe(false);
    expect(lostReasons.get(r)).toEqual(['exited (SIGKILL)']);
  });

  // Regression (review): the deadline was per call and counted time queued in the child's pool, so a healthy child
  // answering steadily under a login flood was killed, and the right passwords it held answered 503.
  it('a child that answers steadily is never killed, however long its queue takes in all', async () => {
    const deadlineMs = 1000;
    const r = runner(deadlineMs);
    const params = { memoryCost: 19456, timeCost: 2, parallelism: 1 };
    const hash = await argon2.hash(PASSWORD, { type: argon2.argon2id, ...params });
    const hasher = createPasswordHasher(params, { maxLength: 128, concurrency: 200, runner: r });
    await hasher.verify(hash, PASSWORD); // the child is up
    const child = r.pid;
    const started = performance.now();
    const results = await Promise.all(Array.from({ length: 150 }, () => hasher.verify(hash, PASSWORD)));
    // Only meaningful when the queue outlasted the deadline (150 hashes on a few threads do, by far).
    expect(performance.now() - started).toBeGreaterThan(deadlineMs);
    expect(results.every((ok) => ok === true)).toBe(true);
    expect(r.pid).toBe(child);
    expect(lostReasons.get(r)).toEqual([]);
  });

  // Regression: a stopped (or thrashing) child held every call, and the hasher's slots, forever.
  it('a call the child does not answer within the deadline is SERVER_BUSY, the child is killed, the next call gets a new one', async () => {
    // The deadline runs on fake time, so the child's start (slow on a loaded machine) never counts against it.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const r = runner(1000);
    const hasher = createPasswordHasher(cheap, { maxLength: 128, concurrency: 1, runner: r });
    const hash = await hasher.hash(PASSWORD);
    const stuck = r.pid as number;
    try {
      // An answered call leaves no deadline behind that would later kill a healthy child.
      vi.advanceTimersByTime(1000);
      expect(r.pid).toBe(stuck);
      process.kill(stuck, 'SIGSTOP');
      const verifying = hasher.verify(hash, PASSWORD);
      vi.advanceTimersByTime(999);
      expect(r.pid).toBe(stuck);
      vi.advanceTimersByTime(1);
      await expect(verifying).rejects.toMatchObject({ code: 'SERVER_BUSY', details: { retryAfter: 1 } });
      await expect.poll(() => alive(stuck)).toBe(false);
      // The one hash slot was given back, and a new child answers.
      expect(await hasher.verify(hash, PASSWORD)).toBe(true);
      expect(r.pid).not.toBe(stuck);
    } finally {
      vi.useRealTimers();
      killQuietly(stuck);
    }
  });
});

describe.runIf(process.platform === 'linux')('sign-ins in flight when the hashing process dies', () => {
  let t: TestApp;
  beforeAll(async () => {
    // The shipped config hashes in a child process (auth.argon2.nice 10), as the gateway does.
    t = await createTestApp({ config: { lockout: { max_failures: 2 } } });
  });
  afterAll(() => t?.close());

  // Regression: every sign-in being verified when the child died got 401 and a lockout count, so a few crashes
  // locked the account for its right password.
  it('answer 503 SERVER_BUSY on both routes, not 401, and do not count toward the lockout', async () => {
    const before = hashChildren();
    const user = await registerUser(t.app, { password: PASSWORD });
    const [child] = hashChildren().filter((pid) => !before.includes(pid));
    expect(child).toBeGreaterThan(0);
    await t.db.query(`UPDATE user_credentials SET password_hash = $1 WHERE user_id = $2`, [slowHash, user.userId]);

    // Both verifications have been handed to the child before it is killed.
    const { hasher } = t.app;
    const verify = hasher.verify.bind(hasher);
    let verifying = 0;
    hasher.verify = (hash, password) => {
      const verdict = verify(hash, password);
      verifying++;
      return verdict;
    };
    const body = { email: user.email, password: PASSWORD };
    const inFlight = Promise.all([
      t.app.inject({ method: 'POST', url: '/auth/login', payload: body }),
      t.app.inject({
        method: 'POST',
        url: '/api/auth/sign-in/email',
        headers: { origin: 'http://localhost:3000', 'content-type': 'application/json' },
        payload: JSON.stringify(body),
      }),
    ]);
    try {
      await expect.poll(() => verifying).toBe(2);
      process.kill(child as number, 'SIGKILL');
      for (const res of await inFlight) {
        expect(res.statusCode).toBe(503);
        expect(res.json().error.code).toBe('SERVER_BUSY');
        expect(res.headers['retry-after']).toBe('1');
      }
    } finally {
      hasher.verify = verify;
      killQuietly(child as number);
    }

    // max_failures is 2: had they counted as wrong passwords, the account would be locked now (429).
    const again = await t.app.inject({ method: 'POST', url: '/auth/login', payload: body });
    expect(again.statusCode).toBe(200);
    expect(hashChildren()).not.toContain(child);
    const { rows } = await t.db.query<{ reason: string }>(
      `SELECT details->>'reason' AS reason FROM auth_audit_log WHERE event = 'login.failure'`,
    );
    expect(rows.map((row) => row.reason)).not.toContain('INVALID_CREDENTIALS');
  });
});
