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

/// Checks `target` against Vestibule's own public URL and the org's allowed origins.
/// Returns the normalized URL.
pub fn check_redirect(target: &str, public_url: &Url, allowed_origins: &[&str]) -> Result<String, RedirectProblem> {
    let url = Url::parse(target.trim()).map_err(|_| RedirectProblem::Malformed)?;
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
    fn localhost_http_allowed_for_development() {
        assert_eq!(parse_allowlist_entry("http://localhost:3000/x").unwrap(), "http://localhost:3000");
        assert!(parse_allowlist_entry("http://example.com").is_err());
    }
}
