export { createLicenseResolver, type License, type LicenseResolver, type LicenseRow } from './licenses.js';
