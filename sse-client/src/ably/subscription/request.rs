//! The stream request of one attempt:
//! `GET {endpoint}/sse?v=1.2&channels=…&accessToken=…[&lastEvent=…]…`
//! (`docs/protocol.md#stream-parameters`), built from the options, the
//! credential and the resume point the policy chose. No I/O.

use reqwest::Url;
use reqwest::header::{AUTHORIZATION, HeaderMap};

use super::policy::ResumeFrom;
use crate::ably::auth::Credential;
use crate::ably::client::SubscribeOptions;
use crate::sse::Request;

/// The request for the next stream: the token in `accessToken` (an API key
/// in `Authorization: Basic`), the resume point, and the options' `delta`,
/// `enveloped` and `heartbeats`.
pub(super) fn stream_request(
    endpoint: &Url,
    options: &SubscribeOptions,
    credential: &Credential,
    resume: ResumeFrom<'_>,
) -> Request {
    let mut url = endpoint.clone();
    url.path_segments_mut()
        .expect("the endpoint is a base URL (checked in build)")
        .pop_if_empty()
        .push("sse");
    let mut headers = HeaderMap::new();
    {
        let (channels, separator) = options.channels_param();
        let mut query = url.query_pairs_mut();
        query.append_pair("v", "1.2");
        query.append_pair("channels", &channels);
        if let Some(separator) = separator {
            query.append_pair("separator", separator);
        }
        match credential {
            Credential::Token { token, .. } => {
                query.append_pair("accessToken", token);
            }
            Credential::Basic(key) => {
                headers.insert(AUTHORIZATION, Credential::basic_header(key));
            }
        }
        match resume {
            ResumeFrom::Nothing => {}
            ResumeFrom::LastEvent(cursor) => {
                query.append_pair("lastEvent", cursor);
            }
            ResumeFrom::Rewind(rewind) => {
                query.append_pair("rewind", &rewind.to_string());
            }
            ResumeFrom::SecondsSinceConnected(secs) => {
                query.append_pair("rewind", &format!("{secs}s"));
            }
        }
        if options.delta {
            query.append_pair("delta", "vcdiff");
        }
        if !options.enveloped {
            query.append_pair("enveloped", "false");
        }
        if options.heartbeats {
            query.append_pair("heartbeats", "true");
        }
    }
    Request::new(reqwest::Method::GET, url).headers(headers)
}
