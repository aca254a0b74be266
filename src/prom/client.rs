//! The HTTP client of a Prometheus server: remote read (streamed XOR
//! chunks, SAMPLES as the fallback), the label and series APIs, its running config (for the
//! external labels) and its lowest timestamp.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{header, StatusCode, Url};
use serde::Deserialize;

use super::remote_read::{self, FrameDecoder, RemoteReadError, STREAMED_CONTENT_TYPE};
use crate::model::{Labels, Matcher};
use crate::proto::prometheus::{read_request::ResponseType, ChunkedSeries};

/// The time range Prometheus' HTTP API accepts (years 1 to 9999), in milliseconds; the
/// StoreAPI's `i64::MIN..i64::MAX` "everything" is clamped to it.
const API_MIN_MS: i64 = -62_135_596_800_000;
const API_MAX_MS: i64 = 253_402_300_799_000;
const LOWEST_TIMESTAMP_METRIC: &str = "prometheus_tsdb_lowest_timestamp_seconds";

#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    /// Connection refused, timeout, or a 5xx: usually transient.
    #[error("Prometheus at {url} is unavailable: {reason}")]
    Unavailable { url: String, reason: String },
    /// A 4xx: the request was bad (e.g. a selector Prometheus does not accept).
    #[error("Prometheus rejected the request: {0}")]
    Rejected(String),
    #[error("unexpected reply from Prometheus to {what}: {reason}")]
    BadReply { what: &'static str, reason: String },
    #[error(transparent)]
    RemoteRead(#[from] RemoteReadError),
}

/// The answer of Prometheus' JSON API.
#[derive(Debug, Deserialize)]
struct ApiReply<T> {
    status: String,
    data: Option<T>,
    #[serde(default)]
    error: String,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct ConfigData {
    yaml: String,
}

#[derive(Debug, Default, Deserialize)]
struct RunningConfig {
    #[serde(default)]
    global: GlobalConfig,
}

#[derive(Debug, Default, Deserialize)]
struct GlobalConfig {
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
}

/// Data with the warnings Prometheus attached to it.
pub type WithWarnings<T> = (T, Vec<String>);

#[derive(Debug, Clone)]
pub struct PrometheusClient {
    http: reqwest::Client,
    base: Url,
    /// Limit of the small API calls (config, metrics, labels); remote reads are not limited.
    api_timeout: Duration,
}

impl PrometheusClient {
    /// `url` is the Prometheus base URL, e.g. `http://localhost:9090`.
    pub fn new(url: &str, api_timeout: Duration) -> Result<Self, PrometheusError> {
        let rejected = |reason: String| PrometheusError::Rejected(reason);
        let mut base = Url::parse(url)
            .map_err(|e| rejected(format!("invalid Prometheus URL {url:?}: {e}")))?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| rejected(format!("building the HTTP client: {e}")))?;
        Ok(PrometheusClient {
            http,
            base,
            api_timeout,
        })
    }

    pub fn url(&self) -> &Url {
        &self.base
    }

    fn endpoint(&self, path: &str) -> Url {
        self.base
            .join(path)
            .expect("API paths are valid relative URLs")
    }

    fn unavailable(&self, reason: impl std::fmt::Display) -> PrometheusError {
        PrometheusError::Unavailable {
            url: self.base.to_string(),
            reason: reason.to_string(),
        }
    }

    /// Sends `request`; transport failures and 5xx are `Unavailable`, 4xx `Rejected`.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, PrometheusError> {
        let response = request.send().await.map_err(|e| self.unavailable(e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ApiReply<serde_json::Value>>(&body)
            .map(|r| r.error)
            .unwrap_or(body);
        let message = format!("{status}: {}", message.trim());
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            Err(self.unavailable(message))
        } else {
            Err(PrometheusError::Rejected(message))
        }
    }

    async fn api_get<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        url: Url,
    ) -> Result<WithWarnings<T>, PrometheusError> {
        let response = self
            .send(self.http.get(url).timeout(self.api_timeout))
            .await?;
        let body = response.bytes().await.map_err(|e| self.unavailable(e))?;
        let bad = |reason: String| PrometheusError::BadReply { what, reason };
        let reply: ApiReply<T> =
            serde_json::from_slice(&body).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        match (reply.status.as_str(), reply.data) {
            ("success", Some(data)) => Ok((data, reply.warnings)),
            _ => Err(bad(format!("status {:?}: {}", reply.status, reply.error))),
        }
    }

    /// `global.external_labels` of the running configuration.
    pub async fn external_labels(&self) -> Result<Labels, PrometheusError> {
        let (config, _) = self
            .api_get::<ConfigData>(
                "/api/v1/status/config",
                self.endpoint("api/v1/status/config"),
            )
            .await?;
        let parsed: RunningConfig =
            serde_yaml::from_str(&config.yaml).map_err(|e| PrometheusError::BadReply {
                what: "/api/v1/status/config",
                reason: format!("invalid configuration YAML: {e}"),
            })?;
        Ok(Labels::from_pairs(parsed.global.external_labels))
    }

    /// The oldest sample Prometheus holds (ms), from its own metrics; rounded down to the
    /// second, so it never advertises less than it has.
    pub async fn lowest_timestamp(&self) -> Result<i64, PrometheusError> {
        let what = "/metrics";
        let response = self
            .send(
                self.http
                    .get(self.endpoint("metrics"))
                    .timeout(self.api_timeout),
            )
            .await?;
        let text = response.text().await.map_err(|e| self.unavailable(e))?;
        parse_lowest_timestamp(&text).ok_or_else(|| PrometheusError::BadReply {
            what,
            reason: format!("no {LOWEST_TIMESTAMP_METRIC} sample"),
        })
    }

    /// Remote read of `[min_time, max_time]`: hands each series to `on_series` (false stops
    /// the read) as it arrives. Asks for streamed XOR chunks, which Prometheus sends as they
    /// are stored; a Prometheus that only knows SAMPLES gets its samples re-encoded.
    pub async fn read(
        &self,
        min_time: i64,
        max_time: i64,
        matchers: &[Matcher],
        accepted: &[ResponseType],
        on_series: &mut (dyn FnMut(ChunkedSeries) -> bool + Send),
    ) -> Result<(), PrometheusError> {
        let body =
            remote_read::encode_request(remote_read::query(min_time, max_time, matchers), accepted);
        let request = self
            .http
            .post(self.endpoint("api/v1/read"))
            .header(header::CONTENT_ENCODING, "snappy")
            .header(header::CONTENT_TYPE, "application/x-protobuf")
            .header("X-Prometheus-Remote-Read-Version", "0.1.0")
            .body(body);
        let mut response = self.send(request).await?;
        let streamed = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with(STREAMED_CONTENT_TYPE));
        if !streamed {
            let body = response.bytes().await.map_err(|e| self.unavailable(e))?;
            for series in remote_read::decode_samples_reply(&body)? {
                if !on_series(series) {
                    break;
                }
            }
            return Ok(());
        }
        let mut frames = FrameDecoder::default();
        while let Some(piece) = response.chunk().await.map_err(|e| self.unavailable(e))? {
            frames.push(&piece);
            while let Some(frame) = frames.next_frame()? {
                for series in frame.chunked_series {
                    if !on_series(series) {
                        return Ok(());
                    }
                }
            }
        }
        Ok(frames.finish()?)
    }

    /// `/api/v1/labels`: label names of the series matching `matchers` (all without).
    pub async fn label_names(
        &self,
        matchers: &[Matcher],
        min_time: i64,
        max_time: i64,
    ) -> Result<WithWarnings<Vec<String>>, PrometheusError> {
        let url = with_range(self.endpoint("api/v1/labels"), matchers, min_time, max_time);
        self.api_get("/api/v1/labels", url).await
    }

    /// `/api/v1/label/<name>/values`.
    pub async fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        min_time: i64,
        max_time: i64,
    ) -> Result<WithWarnings<Vec<String>>, PrometheusError> {
        let mut url = self.endpoint("api/v1/label");
        url.path_segments_mut()
            .expect("http URLs have path segments")
            .push(name)
            .push("values");
        let url = with_range(url, matchers, min_time, max_time);
        self.api_get("/api/v1/label/<name>/values", url).await
    }

    /// `/api/v1/series`: the label sets of the series matching `matchers` (at least one).
    pub async fn series(
        &self,
        matchers: &[Matcher],
        min_time: i64,
        max_time: i64,
    ) -> Result<WithWarnings<Vec<Labels>>, PrometheusError> {
        let url = with_range(self.endpoint("api/v1/series"), matchers, min_time, max_time);
        let (sets, warnings): WithWarnings<Vec<BTreeMap<String, String>>> =
            self.api_get("/api/v1/series", url).await?;
        Ok((sets.into_iter().map(Labels::from_pairs).collect(), warnings))
    }
}

/// Adds `match[]` (one selector of all matchers, when there are any), `start` and `end`.
fn with_range(mut url: Url, matchers: &[Matcher], min_time: i64, max_time: i64) -> Url {
    {
        let mut q = url.query_pairs_mut();
        if !matchers.is_empty() {
            let selector: Vec<String> = matchers.iter().map(|m| m.to_string()).collect();
            q.append_pair("match[]", &format!("{{{}}}", selector.join(",")));
        }
        q.append_pair("start", &api_time(min_time));
        q.append_pair("end", &api_time(max_time));
    }
    url
}

/// Milliseconds as the API's decimal seconds, clamped to the range it accepts.
fn api_time(ms: i64) -> String {
    let ms = ms.clamp(API_MIN_MS, API_MAX_MS);
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// The value of the lowest-timestamp gauge in a Prometheus text exposition, in ms.
fn parse_lowest_timestamp(text: &str) -> Option<i64> {
    text.lines()
        .filter_map(|l| l.strip_prefix(LOWEST_TIMESTAMP_METRIC))
        .find_map(|rest| rest.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map(|seconds| (seconds * 1000.0).floor() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MatchKind;

    #[test]
    fn api_times_are_decimal_seconds_within_range() {
        assert_eq!(api_time(1_500), "1.500");
        assert_eq!(api_time(-1), "-1.999");
        assert_eq!(api_time(i64::MIN), "-62135596800.000");
        assert_eq!(api_time(i64::MAX), "253402300799.000");
    }

    #[test]
    fn selectors_quote_like_promql() {
        let m = [
            Matcher::new(MatchKind::Equal, "__name__", "up").unwrap(),
            Matcher::new(MatchKind::Regex, "path", "a\"b\n.*").unwrap(),
        ];
        let url = with_range(Url::parse("http://p/api/v1/series").unwrap(), &m, 0, 1000);
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(
            pairs[0],
            (
                "match[]".into(),
                r#"{__name__="up",path=~"a\"b\n.*"}"#.into()
            )
        );
        assert_eq!(pairs[2], ("end".into(), "1.000".into()));
    }

    #[test]
    fn lowest_timestamp_from_metrics_text() {
        let text = "# HELP prometheus_tsdb_lowest_timestamp_seconds x\n\
                    prometheus_tsdb_lowest_timestamp 1767225600000\n\
                    prometheus_tsdb_lowest_timestamp_seconds 1.7672256e+09\n";
        assert_eq!(parse_lowest_timestamp(text), Some(1_767_225_600_000));
        assert_eq!(parse_lowest_timestamp("up 1\n"), None);
    }
}
