import argon2 from 'argon2';

/**
 * The machine's own argon2id capacity, as its own process: `concurrency` verifications kept in flight for `seconds`
 * (verifies per second), then `single` sequential verifications (latency of one verify on an idle machine), then
 * `paired` more with two in flight (latency of one verify while another runs, as at two connections).
 */
const {
  memoryCost,
  timeCost,
  parallelism,
  concurrency,
  seconds,
  single,
  paired = 0,
} = JSON.parse(process.argv[2] ?? '{}') as {
  memoryCost: number;
  timeCost: number;
  parallelism: number;
  concurrency: number;
  seconds: number;
  single: number;
  paired?: number;
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

/** `count` verifications, `lanes` at a time: each one's latency, sorted. */
async function timed(count: number, lanes: number): Promise<number[]> {
  const latencies: number[] = [];
  let started = 0;
  await Promise.all(
    Array.from({ length: lanes }, async () => {
      while (started++ < count) {
        const t = performance.now();
        await argon2.verify(hash, password);
        latencies.push(performance.now() - t);
      }
    }),
  );
  return latencies.sort((a, b) => a - b);
}
const at = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0;

const one = await timed(single, 1);
const two = paired > 0 ? await timed(paired, 2) : [];
process.stdout.write(
  `${JSON.stringify({ perSecond, p50: at(one, 50), p99: at(one, 99), pairedP50: two.length ? at(two, 50) : null, verifies: done })}\n`,
);
