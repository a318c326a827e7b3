export { type AuditEntry, type AuditEvent, type AuditLog, type AuditRow, createAuditLog } from './audit-log.js';
