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
  const resolve = (row: LicenseRow | null): License => {
    const type = row?.license_type ?? config.default_type;
    // Own keys only: a row typed 'constructor' (written by hand) must not pick up Object.prototype's members.
    const defaults = Object.hasOwn(config.types, type)
      ? (config.types[type] as (typeof config.types)[string])
      : { features: {}, resource_limits: {} };
    return Object.freeze({
      type,
      features: Object.freeze({ ...defaults.features, ...(row?.features ?? {}) }),
      resourceLimits: Object.freeze({ ...defaults.resource_limits, ...(row?.resource_limits ?? {}) }),
    });
  };
  // A cached session hands in the same row object on every check: its license is resolved once (and frozen, since it
  // is shared). A row read again is a new object, so a changed license is never served from here.
  const byRow = new WeakMap<LicenseRow, License>();
  const noRow = resolve(null);
  return (row) => {
    if (!row) return noRow;
    let license = byRow.get(row);
    if (!license) {
      license = resolve(row);
      byRow.set(row, license);
    }
    return license;
  };
}
