import { inspect } from 'node:util';
import { buildApp } from './app.js';
import { type Config, ConfigError, loadConfig } from './config/index.js';
import { type Database, DataDirError, migrate, openDatabase } from './db/index.js';
import { ensureDevUser } from './dev/dev-user.js';

/** The process: load config, open and migrate the database, build the app, listen, close gracefully on SIGTERM. */
async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`config error: ${err.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    throw err;
  }

  let db: Database | undefined;
  const app = await (async () => {
    db = await openDatabase({
      url: config.database.url,
      dataDir: config.data_dir,
      poolMax: config.database.pool_max,
      connectTimeoutSeconds: config.database.connect_timeout,
      statementTimeoutSeconds: config.database.statement_timeout,
      listenUrl: config.database.listen_url,
      preparedStatements: config.database.prepared_statements,
      onBackgroundError: (err) => app?.log.warn({ err: { message: err.message } }, 'database connection lost'),
      onWarning: (message) => app?.log.warn({}, message),
    });
    await migrate(db);
    return buildApp({ config, db });
  })();
  const log = app.log;
  const database = db as Database;

  log.info(
    { database: database.kind, location: database.location },
    database.kind === 'pglite'
      ? `embedded PostgreSQL (PGlite): data in ${database.location}`
      : `PostgreSQL server at ${database.location}`,
  );
  if (config.devSecret)
    log.warn(
      { dataDir: config.data_dir },
      'development secret in use (generated, kept under data_dir); set AUTH_SECRET in production',
    );

  const dev = await ensureDevUser(config, database, app.hasher);
  if (dev.created) {
    log.info({ email: config.dev_user.email }, 'development user created');
    if (dev.generatedPassword) {
      // Printed once, to the terminal only, on purpose: it never goes through the structured log.
      process.stdout.write(
        `\n  Development user: ${config.dev_user.email}  password: ${dev.generatedPassword}\n  (shown once; set dev_user.password in the secrets file to choose it)\n\n`,
      );
    }
  }

  let closing = false;
  const shutdown = async (signal: string) => {
    if (closing) return;
    closing = true;
    log.info({ signal }, 'shutting down: no new connections, finishing in-flight requests');
    const timer = setTimeout(() => {
      log.error('shutdown timed out; exiting');
      process.exit(1);
    }, config.server.shutdown_timeout * 1000);
    timer.unref();
    // Node closes the connections idle at this moment; a kept-alive connection whose in-flight request finishes later
    // would hold close() open until the keep-alive timeout (72 s in Fastify). Close those as they become idle.
    const sweep = setInterval(() => app.server.closeIdleConnections(), 100);
    sweep.unref();
    let code = 0;
    try {
      await app.close();
    } catch (err) {
      log.error({ err }, 'error during shutdown');
      code = 1;
    }
    // Whatever part of the app failed to close, the database still closes: the pool's sessions end cleanly, and an
    // embedded one (PGlite) is shut down rather than left as after a crash.
    try {
      await database.close();
    } catch (err) {
      log.error({ err }, 'error closing the database during shutdown');
      code = 1;
    }
    process.exit(code);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));

  await app.listen({ port: config.server.port, host: config.server.host });
}

main().catch((err) => {
  if (err instanceof DataDirError && err.setting) {
    // Reported like the configuration errors above. Where data_dir was set is not known here: name both places.
    process.stderr.write(
      `config error: data_dir: ${err.message} (data_dir in the config file, or environment variable DATA_DIR)\n`,
    );
    process.exit(78); // EX_CONFIG
  }
  // Not every throwable is an Error (Emscripten throws plain objects): inspect shows its class and fields on one line.
  const text =
    err instanceof Error ? (err.stack ?? err.message) : inspect(err, { breakLength: Number.POSITIVE_INFINITY });
  process.stderr.write(`fatal: ${text}\n`);
  process.exit(1);
});
