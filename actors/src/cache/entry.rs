//! The cached value and its byte encoding for the persistent and shared tiers.
//!
//! Encoded entries carry a magic, a format version and a SHA-256 of the payload, so a truncated,
//! corrupted or foreign value is recognised and dropped, never served.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use mlx_serve_engine::engine::{FinishReason, TokenLogprob, Usage};

const MAGIC: &[u8; 4] = b"MSRC";
/// 2: `tool_calls` left the value (calls are parsed again from `text` when it is replayed).
/// Entries of another version read as misses, not as corruption.
pub const FORMAT_VERSION: u8 = 2;
const HEADER_LEN: usize = MAGIC.len() + 1 + 32;

/// One finished generation, independent of the wire format that asked for it. The HTTP layer
/// renders it with a fresh `id`/`created`, as one JSON body or replayed as SSE chunks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedResponse {
    /// The raw generated text, tool-call markup included (replays parse it again).
    pub text: String,
    /// Why generation ended.
    pub finish_reason: FinishReason,
    /// The stop string that matched, for `FinishReason::StopSequence`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequence: Option<String>,
    /// Token counts of the original generation.
    pub usage: Usage,
    /// Per-token logprobs, when the request asked for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Vec<TokenLogprob>>,
    /// Unix seconds when the original generation finished (drives TTL on the persistent tiers).
    pub created_at: u64,
}

impl CachedResponse {
    /// Whether this outcome may be replayed to another caller: a cancelled generation is partial.
    pub fn is_cacheable(&self) -> bool {
        self.finish_reason != FinishReason::Cancelled
    }

    /// Estimated heap footprint, for the memory tier's byte bound. Cheap: no serialization.
    pub fn approx_bytes(&self) -> usize {
        let logprobs: usize = self.logprobs.as_ref().map_or(0, |lps| {
            lps.iter()
                .map(|lp| {
                    let top: usize = lp.top.iter().map(|(t, b, _)| t.len() + b.len() + 56).sum();
                    lp.token.len() + lp.bytes.len() + top + 80
                })
                .sum()
        });
        std::mem::size_of::<Self>()
            + self.text.len()
            + self.stop_sequence.as_ref().map_or(0, String::len)
            + logprobs
    }
}

/// Current Unix time in seconds (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Why stored bytes could not be turned back into a response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Too short or not our magic.
    #[error("not a cache entry")]
    NotAnEntry,
    /// Written by another format version.
    #[error("unsupported cache entry version {0}")]
    Version(u8),
    /// Payload does not match its checksum.
    #[error("cache entry checksum mismatch")]
    Checksum,
    /// Checksum fine but the payload does not parse (a bug, or a foreign writer).
    #[error("cache entry payload unreadable: {0}")]
    Payload(String),
}

/// Serializes a response with magic, version and checksum.
pub fn encode(value: &CachedResponse) -> Vec<u8> {
    // Serializing plain structs of strings and numbers cannot fail; an empty payload would
    // only make the entry undecodable, never wrong.
    let payload = serde_json::to_vec(value).unwrap_or_default();
    seal(MAGIC, FORMAT_VERSION, &payload)
}

/// Checks and deserializes bytes written by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<CachedResponse, DecodeError> {
    let payload = unseal(MAGIC, FORMAT_VERSION, bytes)?;
    serde_json::from_slice(payload).map_err(|e| DecodeError::Payload(e.to_string()))
}

/// Frames `payload` as `magic ++ version ++ SHA-256(payload) ++ payload`: the encoding of every
/// value the persistent and shared tiers hold (each kind of value with its own magic).
pub fn seal(magic: &[u8; 4], version: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(magic);
    out.push(version);
    out.extend_from_slice(&Sha256::digest(payload));
    out.extend_from_slice(payload);
    out
}

/// The payload of bytes written by [`seal`] with this `magic` and `version`, once its checksum
/// holds.
pub fn unseal<'a>(magic: &[u8; 4], version: u8, bytes: &'a [u8]) -> Result<&'a [u8], DecodeError> {
    if bytes.len() < HEADER_LEN || &bytes[..magic.len()] != magic {
        return Err(DecodeError::NotAnEntry);
    }
    let found = bytes[magic.len()];
    if found != version {
        return Err(DecodeError::Version(found));
    }
    let checksum = &bytes[magic.len() + 1..HEADER_LEN];
    let payload = &bytes[HEADER_LEN..];
    if Sha256::digest(payload).as_slice() != checksum {
        return Err(DecodeError::Checksum);
    }
    Ok(payload)
}

#[cfg(test)]
pub(crate) fn sample(text: &str) -> CachedResponse {
    CachedResponse {
        text: text.to_owned(),
        finish_reason: FinishReason::Stop,
        stop_sequence: None,
        usage: Usage {
            prompt_tokens: 10,
            cached_tokens: 0,
            completion_tokens: 3,
        },
        logprobs: None,
        created_at: unix_now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_entry_round_trips_with_tool_calls_and_logprobs() {
        let mut value = sample(
            r#"<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>"#,
        );
        value.finish_reason = FinishReason::StopSequence;
        value.stop_sequence = Some("\n\n".into());
        value.logprobs = Some(vec![TokenLogprob {
            token: "he".into(),
            bytes: b"he".to_vec(),
            logprob: -0.25,
            top: vec![("he".into(), b"he".to_vec(), -0.25)],
        }]);
        assert_eq!(decode(&encode(&value)), Ok(value));
    }

    #[test]
    fn any_flipped_byte_or_truncation_is_rejected() {
        let bytes = encode(&sample("hello world"));
        for i in 0..bytes.len() {
            let mut corrupt = bytes.clone();
            corrupt[i] ^= 0x40;
            assert!(decode(&corrupt).is_err(), "flipped byte {i} was accepted");
        }
        assert_eq!(decode(&bytes[..10]), Err(DecodeError::NotAnEntry));
        assert_eq!(
            decode(&bytes[..bytes.len() - 1]),
            Err(DecodeError::Checksum)
        );
        let mut other_version = bytes.clone();
        other_version[4] = 9;
        assert_eq!(decode(&other_version), Err(DecodeError::Version(9)));
    }

    #[test]
    fn an_entry_of_the_previous_format_is_another_version_not_corrupt() {
        // Version 1 carried `tool_calls`; its bytes must not decode as this version's value.
        let old = seal(
            MAGIC,
            1,
            br#"{"text":"hi","tool_calls":[],"finish_reason":"stop","usage":{"prompt_tokens":1,"cached_tokens":0,"completion_tokens":1},"created_at":0}"#,
        );
        assert_eq!(decode(&old), Err(DecodeError::Version(1)));
    }

    #[test]
    fn a_sealed_payload_opens_only_with_its_own_magic() {
        let sealed = seal(b"TEST", 3, b"payload");
        assert_eq!(unseal(b"TEST", 3, &sealed), Ok(b"payload".as_slice()));
        assert_eq!(unseal(MAGIC, 3, &sealed), Err(DecodeError::NotAnEntry));
        assert_eq!(unseal(b"TEST", 4, &sealed), Err(DecodeError::Version(3)));
    }

    #[test]
    fn cancelled_generations_are_not_cacheable() {
        let mut value = sample("part");
        assert!(value.is_cacheable());
        value.finish_reason = FinishReason::Cancelled;
        assert!(!value.is_cacheable());
    }

    #[test]
    fn approx_bytes_grows_with_content() {
        assert!(sample(&"x".repeat(1000)).approx_bytes() >= 1000 + sample("").approx_bytes());
    }
}
