export {
  createLicenseEvents,
  LICENSE_CHANGED_CHANNEL,
  type LicenseChanged,
  type LicenseEvents,
} from './license-events.js';
export { createLicenseResolver, type License, type LicenseResolver, type LicenseRow } from './licenses.js';
export { LicenseOverrides, licenseOverridesRefusal } from './overrides.js';
