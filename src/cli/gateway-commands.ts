import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { createAdminStore, type UserSummary } from '../accounts/accounts.store.js';
import { EMAIL_MAX_LENGTH, EMAIL_PATTERN } from '../accounts/email-address.js';
import { createAuditLog } from '../audit/index.js';
import { generateId } from '../auth/ids.js';
import { type Config, ConfigError, loadConfig } from '../config/index.js';
import { type Database, DataDirLockedError, isUniqueViolation, migrate, openDatabase } from '../db/index.js';
import { refusedText } from '../http/nul-guard.plugin.js';
import { licenseOverridesRefusal } from '../licenses/index.js';
import { createPasswordHasher } from '../passwords/index.js';

/**
 * The operator commands behind `npm run gateway -- <command>` (src/cli/gateway.ts is the process entry), against the
 * configured database (DATABASE_URL or config.yaml). Exit codes: 0 done, 1 failed (the message says why; also the
 * embedded database in use by a running gateway), 2 usage error, 78 configuration error (EX_CONFIG).
 */

const EXIT = { ok: 0, failure: 1, usage: 2, config: 78 } as const;

class UsageError extends Error {}
class CommandError extends Error {}

interface Command {
  usage: string;
  summary: string;
  /** The positional arguments it takes, in order, as named in `usage`: no more and no fewer. */
  positionals: readonly string[];
  options?: Record<string, { type: 'string' | 'boolean' }>;
  run(
    ctx: Context,
    args: { positionals: string[]; values: Record<string, string | boolean | undefined> },
  ): Promise<void>;
}

interface Context {
  config: Config;
  db(): Promise<Database>;
  out(line: string): void;
  readStdin(): Promise<string>;
  /** An admin.action audit event (channel 'cli'), as the admin API writes for the same change. */
  audit(action: string, target: string, details?: Record<string, unknown>): Promise<void>;
}

const userOption = 'a user id or email address';

async function findUser(ctx: Context, ref: string | undefined): Promise<UserSummary> {
  if (!ref) throw new UsageError(`missing <user> (${userOption})`);
  const admin = createAdminStore(await ctx.db());
  const user = ref.includes('@') ? await admin.findUserByEmail(ref) : await admin.getUser(ref);
  if (!user) throw new CommandError(`no user ${JSON.stringify(ref)}`);
  return user;
}

/**
 * The option's JSON object, refused as the admin API refuses it: a NUL or a lone surrogate (which PostgreSQL cannot
 * store), a number JSON.parse reads as Infinity (1e999, which would be stored as null), or nesting deeper than the
 * HTTP guard walks.
 */
function jsonObject(text: string | boolean | undefined, name: string): Record<string, unknown> | undefined {
  if (text === undefined || typeof text === 'boolean') return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new UsageError(`--${name} must be a JSON object, e.g. '{"max_ws_connections":5}'`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new UsageError(`--${name} must be a JSON object`);
  }
  const refused = refusedText(parsed, '');
  if (refused) throw new UsageError(`--${name} ${JSON.stringify(refused.details.field)}: ${refused.message}`);
  const overrides = licenseOverridesRefusal(parsed as Record<string, unknown>);
  if (overrides) throw new UsageError(`--${name} ${overrides}`);
  return parsed as Record<string, unknown>;
}

/** Telegram user ids are positive with at most 52 significant bits (Bot API, User.id). */
const TELEGRAM_ID_MAX = 2n ** 52n - 1n;

/**
 * The id as the bot sees it: Telegram sends a JSON number, and the link is looked up by its decimal form, so "0123"
 * must be stored as "123" or it would never match an update (and "123" could then be linked to someone else).
 */
function canonicalTelegramId(arg: string | undefined): string {
  const id = arg && /^\d+$/.test(arg) ? BigInt(arg) : 0n;
  if (id < 1n || id > TELEGRAM_ID_MAX) {
    throw new UsageError(`<telegram-user-id> must be the numeric Telegram user id (1 to ${TELEGRAM_ID_MAX})`);
  }
  return String(id);
}

/** The password: from stdin with --password-stdin (never from argv, which other users can read), else generated. */
async function passwordFor(ctx: Context, fromStdin: boolean): Promise<{ password: string; generated: boolean }> {
  if (!fromStdin) return { password: randomBytes(15).toString('base64url'), generated: true };
  const password = (await ctx.readStdin()).replace(/\r?\n$/, '');
  const { min_length, max_length } = ctx.config.auth.password;
  if (password.length < min_length || password.length > max_length) {
    throw new CommandError(`the password must be ${min_length} to ${max_length} characters`);
  }
  return { password, generated: false };
}

async function createUser(
  ctx: Context,
  input: { email: string; name: string; password: string; license: string; role: 'admin' | 'user' },
): Promise<string> {
  const { config } = ctx;
  const db = await ctx.db();
  const hasher = createPasswordHasher(
    {
      memoryCost: config.auth.argon2.memory_cost,
      timeCost: config.auth.argon2.time_cost,
      parallelism: config.auth.argon2.parallelism,
    },
    { maxLength: config.auth.password.max_length },
  );
  const hash = await hasher.hash(input.password);
  const userId = generateId('user');
  try {
    await db.transaction(async (tx) => {
      // The same rows Better Auth writes for an email sign-up: a user and its 'credential' account.
      await tx.query(`INSERT INTO users (id, email, email_verified, name, role) VALUES ($1, $2, true, $3, $4)`, [
        userId,
        input.email,
        input.name,
        input.role,
      ]);
      await tx.query(
        `INSERT INTO user_credentials (id, user_id, account_id, provider_id, password_hash)
         VALUES ($1, $2, $2, 'credential', $3)`,
        [generateId('account'), userId, hash],
      );
      await tx.query('INSERT INTO user_licenses (user_id, license_type) VALUES ($1, $2)', [userId, input.license]);
    });
  } catch (err) {
    if (isUniqueViolation(err)) throw new CommandError(`a user with email ${input.email} already exists`);
    throw err;
  }
  return userId;
}

function checkLicenseType(config: Config, type: string): void {
  if (!Object.hasOwn(config.licenses.types, type)) {
    throw new UsageError(
      `unknown license type "${type}"; configured: ${Object.keys(config.licenses.types).join(', ')}`,
    );
  }
}

const EMAIL = new RegExp(EMAIL_PATTERN);

/** The address as the sign-up routes store it; refused unless they would take it (else it could never sign in). */
function requireEmail(value: string | boolean | undefined): string {
  if (typeof value !== 'string') throw new UsageError('--email <address> is required');
  if (value.length > EMAIL_MAX_LENGTH || !EMAIL.test(value)) {
    throw new UsageError(
      `--email must be a bare address of at most ${EMAIL_MAX_LENGTH} characters (no name, brackets, quotes or lists)`,
    );
  }
  return value.trim().toLowerCase();
}

const COMMANDS: Record<string, Command> = {
  migrate: {
    usage: 'migrate',
    summary: 'Apply schema.sql (idempotent; safe to run on every deploy)',
    positionals: [],
    async run(ctx) {
      const db = await ctx.db();
      await migrate(db);
      ctx.out(`schema applied to ${db.location}`);
    },
  },

  'create-user': {
    usage: 'create-user --email <address> [--name <name>] [--license <type>] [--password-stdin]',
    summary: 'Create a user with a password (read from stdin, or generated and printed once)',
    positionals: [],
    options: {
      email: { type: 'string' },
      name: { type: 'string' },
      license: { type: 'string' },
      'password-stdin': { type: 'boolean' },
    },
    async run(ctx, { values }) {
      const email = requireEmail(values.email);
      const license = typeof values.license === 'string' ? values.license : ctx.config.licenses.default_type;
      checkLicenseType(ctx.config, license);
      const { password, generated } = await passwordFor(ctx, values['password-stdin'] === true);
      const name = typeof values.name === 'string' ? values.name.trim().slice(0, 100) : '';
      const id = await createUser(ctx, { email, name, password, license, role: 'user' });
      await ctx.audit('user.create', id, { license });
      ctx.out(`created user ${id} <${email}> (license ${license})`);
      if (generated) ctx.out(`password: ${password}  (shown once)`);
    },
  },

  'create-admin': {
    usage: 'create-admin --email <address> [--name <name>] [--password-stdin] [--trust-unverified]',
    summary:
      'Make an existing user an administrator (its address must be verified, or --trust-unverified), or create one',
    positionals: [],
    options: {
      email: { type: 'string' },
      name: { type: 'string' },
      'password-stdin': { type: 'boolean' },
      'trust-unverified': { type: 'boolean' },
    },
    async run(ctx, { values }) {
      const email = requireEmail(values.email);
      const admin = createAdminStore(await ctx.db());
      const existing = await admin.findUserByEmail(email);
      if (existing) {
        if (values['password-stdin']) {
          throw new CommandError(
            `a user with email ${email} already exists and keeps its own password: run without --password-stdin to make it an administrator`,
          );
        }
        // Anyone can register any address: an unverified account may be someone else's claim on the operator's own.
        if (!existing.emailVerified && values['trust-unverified'] !== true) {
          throw new CommandError(
            `${existing.id} <${email}> has not verified its address, so anyone could have registered it; verify it ` +
              '(the verification email, a magic link or a password reset), or pass --trust-unverified if you made it',
          );
        }
        await admin.setRole(existing.id, 'admin');
        await ctx.audit('role.set', existing.id, { role: 'admin', emailVerified: existing.emailVerified });
        ctx.out(`user ${existing.id} <${email}> is now an administrator`);
        return;
      }
      const { password, generated } = await passwordFor(ctx, values['password-stdin'] === true);
      const name = typeof values.name === 'string' ? values.name.trim().slice(0, 100) : '';
      const license = ctx.config.licenses.default_type;
      const id = await createUser(ctx, { email, name, password, license, role: 'admin' });
      await ctx.audit('user.create', id, { role: 'admin' });
      ctx.out(`created administrator ${id} <${email}>`);
      if (generated) ctx.out(`password: ${password}  (shown once)`);
    },
  },

  'set-license': {
    usage: 'set-license <user> --type <type> [--features <json>] [--limits <json>]',
    summary: "Set a user's license; open sockets get the new limits at once",
    positionals: ['<user>'],
    options: { type: { type: 'string' }, features: { type: 'string' }, limits: { type: 'string' } },
    async run(ctx, { positionals, values }) {
      if (typeof values.type !== 'string') throw new UsageError('--type <type> is required');
      checkLicenseType(ctx.config, values.type);
      const features = jsonObject(values.features, 'features');
      const resourceLimits = jsonObject(values.limits, 'limits');
      const user = await findUser(ctx, positionals[0]);
      await createAdminStore(await ctx.db()).setLicense(user.id, { type: values.type, features, resourceLimits });
      await ctx.audit('license.set', user.id, { type: values.type });
      ctx.out(`license of ${user.id} <${user.email}> set to ${values.type}`);
    },
  },

  'link-telegram': {
    usage: 'link-telegram <user> <telegram-user-id>',
    summary: 'Link a Telegram account (numeric user id) to a user',
    positionals: ['<user>', '<telegram-user-id>'],
    async run(ctx, { positionals }) {
      const telegramId = canonicalTelegramId(positionals[1]);
      const user = await findUser(ctx, positionals[0]);
      const result = await createAdminStore(await ctx.db()).linkChannel(user.id, 'telegram', telegramId);
      if (result === 'taken') throw new CommandError(`Telegram user ${telegramId} is already linked to another user`);
      if (result === 'no_user') throw new CommandError(`no user ${JSON.stringify(positionals[0])}`);
      await ctx.audit('channel.link', user.id, { channel: 'telegram', channelUserId: telegramId });
      ctx.out(`Telegram user ${telegramId} linked to ${user.id} <${user.email}>`);
    },
  },

  'revoke-sessions': {
    usage: 'revoke-sessions <user>',
    summary: "End all of a user's sessions on every channel (tokens stop working, sockets close)",
    positionals: ['<user>'],
    async run(ctx, { positionals }) {
      const user = await findUser(ctx, positionals[0]);
      const revoked = await createAdminStore(await ctx.db()).revokeAllSessions(user.id);
      await ctx.audit('sessions.revoke', user.id, { revoked });
      ctx.out(`revoked ${revoked} session(s) of ${user.id} <${user.email}>`);
    },
  },
};

function help(): string {
  return [
    'Usage: npm run gateway -- <command> [options]',
    '',
    'Commands:',
    ...Object.values(COMMANDS).map((c) => `  ${c.usage}\n      ${c.summary}`),
    '',
    `<user> is ${userOption}. The database is DATABASE_URL, else database.url in config.yaml (CONFIG_FILE).`,
    'On the embedded database (no URL) the gateway must be stopped: one process at a time can open it.',
    'Exit codes: 0 done, 1 failed, 2 usage error, 78 configuration error.',
  ].join('\n');
}

export interface GatewayIo {
  out(line: string): void;
  err(line: string): void;
  readStdin(): Promise<string>;
  /** The environment for the configuration (tests); absent: the process's. */
  env?: Record<string, string | undefined>;
}

/** Runs one command; returns the exit code. */
export async function runGateway(argv: string[], io: GatewayIo): Promise<number> {
  const { out, err, readStdin } = io;
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    (name ? out : err)(help());
    return name ? EXIT.ok : EXIT.usage;
  }
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!command) {
    err(`unknown command "${name}"\n\n${help()}`);
    return EXIT.usage;
  }

  let db: Database | null = null;
  try {
    let args: ReturnType<typeof parseArgs>;
    try {
      args = parseArgs({
        args: rest,
        options: { help: { type: 'boolean', short: 'h' }, ...command.options },
        allowPositionals: true,
        strict: true,
      });
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    if (args.values.help) {
      out(`Usage: npm run gateway -- ${command.usage}\n\n${command.summary}`);
      return EXIT.ok;
    }
    // Regression: extra arguments were ignored, so `revoke-sessions <u1> <u2>` ended u1's sessions only and exited 0.
    const extra = args.positionals[command.positionals.length];
    if (extra !== undefined) throw new UsageError(`unexpected argument ${JSON.stringify(extra)}`);
    const missing = command.positionals[args.positionals.length];
    if (missing !== undefined) throw new UsageError(`missing ${missing}`);
    const config = loadConfig(io.env ? { env: io.env } : {});
    const ctx: Context = {
      config,
      out,
      readStdin,
      async audit(action, target, details = {}) {
        const log = { error: (_obj: object, msg: string) => err(`warning: ${msg}`) };
        await createAuditLog(await ctx.db(), log).record({
          event: 'admin.action',
          channel: 'cli',
          details: { action, target, ...details },
        });
      },
      async db() {
        db ??= await openDatabase({
          url: config.database.url,
          dataDir: config.data_dir,
          poolMax: 2,
          connectTimeoutSeconds: config.database.connect_timeout,
          statementTimeoutSeconds: 600,
          preparedStatements: config.database.prepared_statements,
        });
        return db;
      },
    };
    await command.run(ctx, args as { positionals: string[]; values: Record<string, string | boolean | undefined> });
    return EXIT.ok;
  } catch (e) {
    if (e instanceof UsageError) {
      err(`${name}: ${e.message}\nUsage: npm run gateway -- ${command.usage}`);
      return EXIT.usage;
    }
    if (e instanceof ConfigError) {
      err(`config error: ${e.message}`);
      return EXIT.config;
    }
    if (e instanceof DataDirLockedError) {
      // Regression: with the gateway running on the embedded database, commands printed success and their writes
      // were lost (a second PGlite on the same files). Now they refuse before touching anything.
      err(
        `${name} failed: the embedded database at ${e.dir} is in use by ${e.holder}: stop the gateway first, or run ` +
          'this command against PostgreSQL (DATABASE_URL)',
      );
      return EXIT.failure;
    }
    err(`${name} failed: ${(e as Error).message}`);
    return EXIT.failure;
  } finally {
    await (db as Database | null)?.close().catch(() => {});
  }
}
