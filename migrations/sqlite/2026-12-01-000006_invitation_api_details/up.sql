-- What a JSON API client sent with an invitation that the invitation row does not keep, so
-- that GET /api/v1.0/invitations/{id} answers it as given (Graph echoes these fields).
CREATE TABLE invitation_api_details (
    invitation_id TEXT PRIMARY KEY NOT NULL REFERENCES invitations (id) ON DELETE CASCADE,
    -- invitedUserDisplayName as given (null: none was given; Vestibule then names the person
    -- after their address).
    display_name TEXT,
    -- invitedUserMessageInfo.messageLanguage as written (e.g. fr-FR).
    message_language TEXT,
    -- invitedUserMessageInfo.ccRecipients[0].emailAddress.
    cc_address TEXT,
    cc_name TEXT,
    -- invitedUserSponsors[0].id: the sponsor's id in the API (their membership id).
    sponsor_id TEXT
);
