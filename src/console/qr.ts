import { type Static, Type as T } from '@sinclair/typebox';

export const QrBody = T.Object({
  text: T.String({
    minLength: 10,
    // An otpauth URI is well under this; a QR code holds at most ~2.9 KB anyway.
    maxLength: 1024,
    pattern: '^otpauth://',
    description: 'An otpauth:// URI (TOTP setup)',
    examples: ['otpauth://totp/Gateway:user%40example.com?secret=JBSWY3DPEHPK3PXP&issuer=Gateway'],
  }),
});
export type QrBody = Static<typeof QrBody>;

/** The SVG of a QR code: two <path>s with presentation attributes (no style attribute: the console's CSP allows none). */
export async function createQrSvg(text: string): Promise<string> {
  const { default: QRCode } = await import('qrcode'); // loaded when first needed, not at start
  return QRCode.toString(text, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 });
}
