//! The translation catalogue: every user-visible string, in English and French.
//!
//! Catalogues are `locales/en/*.txt` and `locales/fr/*.txt`, one `key = text` per line, compiled
//! into the binary. Placeholders are `{name}`. A unit test checks that both catalogues hold the
//! same keys and that every key used in templates and code exists.

use std::collections::HashMap;
use std::sync::LazyLock;

/// A supported language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    En,
    Fr,
}

impl Lang {
    /// Every supported language, in the order of the language switch.
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Fr];

    /// The BCP 47 code.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Fr => "fr",
        }
    }

    /// The language's own name.
    pub fn native_name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::Fr => "Français",
        }
    }

    /// Parses a code such as `fr`, `fr-CA` or `EN`.
    pub fn parse(code: &str) -> Option<Lang> {
        let primary = code.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "en" => Some(Lang::En),
            "fr" => Some(Lang::Fr),
            _ => None,
        }
    }

    /// Picks the best supported language from an `Accept-Language` header.
    pub fn from_accept_language(header: &str) -> Option<Lang> {
        let mut best: Option<(f32, Lang)> = None;
        for part in header.split(',') {
            let mut pieces = part.split(';');
            let tag = pieces.next().unwrap_or("").trim();
            let q = pieces.find_map(|p| p.trim().strip_prefix("q=").and_then(|v| v.parse::<f32>().ok())).unwrap_or(1.0);
            if let Some(lang) = Lang::parse(tag)
                && q > 0.0
                && best.is_none_or(|(bq, _)| q > bq)
            {
                best = Some((q, lang));
            }
        }
        best.map(|(_, l)| l)
    }

    /// The catalogue for this language.
    pub fn tr(self) -> Tr {
        Tr { lang: self }
    }
}

/// The catalogue files of each language, one per area of the product.
const EN_FILES: &[&str] = &[
    include_str!("../locales/en/core.txt"),
    include_str!("../locales/en/collaboration.txt"),
    include_str!("../locales/en/apps.txt"),
    include_str!("../locales/en/account.txt"),
    include_str!("../locales/en/bulk.txt"),
    include_str!("../locales/en/api.txt"),
    include_str!("../locales/en/oidc.txt"),
    include_str!("../locales/en/idp.txt"),
    include_str!("../locales/en/signin.txt"),
    include_str!("../locales/en/mfa.txt"),
];
const FR_FILES: &[&str] = &[
    include_str!("../locales/fr/core.txt"),
    include_str!("../locales/fr/collaboration.txt"),
    include_str!("../locales/fr/apps.txt"),
    include_str!("../locales/fr/account.txt"),
    include_str!("../locales/fr/bulk.txt"),
    include_str!("../locales/fr/api.txt"),
    include_str!("../locales/fr/oidc.txt"),
    include_str!("../locales/fr/idp.txt"),
    include_str!("../locales/fr/signin.txt"),
    include_str!("../locales/fr/mfa.txt"),
];

fn parse_catalogue(files: &[&'static str]) -> HashMap<&'static str, &'static str> {
    files
        .iter()
        .flat_map(|text| text.lines())
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(" = ").map(|(k, v)| (k.trim(), v)))
        .collect()
}

static EN: LazyLock<HashMap<&'static str, &'static str>> = LazyLock::new(|| parse_catalogue(EN_FILES));
static FR: LazyLock<HashMap<&'static str, &'static str>> = LazyLock::new(|| parse_catalogue(FR_FILES));

/// Looks up strings in one language; cheap to copy into every template.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tr {
    /// The language looked up.
    pub lang: Lang,
}

impl Tr {
    /// The text of `key`; falls back to English, then to the key itself.
    pub fn t(&self, key: &str) -> &'static str {
        let cat = match self.lang {
            Lang::En => &*EN,
            Lang::Fr => &*FR,
        };
        cat.get(key).or_else(|| EN.get(key)).copied().unwrap_or_else(|| {
            tracing::warn!(key, "missing translation");
            "…"
        })
    }

    /// The text of `key` with `{name}` replaced by `value`.
    pub fn f1(&self, key: &str, name: &str, value: &str) -> String {
        self.t(key).replace(&format!("{{{name}}}"), value)
    }

    /// The text of `key` with two placeholders replaced.
    pub fn f2(&self, key: &str, n1: &str, v1: &str, n2: &str, v2: &str) -> String {
        self.t(key).replace(&format!("{{{n1}}}"), v1).replace(&format!("{{{n2}}}"), v2)
    }

    /// A UTC timestamp as people read it in this language.
    pub fn datetime(&self, t: &time::PrimitiveDateTime) -> String {
        let month_en = [
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ];
        let month_fr = [
            "janvier",
            "février",
            "mars",
            "avril",
            "mai",
            "juin",
            "juillet",
            "août",
            "septembre",
            "octobre",
            "novembre",
            "décembre",
        ];
        let m = t.month() as usize - 1;
        match self.lang {
            Lang::En => format!("{} {}, {}, {:02}:{:02} UTC", month_en[m], t.day(), t.year(), t.hour(), t.minute()),
            Lang::Fr => {
                let day = if t.day() == 1 { "1er".to_owned() } else { t.day().to_string() };
                format!("{day} {} {} à {:02} h {:02} UTC", month_fr[m], t.year(), t.hour(), t.minute())
            }
        }
    }

    /// An optional timestamp, or a dash.
    pub fn opt_datetime(&self, t: &Option<time::PrimitiveDateTime>) -> String {
        t.as_ref().map(|t| self.datetime(t)).unwrap_or_else(|| "—".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_prefers_highest_quality_supported() {
        assert_eq!(Lang::from_accept_language("fr-CA,fr;q=0.9,en;q=0.8"), Some(Lang::Fr));
        assert_eq!(Lang::from_accept_language("de-DE,en;q=0.5,fr;q=0.7"), Some(Lang::Fr));
        assert_eq!(Lang::from_accept_language("de"), None);
    }

    #[test]
    fn no_key_is_defined_twice() {
        for files in [EN_FILES, FR_FILES] {
            let mut seen = std::collections::HashSet::new();
            for line in files.iter().flat_map(|t| t.lines()).filter(|l| !l.starts_with('#')) {
                if let Some((k, _)) = line.split_once(" = ") {
                    assert!(seen.insert(k.trim()), "key defined twice: {k}");
                }
            }
        }
    }

    #[test]
    fn catalogues_have_the_same_keys() {
        let mut en: Vec<_> = EN.keys().collect();
        let mut fr: Vec<_> = FR.keys().collect();
        en.sort();
        fr.sort();
        let only_en: Vec<_> = en.iter().filter(|k| !FR.contains_key(**k)).collect();
        let only_fr: Vec<_> = fr.iter().filter(|k| !EN.contains_key(**k)).collect();
        assert!(only_en.is_empty() && only_fr.is_empty(), "only in en: {only_en:?}; only in fr: {only_fr:?}");
    }

    /// Every `t("key")`, `f1("key"` and `f2("key"` in templates and sources names a real key.
    #[test]
    fn every_used_key_exists() {
        let mut missing = Vec::new();
        let mut files = Vec::new();
        collect(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/templates")), &mut files);
        collect(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")), &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            // Macro calls pass keys as plain string arguments.
            for line in text.lines().filter(|l| l.contains("{% call")) {
                for piece in line.split('"').skip(1).step_by(2) {
                    if piece.contains('.')
                        && piece.chars().all(|c| c.is_ascii_lowercase() || c == '.' || c == '_')
                        && !EN.contains_key(piece)
                    {
                        missing.push(format!("{}: {piece}", file.display()));
                    }
                }
            }
            for marker in ["t(\"", "f1(\"", "f2(\"", "tr_key(\""] {
                for (i, _) in text.match_indices(marker) {
                    let rest = &text[i + marker.len()..];
                    let key = &rest[..rest.find('"').unwrap()];
                    let key_like =
                        key.contains('.') && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_');
                    if key_like && !EN.contains_key(key) {
                        missing.push(format!("{}: {key}", file.display()));
                    }
                }
            }
        }
        assert!(missing.is_empty(), "missing keys: {missing:#?}");
    }

    fn collect(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                collect(&path, out);
            } else if matches!(path.extension().and_then(|e| e.to_str()), Some("html" | "txt" | "rs")) {
                out.push(path);
            }
        }
    }
}
