ALTER TABLE organizations DROP COLUMN mfa_policy;
ALTER TABLE oidc_tokens DROP COLUMN amr;
ALTER TABLE oidc_codes DROP COLUMN amr;
DROP TABLE recovery_codes;
DROP TABLE second_factors;
