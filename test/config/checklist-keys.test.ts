import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/index.js';
import { DEFAULT_RATE_LIMIT_RULES } from '../../src/config/schema.js';

function load(config: string, env: Record<string, string> = {}, secrets = '') {
  const d = mkdtempSync(join(tmpdir(), 'gw-config-'));
  writeFileSync(join(d, 'config.yaml'), config);
  writeFileSync(join(d, 'secrets.yaml'), secrets);
  return loadConfig({
    env: {
      CONFIG_FILE: join(d, 'config.yaml'),
      SECRETS_FILE: join(d, 'secrets.yaml'),
      DATA_DIR: join(d, 'data'),
      AUTH_SECRET: 's'.repeat(40),
      ...env,
    },
    cwd: d,
  });
}

const messageOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.message;
    throw err;
  }
  throw new Error('expected a ConfigError');
};

describe('rate limit, lockout, metrics, redis and HTTPS keys', () => {
  it('has defaults without any of them in the file', () => {
    const config = load('');
    expect(config.rate_limit).toEqual({ enabled: true, rules: DEFAULT_RATE_LIMIT_RULES });
    expect(config.lockout).toMatchObject({ max_failures: 5, base_lockout: 60, factor: 2, max_lockout: 3600 });
    expect(config.metrics).toEqual({ enabled: true, token: '', allowed_ips: ['127.0.0.1', '::1'] });
    expect(config.redis.url).toBe('');
    expect(config.server.https_only).toBe(false);
    expect(config.auth.session.idle_timeout).toBe(0);
    expect(config.auth.argon2).toMatchObject({ max_concurrent: 0, max_queue: 64 });
  });

  it('takes REDIS_URL and METRICS_TOKEN from the environment, and both from the secrets file', () => {
    const env = load('', { REDIS_URL: 'redis://:pw@cache:6379/1', METRICS_TOKEN: 'tok' });
    expect(env.redis.url).toBe('redis://:pw@cache:6379/1');
    expect(env.metrics.token).toBe('tok');
    const secrets = load('', {}, 'redis:\n  url: redis://r:6379\nmetrics:\n  token: from-secrets\n');
    expect(secrets.redis.url).toBe('redis://r:6379');
    expect(secrets.metrics.token).toBe('from-secrets');
  });

  it('refuses bad values with the key named', () => {
    expect(messageOf(() => load('metrics:\n  allowed_ips: ["10.0.0.0/33"]\n'))).toMatch(/^metrics\.allowed_ips\.0:/);
    expect(messageOf(() => load('rate_limit:\n  rules: [{ prefix: auth, max: 1, window: 60 }]\n'))).toMatch(
      /^rate_limit\.rules\.0\.prefix:/,
    );
    expect(messageOf(() => load('lockout:\n  factor: 0.5\n'))).toMatch(/^lockout\.factor:/);
    expect(messageOf(() => load('redis:\n  url: "not a url"\n'))).toMatch(/^redis\.url:/);
    expect(messageOf(() => load('server:\n  https_only: maybe\n'))).toMatch(/^server\.https_only:/);
  });

  it('server.https_only defaults to true in production and can be turned off there explicitly', () => {
    expect(load('', { NODE_ENV: 'production' }).server.https_only).toBe(true);
    expect(load('server:\n  https_only: false\n', { NODE_ENV: 'production' }).server.https_only).toBe(false);
  });
});
