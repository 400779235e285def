//! Model aliases: the names clients send (`claude-sonnet-4-…`, `gpt-4o`) mapped onto local
//! models, for every API.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

/// Pattern → local model id, from `[aliases]`:
/// `"claude-*" = "smollm2-135m-instruct"`. `*` matches any run of characters (prefix, suffix or
/// inside); an exact pattern wins over globs, and among globs the most specific one (most literal
/// characters, then alphabetical order) wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelAliases {
    exact: BTreeMap<String, String>,
    // Sorted most specific first, so the first match is the answer.
    globs: Vec<(String, String)>,
}

impl ModelAliases {
    /// Builds the table from `(pattern, model)` pairs.
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut exact = BTreeMap::new();
        let mut globs = Vec::new();
        for (pattern, model) in pairs {
            if pattern.contains('*') {
                globs.push((pattern, model));
            } else {
                exact.insert(pattern, model);
            }
        }
        globs.sort_by(|(a, _), (b, _)| literal_len(b).cmp(&literal_len(a)).then_with(|| a.cmp(b)));
        globs.dedup_by(|a, b| a.0 == b.0);
        Self { exact, globs }
    }

    /// The local model a requested name maps to, if any pattern matches.
    pub fn resolve(&self, name: &str) -> Option<&str> {
        if let Some(m) = self.exact.get(name) {
            return Some(m);
        }
        self.globs
            .iter()
            .find(|(p, _)| glob_match(p, name))
            .map(|(_, m)| m.as_str())
    }

    /// Every `(pattern, model)` pair, exact ones first (for `/v1/models` and start-up logs).
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.exact
            .iter()
            .chain(self.globs.iter().map(|(p, m)| (p, m)))
            .map(|(p, m)| (p.as_str(), m.as_str()))
    }

    /// True when no aliases are configured.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.globs.is_empty()
    }
}

impl<'de> Deserialize<'de> for ModelAliases {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        BTreeMap::<String, String>::deserialize(d).map(Self::new)
    }
}

fn literal_len(pattern: &str) -> usize {
    pattern.chars().filter(|c| *c != '*').count()
}

/// `*`-only glob match, anchored at both ends.
fn glob_match(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let middle: Vec<&str> = parts.collect();
    let Some((last, inner)) = middle.split_last() else {
        return rest.is_empty(); // no `*` at all: exact
    };
    for part in inner {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(pairs: &[(&str, &str)]) -> ModelAliases {
        ModelAliases::new(pairs.iter().map(|(p, m)| (p.to_string(), m.to_string())))
    }

    #[test]
    fn prefix_glob_maps_claude_names() {
        let a = table(&[("claude-*", "smollm2")]);
        assert_eq!(a.resolve("claude-sonnet-4-20250514"), Some("smollm2"));
        assert_eq!(a.resolve("claude-"), Some("smollm2"));
        assert_eq!(a.resolve("gpt-4o"), None);
        assert_eq!(a.resolve("xclaude-1"), None, "anchored at the start");
    }

    #[test]
    fn exact_match_beats_globs() {
        let a = table(&[("claude-*", "small"), ("claude-opus-4", "big")]);
        assert_eq!(a.resolve("claude-opus-4"), Some("big"));
        assert_eq!(a.resolve("claude-opus-4-1"), Some("small"));
    }

    #[test]
    fn most_specific_glob_wins() {
        let a = table(&[
            ("*", "any"),
            ("claude-*", "claude"),
            ("claude-*-haiku*", "haiku"),
        ]);
        assert_eq!(a.resolve("claude-3-5-haiku-latest"), Some("haiku"));
        assert_eq!(a.resolve("claude-sonnet-4"), Some("claude"));
        assert_eq!(a.resolve("llama"), Some("any"));
    }

    #[test]
    fn suffix_and_inner_globs_match_anchored() {
        assert!(glob_match("*-latest", "claude-3-latest"));
        assert!(!glob_match("*-latest", "claude-3-latest-x"));
        assert!(glob_match("a*b*c", "aXbYc"));
        assert!(glob_match("a*b*c", "abc"));
        assert!(!glob_match("a*b*c", "acb"));
        assert!(
            !glob_match("ab*ba", "aba"),
            "prefix and suffix may not overlap"
        );
        assert!(glob_match("x", "x"));
        assert!(!glob_match("x", "xy"));
    }

    #[test]
    fn deserializes_from_a_config_map_and_lists_entries() {
        let a: ModelAliases =
            serde_json::from_str(r#"{"claude-*": "m1", "opus": "m2"}"#).expect("a string map");
        assert!(!a.is_empty());
        let entries: Vec<_> = a.entries().collect();
        assert_eq!(entries, vec![("opus", "m2"), ("claude-*", "m1")]);
    }
}
