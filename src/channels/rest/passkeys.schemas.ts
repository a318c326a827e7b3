import { type Static, Type as T } from '@sinclair/typebox';
import { Email } from './auth.schemas.js';

/** Schemas of the passkey routes. WebAuthn option objects are passed through whole (additionalProperties). */

export const CreationOptions = T.Object(
  {
    challenge: T.String({ description: 'base64url; single use, expires after passkeys.challenge_ttl seconds' }),
    rp: T.Object({ name: T.String(), id: T.String() }),
  },
  {
    additionalProperties: true,
    description: 'PublicKeyCredentialCreationOptionsJSON: pass to startRegistration() of @simplewebauthn/browser',
  },
);

export const RequestOptions = T.Object(
  {
    challenge: T.String({ description: 'base64url; single use, expires after passkeys.challenge_ttl seconds' }),
    rpId: T.String(),
  },
  {
    additionalProperties: true,
    description: 'PublicKeyCredentialRequestOptionsJSON: pass to startAuthentication() of @simplewebauthn/browser',
  },
);

// What startRegistration()/startAuthentication() returned; its shape is checked by the passkey service, which
// answers PASSKEY_MALFORMED_CREDENTIAL (rather than a generic validation error) when it is not a WebAuthn response.
const Credential = T.Unknown({ description: 'The object startRegistration() / startAuthentication() resolved to' });

const PasskeyName = T.String({ minLength: 1, maxLength: 64, pattern: '\\S', examples: ['MacBook Touch ID'] });

export const RegisterPasskeyBody = T.Object({ credential: Credential, name: T.Optional(PasskeyName) });
export type RegisterPasskeyBody = Static<typeof RegisterPasskeyBody>;

export const AuthenticatePasskeyBody = T.Object({ credential: Credential });
export type AuthenticatePasskeyBody = Static<typeof AuthenticatePasskeyBody>;

export const AuthenticateOptionsQuery = T.Object({
  email: T.Optional(
    // The same rules as every email field (no control characters: a NUL would reach PostgreSQL, which refuses it).
    T.String({
      minLength: Email.minLength,
      maxLength: Email.maxLength,
      pattern: Email.pattern,
      description: 'Accept only this account’s passkeys (the options list none: they are the same for every address)',
    }),
  ),
});
export type AuthenticateOptionsQuery = Static<typeof AuthenticateOptionsQuery>;

export const Passkey = T.Object({
  id: T.String({ examples: ['pk_1732600000000_3k2j1h4g5f6d'] }),
  name: T.Union([T.String(), T.Null()]),
  deviceType: T.String({ description: 'singleDevice or multiDevice (synced)' }),
  backedUp: T.Boolean(),
  transports: T.Array(T.String()),
  aaguid: T.Union([T.String(), T.Null()], { description: 'Authenticator model; all zeros when not disclosed' }),
  createdAt: T.String({ format: 'date-time' }),
});

export const PasskeyResponse = T.Object({ success: T.Literal(true), passkey: Passkey });
export const PasskeyListResponse = T.Object({ success: T.Literal(true), passkeys: T.Array(Passkey) });
export const SuccessResponse = T.Object({ success: T.Literal(true) });

export const PasskeyParams = T.Object({ id: T.String({ minLength: 1, maxLength: 128 }) });
export type PasskeyParams = Static<typeof PasskeyParams>;

export const RenamePasskeyBody = T.Object({ name: PasskeyName });
export type RenamePasskeyBody = Static<typeof RenamePasskeyBody>;
