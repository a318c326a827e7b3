import type { Config } from '../config/index.js';

export interface License {
  type: string;
  features: Record<string, unknown>;
  resourceLimits: Record<string, unknown>;
}

/** A user_licenses row as read from the database (null: the user has none). */
export interface LicenseRow {
  license_type: string;
  features: Record<string, unknown> | null;
  resource_limits: Record<string, unknown> | null;
}

export type LicenseResolver = (row: LicenseRow | null) => License;

/**
 * Turns a user's user_licenses row into the license in force: the config defaults of its type, overridden key by key
 * by the row's own features and resource_limits. No row: the configured default type (free).
 */
export function createLicenseResolver(config: Config['licenses']): LicenseResolver {
  return (row) => {
    const type = row?.license_type ?? config.default_type;
    const defaults = config.types[type] ?? { features: {}, resource_limits: {} };
    return {
      type,
      features: { ...defaults.features, ...(row?.features ?? {}) },
      resourceLimits: { ...defaults.resource_limits, ...(row?.resource_limits ?? {}) },
    };
  };
}
