import { buildApp } from '../../src/app.js';
import { type TestApp, testConfig } from './test-app.js';

/**
 * A second gateway with other settings on the database of an existing test app: another configuration without the
 * cost of another database (PGlite start-up dominates a test file's time). Close it before the owner.
 */
export async function createSiblingApp(owner: TestApp, overrides: Parameters<typeof testConfig>[1]) {
  const config = testConfig(owner.testDb.dataDir, overrides);
  const app = await buildApp({ config, db: owner.db, logger: false });
  await app.ready();
  return app;
}
