export {
  AUDIT_USER_AGENT_MAX,
  type AuditEntry,
  type AuditEvent,
  type AuditLog,
  type AuditOrigin,
  type AuditRow,
  createAuditLog,
} from './audit-log.js';
