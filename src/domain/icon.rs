//! App icons: which uploads are accepted, judged by their content and never by the type or file
//! name the browser declared. PNG and JPEG by their magic bytes; SVG when it is UTF-8 text whose
//! root element is `<svg>`, parsed by an XML parser, and made only of allow-listed elements and
//! attributes in the SVG namespace (no scripts, event handlers, `javascript:` or outside URLs,
//! embedded HTML in any namespace, nor a DOCTYPE's internal subset that could smuggle them in).

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

const SVG_NS: &str = "http://www.w3.org/2000/svg";
const XLINK_NS: &str = "http://www.w3.org/1999/xlink";
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// SVG elements an icon may use: shapes, text, paint servers, clipping, masking and filters.
/// Nothing that runs (`script`, `handler`), embeds (`foreignObject`, `image`, `iframe`, HTML in
/// any namespace) or animates attributes (`set`, `animate`, which can write `href`).
const ELEMENTS: &[&str] = &[
    "svg",
    "g",
    "defs",
    "title",
    "desc",
    "metadata",
    "symbol",
    "use",
    "path",
    "rect",
    "circle",
    "ellipse",
    "line",
    "polyline",
    "polygon",
    "text",
    "tspan",
    "linearGradient",
    "radialGradient",
    "stop",
    "clipPath",
    "mask",
    "pattern",
    "style",
    "filter",
    "feBlend",
    "feColorMatrix",
    "feComposite",
    "feDropShadow",
    "feFlood",
    "feGaussianBlur",
    "feMerge",
    "feMergeNode",
    "feOffset",
];

/// Attributes (in no namespace) an icon may use: geometry and presentation, never `on…`.
const ATTRIBUTES: &[&str] = &[
    "id",
    "class",
    "style",
    "version",
    "baseProfile",
    "viewBox",
    "preserveAspectRatio",
    "x",
    "y",
    "x1",
    "y1",
    "x2",
    "y2",
    "cx",
    "cy",
    "r",
    "rx",
    "ry",
    "fx",
    "fy",
    "dx",
    "dy",
    "width",
    "height",
    "d",
    "points",
    "pathLength",
    "transform",
    "fill",
    "fill-opacity",
    "fill-rule",
    "stroke",
    "stroke-width",
    "stroke-linecap",
    "stroke-linejoin",
    "stroke-miterlimit",
    "stroke-dasharray",
    "stroke-dashoffset",
    "stroke-opacity",
    "opacity",
    "color",
    "display",
    "visibility",
    "overflow",
    "vector-effect",
    "shape-rendering",
    "text-rendering",
    "offset",
    "stop-color",
    "stop-opacity",
    "gradientUnits",
    "gradientTransform",
    "spreadMethod",
    "clip-path",
    "clip-rule",
    "clipPathUnits",
    "mask",
    "maskUnits",
    "maskContentUnits",
    "patternUnits",
    "patternContentUnits",
    "patternTransform",
    "filter",
    "filterUnits",
    "primitiveUnits",
    "in",
    "in2",
    "result",
    "stdDeviation",
    "mode",
    "type",
    "values",
    "operator",
    "k1",
    "k2",
    "k3",
    "k4",
    "flood-color",
    "flood-opacity",
    "font-family",
    "font-size",
    "font-weight",
    "font-style",
    "text-anchor",
    "dominant-baseline",
    "alignment-baseline",
    "letter-spacing",
    "word-spacing",
    "href",
];

/// True when the SVG holds anything outside the allow-list: the document is parsed by a real
/// XML parser (roxmltree), so namespaces (`<s:script>`, `<h:iframe>`), character references
/// and comments are seen exactly as a browser sees them.
fn svg_is_active(text: &str) -> bool {
    if has_internal_subset(text) {
        // Entities and default attributes declared in the document itself could smuggle in
        // anything after the checks: refused outright.
        return true;
    }
    let options = roxmltree::ParsingOptions { allow_dtd: true, nodes_limit: 100_000, ..Default::default() };
    let Ok(doc) = roxmltree::Document::parse_with_options(text, options) else {
        return true;
    };
    let root = doc.root_element();
    if root.tag_name().namespace() != Some(SVG_NS) || root.tag_name().name() != "svg" {
        return true;
    }
    doc.descendants().any(|node| match node.node_type() {
        roxmltree::NodeType::Element => !element_is_allowed(&node),
        roxmltree::NodeType::PI => true,
        roxmltree::NodeType::Text => {
            node.parent_element().is_some_and(|p| p.tag_name().name() == "style")
                && !css_is_inert(node.text().unwrap_or_default())
        }
        _ => false,
    })
}

/// True for a DOCTYPE with an internal subset (`<!DOCTYPE svg [ … ]>`).
fn has_internal_subset(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    match lower.find("<!doctype") {
        Some(at) => lower[at..].find('>').is_none_or(|gt| lower[at..at + gt].contains('[')),
        None => false,
    }
}

fn element_is_allowed(node: &roxmltree::Node) -> bool {
    let tag = node.tag_name();
    tag.namespace() == Some(SVG_NS)
        && ELEMENTS.contains(&tag.name())
        && node.attributes().all(|a| match a.namespace() {
            None => ATTRIBUTES.contains(&a.name()) && value_is_inert(a.name(), a.value()),
            Some(XLINK_NS) => a.name() == "href" && value_is_inert("href", a.value()),
            Some(XML_NS) => a.name() == "space",
            Some(_) => false,
        })
}

/// A value without scripts or references outside the document: links only to `#fragment`,
/// `url(#…)` only, and styles that pass [`css_is_inert`].
fn value_is_inert(name: &str, value: &str) -> bool {
    // Browsers ignore ASCII whitespace and control characters inside URL schemes (`java\tscript:`).
    let squeezed: String =
        value.chars().filter(|c| !c.is_ascii_whitespace() && !c.is_control()).collect::<String>().to_lowercase();
    if name == "href" {
        return squeezed.starts_with('#');
    }
    if name == "style" {
        return css_is_inert(value);
    }
    !squeezed.contains("javascript:") && squeezed.match_indices("url(").all(|(i, _)| url_is_local(&squeezed[i + 4..]))
}

/// CSS with no imports, no expressions, no bindings and only `url(#…)` references.
fn css_is_inert(css: &str) -> bool {
    let squeezed: String =
        css.chars().filter(|c| !c.is_ascii_whitespace() && !c.is_control()).collect::<String>().to_lowercase();
    !squeezed.contains('\\')
        && !squeezed.contains("@import")
        && !squeezed.contains("expression(")
        && !squeezed.contains("javascript:")
        && !squeezed.contains("-moz-binding")
        && squeezed.match_indices("url(").all(|(i, _)| url_is_local(&squeezed[i + 4..]))
}

/// After `url(`: a reference to a fragment of this document.
fn url_is_local(after: &str) -> bool {
    after.trim_start_matches(['"', '\'']).starts_with('#')
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
        let rich = r##"<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" viewBox="0 0 10 10"><defs><linearGradient id="g"><stop offset="0" stop-color="#fff"/></linearGradient><path id="p" d="M0 0h10"/></defs><use xlink:href="#p"/><rect fill="url(#g)" width="10" height="10"/></svg>"##;
        assert_eq!(sniff(rich.as_bytes()), Ok(IconKind::Svg));
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
            // Namespaced elements: the prefix is not the name, the namespace is.
            r#"<svg xmlns="http://www.w3.org/2000/svg" xmlns:s="http://www.w3.org/2000/svg"><s:script>alert(1)</s:script></svg>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg" xmlns:h="http://www.w3.org/1999/xhtml"><h:iframe src="//evil.test"/></svg>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg"><scr&#105;pt/></svg>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg" xmlns:x="http://www.w3.org/1999/xlink"><use x:href="https://evil.test/a.svg#x"/></svg>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg"><image href="https://evil.test/track.png"/></svg>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg"><animate attributeName="href" to="javascript:alert(1)"/></svg>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg"><rect fill="url(https://evil.test/x)"/></svg>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg"><style>@import url(https://evil.test/x.css);</style></svg>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg"><rect style="background:url(//evil.test)"/></svg>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg"><?xml-stylesheet href="x.css"?></svg>"#,
            "<!DOCTYPE svg [<!ATTLIST svg onload CDATA \"alert(1)\">]><svg xmlns=\"http://www.w3.org/2000/svg\"/>",
            r#"<svg xmlns="http://www.w3.org/2000/svg"><rect/>"#,
            r#"<svg><script>alert(1)</script></svg>"#,
        ] {
            assert_eq!(sniff(bad.as_bytes()), Err(IconProblem::UnsafeSvg), "{bad}");
        }
    }

    #[test]
    fn a_prefixed_root_is_refused_too() {
        let bad =
            r#"<s:svg xmlns:s="http://www.w3.org/2000/svg"><h:script xmlns:h="http://www.w3.org/1999/xhtml"/></s:svg>"#;
        assert!(sniff(bad.as_bytes()).is_err());
    }

    #[test]
    fn stored_types_round_trip() {
        for k in [IconKind::Png, IconKind::Jpeg, IconKind::Svg] {
            assert_eq!(IconKind::from_content_type(k.content_type()), Some(k));
        }
        assert_eq!(IconKind::from_content_type("text/html"), None);
    }
}
