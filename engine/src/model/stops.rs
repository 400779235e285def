//! Stop strings over streamed text.
//!
//! Text arrives in pieces (one per decoded token). [`StopMatcher`] releases text as soon as it
//! cannot be part of a stop string, holds back a tail only while that tail is still the start of
//! some stop string, and on a match releases exactly the text before the stop. The stop string
//! and everything after it are never released (OpenAI `stop` semantics).
//!
//! Why this is enough: if a stop string began inside already released text, the released tail
//! was a prefix of it and would have been held back. So a match can only start inside the held
//! tail or the new piece, and searching `held + piece` finds it.

/// The result of feeding one piece of text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StopOutcome {
    /// Text that is final and safe to send (may be empty).
    pub text: String,
    /// The stop string that matched; the sequence should finish. Set at most once.
    pub stop: Option<String>,
}

/// Finds the first occurrence of any stop string in a stream of text pieces.
#[derive(Debug, Clone, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    /// Text not released yet because it may begin a stop string.
    held: String,
    stopped: bool,
}

impl StopMatcher {
    /// Empty stop strings are ignored (they would match before any text).
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
            stopped: false,
        }
    }

    /// True once a stop string has matched; later pushes release nothing.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Feeds the next piece of text.
    pub fn push(&mut self, text: &str) -> StopOutcome {
        if self.stopped {
            return StopOutcome::default();
        }
        if self.stops.is_empty() {
            return StopOutcome {
                text: text.to_owned(),
                stop: None,
            };
        }
        self.held.push_str(text);
        if let Some((at, stop)) = self.earliest_match() {
            self.held.truncate(at);
            self.stopped = true;
            return StopOutcome {
                text: std::mem::take(&mut self.held),
                stop: Some(stop),
            };
        }
        let keep_from = self.partial_match_start();
        let rest = self.held.split_off(keep_from);
        StopOutcome {
            text: std::mem::replace(&mut self.held, rest),
            stop: None,
        }
    }

    /// Releases the held tail at the end of generation (nothing after a match).
    pub fn finish(&mut self) -> String {
        if self.stopped {
            self.held.clear();
        }
        std::mem::take(&mut self.held)
    }

    /// Earliest start of any stop string in `held`; among stops starting at the same place the
    /// one listed first wins.
    fn earliest_match(&self) -> Option<(usize, String)> {
        let mut best: Option<(usize, &String)> = None;
        for stop in &self.stops {
            if let Some(at) = self.held.find(stop.as_str()) {
                if best.is_none_or(|(b, _)| at < b) {
                    best = Some((at, stop));
                }
            }
        }
        best.map(|(at, s)| (at, s.clone()))
    }

    /// Start of the longest tail of `held` that is a proper prefix of some stop string, or
    /// `held.len()` when no tail is.
    fn partial_match_start(&self) -> usize {
        let longest = self.stops.iter().map(String::len).max().unwrap_or(0);
        let earliest = self.held.len().saturating_sub(longest.saturating_sub(1));
        self.held
            .char_indices()
            .map(|(i, _)| i)
            .filter(|&i| i >= earliest)
            .find(|&i| {
                let tail = &self.held[i..];
                self.stops.iter().any(|s| s.starts_with(tail))
            })
            .unwrap_or(self.held.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(stops: &[&str]) -> StopMatcher {
        StopMatcher::new(&stops.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    /// Feeds every piece; returns all released text (including `finish`) and the stop.
    fn run(stops: &[&str], pieces: &[&str]) -> (String, Option<String>) {
        let mut m = matcher(stops);
        let mut out = String::new();
        let mut stop = None;
        for p in pieces {
            let o = m.push(p);
            out.push_str(&o.text);
            if o.stop.is_some() {
                assert!(stop.is_none(), "stop reported twice");
                stop = o.stop;
            }
        }
        out.push_str(&m.finish());
        (out, stop)
    }

    #[test]
    fn text_without_stops_passes_straight_through() {
        let mut m = matcher(&[]);
        assert_eq!(m.push("abc").text, "abc");
        assert_eq!(m.finish(), "");
    }

    #[test]
    fn stop_inside_one_piece_cuts_before_it() {
        assert_eq!(
            run(&["END"], &["hello END world"]),
            ("hello ".into(), Some("END".into()))
        );
    }

    #[test]
    fn stop_straddling_many_pieces_is_found_and_never_released() {
        let mut m = matcher(&["<stop>"]);
        assert_eq!(m.push("a<").text, "a");
        assert_eq!(m.push("st").text, "");
        assert_eq!(m.push("o").text, "");
        let o = m.push("p>tail");
        assert_eq!(
            o,
            StopOutcome {
                text: String::new(),
                stop: Some("<stop>".into())
            }
        );
        assert!(m.stopped());
        assert_eq!(m.push("more").text, "");
        assert_eq!(m.finish(), "");
    }

    #[test]
    fn held_text_is_released_once_it_cannot_start_a_stop() {
        let mut m = matcher(&["abc"]);
        assert_eq!(m.push("xab").text, "x");
        assert_eq!(m.push("d").text, "abd");
        assert_eq!(m.push("ab").text, "");
        assert_eq!(m.finish(), "ab");
    }

    #[test]
    fn earliest_match_wins_among_several_stops() {
        assert_eq!(
            run(&["world", "lo w"], &["hel", "lo wor", "ld"]),
            ("hel".into(), Some("lo w".into()))
        );
    }

    #[test]
    fn overlapping_stops_match_where_the_first_one_completes_earliest_start() {
        // "abcd" contains both; "abc" starts first.
        assert_eq!(
            run(&["bcd", "abc"], &["xa", "b", "cd"]),
            ("x".into(), Some("abc".into()))
        );
        // A false start of one stop holds text that contains another stop.
        assert_eq!(
            run(&["abcx", "bcd"], &["ab", "cd!"]),
            ("a".into(), Some("bcd".into()))
        );
    }

    #[test]
    fn self_overlapping_stop_is_found_after_a_false_start() {
        assert_eq!(
            run(&["aab"], &["a", "a", "a", "b", "c"]),
            ("a".into(), Some("aab".into()))
        );
    }

    #[test]
    fn unicode_stops_and_text_split_on_char_boundaries() {
        assert_eq!(
            run(&["。終"], &["日本語", "。", "終わり"]),
            ("日本語".into(), Some("。終".into()))
        );
        let mut m = matcher(&["🙂!"]);
        assert_eq!(m.push("é🙂").text, "é");
        assert_eq!(m.push("?").text, "🙂?");
    }

    #[test]
    fn empty_stop_strings_are_ignored() {
        assert_eq!(run(&["", "z"], &["abc"]), ("abc".into(), None));
    }

    #[test]
    fn concatenated_output_equals_input_truncated_at_the_first_stop() {
        let text = "The quick brown fox jumps over the lazy dog. STOP here; the end";
        let stops = ["lazy cat", "STOP", "dog!"];
        for size in 1..8 {
            let pieces: Vec<String> = text
                .chars()
                .collect::<Vec<_>>()
                .chunks(size)
                .map(|c| c.iter().collect())
                .collect();
            let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
            let (out, stop) = run(&stops, &refs);
            assert_eq!(out, &text[..text.find("STOP").unwrap_or(0)]);
            assert_eq!(stop.as_deref(), Some("STOP"));
        }
    }
}
