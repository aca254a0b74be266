//! `stele::objstore` against real servers: S3 (s3s-fs on loopback; it checks request
//! signatures and stores on disk, so the tests look at the files too) and FILESYSTEM.
//! No server, no test: a missing `s3s-fs` fails with how to install it.

mod common;

use std::path::Path as FsPath;
use std::time::{Duration, Instant};

use common::{upload_block, S3Server};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use stele::bench::proxy::LatencyProxy;
use tokio_stream::StreamExt;

/// Bytes that differ from their neighbours, so a wrong offset shows.
fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

async fn list_all(store: &dyn ObjectStore, prefix: Option<&str>) -> Vec<(String, u64)> {
    let prefix = prefix.map(Path::from);
    let mut listed: Vec<(String, u64)> = store
        .list(prefix.as_ref())
        .map(|m| m.map(|m| (m.location.to_string(), m.size)))
        .collect::<Result<_, _>>()
        .await
        .unwrap();
    listed.sort();
    listed
}

fn is_not_found<T: std::fmt::Debug>(result: object_store::Result<T>) -> bool {
    matches!(result, Err(object_store::Error::NotFound { .. }))
}

/// put/get/get_range/get_ranges/head/list/list_with_delimiter/delete, checking the files that
/// back the store at `on_disk`.
async fn round_trip(store: &dyn ObjectStore, on_disk: &FsPath) {
    let data = payload(100_000);
    let chunks = Path::from("01JBLOCK/chunks/000001");
    let meta = Path::from("01JBLOCK/meta.json");
    let other = Path::from("other/x");
    store
        .put(&chunks, PutPayload::from(data.clone()))
        .await
        .unwrap();
    store
        .put(&meta, PutPayload::from_static(b"{\"version\":1}"))
        .await
        .unwrap();
    store
        .put(&other, PutPayload::from_static(b"x"))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(on_disk.join("01JBLOCK/chunks/000001")).unwrap(),
        data
    );

    let got = store.get(&chunks).await.unwrap().bytes().await.unwrap();
    assert_eq!(got, data);
    assert_eq!(
        store.get_range(&chunks, 10..20).await.unwrap(),
        data[10..20]
    );
    assert_eq!(
        store.get_range(&chunks, 99_990..100_000).await.unwrap(),
        data[99_990..]
    );
    let ranges = [0..4, 50_000..50_100, 99_999..100_000];
    let got = store.get_ranges(&chunks, &ranges).await.unwrap();
    for (range, got) in ranges.iter().zip(got) {
        assert_eq!(got, data[range.start as usize..range.end as usize]);
    }

    let head = store.head(&chunks).await.unwrap();
    assert_eq!(head.location, chunks);
    assert_eq!(head.size, 100_000);

    assert_eq!(
        list_all(store, None).await,
        [
            ("01JBLOCK/chunks/000001".to_string(), 100_000),
            ("01JBLOCK/meta.json".to_string(), 13),
            ("other/x".to_string(), 1),
        ]
    );
    assert_eq!(list_all(store, Some("01JBLOCK")).await.len(), 2);
    // Block discovery: the top level as directories.
    let mut top = store.list_with_delimiter(None).await.unwrap();
    assert!(top.objects.is_empty(), "{top:?}");
    top.common_prefixes.sort();
    assert_eq!(
        top.common_prefixes,
        [Path::from("01JBLOCK"), Path::from("other")]
    );
    let block = store
        .list_with_delimiter(Some(&Path::from("01JBLOCK")))
        .await
        .unwrap();
    assert_eq!(block.common_prefixes, [Path::from("01JBLOCK/chunks")]);
    let objects: Vec<_> = block.objects.iter().map(|m| &m.location).collect();
    assert_eq!(objects, [&meta]);

    let missing = Path::from("01JBLOCK/index");
    assert!(is_not_found(store.get(&missing).await));
    assert!(is_not_found(store.head(&missing).await));

    store.delete(&chunks).await.unwrap();
    assert!(is_not_found(store.head(&chunks).await));
    assert!(is_not_found(store.get(&chunks).await));
    assert!(!on_disk.join("01JBLOCK/chunks/000001").exists());
    assert_eq!(list_all(store, Some("01JBLOCK")).await.len(), 1);
}

#[tokio::test]
async fn s3_round_trip() {
    let server = S3Server::start();
    let store = server.store("");
    round_trip(store.as_ref(), &server.root()).await;
    // S3 semantics: deleting what is not there succeeds.
    store.delete(&Path::from("never/was")).await.unwrap();
}

#[tokio::test]
async fn filesystem_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        serde_json::to_string(&dir.path().to_str().unwrap()).unwrap()
    );
    let store = stele::objstore::from_yaml(&yaml).unwrap();
    round_trip(store.as_ref(), dir.path()).await;
    // Unlike S3, the local filesystem reports deleting what is not there.
    assert!(is_not_found(store.delete(&Path::from("never/was")).await));
}

#[tokio::test]
async fn s3_prefix_is_honoured() {
    let server = S3Server::start();
    let store = server.store("/tenant-a/blocks/");
    store
        .put(
            &Path::from("01JBLOCK/meta.json"),
            PutPayload::from_static(b"{}"),
        )
        .await
        .unwrap();
    assert!(server
        .root()
        .join("tenant-a/blocks/01JBLOCK/meta.json")
        .is_file());
    assert!(!server.root().join("01JBLOCK").exists());
    // Inside the prefix the keys are relative to it; the bare bucket shows where they are.
    assert_eq!(
        list_all(store.as_ref(), None).await,
        [("01JBLOCK/meta.json".to_string(), 2)]
    );
    assert_eq!(
        list_all(server.store("").as_ref(), None).await,
        [("tenant-a/blocks/01JBLOCK/meta.json".to_string(), 2)]
    );
    // Another prefix sees nothing of it.
    assert!(list_all(server.store("tenant-b").as_ref(), None)
        .await
        .is_empty());
}

#[tokio::test]
async fn s3_bad_credentials_are_a_clear_error() {
    let server = S3Server::start();
    let key = Path::from("x");
    server
        .store("")
        .put(&key, PutPayload::from_static(b"x"))
        .await
        .unwrap();
    for (access, secret, needle) in [
        ("test", "wrong-secret", "SignatureDoesNotMatch"),
        // AWS says InvalidAccessKeyId; s3s says this.
        ("nobody", "testsecret", "NotSignedUp"),
    ] {
        // Through a proxy that counts the requests.
        let proxy = LatencyProxy::start(server.endpoint.parse().unwrap(), Duration::ZERO).unwrap();
        let yaml = server
            .objstore_yaml_with_credentials("", access, secret)
            .replace(&server.endpoint, &proxy.addr().to_string());
        let store = stele::objstore::from_yaml(&yaml).unwrap();
        for err in [
            store.get(&key).await.map(|_| ()).unwrap_err(),
            store
                .put(&key, PutPayload::from_static(b"y"))
                .await
                .map(|_| ())
                .unwrap_err(),
        ] {
            let message = err.to_string();
            assert!(
                matches!(err, object_store::Error::PermissionDenied { .. })
                    && message.contains("403")
                    && message.contains(needle),
                "{access}/{secret}: {message}"
            );
        }
        // A refusal is final: one request each, no retries.
        assert_eq!(proxy.requests(), 2, "{access}/{secret}: retried");
    }
    assert_eq!(std::fs::read(server.root().join("x")).unwrap(), b"x");
}

#[tokio::test]
async fn s3_server_gone_is_an_error_and_back_works_again() {
    let mut server = S3Server::start();
    let store = server.store("");
    let key = Path::from("01JBLOCK/index");
    let data = payload(10_000);
    store
        .put(&key, PutPayload::from(data.clone()))
        .await
        .unwrap();

    server.stop();
    let started = Instant::now();
    let err = store.get(&key).await.unwrap_err();
    eprintln!("with the server gone, after {:?}: {err}", started.elapsed());
    assert!(
        !matches!(err, object_store::Error::NotFound { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("error sending request"), "{err}");

    server.start_again();
    assert_eq!(
        store.get_range(&key, 100..200).await.unwrap(),
        data[100..200]
    );

    // Gone while a read is retrying, and back: the retries find it again. The read goes
    // through a proxy, whose connections show the retries happening.
    let proxy = LatencyProxy::start(server.endpoint.parse().unwrap(), Duration::ZERO).unwrap();
    let proxied =
        stele::objstore::from_yaml(&server.objstore_yaml_at(&proxy.addr().to_string(), ""))
            .unwrap();
    server.stop();
    let reader = {
        let key = key.clone();
        tokio::spawn(async move { proxied.get(&key).await?.bytes().await })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.connections() < 3 {
        assert!(Instant::now() < deadline, "the read never retried");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!reader.is_finished(), "the read gave up while retrying");
    server.start_again();
    assert_eq!(reader.await.unwrap().unwrap(), data);
}

#[tokio::test]
async fn s3_multipart_upload() {
    let server = S3Server::start();
    let store = server.store("p");
    let key = Path::from("01JBLOCK/chunks/000001");
    // Parts must be at least 5 MiB, but for the last.
    let data = payload(11 * 1024 * 1024 + 123);
    let mut upload = object_store::WriteMultipart::new_with_chunk_size(
        store.put_multipart(&key).await.unwrap(),
        5 * 1024 * 1024,
    );
    upload.write(&data);
    upload.finish().await.unwrap();
    assert_eq!(
        std::fs::read(server.root().join("p/01JBLOCK/chunks/000001")).unwrap(),
        data
    );
    assert_eq!(
        store
            .get_range(&key, 5 * 1024 * 1024 - 3..5 * 1024 * 1024 + 3)
            .await
            .unwrap(),
        data[5 * 1024 * 1024 - 3..5 * 1024 * 1024 + 3]
    );
}

#[tokio::test]
async fn upload_block_puts_every_file_under_the_prefix() {
    let server = S3Server::start();
    let blocks = tempfile::tempdir().unwrap();
    let ulid = ulid::Ulid::new();
    let block = blocks.path().join(ulid.to_string());
    std::fs::create_dir_all(block.join("chunks")).unwrap();
    std::fs::write(block.join("meta.json"), b"{\"ulid\":1}").unwrap();
    std::fs::write(block.join("index"), payload(3000)).unwrap();
    std::fs::write(block.join("chunks/000001"), payload(5000)).unwrap();

    let uploaded = upload_block(server.store("tenant").as_ref(), &block).await;
    assert_eq!(uploaded, ulid);
    for rel in ["meta.json", "index", "chunks/000001"] {
        assert_eq!(
            std::fs::read(server.root().join(format!("tenant/{ulid}/{rel}"))).unwrap(),
            std::fs::read(block.join(rel)).unwrap(),
            "{rel}"
        );
    }
}

/// Reads what is left of a GET body: the bytes, and the error that ended it early if any.
async fn drain(
    mut body: impl tokio_stream::Stream<Item = object_store::Result<bytes::Bytes>> + Unpin,
) -> (Vec<u8>, Option<object_store::Error>) {
    let mut got = Vec::new();
    while let Some(part) = body.next().await {
        match part {
            Ok(part) => got.extend_from_slice(&part),
            Err(e) => return (got, Some(e)),
        }
    }
    (got, None)
}

#[tokio::test]
async fn s3_server_gone_while_streaming_a_body() {
    let mut server = S3Server::start();
    let store = server.store("");
    let key = Path::from("01JBLOCK/chunks/000001");
    // Far more than socket buffers hold, so most of it is unread when the server dies.
    let data = payload(64 * 1024 * 1024);
    store
        .put(&key, PutPayload::from(data.clone()))
        .await
        .unwrap();

    // Back at once: the client resumes the body with a ranged GET.
    let mut body = store.get(&key).await.unwrap().into_stream();
    let mut got = body.next().await.unwrap().unwrap().to_vec();
    server.stop();
    server.start_again();
    let (rest, err) = drain(body).await;
    assert!(err.is_none(), "{err:?}");
    got.extend(rest);
    assert!(got == data, "the resumed body differs");

    // Gone for good: the body ends in an error, not in a short read.
    let mut body = store.get(&key).await.unwrap().into_stream();
    let first = body.next().await.unwrap().unwrap();
    server.stop();
    let (rest, err) = drain(body).await;
    assert!(first.len() + rest.len() < data.len());
    let err = err.expect("a body cut short ends in an error");
    assert!(err.to_string().contains("error sending request"), "{err}");
}
