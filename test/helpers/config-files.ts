import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig } from '../../src/config/index.js';

/**
 * A fresh directory with a config file (only when given) and a secrets file, and `load()` reading them as the
 * gateway would, with DATA_DIR under that directory and `env` on top.
 */
export function configFiles(files: { config?: string; secrets?: string }, env: Record<string, string> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'gw-config-'));
  const configFile = join(dir, 'config.yaml');
  const secretsFile = join(dir, 'secrets.yaml');
  if (files.config !== undefined) writeFileSync(configFile, files.config);
  writeFileSync(secretsFile, files.secrets ?? '');
  return {
    dir,
    configFile,
    secretsFile,
    load: () =>
      loadConfig({
        env: { CONFIG_FILE: configFile, SECRETS_FILE: secretsFile, DATA_DIR: join(dir, 'data'), ...env },
        cwd: dir,
      }),
  };
}

/** The ConfigError `fn` throws (any other error is rethrown; none fails the test). */
export function configErrorOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected a ConfigError');
}
