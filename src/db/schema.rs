//! Diesel table definitions shared by both backends (hand-written: only types that
//! `MultiConnection` supports: Text, BigInt, Bool, Timestamp).

diesel::table! {
    organizations (id) {
        id -> Text,
        slug -> Text,
        name -> Text,
        privacy_url -> Nullable<Text>,
        default_language -> Text,
        invite_lifetime_days -> BigInt,
        redirect_allowlist -> Text,
        created_at -> Timestamp,
        invite_policy -> Text,
        domain_mode -> Text,
        domain_list -> Text,
        invites_per_hour -> BigInt,
        guest_access_days -> Nullable<BigInt>,
        email_codes -> Bool,
        mfa_policy -> Text,
    }
}

diesel::table! {
    users (id) {
        id -> Text,
        email -> Text,
        display_name -> Text,
        name_search -> Text,
        password_hash -> Nullable<Text>,
        email_verified -> Bool,
        language -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    memberships (id) {
        id -> Text,
        org_id -> Text,
        user_id -> Text,
        user_type -> Text,
        role -> Text,
        state -> Text,
        blocked -> Bool,
        invited_by -> Nullable<Text>,
        accepted_at -> Nullable<Timestamp>,
        removed_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        sponsor_id -> Nullable<Text>,
        access_ends_at -> Nullable<Timestamp>,
        end_reminder_sent_at -> Nullable<Timestamp>,
        left_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    invitations (id) {
        id -> Text,
        org_id -> Text,
        membership_id -> Text,
        email -> Text,
        display_name -> Text,
        message -> Nullable<Text>,
        redirect_url -> Nullable<Text>,
        user_type -> Text,
        language -> Nullable<Text>,
        token_hash -> Text,
        status -> Text,
        disclosed -> Bool,
        send_email -> Bool,
        invited_by -> Nullable<Text>,
        code_hash -> Nullable<Text>,
        code_expires_at -> Nullable<Timestamp>,
        code_attempts -> BigInt,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        accepted_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
        group_ids -> Text,
        app_id -> Nullable<Text>,
        reset -> Bool,
    }
}

diesel::table! {
    sessions (id_hash) {
        id_hash -> Text,
        user_id -> Nullable<Text>,
        state -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        user_agent -> Nullable<Text>,
        client_ip -> Nullable<Text>,
    }
}

diesel::table! {
    outbox (id) {
        id -> Text,
        kind -> Text,
        org_id -> Nullable<Text>,
        invitation_id -> Nullable<Text>,
        recipient -> Text,
        from_name -> Text,
        reply_to -> Nullable<Text>,
        subject -> Text,
        body_text -> Nullable<Text>,
        body_html -> Nullable<Text>,
        message_id -> Text,
        status -> Text,
        attempts -> BigInt,
        next_attempt_at -> Timestamp,
        lease_until -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
        created_at -> Timestamp,
        sent_at -> Nullable<Timestamp>,
        claimed_by -> Nullable<Text>,
    }
}

diesel::table! {
    audit_events (id) {
        id -> Text,
        org_id -> Nullable<Text>,
        actor_id -> Nullable<Text>,
        action -> Text,
        target -> Nullable<Text>,
        detail -> Nullable<Text>,
        client_ip -> Nullable<Text>,
        request_id -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    one_time_links (token_hash) {
        token_hash -> Text,
        purpose -> Text,
        user_id -> Nullable<Text>,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    org_groups (id) {
        id -> Text,
        org_id -> Text,
        name -> Text,
        description -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    group_members (group_id, membership_id) {
        group_id -> Text,
        membership_id -> Text,
        is_owner -> Bool,
        created_at -> Timestamp,
    }
}

diesel::table! {
    apps (id) {
        id -> Text,
        org_id -> Text,
        name -> Text,
        url -> Text,
        description -> Text,
        icon -> Nullable<Binary>,
        icon_type -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    app_assignments (id) {
        id -> Text,
        app_id -> Text,
        membership_id -> Nullable<Text>,
        group_id -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Text,
        org_id -> Text,
        name -> Text,
        key_hash -> Text,
        prefix -> Text,
        created_by -> Text,
        created_at -> Timestamp,
        expires_at -> Nullable<Timestamp>,
        last_used_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    idempotency_keys (api_key_id, key) {
        org_id -> Text,
        api_key_id -> Text,
        key -> Text,
        request_hash -> Text,
        status -> BigInt,
        response_body -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    bulk_jobs (id) {
        id -> Text,
        org_id -> Text,
        created_by -> Text,
        status -> Text,
        file_name -> Text,
        total -> BigInt,
        valid_rows -> BigInt,
        invalid_rows -> BigInt,
        duplicate_rows -> BigInt,
        processed -> BigInt,
        succeeded -> BigInt,
        existing -> BigInt,
        failed -> BigInt,
        error -> Nullable<Text>,
        created_at -> Timestamp,
        started_at -> Nullable<Timestamp>,
        finished_at -> Nullable<Timestamp>,
        lease_owner -> Nullable<Text>,
        lease_until -> Nullable<Timestamp>,
    }
}

diesel::table! {
    bulk_rows (job_id, line_no) {
        job_id -> Text,
        line_no -> BigInt,
        email -> Text,
        display_name -> Text,
        redirect_url -> Text,
        send_email -> Bool,
        message -> Text,
        groups -> Text,
        language -> Nullable<Text>,
        status -> Text,
        reason -> Nullable<Text>,
        invitation_id -> Nullable<Text>,
    }
}

diesel::joinable!(memberships -> organizations (org_id));
diesel::joinable!(org_groups -> organizations (org_id));
diesel::joinable!(group_members -> org_groups (group_id));
diesel::joinable!(group_members -> memberships (membership_id));
diesel::joinable!(apps -> organizations (org_id));
diesel::joinable!(app_assignments -> apps (app_id));
diesel::joinable!(memberships -> users (user_id));
diesel::joinable!(invitations -> memberships (membership_id));
diesel::joinable!(invitations -> organizations (org_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(audit_events -> organizations (org_id));

diesel::table! {
    rate_counters (key) {
        key -> Text,
        window_start -> Timestamp,
        n -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    organizations,
    users,
    memberships,
    invitations,
    sessions,
    outbox,
    audit_events,
    one_time_links,
    org_groups,
    group_members,
    apps,
    app_assignments,
    api_keys,
    idempotency_keys,
    rate_counters,
);

diesel::table! {
    oidc_keys (kid) {
        kid -> Text,
        private_key -> Text,
        public_jwk -> Text,
        created_at -> Timestamp,
        retired_at -> Nullable<Timestamp>,
        publish_until -> Nullable<Timestamp>,
    }
}

diesel::table! {
    oidc_clients (app_id) {
        app_id -> Text,
        org_id -> Text,
        client_id -> Text,
        secret_hash -> Nullable<Text>,
        public_client -> Bool,
        redirect_uris -> Text,
        post_logout_redirect_uris -> Text,
        initiate_login_uri -> Nullable<Text>,
        access_token_ttl -> BigInt,
        id_token_ttl -> BigInt,
        refresh_token_ttl -> BigInt,
        failed_auths -> BigInt,
        failed_auths_since -> Nullable<Timestamp>,
        created_at -> Timestamp,
        secret_rotated_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    oidc_codes (code_hash) {
        code_hash -> Text,
        grant_id -> Text,
        app_id -> Text,
        org_id -> Text,
        membership_id -> Text,
        user_id -> Text,
        redirect_uri -> Text,
        code_challenge -> Nullable<Text>,
        nonce -> Nullable<Text>,
        scope -> Text,
        auth_time -> Timestamp,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        amr -> Nullable<Text>,
    }
}

diesel::table! {
    oidc_tokens (token_hash) {
        token_hash -> Text,
        kind -> Text,
        grant_id -> Text,
        app_id -> Text,
        org_id -> Text,
        membership_id -> Text,
        user_id -> Text,
        scope -> Text,
        auth_time -> Timestamp,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        amr -> Nullable<Text>,
    }
}

diesel::joinable!(oidc_clients -> apps (app_id));
diesel::allow_tables_to_appear_in_same_query!(oidc_clients, apps);

diesel::table! {
    signin_codes (email) {
        email -> Text,
        code_hash -> Text,
        expires_at -> Timestamp,
        attempts -> BigInt,
        created_at -> Timestamp,
    }
}

diesel::table! {
    invitation_api_details (invitation_id) {
        invitation_id -> Text,
        display_name -> Nullable<Text>,
        message_language -> Nullable<Text>,
        cc_address -> Nullable<Text>,
        cc_name -> Nullable<Text>,
        sponsor_id -> Nullable<Text>,
    }
}

diesel::table! {
    idp_providers (id) {
        id -> Text,
        org_id -> Text,
        name -> Text,
        kind -> Text,
        issuer -> Text,
        client_id -> Text,
        client_secret -> Text,
        extra_scopes -> Text,
        trust_email -> Bool,
        created_at -> Timestamp,
    }
}

diesel::table! {
    idp_domains (idp_id, domain) {
        idp_id -> Text,
        domain -> Text,
    }
}

diesel::table! {
    idp_bindings (issuer, subject) {
        issuer -> Text,
        subject -> Text,
        user_id -> Text,
        provider_name -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    idp_requests (state_hash) {
        state_hash -> Text,
        idp_id -> Text,
        nonce -> Text,
        pkce_verifier -> Text,
        purpose -> Text,
        invitation_id -> Nullable<Text>,
        target -> Text,
        expires_at -> Timestamp,
        created_at -> Timestamp,
    }
}

diesel::joinable!(idp_domains -> idp_providers (idp_id));
diesel::joinable!(idp_providers -> organizations (org_id));
diesel::allow_tables_to_appear_in_same_query!(idp_domains, idp_providers, organizations);
diesel::joinable!(idp_bindings -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(idp_bindings, users);

diesel::table! {
    second_factors (user_id) {
        user_id -> Text,
        secret -> Text,
        confirmed_at -> Nullable<Timestamp>,
        last_step -> Nullable<BigInt>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    recovery_codes (code_hash) {
        code_hash -> Text,
        user_id -> Text,
        used_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
    }
}

diesel::allow_tables_to_appear_in_same_query!(second_factors, memberships);
diesel::allow_tables_to_appear_in_same_query!(second_factors, users);
