//! The layering ARCHITECTURE.md promises, checked on the sources: the format (`tsdb/`) and
//! the model (`model/`) know nothing else of the crate and do no I/O; the StoreAPI contract
//! (`storeapi/`) knows no engine; the sidecar knows the contract, not the bucket store.

use std::path::{Path, PathBuf};

/// The `.rs` files under `src/<dir>`, with their non-test code (test modules cut off).
fn sources(dir: &str) -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir);
    let mut files = Vec::new();
    walk(&root, &mut files);
    assert!(!files.is_empty(), "no sources under {}", root.display());
    files
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n != "tests.rs"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let code = match text.find("#[cfg(test)]") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            // Doc comments may name anything.
            let code: String = code
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            (p, code)
        })
        .collect()
}

/// Fails naming every file of `dir` whose code holds one of `forbidden`.
fn forbid(dir: &str, forbidden: &[&str], why: &str) {
    let mut bad = Vec::new();
    for (path, code) in sources(dir) {
        for f in forbidden {
            if code.contains(f) {
                bad.push(format!("{}: {f}", path.display()));
            }
        }
    }
    assert!(bad.is_empty(), "{why}:\n{}", bad.join("\n"));
}

/// `crate::<module>` paths that are not `crate::<allowed>`.
fn crate_paths_except(dir: &str, allowed: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for (path, code) in sources(dir) {
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            let module: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !allowed.contains(&module.as_str()) {
                out.push(format!("{}: crate::{module}", path.display()));
            }
        }
    }
    out
}

#[test]
fn the_format_and_the_model_are_pure() {
    let io = [
        "std::fs",
        "std::net",
        "File::",
        "memmap2",
        "tokio",
        "libc::",
        "std::process",
    ];
    forbid(
        "tsdb",
        &io,
        "tsdb/ does no I/O: readers take ReadAt, writers io::Write",
    );
    forbid("model", &io, "model/ does no I/O");
    let tsdb = crate_paths_except("tsdb", &["tsdb"]);
    assert!(
        tsdb.is_empty(),
        "tsdb/ knows only itself:\n{}",
        tsdb.join("\n")
    );
    let model = crate_paths_except("model", &["model"]);
    assert!(
        model.is_empty(),
        "model/ knows only itself:\n{}",
        model.join("\n")
    );
}

#[test]
fn the_contract_knows_no_engine_and_the_sidecar_no_bucket_store() {
    let contract = crate_paths_except(
        "storeapi",
        &["model", "tsdb", "proto", "server", "metrics", "nowait"],
    );
    assert!(
        contract.is_empty(),
        "storeapi/ is the contract: no engine, bucket or cache in it:\n{}",
        contract.join("\n")
    );
    forbid(
        "sidecar",
        &["crate::store::", "crate::store;"],
        "the sidecar speaks the contract (storeapi), not the bucket store",
    );
}
