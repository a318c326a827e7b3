import { UAParser } from 'ua-parser-js';

/** A readable name for a user agent: "Chrome 120 on macOS", "Firefox on Android", "curl 8.5"; '' when unknown. */
export function deviceName(userAgent: string | null | undefined): string {
  if (!userAgent) return '';
  const { browser, os, device } = UAParser(userAgent.slice(0, 512));
  const app = [browser.name, browser.major].filter(Boolean).join(' ');
  const system = [os.name, os.name === 'macOS' || os.name === 'Windows' ? '' : os.version?.split('.')[0]]
    .filter(Boolean)
    .join(' ');
  const hardware = device.model && device.type ? `${device.vendor ?? ''} ${device.model}`.trim() : '';
  const where = [system, hardware].filter(Boolean).join(', ');
  if (app && where) return `${app} on ${where}`;
  if (app || where) return app || where;
  // Not a browser (curl, an SDK): its product token is the most readable thing it sends.
  return /^[\w.-]+(?:\/[\w.-]+)?/.exec(userAgent)?.[0]?.replace('/', ' ') ?? '';
}
