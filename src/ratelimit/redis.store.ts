import { Redis } from 'ioredis';
import { type CounterStore, keys, type LockoutPolicy, type Reservation } from './store.js';

// Each script is one atomic step: no other client's command runs between its reads and writes.
const HIT = `
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('PTTL', KEYS[1])}`;

const RESERVE = `
local t = redis.call('PTTL', KEYS[1])
if t > 0 then return {0, t} end
local n = tonumber(redis.call('GET', KEYS[2]) or '0')
if n >= tonumber(ARGV[1]) then return {0, tonumber(ARGV[3])} end
n = redis.call('INCR', KEYS[2])
if n == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
return {1, n}`;

const FAIL = `
if tonumber(ARGV[1]) ~= tonumber(ARGV[2]) then return -1 end
local level = tonumber(redis.call('GET', KEYS[3]) or '0')
local ms = math.floor(math.min(tonumber(ARGV[5]), tonumber(ARGV[3]) * tonumber(ARGV[4]) ^ level) + 0.5)
redis.call('SET', KEYS[1], '1', 'PX', ms)
redis.call('SET', KEYS[3], tostring(level + 1), 'PX', ARGV[6])
redis.call('DEL', KEYS[2])
return ms`;

const RELEASE = `
local v = tonumber(redis.call('GET', KEYS[1]) or '0')
if v > 0 then redis.call('DECR', KEYS[1]) end
return 0`;

export interface RedisStoreOptions {
  url: string;
  /** Milliseconds a command may take before it counts as failed (the caller then falls back). */
  commandTimeoutMs?: number;
  onError?(err: Error): void;
}

/**
 * Counters in Redis, shared by every gateway process using the same Redis. Commands are never queued while Redis is
 * unreachable (enableOfflineQueue: false): they fail at once, and the caller decides what that means.
 */
export function createRedisStore(
  options: RedisStoreOptions,
): CounterStore & { readonly client: Redis; ready(timeoutMs: number): Promise<boolean> } {
  const client = new Redis(options.url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: options.commandTimeoutMs ?? 500,
    // Reconnect forever, at most every 2 s: Redis coming back must heal the shared counters without a restart.
    retryStrategy: (times) => Math.min(times * 200, 2000),
  });
  client.on('error', (err: Error) => options.onError?.(err));
  const connected = client.connect().then(
    () => true,
    () => false, // the 'error' listener has it; retryStrategy keeps trying
  );

  const run = (script: string, keyList: string[], args: Array<string | number>) =>
    client.eval(script, keyList.length, ...keyList, ...args) as Promise<unknown>;

  return {
    kind: 'redis',
    client,
    /** Waits for the first connection, at most `timeoutMs`: whether Redis is up. Commands before that fail fast. */
    ready(timeoutMs) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), timeoutMs);
      });
      return Promise.race([connected, timeout]).finally(() => clearTimeout(timer));
    },
    async hit(key, windowMs) {
      const [count, ttl] = (await run(HIT, [keys.window(key)], [windowMs])) as [number, number];
      return { count, resetMs: ttl > 0 ? ttl : windowMs };
    },
    async reserve(account, policy: LockoutPolicy): Promise<Reservation> {
      const [ok, value] = (await run(
        RESERVE,
        [keys.lock(account), keys.attempts(account)],
        [policy.maxFailures, policy.failureWindowMs, policy.baseMs],
      )) as [number, number];
      return ok === 1 ? { kind: 'slot', n: value } : { kind: 'locked', retryMs: value };
    },
    async fail(account, n, policy) {
      const ms = (await run(
        FAIL,
        [keys.lock(account), keys.attempts(account), keys.level(account)],
        [n, policy.maxFailures, policy.baseMs, policy.factor, policy.maxMs, policy.forgetAfterMs],
      )) as number;
      return ms < 0 ? null : ms;
    },
    async succeed(account) {
      await client.del(keys.attempts(account), keys.level(account));
    },
    async release(account) {
      await run(RELEASE, [keys.attempts(account)], []);
    },
    async close() {
      client.disconnect();
    },
  };
}
