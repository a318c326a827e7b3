/**
 * The one rule for an email address the gateway takes, from the /auth routes and from the operator CLI alike: an
 * account created with an address the routes refuse could never sign in.
 *
 * The addresses Better Auth's sign-up takes (zod 4's z.email() on its body), so that the routes refuse every other one
 * themselves, naming the field: dot-separated local parts of ASCII letters, digits and _ ' + - (not ending in '), and a
 * domain with a top-level part of two or more letters. So no display name, angle brackets, comments, quotes, commas or
 * semicolons, which a mail library reads as another recipient or a list (the mail would go to an inbox other than the
 * one the send limits count). Surrounding spaces are allowed and trimmed by whoever stores the address.
 */
export const EMAIL_PATTERN =
  "^\\s*(?:[A-Za-z0-9_'+-]+\\.)*[A-Za-z0-9_'+-]*[A-Za-z0-9_+-]@(?:[A-Za-z0-9][A-Za-z0-9-]*\\.)+[A-Za-z]{2,}\\s*$";

/** RFC 5321 caps a path at 254 octets. */
export const EMAIL_MAX_LENGTH = 254;
