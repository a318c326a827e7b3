export {
  ConfigError,
  ENV_OVERRIDES,
  EXAMPLE_SECRET,
  type LoadOptions,
  loadConfig,
  usesSecureCookies,
} from './load.js';
export type { Config } from './schema.js';
