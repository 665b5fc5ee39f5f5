//! The OpenAPI 3.1 document of the API, written by hand, served at `/api/openapi.json`.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use serde_json::{Value, json};

fn error_responses(codes: &[&str]) -> serde_json::Map<String, Value> {
    codes.iter().map(|c| ((*c).to_owned(), json!({ "$ref": format!("#/components/responses/E{c}") }))).collect()
}

fn id_param() -> Value {
    json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } })
}

/// The document.
pub fn document() -> Value {
    let mut create_responses = error_responses(&["400", "401", "403", "413", "415", "422", "429"]);
    create_responses.insert(
        "201".into(),
        json!({ "description": "Created", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/invitation" } } } }),
    );
    let mut get_inv = error_responses(&["401", "404", "429"]);
    get_inv.insert("200".into(), json!({ "description": "The invitation (inviteRedeemUrl is always null)", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/invitation" } } } }));
    let mut list_users = error_responses(&["400", "401", "429"]);
    list_users.insert(
        "200".into(),
        json!({ "description": "A page of users", "content": { "application/json": { "schema": {
        "type": "object",
        "properties": {
            "@odata.context": { "type": "string" },
            "@odata.count": { "type": "integer", "description": "With $count=true and ConsistencyLevel: eventual: how many users match, over all pages." },
            "value": { "type": "array", "items": { "$ref": "#/components/schemas/user" } },
            "@odata.nextLink": { "type": "string", "description": "Present when more pages follow; it keeps the query options (send ConsistencyLevel again)." }
        }
    } } } }),
    );
    let mut get_user = error_responses(&["400", "401", "404", "429"]);
    get_user.insert("200".into(), json!({ "description": "The user", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/user" } } } }));
    let mut delete_user = error_responses(&["401", "403", "404", "429"]);
    delete_user
        .insert("204".into(), json!({ "description": "Removed from the organization (restorable for 30 days)" }));
    let error_codes = [
        ("400", "Bad request; the message names the field"),
        ("401", "Missing, unknown, expired or revoked API key"),
        ("403", "Refused by the organization's policy"),
        ("404", "No such resource in the key's organization"),
        ("413", "Body larger than 1 MiB"),
        ("415", "Content-Type is not JSON"),
        ("422", "Idempotency-Key reused with a different body"),
        ("405", "Method not allowed on this path; see Allow"),
        ("429", "Too many requests; see Retry-After"),
    ];
    let responses: serde_json::Map<String, Value> = error_codes
        .iter()
        .map(|(c, d)| {
            (format!("E{c}"), json!({ "description": d, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/error" } } } }))
        })
        .collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Vestibule API",
            "version": "1.0",
            "description": "Invite guests and list the people of an organization. Compatible with Microsoft Graph v1.0 `invitation`. Authenticate with `Authorization: Bearer <API key>`; one key acts for one organization."
        },
        "servers": [{ "url": "/" }],
        "security": [{ "apiKey": [] }],
        "paths": {
            "/api/v1.0/invitations": {
                "post": {
                    "operationId": "createInvitation",
                    "summary": "Invite a guest (Graph invitation)",
                    "parameters": [{ "name": "Idempotency-Key", "in": "header", "required": false, "schema": { "type": "string", "maxLength": 255 },
                        "description": "The first answer is replayed for 24 hours (inviteRedeemUrl null in replays); another body with the same key gets 422." }],
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/invitationRequest" } } } },
                    "responses": create_responses
                }
            },
            "/api/v1.0/invitations/{id}": {
                "get": { "operationId": "getInvitation", "summary": "One invitation", "parameters": [id_param()], "responses": get_inv }
            },
            "/api/v1.0/users": {
                "get": {
                    "operationId": "listUsers",
                    "summary": "People of the organization (by ascending id unless $orderby says otherwise)",
                    "parameters": [
                        { "name": "$filter", "in": "query", "schema": { "type": "string" }, "example": "startswith(mail,'ada') and userType eq 'Guest'",
                            "description": "Clauses joined by 'and': userType eq 'Guest'|'Member'; externalUserState eq 'PendingAcceptance'|'Accepted'; mail eq '…'; userPrincipalName eq '…'; displayName eq '…'; startswith(mail,'…'); startswith(displayName,'…'). Strings in single quotes, a quote doubled (''). Addresses and prefixes match in any case. Anything else: 400 Request_UnsupportedQuery." },
                        { "name": "$select", "in": "query", "schema": { "type": "string" }, "example": "id,displayName,mail",
                            "description": "Comma-separated user properties to return; Graph properties Vestibule does not keep are returned null (or [] for collections); unknown names: 400." },
                        { "name": "$orderby", "in": "query", "schema": { "type": "string", "enum": ["displayName", "displayName asc", "displayName desc", "createdDateTime", "createdDateTime asc", "createdDateTime desc"] },
                            "description": "As in Graph, createdDateTime, and $orderby together with $filter, need $count=true and ConsistencyLevel: eventual." },
                        { "name": "$count", "in": "query", "schema": { "type": "boolean" },
                            "description": "With ConsistencyLevel: eventual, adds @odata.count; without the header it is ignored, as Graph does." },
                        { "name": "ConsistencyLevel", "in": "header", "schema": { "type": "string", "enum": ["eventual"] } },
                        { "name": "$top", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 999, "default": 100 } },
                        { "name": "$skiptoken", "in": "query", "schema": { "type": "string" }, "description": "Opaque; take it from @odata.nextLink." }
                    ],
                    "responses": list_users
                }
            },
            "/api/v1.0/users/{id}": {
                "get": { "operationId": "getUser", "summary": "One person: id = membership id, or their email address (Graph's userPrincipalName)",
                    "parameters": [id_param(), { "name": "$select", "in": "query", "schema": { "type": "string" } }], "responses": get_user },
                "delete": { "operationId": "removeUser", "summary": "Remove from the organization (soft); id or email address", "parameters": [id_param()], "responses": delete_user }
            }
        },
        "components": {
            "securitySchemes": { "apiKey": { "type": "http", "scheme": "bearer", "description": "An API key made in the admin console or with `vestibule api-key create`." } },
            "responses": responses,
            "schemas": {
                "recipient": {
                    "type": "object", "additionalProperties": false, "required": ["emailAddress"],
                    "properties": {
                        "@odata.type": { "const": "#microsoft.graph.recipient" },
                        "emailAddress": { "type": "object", "additionalProperties": false,
                        "properties": { "@odata.type": { "const": "#microsoft.graph.emailAddress" }, "address": { "type": ["string", "null"], "format": "email" }, "name": { "type": ["string", "null"] } } } }
                },
                "invitedUserMessageInfo": {
                    "type": "object", "additionalProperties": false,
                    "properties": {
                        "@odata.type": { "const": "#microsoft.graph.invitedUserMessageInfo" },
                        "customizedMessageBody": { "type": ["string", "null"], "maxLength": 2000 },
                        "messageLanguage": { "type": ["string", "null"], "description": "en or fr (e.g. en-US, fr-FR), answered back as written; others fall back to the usual choice" },
                        "ccRecipients": { "type": "array", "maxItems": 1, "items": { "$ref": "#/components/schemas/recipient" },
                            "description": "Gets a copy of the invitation without the redeem link." }
                    }
                },
                "invitationRequest": {
                    "type": "object", "additionalProperties": false, "required": ["invitedUserEmailAddress", "inviteRedirectUrl"],
                    "properties": {
                        "@odata.type": { "const": "#microsoft.graph.invitation", "description": "Optional, as Graph's SDKs send it; another type is refused." },
                        "invitedUserEmailAddress": { "type": "string", "format": "email" },
                        "inviteRedirectUrl": { "type": "string", "format": "uri", "description": "A Vestibule page, an app of the org, or an origin on its redirect allow-list" },
                        "invitedUserDisplayName": { "type": ["string", "null"] },
                        "sendInvitationMessage": { "type": "boolean", "default": false },
                        "invitedUserType": { "type": "string", "default": "Guest", "description": "Guest or Member, in any case" },
                        "invitedUserMessageInfo": { "$ref": "#/components/schemas/invitedUserMessageInfo" },
                        "resetRedemption": { "type": "boolean", "default": false },
                        "invitedUser": { "type": "object", "additionalProperties": false, "properties": {
                            "@odata.type": { "const": "#microsoft.graph.user" },
                            "id": { "type": "string", "description": "Membership id (the user id of this API)" } } },
                        "invitedUserSponsors": { "type": "array", "maxItems": 1, "description": "The person's sponsor: the user id of an active member (not a guest) of the organization. Vestibule keeps one sponsor per person.",
                            "items": { "type": "object", "additionalProperties": false, "required": ["id"], "properties": {
                                "@odata.type": { "enum": ["#microsoft.graph.user", "#microsoft.graph.directoryObject"] }, "id": { "type": "string" } } } }
                    }
                },
                "invitation": {
                    "type": "object",
                    "properties": {
                        "id": { "type": "string" },
                        "invitedUserEmailAddress": { "type": "string" },
                        "invitedUserDisplayName": { "type": "string" },
                        "invitedUserType": { "type": "string", "enum": ["Guest", "Member"] },
                        "inviteRedirectUrl": { "type": ["string", "null"] },
                        "inviteRedeemUrl": { "type": ["string", "null"], "description": "Only in the create response, and only when sendInvitationMessage is false (the link is then marked disclosed)" },
                        "sendInvitationMessage": { "type": "boolean" },
                        "resetRedemption": { "type": "boolean" },
                        "status": { "type": "string", "enum": ["PendingAcceptance", "Completed", "Expired", "Revoked"] },
                        "invitedUserMessageInfo": { "$ref": "#/components/schemas/invitedUserMessageInfo" },
                        "invitedUser": { "type": "object", "properties": { "id": { "type": "string" }, "userPrincipalName": { "type": "string" } } },
                        "invitedUserSponsors": { "type": "array", "items": { "type": "object", "properties": { "id": { "type": "string" } } } },
                        "@odata.context": { "type": "string" }
                    }
                },
                "user": {
                    "type": "object",
                    "properties": {
                        "id": { "type": "string" },
                        "displayName": { "type": "string" },
                        "mail": { "type": "string" },
                        "userPrincipalName": { "type": "string", "description": "The email address" },
                        "preferredLanguage": { "type": ["string", "null"] },
                        "businessPhones": { "type": "array", "items": { "type": "string" }, "description": "Always empty" },
                        "givenName": { "type": "null" }, "surname": { "type": "null" }, "jobTitle": { "type": "null" },
                        "mobilePhone": { "type": "null" }, "officeLocation": { "type": "null" },
                        "accountEnabled": { "type": "boolean", "description": "Only with $select: false when blocked" },
                        "userType": { "type": "string", "enum": ["Guest", "Member"] },
                        "externalUserState": { "type": "string", "enum": ["PendingAcceptance", "Accepted"] },
                        "externalUserStateChangeDateTime": { "type": "string", "format": "date-time", "description": "When the state last changed: acceptance, or a reset of the redemption" },
                        "createdDateTime": { "type": "string", "format": "date-time" }
                    }
                },
                "error": {
                    "type": "object",
                    "properties": { "error": { "type": "object", "properties": {
                        "code": { "type": "string" }, "message": { "type": "string" },
                        "innerError": { "type": "object", "properties": { "request-id": { "type": "string" } } }
                    } } }
                }
            }
        }
    })
}

/// `GET /api/openapi.json` (public: it holds no data).
pub async fn serve() -> HttpResponse {
    super::json(StatusCode::OK, &document())
}
