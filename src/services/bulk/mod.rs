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

/// The column a heading names: by the key in brackets (`Email address to invite
/// [inviteeEmail] Required`), or by the bare key (`inviteeEmail`), in any case.
fn column_of(heading: &str) -> Option<Column> {
    let key = match heading.find('[') {
        Some(start) => &heading[start + 1..start + heading[start..].find(']')?],
        None => heading.trim().trim_start_matches('\u{feff}'),
    };
    Some(match key.trim().to_ascii_lowercase().as_str() {
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

/// How many bracketed keys of known columns a heading cell holds.
fn keys_in(heading: &str) -> usize {
    heading.split('[').skip(1).filter(|part| part.contains(']') && column_of(&format!("[{part}")).is_some()).count()
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

/// The separators a spreadsheet may save a "CSV" file with: comma (English locales), semicolon
/// (French and other locales where the comma is the decimal mark), tab ("Unicode text").
const SEPARATORS: [u8; 3] = [b',', b';', b'\t'];

/// The file as text: UTF-8 with or without BOM; UTF-16 with its BOM (Excel's "Unicode text");
/// anything else that is not valid UTF-8 is read as Windows-1252, what Excel's "CSV (Comma
/// delimited)" writes on Windows. `Err` when the file is not text at all (a workbook, an image).
fn decode(bytes: &[u8]) -> Result<String, &'static str> {
    for (bom, encoding) in [(&b"\xFF\xFE"[..], encoding_rs::UTF_16LE), (&b"\xFE\xFF"[..], encoding_rs::UTF_16BE)] {
        if let Some(rest) = bytes.strip_prefix(bom) {
            let (text, had_errors) = encoding.decode_without_bom_handling(rest);
            return if had_errors { Err("bulk.file_not_text") } else { Ok(text.into_owned()) };
        }
    }
    if bytes.contains(&0) {
        return Err("bulk.file_not_text");
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text.to_owned()),
        Err(_) => Ok(encoding_rs::WINDOWS_1252.decode_without_bom_handling(bytes).0.into_owned()),
    }
}

fn reader(text: &str, separator: u8) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::None)
        .delimiter(separator)
        .from_reader(text.as_bytes())
}

/// Whether a record is Azure's `version:v1.0` line.
fn is_version_line(record: &csv::StringRecord) -> bool {
    record.get(0).unwrap_or("").trim().to_ascii_lowercase().starts_with("version:")
}

/// The heading row as read with `separator`: the first record that is neither blank nor the
/// version line. Read by the csv crate, so that quoted headings are read as such.
fn heading_with(text: &str, separator: u8) -> Option<csv::StringRecord> {
    reader(text, separator)
        .records()
        .map_while(Result::ok)
        .find(|r| !r.iter().all(|c| c.trim().is_empty()) && !is_version_line(r))
}

/// The separator of the file, told by its heading row: the one that splits it into the most
/// recognised columns (then into the most cells); a comma when nothing tells them apart.
fn detect_separator(text: &str) -> u8 {
    let mut best = (b',', 0, 0);
    for sep in SEPARATORS {
        let Some(heading) = heading_with(text, sep) else { continue };
        let known = heading.iter().filter(|h| column_of(h).is_some()).count();
        if (known, heading.len()) > (best.1, best.2) {
            best = (sep, known, heading.len());
        }
    }
    best.0
}

/// Reads the file: UTF-8 (with or without BOM), UTF-16 with BOM or Windows-1252; CRLF or LF;
/// separated by commas, semicolons or tabs (told by the heading row); quoted fields. `Err` is
/// the catalogue key of what is wrong with the file as a whole: in particular one message
/// naming the expected columns when no heading row is recognised, rather than one per row.
pub fn parse(bytes: &[u8]) -> Result<Vec<ParsedRow>, &'static str> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err("bulk.file_too_large");
    }
    let text = decode(bytes)?;
    let text = text.as_str();
    let mut reader = reader(text, detect_separator(text));
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
            if is_version_line(&record) {
                continue;
            }
            let cols: Vec<Option<Column>> = record.iter().map(column_of).collect();
            // Several keys in one cell: the file uses a separator we do not read (`|`, …), and
            // every row would be one cell; say so once rather than once per row.
            if !cols.contains(&Some(Column::Email)) || record.iter().any(|h| keys_in(h) > 1) {
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
            // French Excel saves TRUE and FALSE as VRAI and FAUX.
            "" | "true" | "yes" | "1" | "vrai" | "oui" => true,
            "false" | "no" | "0" | "faux" | "non" => false,
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
        assert_eq!(parse(b"PK\x03\x04\x14\x00\x06\x00"), Err("bulk.file_not_text"));
        assert_eq!(parse(b"name,email\nx,y\n"), Err("bulk.file_no_header"));
        assert_eq!(parse(b"version:v1.0\n[inviteeEmail]\n"), Err("bulk.file_empty"));
        let mut big = String::from("[inviteeEmail]\n");
        for i in 0..=MAX_ROWS {
            big.push_str(&format!("u{i}@example.com\n"));
        }
        assert_eq!(parse(big.as_bytes()), Err("bulk.file_too_many_rows"));
    }

    #[test]
    fn reads_french_excel_semicolons_bom_crlf() {
        let file = "\u{feff}version:v1.0;;;\r\n\
            Email address to invite [inviteeEmail] Required;Redirection url [inviteRedirectURL] Required;Display name [displayName]\r\n\
            h\u{e9}l\u{e8}ne@example.com;https://x.example;\"Dupont; H\u{e9}l\u{e8}ne\"\r\n\
            z\u{f6}e@example.com;;Zo\u{eb} \u{c7}elik\r\n";
        let rows = parse(file.as_bytes()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].line_no, rows[0].email.as_str()), (3, "h\u{e9}l\u{e8}ne@example.com"));
        assert_eq!(rows[0].display_name, "Dupont; H\u{e9}l\u{e8}ne");
        assert_eq!(rows[0].redirect_url, "https://x.example");
        assert_eq!((rows[1].line_no, rows[1].display_name.as_str()), (4, "Zo\u{eb} \u{c7}elik"));
    }

    #[test]
    fn reads_windows_1252_and_tabs_and_utf16() {
        // "Ren\xe9e M\xfcller" in Windows-1252: not valid UTF-8.
        let file = b"[inviteeEmail],[displayName]\r\nrenee@example.com,Ren\xe9e M\xfcller \x80\r\n";
        let rows = parse(file).unwrap();
        assert_eq!(rows[0].display_name, "Ren\u{e9}e M\u{fc}ller \u{20ac}");
        let rows = parse(b"[displayName]\t[inviteeEmail]\nAda, Countess\tada@example.com\n").unwrap();
        assert_eq!((rows[0].email.as_str(), rows[0].display_name.as_str()), ("ada@example.com", "Ada, Countess"));
        let utf16: Vec<u8> = [0xFEFF_u16]
            .into_iter()
            .chain("inviteeEmail\tdisplayName\r\nada@example.com\tAda L\u{f6}vel\r\n".encode_utf16())
            .flat_map(u16::to_le_bytes)
            .collect();
        let rows = parse(&utf16).unwrap();
        assert_eq!((rows[0].email.as_str(), rows[0].display_name.as_str()), ("ada@example.com", "Ada L\u{f6}vel"));
    }

    #[test]
    fn unrecognised_heading_is_one_problem_for_the_whole_file() {
        assert_eq!(parse(b"Email;Name\r\nada@example.com;Ada\r\n"), Err("bulk.file_no_header"));
        assert_eq!(parse(b"ada@example.com,https://x.example\n"), Err("bulk.file_no_header"));
        assert_eq!(parse(b"[inviteeEmail]|[displayName]\nada@example.com|Ada\n"), Err("bulk.file_no_header"));
    }

    #[test]
    fn template_reads_back_with_only_the_example() {
        assert_eq!(parse(template_csv("https://x.example/").as_bytes()), Err("bulk.file_empty"));
    }
}
