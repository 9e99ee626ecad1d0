//! The interface languages: Persian first, English second.

/// A language a message can be given in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lang {
    #[default]
    Fa,
    En,
}

impl Lang {
    /// Picks the language from an `Accept-Language` header: English when English is preferred
    /// over Persian, Persian otherwise (including when the header is missing or unreadable).
    pub fn from_accept_language(header: Option<&str>) -> Self {
        let Some(header) = header else {
            return Self::Fa;
        };
        let mut best: Option<(Self, f32)> = None;
        for part in header.split(',') {
            let mut pieces = part.split(';');
            let tag = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
            let quality = pieces
                .find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()))
                .unwrap_or(1.0);
            let lang = if tag == "en" || tag.starts_with("en-") {
                Self::En
            } else if tag == "fa" || tag.starts_with("fa-") {
                Self::Fa
            } else {
                continue;
            };
            if best.is_none_or(|(_, q)| quality > q) {
                best = Some((lang, quality));
            }
        }
        best.map_or(Self::Fa, |(lang, _)| lang)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn accept_language() {
        let check = |h: Option<&str>, e| assert_eq!(Lang::from_accept_language(h), e, "{h:?}");
        check(None, Lang::Fa);
        check(Some(""), Lang::Fa);
        check(Some("en"), Lang::En);
        check(Some("en-US,en;q=0.9"), Lang::En);
        check(Some("fa-IR,fa;q=0.9,en;q=0.8"), Lang::Fa);
        check(Some("de, en;q=0.5"), Lang::En);
        check(Some("de"), Lang::Fa);
        check(Some("fa;q=0.4, en;q=0.7"), Lang::En);
    }
}
