//! The Thanos objstore YAML format:
//!
//! ```yaml
//! type: S3            # FILESYSTEM | S3 | GCS | AZURE
//! config: { ... }     # provider specific, field names as in Thanos
//! prefix: some/dir    # optional: every object lives under it
//! ```
//!
//! Credentials missing from the YAML come from the usual environment (`AWS_*`,
//! `GOOGLE_APPLICATION_CREDENTIALS`, `AZURE_*`), as with Thanos.

use std::sync::Arc;

use object_store::prefix::PrefixStore;
use object_store::ObjectStore;
use serde::Deserialize;

use super::ObjstoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Provider {
    Filesystem,
    S3,
    Gcs,
    Azure,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BucketConfig {
    #[serde(rename = "type")]
    pub provider: Provider,
    #[serde(default)]
    pub config: serde_yaml::Value,
    #[serde(default)]
    pub prefix: String,
}

#[derive(Debug, Deserialize)]
struct FilesystemConfig {
    directory: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct S3Config {
    bucket: String,
    endpoint: String,
    region: String,
    access_key: String,
    secret_key: String,
    session_token: String,
    insecure: bool,
    bucket_lookup_type: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct GcsConfig {
    bucket: String,
    service_account: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AzureConfig {
    storage_account: String,
    storage_account_key: String,
    container: String,
    endpoint: String,
}

fn provider_config<T: for<'de> Deserialize<'de>>(
    value: &serde_yaml::Value,
) -> Result<T, ObjstoreError> {
    let value = if value.is_null() {
        serde_yaml::Value::Mapping(Default::default())
    } else {
        value.clone()
    };
    serde_yaml::from_value(value).map_err(|e| ObjstoreError::Config(e.to_string()))
}

fn required<'a>(field: &str, value: &'a str) -> Result<&'a str, ObjstoreError> {
    if value.is_empty() {
        Err(ObjstoreError::Config(format!("config.{field} is required")))
    } else {
        Ok(value)
    }
}

impl BucketConfig {
    pub fn parse(yaml: &str) -> Result<Self, ObjstoreError> {
        serde_yaml::from_str(yaml).map_err(|e| ObjstoreError::Config(e.to_string()))
    }

    /// The directory the objects of a FILESYSTEM bucket live in (its prefix included).
    pub fn local_directory(&self) -> Option<std::path::PathBuf> {
        if self.provider != Provider::Filesystem {
            return None;
        }
        let c: FilesystemConfig = provider_config(&self.config).ok()?;
        Some(std::path::Path::new(&c.directory).join(self.prefix.trim_matches('/')))
    }

    pub fn build(&self) -> Result<Arc<dyn ObjectStore>, ObjstoreError> {
        let store: Arc<dyn ObjectStore> = match self.provider {
            Provider::Filesystem => {
                let c: FilesystemConfig = provider_config(&self.config)?;
                let dir = required("directory", &c.directory)?;
                std::fs::create_dir_all(dir)?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(dir).map_err(
                    |source| ObjstoreError::Build {
                        provider: "FILESYSTEM",
                        source,
                    },
                )?;
                Arc::new(fs)
            }
            Provider::S3 => Arc::new(self.s3()?),
            Provider::Gcs => {
                let c: GcsConfig = provider_config(&self.config)?;
                let mut b = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(required("bucket", &c.bucket)?);
                if !c.service_account.is_empty() {
                    b = b.with_service_account_key(c.service_account);
                }
                Arc::new(b.build().map_err(|source| ObjstoreError::Build {
                    provider: "GCS",
                    source,
                })?)
            }
            Provider::Azure => {
                let c: AzureConfig = provider_config(&self.config)?;
                let account = required("storage_account", &c.storage_account)?;
                let mut b = object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_account(account)
                    .with_container_name(required("container", &c.container)?);
                if !c.storage_account_key.is_empty() {
                    b = b.with_access_key(c.storage_account_key);
                }
                if !c.endpoint.is_empty() {
                    b = b.with_endpoint(format!("https://{account}.{}", c.endpoint));
                }
                Arc::new(b.build().map_err(|source| ObjstoreError::Build {
                    provider: "AZURE",
                    source,
                })?)
            }
        };
        let prefix = self.prefix.trim_matches('/');
        Ok(if prefix.is_empty() {
            store
        } else {
            Arc::new(PrefixStore::new(store, prefix))
        })
    }

    fn s3(&self) -> Result<object_store::aws::AmazonS3, ObjstoreError> {
        let c: S3Config = provider_config(&self.config)?;
        let mut b = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(required("bucket", &c.bucket)?);
        if !c.region.is_empty() {
            b = b.with_region(&c.region);
        }
        let custom_endpoint = !c.endpoint.is_empty() && !c.endpoint.contains("amazonaws.com");
        if !c.endpoint.is_empty() {
            let endpoint = if c.endpoint.contains("://") {
                c.endpoint.clone()
            } else {
                format!(
                    "{}://{}",
                    if c.insecure { "http" } else { "https" },
                    c.endpoint
                )
            };
            b = b.with_endpoint(endpoint).with_allow_http(c.insecure);
        }
        // Thanos (minio-go) "auto": virtual-hosted style for AWS, path style elsewhere.
        let virtual_hosted = match c.bucket_lookup_type.as_str() {
            "" | "auto" => !custom_endpoint,
            "virtual-hosted" => true,
            "path" => false,
            other => {
                return Err(ObjstoreError::Config(format!(
                    "config.bucket_lookup_type {other:?} is not auto, virtual-hosted or path"
                )))
            }
        };
        b = b.with_virtual_hosted_style_request(virtual_hosted);
        if !c.access_key.is_empty() {
            b = b
                .with_access_key_id(&c.access_key)
                .with_secret_access_key(required("secret_key", &c.secret_key)?);
        }
        if !c.session_token.is_empty() {
            b = b.with_token(&c.session_token);
        }
        b.build().map_err(|source| ObjstoreError::Build {
            provider: "S3",
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::{path::Path, ObjectStoreExt, PutPayload};

    #[tokio::test]
    async fn filesystem_with_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\nprefix: tenant-a/\n",
            dir.path().display()
        );
        let store = BucketConfig::parse(&yaml).unwrap().build().unwrap();
        store
            .put(&Path::from("x/meta.json"), PutPayload::from_static(b"{}"))
            .await
            .unwrap();
        assert!(dir.path().join("tenant-a/x/meta.json").is_file());
        let config = BucketConfig::parse(&yaml).unwrap();
        let local = config.local_directory().unwrap();
        assert!(local.join("x/meta.json").is_file(), "{}", local.display());
        let got = store
            .get(&Path::from("x/meta.json"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&got[..], b"{}");
    }

    #[test]
    fn s3_config_like_thanos() {
        let yaml = "type: S3\nconfig:\n  bucket: thanos\n  endpoint: 127.0.0.1:9010\n  region: us-east-1\n  access_key: a\n  secret_key: b\n  insecure: true\n  part_size: 1000\n  http_config:\n    idle_conn_timeout: 90s\n";
        BucketConfig::parse(yaml).unwrap().build().unwrap();
    }

    #[test]
    fn bad_configs_are_clear_errors() {
        for (yaml, needle) in [
            ("type: SWIFT\nconfig: {}\n", "unknown variant"),
            ("type: S3\nconfig: {}\n", "config.bucket is required"),
            ("type: FILESYSTEM\n", "directory"),
            (
                "type: S3\nconfig: {bucket: b, bucket_lookup_type: weird}\n",
                "bucket_lookup_type",
            ),
            (": : :", ""),
        ] {
            let err = BucketConfig::parse(yaml)
                .and_then(|c| c.build().map(|_| ()))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{yaml}: {err}");
        }
    }
}
