-- Sessions and tokens that end server-side. A session cookie carries its user's
-- session_epoch at log-in and is honoured only while it still matches: log-out,
-- a password change and disabling the user raise it, ending every session of that
-- user (signed cookies cannot be recalled, so the check is on our side).
-- A disabled user (disabled_at set) can neither log in nor use its tokens; a
-- revoked token (revoked_at set) is refused for good.
ALTER TABLE users ADD COLUMN session_epoch BIGINT DEFAULT 0;
ALTER TABLE users ADD COLUMN disabled_at TIMESTAMP;
ALTER TABLE api_tokens ADD COLUMN revoked_at TIMESTAMP;
