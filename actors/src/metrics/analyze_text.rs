//! The human-readable rendering of an [`AnalysisReport`].

use std::fmt::Write;

use super::AnalysisReport;
use crate::metrics::window::Percentiles;

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{:.1}%", x * 100.0))
}

/// Seconds in the unit that reads best: cache hits are µs, generations are seconds.
fn secs(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(s) if s < 1e-3 => format!("{:.0}µs", s * 1e6),
        Some(s) if s < 1.0 => format!("{:.1}ms", s * 1e3),
        Some(s) => format!("{s:.2}s"),
    }
}

fn num(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{x:.1}"))
}

fn dist(p: &Percentiles) -> String {
    format!(
        "p50 {}  p95 {}  p99 {}  mean {}  max {}",
        secs(p.p50),
        secs(p.p95),
        secs(p.p99),
        secs(p.mean),
        secs(p.max)
    )
}

/// Plain-text report, as `mlx-serve analyze` prints it without `--json`.
pub fn render_text(r: &AnalysisReport) -> String {
    let mut o = String::new();
    // Writing into a String cannot fail; the results are ignored on purpose.
    let _ = write_report(&mut o, r);
    o
}

fn write_report(o: &mut String, r: &AnalysisReport) -> std::fmt::Result {
    writeln!(o, "== mlx-serve trace analysis ==")?;
    writeln!(
        o,
        "lines: {}  records: {}  malformed (skipped): {}",
        r.lines, r.records, r.malformed_lines
    )?;
    if let (Some(a), Some(b)) = (&r.first_time, &r.last_time) {
        writeln!(o, "span: {a} .. {b} ({})", secs(r.span_seconds))?;
    }
    let q = &r.requests;
    writeln!(o, "\n-- requests --")?;
    writeln!(
        o,
        "total {}  unique {}  succeeded {}  failed {}  success rate {}  rate {} req/s",
        q.total,
        q.unique,
        q.succeeded,
        q.failed,
        pct(q.success_rate),
        num(q.requests_per_second)
    )?;
    let c = &r.cache;
    writeln!(o, "\n-- response cache --")?;
    writeln!(
        o,
        "hits {}  misses {}  bypass {}  uncacheable {}",
        c.hits, c.misses, c.bypass, c.uncacheable
    )?;
    writeln!(
        o,
        "hit rate {} (of cacheable {})  potential {}",
        pct(c.hit_rate),
        pct(c.cacheable_hit_rate),
        pct(c.potential_hit_rate)
    )?;
    writeln!(
        o,
        "median hit {}  median miss {}  speedup {}",
        secs(c.hit_p50_s),
        secs(c.miss_p50_s),
        c.hit_speedup
            .map_or_else(|| "-".into(), |x| format!("{x:.0}x"))
    )?;
    let l = &r.latency;
    writeln!(o, "\n-- latency --")?;
    writeln!(o, "e2e     {}", dist(&l.e2e))?;
    writeln!(o, "ttft    {}", dist(&l.ttft))?;
    writeln!(o, "queue   {}", dist(&l.queue))?;
    writeln!(o, "hits    {}", dist(&l.e2e_hits))?;
    writeln!(o, "engine  {}", dist(&l.e2e_engine))?;
    let t = &r.tokens;
    writeln!(o, "\n-- tokens --")?;
    writeln!(
        o,
        "prompt {} (prefix-cached {}, reuse {})  generated {}",
        t.prompt,
        t.cached,
        pct(t.prefix_reuse_ratio),
        t.completion
    )?;
    writeln!(
        o,
        "mean prompt {}  mean generated {}  generation speed {} tok/s",
        num(t.mean_prompt),
        num(t.mean_completion),
        num(t.generation_tokens_per_second)
    )?;
    writeln!(o, "\n-- tools --")?;
    writeln!(
        o,
        "requests with tool calls {}  parse failures {}",
        r.requests_with_tools, r.tool_failures
    )?;
    let mut tools: Vec<_> = r.tools.iter().collect();
    tools.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    for (name, n) in tools {
        writeln!(o, "  {n:>6}  {name}")?;
    }
    for (title, map) in [
        ("finish reasons", &r.finish_reasons),
        ("statuses", &r.statuses),
        ("routes", &r.routes),
    ] {
        writeln!(o, "\n-- {title} --")?;
        for (k, n) in map {
            writeln!(o, "  {n:>6}  {k}")?;
        }
    }
    writeln!(o, "\n-- errors --")?;
    if r.errors.is_empty() {
        writeln!(o, "  none")?;
    }
    for e in &r.errors {
        writeln!(o, "  {:>6}  {}", e.count, e.pattern)?;
    }
    writeln!(o, "\n-- models --")?;
    for m in &r.models {
        writeln!(
            o,
            "  {}: {} requests, {} failed, hit rate {}, e2e p50 {} p95 {}, ttft p50 {}, tokens {}/{}",
            m.model,
            m.requests,
            m.failed,
            pct(m.hit_rate),
            secs(m.e2e.p50),
            secs(m.e2e.p95),
            secs(m.ttft.p50),
            m.prompt_tokens,
            m.completion_tokens
        )?;
    }
    writeln!(o, "\n-- slowest --")?;
    for s in &r.slowest {
        writeln!(
            o,
            "  {}  {}  {}  ttft {}  {}+{} tok  {}  {}",
            secs(Some(s.e2e_s)),
            s.time,
            s.model,
            secs(s.ttft_s),
            s.prompt_tokens,
            s.completion_tokens,
            s.cache,
            s.request_hash.as_deref().unwrap_or("-")
        )?;
    }
    Ok(())
}
