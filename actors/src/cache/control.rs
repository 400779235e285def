//! The per-request cache directives a client can send in `Cache-Control`.

/// What a request allows the cache to do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheDirectives {
    /// `no-cache`: do not answer from the cache (the fresh answer may still be stored).
    pub no_cache: bool,
    /// `no-store`: do not store this request's answer.
    pub no_store: bool,
}

impl CacheDirectives {
    /// Parses a `Cache-Control` header value; unknown directives are ignored, names are
    /// case-insensitive (RFC 9111 §5.2).
    pub fn parse(header: &str) -> Self {
        let mut out = Self::default();
        for directive in header.split(',') {
            let name = directive.split('=').next().unwrap_or("").trim();
            if name.eq_ignore_ascii_case("no-cache") {
                out.no_cache = true;
            } else if name.eq_ignore_ascii_case("no-store") {
                out.no_store = true;
            }
        }
        out
    }

    /// Whether to look the request up at all.
    pub fn lookup_allowed(&self) -> bool {
        !self.no_cache && !self.no_store
    }

    /// Whether to store the answer.
    pub fn store_allowed(&self) -> bool {
        !self.no_store
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_cache_skips_lookup_but_allows_store() {
        let d = CacheDirectives::parse("max-age=0, No-Cache");
        assert!(d.no_cache && !d.no_store);
        assert!(!d.lookup_allowed());
        assert!(d.store_allowed());
    }

    #[test]
    fn no_store_skips_both_and_unknown_directives_are_ignored() {
        let d = CacheDirectives::parse("no-store");
        assert!(!d.lookup_allowed() && !d.store_allowed());
        let d = CacheDirectives::parse("private, max-age=60");
        assert_eq!(d, CacheDirectives::default());
        assert!(d.lookup_allowed() && d.store_allowed());
    }
}
