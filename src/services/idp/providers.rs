//! An organization's identity providers: checked (the issuer by discovery) and saved, listed,
//! removed. The console page and `vestibule idp add|list|remove` both come here.

use diesel::prelude::*;

use super::Federation;
use super::upstream;
use crate::db::models::{IdpDomain, IdpProvider, Organization};
use crate::db::schema::{idp_domains, idp_providers};
use crate::db::{self, DbConnection, Pool};
use crate::domain::Email;
use crate::services::audit::{self, action};
use crate::services::{Actor, FieldErrors, ServiceError};

/// Which kind of provider: it decides the preset issuer and how the issuer is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Any OpenID Connect provider: the token's issuer must be the configured one.
    Generic,
    /// Microsoft Entra ID; multi-tenant endpoints announce `…/{tenantid}/v2.0` and each token's
    /// issuer must carry its own `tid`.
    Entra,
    /// Google (`https://accounts.google.com`).
    Google,
}

impl Kind {
    /// Every kind, in the order the form offers them.
    pub const ALL: [Kind; 3] = [Kind::Generic, Kind::Entra, Kind::Google];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Generic => "generic",
            Kind::Entra => "entra",
            Kind::Google => "google",
        }
    }

    /// Reads a stored or typed name; anything unknown is generic (the strictest issuer check).
    pub fn parse(s: &str) -> Kind {
        match s {
            "entra" => Kind::Entra,
            "google" => Kind::Google,
            _ => Kind::Generic,
        }
    }

    /// The issuer used when the form leaves it empty.
    pub fn preset_issuer(self) -> Option<&'static str> {
        match self {
            Kind::Generic => None,
            // Work and school accounts of any tenant.
            Kind::Entra => Some("https://login.microsoftonline.com/organizations/v2.0"),
            Kind::Google => Some("https://accounts.google.com"),
        }
    }

    /// The catalogue key of its label.
    pub fn label_key(self) -> &'static str {
        match self {
            Kind::Generic => "idp.kind_generic",
            Kind::Entra => "idp.kind_entra",
            Kind::Google => "idp.kind_google",
        }
    }
}

/// The form (or the command line) as typed.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct ProviderInput {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub issuer: String,
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub client_secret: String,
    #[serde(default)]
    pub extra_scopes: String,
    /// Domains separated by commas, spaces or lines.
    #[serde(default)]
    pub domains: String,
    /// A checkbox: present when ticked.
    #[serde(default)]
    pub trust_email: Option<String>,
}

/// A checked provider, not saved yet.
#[derive(Debug, Clone)]
pub struct ValidProvider {
    pub kind: Kind,
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub extra_scopes: String,
    pub domains: Vec<String>,
    pub trust_email: bool,
}

const MAX_NAME_CHARS: usize = 100;
const MAX_CLIENT_ID_BYTES: usize = 255;
const MAX_SECRET_BYTES: usize = 1024;
const MAX_SCOPES_BYTES: usize = 512;
const MAX_DOMAINS: usize = 50;

/// Checks the input; the issuer is not contacted here (see [`add`]).
pub fn validate(input: &ProviderInput) -> Result<ValidProvider, FieldErrors> {
    let mut errors = FieldErrors::default();
    let kind = Kind::parse(input.kind.trim());
    let name = input.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || crate::domain::has_any_control_chars(&name) {
        errors.add("name", "idp.name_invalid");
    }
    let typed_issuer = input.issuer.trim();
    let issuer_text = if typed_issuer.is_empty() { kind.preset_issuer().unwrap_or("") } else { typed_issuer };
    let issuer = if issuer_text.is_empty() {
        errors.add("issuer", "idp.issuer_required");
        String::new()
    } else {
        match crate::domain::redirect::check_issuer(issuer_text) {
            Ok(i) => i,
            Err(crate::domain::redirect::RedirectProblem::InsecureScheme) => {
                errors.add("issuer", "idp.issuer_insecure");
                String::new()
            }
            Err(_) => {
                errors.add("issuer", "idp.issuer_invalid");
                String::new()
            }
        }
    };
    let client_id = input.client_id.trim().to_owned();
    if client_id.is_empty() || client_id.len() > MAX_CLIENT_ID_BYTES || !client_id.chars().all(|c| c.is_ascii_graphic())
    {
        errors.add("client_id", "idp.client_id_invalid");
    }
    let client_secret = input.client_secret.trim_end_matches(['\r', '\n']).to_owned();
    if client_secret.is_empty() || client_secret.len() > MAX_SECRET_BYTES || client_secret.contains(char::is_control) {
        errors.add("client_secret", "idp.secret_invalid");
    }
    let scopes: Vec<&str> =
        input.extra_scopes.split_whitespace().filter(|s| !["openid", "email", "profile"].contains(s)).collect();
    let extra_scopes = scopes.join(" ");
    if input.extra_scopes.len() > MAX_SCOPES_BYTES
        || scopes.iter().any(|s| !s.chars().all(|c| c.is_ascii_graphic() && c != '"' && c != '\\'))
    {
        errors.add("extra_scopes", "idp.scopes_invalid");
    }
    let domains = match parse_domains(&input.domains) {
        Ok(d) => d,
        Err(key) => {
            errors.add("domains", key);
            Vec::new()
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(ValidProvider {
        kind,
        name,
        issuer,
        client_id,
        client_secret,
        extra_scopes,
        domains,
        trust_email: input.trust_email.as_deref().is_some_and(|v| !v.is_empty() && v != "false"),
    })
}

/// Email domains, lowercase, each checked as the domain of an address, without repeats.
pub fn parse_domains(text: &str) -> Result<Vec<String>, &'static str> {
    if text.len() > MAX_DOMAINS * 256 {
        return Err("idp.domains_too_many");
    }
    let mut out: Vec<String> = Vec::new();
    for d in text.split(|c: char| c == ',' || c.is_whitespace()).map(str::trim).filter(|d| !d.is_empty()) {
        let d = d.trim_start_matches('@').to_lowercase();
        let email = Email::parse(&format!("x@{d}")).map_err(|_| "idp.domain_invalid")?;
        let d = email.domain().to_owned();
        if !out.contains(&d) {
            out.push(d);
        }
    }
    if out.is_empty() {
        return Err("idp.domains_required");
    }
    if out.len() > MAX_DOMAINS {
        return Err("idp.domains_too_many");
    }
    Ok(out)
}

/// One provider with its domains, for lists.
#[derive(Debug, Clone)]
pub struct ProviderSummary {
    pub provider: IdpProvider,
    pub domains: Vec<String>,
}

/// The providers of an organization, by name.
pub fn list(conn: &mut DbConnection, org_id: &str) -> QueryResult<Vec<ProviderSummary>> {
    let providers: Vec<IdpProvider> = idp_providers::table
        .filter(idp_providers::org_id.eq(org_id))
        .order(idp_providers::name.asc())
        .select(IdpProvider::as_select())
        .load(conn)?;
    let ids: Vec<&str> = providers.iter().map(|p| p.id.as_str()).collect();
    let domains: Vec<IdpDomain> = idp_domains::table
        .filter(idp_domains::idp_id.eq_any(ids))
        .order(idp_domains::domain.asc())
        .select(IdpDomain::as_select())
        .load(conn)?;
    Ok(providers
        .into_iter()
        .map(|p| {
            let domains = domains.iter().filter(|d| d.idp_id == p.id).map(|d| d.domain.clone()).collect();
            ProviderSummary { provider: p, domains }
        })
        .collect())
}

/// A provider by id.
pub fn find(conn: &mut DbConnection, id: &str) -> QueryResult<Option<IdpProvider>> {
    idp_providers::table.find(id).select(IdpProvider::as_select()).first(conn).optional()
}

/// True when the provider (still) serves `domain`.
pub fn serves(conn: &mut DbConnection, idp_id: &str, domain: &str) -> QueryResult<bool> {
    let n: i64 = idp_domains::table
        .filter(idp_domains::idp_id.eq(idp_id))
        .filter(idp_domains::domain.eq(domain))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// Checks the input, discovers the issuer (the document must name it, and its JWKS must load),
/// then saves the provider with its secret sealed. Nothing is saved when any step fails; the
/// form's errors say which.
pub async fn add(
    pool: &Pool,
    fed: &Federation,
    org: &Organization,
    input: &ProviderInput,
    actor: &Actor,
) -> Result<IdpProvider, ServiceError> {
    let valid = validate(input).map_err(ServiceError::Invalid)?;
    let (org_id, name) = (org.id.clone(), valid.name.clone());
    let taken = db::with_conn(pool, move |c| name_taken(c, &org_id, &name)).await?;
    if taken {
        return Err(ServiceError::field("name", "idp.name_taken"));
    }
    if let Err(problem) = upstream::discover(fed, valid.kind, &valid.issuer).await {
        return Err(ServiceError::field("issuer", problem.message_key()));
    }
    let sealed = fed.key.seal(&valid.client_secret)?;
    let (org_id, actor) = (org.id.clone(), actor.clone());
    db::with_conn(pool, move |c| create(c, &org_id, &valid, &sealed, &actor)).await
}

fn name_taken(conn: &mut DbConnection, org_id: &str, name: &str) -> Result<bool, ServiceError> {
    let n: i64 = idp_providers::table
        .filter(idp_providers::org_id.eq(org_id))
        .filter(idp_providers::name.eq(name))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// Saves a checked provider whose secret is already sealed ([`add`] discovers it first).
pub fn create(
    conn: &mut DbConnection,
    org_id: &str,
    valid: &ValidProvider,
    sealed_secret: &str,
    actor: &Actor,
) -> Result<IdpProvider, ServiceError> {
    db::write_tx(conn, |conn| {
        if name_taken(conn, org_id, &valid.name)? {
            return Err(ServiceError::field("name", "idp.name_taken"));
        }
        let provider = IdpProvider {
            id: db::new_id(),
            org_id: org_id.to_owned(),
            name: valid.name.clone(),
            kind: valid.kind.as_str().to_owned(),
            issuer: valid.issuer.clone(),
            client_id: valid.client_id.clone(),
            client_secret: sealed_secret.to_owned(),
            extra_scopes: valid.extra_scopes.clone(),
            trust_email: valid.trust_email,
            created_at: db::now(),
        };
        diesel::insert_into(idp_providers::table).values(&provider).execute(conn)?;
        for d in &valid.domains {
            diesel::insert_into(idp_domains::table)
                .values(&IdpDomain { idp_id: provider.id.clone(), domain: d.clone() })
                .execute(conn)?;
        }
        let detail = format!("{} {} ({})", provider.kind, provider.issuer, valid.domains.join(","));
        audit::record(conn, actor, Some(org_id), action::IDP_ADDED, Some(&provider.name), Some(&detail))?;
        Ok(provider)
    })
}

/// Removes a provider of the organization. Accounts bound through it keep their binding (the
/// identity is the issuer's); nobody can start a new sign-in through it, and answers to
/// requests already on their way are refused ("the provider was removed"; those requests
/// expire with the others).
pub fn remove(conn: &mut DbConnection, org_id: &str, id: &str, actor: &Actor) -> Result<(), ServiceError> {
    db::write_tx(conn, |conn| {
        let provider = find(conn, id)?.filter(|p| p.org_id == org_id).ok_or(ServiceError::NotFound)?;
        diesel::delete(idp_domains::table.filter(idp_domains::idp_id.eq(&provider.id))).execute(conn)?;
        diesel::delete(idp_providers::table.find(&provider.id)).execute(conn)?;
        audit::record(conn, actor, Some(org_id), action::IDP_REMOVED, Some(&provider.name), Some(&provider.issuer))?;
        Ok(())
    })
}

/// The organization named on the command line.
fn org_for_cli(conn: &mut DbConnection, slug: &str) -> anyhow::Result<Organization> {
    crate::services::orgs::find_by_slug(conn, slug)?.ok_or_else(|| anyhow::anyhow!("no organization {slug:?}"))
}

/// Field errors as one line for the terminal.
fn cli_errors(errors: &FieldErrors) -> anyhow::Error {
    let tr = crate::i18n::Lang::En.tr();
    let text: Vec<String> = errors.0.iter().map(|(f, k)| format!("--{}: {}", f.replace('_', "-"), tr.t(k))).collect();
    anyhow::anyhow!("{}", text.join("; "))
}

/// `vestibule idp add`: the same checks and discovery as the console page.
pub async fn add_for_cli(
    pool: &Pool,
    fed: &Federation,
    slug: &str,
    input: &ProviderInput,
) -> anyhow::Result<IdpProvider> {
    let slug = slug.to_owned();
    let org = db::with_conn(pool, move |c| org_for_cli(c, &slug)).await?;
    add(pool, fed, &org, input, &Actor::default()).await.map_err(|e| match e {
        ServiceError::Invalid(errors) => cli_errors(&errors),
        other => anyhow::anyhow!(other),
    })
}

/// `vestibule idp list`: one line per provider.
pub fn list_for_cli(conn: &mut DbConnection, slug: &str) -> anyhow::Result<Vec<String>> {
    let org = org_for_cli(conn, slug)?;
    Ok(list(conn, &org.id)?
        .into_iter()
        .map(|s| {
            let p = s.provider;
            format!(
                "{}\t{}\t{}\tclient_id={}\tdomains={}\ttrust_email={}",
                p.name,
                p.kind,
                p.issuer,
                p.client_id,
                s.domains.join(","),
                p.trust_email
            )
        })
        .collect())
}

/// `vestibule idp remove`: by name.
pub fn remove_for_cli(conn: &mut DbConnection, slug: &str, name: &str) -> anyhow::Result<()> {
    let org = org_for_cli(conn, slug)?;
    let id: Option<String> = idp_providers::table
        .filter(idp_providers::org_id.eq(&org.id))
        .filter(idp_providers::name.eq(name))
        .select(idp_providers::id)
        .first(conn)
        .optional()?;
    let id = id.ok_or_else(|| anyhow::anyhow!("no identity provider {name:?} in the organization {slug:?}"))?;
    remove(conn, &org.id, &id, &Actor::default()).map_err(anyhow::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> ProviderInput {
        ProviderInput {
            kind: "generic".into(),
            name: "Partner".into(),
            issuer: "https://idp.partner.example/".into(),
            client_id: "abc".into(),
            client_secret: "s3cret\n".into(),
            extra_scopes: "openid groups".into(),
            domains: "Partner.example, @sub.partner.example\npartner.example".into(),
            trust_email: None,
        }
    }

    #[test]
    fn a_good_provider() {
        let v = validate(&input()).unwrap();
        assert_eq!(v.issuer, "https://idp.partner.example");
        assert_eq!(v.client_secret, "s3cret");
        assert_eq!(v.extra_scopes, "groups");
        assert_eq!(v.domains, vec!["partner.example", "sub.partner.example"]);
        assert!(!v.trust_email);
    }

    #[test]
    fn presets_fill_the_issuer() {
        let mut i = input();
        i.kind = "google".into();
        i.issuer = String::new();
        assert_eq!(validate(&i).unwrap().issuer, "https://accounts.google.com");
        i.kind = "entra".into();
        assert_eq!(validate(&i).unwrap().issuer, "https://login.microsoftonline.com/organizations/v2.0");
    }

    #[test]
    fn every_field_is_checked() {
        let i = ProviderInput {
            kind: "generic".into(),
            name: " ".into(),
            issuer: "http://idp.example.com".into(),
            client_id: "has space".into(),
            client_secret: String::new(),
            extra_scopes: "a\"b".into(),
            domains: "not a domain!".into(),
            trust_email: Some("on".into()),
        };
        let e = validate(&i).unwrap_err();
        for (field, key) in [
            ("name", "idp.name_invalid"),
            ("issuer", "idp.issuer_insecure"),
            ("client_id", "idp.client_id_invalid"),
            ("client_secret", "idp.secret_invalid"),
            ("extra_scopes", "idp.scopes_invalid"),
            ("domains", "idp.domain_invalid"),
        ] {
            assert_eq!(e.get(field), Some(key), "{field}");
        }
        assert_eq!(parse_domains(" , "), Err("idp.domains_required"));
    }
}
