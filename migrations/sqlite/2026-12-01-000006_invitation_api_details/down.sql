DROP TABLE invitation_api_details;
