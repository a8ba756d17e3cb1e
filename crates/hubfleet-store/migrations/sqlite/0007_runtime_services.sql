-- Version 7: services created through the REST API (JupyterHub 5's `POST /services/{name}`) live
-- in the database alongside those from the configuration, so they survive hub restarts.
-- `from_config` tells them apart: only runtime services may be deleted through the API, and the
-- configuration never overwrites one. The other columns are the service's model; the OAuth
-- client itself stays in `oauth_clients`, named by `oauth_client_id`. JSON values are TEXT.

ALTER TABLE services ADD COLUMN from_config BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE services ADD COLUMN url TEXT;
ALTER TABLE services ADD COLUMN info TEXT NOT NULL DEFAULT '{}';
ALTER TABLE services ADD COLUMN display BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE services ADD COLUMN oauth_client_id TEXT;
ALTER TABLE services ADD COLUMN oauth_no_confirm BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE services ADD COLUMN oauth_client_allowed_scopes TEXT NOT NULL DEFAULT '[]';

-- Share codes are purged once expired (as tokens and OAuth codes are); find them by expiry.
CREATE INDEX share_codes_expires ON share_codes (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX api_tokens_expires ON api_tokens (expires_at) WHERE expires_at IS NOT NULL;
