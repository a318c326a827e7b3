-- Auth gateway schema. Idempotent: running it again on a prepared database changes nothing and fails nothing.
--   psql "$DATABASE_URL" -f schema.sql     or     npm run migrate
-- The advisory lock serialises concurrent runs (several gateway processes starting at once migrate once).

BEGIN;
SELECT pg_advisory_xact_lock(727210001);

-- Core tables ----------------------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS users (
  id             TEXT PRIMARY KEY,
  email          TEXT NOT NULL,
  email_verified BOOLEAN NOT NULL DEFAULT FALSE,
  name           TEXT NOT NULL DEFAULT '',
  image          TEXT,
  created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- One account per address, whatever its case.
CREATE UNIQUE INDEX IF NOT EXISTS users_email_lower_key ON users (lower(email));
-- Emails are stored lower-cased, and Better Auth looks users up by `email = $1` (every password sign-in, reset and
-- magic link): the expression index above cannot serve that, so without this one each sign-in scanned the table.
CREATE INDEX IF NOT EXISTS users_email_idx ON users (email);
-- Lower-cased whoever writes them: a migration's INSERT (the design's own copies addresses as typed) or psql. A row
-- kept as 'Ada@Example.com' was never found by those lookups: no sign-in, no reset mail, and EMAIL_TAKEN to register.
-- Rows written before this trigger are lower-cased once (no two differ only by case: the unique index above).
CREATE OR REPLACE FUNCTION gateway_lower_email() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.email := lower(NEW.email);
  RETURN NEW;
END;
$$;
CREATE OR REPLACE TRIGGER users_email_lower BEFORE INSERT OR UPDATE OF email ON users
  FOR EACH ROW EXECUTE FUNCTION gateway_lower_email();
UPDATE users SET email = lower(email) WHERE email <> lower(email);

-- Better Auth's "account" model: one row per sign-in method; password_hash is set for provider 'credential'.
CREATE TABLE IF NOT EXISTS user_credentials (
  id                       TEXT PRIMARY KEY,
  user_id                  TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  account_id               TEXT NOT NULL,
  provider_id              TEXT NOT NULL,
  password_hash            TEXT,
  access_token             TEXT,
  refresh_token            TEXT,
  id_token                 TEXT,
  access_token_expires_at  TIMESTAMPTZ,
  refresh_token_expires_at TIMESTAMPTZ,
  scope                    TEXT,
  created_at               TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at               TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS user_credentials_user_id_idx ON user_credentials (user_id);
CREATE UNIQUE INDEX IF NOT EXISTS user_credentials_provider_account_key ON user_credentials (provider_id, account_id);

CREATE TABLE IF NOT EXISTS sessions (
  id         TEXT PRIMARY KEY,
  user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  token      TEXT NOT NULL UNIQUE,
  expires_at TIMESTAMPTZ NOT NULL,
  ip_address TEXT,
  user_agent TEXT,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS sessions_user_id_idx ON sessions (user_id);
CREATE INDEX IF NOT EXISTS sessions_expires_at_idx ON sessions (expires_at);

CREATE TABLE IF NOT EXISTS passkeys (
  id                    TEXT PRIMARY KEY,
  name                  TEXT,
  user_id               TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  credential_id         TEXT NOT NULL UNIQUE,
  credential_public_key TEXT NOT NULL,
  -- The WebAuthn signature counter: unsigned 32-bit (0..4294967295), past INTEGER. node-postgres returns BIGINT as a
  -- string: src/passkeys/passkey.store.ts reads it as a number (exact up to 2^53); Better Auth's passkey routes, which
  -- would not convert it, are not served.
  counter               BIGINT NOT NULL DEFAULT 0,
  device_type           TEXT NOT NULL DEFAULT 'singleDevice',
  backed_up             BOOLEAN NOT NULL DEFAULT FALSE,
  transports            TEXT,
  aaguid                TEXT,
  created_at            TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS passkeys_user_id_idx ON passkeys (user_id);
-- Databases made while the counter was INTEGER: widened once (a rewrite under ACCESS EXCLUSIVE, counters kept). The
-- type is checked first so that every later start neither rewrites nor locks the table. The regclass resolves the
-- passkeys table through search_path, as the ALTER would.
DO $$
BEGIN
  IF (SELECT atttypid FROM pg_attribute WHERE attrelid = 'passkeys'::regclass AND attname = 'counter')
     = 'integer'::regtype THEN
    ALTER TABLE passkeys ALTER COLUMN counter TYPE BIGINT;
  END IF;
END
$$;

-- Email verification, password reset, passkey challenges: short-lived, single-use values.
CREATE TABLE IF NOT EXISTS verification_tokens (
  id         TEXT PRIMARY KEY,
  identifier TEXT NOT NULL,
  token      TEXT NOT NULL,
  expires_at TIMESTAMPTZ NOT NULL,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS verification_tokens_identifier_idx ON verification_tokens (identifier);
CREATE INDEX IF NOT EXISTS verification_tokens_expires_at_idx ON verification_tokens (expires_at);

-- Integration tables ---------------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS user_licenses (
  user_id         TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
  license_type    TEXT NOT NULL DEFAULT 'free',
  features        JSONB NOT NULL DEFAULT '{}'::jsonb,
  resource_limits JSONB NOT NULL DEFAULT '{}'::jsonb,
  created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS user_channel_links (
  id              BIGSERIAL PRIMARY KEY,
  user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  channel_type    TEXT NOT NULL -- telegram, slack, discord, websocket, ...: a new channel is a handler, not a schema change.
                  CHECK (channel_type ~ '^[a-z][a-z0-9_]{0,31}$'),
  channel_user_id TEXT NOT NULL,
  created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
  UNIQUE (channel_type, channel_user_id)
);
CREATE INDEX IF NOT EXISTS user_channel_links_user_id_idx ON user_channel_links (user_id);

-- Audit log: one row per security event; details never hold a secret (see src/audit/).
CREATE TABLE IF NOT EXISTS auth_audit_log (
  id         BIGSERIAL PRIMARY KEY,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  event      TEXT NOT NULL,
  user_id    TEXT REFERENCES users (id) ON DELETE SET NULL,
  session_id TEXT,
  channel    TEXT,
  ip_address TEXT,
  user_agent TEXT,
  details    JSONB NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS auth_audit_log_user_id_idx ON auth_audit_log (user_id, id DESC);
CREATE INDEX IF NOT EXISTS auth_audit_log_created_at_idx ON auth_audit_log (created_at);

-- Idle timeout (auth.session.idle_timeout): when a session was last used, written at most once a minute.
ALTER TABLE sessions ADD COLUMN IF NOT EXISTS last_used_at TIMESTAMPTZ NOT NULL DEFAULT now();

-- Session end events ---------------------------------------------------------------------------------------------
-- Every way a session ends by deletion (sign-out through any route or process, revocation, password reset, user
-- deletion through ON DELETE CASCADE) notifies 'gateway_session_ended' with {"sid","uid"}. Gateway processes LISTEN
-- and close sockets and drop cached sessions at once, whichever process ended the session.
CREATE OR REPLACE FUNCTION gateway_notify_session_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('gateway_session_ended', json_build_object('sid', OLD.id, 'uid', OLD.user_id)::text);
  RETURN OLD;
END;
$$;
CREATE OR REPLACE TRIGGER sessions_ended AFTER DELETE ON sessions
  FOR EACH ROW EXECUTE FUNCTION gateway_notify_session_ended();

-- A user's identity or license changed (email, name, role, disabled, license...): processes drop cached sessions of
-- that user so the change shows on the next request. Same channel as session ends, so both stay in commit order.
CREATE OR REPLACE FUNCTION gateway_notify_user_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  -- Through jsonb: NEW of user_licenses has no "id" and NEW of users no "user_id".
  uid TEXT := CASE
    WHEN TG_TABLE_NAME = 'users' THEN to_jsonb(NEW) ->> 'id'
    WHEN TG_OP = 'DELETE' THEN to_jsonb(OLD) ->> 'user_id'
    ELSE to_jsonb(NEW) ->> 'user_id'
  END;
BEGIN
  PERFORM pg_notify('gateway_session_ended', json_build_object('uid', uid, 'user', true)::text);
  RETURN NULL;
END;
$$;
CREATE OR REPLACE TRIGGER users_changed AFTER UPDATE ON users
  FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION gateway_notify_user_changed();
CREATE OR REPLACE TRIGGER user_licenses_changed_cache AFTER INSERT OR UPDATE OR DELETE ON user_licenses
  FOR EACH ROW EXECUTE FUNCTION gateway_notify_user_changed();

-- Two-factor (TOTP) ---------------------------------------------------------------------------------------------
-- Better Auth's twoFactor plugin model. secret and backup_codes are encrypted with auth.secret by the plugin; a row
-- with verified = false is an enrolment not yet confirmed with a first code. The failure counter and lock implement the
-- per-account lockout on wrong codes.
ALTER TABLE users ADD COLUMN IF NOT EXISTS two_factor_enabled BOOLEAN NOT NULL DEFAULT FALSE;
CREATE TABLE IF NOT EXISTS two_factor (
  id                        TEXT PRIMARY KEY,
  user_id                   TEXT NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
  secret                    TEXT NOT NULL,
  backup_codes              TEXT NOT NULL,
  verified                  BOOLEAN NOT NULL DEFAULT TRUE,
  failed_verification_count INTEGER NOT NULL DEFAULT 0,
  locked_until              TIMESTAMPTZ,
  -- The last TOTP time step accepted by the gateway's own checks (confirm, re-authentication): no replays.
  last_used_step            BIGINT
);
-- Sign-in by OAuth, magic link and anonymous trial (src/accounts/) ------------------------------------------------
ALTER TABLE users ADD COLUMN IF NOT EXISTS is_anonymous BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX IF NOT EXISTS users_anonymous_created_idx ON users (created_at) WHERE is_anonymous;

-- One-time codes that end a browser sign-in (OAuth, magic link): POST /auth/oauth/exchange turns one into the JWT of
-- its session. Only the SHA-256 of the code is stored; a code lives code_ttl seconds and is used once.
CREATE TABLE IF NOT EXISTS auth_exchange_codes (
  code_hash  TEXT PRIMARY KEY,
  session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
  user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  expires_at TIMESTAMPTZ NOT NULL,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS auth_exchange_codes_expires_at_idx ON auth_exchange_codes (expires_at);
-- PKCE-style binding (RFC 7636, S256): the challenge the front end gave when it started the flow. A bound code is
-- exchanged only with its verifier, so a code minted in someone else's browser cannot sign this one in.
ALTER TABLE auth_exchange_codes ADD COLUMN IF NOT EXISTS code_challenge TEXT;

-- Magic links: the SHA-256 of the emailed token; used_at marks single use; rows also count requests per address.
CREATE TABLE IF NOT EXISTS magic_link_tokens (
  token_hash TEXT PRIMARY KEY,
  email      TEXT NOT NULL,
  expires_at TIMESTAMPTZ NOT NULL,
  used_at    TIMESTAMPTZ,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS magic_link_tokens_email_idx ON magic_link_tokens (email, created_at);
-- The requester's code challenge, handed on to the exchange code the link mints (see auth_exchange_codes).
ALTER TABLE magic_link_tokens ADD COLUMN IF NOT EXISTS code_challenge TEXT;

-- One-time codes that link a channel account (e.g. a Telegram user) to the signed-in user who asked for the code.
-- Only a SHA-256 of the code is stored; redeeming deletes the row, so a code works once even under concurrency.
CREATE TABLE IF NOT EXISTS channel_link_codes (
  code_hash    TEXT PRIMARY KEY,
  user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  channel_type TEXT NOT NULL CHECK (channel_type ~ '^[a-z][a-z0-9_]{0,31}$'),
  expires_at   TIMESTAMPTZ NOT NULL,
  created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS channel_link_codes_user_id_idx ON channel_link_codes (user_id);
-- The session that asked for the code. Whatever ends it (a revocation, a sign-out, a password change, expiry and the
-- purge) deletes the code with it, so a code taken by a session the owner shut out links nothing. NULL only on codes
-- issued before this column, which redeeming refuses (they lived ten minutes at most). The index keeps the cascade a
-- lookup: the purge deletes expired sessions a thousand at a time.
ALTER TABLE channel_link_codes ADD COLUMN IF NOT EXISTS session_id TEXT REFERENCES sessions (id) ON DELETE CASCADE;
CREATE INDEX IF NOT EXISTS channel_link_codes_session_id_idx ON channel_link_codes (session_id);
-- Accounts: devices, last use, IP allow lists, roles, disabling, license events (src/accounts, src/licenses) ------
-- A device is what a client keeps across sign-ins: a gateway-minted (or client-chosen, >= 22 chars) key sent as
-- X-Device-Id or the gateway_device cookie; only its SHA-256 is stored. Sessions signed in with it share device_id.
CREATE TABLE IF NOT EXISTS devices (
  id            TEXT PRIMARY KEY,
  user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  key_hash      TEXT NOT NULL,
  name          TEXT NOT NULL DEFAULT '',
  user_agent    TEXT,
  trusted_until TIMESTAMPTZ,
  created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
  last_seen_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
  UNIQUE (user_id, key_hash)
);
ALTER TABLE sessions ADD COLUMN IF NOT EXISTS device_id TEXT REFERENCES devices (id) ON DELETE CASCADE;
CREATE INDEX IF NOT EXISTS sessions_device_id_idx ON sessions (device_id);
-- Written at most once a minute per session by the Authenticator (see LAST_USED_THROTTLE_SECONDS).
ALTER TABLE sessions ADD COLUMN IF NOT EXISTS last_used_at TIMESTAMPTZ;
-- The channel of that last recorded use: rest, websocket.
ALTER TABLE sessions ADD COLUMN IF NOT EXISTS last_channel TEXT;
-- Per-user allow list of CIDRs; NULL or empty: no per-user restriction (the global lists still apply).
ALTER TABLE users ADD COLUMN IF NOT EXISTS ip_allowlist TEXT[];
ALTER TABLE users ADD COLUMN IF NOT EXISTS role TEXT NOT NULL DEFAULT 'user';
-- Set: the user cannot sign in or authenticate on any channel; disabling also deletes their sessions and pending
-- channel link codes.
ALTER TABLE users ADD COLUMN IF NOT EXISTS disabled_at TIMESTAMPTZ;

-- Every license change (admin API, CLI, psql) notifies 'gateway_license_changed' with {"uid"}: open sockets
-- refresh their limits without a new login.
CREATE OR REPLACE FUNCTION gateway_notify_license_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('gateway_license_changed',
    json_build_object('uid', CASE WHEN TG_OP = 'DELETE' THEN OLD.user_id ELSE NEW.user_id END)::text);
  RETURN NULL;
END;
$$;
CREATE OR REPLACE TRIGGER user_licenses_changed AFTER INSERT OR UPDATE OR DELETE ON user_licenses
  FOR EACH ROW EXECUTE FUNCTION gateway_notify_license_changed();

-- A passkey makes an anonymous (trial) user permanent: the user can now sign in again, so the cleanup of old
-- anonymous users must not delete it. A trigger covers every route that adds passkeys (ours and Better Auth's).
CREATE OR REPLACE FUNCTION gateway_passkey_upgrades_anonymous() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE users SET is_anonymous = FALSE, updated_at = now() WHERE id = NEW.user_id AND is_anonymous;
  RETURN NULL;
END;
$$;
CREATE OR REPLACE TRIGGER passkeys_upgrade_anonymous AFTER INSERT ON passkeys
  FOR EACH ROW EXECUTE FUNCTION gateway_passkey_upgrades_anonymous();

-- A trusted device skips the two-factor prompt. Trust given under one set of credentials does not outlive them:
-- turning two-factor authentication on or off, or a new password (change, reset, any route or plain SQL), withdraws
-- every trust of that user, so a device trusted while only the password guarded the account skips nothing later.
CREATE OR REPLACE FUNCTION gateway_withdraw_device_trust() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE devices SET trusted_until = NULL
   WHERE user_id = CASE WHEN TG_TABLE_NAME = 'users' THEN to_jsonb(NEW) ->> 'id' ELSE to_jsonb(NEW) ->> 'user_id' END
     AND trusted_until IS NOT NULL;
  RETURN NULL;
END;
$$;
CREATE OR REPLACE TRIGGER users_two_factor_changed AFTER UPDATE OF two_factor_enabled ON users
  FOR EACH ROW WHEN (OLD.two_factor_enabled IS DISTINCT FROM NEW.two_factor_enabled)
  EXECUTE FUNCTION gateway_withdraw_device_trust();
CREATE OR REPLACE TRIGGER credentials_password_changed AFTER UPDATE OF password_hash ON user_credentials
  FOR EACH ROW WHEN (OLD.password_hash IS DISTINCT FROM NEW.password_hash)
  EXECUTE FUNCTION gateway_withdraw_device_trust();

-- What was issued under the old password does not outlive it either: a new, first or removed password (change,
-- reset, any route or plain SQL) voids the user's pending password-reset links, two-factor sign-in challenges (a
-- password already checked, waiting for its code), trusted-device and account-deletion tokens: Better Auth's
-- verification rows whose value is the user id. So an owner who resets a leaked password also shuts out whoever
-- holds the other reset links or stands at the code prompt with it. Pending channel link codes go too: one taken
-- with the leaked password would otherwise link the taker's Telegram account (and sign it in) after the reset.
CREATE OR REPLACE FUNCTION gateway_void_password_proofs() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  changed user_credentials := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
BEGIN
  IF changed.provider_id <> 'credential'
     OR (TG_OP = 'UPDATE' AND OLD.password_hash IS NOT DISTINCT FROM NEW.password_hash) THEN
    RETURN NULL;
  END IF;
  DELETE FROM verification_tokens WHERE token = changed.user_id;
  DELETE FROM channel_link_codes WHERE user_id = changed.user_id;
  RETURN NULL;
END;
$$;
CREATE OR REPLACE TRIGGER credentials_password_voids_proofs
  AFTER INSERT OR UPDATE OF password_hash OR DELETE ON user_credentials
  FOR EACH ROW EXECUTE FUNCTION gateway_void_password_proofs();

-- A deleted user leaves no verification row behind (verification_tokens has no foreign key: its value names the
-- user): Better Auth's (value = the user id), the gateway's email links (value = '<user id>' LF '<address>') and an
-- anonymous user's pending upgrade (identifier 'anonymous-upgrade:<user id>', value holding the address and the
-- password's hash). One statement per deleting statement, whatever deleted them (the account route, the admin API, the
-- CLI, the anonymous cleanup, psql).
CREATE OR REPLACE FUNCTION gateway_forget_deleted_users() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- Two statements, not one with an OR: an OR join can only be a nested loop over the whole table for every deleted
  -- user (22.7 s for the anonymous cleanup of 20,000 users beside 20,000 tokens, past the statement timeout, rolled
  -- back at every run); apart, the first is a hash join and the second uses the identifier index (about 1 s).
  DELETE FROM verification_tokens v USING gone WHERE split_part(v.token, E'\n', 1) = gone.id;
  DELETE FROM verification_tokens WHERE identifier IN (SELECT 'anonymous-upgrade:' || id FROM gone);
  RETURN NULL;
END;
$$;
CREATE OR REPLACE TRIGGER users_deleted_forget AFTER DELETE ON users
  REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION gateway_forget_deleted_users();

COMMIT;
