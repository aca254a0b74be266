//! `stele plan` end to end: the inventory on promtool-made and `stele gen` blocks, agreement
//! with the real `promtool tsdb analyze`, the same inventory through a real S3 server
//! (s3s-fs), broken blocks, deletion marks, overlaps, an unreachable bucket and nonsense
//! inputs.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{copy_dir, promtool, run, stele, upload_block, S3Server};
use serde_json::Value;

/// OpenMetrics with skewed cardinality and churn inside one 2h block: 40 `requests_total`
/// series over 4 handlers x 10 instances, half of them living only part of the block; a
/// `temperature` gauge per room; values of varied length.
fn churny_openmetrics() -> String {
    let start_s: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z, a block boundary
    let mut text = String::from("# TYPE requests counter\n");
    for h in 0..4 {
        for i in 0..10 {
            let handler = format!("/api/v{h}/{}", "x".repeat(h * 3));
            // Instances 5..9 appear late (churn), later for higher handlers.
            let first = if i >= 5 { 600 + h as i64 * 900 } else { 0 };
            for k in (first..7_200).step_by(60) {
                text.push_str(&format!(
                    "requests_total{{handler=\"{handler}\",instance=\"host-{i}:9100\"}} {} {}\n",
                    k / 60,
                    start_s + k
                ));
            }
        }
    }
    text.push_str("# TYPE temperature gauge\n");
    for room in ["lab", "hall", "roof"] {
        for k in (0..7_200).step_by(120) {
            text.push_str(&format!(
                "temperature{{room=\"{room}\"}} 21.5 {}\n",
                start_s + k
            ));
        }
    }
    text.push_str("# EOF\n");
    text
}

/// promtool-made blocks (the churny fixture) in `dir`.
fn promtool_blocks(dir: &Path) {
    let input = dir.with_extension("om");
    std::fs::write(&input, churny_openmetrics()).unwrap();
    run(Command::new(promtool())
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(dir));
}

/// Two blocks of the `small` profile, as `stele gen` makes them.
fn gen_blocks(dir: &Path) {
    run(stele()
        .args([
            "gen",
            "--profile",
            "small",
            "--blocks",
            "2",
            "--no-progress",
            "--output",
        ])
        .arg(dir));
}

fn block_ids(dir: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            ulid::Ulid::from_string(&name).ok().map(|_| name)
        })
        .collect();
    ids.sort();
    ids
}

fn plan_json(args: &[&str]) -> Value {
    let out = run(stele()
        .args(["plan", "--no-progress", "--output", "json"])
        .args(args));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("plan output is not JSON: {e}\n{out}"))
}

fn block<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["inventory"]["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["ulid"] == id)
        .unwrap_or_else(|| panic!("block {id} missing from the inventory"))
}

/// One `promtool tsdb analyze` run: the header figures and each titled list as
/// `(value, key)` lines in printed order.
struct Analysis {
    header: Vec<(String, String)>,
    lists: Vec<(String, Vec<(u64, String)>)>,
}

fn promtool_analyze(db: &Path, id: &str, limit: usize) -> Analysis {
    let out = run(Command::new(promtool())
        .args(["tsdb", "analyze", "--limit", &limit.to_string()])
        .arg(db)
        .arg(id));
    let mut a = Analysis {
        header: Vec::new(),
        lists: Vec::new(),
    };
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(title) = line.strip_suffix(':') {
            a.lists.push((title.to_string(), Vec::new()));
        } else if let Some((_, list)) = a.lists.last_mut() {
            let (v, k) = line.split_once(' ').unwrap();
            list.push((v.parse().unwrap(), k.to_string()));
        } else {
            let (k, v) = line.split_once(": ").unwrap();
            a.header.push((k.to_string(), v.to_string()));
        }
    }
    a
}

/// Our list for one of promtool's titles.
fn ours<'a>(card: &'a Value, title: &str) -> &'a Vec<Value> {
    let field = match title {
        "Label pairs most involved in churning" => "churn_pairs",
        "Label names most involved in churning" => "churn_names",
        "Most common label pairs" => "common_pairs",
        "Label names with highest cumulative label value length" => "value_lengths",
        "Highest cardinality labels" => "label_values",
        "Highest cardinality metric names" => "metric_series",
        other => panic!("promtool printed a list we do not know: {other:?}"),
    };
    card[field]
        .as_array()
        .unwrap_or_else(|| panic!("{field} missing"))
}

fn pairs(list: &[Value]) -> Vec<(u64, String)> {
    list.iter()
        .map(|r| {
            (
                r["value"].as_u64().unwrap(),
                r["key"].as_str().unwrap().into(),
            )
        })
        .collect()
}

/// promtool and stele agree on every figure of `id`: with a limit above every list's length
/// the lists must be equal as sets (promtool prints ties in map order); with a small limit
/// the figures must be the same sequence and every line promtool prints one of ours.
fn assert_agrees_with_promtool(db: &Path, id: &str, all: &Value, top5: &Value) {
    let full = promtool_analyze(db, id, 100_000);
    let b = block(all, id);
    let card = &b["index"]["cardinality"];
    let header: Vec<(&str, String)> = full
        .header
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    assert!(
        header.contains(&("Series", b["series"].to_string())),
        "{header:?}"
    );
    assert!(header.contains(&("Label names", card["label_names"].to_string())));
    assert!(header.contains(&(
        "Postings (unique label pairs)",
        card["label_pairs"].to_string()
    )));
    assert!(header.contains(&(
        "Postings entries (total label pairs)",
        card["postings_entries"].to_string()
    )));
    assert_eq!(full.lists.len(), 6, "promtool 2.42 prints six lists");
    for (title, theirs) in &full.lists {
        let theirs: BTreeSet<(u64, String)> = theirs.iter().cloned().collect();
        let mine: BTreeSet<(u64, String)> = pairs(ours(card, title)).into_iter().collect();
        assert_eq!(mine, theirs, "block {id}: {title}");
    }

    let short = promtool_analyze(db, id, 5);
    let card5 = &block(top5, id)["index"]["cardinality"];
    for (title, theirs) in &short.lists {
        let mine = pairs(ours(card5, title));
        let values = |l: &[(u64, String)]| l.iter().map(|p| p.0).collect::<Vec<_>>();
        assert_eq!(values(&mine), values(theirs), "block {id}: top 5 {title}");
        let everything: BTreeSet<(u64, String)> = pairs(ours(card, title)).into_iter().collect();
        for line in theirs {
            assert!(everything.contains(line), "block {id}: {title}: {line:?}");
        }
    }
}

#[test]
fn inventory_agrees_with_promtool_analyze_on_promtool_and_gen_blocks() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("blocks");
    promtool_blocks(&dir);
    gen_blocks(&dir);
    let ids = block_ids(&dir);
    assert!(ids.len() >= 3, "{ids:?}");
    // promtool opens the directory as a read-only TSDB; it must not touch our inputs.
    let db = tmp.path().join("db");
    copy_dir(&dir, &db);
    std::fs::create_dir_all(db.join("wal")).unwrap();

    let d = dir.to_str().unwrap();
    let all = plan_json(&[
        "--blocks-dir",
        d,
        "--analyze",
        "--limit",
        "100000",
        "--inventory-only",
    ]);
    let top5 = plan_json(&[
        "--blocks-dir",
        d,
        "--analyze",
        "--limit",
        "5",
        "--inventory-only",
    ]);
    let plain = plan_json(&["--blocks-dir", d, "--inventory-only"]);
    for id in &ids {
        assert_agrees_with_promtool(&db, id, &all, &top5);
        let b = block(&plain, id);
        assert!(
            b["index"]["cardinality"]["churn_pairs"].is_null(),
            "churn only with --analyze"
        );
        // Range reads only: less than the index, and the header is what stele store writes.
        let read = b["index"]["bytes_read"].as_u64().unwrap();
        let index_bytes = b["index_bytes"].as_u64().unwrap();
        assert!(read < index_bytes, "{id}: read {read} of {index_bytes}");
        let source = stele::block::FileSource::open(&dir.join(id).join("index")).unwrap();
        let header = stele::index_header::build(&source).unwrap();
        let header_dir = tempfile::tempdir().unwrap();
        stele::index_header::write(header_dir.path(), &header).unwrap();
        let written = std::fs::metadata(header_dir.path().join(stele::index_header::FILE_NAME))
            .unwrap()
            .len();
        assert_eq!(
            b["index"]["header_disk_bytes"].as_u64().unwrap(),
            written,
            "{id}: header size on disk"
        );
        // The rest of the block's figures come from meta.json and the listing.
        let meta: Value =
            serde_json::from_slice(&std::fs::read(dir.join(id).join("meta.json")).unwrap())
                .unwrap();
        assert_eq!(b["samples"], meta["stats"]["numSamples"]);
        assert_eq!(b["chunks"], meta["stats"]["numChunks"]);
        assert_eq!(b["index"]["indexed_series"], meta["stats"]["numSeries"]);
        let chunk_bytes: u64 = std::fs::read_dir(dir.join(id).join("chunks"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert_eq!(b["chunk_bytes"].as_u64().unwrap(), chunk_bytes);
    }
    // The churny fixture really churns (else the churn comparison proves little).
    let churned = ids.iter().any(|id| {
        pairs(ours(
            &block(&all, id)["index"]["cardinality"],
            "Label pairs most involved in churning",
        ))
        .iter()
        .any(|p| p.0 > 0)
    });
    assert!(churned, "no block with churn");
}

/// A copy of block `id` under a new ULID, overlapping it in time.
fn duplicate_block(dir: &Path, id: &str) -> String {
    let new = ulid::Ulid::new().to_string();
    copy_dir(&dir.join(id), &dir.join(&new));
    let meta_path = dir.join(&new).join("meta.json");
    let mut meta: Value = serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    meta["ulid"] = Value::String(new.clone());
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
    new
}

/// Flips a byte inside the postings offset table: the table's CRC fails.
fn break_index(block: &Path) {
    let path = block.join("index");
    let mut bytes = std::fs::read(&path).unwrap();
    let toc = bytes.len() - 52;
    let table = u64::from_be_bytes(bytes[toc + 40..toc + 48].try_into().unwrap()) as usize;
    bytes[table + 12] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
}

#[test]
fn s3_bucket_with_marks_overlaps_and_a_broken_block() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("blocks");
    gen_blocks(&dir);
    let ids = block_ids(&dir);
    let local = plan_json(&["--blocks-dir", dir.to_str().unwrap(), "--qps", "5"]);

    let s3 = S3Server::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = s3.store("");
    let overlap = duplicate_block(&dir, &ids[0]);
    let broken = duplicate_block(&dir, &ids[1]);
    break_index(&dir.join(&broken));
    rt.block_on(async {
        for id in ids.iter().chain([&overlap, &broken]) {
            upload_block(store.as_ref(), &dir.join(id)).await;
        }
        use object_store::ObjectStoreExt;
        let mark = format!(r#"{{"id":"{overlap}","deletion_time":1700000000,"version":1}}"#);
        store
            .put(
                &object_store::path::Path::from(format!("{overlap}/deletion-mark.json")),
                mark.into_bytes().into(),
            )
            .await
            .unwrap();
    });
    let config = tmp.path().join("bucket.yml");
    std::fs::write(&config, s3.objstore_yaml("")).unwrap();
    let out = stele()
        .args(["plan", "--no-progress", "--output", "json", "--qps", "5"])
        .arg("--objstore.config-file")
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("block {broken} has a broken index")),
        "{stderr}"
    );
    let remote: Value = serde_json::from_slice(&out.stdout).unwrap();

    // The good blocks read through S3 give the figures they give from the directory.
    for id in &ids {
        assert_eq!(block(&remote, id), block(&local, id), "block {id}");
    }
    let b = block(&remote, &broken);
    assert!(b["index"].is_null());
    let err = b["error"].as_str().unwrap();
    assert!(
        err.contains("PostingsOffsetTable") || err.contains("postings offset table"),
        "{err}"
    );
    assert_eq!(block(&remote, &overlap)["deletion_time"], 1_700_000_000);
    let totals = &remote["inventory"]["totals"];
    assert_eq!(totals["marked_for_deletion"], 1);
    assert_eq!(totals["broken"], 1);
    assert_eq!(totals["blocks"].as_u64().unwrap(), ids.len() as u64 + 1);
    // The broken copy overlaps its original; the marked copy is not counted.
    let timeline = remote["inventory"]["timeline"].as_array().unwrap();
    assert_eq!(timeline.len(), 1, "{timeline:?}");
    assert_eq!(timeline[0]["kind"], "overlap");
    let pair = [
        timeline[0]["blocks"][0].clone(),
        timeline[0]["blocks"][1].clone(),
    ];
    assert!(pair.contains(&Value::String(broken.clone())), "{pair:?}");
    assert!(remote["plan"]["pods"].as_u64().unwrap() >= 1);
    let snippet = remote["relabel_config"].as_str().unwrap();
    stele::bucket::relabel::parse_rules(&snippet.replace("SHARD", "0")).unwrap();
}

#[test]
fn unreachable_buckets_and_nonsense_inputs_are_clear_errors() {
    let port = common::free_port();
    let yaml = format!(
        "type: S3\nconfig:\n  bucket: b\n  endpoint: 127.0.0.1:{port}\n  region: us-east-1\n  access_key: a\n  secret_key: b\n  insecure: true\n"
    );
    let out = stele()
        .args(["plan", "--no-progress", "--objstore.config", &yaml])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bucket unreachable"), "{err}");

    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap();
    for (args, want) in [
        (vec!["--qps", "0"], "--qps must be a positive number"),
        (vec!["--pod-memory", "0"], "--pod-memory"),
        (vec!["--cache-hit-target", "150%"], "--cache-hit-target"),
        (vec!["--series-growth=-100%"], "--series-growth"),
        (vec!["--retention", "soon"], "invalid value 'soon'"),
        (vec!["--pods", "0"], "--pods must be at least 1"),
    ] {
        let out = stele()
            .args(["plan", "--no-progress", "--blocks-dir", d])
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let out = stele()
        .args(["plan", "--no-progress", "--blocks-dir"])
        .arg(tmp.path().join("missing"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a directory"));
    let out = stele().args(["plan", "--no-progress"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("say where the blocks are"));
}

#[test]
fn text_markdown_and_svg_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("blocks");
    gen_blocks(&dir);
    let svg: PathBuf = tmp.path().join("blocks.svg");
    let d = dir.to_str().unwrap();
    let text = run(stele()
        .args(["plan", "--no-progress", "--blocks-dir", d, "--svg"])
        .arg(&svg));
    for want in [
        "2 blocks served",
        "Highest cardinality metric names",
        "store pods",
        "memory: index headers",
        "retention doubles",
        "action: hashmod",
    ] {
        assert!(text.contains(want), "text report lacks {want:?}:\n{text}");
    }
    // The recommended flags are written as `stele store` reads them.
    let flag = "--index-cache-size=";
    let value = text[text.find(flag).expect("recommends an index cache size") + flag.len()..]
        .split(|c: char| c == ';' || c.is_whitespace())
        .next()
        .unwrap();
    let parsed = stele::model::size::parse_size(value);
    assert!(
        parsed.as_ref().is_ok_and(|&n| n > 0),
        "{flag}{value} does not parse: {parsed:?}"
    );
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<title>").count(), 2 * 3, "3 bars per block");
    let md = run(stele().args([
        "plan",
        "--no-progress",
        "--output",
        "markdown",
        "--blocks-dir",
        d,
    ]));
    assert!(md.starts_with("# stele plan"));
    assert!(md.contains("|---|"), "{md}");
    assert!(md.contains("## What if"));
}
