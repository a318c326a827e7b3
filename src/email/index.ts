export { gatewayLink } from './links.js';
export { createMailer, type EmailMessage, type Mailer, type MailerOptions } from './mailer.js';
export {
  confirmAddressEmail,
  type LinkEmailInput,
  passwordChangedEmail,
  passwordResetEmail,
  securityNoticeEmail,
  verificationEmail,
} from './templates.js';
