export {
  type AdvisoryLock,
  type Database,
  type DatabaseOptions,
  isUnavailableError,
  isUniqueViolation,
  openDatabase,
  type Queryable,
  type QueryResult,
} from './database.js';
export { migrate, SCHEMA_FILE } from './migrate.js';
