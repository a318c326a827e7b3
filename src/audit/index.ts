export {
  AUDIT_USER_AGENT_MAX,
  type AuditEntry,
  type AuditEvent,
  type AuditLog,
  type AuditOrigin,
  type AuditRow,
  createAuditLog,
  restOrigin,
} from './audit-log.js';
