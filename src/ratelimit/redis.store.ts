import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { type AttemptSlot, type CounterStore, keys, type LockoutPolicy, leaseMs, type Reservation } from './store.js';

// Each script is one atomic step: no other client's command runs between its reads and writes.
const HIT = `
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('PTTL', KEYS[1])}`;

// KEYS: lock, failures, pending. ARGV: maxFailures, leaseMs, baseMs, slot id.
// Leases are scored by Redis's own clock (TIME), the one clock every gateway process shares; Redis 5+ replicates a
// script by its effects, so a write after TIME is allowed. The set's TTL is the newest lease: it never outlives them.
const RESERVE = `
local t = redis.call('PTTL', KEYS[1])
if t > 0 then return {'lock', t} end
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local taken = tonumber(redis.call('GET', KEYS[2]) or '0') + redis.call('ZCARD', KEYS[3])
if taken >= tonumber(ARGV[1]) then return {'full', tonumber(ARGV[3])} end
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), ARGV[4])
redis.call('PEXPIRE', KEYS[3], ARGV[2])
return {'slot', 0}`;

// KEYS: lock, failures, level, pending. ARGV: slot id, maxFailures, baseMs, factor, maxMs, failureWindowMs, forgetAfterMs.
const FAIL = `
redis.call('ZREM', KEYS[4], ARGV[1])
local n = redis.call('INCR', KEYS[2])
if n == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[6]) end
if n < tonumber(ARGV[2]) then return -1 end
local level = tonumber(redis.call('GET', KEYS[3]) or '0')
local ms = math.floor(math.min(tonumber(ARGV[5]), tonumber(ARGV[3]) * tonumber(ARGV[4]) ^ level) + 0.5)
redis.call('SET', KEYS[1], '1', 'PX', ms)
redis.call('SET', KEYS[3], tostring(level + 1), 'PX', ARGV[7])
redis.call('DEL', KEYS[2])
return ms`;

// KEYS: failures, level, pending. ARGV: slot id.
const SUCCEED = `
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[1], KEYS[2])
return 0`;

export interface RedisStoreOptions {
  url: string;
  /** Milliseconds a command may take before it counts as failed (the caller then falls back). */
  commandTimeoutMs?: number;
  /** Milliseconds between PINGs that check the connection still answers while no request uses it. */
  pingIntervalMs?: number;
  onError?(err: Error): void;
}

/**
 * Counters in Redis, shared by every gateway process using the same Redis. Commands are never queued while Redis is
 * unreachable (enableOfflineQueue: false): they fail at once, and the caller decides what that means.
 *
 * A connection that goes silent (Redis failed over behind the same address, a NAT entry dropped: no FIN, no RST) is
 * replaced within seconds: the kernel would keep it for up to ~15 minutes, every command waiting out its timeout and
 * the counters per process all that time. A connection is dead once a command has waited a few seconds without a
 * byte coming back (socketTimeout); an idle one is found out by a PING every few seconds, before a request needs it.
 */
export function createRedisStore(
  options: RedisStoreOptions,
): CounterStore & { readonly client: Redis; ready(timeoutMs: number): Promise<boolean> } {
  const commandTimeout = options.commandTimeoutMs ?? 500;
  const client = new Redis(options.url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout,
    // No byte for this long while a command waits: the connection is dead. By then every command on it has failed over
    // to memory; a Redis that is only slow (still replying) or paused for a fork (BGSAVE, up to a second or so on a
    // large dataset) keeps its connection and its replies in order.
    socketTimeout: Math.max(2 * commandTimeout, 2000),
    // A TCP connect still pending after 2 s is lost; the next attempt costs less than waiting out the default 10 s.
    connectTimeout: 2000,
    // A command that timed out was served from memory: run later on the new connection, it would count twice.
    autoResendUnfulfilledCommands: false,
    // Reconnect forever, at most every 2 s: Redis coming back must heal the shared counters without a restart.
    retryStrategy: (times) => Math.min(times * 200, 2000),
  });
  client.on('error', (err: Error) => options.onError?.(err));
  const connected = client.connect().then(
    () => true,
    () => false, // the 'error' listener has it; retryStrategy keeps trying
  );
  // TCP keepalive cannot see this death (the peer, or a relay in the path, still acknowledges), so ask Redis itself.
  // Unanswered, the PING arms socketTimeout like any command; its own failure is already reported by that path.
  const heartbeat = setInterval(() => {
    if (client.status === 'ready') client.ping().catch(() => {});
  }, options.pingIntervalMs ?? 5000);
  heartbeat.unref();

  const run = (script: string, keyList: string[], args: Array<string | number>) =>
    client.eval(script, keyList.length, ...keyList, ...args) as Promise<unknown>;

  const slot = (account: string, id: string, policy: LockoutPolicy): AttemptSlot => ({
    async fail() {
      const ms = (await run(
        FAIL,
        [keys.lock(account), keys.failures(account), keys.level(account), keys.pending(account)],
        [
          id,
          policy.maxFailures,
          policy.baseMs,
          policy.factor,
          policy.maxMs,
          policy.failureWindowMs,
          policy.forgetAfterMs,
        ],
      )) as number;
      return ms < 0 ? null : ms;
    },
    async succeed() {
      await run(SUCCEED, [keys.failures(account), keys.level(account), keys.pending(account)], [id]);
    },
    async release() {
      await client.zrem(keys.pending(account), id);
    },
  });

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
    async reserve(account, policy): Promise<Reservation> {
      const id = randomUUID();
      const [kind, retryMs] = (await run(
        RESERVE,
        [keys.lock(account), keys.failures(account), keys.pending(account)],
        [policy.maxFailures, leaseMs(policy), policy.baseMs, id],
      )) as ['slot' | 'lock' | 'full', number];
      return kind === 'slot' ? { kind, slot: slot(account, id, policy) } : { kind: 'locked', retryMs, reason: kind };
    },
    async close() {
      clearInterval(heartbeat);
      client.disconnect();
    },
  };
}
