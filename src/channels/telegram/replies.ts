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
  linkedElsewhere: 'This Telegram account is linked to another user. Send /unlink first to link it to a different one.',
  whoami: (email: string, name: string, license: string) =>
    `Linked to ${name ? `${name} <${email}>` : email}; license: ${license}.`,
  unlinked: 'Unlinked. This Telegram account no longer acts for any user.',
  notLinked: 'This Telegram account is not linked to any user.',
  welcomeBack: (name: string) => `Welcome back${name ? `, ${name}` : ''}. Send a message to chat.`,
  noChat: 'Your license does not include chat.',
  rateLimited: (seconds: number) => `You are sending messages too fast for your license. Try again in ${seconds} s.`,
  chatUnavailable: 'The chat service is unavailable right now. Please try again later.',
  unknownCommand: 'Unknown command. Commands: /link <code>, /whoami, /unlink.',
} as const;

/** Telegram refuses messages over 4096 characters: split long replies. */
export function splitMessage(text: string, max = 4096): string[] {
  const parts: string[] = [];
  for (let i = 0; i < text.length; i += max) parts.push(text.slice(i, i + max));
  return parts.length > 0 ? parts : [''];
}
