use super::*;

fn names(events: &[StreamEvent]) -> Vec<&'static str> {
    events.iter().map(StreamEvent::name).collect()
}

fn feed(s: &mut MessageStream, inputs: Vec<StreamInput>) -> Vec<StreamEvent> {
    inputs.into_iter().flat_map(|i| s.push(i)).collect()
}

#[test]
fn message_start_carries_the_split_input_usage() {
    let mut s = MessageStream::new("m");
    let out = s.push(StreamInput::Started {
        prompt_tokens: 50,
        cached_tokens: 20,
    });
    match out.as_slice() {
        [StreamEvent::MessageStart { message }] => {
            assert_eq!(message.usage.input_tokens, 30);
            assert_eq!(message.usage.cache_read_input_tokens, 20);
            assert_eq!(message.model, "m");
            assert_eq!(message.id, s.message_id());
        }
        other => panic!("expected message_start, got {other:?}"),
    }
    assert!(s
        .push(StreamInput::Started {
            prompt_tokens: 1,
            cached_tokens: 0
        })
        .is_empty());
}

#[test]
fn text_before_started_still_opens_with_message_start() {
    let mut s = MessageStream::new("m");
    let out = s.push(StreamInput::Text("hi".into()));
    assert_eq!(
        names(&out),
        [
            "message_start",
            "content_block_start",
            "content_block_delta"
        ]
    );
}

#[test]
fn real_text_after_a_tool_call_opens_a_new_text_block() {
    let mut s = MessageStream::new("m");
    let out = feed(
        &mut s,
        vec![
            StreamInput::ToolCallStart {
                index: 0,
                id: "toolu_a".into(),
                name: "ls".into(),
            },
            StreamInput::Text(" ".into()),
            StreamInput::Text("done".into()),
        ],
    );
    assert_eq!(
        names(&out),
        [
            "message_start",
            "content_block_start",
            "content_block_stop",
            "content_block_start",
            "content_block_delta"
        ]
    );
    assert_eq!(
        out[4],
        StreamEvent::ContentBlockDelta {
            index: 1,
            delta: BlockDelta::TextDelta {
                text: " done".into()
            }
        },
        "buffered whitespace is sent with the text that follows"
    );
    match &out[1] {
        StreamEvent::ContentBlockStart {
            content_block: ResponseBlock::ToolUse { id, .. },
            ..
        } => assert_eq!(id, "toolu_a", "toolu_ ids are kept"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn nothing_follows_message_stop() {
    let mut s = MessageStream::new("m");
    let out = feed(
        &mut s,
        vec![StreamInput::Finished {
            reason: FinishReason::Stop,
            stop_sequence: None,
            output_tokens: 0,
        }],
    );
    assert_eq!(names(&out).last(), Some(&"message_stop"));
    assert!(s.is_done());
    assert!(s.push(StreamInput::Text("late".into())).is_empty());
    assert!(s
        .push(StreamInput::Error(ApiError::internal("late")))
        .is_empty());
}

#[test]
fn sse_frame_repeats_the_type_as_event_line() {
    let frame = StreamEvent::ContentBlockStop { index: 3 }.to_sse();
    assert_eq!(
        frame,
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":3}\n\n"
    );
    assert_eq!(
        StreamEvent::MessageStop.to_bytes().as_ref(),
        b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
    );
}
