//! `GET /api/v1.0/users` (`$filter`, `$select`, `$orderby`, `$count`, `$top`, `$skiptoken`),
//! `GET` and `DELETE /api/v1.0/users/{id | address}`. A user's `id` is the id of their
//! membership in the key's organization.
//!
//! The query options follow Graph's documented rules for directory objects
//! (<https://learn.microsoft.com/graph/aad-advanced-queries>): `$count=true` adds
//! `@odata.count` only with the header `ConsistencyLevel: eventual` (without it the option is
//! ignored, as Graph does); sorting by `createdDateTime`, and `$filter` with `$orderby` in one
//! request, need both (`$count=true` and the header), else a 400 `Request_UnsupportedQuery`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::odata::{self, Token};
use super::{ApiError, authenticate, json, respond, rfc3339};
use crate::domain::{Email, MembershipState};
use crate::services::directory::{self, After, Condition, DirectoryFilter, Order, Person, SortKey};
use crate::services::{ServiceError, users};
use crate::state::AppState;
use crate::web::with_conn;

/// Default and largest page sizes.
const DEFAULT_TOP: i64 = 100;
const MAX_TOP: i64 = 999;

/// Properties answered by default: Graph's default set for `user`, then ours.
const DEFAULT_PROPERTIES: &[&str] = &[
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
    "userType",
    "externalUserState",
    "externalUserStateChangeDateTime",
    "createdDateTime",
];

/// Properties given only when `$select` names them.
const SELECT_ONLY: &[&str] = &["accountEnabled"];

/// Graph `user` properties Vestibule does not keep: `$select` may name them (scripts copied
/// from Graph's documentation do) and gets null, or an empty list for collections.
const NOT_KEPT: &[&str] = &[
    "aboutMe",
    "ageGroup",
    "city",
    "companyName",
    "country",
    "creationType",
    "deletedDateTime",
    "department",
    "employeeId",
    "employeeType",
    "faxNumber",
    "lastPasswordChangeDateTime",
    "mailNickname",
    "onPremisesSyncEnabled",
    "postalCode",
    "signInActivity",
    "state",
    "streetAddress",
    "usageLocation",
];
const NOT_KEPT_COLLECTIONS: &[&str] = &["identities", "imAddresses", "otherMails", "proxyAddresses"];

/// Every property of a person, by Graph name.
fn user_json(p: &Person) -> Map<String, Value> {
    let (m, u) = (&p.membership, &p.user);
    let mut obj = Map::new();
    let mut put = |k: &str, v: Value| {
        obj.insert(k.to_owned(), v);
    };
    put("businessPhones", Value::Array(Vec::new()));
    put("displayName", u.display_name.clone().into());
    for absent in ["givenName", "jobTitle", "mobilePhone", "officeLocation", "surname"] {
        put(absent, Value::Null);
    }
    put("mail", u.email.clone().into());
    put("preferredLanguage", u.language.clone().map_or(Value::Null, Value::String));
    put("userPrincipalName", u.email.clone().into());
    put("id", m.id.clone().into());
    put("userType", serde_json::to_value(m.user_type).unwrap_or(Value::Null));
    put("externalUserState", serde_json::to_value(m.state).unwrap_or(Value::Null));
    put("externalUserStateChangeDateTime", rfc3339(p.state_changed_at).into());
    put("createdDateTime", rfc3339(m.created_at).into());
    put("accountEnabled", Value::Bool(!m.blocked));
    obj
}

/// The properties to answer: the defaults, or those `$select` names (Graph's spelling).
#[derive(Debug, Clone)]
struct Selection(Option<Vec<&'static str>>);

impl Selection {
    fn parse(text: &str) -> Result<Selection, ApiError> {
        let mut names = Vec::new();
        for part in text.split(',').map(str::trim) {
            if part == "*" {
                names.extend(DEFAULT_PROPERTIES.iter().chain(SELECT_ONLY));
                continue;
            }
            let known = DEFAULT_PROPERTIES
                .iter()
                .chain(SELECT_ONLY)
                .chain(NOT_KEPT)
                .chain(NOT_KEPT_COLLECTIONS)
                .find(|k| k.eq_ignore_ascii_case(part))
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "Could not find a property named '{}' on type 'microsoft.graph.user'.",
                        odata::shorten(part)
                    ))
                })?;
            if !names.contains(known) {
                names.push(*known);
            }
        }
        Ok(Selection(Some(names)))
    }

    /// The person, trimmed to the selection.
    fn apply(&self, p: &Person) -> Value {
        let mut all = user_json(p);
        let names: &[&str] = self.0.as_deref().unwrap_or(DEFAULT_PROPERTIES);
        let mut out = Map::new();
        for name in names {
            let value = match all.remove(*name) {
                Some(v) => v,
                None if NOT_KEPT_COLLECTIONS.contains(name) => Value::Array(Vec::new()),
                None => Value::Null,
            };
            out.insert((*name).to_owned(), value);
        }
        Value::Object(out)
    }

    /// `(a,b)` for the `@odata.context` URL of a selection.
    fn context_suffix(&self) -> String {
        self.0.as_ref().map(|n| format!("({})", n.join(","))).unwrap_or_default()
    }
}

/// Parses `$filter`: clauses joined by `and`, each `prop eq 'value'` or
/// `startswith(prop,'value')`, with OData's quoting (`''` is a quote).
fn parse_filter(text: &str) -> Result<DirectoryFilter, ApiError> {
    let tokens = odata::tokenize(text).map_err(|e| ApiError::bad_request(format!("Invalid filter clause: {e}")))?;
    let mut filter = DirectoryFilter::default();
    let mut rest = tokens.as_slice();
    loop {
        let (condition, after) = parse_clause(rest)?;
        filter.conditions.push(condition);
        match after {
            [] => break,
            [Token::Word(w), more @ ..] if w.eq_ignore_ascii_case("and") && !more.is_empty() => rest = more,
            [Token::Word(w), ..] if w.eq_ignore_ascii_case("or") || w.eq_ignore_ascii_case("not") => {
                return Err(unsupported_filter(&format!("the operator '{w}'")));
            }
            _ => return Err(ApiError::bad_request("Invalid filter clause: clauses must be joined by 'and'.")),
        }
    }
    Ok(filter)
}

fn unsupported_filter(what: &str) -> ApiError {
    ApiError::unsupported_query(format!(
        "Unsupported query: {what}. '$filter' supports \"userType eq 'Guest'|'Member'\", \
         \"externalUserState eq 'PendingAcceptance'|'Accepted'\", \"mail eq '…'\", \
         \"userPrincipalName eq '…'\", \"displayName eq '…'\", \"startswith(mail,'…')\" and \
         \"startswith(displayName,'…')\", joined by 'and'."
    ))
}

/// One clause at the start of `tokens`, and the tokens after it.
fn parse_clause(tokens: &[Token]) -> Result<(Condition, &[Token]), ApiError> {
    let syntax = || {
        ApiError::bad_request(
            "Invalid filter clause: expected \"property eq 'value'\" or \"startswith(property,'value')\".",
        )
    };
    match tokens {
        [Token::Open, rest @ ..] => {
            let (c, after) = parse_clause(rest)?;
            match after {
                [Token::Close, more @ ..] => Ok((c, more)),
                _ => Err(syntax()),
            }
        }
        [Token::Word(f), Token::Open, Token::Word(prop), Token::Comma, Token::Str(v), Token::Close, rest @ ..]
            if f.eq_ignore_ascii_case("startswith") =>
        {
            let v = checked_value(v)?;
            let c = match prop.to_ascii_lowercase().as_str() {
                "mail" | "userprincipalname" => Condition::MailStartsWith(v),
                "displayname" => Condition::DisplayNameStartsWith(v),
                _ => return Err(unsupported_filter(&format!("startswith on '{}'", odata::shorten(prop)))),
            };
            Ok((c, rest))
        }
        [Token::Word(prop), Token::Word(op), Token::Str(v), rest @ ..] => {
            if !op.eq_ignore_ascii_case("eq") {
                return Err(unsupported_filter(&format!("the operator '{}'", odata::shorten(op))));
            }
            let v = checked_value(v)?;
            let c = match prop.to_ascii_lowercase().as_str() {
                "usertype" => match v.to_ascii_lowercase().as_str() {
                    "guest" => Condition::UserType("Guest".into()),
                    "member" => Condition::UserType("Member".into()),
                    _ => return Err(unsupported_filter("userType other than 'Guest' or 'Member'")),
                },
                "externaluserstate" => match MembershipState::parse(&v) {
                    Some(_) => Condition::State(v),
                    None => {
                        return Err(unsupported_filter(
                            "externalUserState other than 'PendingAcceptance' or 'Accepted'",
                        ));
                    }
                },
                "mail" | "userprincipalname" => Condition::MailIs(v),
                "displayname" => Condition::DisplayNameIs(v),
                _ => return Err(unsupported_filter(&format!("the property '{}'", odata::shorten(prop)))),
            };
            Ok((c, rest))
        }
        _ => Err(syntax()),
    }
}

fn checked_value(v: &str) -> Result<String, ApiError> {
    if v.chars().count() > directory::MAX_VALUE_CHARS {
        return Err(ApiError::bad_request("Invalid filter clause: a value is longer than 254 characters."));
    }
    Ok(v.to_owned())
}

/// Parses `$orderby`: one of `displayName` and `createdDateTime`, then `asc` or `desc`.
fn parse_orderby(text: &str) -> Result<Order, ApiError> {
    let bad = || {
        ApiError::unsupported_query(
            "'$orderby' supports one of 'displayName' and 'createdDateTime', optionally followed by 'asc' or 'desc'.",
        )
    };
    let mut words = text.split_whitespace();
    let key = match words.next().map(str::to_ascii_lowercase).as_deref() {
        Some("displayname") => SortKey::DisplayName,
        Some("createddatetime") => SortKey::CreatedAt,
        _ => return Err(bad()),
    };
    let descending = match words.next().map(str::to_ascii_lowercase).as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        _ => return Err(bad()),
    };
    if words.next().is_some() {
        return Err(bad());
    }
    Ok(Order { key, descending })
}

/// The `$skiptoken` of the position after `p`: the membership id when sorted by id (as
/// before), else the sort value and the id.
fn skiptoken(p: &Person, order: Order) -> String {
    let text = match After::of(p, order) {
        After::Id(id) => id,
        After::DisplayName(name, id) => serde_json::json!(["n", name, id]).to_string(),
        After::CreatedAt(at, id) => {
            serde_json::json!(["c", at.assume_utc().unix_timestamp_nanos().to_string(), id]).to_string()
        }
    };
    URL_SAFE_NO_PAD.encode(text.as_bytes())
}

fn parse_skiptoken(token: &str, order: Order) -> Result<After, ApiError> {
    let bad = || ApiError::bad_request("'$skiptoken' is not valid.");
    let text = URL_SAFE_NO_PAD
        .decode(token.as_bytes())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|s| s.len() <= 1024)
        .ok_or_else(bad)?;
    if order.key == SortKey::Id {
        return Some(text).filter(|s| s.len() <= 64).map(After::Id).ok_or_else(bad);
    }
    let parts: Vec<String> = serde_json::from_str(&text).map_err(|_| bad())?;
    match (order.key, parts.as_slice()) {
        (SortKey::DisplayName, [k, name, id]) if k == "n" => Ok(After::DisplayName(name.clone(), id.clone())),
        (SortKey::CreatedAt, [k, nanos, id]) if k == "c" => {
            let nanos: i128 = nanos.parse().map_err(|_| bad())?;
            let at = time::OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| bad())?;
            Ok(After::CreatedAt(time::PrimitiveDateTime::new(at.date(), at.time()), id.clone()))
        }
        _ => Err(bad()),
    }
}

/// True when the request carries `ConsistencyLevel: eventual`.
fn eventual(req: &HttpRequest) -> bool {
    req.headers()
        .get("consistencylevel")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("eventual"))
}

/// The query of `GET /users`, as read.
#[derive(Default)]
struct ListQuery {
    filter_text: Option<String>,
    filter: DirectoryFilter,
    select_text: Option<String>,
    select: Option<Selection>,
    orderby_text: Option<String>,
    order: Order,
    count: bool,
    top: i64,
    after: Option<After>,
}

fn parse_list_query(req: &HttpRequest) -> Result<ListQuery, ApiError> {
    let mut q = ListQuery { top: DEFAULT_TOP, ..ListQuery::default() };
    let mut token = None;
    for (k, v) in url::form_urlencoded::parse(req.query_string().as_bytes()) {
        match k.as_ref() {
            "$filter" => {
                q.filter = parse_filter(&v)?;
                q.filter_text = Some(v.into_owned());
            }
            "$select" => {
                q.select = Some(Selection::parse(&v)?);
                q.select_text = Some(v.into_owned());
            }
            "$orderby" => {
                q.order = parse_orderby(&v)?;
                q.orderby_text = Some(v.into_owned());
            }
            "$count" => {
                q.count = match v.to_ascii_lowercase().as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(ApiError::bad_request("'$count' must be true or false.")),
                }
            }
            "$top" => {
                q.top = v
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=MAX_TOP).contains(n))
                    .ok_or_else(|| ApiError::bad_request("'$top' must be a whole number from 1 to 999."))?
            }
            "$skiptoken" => token = Some(v.into_owned()),
            other if other.starts_with('$') => {
                return Err(ApiError::bad_request(format!(
                    "The query option '{}' is not supported.",
                    odata::shorten(other)
                )));
            }
            _ => {}
        }
    }
    let advanced = q.count && eventual(req);
    let need_advanced = |why: &str| {
        ApiError::unsupported_query(format!(
            "{why} needs the advanced query parameters: add '$count=true' and the header 'ConsistencyLevel: eventual'."
        ))
    };
    if q.order.key == SortKey::CreatedAt && !advanced {
        return Err(need_advanced("Sorting by 'createdDateTime'"));
    }
    if q.orderby_text.is_some() && q.filter_text.is_some() && !advanced {
        return Err(need_advanced("Using '$filter' and '$orderby' in the same query"));
    }
    // Without the header, Graph ignores `$count=true` rather than refusing it.
    q.count = advanced;
    if let Some(t) = token {
        q.after = Some(parse_skiptoken(&t, q.order)?);
    }
    Ok(q)
}

/// `GET /api/v1.0/users`.
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let result = async {
        let caller = authenticate(&req, &state).await?;
        let q = parse_list_query(&req)?;
        let org_id = caller.org.id.clone();
        let (filter, order, after, top, counted) = (q.filter.clone(), q.order, q.after.clone(), q.top, q.count);
        let (people, more, total) = with_conn(&state, move |c| {
            let (people, more) = directory::page(c, &org_id, &filter, order, after.as_ref(), top)?;
            let total = if counted { Some(directory::count(c, &org_id, &filter)?) } else { None };
            Ok((people, more, total))
        })
        .await?;
        let selection = q.select.clone().unwrap_or(Selection(None));
        let base = state.settings.base_url();
        let mut body = Map::new();
        body.insert(
            "@odata.context".into(),
            format!("{base}/api/v1.0/$metadata#users{}", selection.context_suffix()).into(),
        );
        if let Some(n) = total {
            body.insert("@odata.count".into(), n.into());
        }
        body.insert("value".into(), people.iter().map(|p| selection.apply(p)).collect::<Vec<_>>().into());
        if more && let Some(last) = people.last() {
            let mut next = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in [("$filter", &q.filter_text), ("$select", &q.select_text), ("$orderby", &q.orderby_text)] {
                if let Some(v) = v {
                    next.append_pair(k, v);
                }
            }
            if q.count {
                next.append_pair("$count", "true");
            }
            next.append_pair("$top", &q.top.to_string());
            next.append_pair("$skiptoken", &skiptoken(last, q.order));
            body.insert("@odata.nextLink".into(), format!("{base}/api/v1.0/users?{}", next.finish()).into());
        }
        Ok(json(StatusCode::OK, &Value::Object(body)))
    }
    .await;
    respond(&req, result)
}

/// The person named by `id`: a membership id, or an address (Graph's user principal name).
fn lookup(c: &mut crate::db::DbConnection, org_id: &str, id: &str) -> diesel::QueryResult<Option<Person>> {
    if id.contains('@') {
        match Email::parse(id) {
            Ok(email) => directory::find_by_email(c, org_id, email.as_str()),
            Err(_) => Ok(None),
        }
    } else {
        directory::find(c, org_id, id)
    }
}

/// `GET /api/v1.0/users/{id | address}` (`$select`).
pub async fn get(req: HttpRequest, state: web::Data<AppState>, id: web::Path<String>) -> HttpResponse {
    let result = async {
        let caller = authenticate(&req, &state).await?;
        let mut selection = Selection(None);
        for (k, v) in url::form_urlencoded::parse(req.query_string().as_bytes()) {
            match k.as_ref() {
                "$select" => selection = Selection::parse(&v)?,
                other if other.starts_with('$') => {
                    return Err(ApiError::bad_request(format!(
                        "The query option '{}' is not supported.",
                        odata::shorten(other)
                    )));
                }
                _ => {}
            }
        }
        let (org_id, id) = (caller.org.id.clone(), id.into_inner());
        let person = with_conn(&state, move |c| Ok(lookup(c, &org_id, &id)?)).await?.ok_or_else(ApiError::not_found)?;
        let mut body = selection.apply(&person);
        body["@odata.context"] =
            format!("{}/api/v1.0/$metadata#users{}/$entity", state.settings.base_url(), selection.context_suffix())
                .into();
        Ok(json(StatusCode::OK, &body))
    }
    .await;
    respond(&req, result)
}

/// `DELETE /api/v1.0/users/{id | address}`: removes the person from the org (soft, restorable
/// for 30 days).
pub async fn delete(req: HttpRequest, state: web::Data<AppState>, id: web::Path<String>) -> HttpResponse {
    let result = async {
        let caller = authenticate(&req, &state).await?;
        let (org, id, actor) = (caller.org.clone(), id.into_inner(), caller.actor(&req));
        let outcome = with_conn(&state, move |c| {
            let mid = match id.contains('@') {
                true => match lookup(c, &org.id, &id)? {
                    Some(p) => p.membership.id,
                    None => return Ok(Err(ServiceError::NotFound)),
                },
                false => id,
            };
            Ok(users::remove(c, &org, &mid, &actor))
        })
        .await?;
        match outcome {
            Ok(()) => Ok(HttpResponse::NoContent().finish()),
            Err(ServiceError::NotFound) => Err(ApiError::not_found()),
            Err(ServiceError::Forbidden) => Err(ApiError::forbidden("A key cannot remove the admin it acts for.")),
            Err(e) => Err(crate::error::AppError::from(e).into()),
        }
    }
    .await;
    respond(&req, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_with_odata_quoting_and_and() {
        let f = parse_filter("startswith(mail,'o''brien@') and userType eq 'guest'").unwrap();
        assert_eq!(
            f.conditions,
            vec![Condition::MailStartsWith("o'brien@".into()), Condition::UserType("Guest".into())]
        );
        let f = parse_filter("userPrincipalName eq 'Ada@Example.com' AND startsWith(displayName, 'Ad')").unwrap();
        assert_eq!(
            f.conditions,
            vec![Condition::MailIs("Ada@Example.com".into()), Condition::DisplayNameStartsWith("Ad".into())]
        );
        // An ' and ' inside a quoted value is part of the value.
        let f = parse_filter("displayName eq 'Tom and Jerry'").unwrap();
        assert_eq!(f.conditions, vec![Condition::DisplayNameIs("Tom and Jerry".into())]);
        for bad in [
            "mail eq 'unterminated",
            "mail ne 'a@b.c'",
            "jobTitle eq 'CEO'",
            "mail eq 'a' or mail eq 'b'",
            "endswith(mail,'@x.com')",
            "mail eq 'a' and",
            "",
        ] {
            assert!(parse_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn orderby_and_select_parse() {
        assert_eq!(parse_orderby("displayName").unwrap(), Order { key: SortKey::DisplayName, descending: false });
        assert_eq!(parse_orderby("createdDateTime desc").unwrap(), Order { key: SortKey::CreatedAt, descending: true });
        assert!(parse_orderby("mail").is_err());
        assert!(parse_orderby("displayName up").is_err());
        let s = Selection::parse("DisplayName,mail,postalCode").unwrap();
        assert_eq!(s.0.as_deref(), Some(&["displayName", "mail", "postalCode"][..]));
        assert!(Selection::parse("displayName,nonsense").is_err());
    }
}
