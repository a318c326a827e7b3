import { UAParser } from 'ua-parser-js';

/** Names already worked out: user agents repeat (one per browser version), and parsing one costs ~100 regexes. */
const named = new Map<string, string>();
const NAMED_MAX = 1000;

/** A readable name for a user agent: "Chrome 120 on macOS", "Firefox on Android", "curl 8.5"; '' when unknown. */
export function deviceName(userAgent: string | null | undefined): string {
  if (!userAgent) return '';
  let name = named.get(userAgent);
  if (name === undefined) {
    name = parseName(userAgent);
    if (named.size >= NAMED_MAX) named.delete(named.keys().next().value as string);
    named.set(userAgent, name);
  }
  return name;
}

function parseName(userAgent: string): string {
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
