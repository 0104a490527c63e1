-- Dashboard users and their API tokens. Passwords are werkzeug salted hashes
-- (scrypt/pbkdf2); tokens are random 256-bit strings kept only as SHA-256 hex,
-- shown once when created.

CREATE SEQUENCE user_id_seq START 1;

CREATE TABLE users (
    user_id       BIGINT PRIMARY KEY DEFAULT nextval('user_id_seq'),
    name          VARCHAR NOT NULL UNIQUE,
    role          VARCHAR NOT NULL CHECK (role IN ('admin', 'buyer', 'agency')),
    agency        VARCHAR,      -- set for (and only for) role 'agency'
    password_hash VARCHAR,      -- NULL: API tokens only, no log-in
    created_at    TIMESTAMP NOT NULL
);

CREATE SEQUENCE api_token_id_seq START 1;

CREATE TABLE api_tokens (
    token_id     BIGINT PRIMARY KEY DEFAULT nextval('api_token_id_seq'),
    user_id      BIGINT NOT NULL,
    token_sha256 VARCHAR NOT NULL UNIQUE,
    prefix       VARCHAR NOT NULL,  -- the first characters, to tell tokens apart
    created_at   TIMESTAMP NOT NULL
);
