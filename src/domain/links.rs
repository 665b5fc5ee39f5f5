//! Absolute links that leave Vestibule in emails and API answers, built in one place below
//! both `mail` and `services`.

use url::Url;

fn base(public_url: &Url) -> &str {
    public_url.as_str().trim_end_matches('/')
}

/// The redemption link of an invitation token.
pub fn redeem_url(public_url: &Url, token: &str) -> String {
    format!("{}/redeem/{}", base(public_url), token)
}

/// The sponsor's one-click page to extend a guest's access.
pub fn sponsor_url(public_url: &Url, org_slug: &str, membership_id: &str) -> String {
    format!("{}/o/{}/sponsor/{}", base(public_url), org_slug, membership_id)
}

/// An organization's My Apps page.
pub fn my_apps_url(public_url: &Url, org_slug: &str) -> String {
    format!("{}/o/{}/apps", base(public_url), org_slug)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_have_one_slash_whatever_the_base() {
        for base in ["https://v.example", "https://v.example/"] {
            let u = Url::parse(base).unwrap();
            assert_eq!(redeem_url(&u, "t"), "https://v.example/redeem/t");
            assert_eq!(sponsor_url(&u, "acme", "m1"), "https://v.example/o/acme/sponsor/m1");
            assert_eq!(my_apps_url(&u, "acme"), "https://v.example/o/acme/apps");
        }
    }
}
