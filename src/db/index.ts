export { DataDirError, DataDirLockedError } from './data-dir-lock.js';
export {
  type AdvisoryLock,
  type Database,
  type DatabaseOptions,
  isForeignKeyViolation,
  isUnavailableError,
  isUniqueViolation,
  openDatabase,
  QUERY_TIMEOUT_MARGIN_MS,
  type Queryable,
  type QueryResult,
} from './database.js';
export { migrate, SCHEMA_FILE } from './migrate.js';
