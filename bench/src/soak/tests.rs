use super::*;

fn shot(kind: Kind, class: &'static str, latency_ms: f64) -> Shot {
    Shot {
        kind,
        class,
        latency_ms,
        detail: Some("why".into()),
    }
}

fn facts() -> RunFacts {
    RunFacts {
        url: "http://h".into(),
        model: "m".into(),
        pid: Some(7),
        concurrency: 2,
        elapsed: Duration::from_secs(60),
    }
}

#[test]
fn status_classes_cover_answers_and_their_absence() {
    assert_eq!(class_of(Some(200), None), "2xx");
    assert_eq!(class_of(Some(429), None), "4xx");
    assert_eq!(class_of(Some(503), None), "5xx");
    assert_eq!(class_of(None, Some(&ErrorKind::Timeout)), "timeout");
    assert_eq!(class_of(None, Some(&ErrorKind::Connect)), "transport");
    assert_eq!(
        class_of(Some(200), Some(&ErrorKind::Malformed)),
        "2xx_malformed"
    );
}

#[test]
fn report_counts_by_class_and_kind_and_flags_what_a_healthy_server_never_answers() {
    let shots = vec![
        shot(Kind::Chat, "2xx", 100.0),
        shot(Kind::ChatStream, "2xx", 300.0),
        shot(Kind::Messages, "2xx", 200.0),
        shot(Kind::Disconnect, "2xx", 5.0),
        shot(Kind::Malformed, "4xx", 1.0),
        // Unexpected: a 5xx, a 2xx to a malformed request, a 4xx to a valid one.
        shot(Kind::Chat, "5xx", 50.0),
        shot(Kind::Malformed, "2xx", 1.0),
        shot(Kind::Messages, "4xx", 1.0),
    ];
    let rss = vec![
        RssSample {
            t_s: 0.0,
            rss_mib: 500.0,
        },
        RssSample {
            t_s: 5.0,
            rss_mib: 540.0,
        },
        RssSample {
            t_s: 10.0,
            rss_mib: 520.0,
        },
    ];
    let r = report(facts(), &shots, rss, None);
    assert_eq!(r.requests, 8);
    assert_eq!(r.by_class["2xx"], 5);
    assert_eq!(r.by_class["4xx"], 2);
    assert_eq!(r.by_class["5xx"], 1);
    assert_eq!(r.by_kind["malformed"]["4xx"], 1);
    assert_eq!(r.by_kind["malformed"]["2xx"], 1);
    assert_eq!(r.unexpected, 3);
    assert_eq!(r.unexpected_examples.len(), 3);
    assert!(
        r.unexpected_examples[0].starts_with("chat 5xx"),
        "{:?}",
        r.unexpected_examples
    );
    // Latency only of completed generating answers: 100, 300, 200.
    let l = r.latency_ms.expect("latency");
    assert_eq!((l.count, l.p50, l.max), (3, 200.0, 300.0));
    assert_eq!(r.rss_growth_mib, Some(20.0));
    assert_eq!(r.rss_max_mib, Some(540.0));
    let text = render_text(&r);
    assert!(text.contains("unexpected: 3"), "{text}");
    assert!(text.contains("p50 200  p90 280  p99 298"), "{text}");
    assert!(
        text.contains("rss MiB (pid 7): 0s 500.0, 5s 540.0, 10s 520.0"),
        "{text}"
    );
}

#[test]
fn a_run_without_samples_says_so() {
    let r = report(facts(), &[], Vec::new(), None);
    assert_eq!((r.requests, r.unexpected), (0, 0));
    assert!(r.latency_ms.is_none() && r.rss_growth_mib.is_none());
    let text = render_text(&r);
    assert!(
        text.contains("no completed request") && text.contains("not sampled"),
        "{text}"
    );
}

#[test]
fn vm_rss_is_read_in_bytes() {
    let status = "Name:\tmlx-serve\nVmPeak:\t  900 kB\nVmRSS:\t  2048 kB\nThreads: 9\n";
    assert_eq!(parse_vm_rss(status), Some(2048 * 1024));
    assert_eq!(parse_vm_rss("Name: x\n"), None);
}

#[test]
fn the_mix_has_every_kind_and_malformed_bodies_rotate() {
    for kind in [
        Kind::ChatStream,
        Kind::Chat,
        Kind::Messages,
        Kind::Disconnect,
        Kind::Malformed,
    ] {
        assert!(MIX.contains(&kind), "{kind:?}");
    }
    let bodies: std::collections::BTreeSet<_> = (0..6).map(|i| malformed(i, "m").2).collect();
    assert_eq!(bodies.len(), 6);
}
