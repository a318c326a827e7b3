import { readdirSync, readFileSync } from 'node:fs';
import argon2 from 'argon2';
import { afterEach, describe, expect, it } from 'vitest';
import { createHashProcess } from '../../src/passwords/hash-process.js';
import { createPasswordHasher } from '../../src/passwords/hasher.js';

const cheap = { memoryCost: 1024, timeCost: 1, parallelism: 1 };
/** The nice value of every thread of a process (field 19 of /proc/<pid>/task/<tid>/stat). */
const threadNice = (pid: number) =>
  readdirSync(`/proc/${pid}/task`).map((tid) =>
    Number(readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8').split(') ')[1]?.split(' ')[16]),
  );

describe('argon2 in a low-priority child process', () => {
  const runners: Array<ReturnType<typeof createHashProcess>> = [];
  const runner = (nice = 10) => {
    const r = createHashProcess({ nice, threads: 4 });
    runners.push(r);
    return r;
  };
  afterEach(() => {
    for (const r of runners.splice(0)) r.close();
  });

  it('hashes argon2id that argon2 verifies, and verifies right and wrong passwords', async () => {
    const hasher = createPasswordHasher(cheap, { maxLength: 128, runner: runner() });
    const hash = await hasher.hash('correct horse battery staple');
    expect(hash).toMatch(/^\$argon2id\$v=19\$m=1024,p=1,t=1\$/);
    expect(await argon2.verify(hash, 'correct horse battery staple')).toBe(true);
    expect(await hasher.verify(hash, 'correct horse battery staple')).toBe(true);
    expect(await hasher.verify(hash, 'wrong horse')).toBe(false);
    expect(await hasher.verify('$argon2id$garbage', 'x')).toBe(false); // unreadable hash: false, no throw
  });

  it.runIf(process.platform === 'linux')('every thread of the child runs at the configured priority', async () => {
    const r = runner(12);
    await Promise.all(Array.from({ length: 4 }, () => r.hash('pw', cheap))); // the child's thread pool exists now
    const pid = r.pid as number;
    expect(pid).toBeGreaterThan(0);
    const nices = threadNice(pid);
    expect(nices.length).toBeGreaterThan(4);
    expect(new Set(nices)).toEqual(new Set([12]));
  });

  it.runIf(process.platform === 'linux')(
    'the child pool has the asked number of threads, and none of the gateway environment',
    async () => {
      process.env.HASH_TEST_SECRET = 'must-not-leak';
      try {
        const threadsOf = async (threads: number) => {
          const r = createHashProcess({ nice: 10, threads });
          runners.push(r);
          await Promise.all(Array.from({ length: 6 }, () => r.hash('pw', cheap))); // the pool has started
          const pid = r.pid as number;
          const environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean);
          return { count: readdirSync(`/proc/${pid}/task`).length, environ };
        };
        const one = await threadsOf(1);
        const three = await threadsOf(3);
        // Everything else in the process (main thread, V8's platform threads) is the same in both.
        expect(three.count - one.count).toBe(2);
        expect(three.environ).toContain('UV_THREADPOOL_SIZE=3');
        expect(three.environ.filter((v) => !v.startsWith('NODE_CHANNEL_'))).toEqual(['UV_THREADPOOL_SIZE=3']);
      } finally {
        delete process.env.HASH_TEST_SECRET;
      }
    },
  );

  it('a crashed child fails what was in flight, and the next call is served by a new one', async () => {
    const r = runner();
    await r.hash('pw', cheap);
    const first = r.pid as number;
    const inFlight = r.hash('pw', { memoryCost: 65536, timeCost: 20, parallelism: 1 });
    process.kill(first, 'SIGKILL');
    await expect(inFlight).rejects.toThrow(/hash process/);
    expect(await r.verify(await r.hash('again', cheap), 'again')).toBe(true);
    expect(r.pid).not.toBe(first);
  });

  it('a stop signal to the process group leaves the child to the gateway (in-flight sign-ins still finish)', async () => {
    const r = runner();
    await r.hash('pw', cheap);
    const pid = r.pid as number;
    const inFlight = r.hash('pw', { memoryCost: 8192, timeCost: 3, parallelism: 1 });
    process.kill(pid, 'SIGTERM');
    expect(await inFlight).toMatch(/^\$argon2id\$/);
    expect(r.pid).toBe(pid);
  });

  it('close() ends the child', async () => {
    const r = runner();
    await r.hash('pw', cheap);
    const pid = r.pid as number;
    r.close();
    await expect
      .poll(() => {
        try {
          process.kill(pid, 0);
          return 'alive';
        } catch {
          return 'gone';
        }
      })
      .toBe('gone');
  });
});
