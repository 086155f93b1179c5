//! HTTP client used by the CLI's commands; any node can be the target.

use anyhow::Context;
use reqwest::{Client, Response, StatusCode};
use serde::de::DeserializeOwned;

/// Why a client command failed, as its exit status tells it: the node
/// refused (1, like any other failure) or could not be reached (2).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the node at {base}: {detail}")]
    Unreachable { base: String, detail: String },
    #[error("{0}")]
    Refused(String),
}

/// The exit status of a failed client command.
pub fn exit_status(error: &anyhow::Error) -> i32 {
    match error.downcast_ref::<ClientError>() {
        Some(ClientError::Unreachable { .. }) => 2,
        _ => 1,
    }
}

pub struct NodeClient {
    base: String,
    http: Client,
    /// Sent with deploys and name changes.
    token: Option<String>,
}

/// A call's answer as a client sees it.
pub struct CallAnswer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl NodeClient {
    pub fn new(base: &str) -> Self {
        Self { base: base.trim_end_matches('/').to_owned(), http: Client::new(), token: None }
    }

    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    fn authorised(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn deploy(&self, wasm: Vec<u8>, name: Option<&str>) -> anyhow::Result<serde_json::Value> {
        // Refused before uploading when the node says it is too big: the node
        // would stop reading, and the refusal could be lost with the connection.
        let status: serde_json::Value = self.get_json("/status").await?;
        let limit = status["max_module_bytes"].as_u64().unwrap_or(0);
        if limit > 0 && wasm.len() as u64 > limit {
            return Err(ClientError::Refused(format!(
                "the module is {} bytes, over the node's limit of {limit} bytes (nebula node --max-module-bytes)",
                wasm.len()
            ))
            .into());
        }
        let mut request = self.authorised(self.http.post(self.url("/modules")).body(wasm));
        if let Some(name) = name {
            request = request.query(&[("name", name)]);
        }
        json_or_error(self.send(request).await?).await
    }

    pub async fn call(&self, reference: &str, input: Vec<u8>, limits: &[(&str, u64)]) -> anyhow::Result<CallAnswer> {
        let path = format!("/api/{}", urlencode(reference));
        let response = self.send(self.http.post(self.url(&path)).query(limits).body(input)).await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.context("reading the call's answer")?.to_vec();
        Ok(CallAnswer { status, headers, body })
    }

    pub async fn set_name(&self, name: &str, reference: &str) -> anyhow::Result<serde_json::Value> {
        let request = self.authorised(
            self.http
                .put(self.url(&format!("/names/{}", urlencode(name))))
                .json(&serde_json::json!({ "module": reference })),
        );
        json_or_error(self.send(request).await?).await
    }

    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        json_or_error(self.send(self.http.get(self.url(path))).await?).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Response> {
        request.send().await.map_err(|error| {
            let detail = match error.is_connect() {
                true => format!("{error:#}"),
                false => format!("the connection broke before it answered ({error:#})"),
            };
            ClientError::Unreachable { base: self.base.clone(), detail }.into()
        })
    }
}

/// The JSON body of a success, or the node's error message as an error.
async fn json_or_error<T: DeserializeOwned>(response: Response) -> anyhow::Result<T> {
    let status = response.status();
    let body = response.bytes().await.context("reading the node's answer")?;
    if !status.is_success() {
        return Err(ClientError::Refused(error_message(status, &body)).into());
    }
    serde_json::from_slice(&body).context("the node's answer is not the expected JSON")
}

/// The `message` of a JSON error body, or the raw body.
pub fn error_message(status: StatusCode, body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|value| value.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| format!("{status}: {}", String::from_utf8_lossy(body).trim()))
}

/// Percent-encodes one path segment.
fn urlencode(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC).to_string()
}
