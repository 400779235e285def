//! Every metric name and label the server exports, in one place.
//!
//! Names follow Prometheus conventions (base units, `_total` on counters) and, where vLLM has an
//! equivalent, vLLM's names with `mlx_serve_` in place of `vllm:`, so existing dashboards and
//! habits carry over. The Grafana dashboard in `grafana/` uses only these names; a test checks it.

// ---- Requests ----
/// Counter: finished HTTP requests. Labels: `model`, `route`, `status`.
pub const REQUESTS_TOTAL: &str = "mlx_serve_requests_total";
/// Counter: successfully finished requests. Labels: `model`, `finish_reason`.
pub const REQUEST_SUCCESS_TOTAL: &str = "mlx_serve_request_success_total";
/// Counter: failed requests. Labels: `model`, `error_type`.
pub const ERRORS_TOTAL: &str = "mlx_serve_errors_total";

// ---- Latency histograms (seconds) ----
/// Histogram: request arrival to last byte. Labels: `model`, `cache`.
pub const E2E_REQUEST_LATENCY_SECONDS: &str = "mlx_serve_e2e_request_latency_seconds";
/// Histogram: request arrival to first generated token. Labels: `model`, `cache`.
pub const TIME_TO_FIRST_TOKEN_SECONDS: &str = "mlx_serve_time_to_first_token_seconds";
/// Histogram: mean gap between output tokens after the first, per request. Labels: `model`.
pub const TIME_PER_OUTPUT_TOKEN_SECONDS: &str = "mlx_serve_time_per_output_token_seconds";
/// Histogram: time waiting for the engine before prefill starts. Labels: `model`.
pub const REQUEST_QUEUE_TIME_SECONDS: &str = "mlx_serve_request_queue_time_seconds";
/// Histogram: prompt processing time. Labels: `model`.
pub const REQUEST_PREFILL_TIME_SECONDS: &str = "mlx_serve_request_prefill_time_seconds";
/// Histogram: token generation time after prefill. Labels: `model`.
pub const REQUEST_DECODE_TIME_SECONDS: &str = "mlx_serve_request_decode_time_seconds";

// ---- Tokens (engine work only; response-cache hits generate nothing) ----
/// Counter: prompt tokens the engine processed or reused. Labels: `model`.
pub const PROMPT_TOKENS_TOTAL: &str = "mlx_serve_prompt_tokens_total";
/// Counter: tokens the engine generated. Labels: `model`.
pub const GENERATION_TOKENS_TOTAL: &str = "mlx_serve_generation_tokens_total";
/// Histogram: prompt length per request, in tokens. Labels: `model`.
pub const REQUEST_PROMPT_TOKENS: &str = "mlx_serve_request_prompt_tokens";
/// Histogram: generated length per request, in tokens. Labels: `model`.
pub const REQUEST_GENERATION_TOKENS: &str = "mlx_serve_request_generation_tokens";

// ---- Scheduler ----
/// Gauge: sequences the engine is generating for. Labels: `model`.
pub const NUM_REQUESTS_RUNNING: &str = "mlx_serve_num_requests_running";
/// Gauge: requests queued for the engine. Labels: `model`.
pub const NUM_REQUESTS_WAITING: &str = "mlx_serve_num_requests_waiting";

// ---- Response cache ----
/// Counter: requests answered from the response cache. Labels: `model`.
pub const RESPONSE_CACHE_HITS_TOTAL: &str = "mlx_serve_response_cache_hits_total";
/// Counter: cacheable requests not found in the response cache. Labels: `model`.
pub const RESPONSE_CACHE_MISSES_TOTAL: &str = "mlx_serve_response_cache_misses_total";
/// Counter: requests that skipped the cache. Labels: `model`, `reason` (`bypass`, `uncacheable`).
pub const RESPONSE_CACHE_SKIPPED_TOTAL: &str = "mlx_serve_response_cache_skipped_total";
/// Counter: entries evicted from the response cache.
pub const RESPONSE_CACHE_EVICTIONS_TOTAL: &str = "mlx_serve_response_cache_evictions_total";
/// Gauge: entries in the response cache.
pub const RESPONSE_CACHE_ENTRIES: &str = "mlx_serve_response_cache_entries";
/// Gauge: bytes held by the response cache.
pub const RESPONSE_CACHE_BYTES: &str = "mlx_serve_response_cache_bytes";
/// Gauge: hits / (hits + misses) since start, for people without PromQL.
pub const RESPONSE_CACHE_HIT_RATIO: &str = "mlx_serve_response_cache_hit_ratio";
/// Counter: response-cache hits by the tier that served them. Labels: `tier` (`memory`, `disk`, `redis`).
pub const RESPONSE_CACHE_TIER_HITS_TOTAL: &str = "mlx_serve_response_cache_tier_hits_total";
/// Counter: failed operations on a cache tier (e.g. Redis down), stored Responses API responses
/// included. Labels: `tier` (`disk`, `redis`).
pub const RESPONSE_CACHE_TIER_ERRORS_TOTAL: &str = "mlx_serve_response_cache_tier_errors_total";

// ---- Prefix (KV) cache ----
/// Counter: engine requests that looked up a reusable prompt prefix. Labels: `model`.
pub const PREFIX_CACHE_QUERIES_TOTAL: &str = "mlx_serve_prefix_cache_queries_total";
/// Counter: engine requests that reused at least one cached prompt token. Labels: `model`.
pub const PREFIX_CACHE_HITS_TOTAL: &str = "mlx_serve_prefix_cache_hits_total";
/// Counter: prompt tokens looked up in the prefix cache. Labels: `model`.
pub const PREFIX_CACHE_QUERIED_TOKENS_TOTAL: &str = "mlx_serve_prefix_cache_queried_tokens_total";
/// Counter: prompt tokens reused from the prefix cache instead of recomputed. Labels: `model`.
pub const PREFIX_CACHE_TOKENS_SAVED_TOTAL: &str = "mlx_serve_prefix_cache_tokens_saved_total";
/// Gauge: cached prefixes (KV states) held. Labels: `model`.
pub const PREFIX_CACHE_ENTRIES: &str = "mlx_serve_prefix_cache_entries";
/// Gauge: bytes of KV state held by the prefix cache. Labels: `model`.
pub const PREFIX_CACHE_BYTES: &str = "mlx_serve_prefix_cache_bytes";
/// Counter: prefixes evicted from the prefix cache. Labels: `model`.
pub const PREFIX_CACHE_EVICTIONS_TOTAL: &str = "mlx_serve_prefix_cache_evictions_total";

// ---- Tool calls ----
/// Counter: tool calls parsed from model output. Labels: `model`, `format`.
pub const TOOL_CALLS_PARSED_TOTAL: &str = "mlx_serve_tool_calls_parsed_total";
/// Counter: tool calls the parser could not turn into valid calls. Labels: `model`, `format`.
pub const TOOL_CALLS_FAILED_TOTAL: &str = "mlx_serve_tool_calls_failed_total";

// ---- Model and process ----
/// Gauge: seconds the last load of a model took. Labels: `model`.
pub const MODEL_LOAD_DURATION_SECONDS: &str = "mlx_serve_model_load_duration_seconds";
/// Gauge: bytes of model weights in memory. Labels: `model`.
pub const MODEL_WEIGHTS_BYTES: &str = "mlx_serve_model_weights_bytes";
/// Counter: loads of a model started (on demand, preload, operator or restart). Labels: `model`.
pub const MODEL_LOADS_TOTAL: &str = "mlx_serve_model_loads_total";
/// Counter: unloads of a model (keep-alive, room for another, operator). Labels: `model`.
pub const MODEL_UNLOADS_TOTAL: &str = "mlx_serve_model_unloads_total";
/// Gauge: bytes a resident model counts against `server.max_loaded_bytes` (weights plus KV
/// reserve); 0 when unloaded. Labels: `model`.
pub const MODEL_RESIDENT_BYTES: &str = "mlx_serve_model_resident_bytes";
/// Gauge: 1 while a model is resident (loading or ready), else 0. Labels: `model`.
pub const MODEL_LOADED: &str = "mlx_serve_model_loaded";
/// Gauge: resident memory of the server process, read at scrape time.
pub const PROCESS_RESIDENT_MEMORY_BYTES: &str = "mlx_serve_process_resident_memory_bytes";

// ---- Batching and scheduling ----
/// Histogram: sequences per decode step. Labels: `model`.
pub const BATCH_SIZE: &str = "mlx_serve_batch_size";
/// Gauge: decode slots (KV buffers of decoding sequences) in use. Labels: `model`.
pub const KV_SLOTS_USED: &str = "mlx_serve_kv_slots_used";
/// Gauge: fraction of decode slots in use, 0..1 (vLLM's `kv_cache_usage_perc`). Labels: `model`.
pub const KV_CACHE_USAGE_PERC: &str = "mlx_serve_kv_cache_usage_perc";
/// Counter: running sequences paused for a higher-priority request. Labels: `model`.
pub const PREEMPTIONS_TOTAL: &str = "mlx_serve_preemptions_total";
/// Batch-size buckets: the engine counts its steps per bucket (`EngineStats::batch_hist`).
pub use mlx_serve_engine::engine::BATCH_BUCKETS;

/// Every metric family name above, for checks and docs.
pub const ALL: &[&str] = &[
    REQUESTS_TOTAL,
    REQUEST_SUCCESS_TOTAL,
    ERRORS_TOTAL,
    E2E_REQUEST_LATENCY_SECONDS,
    TIME_TO_FIRST_TOKEN_SECONDS,
    TIME_PER_OUTPUT_TOKEN_SECONDS,
    REQUEST_QUEUE_TIME_SECONDS,
    REQUEST_PREFILL_TIME_SECONDS,
    REQUEST_DECODE_TIME_SECONDS,
    PROMPT_TOKENS_TOTAL,
    GENERATION_TOKENS_TOTAL,
    REQUEST_PROMPT_TOKENS,
    REQUEST_GENERATION_TOKENS,
    NUM_REQUESTS_RUNNING,
    NUM_REQUESTS_WAITING,
    RESPONSE_CACHE_HITS_TOTAL,
    RESPONSE_CACHE_MISSES_TOTAL,
    RESPONSE_CACHE_SKIPPED_TOTAL,
    RESPONSE_CACHE_EVICTIONS_TOTAL,
    RESPONSE_CACHE_ENTRIES,
    RESPONSE_CACHE_BYTES,
    RESPONSE_CACHE_HIT_RATIO,
    RESPONSE_CACHE_TIER_HITS_TOTAL,
    RESPONSE_CACHE_TIER_ERRORS_TOTAL,
    PREFIX_CACHE_QUERIES_TOTAL,
    PREFIX_CACHE_HITS_TOTAL,
    PREFIX_CACHE_QUERIED_TOKENS_TOTAL,
    PREFIX_CACHE_TOKENS_SAVED_TOTAL,
    PREFIX_CACHE_ENTRIES,
    PREFIX_CACHE_BYTES,
    PREFIX_CACHE_EVICTIONS_TOTAL,
    TOOL_CALLS_PARSED_TOTAL,
    TOOL_CALLS_FAILED_TOTAL,
    MODEL_LOAD_DURATION_SECONDS,
    MODEL_WEIGHTS_BYTES,
    MODEL_LOADS_TOTAL,
    MODEL_UNLOADS_TOTAL,
    MODEL_RESIDENT_BYTES,
    MODEL_LOADED,
    PROCESS_RESIDENT_MEMORY_BYTES,
    BATCH_SIZE,
    KV_SLOTS_USED,
    KV_CACHE_USAGE_PERC,
    PREEMPTIONS_TOTAL,
];

// ---- Labels ----
/// Model id as served (`/v1/models`).
pub const LABEL_MODEL: &str = "model";
/// Route pattern (`/v1/chat/completions`), never the raw path.
pub const LABEL_ROUTE: &str = "route";
/// HTTP status code.
pub const LABEL_STATUS: &str = "status";
/// OpenAI finish reason (`stop`, `length`, `tool_calls`, …).
pub const LABEL_FINISH_REASON: &str = "finish_reason";
/// Response-cache outcome (`hit`, `miss`, `bypass`, `uncacheable`).
pub const LABEL_CACHE: &str = "cache";
/// Why the response cache was skipped.
pub const LABEL_REASON: &str = "reason";
/// Response-cache tier (`memory`, `disk`, `redis`).
pub const LABEL_TIER: &str = "tier";
/// Every `tier` value of the tier-hits counter.
pub const CACHE_TIERS: &[&str] = &["memory", "disk", "redis", "coalesced"];
/// Every `tier` value of the tier-errors counter.
pub const FAILING_CACHE_TIERS: &[&str] = &["disk", "redis"];
/// Tool-call format (`hermes`, `llama3_json`, …).
pub const LABEL_FORMAT: &str = "format";
/// Error type as the API reports it (`invalid_request_error`, …).
pub const LABEL_ERROR_TYPE: &str = "error_type";

/// Seconds buckets from cache hits (tens of µs) to long CPU generations (minutes).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];

/// Token-count buckets for prompt and generation lengths.
pub const TOKEN_BUCKETS: &[f64] = &[
    1.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0,
    32768.0, 65536.0, 131072.0,
];
