import { afterAll, beforeAll, expect } from 'vitest';
import { createRedisStore } from '../../src/ratelimit/redis.store.js';

/**
 * A counter store on the shared test Redis for the current describe block: ready before its tests, and its keys (all
 * named with `prefix`, which the tests put in every key they make) deleted after. The shared server is never flushed.
 */
export function redisStoreForTests(url: string) {
  const prefix = `t${Date.now()}${Math.random().toString(36).slice(2, 6)}`;
  const store = createRedisStore({ url });
  beforeAll(async () => {
    expect(await store.ready(5000)).toBe(true);
  });
  afterAll(async () => {
    const keys = await store.client.keys(`gw:*${prefix}*`);
    if (keys.length) await store.client.del(...keys);
    await store.close();
  });
  return { store, prefix };
}
