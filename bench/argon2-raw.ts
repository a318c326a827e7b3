import argon2 from 'argon2';

/**
 * The machine's own argon2id capacity, as its own process: `concurrency` verifications kept in flight for `seconds`
 * (verifies per second), then `single` sequential verifications (latency of one verify on an idle machine).
 */
const { memoryCost, timeCost, parallelism, concurrency, seconds, single } = JSON.parse(process.argv[2] ?? '{}') as {
  memoryCost: number;
  timeCost: number;
  parallelism: number;
  concurrency: number;
  seconds: number;
  single: number;
};

const password = 'SecurePassword123!';
const hash = await argon2.hash(password, { type: argon2.argon2id, memoryCost, timeCost, parallelism });

let done = 0;
const until = performance.now() + seconds * 1000;
const started = performance.now();
await Promise.all(
  Array.from({ length: concurrency }, async () => {
    while (performance.now() < until) {
      if (!(await argon2.verify(hash, password))) throw new Error('verify failed');
      done++;
    }
  }),
);
const perSecond = done / ((performance.now() - started) / 1000);

const latencies: number[] = [];
for (let i = 0; i < single; i++) {
  const t = performance.now();
  await argon2.verify(hash, password);
  latencies.push(performance.now() - t);
}
latencies.sort((a, b) => a - b);
const at = (p: number) => latencies[Math.min(latencies.length - 1, Math.ceil((p / 100) * latencies.length) - 1)] ?? 0;
process.stdout.write(`${JSON.stringify({ perSecond, p50: at(50), p99: at(99), verifies: done })}\n`);
