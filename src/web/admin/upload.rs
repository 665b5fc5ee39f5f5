//! Reading a `multipart/form-data` form (a form with a file) into memory, with caps.
//!
//! The CSRF middleware leaves multipart bodies alone (their token travels in the action URL), so
//! the limits live here: a file field keeps at most `file_limit + 1` bytes (enough for the rules
//! to see that it is too large and say so on the form), text fields at most 16 KiB, and a body
//! larger than [`MAX_BODY_BYTES`] is refused with 413 once read that far.

use actix_multipart::Multipart;
use futures_util::StreamExt;

use crate::error::AppError;

/// Largest multipart body read, in bytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Largest text field kept, in bytes.
const MAX_TEXT_BYTES: usize = crate::web::csrf::MAX_FIELD_BYTES;

/// A multipart form: its text fields and its files, by field name.
#[derive(Debug, Default)]
pub struct UploadForm {
    texts: Vec<(String, String)>,
    files: Vec<(String, Vec<u8>)>,
}

impl UploadForm {
    /// The value of a text field, or "" when it was not sent.
    pub fn text(&self, name: &str) -> String {
        self.texts.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap_or_default()
    }

    /// True when a text field (a ticked checkbox) was sent.
    pub fn has(&self, name: &str) -> bool {
        self.texts.iter().any(|(n, _)| n == name)
    }

    /// The bytes of a file field; `None` when no file was chosen (browsers send an empty part).
    pub fn file(&mut self, name: &str) -> Option<Vec<u8>> {
        let i = self.files.iter().position(|(n, b)| n == name && !b.is_empty())?;
        Some(self.files.swap_remove(i).1)
    }
}

/// Reads the whole form. A file field keeps up to `file_limit + 1` bytes; what is beyond is read
/// and dropped, so the answer can still reach a browser that is sending.
pub async fn read(form: Multipart, file_limit: usize) -> Result<UploadForm, AppError> {
    read_limited(form, file_limit, MAX_BODY_BYTES).await
}

/// [`read`] with a larger cap on the whole body (bulk CSV files).
pub async fn read_limited(mut form: Multipart, file_limit: usize, body_limit: usize) -> Result<UploadForm, AppError> {
    let bad = |e: actix_multipart::MultipartError| AppError::BadRequest(format!("multipart: {e}"));
    let mut out = UploadForm::default();
    let mut total = 0usize;
    let mut count = 0usize;
    while let Some(field) = form.next().await {
        let mut field = field.map_err(bad)?;
        count += 1;
        if count > crate::web::csrf::MAX_FIELDS {
            return Err(AppError::PayloadTooLarge);
        }
        let name = field.name().unwrap_or_default().to_owned();
        let is_file = field.content_disposition().and_then(|cd| cd.get_filename()).is_some();
        let keep = if is_file { file_limit + 1 } else { MAX_TEXT_BYTES };
        let mut bytes = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(bad)?;
            total += chunk.len();
            if total > body_limit {
                return Err(AppError::PayloadTooLarge);
            }
            if !is_file && bytes.len() + chunk.len() > keep {
                // A text field over the general cap on a form field: refused, as in other forms.
                return Err(AppError::PayloadTooLarge);
            }
            let room = keep.saturating_sub(bytes.len());
            bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        if is_file {
            out.files.push((name, bytes));
        } else {
            let text =
                String::from_utf8(bytes).map_err(|_| AppError::BadRequest("multipart: text is not UTF-8".into()))?;
            if text.contains('\0') {
                return Err(AppError::BadRequest("multipart: text with a NUL character".into()));
            }
            out.texts.push((name, text));
        }
    }
    Ok(out)
}
