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
        let store: Arc<dyn ObjectStore> =
            match self.provider {
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
                Provider::Gcs => Arc::new(self.gcs_builder()?.build().map_err(|source| {
                    ObjstoreError::Build {
                        provider: "GCS",
                        source,
                    }
                })?),
                Provider::Azure => Arc::new(self.azure_builder()?.build().map_err(|source| {
                    ObjstoreError::Build {
                        provider: "AZURE",
                        source,
                    }
                })?),
            };
        let prefix = self.prefix.trim_matches('/');
        Ok(if prefix.is_empty() {
            store
        } else {
            Arc::new(PrefixStore::new(store, prefix))
        })
    }

    fn gcs_builder(&self) -> Result<object_store::gcp::GoogleCloudStorageBuilder, ObjstoreError> {
        let c: GcsConfig = provider_config(&self.config)?;
        let mut b = object_store::gcp::GoogleCloudStorageBuilder::from_env()
            .with_bucket_name(required("bucket", &c.bucket)?);
        if !c.service_account.is_empty() {
            b = b.with_service_account_key(c.service_account);
        }
        Ok(b)
    }

    fn azure_builder(&self) -> Result<object_store::azure::MicrosoftAzureBuilder, ObjstoreError> {
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
        Ok(b)
    }

    fn s3(&self) -> Result<object_store::aws::AmazonS3, ObjstoreError> {
        self.s3_builder()?
            .build()
            .map_err(|source| ObjstoreError::Build {
                provider: "S3",
                source,
            })
    }

    fn s3_builder(&self) -> Result<object_store::aws::AmazonS3Builder, ObjstoreError> {
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
        Ok(b)
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
        use object_store::aws::AmazonS3ConfigKey as Key;
        use object_store::ClientConfigKey;
        // Fields stele does not use (part_size, http_config) are accepted, as Thanos writes them.
        let yaml = "type: S3\nconfig:\n  bucket: thanos\n  endpoint: 127.0.0.1:9010\n  region: eu-west-3\n  access_key: a\n  secret_key: b\n  session_token: t\n  insecure: true\n  part_size: 1000\n  http_config:\n    idle_conn_timeout: 90s\n";
        let config = BucketConfig::parse(yaml).unwrap();
        config.build().unwrap();
        let b = config.s3_builder().unwrap();
        let get = |key: Key| b.get_config_value(&key);
        assert_eq!(get(Key::Bucket).as_deref(), Some("thanos"));
        assert_eq!(get(Key::Endpoint).as_deref(), Some("http://127.0.0.1:9010"));
        assert_eq!(get(Key::Region).as_deref(), Some("eu-west-3"));
        assert_eq!(get(Key::AccessKeyId).as_deref(), Some("a"));
        assert_eq!(get(Key::SecretAccessKey).as_deref(), Some("b"));
        assert_eq!(get(Key::Token).as_deref(), Some("t"));
        // A custom endpoint is addressed path-style, as minio-go's "auto" does.
        assert_eq!(
            get(Key::VirtualHostedStyleRequest).as_deref(),
            Some("false")
        );
        assert_eq!(
            get(Key::Client(ClientConfigKey::AllowHttp)).as_deref(),
            Some("true")
        );

        // AWS itself: https, virtual-hosted style; an explicit lookup type wins.
        let aws = BucketConfig::parse(
            "type: S3\nconfig:\n  bucket: b\n  endpoint: s3.eu-west-3.amazonaws.com\n",
        )
        .unwrap();
        let b = aws.s3_builder().unwrap();
        assert_eq!(
            b.get_config_value(&Key::Endpoint).as_deref(),
            Some("https://s3.eu-west-3.amazonaws.com")
        );
        assert_eq!(
            b.get_config_value(&Key::VirtualHostedStyleRequest)
                .as_deref(),
            Some("true")
        );
        let path = BucketConfig::parse("type: S3\nconfig:\n  bucket: b\n  endpoint: s3.eu-west-3.amazonaws.com\n  bucket_lookup_type: path\n").unwrap();
        assert_eq!(
            path.s3_builder()
                .unwrap()
                .get_config_value(&Key::VirtualHostedStyleRequest)
                .as_deref(),
            Some("false")
        );
    }

    #[test]
    fn gcs_config_like_thanos() {
        use object_store::gcp::GoogleConfigKey as Key;
        // Thanos' `service_account` holds the key file's JSON itself, not a path.
        let key = r#"{"type":"service_account","client_email":"stele@p.iam.gserviceaccount.com","private_key":"-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n","private_key_id":"1"}"#;
        let yaml = format!(
            "type: GCS\nconfig:\n  bucket: thanos-gcs\n  service_account: '{key}'\nprefix: p\n"
        );
        let config = BucketConfig::parse(&yaml).unwrap();
        let b = config.gcs_builder().unwrap();
        assert_eq!(
            b.get_config_value(&Key::Bucket).as_deref(),
            Some("thanos-gcs")
        );
        assert_eq!(
            b.get_config_value(&Key::ServiceAccountKey).as_deref(),
            Some(key)
        );
        let bad =
            BucketConfig::parse("type: GCS\nconfig:\n  bucket: b\n  service_account: 'not json'\n")
                .unwrap()
                .build()
                .map(|_| ())
                .unwrap_err()
                .to_string();
        assert!(bad.contains("GCS"), "{bad}");
    }

    #[test]
    fn azure_config_like_thanos() {
        use object_store::azure::AzureConfigKey as Key;
        let yaml = "type: AZURE\nconfig:\n  storage_account: stele\n  storage_account_key: c2VjcmV0\n  container: blocks\n  endpoint: blob.core.chinacloudapi.cn\n  max_retries: 3\n";
        let config = BucketConfig::parse(yaml).unwrap();
        config.build().unwrap();
        let b = config.azure_builder().unwrap();
        let get = |key: Key| b.get_config_value(&key);
        assert_eq!(get(Key::AccountName).as_deref(), Some("stele"));
        assert_eq!(get(Key::AccessKey).as_deref(), Some("c2VjcmV0"));
        assert_eq!(get(Key::ContainerName).as_deref(), Some("blocks"));
        // Thanos' `endpoint` is the storage suffix; the account is the host's first label.
        assert_eq!(
            get(Key::Endpoint).as_deref(),
            Some("https://stele.blob.core.chinacloudapi.cn")
        );
        for (yaml, needle) in [
            ("type: AZURE\nconfig: {container: c}\n", "storage_account"),
            ("type: AZURE\nconfig: {storage_account: a}\n", "container"),
        ] {
            let err = BucketConfig::parse(yaml)
                .unwrap()
                .build()
                .map(|_| ())
                .unwrap_err();
            assert!(err.to_string().contains(needle), "{yaml}: {err}");
        }
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
