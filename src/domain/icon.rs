//! App icons: which uploads are accepted, judged by their content and never by the type or file
//! name the browser declared. PNG and JPEG by their magic bytes; SVG when it is UTF-8 text whose
//! root element is `<svg>` and that holds nothing active (scripts, event handlers,
//! `javascript:` URLs, embedded HTML, entity declarations that could smuggle them in).

/// Largest icon accepted, in bytes.
pub const MAX_ICON_BYTES: usize = 256 * 1024;

/// The formats an icon may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IconKind {
    Png,
    Jpeg,
    Svg,
}

impl IconKind {
    /// The `Content-Type` the icon is stored and served with.
    pub fn content_type(self) -> &'static str {
        match self {
            IconKind::Png => "image/png",
            IconKind::Jpeg => "image/jpeg",
            IconKind::Svg => "image/svg+xml",
        }
    }

    /// The kind of a stored `Content-Type` (only the three we write).
    pub fn from_content_type(ct: &str) -> Option<IconKind> {
        match ct {
            "image/png" => Some(IconKind::Png),
            "image/jpeg" => Some(IconKind::Jpeg),
            "image/svg+xml" => Some(IconKind::Svg),
            _ => None,
        }
    }
}

/// Why an upload was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IconProblem {
    /// More than [`MAX_ICON_BYTES`].
    TooLarge,
    /// Not a PNG, JPEG or SVG file.
    UnknownFormat,
    /// An SVG that holds scripts or other active content.
    UnsafeSvg,
}

impl IconProblem {
    /// The catalogue key of the message.
    pub fn message_key(self) -> &'static str {
        match self {
            IconProblem::TooLarge => "apps.icon_too_large",
            IconProblem::UnknownFormat => "apps.icon_format",
            IconProblem::UnsafeSvg => "apps.icon_unsafe",
        }
    }
}

const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Decides what an uploaded file is, or why it is refused.
pub fn sniff(bytes: &[u8]) -> Result<IconKind, IconProblem> {
    if bytes.len() > MAX_ICON_BYTES {
        return Err(IconProblem::TooLarge);
    }
    // The PNG signature followed by the mandatory first chunk, IHDR.
    if bytes.len() > 16 && bytes.starts_with(PNG_MAGIC) && &bytes[12..16] == b"IHDR" {
        return Ok(IconKind::Png);
    }
    // SOI marker followed by the start of another marker.
    if bytes.len() > 4 && bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok(IconKind::Jpeg);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| IconProblem::UnknownFormat)?;
    if !root_is_svg(text) {
        return Err(IconProblem::UnknownFormat);
    }
    if svg_is_active(text) {
        return Err(IconProblem::UnsafeSvg);
    }
    Ok(IconKind::Svg)
}

/// True when the first element of the document, after the prolog, is `<svg`.
fn root_is_svg(text: &str) -> bool {
    let mut rest = text.trim_start_matches('\u{feff}');
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix("<?") {
            match r.find("?>") {
                Some(end) => rest = &r[end + 2..],
                None => return false,
            }
        } else if let Some(r) = rest.strip_prefix("<!--") {
            match r.find("-->") {
                Some(end) => rest = &r[end + 3..],
                None => return false,
            }
        } else if rest.len() >= 9 && rest[..9].eq_ignore_ascii_case("<!doctype") {
            // A doctype may hold an internal subset in brackets; its `>` ends after them.
            let subset_end = match (rest.find('['), rest.find('>')) {
                (Some(open), Some(gt)) if open < gt => rest.find(']').unwrap_or(rest.len()),
                _ => 0,
            };
            match rest[subset_end..].find('>') {
                Some(end) => rest = &rest[subset_end + end + 1..],
                None => return false,
            }
        } else {
            break;
        }
    }
    rest.strip_prefix("<svg").and_then(|r| r.chars().next()).is_some_and(|c| c.is_whitespace() || c == '>' || c == '/')
}

/// Replaces numeric character references (`&#106;`, `&#x6A;`) by the characters they stand for,
/// so that an encoded `javascript:` is seen for what it is.
fn decode_char_refs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("&#") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let (digits, radix) = match after.strip_prefix(['x', 'X']) {
            Some(hex) => (hex, 16),
            None => (after, 10),
        };
        let len = digits.find(|c: char| !c.is_digit(radix)).unwrap_or(digits.len());
        let decoded = u32::from_str_radix(&digits[..len], radix).ok().and_then(char::from_u32);
        match decoded {
            Some(c) => {
                out.push(c);
                let consumed = (after.len() - digits.len()) + len;
                let tail = &after[consumed..];
                rest = tail.strip_prefix(';').unwrap_or(tail);
            }
            None => {
                out.push_str("&#");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// True when the SVG holds anything a browser could run.
fn svg_is_active(text: &str) -> bool {
    let lower = decode_char_refs(text).to_lowercase();
    // Browsers ignore ASCII whitespace and control characters inside URL schemes (`java\tscript:`).
    let squeezed: String = lower.chars().filter(|c| !c.is_ascii_whitespace() && !c.is_control()).collect();
    const ELEMENTS: [&str; 5] = ["<script", "<foreignobject", "<handler", "<!entity", "<?xml-stylesheet"];
    ELEMENTS.iter().any(|e| lower.contains(e))
        || squeezed.contains("javascript:")
        || squeezed.contains("attributename=\"on")
        || squeezed.contains("attributename='on")
        || has_event_handler(&lower)
}

/// True when an attribute named `on…` is set (`onload=`, `onclick = "…"`).
fn has_event_handler(lower: &str) -> bool {
    let b = lower.as_bytes();
    let mut from = 0;
    while let Some(pos) = lower[from..].find("on") {
        let at = from + pos;
        from = at + 2;
        let starts_attribute = at > 0 && matches!(b[at - 1], b' ' | b'\t' | b'\n' | b'\r' | b'/' | b'"' | b'\'');
        let mut j = at + 2;
        while j < b.len() && (b[j].is_ascii_alphanumeric() || matches!(b[j], b'-' | b'_' | b':')) {
            j += 1;
        }
        let has_name = j > at + 2;
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        if starts_attribute && has_name && b.get(j) == Some(&b'=') {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png() -> Vec<u8> {
        let mut v = PNG_MAGIC.to_vec();
        v.extend_from_slice(&[0, 0, 0, 13]);
        v.extend_from_slice(b"IHDR");
        v.extend_from_slice(&[0; 17]);
        v
    }

    const SVG: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><circle cx="5" cy="5" r="4" fill="#36c"/></svg>"##;

    #[test]
    fn png_and_jpeg_are_known_by_their_magic_bytes() {
        assert_eq!(sniff(&png()), Ok(IconKind::Png));
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 16, b'J', b'F']), Ok(IconKind::Jpeg));
        assert_eq!(sniff(b"this is not a PNG at all, whatever its name"), Err(IconProblem::UnknownFormat));
        assert_eq!(sniff(&PNG_MAGIC[..6]), Err(IconProblem::UnknownFormat));
        assert_eq!(sniff(&[0u8; 64]), Err(IconProblem::UnknownFormat));
    }

    #[test]
    fn size_is_capped() {
        let mut big = png();
        big.resize(MAX_ICON_BYTES + 1, 0);
        assert_eq!(sniff(&big), Err(IconProblem::TooLarge));
        big.truncate(MAX_ICON_BYTES);
        assert_eq!(sniff(&big), Ok(IconKind::Png));
    }

    #[test]
    fn plain_svg_is_accepted_with_a_prolog() {
        assert_eq!(sniff(SVG.as_bytes()), Ok(IconKind::Svg));
        let with_prolog = format!(
            "\u{feff}<?xml version=\"1.0\"?>\n<!-- made by hand -->\n<!DOCTYPE svg PUBLIC \"-//W3C//DTD SVG 1.1//EN\" \"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd\">\n{SVG}"
        );
        assert_eq!(sniff(with_prolog.as_bytes()), Ok(IconKind::Svg));
        let styled =
            r#"<svg xmlns="http://www.w3.org/2000/svg"><style>.a{fill:red}</style><text>Turn on = off</text></svg>"#;
        assert_eq!(sniff(styled.as_bytes()), Ok(IconKind::Svg));
    }

    #[test]
    fn other_xml_and_html_are_not_svg() {
        assert_eq!(sniff(b"<html><body><svg></svg></body></html>"), Err(IconProblem::UnknownFormat));
        assert_eq!(sniff(b"<svgx></svgx>"), Err(IconProblem::UnknownFormat));
        assert_eq!(sniff(b"<?xml version=\"1.0\""), Err(IconProblem::UnknownFormat));
    }

    #[test]
    fn active_svg_is_refused() {
        for bad in [
            r#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg"><SCRIPT>alert(1)</SCRIPT></svg>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"></svg>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg"><rect ONCLICK = 'x()'/></svg>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg"><a href="javascript:alert(1)"><rect/></a></svg>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg"><a href="java&#x09;script:alert(1)"><rect/></a></svg>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg"><a href="&#106;avascript:alert(1)"><rect/></a></svg>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg"><foreignObject><body/></foreignObject></svg>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg"><set attributeName="onmouseover" to="alert(1)"/></svg>"#,
            "<!DOCTYPE svg [<!ENTITY s \"&#60;script&#62;\">]><svg xmlns=\"http://www.w3.org/2000/svg\">&s;</svg>",
        ] {
            assert_eq!(sniff(bad.as_bytes()), Err(IconProblem::UnsafeSvg), "{bad}");
        }
    }

    #[test]
    fn stored_types_round_trip() {
        for k in [IconKind::Png, IconKind::Jpeg, IconKind::Svg] {
            assert_eq!(IconKind::from_content_type(k.content_type()), Some(k));
        }
        assert_eq!(IconKind::from_content_type("text/html"), None);
    }
}
