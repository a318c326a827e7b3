import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { signInMethodOptions } from '../../src/auth/sign-in-methods.js';
import { ConfigError, loadConfig } from '../../src/config/index.js';
import type { Database } from '../../src/db/index.js';

const dir = mkdtempSync(join(tmpdir(), 'gw-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function load(configYaml: string, secretsYaml: string) {
  const config = join(dir, `c-${Math.random()}.yaml`);
  const secrets = join(dir, `s-${Math.random()}.yaml`);
  // The sections every config has (their keys default); the test's own sections follow.
  const base =
    'server: {}\ndatabase: {}\nlog: {}\nauth: { session: {}, password: {}, argon2: {} }\nlicenses: {}\nemail: {}\ndev_user: {}\n';
  writeFileSync(config, configYaml === '{}\n' ? base : base + configYaml);
  writeFileSync(secrets, secretsYaml);
  return loadConfig({
    env: { CONFIG_FILE: config, SECRETS_FILE: secrets, DATA_DIR: dir, AUTH_SECRET: 'x'.repeat(40) },
    cwd: dir,
  });
}

describe('configuration of OAuth, magic links and anonymous sign-in', () => {
  it('defaults when the sections are absent', () => {
    const c = load('{}\n', '{}\n');
    expect(c.oauth).toMatchObject({ redirect_url: '', code_ttl: 60, oidc: {}, google: { client_id: '' } });
    expect(c.magic_link).toEqual({
      enabled: true,
      expires_in: 600,
      create_accounts: false,
      max_per_window: 3,
      window: 900,
    });
    expect(c.anonymous).toEqual({ enabled: true, max_age: 2592000, cleanup_interval: 3600 });
  });

  it('client ids from the config file, client secrets from the secrets file', () => {
    const c = load(
      'oauth:\n  google: { client_id: g-id }\n  oidc:\n    corp: { issuer: "https://idp.example.com", client_id: gw }\n',
      'oauth:\n  google: { client_secret: g-secret }\n  oidc:\n    corp: { client_secret: corp-secret }\n',
    );
    expect(c.oauth.google).toEqual({ client_id: 'g-id', client_secret: 'g-secret' });
    expect(c.oauth.oidc.corp).toEqual({
      issuer: 'https://idp.example.com',
      client_id: 'gw',
      client_secret: 'corp-secret',
    });
  });

  it('refuses unknown secret keys and a secret for an undeclared provider, naming the key', () => {
    expect(() => load('{}\n', 'oauth:\n  google: { client_id: nope }\n')).toThrow(
      /oauth\.google\.client_id.*unknown key/,
    );
    expect(() => load('{}\n', 'oauth:\n  oidc:\n    ghost: { client_secret: s }\n')).toThrow(/oauth\.oidc\.ghost/);
  });

  it('refuses reserved provider ids and OIDC providers without a secret', () => {
    const db = {} as Database;
    const reserved = load('oauth:\n  oidc:\n    complete: { issuer: "https://i.example", client_id: c }\n', '{}\n');
    expect(() => signInMethodOptions(reserved, db, { error() {} })).toThrow(ConfigError);
    // Refused when the config is loaded (test/config/load.urls.test.ts), before anything starts.
    expect(() => load('oauth:\n  redirect_url: "javascript:alert(1)"\n', '{}\n')).toThrow(/^oauth\.redirect_url: /);
    const noSecret = load('oauth:\n  oidc:\n    corp: { issuer: "https://i.example", client_id: c }\n', '{}\n');
    expect(() => signInMethodOptions(noSecret, db, { error() {} })).toThrow(/oauth\.oidc\.corp\.client_secret/);
  });
});
