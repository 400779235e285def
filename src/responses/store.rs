//! Stored responses, for `previous_response_id` and `GET`/`DELETE /v1/responses/{id}`: a
//! bounded LRU in memory, scoped by tenant exactly like cached answers (one API key never sees
//! another's responses; an entry of another tenant reads as absent). Each entry keeps the whole
//! conversation up to and including its output, so a continuation does not walk a chain.
//! Memory only: a restart forgets them (the disk and Redis tiers are not used yet).

use std::sync::{Arc, Mutex};

use hashlink::LruCache;

use super::response::{OutputContent, OutputItem, ResponseObject};
use super::translate::Turn;

/// Responses kept before the least recently used is dropped.
pub const DEFAULT_CAPACITY: usize = 1024;

#[derive(Debug, Clone)]
struct Stored {
    tenant: String,
    response: ResponseObject,
    conversation: Vec<Turn>,
}

/// The store. Cheap to share (`Arc`); every method takes the lock briefly.
#[derive(Debug)]
pub struct ResponseStore {
    entries: Mutex<LruCache<String, Stored>>,
}

impl Default for ResponseStore {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl ResponseStore {
    /// A store keeping at most `capacity` responses.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(LruCache::new(capacity.max(1))),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, Stored>> {
        match self.entries.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Keep `response`, whose prompt was `conversation` (its output is appended here).
    pub fn put(&self, tenant: &str, response: &ResponseObject, mut conversation: Vec<Turn>) {
        conversation.extend(output_turns(&response.output));
        let stored = Stored {
            tenant: tenant.to_owned(),
            response: response.clone(),
            conversation,
        };
        self.lock().insert(response.id.clone(), stored);
    }

    /// The response `id` of `tenant`, and its conversation including its own output.
    pub fn get(&self, tenant: &str, id: &str) -> Option<(ResponseObject, Vec<Turn>)> {
        let mut entries = self.lock();
        let stored = entries.get(id).filter(|s| s.tenant == tenant)?;
        Some((stored.response.clone(), stored.conversation.clone()))
    }

    /// Forget the response `id` of `tenant`; false when there was none.
    pub fn delete(&self, tenant: &str, id: &str) -> bool {
        let mut entries = self.lock();
        if entries.peek(id).is_some_and(|s| s.tenant == tenant) {
            entries.remove(id);
            return true;
        }
        false
    }

    /// Responses held now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Output items as conversation turns: messages as assistant text, function calls as calls.
pub fn output_turns(output: &[OutputItem]) -> Vec<Turn> {
    output
        .iter()
        .map(|item| match item {
            OutputItem::Message { content, .. } => Turn::Message {
                role: "assistant".into(),
                text: content
                    .iter()
                    .map(|OutputContent::OutputText { text, .. }| text.as_str())
                    .collect(),
            },
            OutputItem::FunctionCall {
                call_id,
                name,
                arguments,
                ..
            } => Turn::Call {
                call_id: call_id.clone(),
                name: name.clone(),
                arguments: arguments.clone(),
            },
        })
        .collect()
}

/// What storing one finished response needs; handed to the renderer of a streamed reply.
#[derive(Debug)]
pub struct Saver {
    /// Where.
    pub store: Arc<ResponseStore>,
    /// Whose.
    pub tenant: String,
    /// The conversation the response answered.
    pub conversation: Vec<Turn>,
}

impl Saver {
    /// Keep `response` unless it failed.
    pub fn save(self, response: &ResponseObject) {
        if response.status == "failed" {
            return;
        }
        self.store.put(&self.tenant, response, self.conversation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::responses::response::new_id;
    use serde_json::json;

    fn response(id: &str, output: Vec<OutputItem>) -> ResponseObject {
        ResponseObject {
            id: id.into(),
            object: "response",
            created_at: 0,
            status: "completed",
            error: None,
            incomplete_details: None,
            instructions: None,
            max_output_tokens: None,
            model: "m".into(),
            output,
            parallel_tool_calls: true,
            previous_response_id: None,
            reasoning: json!({}),
            store: true,
            temperature: 1.0,
            text: json!({}),
            tool_choice: json!("auto"),
            tools: Vec::new(),
            top_p: 1.0,
            truncation: "disabled".into(),
            usage: None,
            user: None,
            metadata: json!({}),
            service_tier: "default".into(),
        }
    }

    fn user(text: &str) -> Turn {
        Turn::Message {
            role: "user".into(),
            text: text.into(),
        }
    }

    #[test]
    fn a_stored_conversation_ends_with_the_responses_output() {
        let store = ResponseStore::new(4);
        let out = vec![
            OutputItem::Message {
                id: new_id("msg"),
                status: "completed",
                role: "assistant",
                content: vec![OutputContent::text("Let me look.")],
            },
            OutputItem::FunctionCall {
                id: new_id("fc"),
                call_id: "call_1".into(),
                name: "ls".into(),
                arguments: "{}".into(),
                status: "completed",
            },
        ];
        store.put("t", &response("resp_1", out), vec![user("hi")]);
        let (r, turns) = store.get("t", "resp_1").expect("stored");
        assert_eq!(r.id, "resp_1");
        assert_eq!(
            turns,
            vec![
                user("hi"),
                Turn::Message {
                    role: "assistant".into(),
                    text: "Let me look.".into()
                },
                Turn::Call {
                    call_id: "call_1".into(),
                    name: "ls".into(),
                    arguments: "{}".into()
                },
            ]
        );
    }

    #[test]
    fn another_tenant_neither_reads_nor_deletes() {
        let store = ResponseStore::new(4);
        store.put("a", &response("resp_1", Vec::new()), vec![user("hi")]);
        assert!(store.get("b", "resp_1").is_none());
        assert!(!store.delete("b", "resp_1"));
        assert!(store.delete("a", "resp_1"));
        assert!(store.get("a", "resp_1").is_none());
    }

    #[test]
    fn the_least_recently_used_response_goes_first() {
        let store = ResponseStore::new(2);
        store.put("t", &response("resp_1", Vec::new()), Vec::new());
        store.put("t", &response("resp_2", Vec::new()), Vec::new());
        assert!(store.get("t", "resp_1").is_some());
        store.put("t", &response("resp_3", Vec::new()), Vec::new());
        assert!(store.get("t", "resp_2").is_none());
        assert!(store.get("t", "resp_1").is_some());
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn failed_responses_are_not_kept() {
        let store = Arc::new(ResponseStore::new(2));
        let mut r = response("resp_1", Vec::new());
        r.status = "failed";
        Saver {
            store: store.clone(),
            tenant: String::new(),
            conversation: Vec::new(),
        }
        .save(&r);
        assert!(store.is_empty());
    }
}
