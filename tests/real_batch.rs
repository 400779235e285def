//! Batches on the real default model: each member's greedy text as it would be alone,
//! cancellation, constrained neighbours and preemption.
#![cfg(feature = "mlx")]

mod real_common;
use real_common::*;

/// Requests decoded together in one batch give the text each gives alone (greedy), a request
/// cancelled mid-batch ends as cancelled without disturbing the others, and the batch is really
/// formed (several sequences report text in the same step).
#[test]
fn batched_decode_gives_each_request_its_own_greedy_text() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut engine = MlxEngine::load(&EngineOptions {
        prefix_cache_bytes: 0,
        max_batch: 8,
        ..options(ModelSource::Gguf(default_model()))
    })
    .expect("load");
    // Prompts of different lengths, so the batch's sequences sit at different positions.
    let questions = [
        "What is the capital of France?",
        "Name three primary colors.",
        "What is 2 + 2?",
        "Write one sentence about the sea, the wind and the long grey rocks of the northern coast.",
        "Hi",
        "List two fruits.",
        "Which planet is known as the red planet, and why is it called that by astronomers?",
    ];
    let alone: Vec<String> = questions
        .iter()
        .enumerate()
        .map(|(i, q)| {
            generate(
                &mut engine,
                100 + i as u64,
                chat(q),
                SamplingParams::default(),
                16,
            )
            .text
        })
        .collect();

    for (i, q) in questions.iter().enumerate() {
        engine
            .add(
                i as u64,
                GenerateRequest {
                    prompt: chat(q),
                    sampling: SamplingParams::default(),
                    max_tokens: Some(16),
                    stop: Vec::new(),
                    logprobs: None,
                    constraint: None,
                    reasoning: None,
                    encoded: None,
                },
            )
            .expect("admit");
    }
    // A fourth request, cancelled once decoding is under way.
    engine
        .add(
            9,
            GenerateRequest {
                prompt: chat("Tell me a long story."),
                sampling: SamplingParams::default(),
                max_tokens: Some(200),
                stop: Vec::new(),
                logprobs: None,
                constraint: None,
                reasoning: None,
                encoded: None,
            },
        )
        .expect("admit");
    let mut texts = vec![String::new(); questions.len()];
    let mut finished = vec![None; questions.len()];
    let (mut widest_step, mut steps, mut cancelled) = (0, 0, None);
    let mut last_start = 0;
    // Sequences that have started and not finished: each must advance in every step (a token
    // or its end), which is what decoding them as one batch means.
    let mut live = std::collections::BTreeSet::new();
    while engine.has_work() {
        steps += 1;
        if steps == 8 {
            engine.cancel(9);
        }
        let events = engine.step();
        let texting = events
            .iter()
            .filter(|(_, e)| matches!(e, SeqEvent::Text { tokens: 1, .. }))
            .count();
        widest_step = widest_step.max(texting);
        for id in &live {
            assert!(
                events.iter().any(|(seq, e)| seq == id
                    && matches!(
                        e,
                        SeqEvent::Text { tokens: 1, .. } | SeqEvent::Finished { .. }
                    )),
                "step {steps}: running sequence {id} did not advance"
            );
        }
        for (id, event) in events {
            match (id, event) {
                (_, SeqEvent::Started { .. }) => {
                    live.insert(id);
                    last_start = steps;
                }
                (9, SeqEvent::Finished { reason, .. }) => {
                    live.remove(&9);
                    cancelled = Some(reason);
                }
                (9, _) => {}
                (i, SeqEvent::Text { text, .. }) => texts[i as usize].push_str(&text),
                (i, SeqEvent::Finished { reason, .. }) => {
                    live.remove(&i);
                    finished[i as usize] = Some(reason);
                }
                (_, SeqEvent::Failed(e)) => panic!("generation failed: {e}"),
            }
        }
    }
    assert_eq!(
        texts, alone,
        "batched output differs from one-at-a-time output"
    );
    assert!(finished.iter().all(Option::is_some));
    assert_eq!(cancelled, Some(FinishReason::Cancelled));
    // The prompts share prompt passes (each ~40 tokens, 256 a pass): all eight start within
    // three steps, where one prompt a step took eight.
    assert!(
        last_start <= 3,
        "the last request started at step {last_start}"
    );
    // How wide the batch gets depends on when the short answers end (the 2 + 2 one ends after
    // a few tokens), not only on the engine; half the batch at once is well clear of that.
    assert!(
        widest_step >= 4,
        "at most {widest_step} sequences decoded in one step"
    );
    // A real answer (the bare France question's first token is a near tie, see
    // `greedy_capital_of_france_is_paris_and_reuses_the_prefix`; this one is not).
    assert!(alone[2].contains('4'), "answer was {:?}", alone[2]);
}

/// Constrained decoding on the real vocabulary, inside one batch with an unconstrained request:
/// the JSON-schema answer parses with its required keys and enum, the regex answer matches, the
/// sequences end with `Stop` when their grammar is complete, and the unconstrained neighbour's
/// greedy text is the same as when it runs alone.
#[test]
fn constrained_sequences_share_a_batch_with_an_unchanged_greedy_one() {
    use mlx_serve_engine::engine::Constraint;
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut engine = MlxEngine::load(&options(ModelSource::Gguf(default_model()))).expect("load");
    let plain = "What is the capital of France? Answer in one word.";
    let alone = generate(&mut engine, 50, chat(plain), SamplingParams::default(), 16).text;

    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 20},
            "country": {"enum": ["France", "Spain", "Italy"]},
            "population_millions": {"type": "number"}
        },
        "required": ["city", "country", "population_millions"],
        "additionalProperties": false
    });
    let requests = [
        (chat(plain), None),
        (
            chat("Describe Paris as JSON."),
            Some(Constraint::JsonSchema(schema)),
        ),
        (
            chat("Is Paris in France? Answer yes or no."),
            Some(Constraint::Regex("(yes|no)".into())),
        ),
    ];
    for (i, (prompt, constraint)) in requests.into_iter().enumerate() {
        engine
            .add(
                i as u64,
                GenerateRequest {
                    prompt,
                    sampling: SamplingParams::default(),
                    max_tokens: Some(64),
                    stop: Vec::new(),
                    logprobs: None,
                    constraint,
                    reasoning: None,
                    encoded: None,
                },
            )
            .expect("admit");
    }
    let mut texts = vec![String::new(); 3];
    let mut reasons = [None; 3];
    while engine.has_work() {
        for (id, event) in engine.step() {
            match event {
                SeqEvent::Text { text, .. } => texts[id as usize].push_str(&text),
                SeqEvent::Finished { reason, .. } => reasons[id as usize] = Some(reason),
                SeqEvent::Failed(e) => panic!("generation {id} failed: {e}"),
                SeqEvent::Started { .. } => {}
            }
        }
    }
    assert_eq!(texts[0], alone, "the unconstrained neighbour changed");
    let doc: serde_json::Value =
        serde_json::from_str(&texts[1]).unwrap_or_else(|e| panic!("{:?}: {e}", texts[1]));
    assert!(doc["city"].is_string(), "{doc}");
    assert!(
        ["France", "Spain", "Italy"].contains(&doc["country"].as_str().unwrap_or_default()),
        "{doc}"
    );
    assert!(doc["population_millions"].is_number(), "{doc}");
    assert!(texts[2] == "yes" || texts[2] == "no", "{:?}", texts[2]);
    assert_eq!(reasons[1], Some(FinishReason::Stop));
    assert_eq!(reasons[2], Some(FinishReason::Stop));
}

/// A sequence paused for a higher-priority one (its KV kept aside) resumes with exactly the text
/// it would have written unpaused, and the newcomer's answer is its own greedy answer.
#[test]
fn a_preempted_sequence_resumes_with_its_unpreempted_greedy_text() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut engine = MlxEngine::load(&EngineOptions {
        prefix_cache_bytes: 0,
        max_batch: 1,
        ..options(ModelSource::Gguf(default_model()))
    })
    .expect("load");
    let long = "Tell me a story about a lighthouse keeper.";
    let short = "What is the capital of France?";
    let alone_long = generate(&mut engine, 1, chat(long), SamplingParams::default(), 24).text;
    let alone_short = generate(&mut engine, 2, chat(short), SamplingParams::default(), 8).text;
    let request = |q: &str, n: usize| GenerateRequest {
        prompt: chat(q),
        sampling: SamplingParams::default(),
        max_tokens: Some(n),
        stop: Vec::new(),
        logprobs: None,
        constraint: None,
        reasoning: None,
        encoded: None,
    };
    engine.add(10, request(long, 24)).expect("admit");
    let mut texts: std::collections::HashMap<u64, String> = Default::default();
    let mut finished = Vec::new();
    let mut paused = None;
    let mut steps = 0;
    while engine.has_work() || paused.is_some() {
        steps += 1;
        if steps == 6 {
            // What the scheduler does under the priority policy: take the runner's state out,
            // start the newcomer in its slot, and put it back once the slot frees.
            assert_eq!(engine.free_slots(), 0);
            paused = Some(engine.pause(10).expect("pause"));
            assert_eq!(engine.free_slots(), 1);
            engine
                .add(11, request(short, 8))
                .expect("admit the newcomer");
        }
        if !engine.has_work() {
            engine
                .resume(paused.take().expect("paused"))
                .expect("resume");
        }
        for (id, event) in engine.step() {
            match event {
                SeqEvent::Text { text, .. } => texts.entry(id).or_default().push_str(&text),
                SeqEvent::Finished { .. } => finished.push(id),
                SeqEvent::Failed(e) => panic!("generation failed: {e}"),
                SeqEvent::Started { .. } => {}
            }
        }
    }
    assert_eq!(finished, vec![11, 10], "the newcomer did not run first");
    assert_eq!(
        texts[&10], alone_long,
        "the preempted sequence's text changed"
    );
    assert_eq!(texts[&11], alone_short);
    assert_eq!(engine.stats().preemptions, 1);
}
