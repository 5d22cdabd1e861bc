//! Flow 1: a user logs in with the app's token, gets an Ably JWT from the
//! auth server, subscribes at Ably (the mock) and receives messages
//! published over REST, each with its publisher's clientId; the policy's
//! capability is enforced, so a channel outside it is refused with 40160.
//!
//! The scenarios take the token endpoint as a parameter: flow 2
//! (`token_kinds`) runs them through TokenRequests and TokenDetails.

use integration_tests::{TestEnv, TokenEndpoint, connected, final_error, next_message, text};
use serde_json::json;
use shared::codes;
use sse_client::ably::SubscribeOptions;

/// alice subscribes through `endpoint`; the backend publishes with the key
/// (no clientId), bob and alice with their own tokens (clientIds `bob` and
/// `alice`), and bob may not pass himself off as alice.
pub(crate) async fn messages_arrive_with_their_publishers_client_id(endpoint: TokenEndpoint) {
    let env = TestEnv::start().await;
    let alice = env.login("alice", &[]).endpoint(endpoint);
    let bob = env.login("bob", &[]);
    let mut sub = env
        .client(&alice)
        .subscribe(SubscribeOptions::new(["chat:lobby"]));
    connected(&mut sub).await;
    let metrics = env.auth_metrics().await;
    assert_eq!(metrics.issued(endpoint), 1, "alice's one credential");
    assert_eq!(metrics.issued_total(), 1);

    let backend_id = env.publish("chat:lobby", "welcome, everyone").await;
    let bob_id = env
        .publish_as(
            &bob,
            "chat:lobby",
            json!({"name": "hello", "data": {"from": "bob"}}),
        )
        .await
        .expect("bob may publish in chat:*");
    let alice_id = env
        .publish_as(&alice, "chat:lobby", json!({"data": "hi, I'm alice"}))
        .await
        .expect("alice may publish in chat:*");
    let impostor = env
        .publish_as(
            &bob,
            "chat:lobby",
            json!({"data": "it's me, alice", "clientId": "alice"}),
        )
        .await;

    let (_, backend) = next_message(&mut sub).await;
    let (_, from_bob) = next_message(&mut sub).await;
    assert_eq!(backend.channel.as_deref(), Some("chat:lobby"));
    assert_eq!(text(&backend), "welcome, everyone");
    assert_eq!(backend.message.id.as_deref(), Some(backend_id.as_str()));
    assert_eq!(backend.message.client_id, None, "the key has no clientId");
    assert_eq!(text(&from_bob), r#"{"from":"bob"}"#);
    assert_eq!(from_bob.message.name.as_deref(), Some("hello"));
    assert_eq!(from_bob.message.id.as_deref(), Some(bob_id.as_str()));
    assert_eq!(from_bob.message.client_id.as_deref(), Some("bob"));
    let (_, own) = next_message(&mut sub).await;
    assert_eq!(text(&own), "hi, I'm alice");
    assert_eq!(own.message.id.as_deref(), Some(alice_id.as_str()));
    assert_eq!(
        own.message.client_id.as_deref(),
        Some("alice"),
        "the clientId the auth server put in alice's token"
    );
    let refusal = impostor.expect_err("bob's token is bound to the clientId bob");
    assert_eq!(refusal.code, codes::INCOMPATIBLE_CREDENTIALS);
}

/// alice, through `endpoint`, reads her own private channel; another
/// user's, a channel the policy never mentions, and a mix of allowed and
/// forbidden channels are each refused with 40160, once, with no retry.
pub(crate) async fn channels_outside_the_policy_are_refused_with_40160(endpoint: TokenEndpoint) {
    let env = TestEnv::start().await;
    let client = env.client(&env.login("alice", &[]).endpoint(endpoint));
    let mut own = client.subscribe(SubscribeOptions::new(["private:alice"]));
    connected(&mut own).await;
    env.publish("private:alice", "for alice only").await;
    assert_eq!(text(&next_message(&mut own).await.1), "for alice only");

    let forbidden = [
        vec!["private:bob"],
        vec!["secret:plans"],
        vec!["chat:lobby", "secret:plans"],
    ];
    for channels in &forbidden {
        let mut sub = client.subscribe(SubscribeOptions::new(channels.clone()));

        let (before, err) = final_error(&mut sub).await;

        assert!(before.is_empty(), "{channels:?}: {before:?}");
        let info = err
            .error_info()
            .unwrap_or_else(|| panic!("{channels:?}: not an Ably error: {err:?}"));
        assert_eq!(
            (info.code, info.status_code),
            (codes::OPERATION_NOT_PERMITTED, 401),
            "{channels:?}: {info:?}"
        );
    }
    // One credential per subscription: a refusal is final, not a loop.
    let metrics = env.auth_metrics().await;
    assert_eq!(metrics.issued(endpoint), 1 + forbidden.len() as u64);
    assert_eq!(metrics.issued_total(), 1 + forbidden.len() as u64);
}

#[tokio::test]
async fn a_logged_in_user_receives_rest_messages_with_their_publishers_client_id() {
    messages_arrive_with_their_publishers_client_id(TokenEndpoint::Jwt).await;
}

#[tokio::test]
async fn a_channel_outside_the_policy_is_refused_with_40160() {
    channels_outside_the_policy_are_refused_with_40160(TokenEndpoint::Jwt).await;
}

#[tokio::test]
async fn a_role_in_the_app_token_widens_the_capability() {
    let env = TestEnv::start().await;
    let admin = env.client(&env.login("carol", &["admin"]));
    let mut sub = admin.subscribe(SubscribeOptions::new(["secret:plans"]));
    connected(&mut sub).await;

    env.publish("secret:plans", "for admins").await;

    assert_eq!(text(&next_message(&mut sub).await.1), "for admins");
}
