DROP TABLE idp_requests;
DROP TABLE idp_bindings;
DROP TABLE idp_domains;
DROP TABLE idp_providers;
