/**
 * The one rule for an email address the gateway takes, from the /auth routes and from the operator CLI alike: an
 * account created with an address the routes refuse could never sign in.
 *
 * A bare ASCII address (an RFC 5322 dot-atom local part; Better Auth refuses internationalised ones): no display name,
 * angle brackets, comments, quotes, commas or semicolons, which a mail library reads as another recipient or a list
 * (the mail would go to an inbox other than the one the send limits count), and no control characters. Surrounding
 * spaces are allowed and trimmed by whoever stores the address.
 */
export const EMAIL_PATTERN = "^\\s*[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+\\s*$";

/** RFC 5321 caps a path at 254 octets. */
export const EMAIL_MAX_LENGTH = 254;
