//! Flow 4: refusals that must end a subscription rather than loop. An auth
//! server signing with a secret Ably does not know gets every JWT refused
//! with 40144: the client renews a bounded number of times, then stops with
//! Ably's error. A user the auth server does not know, or one who presents
//! no token, is refused at once: the 401 is final, with no retry.

use std::time::Duration;

use integration_tests::{
    Login, TestEnv, TokenEndpoint, WRONG_SECRET_KEY, app_token_signed_with, final_error,
};
use shared::codes;
use sse_client::ably::{StateChange, SubscribeOptions};

/// sse-client's default `max_token_renewals`: token errors answered with a
/// new token before giving up.
const MAX_TOKEN_RENEWALS: u64 = 3;

#[tokio::test]
async fn the_wrong_secret_loop_stops_with_40144_after_a_bounded_number_of_fetches() {
    let env = TestEnv::builder()
        .signing_key(WRONG_SECRET_KEY)
        .start()
        .await;
    let mut sub = env
        .client_for("alice")
        .subscribe(SubscribeOptions::new(["chat:lobby"]));

    let (states, err) = final_error(&mut sub).await;

    let info = err.error_info().expect("Ably's error, not a transport one");
    assert_eq!(
        (info.code, info.status_code),
        (codes::INVALID_JWT, 401),
        "{info:?}"
    );
    // Each rejection is answered with a new token: the first at once, the
    // next after a backoff (10 ms doubling); the fourth rejection ends it.
    // The renewal before that last rejection is not reported, since an
    // `Err` clears what was queued before it.
    let mut rejections = Vec::new();
    let mut renewals = 0;
    for state in &states {
        match state {
            StateChange::Disconnected { reason, retry_in } => {
                assert_eq!(
                    reason.error_info().map(|info| info.code),
                    Some(codes::INVALID_JWT),
                    "{states:?}"
                );
                rejections.push(*retry_in);
            }
            StateChange::TokenRenewed { proactive: false } => renewals += 1,
            other => panic!("unexpected {other:?} in {states:?}"),
        }
    }
    assert_eq!(
        rejections,
        [0, 20, 40].map(Duration::from_millis),
        "{states:?}"
    );
    assert_eq!(renewals, 2, "{states:?}");
    let metrics = env.auth_metrics().await;
    assert_eq!(
        metrics.issued(TokenEndpoint::Jwt),
        1 + MAX_TOKEN_RENEWALS,
        "the first token and one per renewal, then no more"
    );
    assert_eq!(metrics.issued_total(), 1 + MAX_TOKEN_RENEWALS);
    assert_eq!(env.mock().stats().open_streams, 0);
}

#[tokio::test]
async fn an_unknown_user_is_refused_at_once_with_no_retry() {
    let env = TestEnv::start().await;
    let forged = app_token_signed_with("not-the-app-secret", "mallory", &["admin"]);

    for endpoint in TokenEndpoint::ALL {
        let client = env.client(&Login::bearer(forged.as_str()).endpoint(endpoint));
        let mut sub = client.subscribe(SubscribeOptions::new(["chat:lobby"]));

        let (states, err) = final_error(&mut sub).await;

        assert!(states.is_empty(), "{endpoint:?}: {states:?}");
        let info = err.error_info().expect("the auth server's Ably error");
        assert_eq!(
            (info.code, info.status_code),
            (codes::INVALID_CREDENTIALS, 401),
            "{endpoint:?}: {info:?}"
        );
    }
    let metrics = env.auth_metrics().await;
    assert_eq!(
        metrics.refusals("invalid_credentials"),
        3,
        "one request each"
    );
    assert_eq!(metrics.refusals_total(), 3);
    assert_eq!(metrics.issued_total(), 0);
}

#[tokio::test]
async fn a_client_without_an_app_token_is_refused_at_once_with_no_retry() {
    let env = TestEnv::start().await;
    let mut sub = env
        .client(&Login::anonymous())
        .subscribe(SubscribeOptions::new(["chat:lobby"]));

    let (states, err) = final_error(&mut sub).await;

    assert!(states.is_empty(), "{states:?}");
    let info = err.error_info().expect("the auth server's Ably error");
    assert_eq!(
        (info.code, info.status_code),
        (codes::INVALID_CREDENTIALS, 401)
    );
    let metrics = env.auth_metrics().await;
    assert_eq!(metrics.refusals("no_credentials"), 1);
    assert_eq!(metrics.refusals_total(), 1);
    assert_eq!(metrics.issued_total(), 0);
}

#[tokio::test]
async fn a_user_the_policy_grants_nothing_is_refused_with_403_and_no_retry() {
    let env = TestEnv::builder()
        .policy("[roles.staff]\n\"chat:*\" = [\"subscribe\"]\n")
        .start()
        .await;
    let mut sub = env
        .client_for("guest")
        .subscribe(SubscribeOptions::new(["chat:lobby"]));

    let (states, err) = final_error(&mut sub).await;

    assert!(states.is_empty(), "{states:?}");
    let info = err.error_info().expect("the auth server's Ably error");
    assert_eq!(
        (info.code, info.status_code),
        (codes::OPERATION_NOT_PERMITTED, 403)
    );
    let metrics = env.auth_metrics().await;
    assert_eq!(metrics.refusals_total(), 1);
    assert_eq!(metrics.issued_total(), 0);
}
