/** The MMU invariant auditor (see ./audit.ts): one call over the whole engine state, on demand. */
export { auditEngine, canAudit, formatViolations, AUDIT_VIOLATION, AuditSink, type AuditReport, type AuditViolation, type Auditable } from './audit';
