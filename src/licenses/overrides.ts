import { Type as T } from '@sinclair/typebox';

/** Most keys of a user's license features or resource limits, and their longest key. */
export const LICENSE_OVERRIDE_MAX_KEYS = 64;
export const LICENSE_OVERRIDE_MAX_KEY_LENGTH = 64;

/**
 * A user's own license features or resource limits (licenses.features / licenses.resource_limits): a JSON object of
 * at most 64 keys of at most 64 characters. (A key schema on T.Record limits nothing: the keys' length is
 * propertyNames, which the request validator applies.) The operator CLI checks its options by licenseOverridesRefusal.
 */
export const LicenseOverrides = T.Record(T.String(), T.Unknown(), {
  maxProperties: LICENSE_OVERRIDE_MAX_KEYS,
  propertyNames: { maxLength: LICENSE_OVERRIDE_MAX_KEY_LENGTH },
});

/** Why `value` (a parsed JSON object) cannot be license overrides, or null when it can. */
export function licenseOverridesRefusal(value: Record<string, unknown>): string | null {
  const keys = Object.keys(value);
  if (keys.length > LICENSE_OVERRIDE_MAX_KEYS) return `has more than ${LICENSE_OVERRIDE_MAX_KEYS} keys`;
  // Characters as the request validator counts them (code points: an emoji is one), not UTF-16 units.
  const long = keys.find((k) => [...k].length > LICENSE_OVERRIDE_MAX_KEY_LENGTH);
  return long === undefined
    ? null
    : `key ${JSON.stringify(long)} is over ${LICENSE_OVERRIDE_MAX_KEY_LENGTH} characters`;
}
