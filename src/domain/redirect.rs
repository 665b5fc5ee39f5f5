//! Where a guest may be sent after redemption (design §2): a page of Vestibule itself, or an
//! origin on the organization's allow-list; `https` only, plus plain `http` to `localhost` and
//! `127.0.0.1` for development.

use url::Url;

/// Why a redirect URL was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectProblem {
    /// Not an absolute URL.
    Malformed,
    /// Neither https nor a local development address.
    InsecureScheme,
    /// Not Vestibule itself and not on the allow-list.
    NotAllowed,
}

impl RedirectProblem {
    /// The catalogue key of the message.
    pub fn message_key(self) -> &'static str {
        match self {
            RedirectProblem::Malformed => "redirect.malformed",
            RedirectProblem::InsecureScheme => "redirect.insecure",
            RedirectProblem::NotAllowed => "redirect.not_allowed",
        }
    }
}

/// The origin (`scheme://host[:port]`) of a URL, in the form stored on allow-lists.
pub fn origin_of(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// Checks an allow-list entry typed by an admin and returns its canonical origin.
pub fn parse_allowlist_entry(entry: &str) -> Result<String, RedirectProblem> {
    let url = Url::parse(entry.trim()).map_err(|_| RedirectProblem::Malformed)?;
    check_scheme(&url)?;
    Ok(origin_of(&url))
}

fn is_local_dev(url: &Url) -> bool {
    matches!(url.host_str(), Some("localhost") | Some("127.0.0.1"))
}

fn check_scheme(url: &Url) -> Result<(), RedirectProblem> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_local_dev(url) => Ok(()),
        "http" => Err(RedirectProblem::InsecureScheme),
        _ => Err(RedirectProblem::Malformed),
    }
}

/// Checks the issuer URL of an identity provider by the same rule as redirect targets: `https`,
/// or plain `http` on `localhost`/`127.0.0.1` (development and tests); no credentials, query or
/// fragment. Returns it without a trailing slash (issuers are compared as strings).
pub fn check_issuer(input: &str) -> Result<String, RedirectProblem> {
    let input = input.trim();
    if input.len() > MAX_TARGET_CHARS || has_forbidden_chars(input) {
        return Err(RedirectProblem::Malformed);
    }
    let url = Url::parse(input).map_err(|_| RedirectProblem::Malformed)?;
    if url.cannot_be_a_base()
        || url.host_str().is_none()
        || !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(RedirectProblem::Malformed);
    }
    check_scheme(&url)?;
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Longest redirect target accepted (a local path or an absolute URL).
pub const MAX_TARGET_CHARS: usize = 2048;

/// True for text no redirect target may hold: control characters (which browsers silently drop
/// or which break the `Location` header) and backslashes (which browsers read as `/`).
fn has_forbidden_chars(target: &str) -> bool {
    target.chars().any(|c| c.is_control() || c == '\\')
}

/// A base with a reserved name: local paths are resolved against it, and only its path,
/// query and fragment ever leave [`local_path`].
const LOCAL_BASE: &str = "https://vestibule.invalid/";

/// Judges a local redirect target (`next` after sign-in, the language switch, ...) by parsing
/// it: it must be an absolute path without control characters or backslashes, stay on the same
/// origin once resolved the way a browser resolves it, and not serialize to something a browser
/// reads as another host (`//host`). Returns the normalized path, query and fragment, which are
/// plain ASCII (valid in a `Location` header); `None` means "go somewhere safe instead".
pub fn local_path(target: &str) -> Option<String> {
    if !target.starts_with('/') || target.len() > MAX_TARGET_CHARS || has_forbidden_chars(target) {
        return None;
    }
    let base = Url::parse(LOCAL_BASE).ok()?;
    let url = base.join(target).ok()?;
    if url.origin() != base.origin() || !url.username().is_empty() || url.password().is_some() {
        return None;
    }
    let mut out = url.path().to_owned();
    if !out.starts_with('/') || out.starts_with("//") {
        return None;
    }
    if let Some(q) = url.query() {
        out.push('?');
        out.push_str(q);
    }
    if let Some(f) = url.fragment() {
        out.push('#');
        out.push_str(f);
    }
    Some(out)
}

/// Checks `target` against Vestibule's own public URL and the org's allowed origins.
/// Returns the normalized URL.
pub fn check_redirect(target: &str, public_url: &Url, allowed_origins: &[&str]) -> Result<String, RedirectProblem> {
    let target = target.trim();
    if target.len() > MAX_TARGET_CHARS || has_forbidden_chars(target) {
        return Err(RedirectProblem::Malformed);
    }
    let url = Url::parse(target).map_err(|_| RedirectProblem::Malformed)?;
    if url.cannot_be_a_base() || url.host_str().is_none() || !url.username().is_empty() || url.password().is_some() {
        return Err(RedirectProblem::Malformed);
    }
    let origin = origin_of(&url);
    if origin == origin_of(public_url) {
        return Ok(url.to_string());
    }
    check_scheme(&url)?;
    if allowed_origins.iter().any(|o| *o == origin) { Ok(url.to_string()) } else { Err(RedirectProblem::NotAllowed) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuers_are_https_or_local_http() {
        assert_eq!(check_issuer("https://accounts.google.com/"), Ok("https://accounts.google.com".into()));
        assert_eq!(check_issuer("http://127.0.0.1:8080/o/partner"), Ok("http://127.0.0.1:8080/o/partner".into()));
        assert_eq!(check_issuer("http://localhost/x"), Ok("http://localhost/x".into()));
        assert_eq!(check_issuer("http://idp.example.com"), Err(RedirectProblem::InsecureScheme));
        assert_eq!(check_issuer("ftp://idp.example.com"), Err(RedirectProblem::Malformed));
        assert_eq!(check_issuer("https://u:p@idp.example.com"), Err(RedirectProblem::Malformed));
        assert_eq!(check_issuer("https://idp.example.com/?x=1"), Err(RedirectProblem::Malformed));
        assert_eq!(check_issuer("not a url"), Err(RedirectProblem::Malformed));
    }

    fn public() -> Url {
        Url::parse("https://portal.example.com").unwrap()
    }

    #[test]
    fn own_pages_are_allowed() {
        assert!(check_redirect("https://portal.example.com/o/acme/apps", &public(), &[]).is_ok());
    }

    #[test]
    fn allow_listed_origin_is_allowed_other_is_not() {
        let list = ["https://app.partner.com"];
        assert!(check_redirect("https://app.partner.com/welcome?x=1", &public(), &list).is_ok());
        assert_eq!(check_redirect("https://evil.com/", &public(), &list), Err(RedirectProblem::NotAllowed));
        assert_eq!(
            check_redirect("https://app.partner.com.evil.com/", &public(), &list),
            Err(RedirectProblem::NotAllowed)
        );
    }

    #[test]
    fn insecure_and_odd_schemes_are_refused() {
        let list = ["http://app.partner.com"];
        assert_eq!(check_redirect("http://app.partner.com/", &public(), &list), Err(RedirectProblem::InsecureScheme));
        assert_eq!(check_redirect("javascript:alert(1)", &public(), &list), Err(RedirectProblem::Malformed));
        assert_eq!(check_redirect("/relative", &public(), &list), Err(RedirectProblem::Malformed));
        assert_eq!(
            check_redirect("https://user:pw@app.partner.com/", &public(), &["https://app.partner.com"]),
            Err(RedirectProblem::Malformed)
        );
    }

    #[test]
    fn local_paths_are_judged_by_parsing() {
        assert_eq!(local_path("/o/acme/apps?x=1#top").as_deref(), Some("/o/acme/apps?x=1#top"));
        assert_eq!(local_path("/a/../b").as_deref(), Some("/b"));
        assert_eq!(local_path("/caf\u{e9}").as_deref(), Some("/caf%C3%A9"));
        for bad in [
            "",
            "o/acme",
            "//evil.test",
            "/\\evil.test",
            "/\t/evil.test",
            "/\u{b}/x",
            "/\r\nSet-Cookie:x",
            "/\u{7f}",
            "/\u{85}",
            "/..//evil.test",
            "/.//evil.test",
            "/%2e%2e//evil.test",
            "https://evil.test/",
        ] {
            assert_eq!(local_path(bad), None, "{bad:?}");
        }
        assert_eq!(local_path(&format!("/{}", "a".repeat(MAX_TARGET_CHARS))), None);
    }

    #[test]
    fn absolute_targets_with_control_characters_or_backslashes_are_refused() {
        for bad in ["https://portal.example.com/\t/evil.test", "https://portal.example.com\\@evil.test/"] {
            assert_eq!(check_redirect(bad, &public(), &[]), Err(RedirectProblem::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn localhost_http_allowed_for_development() {
        assert_eq!(parse_allowlist_entry("http://localhost:3000/x").unwrap(), "http://localhost:3000");
        assert!(parse_allowlist_entry("http://example.com").is_err());
    }
}
