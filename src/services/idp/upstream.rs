//! Talking to a provider: discovery (with its JWKS), the authorization URL (code flow, PKCE
//! S256, `state`, `nonce`), the code exchange and the ID token's verification (signature from
//! the JWKS, `iss`, `aud`, `exp`, `nonce`): all done by the `openidconnect` crate over our
//! reqwest client, which has short timeouts and follows no redirects.

use openidconnect::core::{
    CoreAuthPrompt, CoreAuthenticationFlow, CoreClient, CoreIdTokenClaims, CoreProviderMetadata,
};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, JsonWebKeySet, LoginHint, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope, TokenResponse,
};

use super::Federation;
use super::providers::Kind;
use crate::db::models::IdpProvider;

/// Largest document read from a provider (discovery, JWKS, token response).
const MAX_BODY_BYTES: usize = 1 << 20;

/// The issuer Microsoft's multi-tenant endpoints announce: the tenant of each token replaces it.
const ENTRA_TENANT_PLACEHOLDER: &str = "{tenantid}";

/// An HTTP failure towards a provider (unreachable, slow, too big).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(String);

/// The `openidconnect` crate's HTTP, through our client.
async fn send(
    client: reqwest::Client,
    req: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, HttpError> {
    let mut res = client
        .request(req.method().clone(), req.uri().to_string())
        .headers(req.headers().clone())
        .body(req.body().clone())
        .send()
        .await
        .map_err(|e| HttpError(e.to_string()))?;
    let mut builder = openidconnect::http::Response::builder().status(res.status());
    for (k, v) in res.headers() {
        builder = builder.header(k, v);
    }
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(|e| HttpError(e.to_string()))? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(HttpError("response too large".into()));
        }
        body.extend_from_slice(&chunk);
    }
    builder.body(body).map_err(|e| HttpError(e.to_string()))
}

/// What went wrong with a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// No answer in time, or not an HTTP answer.
    Unreachable,
    /// An answer that is not a usable OpenID Connect discovery document or JWKS.
    NotOidc,
    /// The discovery document names another issuer than the one configured.
    IssuerMismatch,
    /// The secret could not be opened (the installation's secret key changed).
    SecretUnreadable,
    /// The token endpoint refused the code (expired, used, wrong client credentials).
    CodeRefused,
    /// The ID token failed verification (signature, issuer, audience, expiry, nonce) or is missing.
    TokenRejected,
}

impl Problem {
    /// The catalogue key of the message.
    pub fn message_key(self) -> &'static str {
        match self {
            Problem::Unreachable => "idp.discovery_unreachable",
            Problem::NotOidc => "idp.discovery_invalid",
            Problem::IssuerMismatch => "idp.discovery_issuer",
            Problem::SecretUnreadable => "idp.secret_unreadable",
            Problem::CodeRefused => "idp.code_refused",
            Problem::TokenRejected => "idp.token_rejected",
        }
    }
}

/// The discovery document (with its JWKS) of `issuer`, checked to name that issuer: exactly, or
/// for Microsoft Entra ID's multi-tenant endpoints, `https://login.microsoftonline.com/{tenantid}/v2.0`
/// (each token then carries its tenant: see [`verify_entra_issuer`]).
pub async fn discover(fed: &Federation, kind: Kind, issuer: &str) -> Result<CoreProviderMetadata, Problem> {
    let http = |req: openidconnect::HttpRequest| send(fed.http.clone(), req);
    let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
    let req = openidconnect::http::Request::builder()
        .uri(url)
        .method(openidconnect::http::Method::GET)
        .header(openidconnect::http::header::ACCEPT, "application/json")
        .body(Vec::new())
        .map_err(|_| Problem::NotOidc)?;
    let res = http(req).await.map_err(|_| Problem::Unreachable)?;
    if !res.status().is_success() {
        return Err(if res.status().is_server_error() { Problem::Unreachable } else { Problem::NotOidc });
    }
    let metadata: CoreProviderMetadata = serde_json::from_slice(res.body()).map_err(|_| Problem::NotOidc)?;
    let announced = unescape_braces(metadata.issuer().as_str());
    let expected = issuer.trim_end_matches('/');
    let entra_template = kind == Kind::Entra && announced.contains(ENTRA_TENANT_PLACEHOLDER);
    if announced.trim_end_matches('/') != expected && !entra_template {
        return Err(Problem::IssuerMismatch);
    }
    let jwks = JsonWebKeySet::fetch_async(metadata.jwks_uri(), &http).await.map_err(|e| match e {
        openidconnect::DiscoveryError::Request(_) => Problem::Unreachable,
        _ => Problem::NotOidc,
    })?;
    Ok(metadata.set_jwks(jwks))
}

/// `{` and `}` as written: the URL parser may have escaped them.
fn unescape_braces(s: &str) -> String {
    s.replace("%7B", "{").replace("%7D", "}").replace("%7b", "{").replace("%7d", "}")
}

/// One authorization request, ready to send the browser to.
pub struct Authorization {
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// The scopes always asked for; a provider's extra scopes are added.
const BASE_SCOPES: [&str; 2] = ["email", "profile"];

fn client(
    fed: &Federation,
    provider: &IdpProvider,
    metadata: CoreProviderMetadata,
) -> Result<
    CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    >,
    Problem,
> {
    let secret = fed.key.open(&provider.client_secret).ok_or(Problem::SecretUnreadable)?;
    let redirect = RedirectUrl::new(fed.callback_url.clone()).map_err(|_| Problem::NotOidc)?;
    Ok(CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(provider.client_id.clone()),
        Some(ClientSecret::new(secret)),
    )
    .set_redirect_uri(redirect))
}

/// Discovers the provider and builds the authorization URL. `again` asks the provider to let
/// the person choose another account ("try another account").
pub async fn authorize(
    fed: &Federation,
    provider: &IdpProvider,
    login_hint: Option<&str>,
    again: bool,
) -> Result<Authorization, Problem> {
    let kind = Kind::parse(&provider.kind);
    let metadata = discover(fed, kind, &provider.issuer).await?;
    let client = client(fed, provider, metadata)?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut req =
        client.authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random);
    for scope in BASE_SCOPES.iter().copied().chain(provider.extra_scopes.split_whitespace()) {
        req = req.add_scope(Scope::new(scope.to_owned()));
    }
    req = req.set_pkce_challenge(challenge);
    if again {
        // Google and Entra offer an account chooser; other providers ask to sign in afresh.
        req = req.add_prompt(match kind {
            Kind::Generic => CoreAuthPrompt::Login,
            Kind::Entra | Kind::Google => CoreAuthPrompt::SelectAccount,
        });
    } else if let Some(hint) = login_hint {
        req = req.set_login_hint(LoginHint::new(hint.to_owned()));
    }
    let (url, state, nonce) = req.url();
    Ok(Authorization {
        url: url.to_string(),
        state: state.secret().clone(),
        nonce: nonce.secret().clone(),
        pkce_verifier: verifier.secret().clone(),
    })
}

/// Who the provider says signed in, once the ID token is verified.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The token's `iss` (for Entra, with the tenant).
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    /// The `email_verified` claim, when given.
    pub email_verified: Option<bool>,
    pub name: Option<String>,
    /// The provider says the person passed a second factor there (`amr` holds `mfa` or `otp`,
    /// RFC 8176): an organization's second-factor policy is then met without a local code.
    pub strong: bool,
}

/// Exchanges the code (with the PKCE verifier) and verifies the ID token against the JWKS, the
/// issuer, this client as audience, its expiry and the `nonce` of the request.
pub async fn exchange(
    fed: &Federation,
    provider: &IdpProvider,
    code: &str,
    pkce_verifier: &str,
    nonce: &str,
) -> Result<Identity, Problem> {
    let kind = Kind::parse(&provider.kind);
    let metadata = discover(fed, kind, &provider.issuer).await?;
    let entra_template = unescape_braces(metadata.issuer().as_str());
    let multi_tenant = kind == Kind::Entra && entra_template.contains(ENTRA_TENANT_PLACEHOLDER);
    let client = client(fed, provider, metadata)?;
    let http = |req: openidconnect::HttpRequest| send(fed.http.clone(), req);
    let response = client
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .map_err(|_| Problem::NotOidc)?
        .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
        .request_async(&http)
        .await
        .map_err(|e| match e {
            RequestTokenError::Request(_) => Problem::Unreachable,
            RequestTokenError::ServerResponse(_) => Problem::CodeRefused,
            _ => Problem::TokenRejected,
        })?;
    let id_token = response.id_token().ok_or(Problem::TokenRejected)?;
    // Multi-tenant Entra: the crate checks everything but the issuer, which names the tenant.
    let verifier = client.id_token_verifier().require_issuer_match(!multi_tenant);
    let claims: &CoreIdTokenClaims =
        id_token.claims(&verifier, &Nonce::new(nonce.to_owned())).map_err(|_| Problem::TokenRejected)?;
    let issuer = claims.issuer().as_str().to_owned();
    // OpenID Connect Core §2: `sub` is at most 255 ASCII characters.
    if claims.subject().as_str().is_empty() || claims.subject().len() > 255 || issuer.len() > 2048 {
        return Err(Problem::TokenRejected);
    }
    if multi_tenant {
        let tid = payload_claim(&id_token.to_string(), "tid");
        verify_entra_issuer(&entra_template, &issuer, tid.as_deref())?;
    }
    Ok(Identity {
        issuer,
        subject: claims.subject().as_str().to_owned(),
        email: claims.email().map(|e| e.as_str().to_owned()),
        email_verified: claims.email_verified(),
        name: claims.name().and_then(|n| n.get(None)).map(|n| n.as_str().to_owned()),
        strong: claims.auth_method_refs().is_some_and(|amr| amr.iter().any(|m| matches!(m.as_str(), "mfa" | "otp"))),
    })
}

/// Microsoft's rule for multi-tenant apps: the token's `iss` must be the metadata's issuer
/// template with `{tenantid}` replaced by the token's own `tid` claim.
pub fn verify_entra_issuer(template: &str, iss: &str, tid: Option<&str>) -> Result<(), Problem> {
    let tid = tid.filter(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    match tid {
        Some(tid) if template.replace(ENTRA_TENANT_PLACEHOLDER, tid) == iss => Ok(()),
        _ => Err(Problem::TokenRejected),
    }
}

/// A string claim of a JWT's payload. Only read after the crate verified the token's signature.
fn payload_claim(jwt: &str, name: &str) -> Option<String> {
    use base64::Engine;
    let part = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get(name)?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entra_issuer_must_carry_the_tokens_tenant() {
        let t = "https://login.microsoftonline.com/{tenantid}/v2.0";
        let tid = "9188040d-6c67-4c5b-b112-36a304b66dad";
        let iss = format!("https://login.microsoftonline.com/{tid}/v2.0");
        assert_eq!(verify_entra_issuer(t, &iss, Some(tid)), Ok(()));
        assert_eq!(
            verify_entra_issuer(t, &iss, Some("72f988bf-86f1-41af-91ab-2d7cd011db47")),
            Err(Problem::TokenRejected)
        );
        assert_eq!(verify_entra_issuer(t, &iss, None), Err(Problem::TokenRejected));
        assert_eq!(verify_entra_issuer(t, "https://evil.example/x/v2.0", Some("x")), Err(Problem::TokenRejected));
        assert_eq!(
            verify_entra_issuer(t, "https://login.microsoftonline.com/a/b/v2.0", Some("a/b")),
            Err(Problem::TokenRejected)
        );
    }

    #[test]
    fn braces_are_unescaped() {
        assert_eq!(
            unescape_braces("https://login.microsoftonline.com/%7Btenantid%7D/v2.0"),
            "https://login.microsoftonline.com/{tenantid}/v2.0"
        );
    }
}
