import { type Static, Type as T } from '@sinclair/typebox';
import { Email } from './auth.schemas.js';

/** Schemas of the account routes: email verification, password reset and change, 2FA, account deletion. */

// Our tokens are 43 base64url characters, Better Auth's reset tokens 24 alphanumerics; the cap only refuses junk.
const Token = T.String({ minLength: 16, maxLength: 256, pattern: '^[A-Za-z0-9_-]+$' });
// A TOTP code (6 digits) or a backup code (Better Auth: 10 characters as xxxxx-xxxxx).
const Code = T.String({ minLength: 6, maxLength: 32, pattern: '^[A-Za-z0-9-]+$', examples: ['123456'] });

export const SuccessResponse = T.Object({ success: T.Literal(true), message: T.Optional(T.String()) });

// Password reset and verification resend only look the address up: the lookup rule (an address stored earlier).
export const EmailBody = T.Object({ email: Email });
export type EmailBody = Static<typeof EmailBody>;

export const TokenQuery = T.Object({ token: Token });
export type TokenQuery = Static<typeof TokenQuery>;

export const makeResetBody = (password: { min: number; max: number }) =>
  T.Object({ token: Token, password: T.String({ minLength: password.min, maxLength: password.max }) });
export type ResetBody = Static<ReturnType<typeof makeResetBody>>;

export const makeChangeBody = (password: { min: number; max: number }) =>
  T.Object({
    currentPassword: T.String({ minLength: 1, maxLength: password.max }),
    newPassword: T.String({ minLength: password.min, maxLength: password.max }),
  });
export type ChangeBody = Static<ReturnType<typeof makeChangeBody>>;

export const makePasswordBody = (password: { max: number }) =>
  T.Object({ password: T.String({ minLength: 1, maxLength: password.max }) });
export type PasswordBody = Static<ReturnType<typeof makePasswordBody>>;

export const TokenRefreshResponse = T.Object({
  success: T.Literal(true),
  endedSessions: T.Integer({ description: 'other sessions of the user that were ended' }),
});

export const EnableResponse = T.Object({
  success: T.Literal(true),
  otpauthUri: T.String({ description: 'otpauth://totp/... for an authenticator app (show as a QR code)' }),
  backupCodes: T.Array(T.String(), { description: 'Single-use recovery codes; shown once' }),
});

export const CodeBody = T.Object({ code: Code });
export type CodeBody = Static<typeof CodeBody>;

export const makeDisableBody = (password: { max: number }) =>
  T.Object(
    { code: T.Optional(Code), password: T.Optional(T.String({ minLength: 1, maxLength: password.max })) },
    { description: 'A current TOTP code, or the password' },
  );
export type DisableBody = Static<ReturnType<typeof makeDisableBody>>;

export const VerifyBody = T.Object({
  code: Code,
  challengeToken: T.Optional(
    T.String({
      minLength: 8,
      maxLength: 512,
      pattern: '^[A-Za-z0-9._~+/=-]+$',
      description: 'From the login answer; optional with the 2FA cookie',
    }),
  ),
});
export type VerifyBody = Static<typeof VerifyBody>;
