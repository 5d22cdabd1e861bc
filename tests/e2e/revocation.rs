//! Cutting a user off now: an operator changes the policy, reloads it, and
//! revokes the user through the auth server's `POST /api/revoke`
//! (`docs/protocol.md#token-revocation`). The user's open sse-client
//! stream gets 40141 within_named a second, renews through the auth server at
//! once (a token error, RSA4b), and either comes back under the new policy
//! with nothing lost on a channel it may still read, or, when the auth
//! server now refuses it, ends with that refusal and delivers nothing
//! published after the revocation.

use std::time::{Duration, Instant};

use integration_tests::{TestEnv, connected, final_error, next_update, text};
use serde_json::json;
use shared::codes;
use sse_client::ably::{StateChange, SubscribeOptions, Update};

/// The new policy of the flow where the user comes back: `chat:*` may only
/// be read now (no more publishing, no private channel).
const READ_ONLY: &str = "[default]\n\"chat:*\" = [\"subscribe\"]\n";

/// The new policy of the flow where the user is out: only admins get
/// anything.
const ADMINS_ONLY: &str = "[roles.admin]\n\"*\" = [\"*\"]\n";

/// How soon after the revocation the stream must lose access.
const CUT_OFF_WITHIN: Duration = Duration::from_secs(1);

#[tokio::test]
async fn a_revoked_subscriber_comes_back_under_the_reloaded_policy_and_loses_no_message() {
    let env = TestEnv::start().await;
    let login = env.login("alice", &[]);
    let mut sub = env
        .client(&login)
        .subscribe(SubscribeOptions::new(["chat:lobby"]));
    connected(&mut sub).await;
    env.publish("chat:lobby", "before").await;
    let before = next_update(&mut sub).await;
    assert!(
        matches!(&before, Ok(Update::Message(m)) if text(m) == "before"),
        "{before:?}"
    );
    assert!(
        env.publish_as(&login, "chat:lobby", json!({"data": "mine"}))
            .await
            .is_ok(),
        "the first policy lets alice publish"
    );
    let mine = next_update(&mut sub).await;
    assert!(
        matches!(&mine, Ok(Update::Message(m)) if text(m) == "mine"),
        "{mine:?}"
    );

    env.change_policy(READ_ONLY);
    let revoked_at = Instant::now();
    let result = env.revoke(json!({"clientId": "alice"})).await;
    assert_eq!(result["successCount"], 1, "{result}");
    env.publish("chat:lobby", "during").await;

    // The stream is cut with 40141 and renewed at once; "during" arrives,
    // whether before the cut or after the resume, exactly once.
    let mut cut_after = None;
    let mut renewed = false;
    let mut reconnected = false;
    let mut received = Vec::new();
    while !(reconnected && received.contains(&"during".to_owned())) {
        match next_update(&mut sub).await {
            Ok(Update::State(StateChange::Disconnected { reason, retry_in })) => {
                assert_eq!(
                    reason.error_info().map(|info| info.code),
                    Some(codes::TOKEN_REVOKED),
                    "{reason:?}"
                );
                assert!(retry_in.is_zero(), "a token error is renewed at once");
                cut_after.get_or_insert(revoked_at.elapsed());
            }
            Ok(Update::State(StateChange::TokenRenewed { proactive: false })) => renewed = true,
            Ok(Update::State(StateChange::Connected)) => {
                assert!(renewed, "reconnected without a new token");
                reconnected = true;
            }
            Ok(Update::Message(message)) => received.push(text(&message)),
            other => panic!("unexpected {other:?}"),
        }
    }
    let cut_after = cut_after.expect("the stream was cut");
    assert!(cut_after < CUT_OFF_WITHIN, "cut off after {cut_after:?}");
    assert_eq!(received, ["during"]);

    // Back with the new rights: reading still works, publishing does not.
    env.publish("chat:lobby", "after").await;
    let after = next_update(&mut sub).await;
    assert!(
        matches!(&after, Ok(Update::Message(m)) if text(m) == "after"),
        "{after:?}"
    );
    let refused = env
        .publish_as(&login, "chat:lobby", json!({"data": "mine"}))
        .await
        .expect_err("the new policy lets alice only read");
    assert_eq!(refused.code, codes::OPERATION_NOT_PERMITTED, "{refused:?}");
}

#[tokio::test]
async fn a_revoked_subscriber_the_reloaded_policy_refuses_ends_with_that_refusal_and_nothing_after()
{
    let env = TestEnv::start().await;
    let mut sub = env
        .client_for("bob")
        .subscribe(SubscribeOptions::new(["private:bob"]));
    connected(&mut sub).await;

    env.change_policy(ADMINS_ONLY);
    let revoked_at = Instant::now();
    env.revoke(json!({"clientId": "bob"})).await;
    env.publish("private:bob", "after the revocation").await;

    let (states, err) = final_error(&mut sub).await;
    let ended_after = revoked_at.elapsed();
    match states.as_slice() {
        [StateChange::Disconnected { reason, .. }] => assert_eq!(
            reason.error_info().map(|info| info.code),
            Some(codes::TOKEN_REVOKED),
            "{reason:?}"
        ),
        other => panic!("expected one 40141 disconnection, got {other:?}"),
    }
    let info = err.error_info().expect("the auth server's refusal");
    assert_eq!(
        (info.code, info.status_code),
        (codes::OPERATION_NOT_PERMITTED, 403),
        "{err:?}"
    );
    assert!(ended_after < CUT_OFF_WITHIN, "ended after {ended_after:?}");
}
