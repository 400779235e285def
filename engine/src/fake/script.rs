//! Scripted replies: canned model text played in order, one reply per request.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::Deserialize;

/// One canned reply of a [`Script`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ScriptEntry {
    /// The reply, for whatever request comes next.
    Reply(String),
    /// The reply, only for a request whose rendered prompt contains `match`; other requests are
    /// echoed and leave the entry in place (clients send side requests, e.g. titles, in between).
    Matched {
        /// Text the rendered prompt must contain.
        #[serde(rename = "match")]
        matches: String,
        /// The reply.
        reply: String,
    },
}

/// Replies played in order, one per request, as raw model text.
#[derive(Debug, Clone, Default)]
pub struct Script {
    pending: Arc<Mutex<VecDeque<ScriptEntry>>>,
}

impl Script {
    /// A script from its entries.
    pub fn new(entries: Vec<ScriptEntry>) -> Self {
        Self {
            pending: Arc::new(Mutex::new(entries.into())),
        }
    }

    /// Parses a script file's JSON: an array of strings or `{"match", "reply"}` objects.
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str::<Vec<ScriptEntry>>(json).map(Self::new)
    }

    /// Entries not yet played.
    pub fn remaining(&self) -> usize {
        self.pending.lock().map(|q| q.len()).unwrap_or(0)
    }

    /// The next reply if it applies to this prompt, taking it off the script.
    pub(super) fn take(&self, rendered: &str) -> Option<String> {
        let mut queue = self.pending.lock().ok()?;
        let applies = match queue.front()? {
            ScriptEntry::Reply(_) => true,
            ScriptEntry::Matched { matches, .. } => rendered.contains(matches.as_str()),
        };
        if !applies {
            return None;
        }
        match queue.pop_front()? {
            ScriptEntry::Reply(reply) | ScriptEntry::Matched { reply, .. } => Some(reply),
        }
    }
}

/// A scripted reply as tokens: each piece is a word with the whitespace that follows it, so the
/// pieces join back into the exact text.
pub(super) fn script_pieces(reply: &str) -> VecDeque<String> {
    let mut pieces = VecDeque::new();
    let mut current = String::new();
    let mut in_space = false;
    for c in reply.chars() {
        if !c.is_whitespace() && in_space {
            pieces.push_back(std::mem::take(&mut current));
        }
        in_space = c.is_whitespace();
        current.push(c);
    }
    if !current.is_empty() {
        pieces.push_back(current);
    }
    pieces
}

/// The echo as tokens: the words of the source, the first as is and the others after a space.
pub(super) fn echo_pieces(source: &str) -> VecDeque<String> {
    source
        .split_whitespace()
        .enumerate()
        .map(|(i, w)| {
            if i == 0 {
                w.to_owned()
            } else {
                format!(" {w}")
            }
        })
        .collect()
}
