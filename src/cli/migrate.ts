import { ConfigError, loadConfig } from '../config/index.js';
import { DataDirLockedError, migrate, openDatabase } from '../db/index.js';

/** `npm run migrate`: applies schema.sql to DATABASE_URL (or the embedded database) without psql. */
try {
  const config = loadConfig();
  const db = await openDatabase({
    url: config.database.url,
    dataDir: config.data_dir,
    poolMax: 1,
    connectTimeoutSeconds: config.database.connect_timeout,
    statementTimeoutSeconds: 600,
    preparedStatements: config.database.prepared_statements,
  });
  try {
    await migrate(db);
    process.stdout.write(`schema applied to ${db.location}\n`);
  } finally {
    await db.close();
  }
} catch (err) {
  if (err instanceof DataDirLockedError) {
    // The gateway applies schema.sql itself at start: with it running there is nothing to do here.
    process.stderr.write(
      `migrate failed: the embedded database at ${err.dir} is in use by ${err.holder}: stop the gateway first ` +
        '(it applies the schema itself at start)\n',
    );
    process.exit(1);
  }
  process.stderr.write(
    `${err instanceof ConfigError ? 'config error' : 'migrate failed'}: ${(err as Error).message}\n`,
  );
  process.exit(err instanceof ConfigError ? 78 : 1);
}
