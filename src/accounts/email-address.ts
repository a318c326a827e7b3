/**
 * The rules for an email address the gateway takes, from the /auth routes, the operator CLI and the config alike. Two
 * of them, because addresses already stored outlive the rule that let them in:
 *
 * - EMAIL_PATTERN, for an address the gateway is about to store (registration, the CLI's create-user, an address
 *   change, the config's dev user): the addresses Better Auth's sign-up takes (zod 4's z.email() on its body), so that
 *   the routes refuse every other one themselves, naming the field: dot-separated local parts of ASCII letters, digits
 *   and _ ' + - (not ending in '), and a domain with a top-level part of two or more letters.
 * - LOOKUP_EMAIL_PATTERN, for an address the gateway only looks up (sign-in, password reset, magic link, verification
 *   resend, passkey options): any bare ASCII address (an RFC 5322 dot-atom local part, a domain of letters, digits, dots
 *   and hyphens), the rule addresses were stored under before, so that `ops@localhost`, which the CLI created then,
 *   still signs in. An address it takes and the account rule does not is answered as an unknown one.
 *
 * Neither takes a display name, angle brackets, comments, quotes, commas or semicolons, which a mail library reads as
 * another recipient or a list (the mail would go to an inbox other than the one the send limits count), nor control
 * characters. Surrounding spaces are allowed and trimmed by whoever stores or looks up the address.
 */
export const EMAIL_PATTERN =
  "^\\s*(?:[A-Za-z0-9_'+-]+\\.)*[A-Za-z0-9_'+-]*[A-Za-z0-9_+-]@(?:[A-Za-z0-9][A-Za-z0-9-]*\\.)+[A-Za-z]{2,}\\s*$";

/** See above: the rule for an address that is only looked up, never stored. */
export const LOOKUP_EMAIL_PATTERN = "^\\s*[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+\\s*$";

/** RFC 5321 caps a path at 254 octets. */
export const EMAIL_MAX_LENGTH = 254;

const NEW_EMAIL = new RegExp(EMAIL_PATTERN);

/** Whether `value` may become an account's address as it is: EMAIL_PATTERN, no surrounding spaces, not over-long. */
export function isNewEmailAddress(value: string): boolean {
  return value.length <= EMAIL_MAX_LENGTH && value === value.trim() && NEW_EMAIL.test(value);
}
