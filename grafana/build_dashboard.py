#!/usr/bin/env python3
"""Writes dashboards/mlx-serve.json. Edit the panels here, run it, commit both files.

Queries use only names from actors/src/metrics/names.rs; check.sh and a Rust test enforce it.
"""
import json
import pathlib

DS = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
M = 'model=~"$model"'
RI = "$__rate_interval"


def rate(metric, by=None, extra=""):
    sel = f"{metric}{{{M}{extra}}}"
    inner = f"rate({sel}[{RI}])"
    return f"sum by ({by}) ({inner})" if by else f"sum({inner})"


def quantile(q, hist, by="le"):
    return f"histogram_quantile({q}, {rate(hist + '_bucket', by)})"


def target(expr, legend, ref, **kw):
    t = {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref, "range": True}
    t.update(kw)
    return t


class Layout:
    """Places panels left to right in rows of 24 grid units."""

    def __init__(self):
        self.x, self.y, self.row_h, self.next_id = 0, 0, 0, 1
        self.panels = []

    def add(self, panel, w, h):
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        panel["id"] = self.next_id
        panel["gridPos"] = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.next_id += 1
        self.x += w
        self.row_h = max(self.row_h, h)
        self.panels.append(panel)

    def row(self, title):
        if self.x:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        self.panels.append({
            "type": "row", "title": title, "collapsed": False, "id": self.next_id,
            "gridPos": {"x": 0, "y": self.y, "w": 24, "h": 1}, "panels": [],
        })
        self.next_id += 1
        self.y += 1


def timeseries(title, targets, unit, desc="", stack=False):
    return {
        "type": "timeseries", "title": title, "description": desc, "datasource": DS,
        "targets": [target(e, l, chr(65 + i)) for i, (e, l) in enumerate(targets)],
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10,
                           "showPoints": "never", "spanNulls": True,
                           "stacking": {"mode": "normal" if stack else "none", "group": "A"}},
            },
            "overrides": [],
        },
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
    }


def stat(title, expr, unit, desc=""):
    return {
        "type": "stat", "title": title, "description": desc, "datasource": DS,
        "targets": [target(expr, title, "A", instant=True, range=False)],
        "fieldConfig": {"defaults": {"unit": unit, "decimals": 2}, "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "value", "graphMode": "area", "textMode": "auto"},
    }


def heatmap(title, hist, desc=""):
    return {
        "type": "heatmap", "title": title, "description": desc, "datasource": DS,
        "targets": [target(f"sum by (le) (increase({hist}_bucket{{{M}}}[{RI}]))", "{{le}}", "A",
                           format="heatmap")],
        "options": {"calculate": False, "yAxis": {"unit": "short"},
                    "cellGap": 1, "color": {"mode": "scheme", "scheme": "Oranges"},
                    "tooltip": {"mode": "single", "yHistogram": True}},
        "fieldConfig": {"defaults": {}, "overrides": []},
    }


def ratio(num, den):
    return f"{num} / ({den})"


def build():
    p = Layout()
    hits = rate("mlx_serve_response_cache_hits_total")
    misses = rate("mlx_serve_response_cache_misses_total")
    cache_ratio = ratio(hits, f"{hits} + {misses}")
    prefix_ratio = ratio(rate("mlx_serve_prefix_cache_tokens_saved_total"),
                         rate("mlx_serve_prefix_cache_queried_tokens_total"))

    p.row("Overview")
    p.add(stat("Requests/s", rate("mlx_serve_requests_total"), "reqps"), 4, 4)
    p.add(stat("Success ratio", ratio(rate("mlx_serve_request_success_total"),
                                      rate("mlx_serve_requests_total")), "percentunit"), 4, 4)
    p.add(stat("E2E p50", quantile(0.5, "mlx_serve_e2e_request_latency_seconds"), "s"), 4, 4)
    p.add(stat("Response-cache hit ratio", cache_ratio, "percentunit"), 4, 4)
    p.add(stat("Generated tokens/s", rate("mlx_serve_generation_tokens_total"), "short"), 4, 4)
    p.add(stat("Resident memory", "max(mlx_serve_process_resident_memory_bytes)", "bytes"), 4, 4)

    p.row("Traffic")
    p.add(timeseries("Request rate by route and status",
                     [(rate("mlx_serve_requests_total", "route, status"), "{{route}} {{status}}")],
                     "reqps"), 12, 8)
    p.add(timeseries("Finish reasons",
                     [(rate("mlx_serve_request_success_total", "finish_reason"), "{{finish_reason}}")],
                     "reqps", stack=True), 12, 8)
    p.add(timeseries("Errors by type",
                     [(rate("mlx_serve_errors_total", "error_type"), "{{error_type}}")],
                     "reqps", stack=True), 12, 8)
    p.add(timeseries("Queue and running",
                     [(f"sum(mlx_serve_num_requests_running{{{M}}})", "running"),
                      (f"sum(mlx_serve_num_requests_waiting{{{M}}})", "waiting")],
                     "short"), 12, 8)

    p.row("Latency")
    e2e = "mlx_serve_e2e_request_latency_seconds"
    p.add(timeseries("End-to-end latency",
                     [(quantile(q, e2e), f"p{int(q * 100)}") for q in (0.5, 0.9, 0.99)],
                     "s"), 12, 8)
    p.add(timeseries("End-to-end p50 by cache outcome",
                     [(quantile(0.5, e2e, "le, cache"), "{{cache}}")], "s",
                     "Cache hits should sit in the microsecond buckets."), 12, 8)
    ttft = "mlx_serve_time_to_first_token_seconds"
    p.add(timeseries("Time to first token",
                     [(quantile(0.5, ttft), "p50"), (quantile(0.99, ttft), "p99")], "s"), 8, 8)
    tpot = "mlx_serve_time_per_output_token_seconds"
    p.add(timeseries("Time per output token",
                     [(quantile(0.5, tpot), "p50"), (quantile(0.99, tpot), "p99")], "s"), 8, 8)
    p.add(timeseries("Queue, prefill and decode (p50)",
                     [(quantile(0.5, "mlx_serve_request_queue_time_seconds"), "queue"),
                      (quantile(0.5, "mlx_serve_request_prefill_time_seconds"), "prefill"),
                      (quantile(0.5, "mlx_serve_request_decode_time_seconds"), "decode")],
                     "s"), 8, 8)

    p.row("Tokens")
    p.add(timeseries("Tokens/s",
                     [(rate("mlx_serve_prompt_tokens_total"), "prompt"),
                      (rate("mlx_serve_generation_tokens_total"), "generated")],
                     "short"), 8, 8)
    p.add(heatmap("Prompt length (tokens)", "mlx_serve_request_prompt_tokens"), 8, 8)
    p.add(heatmap("Generation length (tokens)", "mlx_serve_request_generation_tokens"), 8, 8)

    p.row("Batching and scheduling")
    p.add(timeseries("Decode batch size",
                     [(quantile(0.5, "mlx_serve_batch_size"), "p50"),
                      (quantile(0.95, "mlx_serve_batch_size"), "p95"),
                      (ratio(rate("mlx_serve_batch_size_sum"), rate("mlx_serve_batch_size_count")),
                       "mean (upper bound)")],
                     "short", "Sequences per decode step (model.max_batch caps it)."), 8, 8)
    p.add(timeseries("KV slot usage",
                     [(f"max by (model) (mlx_serve_kv_cache_usage_perc{{{M}}})", "{{model}} used"),
                      ], "percentunit",
                     "Decode slots in use / model.max_batch (vLLM's kv_cache_usage_perc)."), 8, 8)
    p.add(timeseries("Preemptions",
                     [(rate("mlx_serve_preemptions_total"), "paused/s"),
                      (f"sum(mlx_serve_kv_slots_used{{{M}}})", "slots used")],
                     "short", "Running requests paused for a higher-priority one "
                     "([scheduler] policy = \"priority\")."), 8, 8)

    p.row("Caches")
    p.add(timeseries("Response-cache hit ratio", [(cache_ratio, "hit ratio")], "percentunit",
                     "hits / (hits + misses); bypassed and uncacheable requests are excluded."),
          8, 8)
    p.add(timeseries("Response-cache traffic",
                     [(hits, "hits"), (misses, "misses"),
                      (rate("mlx_serve_response_cache_skipped_total", "reason"), "skipped {{reason}}"),
                      ("sum(rate(mlx_serve_response_cache_evictions_total[$__rate_interval]))",
                       "evictions")],
                     "reqps"), 8, 8)
    p.add(timeseries("Response-cache size",
                     [("sum(mlx_serve_response_cache_entries)", "entries"),
                      ("sum(mlx_serve_response_cache_bytes)", "bytes")],
                     "short"), 8, 8)
    p.add(timeseries("Prefix-cache hit ratio",
                     [(prefix_ratio, "tokens reused / tokens queried"),
                      (ratio(rate("mlx_serve_prefix_cache_hits_total"),
                             rate("mlx_serve_prefix_cache_queries_total")),
                       "requests with reuse / requests")],
                     "percentunit"), 12, 8)
    p.add(timeseries("Prefix-cache tokens saved/s",
                     [(rate("mlx_serve_prefix_cache_tokens_saved_total"), "saved")], "short"),
          12, 8)

    p.add(timeseries("Response-cache tiers",
                     [("sum by (tier) (rate(mlx_serve_response_cache_tier_hits_total[$__rate_interval]))",
                       "hits {{tier}}"),
                      ("sum by (tier) (rate(mlx_serve_response_cache_tier_errors_total[$__rate_interval]))",
                       "errors {{tier}}")],
                     "ops", "Hits by the tier that served them; failed tier operations (e.g. Redis down)."),
          12, 8)
    p.add(timeseries("Prefix-cache size",
                     [(f"sum(mlx_serve_prefix_cache_bytes{{{M}}})", "bytes"),
                      (f"sum(mlx_serve_prefix_cache_entries{{{M}}})", "entries"),
                      (rate("mlx_serve_prefix_cache_evictions_total"), "evictions/s")],
                     "short"), 12, 8)

    p.row("Tool calls and model")
    p.add(timeseries("Tool calls by format",
                     [(rate("mlx_serve_tool_calls_parsed_total", "format"), "parsed {{format}}"),
                      (rate("mlx_serve_tool_calls_failed_total", "format"), "failed {{format}}")],
                     "ops"), 12, 8)
    p.add(timeseries("Tool-call failure ratio",
                     [(ratio(rate("mlx_serve_tool_calls_failed_total"),
                             f'{rate("mlx_serve_tool_calls_failed_total")} + '
                             f'{rate("mlx_serve_tool_calls_parsed_total")}'), "failed")],
                     "percentunit"), 12, 8)
    p.add(timeseries("Memory",
                     [("max(mlx_serve_process_resident_memory_bytes)", "resident"),
                      (f"sum(mlx_serve_model_weights_bytes{{{M}}})", "weights")],
                     "bytes"), 12, 8)
    p.add(timeseries("Model load time",
                     [(f"max by (model) (mlx_serve_model_load_duration_seconds{{{M}}})",
                       "{{model}}")], "s"), 12, 8)

    return {
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
        ],
        "title": "mlx-serve",
        "uid": "mlx-serve",
        "description": "mlx-serve: requests, latency, tokens, caches, tool calls (metrics mlx_serve_*)",
        "tags": ["mlx-serve", "llm"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "annotations": {"list": []},
        "links": [],
        "templating": {"list": [
            {"name": "DS_PROMETHEUS", "label": "Data source", "type": "datasource",
             "query": "prometheus", "current": {}, "hide": 0, "refresh": 1,
             "regex": "", "options": []},
            {"name": "model", "label": "Model", "type": "query", "datasource": DS,
             "query": {"query": "label_values(mlx_serve_requests_total, model)",
                       "refId": "PrometheusVariableQueryEditor-VariableQuery"},
             "definition": "label_values(mlx_serve_requests_total, model)",
             "multi": True, "includeAll": True, "allValue": ".*",
             "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
             "refresh": 2, "sort": 1, "hide": 0, "regex": "", "options": []},
        ]},
        "panels": p.panels,
    }


if __name__ == "__main__":
    out = pathlib.Path(__file__).with_name("dashboards") / "mlx-serve.json"
    out.write_text(json.dumps(build(), indent=2) + "\n")
    print(f"wrote {out}")
