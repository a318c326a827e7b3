/** What the bot says. Kept together so the wording is consistent and easy to review. */
export const replies = {
  howToLink: (baseUrl: string) =>
    [
      'This Telegram account is not linked to an account on this gateway yet.',
      '',
      `To link it: sign in at ${baseUrl}, ask for a Telegram link code (POST /auth/channels/telegram/link-code), ` +
        'then open the link you get, or send /link <code> here. Codes work once, for 10 minutes.',
    ].join('\n'),
  linkUsage: 'Send /link <code> with the code you got after signing in.',
  linked: (email: string) => `Linked. This Telegram account now chats as ${email}.`,
  alreadyLinked: (email: string) => `This Telegram account is already linked to ${email}.`,
  codeInvalid: 'That code is not valid (codes work once). Ask for a new one after signing in.',
  codeExpired: 'That code has expired (codes last 10 minutes). Ask for a new one after signing in.',
  tooManyAttempts: (minutes: number) =>
    `Too many wrong codes from this Telegram account. Try again in ${minutes} min, with a new code after signing in.`,
  linkedElsewhere: 'This Telegram account is linked to another user. Send /unlink first to link it to a different one.',
  whoami: (email: string, name: string, license: string) =>
    `Linked to ${name ? `${name} <${email}>` : email}; license: ${license}.`,
  unlinked: 'Unlinked. This Telegram account no longer acts for any user.',
  notLinked: 'This Telegram account is not linked to any user.',
  welcomeBack: (name: string) => `Welcome back${name ? `, ${name}` : ''}. Send a message to chat.`,
  noChat: 'Your license does not include chat.',
  rateLimited: (seconds: number) => `You are sending messages too fast for your license. Try again in ${seconds} s.`,
  chatUnavailable: 'The chat service is unavailable right now. Please try again later.',
  truncated: '(truncated)',
  unknownCommand: 'Unknown command. Commands: /link <code>, /whoami, /unlink.',
} as const;

/**
 * Telegram refuses a message over 4096 UTF-16 code units (what String#length counts) and a blank one: split a long
 * reply into parts it accepts. Nothing is lost but blank parts; joined, the parts give the text back.
 */
export function splitMessage(text: string, max = 4096): string[] {
  const parts: string[] = [];
  let rest = text;
  while (rest.length > max) {
    const cut = cutPoint(rest, max);
    parts.push(rest.slice(0, cut));
    rest = rest.slice(cut);
  }
  parts.push(rest);
  return parts.filter((part) => part.trim() !== '');
}

/**
 * Where a part of `text` (longer than `max`) ends: after the last line break, else space, in the last fifth of the
 * window, so a cut rarely lands inside a word; failing that at `max`, one unit earlier if that would separate the
 * halves of a surrogate pair (an emoji), which would leave both parts ill-formed.
 */
function cutPoint(text: string, max: number): number {
  const floor = max - Math.floor(max / 5);
  for (const separator of ['\n', ' ']) {
    const at = text.lastIndexOf(separator, max - 1);
    if (at >= floor) return at + 1;
  }
  const last = text.charCodeAt(max - 1);
  return last >= 0xd800 && last <= 0xdbff && max > 1 ? max - 1 : max;
}
