export { createMailer, type EmailMessage, type Mailer, type MailerOptions } from './mailer.js';
