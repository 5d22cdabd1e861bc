//! Flow 2: flow 1 through the other two endpoints — a TokenRequest the
//! client exchanges at Ably itself, and TokenDetails the auth server fetched
//! from Ably — and, for every kind of credential, renewal before expiry and
//! after a revocation.

use integration_tests::{TestEnv, TokenEndpoint, connected, next_message, text};
use shared::codes;
use sse_client::ably::{StateChange, SubscribeOptions};

use crate::login::{
    channels_outside_the_policy_are_refused_with_40160,
    messages_arrive_with_their_publishers_client_id,
};

#[tokio::test]
async fn a_token_request_login_receives_rest_messages_with_their_publishers_client_id() {
    messages_arrive_with_their_publishers_client_id(TokenEndpoint::TokenRequest).await;
}

#[tokio::test]
async fn a_token_request_login_is_refused_outside_the_policy_with_40160() {
    channels_outside_the_policy_are_refused_with_40160(TokenEndpoint::TokenRequest).await;
}

#[tokio::test]
async fn a_token_details_login_receives_rest_messages_with_their_publishers_client_id() {
    messages_arrive_with_their_publishers_client_id(TokenEndpoint::TokenDetails).await;
}

#[tokio::test]
async fn a_token_details_login_is_refused_outside_the_policy_with_40160() {
    channels_outside_the_policy_are_refused_with_40160(TokenEndpoint::TokenDetails).await;
}

/// A 2 s credential is renewed at about half its life, before Ably would
/// reject it; then a revoked one is renewed on Ably's 40142. Each renewal is
/// one more request to the auth server, and no message is lost.
#[tokio::test]
async fn every_kind_of_credential_is_renewed_before_expiry_and_after_revocation() {
    for endpoint in TokenEndpoint::ALL {
        let env = TestEnv::start().await;
        let login = env
            .login("dana", &[])
            .endpoint(endpoint)
            .param("ttl", "2000");
        let mut sub = env
            .client(&login)
            .subscribe(SubscribeOptions::new(["chat:renewals"]));
        connected(&mut sub).await;

        // Proactive: the switch comes with no rejection before it.
        let before = connected(&mut sub).await;
        assert!(
            matches!(
                before.as_slice(),
                [StateChange::TokenRenewed { proactive: true }]
            ),
            "{endpoint:?}: {before:?}"
        );
        env.publish("chat:renewals", "after the switch").await;
        assert_eq!(text(&next_message(&mut sub).await.1), "after the switch");

        // Reactive: Ably revokes, the stream gets 40142, a new credential
        // is fetched at once; what was published meanwhile still arrives.
        env.mock().expire_credentials();
        env.publish("chat:renewals", "during the revocation").await;
        let (states, during) = next_message(&mut sub).await;
        assert_eq!(text(&during), "during the revocation");
        match states.as_slice() {
            [
                StateChange::Disconnected { reason, retry_in },
                StateChange::TokenRenewed { proactive: false },
                StateChange::Connected,
            ] => {
                assert_eq!(
                    reason.error_info().map(|info| info.code),
                    Some(codes::TOKEN_EXPIRED),
                    "{endpoint:?}"
                );
                assert!(
                    retry_in.is_zero(),
                    "{endpoint:?}: the first renewal is immediate"
                );
            }
            other => panic!("{endpoint:?}: {other:?}"),
        }

        let metrics = env.auth_metrics().await;
        assert_eq!(
            metrics.issued(endpoint),
            3,
            "{endpoint:?}: first, proactive, reactive"
        );
        assert_eq!(metrics.issued_total(), 3, "{endpoint:?}");
    }
}
