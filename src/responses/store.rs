//! Stored responses, for `previous_response_id` and `GET`/`DELETE /v1/responses/{id}`, scoped
//! by tenant exactly like cached answers: one API key never reads or deletes another's (an
//! entry of another tenant reads as absent). Each entry keeps the whole conversation up to and
//! including its output, so a continuation does not walk a chain.
//!
//! Tiers: a bounded LRU in memory, then the response cache's persistent and shared tiers when
//! they are configured ([`StoredTiers`]: a table of the redb file, so responses survive a
//! restart; Redis, so every replica can continue a conversation). Reads go memory, disk,
//! Redis, and a hit below memory refills it; writes and deletes reach every tier. Below memory
//! an entry is the sealed (magic, version, SHA-256) JSON of tenant, response and conversation,
//! under a digest of tenant and id; one that does not open, or is another tenant's, is absent.

use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use hashlink::LruCache;
use mlx_serve_actors::cache::{seal, unseal, CacheKey, CacheSettings, StoredTiers};
use mlx_serve_actors::metrics::CacheTierError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::response::{OutputContent, OutputItem, ResponseObject};
use super::translate::Turn;

/// Responses kept in memory before the least recently used is dropped.
pub const DEFAULT_CAPACITY: usize = 1024;

const MAGIC: &[u8; 4] = b"MSSR";
/// Bumped whenever [`Stored`]'s serialized shape changes: older entries then read as absent.
const FORMAT_VERSION: u8 = 1;
const KEY_DOMAIN: &[u8] = b"mlx-serve/stored-response/key/v1\0";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    tenant: String,
    response: ResponseObject,
    conversation: Vec<Turn>,
}

fn encode(stored: &Stored) -> Vec<u8> {
    // Plain strings, numbers and JSON values: serializing cannot fail; an empty payload would
    // only read back as absent.
    seal(
        MAGIC,
        FORMAT_VERSION,
        &serde_json::to_vec(stored).unwrap_or_default(),
    )
}

fn decode(bytes: &[u8]) -> Option<Stored> {
    serde_json::from_slice(unseal(MAGIC, FORMAT_VERSION, bytes).ok()?).ok()
}

/// The key of `tenant`'s response `id` below memory (tenant ids are hex, never holding `\0`).
fn tier_key(tenant: &str, id: &str) -> CacheKey {
    let mut h = Sha256::new();
    h.update(KEY_DOMAIN);
    h.update(tenant.as_bytes());
    h.update(b"\0");
    h.update(id.as_bytes());
    CacheKey::from_bytes(h.finalize().into())
}

/// The store. Cheap to share (`Arc`); memory is behind a lock taken briefly.
#[derive(Debug)]
pub struct ResponseStore {
    entries: Mutex<LruCache<String, Stored>>,
    tiers: Arc<StoredTiers>,
}

impl Default for ResponseStore {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl ResponseStore {
    /// A memory-only store keeping at most `capacity` responses.
    pub fn new(capacity: usize) -> Self {
        Self::with_tiers(capacity, StoredTiers::default())
    }

    /// A store keeping at most `capacity` responses in memory, and every one in `tiers`.
    pub fn with_tiers(capacity: usize, tiers: StoredTiers) -> Self {
        Self {
            entries: Mutex::new(LruCache::new(capacity.max(1))),
            tiers: Arc::new(tiers),
        }
    }

    /// The store over the disk and Redis tiers `[cache]` configures (start-up).
    pub fn open(settings: &CacheSettings) -> Self {
        Self::with_tiers(DEFAULT_CAPACITY, StoredTiers::open(settings))
    }

    /// Count disk and Redis failures as tier errors sent to `to`.
    pub fn report_errors_to(&self, to: actix::Recipient<CacheTierError>) {
        self.tiers.report_errors_to(to);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, Stored>> {
        match self.entries.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn has_tiers(&self) -> bool {
        self.tiers.has_disk() || self.tiers.has_redis()
    }

    /// Keep `response`, whose prompt was `conversation` (its output is appended here): in
    /// memory at once; the future writes it to the disk and Redis tiers (await it to know they
    /// hold it, or spawn it).
    pub fn put(
        &self,
        tenant: &str,
        response: &ResponseObject,
        mut conversation: Vec<Turn>,
    ) -> BoxFuture<'static, ()> {
        conversation.extend(output_turns(&response.output));
        let stored = Stored {
            tenant: tenant.to_owned(),
            response: response.clone(),
            conversation,
        };
        let below = self
            .has_tiers()
            .then(|| (tier_key(tenant, &response.id), encode(&stored)));
        self.lock().insert(response.id.clone(), stored);
        let tiers = self.tiers.clone();
        Box::pin(async move {
            if let Some((key, bytes)) = below {
                tiers.put(key, bytes).await;
            }
        })
    }

    /// The response `id` of `tenant`, and its conversation including its own output.
    pub async fn get(&self, tenant: &str, id: &str) -> Option<(ResponseObject, Vec<Turn>)> {
        let in_memory = {
            let mut entries = self.lock();
            entries
                .get(id)
                .filter(|s| s.tenant == tenant)
                .map(|s| (s.response.clone(), s.conversation.clone()))
        };
        if in_memory.is_some() || !self.has_tiers() {
            return in_memory;
        }
        let open =
            |bytes: &[u8]| decode(bytes).filter(|s| s.tenant == tenant && s.response.id == id);
        let (stored, tier) = self.tiers.get(&tier_key(tenant, id), open).await?;
        tracing::debug!(?tier, "stored response read from a lower tier");
        let found = (stored.response.clone(), stored.conversation.clone());
        self.lock().insert(id.to_owned(), stored);
        Some(found)
    }

    /// Forget the response `id` of `tenant` in every tier; false when no tier had it.
    pub async fn delete(&self, tenant: &str, id: &str) -> bool {
        let in_memory = {
            let mut entries = self.lock();
            let mine = entries.peek(id).is_some_and(|s| s.tenant == tenant);
            if mine {
                entries.remove(id);
            }
            mine
        };
        let below = self.has_tiers() && self.tiers.remove(tier_key(tenant, id)).await;
        in_memory || below
    }

    /// Responses held in memory now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when memory holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Output items as conversation turns: messages as assistant text, function calls as calls.
pub fn output_turns(output: &[OutputItem]) -> Vec<Turn> {
    output
        .iter()
        .filter_map(|item| match item {
            OutputItem::Message { content, .. } => Some(Turn::Message {
                role: "assistant".into(),
                text: content.iter().map(OutputContent::text_of).collect(),
            }),
            // Earlier turns' thinking is not part of the conversation the template renders.
            OutputItem::Reasoning { .. } => None,
            OutputItem::FunctionCall {
                call_id,
                name,
                arguments,
                ..
            } => Some(Turn::Call {
                call_id: call_id.clone(),
                name: name.clone(),
                arguments: arguments.clone(),
            }),
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
    /// Keep `response` unless it failed: in memory at once, in the lower tiers when the
    /// returned future has run.
    pub fn save(self, response: &ResponseObject) -> BoxFuture<'static, ()> {
        if response.status == "failed" {
            return Box::pin(async {});
        }
        self.store.put(&self.tenant, response, self.conversation)
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

    #[actix_rt::test]
    async fn a_stored_conversation_ends_with_the_responses_output() {
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
        store
            .put("t", &response("resp_1", out), vec![user("hi")])
            .await;
        let (r, turns) = store.get("t", "resp_1").await.expect("stored");
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

    #[actix_rt::test]
    async fn another_tenant_neither_reads_nor_deletes() {
        let store = ResponseStore::new(4);
        store
            .put("a", &response("resp_1", Vec::new()), vec![user("hi")])
            .await;
        assert!(store.get("b", "resp_1").await.is_none());
        assert!(!store.delete("b", "resp_1").await);
        assert!(store.delete("a", "resp_1").await);
        assert!(store.get("a", "resp_1").await.is_none());
    }

    #[actix_rt::test]
    async fn the_least_recently_used_response_goes_first() {
        let store = ResponseStore::new(2);
        for id in ["resp_1", "resp_2"] {
            store.put("t", &response(id, Vec::new()), Vec::new()).await;
        }
        assert!(store.get("t", "resp_1").await.is_some());
        store
            .put("t", &response("resp_3", Vec::new()), Vec::new())
            .await;
        assert!(store.get("t", "resp_2").await.is_none());
        assert!(store.get("t", "resp_1").await.is_some());
        assert_eq!(store.len(), 2);
    }

    #[actix_rt::test]
    async fn failed_responses_are_not_kept() {
        let store = Arc::new(ResponseStore::new(2));
        let mut r = response("resp_1", Vec::new());
        r.status = "failed";
        Saver {
            store: store.clone(),
            tenant: String::new(),
            conversation: Vec::new(),
        }
        .save(&r)
        .await;
        assert!(store.is_empty());
    }

    fn on_disk(dir: &std::path::Path) -> CacheSettings {
        let mut settings = CacheSettings::default();
        settings.disk.enabled = true;
        settings.disk.path = dir.join("cache.redb");
        settings
    }

    fn answered(text: &str) -> Vec<OutputItem> {
        vec![OutputItem::Message {
            id: new_id("msg"),
            status: "completed",
            role: "assistant",
            content: vec![OutputContent::text(text)],
        }]
    }

    #[actix_rt::test]
    async fn a_response_comes_back_from_disk_after_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut first = response("resp_1", answered("Paris."));
        first.incomplete_details = Some(super::super::response::IncompleteDetails {
            reason: "max_output_tokens",
        });
        first.status = "incomplete";
        {
            let store = ResponseStore::open(&on_disk(dir.path()));
            store.put("t", &first, vec![user("Capital?")]).await;
        }
        let store = ResponseStore::open(&on_disk(dir.path()));
        assert!(store.is_empty(), "a fresh memory tier");
        let (r, turns) = store.get("t", "resp_1").await.expect("read from disk");
        assert_eq!(r, first);
        assert_eq!(
            turns,
            vec![
                user("Capital?"),
                Turn::Message {
                    role: "assistant".into(),
                    text: "Paris.".into()
                }
            ]
        );
        assert_eq!(store.len(), 1, "the disk hit refilled memory");
    }

    #[actix_rt::test]
    async fn on_disk_another_tenant_neither_reads_nor_deletes() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = ResponseStore::open(&on_disk(dir.path()));
            store
                .put(
                    "alice",
                    &response("resp_1", Vec::new()),
                    vec![user("secret")],
                )
                .await;
        }
        let store = ResponseStore::open(&on_disk(dir.path()));
        assert!(store.get("bob", "resp_1").await.is_none());
        assert!(!store.delete("bob", "resp_1").await);
        assert!(store.get("alice", "resp_1").await.is_some());
    }

    #[actix_rt::test]
    async fn delete_reaches_the_disk_tier() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ResponseStore::open(&on_disk(dir.path()));
        store
            .put("t", &response("resp_1", Vec::new()), Vec::new())
            .await;
        assert!(store.delete("t", "resp_1").await);
        assert!(!store.delete("t", "resp_1").await);
        drop(store);
        let store = ResponseStore::open(&on_disk(dir.path()));
        assert!(store.get("t", "resp_1").await.is_none());
    }

    #[test]
    fn an_entry_that_does_not_open_reads_as_absent() {
        let stored = Stored {
            tenant: "t".into(),
            response: response("resp_1", answered("hi")),
            conversation: vec![user("hello")],
        };
        let bytes = encode(&stored);
        assert!(decode(&bytes).is_some());
        for i in [0, 4, 10, bytes.len() - 1] {
            let mut corrupt = bytes.clone();
            corrupt[i] ^= 0x20;
            assert!(decode(&corrupt).is_none(), "flipped byte {i} was accepted");
        }
        assert!(decode(&bytes[..bytes.len() - 3]).is_none());
        // A well-sealed payload of the wrong shape is refused too.
        assert!(decode(&seal(MAGIC, FORMAT_VERSION, b"{\"tenant\": 1}")).is_none());
    }

    #[actix_rt::test]
    async fn a_corrupt_entry_on_disk_is_a_miss() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tiers = StoredTiers::open(&on_disk(dir.path()));
        let mut bad = encode(&Stored {
            tenant: "t".into(),
            response: response("resp_1", Vec::new()),
            conversation: Vec::new(),
        });
        let last = bad.len() - 1;
        bad[last] ^= 1;
        tiers.put(tier_key("t", "resp_1"), bad).await;
        drop(tiers);
        let store = ResponseStore::open(&on_disk(dir.path()));
        assert!(store.get("t", "resp_1").await.is_none());
    }
}
