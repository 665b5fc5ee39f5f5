DROP TABLE signin_codes;
ALTER TABLE organizations DROP COLUMN email_codes;
