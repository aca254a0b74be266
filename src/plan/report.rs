//! Renderings of a plan: terminal tables, JSON, Markdown, and an SVG chart of series and
//! bytes per block over time. Pure: figures in, text out.

use std::fmt::Write;

use serde::Serialize;

use super::calibrate::BenchFigures;
use super::cardinality::Ranked;
use super::inventory::{BlockInventory, Inventory};
use super::model::{Calibration, Plan, QueryProfile, Targets, WhatIf};
use super::timeline::{format_labels, IssueKind};
use crate::model::size::format_size;
use crate::model::time::format_rfc3339_ms;

/// Everything `stele plan` found and decided, as `--output json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    pub inventory: Inventory,
    pub profile: QueryProfile,
    pub targets: Targets,
    pub calibration: Calibration,
    /// `None` with `--inventory-only` or when there is nothing to plan for.
    pub plan: Option<Plan>,
    pub what_if: Vec<WhatIf>,
    /// `--selector.relabel-config` for pod `SHARD` (replace with 0 .. pods-1).
    pub relabel_config: Option<String>,
    /// What the `--bench-report` measured, to compare with the plan.
    pub bench: Option<BenchFigures>,
}

impl PlanReport {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("plan report serializes")
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    Text,
    Markdown,
}

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn count(v: f64) -> String {
    match v {
        v if v >= 1e9 => format!("{:.2}G", v / 1e9),
        v if v >= 1e6 => format!("{:.2}M", v / 1e6),
        v if v >= 1e4 => format!("{:.1}k", v / 1e3),
        v if v == v.trunc() => format!("{v:.0}"),
        v => format!("{v:.1}"),
    }
}

fn duration_ms(ms: i64) -> String {
    let h = ms as f64 / 3_600_000.0;
    if h >= 48.0 {
        format!("{:.1}d", h / 24.0)
    } else {
        format!("{h:.1}h")
    }
}

fn table(style: Style, headers: &[&str], rows: &[Vec<String>]) -> String {
    match style {
        Style::Text => crate::table::text(headers, rows),
        Style::Markdown => crate::table::markdown(headers, rows),
    }
}

fn heading(style: Style, out: &mut String, title: &str) {
    match style {
        Style::Markdown => {
            let _ = write!(out, "\n## {title}\n\n");
        }
        Style::Text => {
            let _ = write!(out, "\n{title}\n{}\n", "=".repeat(title.chars().count()));
        }
    }
}

fn block_rows(blocks: &[BlockInventory]) -> Vec<Vec<String>> {
    blocks
        .iter()
        .map(|b| {
            let i = b.index.as_ref();
            let opt = |f: &dyn Fn(&super::inventory::IndexFigures) -> u64| {
                i.map_or("-".to_string(), |i| bytes(f(i)))
            };
            let mut state = Vec::new();
            if b.deletion_time.is_some() {
                state.push("marked for deletion".to_string());
            }
            if let Some(e) = &b.error {
                state.push(format!("broken: {e}"));
            }
            vec![
                b.ulid.clone(),
                format_rfc3339_ms(b.min_time),
                duration_ms(b.max_time - b.min_time),
                if b.resolution == 0 {
                    "raw".into()
                } else {
                    duration_ms(b.resolution)
                },
                format_labels(&b.external_labels),
                if b.source.is_empty() {
                    "-".into()
                } else {
                    b.source.clone()
                },
                count(b.series as f64),
                count(b.samples as f64),
                count(b.chunks as f64),
                bytes(b.index_bytes),
                bytes(b.chunk_bytes),
                opt(&|i| i.symbol_table_bytes),
                opt(&|i| i.postings_table_bytes),
                i.map_or("-".into(), |i| count(i.cardinality.label_names as f64)),
                i.map_or("-".into(), |i| count(i.cardinality.postings_entries as f64)),
                opt(&|i| i.header_disk_bytes),
                opt(&|i| i.header_resident_bytes()),
                state.join("; "),
            ]
        })
        .collect()
}

const BLOCK_HEADERS: [&str; 18] = [
    "block",
    "start",
    "span",
    "res",
    "external labels",
    "source",
    "series",
    "samples",
    "chunks",
    "index",
    "chunk bytes",
    "symbols",
    "postings table",
    "label names",
    "postings entries",
    "header disk",
    "header memory",
    "state",
];

fn ranked_rows(items: &[Ranked]) -> Vec<Vec<String>> {
    items
        .iter()
        .map(|r| vec![r.key.clone(), r.value.to_string()])
        .collect()
}

fn render(r: &PlanReport, style: Style) -> String {
    let inv = &r.inventory;
    let t = &inv.totals;
    let mut out = String::new();
    if style == Style::Markdown {
        let _ = writeln!(out, "# stele plan: {}", inv.source);
    } else {
        let _ = writeln!(out, "stele plan: {}", inv.source);
    }
    let span = match (t.min_time, t.max_time) {
        (Some(a), Some(b)) => format!(
            "{} .. {} ({})",
            format_rfc3339_ms(a),
            format_rfc3339_ms(b),
            duration_ms(b - a)
        ),
        _ => "no blocks".into(),
    };
    let _ = writeln!(
        out,
        "\n{} blocks served ({} marked for deletion, {} with a broken index), {span}",
        t.blocks, t.marked_for_deletion, t.broken
    );
    let _ = writeln!(
        out,
        "{} series, {} samples, {} chunks; index {}, chunks {}; headers {} on disk, {} resident; inventory read {} of index",
        count(t.series as f64),
        count(t.samples as f64),
        count(t.chunks as f64),
        bytes(t.index_bytes),
        bytes(t.chunk_bytes),
        bytes(t.header_disk_bytes),
        bytes(t.header_resident_bytes),
        bytes(t.bytes_read),
    );

    heading(style, &mut out, "Blocks");
    out.push_str(&table(style, &BLOCK_HEADERS, &block_rows(&inv.blocks)));
    for (id, why) in &inv.skipped {
        let _ = writeln!(out, "skipped {id}: {why}");
    }
    for (id, why) in &inv.failed {
        let _ = writeln!(out, "failed {id}: {why}");
    }

    heading(style, &mut out, "Time coverage per external-label set");
    if inv.timeline.is_empty() {
        let _ = writeln!(out, "no overlaps or gaps");
    } else {
        let rows: Vec<Vec<String>> = inv
            .timeline
            .iter()
            .map(|i| {
                vec![
                    match i.kind {
                        IssueKind::Overlap => "overlap".into(),
                        IssueKind::Gap => "gap".into(),
                    },
                    i.labels.clone(),
                    format_rfc3339_ms(i.from),
                    duration_ms(i.to - i.from),
                    format!("{} / {}", i.blocks[0], i.blocks[1]),
                ]
            })
            .collect();
        out.push_str(&table(
            style,
            &["issue", "external labels", "from", "length", "blocks"],
            &rows,
        ));
    }

    // Cardinality of the biggest block (every block's is in the JSON).
    if let Some((b, i)) = inv
        .served()
        .filter_map(|b| b.index.as_ref().map(|i| (b, i)))
        .max_by_key(|(b, _)| b.series)
    {
        let c = &i.cardinality;
        heading(
            style,
            &mut out,
            &format!("Cardinality of the largest block, {}", b.ulid),
        );
        let _ = writeln!(
            out,
            "label names {}, postings (unique label pairs) {}, postings entries (total label pairs) {}\n",
            c.label_names, c.label_pairs, c.postings_entries
        );
        let mut lists: Vec<(&str, &[Ranked])> = vec![
            ("Highest cardinality labels", &c.label_values),
            ("Highest cardinality metric names", &c.metric_series),
            ("Most common label pairs", &c.common_pairs),
            (
                "Label names with highest cumulative label value length",
                &c.value_lengths,
            ),
        ];
        if let (Some(p), Some(n)) = (&c.churn_pairs, &c.churn_names) {
            lists.push(("Label pairs most involved in churning", p));
            lists.push(("Label names most involved in churning", n));
        }
        for (title, items) in lists {
            out.push_str(&table(style, &[title, "value"], &ranked_rows(items)));
            out.push('\n');
        }
    }

    let Some(p) = &r.plan else {
        return out;
    };
    heading(style, &mut out, "Plan");
    let tg = &r.targets;
    let _ = writeln!(
        out,
        "For {} queries/s ({}), retention {}, series growth {:+.0}%, pods of {} and {} CPU, cache hit target {:.0}%:\n",
        tg.qps,
        r.profile.source,
        tg.retention_ms.map_or("as in the bucket".into(), duration_ms),
        tg.series_growth * 100.0,
        bytes(tg.pod_memory),
        tg.pod_cpu,
        tg.cache_hit_target * 100.0
    );
    out.push_str(&table(style, &["", "per pod"], &plan_rows(p)));
    let (strong, code) = match style {
        Style::Markdown => ("**", "`"),
        Style::Text => ("", ""),
    };
    let _ = writeln!(
        out,
        "\n{strong}{} store pods{strong} (bound by {}); {code}--index-cache-size={}{code}; {}.",
        p.pods,
        p.bound_by,
        format_size(p.index_cache_size),
        if tg.chunk_cache_in_pod {
            format!(
                "{code}--store.chunk-cache-size={}{code} (in the pod)",
                format_size(p.chunk_cache_size)
            )
        } else {
            format!(
                "chunk cache {} per pod in memcached ({code}--store.caching-bucket.config{code}), not in pod memory",
                bytes(p.chunk_cache_size)
            )
        }
    );

    heading(style, &mut out, "Object storage");
    let rows = vec![
        vec![
            "per query (mean)".into(),
            count(p.per_query.requests),
            bytes(p.per_query.bytes as u64),
        ],
        vec![
            "per month".into(),
            count(p.per_month.requests),
            bytes(p.per_month.bytes as u64),
        ],
    ];
    out.push_str(&table(style, &["", "GET requests", "bytes"], &rows));
    out.push('\n');
    let rows: Vec<Vec<String>> = p
        .classes
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                format!("{}", c.weight),
                count(c.series),
                count(c.blocks),
                count(c.requests),
                bytes(c.fetched_bytes as u64),
                bytes(c.peak_bytes as u64),
            ]
        })
        .collect();
    out.push_str(&table(
        style,
        &[
            "request",
            "weight",
            "series",
            "blocks",
            "GETs",
            "fetched (no cache)",
            "held at peak",
        ],
        &rows,
    ));

    if let Some(peak) = r.bench.as_ref().and_then(|b| b.peak_rss_bytes) {
        heading(style, &mut out, "Against the bench report");
        let predicted = p.memory.total;
        let rows = vec![vec![
            "peak RSS of one store".to_string(),
            bytes(predicted),
            bytes(peak),
            format!("{:+.1}%", (predicted as f64 / peak as f64 - 1.0) * 100.0),
        ]];
        out.push_str(&table(
            style,
            &["", "predicted", "measured", "error"],
            &rows,
        ));
    }

    if !r.what_if.is_empty() {
        heading(style, &mut out, "What if");
        let mut rows = vec![summary_row("as planned", p)];
        rows.extend(r.what_if.iter().map(|w| summary_row(&w.change, &w.plan)));
        out.push_str(&table(
            style,
            &[
                "",
                "pods",
                "memory/pod",
                "headers/pod",
                "disk/pod",
                "GETs/month",
                "bytes/month",
            ],
            &rows,
        ));
    }
    if let Some(snippet) = &r.relabel_config {
        heading(
            style,
            &mut out,
            "--selector.relabel-config (pod SHARD of 0..pods-1)",
        );
        match style {
            Style::Markdown => {
                let _ = write!(out, "```yaml\n{snippet}```\n");
            }
            Style::Text => out.push_str(snippet),
        }
    }
    out
}

fn plan_rows(p: &Plan) -> Vec<Vec<String>> {
    let m = &p.memory;
    vec![
        vec!["blocks".into(), count(p.blocks_per_pod)],
        vec!["memory: process baseline".into(), bytes(m.base)],
        vec!["memory: index headers".into(), bytes(m.index_headers)],
        vec!["memory: index cache".into(), bytes(m.index_cache)],
        vec!["memory: chunk cache".into(), bytes(m.chunk_cache)],
        vec![
            format!("memory: in-flight ({:.1} requests)", p.concurrency),
            bytes(m.inflight),
        ],
        vec!["memory: total".into(), bytes(m.total)],
        vec!["local disk (index headers)".into(), bytes(p.disk_bytes)],
        vec!["CPU cores".into(), format!("{:.2}", p.cpu_cores)],
    ]
}

fn summary_row(label: &str, p: &Plan) -> Vec<String> {
    vec![
        label.into(),
        p.pods.to_string(),
        bytes(p.memory.total),
        bytes(p.memory.index_headers),
        bytes(p.disk_bytes),
        count(p.per_month.requests),
        bytes(p.per_month.bytes as u64),
    ]
}

pub fn render_text(r: &PlanReport) -> String {
    render(r, Style::Text)
}

pub fn render_markdown(r: &PlanReport) -> String {
    render(r, Style::Markdown)
}

/// Two stacked panels over time: series per block, then index and chunk bytes per block.
/// Each block is a bar from its start to its end; blocks marked for deletion are hatched
/// grey, broken ones red.
pub fn render_svg(inv: &Inventory) -> String {
    const W: f64 = 900.0;
    const PANEL: f64 = 180.0;
    const LEFT: f64 = 80.0;
    const TOP: f64 = 30.0;
    const GAP: f64 = 50.0;
    let plot_w = W - LEFT - 20.0;
    let height = TOP + 2.0 * PANEL + GAP + 40.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="18" font-size="13">Series and bytes per block over time: {}</text>"#,
        xml_escape(&inv.source)
    );
    let (Some(t0), Some(t1)) = (
        inv.blocks.iter().map(|b| b.min_time).min(),
        inv.blocks.iter().map(|b| b.max_time).max(),
    ) else {
        s.push_str("<text x=\"80\" y=\"60\">no blocks</text>\n</svg>\n");
        return s;
    };
    let x = |t: i64| LEFT + (t - t0) as f64 / (t1 - t0).max(1) as f64 * plot_w;
    let max_series = inv
        .blocks
        .iter()
        .map(|b| b.series)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let max_bytes = inv
        .blocks
        .iter()
        .map(|b| b.index_bytes + b.chunk_bytes)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let panels = [
        (TOP, "series", max_series, count(max_series)),
        (
            TOP + PANEL + GAP,
            "bytes (index dark, chunks light)",
            max_bytes,
            bytes(max_bytes as u64),
        ),
    ];
    for (y0, title, _, top_label) in &panels {
        let base = y0 + PANEL;
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{base}" x2="{}" y2="{base}" stroke="#333"/><line x1="{LEFT}" y1="{y0}" x2="{LEFT}" y2="{base}" stroke="#333"/>"##,
            LEFT + plot_w
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{top_label}</text><text x="{}" y="{base}" text-anchor="end">0</text><text x="{}" y="{}">{title}</text>"#,
            LEFT - 4.0,
            y0 + 10.0,
            LEFT - 4.0,
            LEFT + 4.0,
            y0 - 4.0
        );
    }
    for b in &inv.blocks {
        let (x0, x1) = (x(b.min_time), x(b.max_time));
        let w = (x1 - x0 - 1.0).max(1.0);
        let fill = if b.error.is_some() {
            "#d33"
        } else if b.deletion_time.is_some() {
            "#bbb"
        } else {
            "#3a7bd5"
        };
        let title = format!(
            "{} {} .. {}: {} series, index {}, chunks {}",
            b.ulid,
            format_rfc3339_ms(b.min_time),
            format_rfc3339_ms(b.max_time),
            b.series,
            bytes(b.index_bytes),
            bytes(b.chunk_bytes)
        );
        let (y0, _, max, _) = &panels[0];
        let h = b.series as f64 / max * PANEL;
        let _ = writeln!(
            s,
            r#"<rect x="{x0:.1}" y="{:.1}" width="{w:.1}" height="{h:.1}" fill="{fill}"><title>{}</title></rect>"#,
            y0 + PANEL - h,
            xml_escape(&title)
        );
        let (y0, _, max, _) = &panels[1];
        let hi = b.index_bytes as f64 / max * PANEL;
        let hc = b.chunk_bytes as f64 / max * PANEL;
        let base = y0 + PANEL;
        let _ = writeln!(
            s,
            r##"<rect x="{x0:.1}" y="{:.1}" width="{w:.1}" height="{hi:.1}" fill="#1f4e8c"><title>{}</title></rect><rect x="{x0:.1}" y="{:.1}" width="{w:.1}" height="{hc:.1}" fill="#9cc3f0"><title>{}</title></rect>"##,
            base - hi,
            xml_escape(&title),
            base - hi - hc,
            xml_escape(&title)
        );
    }
    let axis_y = TOP + 2.0 * PANEL + GAP + 16.0;
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="{axis_y}">{}</text><text x="{}" y="{axis_y}" text-anchor="end">{}</text>"#,
        format_rfc3339_ms(t0),
        LEFT + plot_w,
        format_rfc3339_ms(t1)
    );
    s.push_str("</svg>\n");
    s
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
        assert_eq!(count(1234.0), "1234");
        assert_eq!(count(1_140_000.0), "1.14M");
        assert_eq!(duration_ms(7_200_000), "2.0h");
        assert_eq!(duration_ms(90 * 86_400_000), "90.0d");
    }

    #[test]
    fn svg_is_well_formed_for_no_and_some_blocks() {
        let empty = render_svg(&Inventory::default());
        assert!(empty.starts_with("<svg") && empty.ends_with("</svg>\n"));
        let block = BlockInventory {
            ulid: "01A".into(),
            min_time: 0,
            max_time: 7_200_000,
            resolution: 0,
            external_labels: Default::default(),
            source: String::new(),
            compaction_level: 1,
            series: 10,
            samples: 100,
            chunks: 10,
            index_bytes: 1000,
            chunk_bytes: 3000,
            chunk_files: 1,
            deletion_time: None,
            index: None,
            error: Some("bad <index>".into()),
        };
        let inv = Inventory {
            source: "dir".into(),
            blocks: vec![block],
            ..Default::default()
        };
        let svg = render_svg(&inv);
        assert_eq!(svg.matches("<rect").count(), 4, "background + 3 bars");
        assert!(svg.contains("#d33"), "broken blocks are red");
        assert!(!svg.contains("<index>"), "text is escaped");
    }
}
