//! `n` choices of one prompt: `n` engine sequences started together and merged into one event
//! stream, each event tagged with its choice.
//!
//! Each choice is a [`Source`] of its own (its own tool parser, reasoning splitter, metrics
//! record), so a choice behaves exactly like a single generation; the engine batches them, and
//! since a prompt's KV goes to the prefix cache when its prefill completes, choices after the
//! first start from the first one's prompt KV. Dropping [`Choices`] drops every source, which
//! cancels every sequence (client disconnect).
//!
//! With a seed, choice `i` samples with [`choice_seed`]`(seed, i)`: choice 0 with the seed
//! itself (it is the `n` = 1 answer), the others with seeds derived from it, so the choices
//! differ but the whole reply is reproducible. Replies with `n` > 1 bypass the response cache:
//! its coalescing would answer every choice of an unseeded request with one text.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::select_all;
use mlx_serve_actors::cache::CacheDirectives;
use mlx_serve_engine::engine::{GenerateRequest, Usage};

use super::cache::CacheStatus;
use super::{start, Event, Pipeline, RequestContext, Source};
use crate::error::ApiError;

/// The seed of choice `i` of a request seeded with `seed`: `seed` for choice 0, else the `i`-th
/// output of a SplitMix64 generator seeded with `seed` (well mixed, and documented in the README).
pub fn choice_seed(seed: u64, i: usize) -> u64 {
    if i == 0 {
        return seed;
    }
    let mut z = seed.wrapping_add((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The engine request of each of `n` choices: equal but for derived seeds.
pub fn choice_requests(request: &GenerateRequest, n: usize) -> Vec<GenerateRequest> {
    (0..n.max(1))
        .map(|i| {
            let mut r = request.clone();
            r.sampling.seed = request.sampling.seed.map(|s| choice_seed(s, i));
            r
        })
        .collect()
}

/// Add choice `choice`'s usage to a response's total: the prompt counts once, as the first
/// choice saw it; the completion tokens of every choice add up (OpenAI's usage for `n` > 1).
pub fn add_choice_usage(total: &mut Usage, u: &Usage, choice: usize) {
    if choice == 0 {
        total.prompt_tokens += u.prompt_tokens;
        total.cached_tokens += u.cached_tokens;
    }
    total.completion_tokens += u.completion_tokens;
}

/// What [`Choices`] merges: a [`Source`], or a scripted stand-in in tests.
pub trait ChoiceSource {
    /// The next event; `None` after the terminal one (`Finished` or `Error`).
    fn next_event(&mut self) -> impl Future<Output = Option<Event>>;
}

impl ChoiceSource for Source {
    fn next_event(&mut self) -> impl Future<Output = Option<Event>> {
        self.next()
    }
}

/// The merged event stream of the `n` choices of one prompt.
pub struct Choices<S = Source> {
    /// One per choice; `None` once that choice has ended.
    sources: Vec<Option<S>>,
    /// Polled first next time, so that no choice starves the others.
    cursor: usize,
    /// An event taken by [`Self::prime`] and not yet returned.
    pending: VecDeque<(usize, Event)>,
    status: CacheStatus,
}

impl From<Source> for Choices {
    fn from(source: Source) -> Self {
        let status = source.cache_status();
        Self::of(vec![source], status)
    }
}

/// Start `n` choices of `request`: one [`start`] each, in order, so choice 0 reaches the engine
/// first. If one cannot start (a full queue), the ones already started are cancelled.
pub async fn start_choices(
    state: &Arc<Pipeline>,
    request: GenerateRequest,
    mut ctx: RequestContext,
    n: usize,
) -> Result<Choices, ApiError> {
    if n <= 1 {
        return Ok(start(state, request, ctx).await?.into());
    }
    ctx.cache.directives = CacheDirectives {
        no_cache: true,
        no_store: true,
    };
    let mut sources = Vec::with_capacity(n);
    for r in choice_requests(&request, n) {
        sources.push(start(state, r, ctx.clone()).await?);
    }
    Ok(Choices::of(sources, CacheStatus::Bypass))
}

type NextFuture<'a> = Pin<Box<dyn Future<Output = (usize, Option<Event>)> + 'a>>;

impl<S: ChoiceSource> Choices<S> {
    /// Merge these sources, choice `i` being `sources[i]`.
    pub fn of(sources: Vec<S>, status: CacheStatus) -> Self {
        Self {
            sources: sources.into_iter().map(Some).collect(),
            cursor: 0,
            pending: VecDeque::new(),
            status,
        }
    }

    /// How many choices (ended ones included).
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// True only for a merge of nothing.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// How the response cache took part (`x-cache`): always a bypass for `n` > 1.
    pub fn cache_status(&self) -> CacheStatus {
        self.status
    }

    /// Wait up to `window` for the first event of any choice; an error that comes that early is
    /// returned so the handler can answer with a proper status instead of an SSE error event.
    pub async fn prime(&mut self, window: Duration) -> Result<(), ApiError> {
        match tokio::time::timeout(window, self.next()).await {
            Ok(Some((_, Event::Error(e)))) => Err(e),
            Ok(Some(ev)) => {
                self.pending.push_front(ev);
                Ok(())
            }
            Err(_) | Ok(None) => Ok(()),
        }
    }

    /// The next event of whichever choice has one, with the choice's index; `None` once every
    /// choice has finished. An error in any choice ends them all: the others are dropped, which
    /// cancels their sequences.
    ///
    /// Cancel-safe (it may be dropped while waiting, as keep-alive timeouts do): a source's
    /// `next` only waits on its channel, and events are taken synchronously once one is ready.
    pub async fn next(&mut self) -> Option<(usize, Event)> {
        if let Some(ev) = self.pending.pop_front() {
            return Some(ev);
        }
        loop {
            let (i, ev) = self.next_of_any().await?;
            match ev {
                // A source ends only after its terminal event, which was returned already.
                None => self.sources[i] = None,
                Some(Event::Error(e)) => {
                    self.sources.iter_mut().for_each(|s| *s = None);
                    return Some((i, Event::Error(e)));
                }
                Some(ev @ Event::Finished { .. }) => {
                    self.sources[i] = None;
                    return Some((i, ev));
                }
                Some(ev) => return Some((i, ev)),
            }
        }
    }

    async fn next_of_any(&mut self) -> Option<(usize, Option<Event>)> {
        let n = self.sources.len();
        if n == 1 {
            let source = self.sources[0].as_mut()?;
            return Some((0, source.next_event().await));
        }
        let first = self.cursor;
        self.cursor = (self.cursor + 1) % n.max(1);
        let mut live: Vec<(usize, &mut S)> = self
            .sources
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| s.as_mut().map(|s| (i, s)))
            .collect();
        if live.is_empty() {
            return None;
        }
        // `select_all` takes the first ready future in order: start the order at the cursor.
        live.sort_by_key(|(i, _)| (*i + n - first) % n);
        let futures: Vec<NextFuture<'_>> = live
            .into_iter()
            .map(|(i, s)| Box::pin(async move { (i, s.next_event().await) }) as NextFuture<'_>)
            .collect();
        let (ready, _, _) = select_all(futures).await;
        Some(ready)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlx_serve_engine::engine::{FinishReason, Prompt, SamplingParams};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn request(seed: Option<u64>) -> GenerateRequest {
        GenerateRequest {
            prompt: Prompt::Text("p".into()),
            sampling: SamplingParams {
                temperature: 0.7,
                seed,
                ..SamplingParams::default()
            },
            max_tokens: Some(4),
            stop: Vec::new(),
            logprobs: None,
            constraint: None,
            reasoning: None,
            encoded: None,
        }
    }

    #[test]
    fn choice_zero_keeps_the_seed_and_the_others_differ_reproducibly() {
        let seeds: Vec<_> = choice_requests(&request(Some(42)), 4)
            .into_iter()
            .map(|r| r.sampling.seed.expect("seeded"))
            .collect();
        assert_eq!(seeds[0], 42);
        let mut distinct = seeds.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 4, "{seeds:?}");
        assert_eq!(choice_seed(42, 2), seeds[2]);
        // Neighbouring seeds do not share choices: seed 42's choice 1 is not seed 43's choice 0.
        assert_ne!(choice_seed(42, 1), 43);
        assert_ne!(choice_seed(42, 1), choice_seed(43, 0));
    }

    #[test]
    fn unseeded_choices_stay_unseeded_and_equal_otherwise() {
        let reqs = choice_requests(&request(None), 3);
        assert_eq!(reqs.len(), 3);
        assert!(reqs.iter().all(|r| r == &request(None)));
    }

    /// A choice that plays events with delays, and counts its drops. Like a `Source` it is
    /// cancel-safe: an event leaves the script only once it is returned.
    struct Scripted {
        events: VecDeque<(u64, Event)>,
        due: Option<tokio::time::Instant>,
        dropped: Arc<AtomicUsize>,
    }

    impl ChoiceSource for Scripted {
        async fn next_event(&mut self) -> Option<Event> {
            let ms = self.events.front()?.0;
            let due = *self
                .due
                .get_or_insert_with(|| tokio::time::Instant::now() + Duration::from_millis(ms));
            tokio::time::sleep_until(due).await;
            self.due = None;
            self.events.pop_front().map(|(_, ev)| ev)
        }
    }

    impl Drop for Scripted {
        fn drop(&mut self) {
            self.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn text(t: &str) -> Event {
        Event::Text {
            text: t.into(),
            logprobs: Vec::new(),
        }
    }

    fn finished(completion_tokens: usize) -> Event {
        Event::Finished {
            reason: FinishReason::Stop,
            usage: Usage {
                prompt_tokens: 5,
                cached_tokens: 0,
                completion_tokens,
            },
            stop_sequence: None,
        }
    }

    fn merge(scripts: Vec<Vec<(u64, Event)>>) -> (Choices<Scripted>, Arc<AtomicUsize>) {
        let dropped = Arc::new(AtomicUsize::new(0));
        let sources = scripts
            .into_iter()
            .map(|events| Scripted {
                events: events.into(),
                due: None,
                dropped: dropped.clone(),
            })
            .collect();
        (Choices::of(sources, CacheStatus::Bypass), dropped)
    }

    #[tokio::test]
    async fn choices_interleave_as_they_come_and_each_finishes_once() {
        // Choice 1 is faster than choice 0: its events come first.
        let (mut choices, dropped) = merge(vec![
            vec![(30, text("a")), (30, text("b")), (1, finished(2))],
            vec![(1, text("x")), (1, finished(1))],
            vec![(10, text("p")), (40, finished(1))],
        ]);
        let mut order = Vec::new();
        let mut texts = vec![String::new(); 3];
        let mut finishes = vec![0; 3];
        while let Some((i, ev)) = choices.next().await {
            order.push(i);
            match ev {
                Event::Text { text, .. } => texts[i].push_str(&text),
                Event::Finished { .. } => finishes[i] += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(texts, ["ab", "x", "p"]);
        assert_eq!(finishes, [1, 1, 1]);
        assert_eq!(&order[..2], &[1, 1], "{order:?}");
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            3,
            "each ended choice is let go"
        );
        assert!(choices.next().await.is_none());
    }

    #[tokio::test]
    async fn an_error_in_one_choice_ends_and_drops_them_all() {
        let (mut choices, dropped) = merge(vec![
            vec![(1, text("a")), (500, finished(1))],
            vec![(5, Event::Error(ApiError::timeout(1)))],
            vec![(1, text("p")), (500, finished(1))],
        ]);
        let mut last = None;
        while let Some((i, ev)) = choices.next().await {
            last = Some((i, ev));
        }
        assert!(matches!(last, Some((1, Event::Error(_)))), "{last:?}");
        assert_eq!(dropped.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_primed_event_is_returned_first_and_an_early_error_is_refused() {
        let (mut choices, _) = merge(vec![vec![(1, text("a")), (1, finished(1))]]);
        choices
            .prime(Duration::from_secs(1))
            .await
            .expect("no error");
        assert!(matches!(
            choices.next().await,
            Some((0, Event::Text { .. }))
        ));
        let (mut failing, _) = merge(vec![
            vec![(1, Event::Error(ApiError::timeout(1)))],
            vec![(50, text("x"))],
        ]);
        assert!(failing.prime(Duration::from_secs(1)).await.is_err());
    }

    #[tokio::test]
    async fn dropping_the_merge_drops_every_choice() {
        let (mut choices, dropped) = merge(vec![
            vec![(1, text("a")), (1000, finished(1))],
            vec![(1000, text("x"))],
        ]);
        assert!(choices.next().await.is_some());
        drop(choices);
        assert_eq!(dropped.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn choice_usage_counts_the_prompt_once_and_sums_completions() {
        let u = |c: usize| Usage {
            prompt_tokens: 10,
            cached_tokens: if c == 0 { 0 } else { 9 },
            completion_tokens: 3 + c,
        };
        let mut total = Usage::default();
        for c in 0..3 {
            add_choice_usage(&mut total, &u(c), c);
        }
        assert_eq!(total.prompt_tokens, 10);
        assert_eq!(total.cached_tokens, 0);
        assert_eq!(total.completion_tokens, 3 + 4 + 5);
    }
}
