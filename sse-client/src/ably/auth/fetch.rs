//! The token source's requests: the auth URL (GET or POST), the
//! `requestToken` exchange, and reading a bounded error body
//! (`docs/protocol.md#authurl-requests`,
//! `docs/protocol.md#exchanging-a-tokenrequest`).

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, Url};
use shared::{TokenDetails, TokenRequest, codes};

use super::reply::{
    MAX_TOKEN_LEN, auth_failed, check_token_string, error_info_from_parts, fallback_error,
    merge_params, reported_error, token_reply_from_json,
};
use super::{AuthMethod, AuthUrl, TokenReply};
use crate::error::{Error, Result};

/// The most of an error body read when a request fails.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// GETs or POSTs the auth URL and reads the reply by its `Content-Type`
/// (`docs/protocol.md#authurl-responses`).
pub(super) async fn fetch_auth_url(http: &reqwest::Client, auth: &AuthUrl) -> Result<TokenReply> {
    let mut url = auth.url.clone();
    let mut request = match auth.method {
        AuthMethod::Get => {
            if !auth.params.is_empty() {
                let own: Vec<(String, String)> = url.query_pairs().into_owned().collect();
                let query = merge_params(own.iter().chain(&auth.params));
                url.set_query(None);
                url.query_pairs_mut().extend_pairs(&query);
            }
            http.request(Method::GET, url)
        }
        // The URL keeps its own query; the parameters go in the body.
        AuthMethod::Post => http
            .request(Method::POST, url)
            .form(&merge_params(&auth.params)),
    };
    request = request
        .headers(auth.headers.clone())
        .header(ACCEPT, "application/json, text/plain");
    let response = request.send().await.map_err(Error::transport)?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).to_ascii_lowercase());
    if status >= 300 {
        return Err(auth_url_error(response).await);
    }
    let body = read_limited(response, MAX_TOKEN_LEN + 1024).await?;
    let Some(content_type) = content_type else {
        return Err(auth_failed(
            "authUrl response is missing a Content-Type header",
        ));
    };
    if content_type.contains("application/json") {
        let value: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|err| auth_failed(format!("authUrl returned invalid JSON: {err}")))?;
        return token_reply_from_json(value);
    }
    let is_jwt = content_type.contains("application/jwt");
    if is_jwt || content_type.contains("text/plain") {
        let token = String::from_utf8(body.to_vec())
            .map_err(|_| auth_failed("authUrl returned a token that is not UTF-8"))?;
        let token = token.trim().to_owned();
        check_token_string(&token, is_jwt)?;
        return Ok(TokenReply::Token(token));
    }
    Err(auth_failed(format!(
        "authUrl returned an unsupported Content-Type {content_type:?}"
    )))
}

/// The error an auth URL answered with (`docs/protocol.md#authurl-responses`):
/// its `{"error": …}` envelope only when the `Content-Type` is exactly
/// `application/json`, as ably-js reads it; else the `X-Ably-ErrorCode` header;
/// else 40170 (5xx: the status × 100, retried) naming the status.
async fn auth_url_error(response: reqwest::Response) -> Error {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let exactly_json = headers
        .get(CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"application/json"));
    let body = if exactly_json {
        read_limited(response, MAX_ERROR_BODY)
            .await
            .unwrap_or_default()
    } else {
        bytes::Bytes::new()
    };
    let info = reported_error(status, &headers, &body).unwrap_or_else(|| {
        fallback_error(
            status,
            codes::AUTH_CALLBACK_FAILED,
            format!("authUrl responded with HTTP {status}"),
        )
    });
    Error::Ably(info)
}

/// Exchanges a TokenRequest at `POST {endpoint}/keys/{keyName}/requestToken`
/// (`docs/protocol.md#exchanging-a-tokenrequest`): no Authorization, the MAC
/// authenticates it; any 2xx is success.
pub(super) async fn request_token(
    http: &reqwest::Client,
    endpoint: &Url,
    request: &TokenRequest,
) -> Result<TokenDetails> {
    let mut url = endpoint.clone();
    {
        let mut segments = url
            .path_segments_mut()
            .map_err(|()| Error::Config("endpoint cannot be a base URL".into()))?;
        segments
            .pop_if_empty()
            .extend(["keys", &request.key_name, "requestToken"]);
    }
    let response = http
        .post(url)
        .header(ACCEPT, "application/json")
        .json(request)
        .send()
        .await
        .map_err(Error::transport)?;
    if !response.status().is_success() {
        return Err(error_from_response(response, codes::AUTH_CALLBACK_FAILED).await);
    }
    let body = read_limited(response, MAX_ERROR_BODY).await?;
    serde_json::from_slice(&body)
        .map_err(|err| auth_failed(format!("requestToken returned invalid TokenDetails: {err}")))
}

/// Reads at most `limit` bytes of a body.
async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<bytes::Bytes> {
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(Error::transport)? {
        let room = limit.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    Ok(body.freeze())
}

/// The Ably error an HTTP error response carries
/// (`docs/protocol.md#the-error-envelope`,
/// `docs/protocol.md#authurl-responses`): the `{"error": …}` envelope, else the
/// `X-Ably-ErrorCode` header, else one made up from the status (`fallback_code`
/// for 4xx, the status × 100 for 5xx, so that they stay retryable).
pub(crate) async fn error_from_response(response: reqwest::Response, fallback_code: u32) -> Error {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = read_limited(response, MAX_ERROR_BODY)
        .await
        .unwrap_or_default();
    Error::Ably(error_info_from_parts(
        status,
        &headers,
        &body,
        fallback_code,
    ))
}
