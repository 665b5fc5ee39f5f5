//! Pure rules of the OpenID Connect provider: scopes, redirect URIs, PKCE, prompts, lifetimes.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use url::Url;

use crate::domain::token::constant_time_eq;

/// Scopes the provider knows; others are ignored (OpenID Connect Core §3.1.2.1).
pub const SUPPORTED_SCOPES: [&str; 5] = ["openid", "profile", "email", "groups", "offline_access"];
/// Claims the ID token and userinfo may carry.
pub const SUPPORTED_CLAIMS: [&str; 15] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "amr",
    "nonce",
    "email",
    "email_verified",
    "name",
    "preferred_username",
    "groups",
    "user_type",
    "sid",
];
/// Longest accepted value of any single authorization request parameter, in bytes.
pub const MAX_PARAM_LEN: usize = 2000;
/// Longest `state` and `nonce`, in bytes.
pub const MAX_STATE_LEN: usize = 1000;
/// How long an authorization code lives.
pub const CODE_TTL_SECONDS: i64 = 60;
/// Redirect URIs (and post-logout URIs) a client may register.
pub const MAX_REDIRECT_URIS: usize = 20;
/// Lifetime bounds in seconds: (default, min, max).
pub const ACCESS_TTL: (i64, i64, i64) = (600, 60, 86_400);
/// ID token lifetime bounds in seconds: (default, min, max).
pub const ID_TTL: (i64, i64, i64) = (600, 60, 86_400);
/// Refresh token lifetime bounds in seconds: (default, min, max).
pub const REFRESH_TTL: (i64, i64, i64) = (30 * 86_400, 3_600, 365 * 86_400);
/// Old public keys stay in the JWKS this long after a rotation: the longest ID token life.
pub const KEY_OVERLAP_SECONDS: i64 = ID_TTL.2;

/// The scopes of a request that we support, each once, in a stable order.
pub fn normalize_scope(scope: &str) -> Vec<&'static str> {
    let asked: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
    SUPPORTED_SCOPES.iter().copied().filter(|s| asked.contains(s)).collect()
}

/// True when `scope` (space-separated, normalized) contains `one`.
pub fn has_scope(scope: &str, one: &str) -> bool {
    scope.split(' ').any(|s| s == one)
}

/// Why a redirect URI cannot be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriProblem {
    Invalid,
    Insecure,
    Fragment,
}

impl UriProblem {
    /// Catalogue key of the message.
    pub fn message_key(self) -> &'static str {
        match self {
            UriProblem::Invalid => "oidc.uri_invalid",
            UriProblem::Insecure => "oidc.uri_insecure",
            UriProblem::Fragment => "oidc.uri_fragment",
        }
    }
}

/// Checks a URI to register: absolute, no fragment, no credentials, `https` (or `http` to
/// localhost / 127.0.0.1 / [::1] for development). Returned exactly as typed (trimmed): the
/// comparison at authorization time is an exact string comparison (RFC 9700 §4.1.3).
pub fn check_registered_uri(input: &str) -> Result<String, UriProblem> {
    let s = input.trim();
    if s.is_empty() || s.len() > MAX_PARAM_LEN || s.chars().any(char::is_whitespace) {
        return Err(UriProblem::Invalid);
    }
    let url = Url::parse(s).map_err(|_| UriProblem::Invalid)?;
    if url.cannot_be_a_base() || url.host_str().is_none() || !url.username().is_empty() || url.password().is_some() {
        return Err(UriProblem::Invalid);
    }
    if url.fragment().is_some() || s.contains('#') {
        return Err(UriProblem::Fragment);
    }
    match url.scheme() {
        "https" => Ok(s.to_owned()),
        "http" if matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]")) => Ok(s.to_owned()),
        _ => Err(UriProblem::Insecure),
    }
}

/// Parses a list of URIs, one per line (or separated by spaces); each once.
pub fn parse_uri_list(text: &str) -> Result<Vec<String>, UriProblem> {
    let mut out: Vec<String> = Vec::new();
    for item in text.split(['\n', '\r', ' ']).filter(|s| !s.trim().is_empty()) {
        let uri = check_registered_uri(item)?;
        if !out.contains(&uri) {
            out.push(uri);
        }
    }
    if out.len() > MAX_REDIRECT_URIS {
        return Err(UriProblem::Invalid);
    }
    Ok(out)
}

/// True when `candidate` is exactly one of the registered URIs (stored one per line).
pub fn uri_is_registered(registered: &str, candidate: &str) -> bool {
    !candidate.is_empty() && registered.lines().any(|r| r == candidate)
}

/// True for a PKCE code challenge or verifier of the RFC 7636 alphabet and length (43–128).
pub fn is_pkce_value(s: &str) -> bool {
    (43..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// RFC 7636 §4.6, method `S256`: `BASE64URL(SHA256(ASCII(code_verifier))) == code_challenge`.
/// Six lines do not justify a client crate (oauth2) on the server; the RFC's own example is
/// the unit test below, and the integration tests check it against an independent client.
pub fn pkce_s256_matches(verifier: &str, challenge: &str) -> bool {
    if !is_pkce_value(verifier) {
        return false;
    }
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    constant_time_eq(computed.as_bytes(), challenge.as_bytes())
}

/// The `prompt` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Prompt {
    pub none: bool,
    pub login: bool,
    pub consent: bool,
}

impl Prompt {
    /// Parses `prompt`; `None` for a value we cannot honour (`select_account`, or `none` with others).
    pub fn parse(value: Option<&str>) -> Option<Prompt> {
        let mut p = Prompt::default();
        for v in value.unwrap_or("").split(' ').filter(|s| !s.is_empty()) {
            match v {
                "none" => p.none = true,
                "login" => p.login = true,
                "consent" => p.consent = true,
                _ => return None,
            }
        }
        if p.none && (p.login || p.consent) {
            return None;
        }
        Some(p)
    }
}

/// Clamps a lifetime typed by an admin into its bounds; `None` when it is not a number.
pub fn parse_ttl(input: &str, bounds: (i64, i64, i64)) -> Option<i64> {
    let s = input.trim();
    if s.is_empty() {
        return Some(bounds.0);
    }
    let n: i64 = s.parse().ok()?;
    (bounds.1..=bounds.2).contains(&n).then_some(n)
}

/// The `sub` of a person in an organization: stable, not the email, different in every
/// organization (a hash of both ids, so it needs no storage).
pub fn subject(org_id: &str, user_id: &str) -> String {
    let digest = Sha256::digest(format!("vestibule-sub\0{org_id}\0{user_id}").as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..20])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_matches_the_rfc_7636_example() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(pkce_s256_matches(verifier, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(!pkce_s256_matches(verifier, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"));
        assert!(!pkce_s256_matches("short", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
    }

    #[test]
    fn redirect_uris_are_https_or_local_http_without_fragment() {
        assert!(check_registered_uri("https://app.example/cb").is_ok());
        assert!(check_registered_uri("http://localhost:4180/oauth2/callback").is_ok());
        assert!(check_registered_uri("http://127.0.0.1/cb").is_ok());
        assert_eq!(check_registered_uri("http://app.example/cb"), Err(UriProblem::Insecure));
        assert_eq!(check_registered_uri("https://app.example/cb#x"), Err(UriProblem::Fragment));
        assert_eq!(check_registered_uri("javascript:alert(1)"), Err(UriProblem::Invalid));
        assert_eq!(check_registered_uri("https://u:p@app.example/"), Err(UriProblem::Invalid));
    }

    #[test]
    fn registered_uris_compare_exactly() {
        let reg = "https://app.example/cb\nhttps://app.example/other";
        assert!(uri_is_registered(reg, "https://app.example/cb"));
        assert!(!uri_is_registered(reg, "https://app.example/cb/"));
        assert!(!uri_is_registered(reg, "https://app.example/cb?x=1"));
        assert!(!uri_is_registered(reg, "https://APP.example/cb"));
        assert!(!uri_is_registered(reg, ""));
    }

    #[test]
    fn scopes_keep_only_known_ones_in_order() {
        assert_eq!(normalize_scope("email openid  foo openid"), vec!["openid", "email"]);
        assert!(has_scope("openid groups", "groups"));
        assert!(!has_scope("openid", "group"));
    }

    #[test]
    fn prompt_none_cannot_be_combined() {
        assert_eq!(Prompt::parse(Some("none")), Some(Prompt { none: true, ..Default::default() }));
        assert_eq!(Prompt::parse(Some("none login")), None);
        assert_eq!(Prompt::parse(Some("select_account")), None);
        assert_eq!(Prompt::parse(None), Some(Prompt::default()));
    }

    #[test]
    fn subjects_differ_per_org_and_are_stable() {
        assert_eq!(subject("o1", "u1"), subject("o1", "u1"));
        assert_ne!(subject("o1", "u1"), subject("o2", "u1"));
        assert!(!subject("o1", "u1").contains('@'));
    }

    #[test]
    fn lifetimes_stay_in_bounds() {
        assert_eq!(parse_ttl("", ACCESS_TTL), Some(600));
        assert_eq!(parse_ttl("120", ACCESS_TTL), Some(120));
        assert_eq!(parse_ttl("5", ACCESS_TTL), None);
        assert_eq!(parse_ttl("x", ACCESS_TTL), None);
    }
}
