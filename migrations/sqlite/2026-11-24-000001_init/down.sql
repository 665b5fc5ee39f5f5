DROP TABLE one_time_links; DROP TABLE audit_events; DROP TABLE outbox; DROP TABLE sessions; DROP TABLE invitations; DROP TABLE memberships; DROP TABLE users; DROP TABLE organizations;
