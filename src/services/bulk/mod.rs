//! Bulk invitations from a CSV file.
//!
//! The file follows Azure's bulk invite template (a `version:v1.0` line, then headings such as
//! `Email address to invite [inviteeEmail] Required`), plus our optional columns. Columns are
//! matched by the key in brackets, case-insensitively; unknown columns are ignored. Every row is
//! checked with the rules of the invite form and stored as a preview ([`jobs`]); nothing is
//! created before the admin confirms. A background worker ([`worker`]) then processes the valid
//! rows in batches, each batch in one write transaction with the job's saved position.

pub mod jobs;
pub mod worker;

use std::collections::HashSet;

use url::Url;

use crate::db::DbConnection;
use crate::db::models::{BulkRow, Group, Organization};
use crate::domain::RowStatus;
use crate::i18n::Lang;
use crate::services::invitations::{self, InviteInput};

/// Largest file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 10 * 1024 * 1024;
/// Most data rows accepted in one file.
pub const MAX_ROWS: usize = 50_000;

/// Catalogue key of the reason given to a row whose address already had a pending invitation.
pub const REASON_EXISTING: &str = "bulk.reason_existing";

/// A column we read, by its bracketed key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Email,
    Redirect,
    SendEmail,
    Message,
    DisplayName,
    Groups,
    Language,
}

fn column_of(heading: &str) -> Option<Column> {
    let start = heading.find('[')?;
    let end = start + heading[start..].find(']')?;
    Some(match heading[start + 1..end].trim().to_ascii_lowercase().as_str() {
        "inviteeemail" => Column::Email,
        "inviteredirecturl" => Column::Redirect,
        "sendemail" => Column::SendEmail,
        "customizedmessagebody" => Column::Message,
        // Newer Azure templates call it inviteeName.
        "displayname" | "inviteename" => Column::DisplayName,
        "groups" => Column::Groups,
        "language" => Column::Language,
        _ => return None,
    })
}

/// One data record of the file, as typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedRow {
    /// Line of the file where the record starts.
    pub line_no: i64,
    pub email: String,
    pub redirect_url: String,
    pub send_email: String,
    pub message: String,
    pub display_name: String,
    pub groups: String,
    pub language: String,
}

impl ParsedRow {
    fn set(&mut self, column: Column, value: &str) {
        let slot = match column {
            Column::Email => &mut self.email,
            Column::Redirect => &mut self.redirect_url,
            Column::SendEmail => &mut self.send_email,
            Column::Message => &mut self.message,
            Column::DisplayName => &mut self.display_name,
            Column::Groups => &mut self.groups,
            Column::Language => &mut self.language,
        };
        value.clone_into(slot);
    }
}

/// The template to download: Azure's layout with our optional columns, and an example row
/// (rows whose first cell starts with `Example:` are skipped, as in Azure's template).
pub fn template_csv(example_redirect: &str) -> String {
    format!(
        "version:v1.0\r\n\
         Email address to invite [inviteeEmail] Required,Redirection url [inviteRedirectURL] Required,\
         Send invitation message (true or false) [sendEmail],Customized invitation message [customizedMessageBody],\
         Display name [displayName],Groups [groups],Language [language]\r\n\
         Example:    name@example.com,{example_redirect},true,\"Welcome, we look forward to working with you.\",\
         Ada Lovelace,Partners;Project X,en\r\n"
    )
}

/// Reads the file: UTF-8 with or without BOM, CRLF or LF, quoted fields. `Err` is the catalogue
/// key of what is wrong with the file as a whole.
pub fn parse(bytes: &[u8]) -> Result<Vec<ParsedRow>, &'static str> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err("bulk.file_too_large");
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|_| "bulk.file_not_utf8")?;
    let mut reader =
        csv::ReaderBuilder::new().has_headers(false).flexible(true).trim(csv::Trim::None).from_reader(text.as_bytes());
    let mut columns: Option<Vec<Option<Column>>> = None;
    let mut rows = Vec::new();
    let mut lines = LineCounter::default();
    for record in reader.records() {
        let record = record.map_err(|_| "bulk.file_unreadable")?;
        if record.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        let first = record.get(0).unwrap_or("").trim();
        let Some(cols) = &columns else {
            if first.to_ascii_lowercase().starts_with("version:") {
                continue;
            }
            let cols: Vec<Option<Column>> = record.iter().map(column_of).collect();
            if !cols.contains(&Some(Column::Email)) {
                return Err("bulk.file_no_header");
            }
            columns = Some(cols);
            continue;
        };
        if first.to_ascii_lowercase().starts_with("example:") {
            continue;
        }
        if rows.len() >= MAX_ROWS {
            return Err("bulk.file_too_many_rows");
        }
        let mut row = ParsedRow {
            line_no: lines.line_at(text, record.position().map_or(0, |p| p.byte() as usize)),
            ..ParsedRow::default()
        };
        for (value, column) in record.iter().zip(cols) {
            if let Some(c) = column {
                row.set(*c, value);
            }
        }
        rows.push(row);
    }
    if columns.is_none() {
        return Err("bulk.file_no_header");
    }
    if rows.is_empty() {
        return Err("bulk.file_empty");
    }
    Ok(rows)
}

/// Line numbers of records, counted from their byte offsets. (The csv crate's own line count
/// drifts with CRLF line ends, and its offset may point at the previous record's line feed.)
#[derive(Default)]
struct LineCounter {
    byte: usize,
    line: i64,
}

impl LineCounter {
    /// The 1-based line where the record at `offset` starts; offsets only grow.
    fn line_at(&mut self, text: &str, offset: usize) -> i64 {
        let bytes = text.as_bytes();
        let mut start = offset.min(bytes.len());
        while start < bytes.len() && (bytes[start] == b'\r' || bytes[start] == b'\n') {
            start += 1;
        }
        let from = self.byte.min(start);
        self.line += bytes[from..start].iter().filter(|b| **b == b'\n').count() as i64;
        self.byte = start;
        self.line + 1
    }
}

/// What rows are checked against.
pub struct CheckContext<'a> {
    pub org: &'a Organization,
    pub public_url: &'a Url,
    /// Origins of the org's apps (allowed redirects).
    pub app_origins: &'a [String],
    pub groups: &'a [Group],
}

/// What a checked row asks for, as the invite form would.
pub fn row_input(row: &BulkRow) -> InviteInput {
    InviteInput {
        email: row.email.clone(),
        display_name: row.display_name.clone(),
        message: row.message.clone(),
        redirect_url: row.redirect_url.clone(),
        user_type: crate::domain::UserType::Guest.as_str().into(),
        send_email: row.send_email,
        language: row.language.as_deref().and_then(Lang::parse),
        group_ids: row.groups.split(',').filter(|g| !g.is_empty()).map(str::to_owned).collect(),
        app_id: None,
    }
}

impl CheckContext<'_> {
    /// Checks one row with the rules of the invite form (for the preview).
    pub fn check(&self, row: &BulkRow) -> Result<invitations::ValidInvite, &'static str> {
        invitations::validate_with_origins(&row_input(row), self.org, self.public_url, self.app_origins)
            .map_err(|e| e.0.first().map(|(_, key)| *key).unwrap_or("bulk.reason_invalid"))
    }

    fn parse_cells(&self, p: &ParsedRow) -> Result<(bool, Option<Lang>, Vec<String>), &'static str> {
        let send_email = match p.send_email.trim().to_ascii_lowercase().as_str() {
            "" | "true" | "yes" | "1" => true,
            "false" | "no" | "0" => false,
            _ => return Err("bulk.reason_send_email"),
        };
        let language = match p.language.trim() {
            "" => None,
            code => Some(Lang::parse(code).ok_or("bulk.reason_language")?),
        };
        let mut group_ids = Vec::new();
        for name in p.groups.split(';').map(str::trim).filter(|n| !n.is_empty()) {
            let group = self.groups.iter().find(|g| g.name.to_lowercase() == name.to_lowercase());
            let id = group.map(|g| g.id.clone()).ok_or("bulk.reason_group")?;
            if !group_ids.contains(&id) {
                group_ids.push(id);
            }
        }
        Ok((send_email, language, group_ids))
    }
}

/// Checks every row: each becomes `valid`, `invalid` (with the reason) or `duplicate` (an
/// address already seen on an earlier line). The rows have no job id yet.
pub fn check_rows(rows: Vec<ParsedRow>, ctx: &CheckContext) -> Vec<BulkRow> {
    let mut seen = HashSet::new();
    rows.into_iter()
        .map(|p| {
            let mut row = BulkRow {
                job_id: String::new(),
                line_no: p.line_no,
                email: p.email.trim().to_owned(),
                display_name: p.display_name.trim().to_owned(),
                redirect_url: p.redirect_url.trim().to_owned(),
                send_email: true,
                message: p.message.clone(),
                groups: String::new(),
                language: None,
                status: RowStatus::Valid,
                reason: None,
                invitation_id: None,
            };
            let problem = match ctx.parse_cells(&p) {
                Ok((send_email, language, group_ids)) => {
                    row.send_email = send_email;
                    row.language = language.map(|l| l.code().to_owned());
                    row.groups = group_ids.join(",");
                    ctx.check(&row).map(|valid| valid.email.as_str().to_owned())
                }
                Err(key) => Err(key),
            };
            match problem {
                Ok(canonical) if !seen.insert(canonical.clone()) => {
                    row.email = canonical;
                    row.status = RowStatus::Duplicate;
                    row.reason = Some("bulk.reason_duplicate".into());
                }
                Ok(canonical) => row.email = canonical,
                Err(key) => {
                    row.status = RowStatus::Invalid;
                    row.reason = Some(key.into());
                }
            }
            row
        })
        .collect()
}

/// Reads and checks a file for `org`: the rows of the preview, or what is wrong with the file.
pub fn check_file(
    conn: &mut DbConnection,
    org: &Organization,
    public_url: &Url,
    bytes: &[u8],
) -> Result<Result<Vec<BulkRow>, &'static str>, diesel::result::Error> {
    let parsed = match parse(bytes) {
        Ok(p) => p,
        Err(key) => return Ok(Err(key)),
    };
    let app_origins = crate::services::apps::origins(conn, &org.id)?;
    let groups = crate::services::groups::list(conn, &org.id)?;
    let ctx = CheckContext { org, public_url, app_origins: &app_origins, groups: &groups };
    Ok(Ok(check_rows(parsed, &ctx)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_azure_template_with_bom_crlf_and_quotes() {
        let file = "\u{feff}version:v1.0,,,\r\n\
            Email address to invite [inviteeEmail] Required,Redirection url [inviteRedirectURL] Required,\
            Send invitation message (true or false) [sendEmail],Customized invitation message [customizedMessageBody],Other [x]\r\n\
            Example:    name@domain.com,https://myapps.microsoft.com,true,Hello,\r\n\
            a@example.com,https://x.example,TRUE,\"Hi, there\r\nsecond line\",ignored\r\n\
            \r\n\
            b@example.com,,false,,\r\n";
        let rows = parse(file.as_bytes()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].line_no, 4);
        assert_eq!(rows[0].message, "Hi, there\r\nsecond line");
        assert_eq!(rows[0].send_email, "TRUE");
        assert_eq!(rows[1].line_no, 7);
        assert_eq!(rows[1].email, "b@example.com");
    }

    #[test]
    fn columns_match_by_key_in_any_case_and_order() {
        let rows = parse(b"[LANGUAGE],Name [inviteeName],Mail [INVITEEEMAIL]\nfr,Ada,a@example.com\n").unwrap();
        assert_eq!((rows[0].language.as_str(), rows[0].display_name.as_str()), ("fr", "Ada"));
        assert_eq!(rows[0].email, "a@example.com");
    }

    #[test]
    fn refuses_what_is_not_a_bulk_file() {
        assert_eq!(parse(b"\xff\xfe\x00a"), Err("bulk.file_not_utf8"));
        assert_eq!(parse(b"name,email\nx,y\n"), Err("bulk.file_no_header"));
        assert_eq!(parse(b"version:v1.0\n[inviteeEmail]\n"), Err("bulk.file_empty"));
        let mut big = String::from("[inviteeEmail]\n");
        for i in 0..=MAX_ROWS {
            big.push_str(&format!("u{i}@example.com\n"));
        }
        assert_eq!(parse(big.as_bytes()), Err("bulk.file_too_many_rows"));
    }

    #[test]
    fn template_reads_back_with_only_the_example() {
        assert_eq!(parse(template_csv("https://x.example/").as_bytes()), Err("bulk.file_empty"));
    }
}
