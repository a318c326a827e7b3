import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { configErrorOf, configFiles } from '../helpers/config-files.js';

/** A config directory with these files (empty ones by default), loaded in development (the secret kept under data_dir). */
const setup = (files: { config?: string; secrets?: string } = {}, env: Record<string, string> = {}) =>
  configFiles({ config: '{}\n', secrets: '{}\n', ...files }, env);
const errorOf = configErrorOf;

describe('loadConfig: email.smtp_url', () => {
  // Regression: SMTP_URL was never checked; a bad one died later in createMailer with a stack trace, and a typo without
  // the colon was taken by nodemailer as "localhost:587, no authentication".
  it.each([
    'smtp://mailer:S3cretSmtpPw@mail example.com:587',
    'smtp//mailer:S3cretSmtpPw@mail.example.com:587',
    'https://mailer:S3cretSmtpPw@mail.example.com',
    'smtp://',
  ])('refuses %j, naming the key and the variable but not the URL', (url) => {
    const err = errorOf(setup({}, { SMTP_URL: url }).load);
    expect(err.message).toMatch(
      /^email\.smtp_url: (not a valid URL|must be an smtp:\/\/ or smtps:\/\/ URL .*) \(environment variable SMTP_URL\)$/,
    );
    expect(err.message).not.toContain('S3cretSmtpPw');
    expect(err.message).not.toContain('mail.example.com');
  });

  it('names the file when the bad URL is in config.yaml', () => {
    const s = setup({ config: 'email:\n  smtp_url: "mail.example.com:587"\n' });
    expect(errorOf(s.load).message).toMatch(new RegExp(`^email\\.smtp_url: .*\\(${s.configFile}\\)$`));
  });

  it('takes smtp:// and smtps:// URLs and the empty default', () => {
    expect(setup({}, { SMTP_URL: 'smtp://u:p@mail.example.com:587' }).load().email.smtp_url).toBe(
      'smtp://u:p@mail.example.com:587',
    );
    expect(
      setup({}, { SMTP_URL: 'SMTPS://u:p@mail.example.com:465?tls.rejectUnauthorized=false' }).load().email.smtp_url,
    ).toBe('SMTPS://u:p@mail.example.com:465?tls.rejectUnauthorized=false');
    expect(setup().load().email.smtp_url).toBe('');
  });
});

describe('loadConfig: a data_dir that cannot be used in development', () => {
  // Regression: writing the development secret under an unusable DATA_DIR died with a stack trace naming neither
  // data_dir nor DATA_DIR.
  it('is a config error naming data_dir, the path, the error code and the variable', () => {
    const s = setup();
    const file = join(s.dir, 'a-file');
    writeFileSync(file, 'x');
    const err = errorOf(() =>
      loadConfig({
        env: { CONFIG_FILE: s.configFile, SECRETS_FILE: s.secretsFile, DATA_DIR: join(file, 'data') },
        cwd: s.dir,
      }),
    );
    expect(err.message).toBe(
      `data_dir: cannot create/write ${join(file, 'data')} (ENOTDIR) (environment variable DATA_DIR)`,
    );
  });

  it('names config.yaml when data_dir comes from it, and a kept secret that cannot be read', () => {
    const s = setup({ config: 'data_dir: ./data\n' });
    mkdirSync(join(s.dir, 'data', '.dev-auth-secret'), { recursive: true });
    const err = errorOf(() =>
      loadConfig({ env: { CONFIG_FILE: s.configFile, SECRETS_FILE: s.secretsFile }, cwd: s.dir }),
    );
    expect(err.message).toBe(
      `data_dir: cannot read ${join(s.dir, 'data', '.dev-auth-secret')} (EISDIR) (${s.configFile})`,
    );
  });

  it('still keeps the generated secret there', () => {
    const s = setup();
    const first = s.load().auth.secret;
    expect(first.length).toBeGreaterThanOrEqual(32);
    expect(s.load().auth.secret).toBe(first);
  });
});

describe('loadConfig: dev_user.password', () => {
  // Regression: the README says "Secrets file only", but config.yaml's dev_user.password was taken silently.
  it('is refused in config.yaml, pointing to the secrets file', () => {
    const s = setup({ config: 'dev_user:\n  password: hunter2-dev-password\n' });
    const err = errorOf(s.load);
    expect(err.message).toBe(
      `dev_user.password: not allowed in ${s.configFile}; put it in the secrets file (${s.secretsFile}, SECRETS_FILE)`,
    );
    expect(err.message).not.toContain('hunter2');
  });

  it('is taken from the secrets file', () => {
    const s = setup({
      config: 'dev_user:\n  email: dev@example.com\n',
      secrets: 'dev_user:\n  password: chosen-pw-1234\n',
    });
    expect(s.load().dev_user.password).toBe('chosen-pw-1234');
  });
});
