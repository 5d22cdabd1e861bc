//! Realtime AUTH and token lifecycle: renewing in-band, a capability that
//! narrows or grows, expiry while connected, and the mock's auth controls.

use std::time::Duration;

use mock_ably::MockAbly;
use serde_json::json;
use shared::TokenParams;
use shared::protocol::{Action, AuthDetails, Format, ProtocolMessage};

use crate::helpers::{KEY, jwt, spawn, with, within};
use crate::ws::{Client, FORMATS, format_param, ids, publish_frame};

#[tokio::test]
async fn auth_with_a_new_token_keeps_the_connection_and_another_client_id_fails_it() {
    let app = spawn().await;
    for format in FORMATS {
        let first = jwt(&app.mock, r#"{"*":["*"]}"#, Some("alice"), 3600);
        let (mut client, connected) = Client::with_token(&app.mock, &first, format).await;

        let mut auth = ProtocolMessage::new(Action::AUTH);
        auth.auth = Some(AuthDetails::new(jwt(
            &app.mock,
            r#"{"*":["subscribe"]}"#,
            Some("alice"),
            7200,
        )));
        client.send(&auth).await;
        let renewed = client.expect(Action::CONNECTED).await;
        assert_eq!(ids(&renewed), ids(&connected));
        assert_eq!(
            renewed.connection_details.unwrap().client_id.as_deref(),
            Some("alice")
        );

        auth.auth = Some(AuthDetails::new(jwt(
            &app.mock,
            r#"{"*":["*"]}"#,
            Some("bob"),
            3600,
        )));
        client.send(&auth).await;
        let error = client.expect(Action::ERROR).await.error.unwrap();
        assert_eq!(error.code, 40102);
        client.expect_close().await;
    }
}

#[tokio::test]
async fn a_token_expiring_while_connected_gets_disconnected_40142() {
    let app = spawn().await;
    for format in FORMATS {
        let token = jwt(&app.mock, r#"{"*":["*"]}"#, None, 60);
        let (mut client, _) = Client::with_token(&app.mock, &token, format).await;

        app.mock.advance_clock(Duration::from_secs(61));

        let error = client.expect(Action::DISCONNECTED).await.error.unwrap();
        assert_eq!(error.code, 40142);
        client.expect_close().await;
    }
}

#[tokio::test]
async fn expire_credentials_disconnects_token_connections_but_not_key_ones() {
    let app = spawn().await;
    let token = jwt(&app.mock, r#"{"*":["*"]}"#, None, 3600);
    let (mut on_token, _) = Client::with_token(&app.mock, &token, Format::Msgpack).await;
    let (mut on_key, _) = Client::connected(&app.mock, "", Format::Msgpack).await;

    app.mock.expire_credentials();

    let error = on_token.expect(Action::DISCONNECTED).await.error.unwrap();
    assert_eq!(error.code, 40142);
    on_token.expect_close().await;
    let mut ping = ProtocolMessage::new(Action::HEARTBEAT);
    ping.id = Some("still-here".into());
    on_key.send(&ping).await;
    assert_eq!(
        on_key.expect(Action::HEARTBEAT).await.id.as_deref(),
        Some("still-here")
    );
}

#[tokio::test]
async fn auth_that_narrows_the_capability_fails_the_channels_it_no_longer_allows() {
    let app = spawn().await;
    let token = jwt(&app.mock, r#"{"*":["*"]}"#, Some("fay"), 3600);
    let (mut client, _) = Client::with_token(&app.mock, &token, Format::Json).await;
    client.attach("keep").await;
    client.attach("lose").await;

    let mut auth = ProtocolMessage::new(Action::AUTH);
    auth.auth = Some(AuthDetails::new(jwt(
        &app.mock,
        r#"{"keep":["subscribe"]}"#,
        Some("fay"),
        3600,
    )));
    client.send(&auth).await;

    client.expect(Action::CONNECTED).await;
    let revoked = client.expect(Action::ERROR).await;
    assert_eq!(revoked.channel.as_deref(), Some("lose"));
    assert_eq!(revoked.error.unwrap().code, 40160);
    app.mock.publish_data("lose", "", "not for fay");
    app.mock.publish_data("keep", "", "for fay");
    let frame = client.expect(Action::MESSAGE).await;
    assert_eq!(frame.channel.as_deref(), Some("keep"));
}

#[tokio::test]
async fn auth_is_requested_ahead_of_expiry_and_a_renewal_keeps_the_connection() {
    let app = with(
        MockAbly::builder()
            .key(KEY)
            .auth_lead(Duration::from_secs(30)),
    )
    .await;
    for format in FORMATS {
        let token = jwt(&app.mock, r#"{"*":["*"]}"#, Some("gil"), 600);
        let (mut client, connected) = Client::with_token(&app.mock, &token, format).await;

        // 30 s before expiry: AUTH, once.
        app.mock.advance_clock(Duration::from_secs(569));
        client.nothing_queued("too-early").await;
        app.mock.advance_clock(Duration::from_secs(2));
        let request = client.expect(Action::AUTH).await;
        assert_eq!(request.auth, None);

        let mut auth = ProtocolMessage::new(Action::AUTH);
        auth.auth = Some(AuthDetails::new(jwt(
            &app.mock,
            r#"{"*":["*"]}"#,
            Some("gil"),
            600,
        )));
        client.send(&auth).await;
        assert_eq!(
            ids(&client.expect(Action::CONNECTED).await),
            ids(&connected)
        );
        // The old token's expiry no longer applies.
        app.mock.advance_clock(Duration::from_secs(60));
        client.nothing_queued("renewed").await;
    }
}

#[tokio::test]
async fn a_token_shorter_than_the_auth_lead_gets_no_auth_and_just_expires() {
    // The default lead is 30 s; this token lives 10 s.
    let app = spawn().await;
    let token = jwt(&app.mock, r#"{"*":["*"]}"#, None, 10);
    let (mut client, _) = Client::with_token(&app.mock, &token, Format::Json).await;

    app.mock.advance_clock(Duration::from_secs(9));
    client.nothing_queued("no-auth-before-expiry").await;
    // Once more: by now the connection has surely handled the clock move
    // (half the token's life, when the mock used to ask, is long past).
    client.nothing_queued("still-no-auth").await;
    app.mock.advance_clock(Duration::from_secs(2));

    // The next frame is the expiry, with no AUTH before it.
    let error = client.expect(Action::DISCONNECTED).await.error.unwrap();
    assert_eq!(error.code, 40142);
    client.expect_close().await;
}

#[tokio::test]
async fn force_auth_asks_token_connections_to_renew_and_not_key_ones() {
    let app = spawn().await;
    let token = jwt(&app.mock, r#"{"*":["*"]}"#, None, 3600);
    let (mut on_token, _) = Client::with_token(&app.mock, &token, Format::Msgpack).await;
    let (mut on_key, _) = Client::connected(&app.mock, "", Format::Msgpack).await;

    app.mock.force_auth();
    on_token.expect(Action::AUTH).await;
    let response = within(app.client.post(app.url("/_mock/force-auth")).send())
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    on_token.expect(Action::AUTH).await;

    on_key.nothing_queued("no-auth-for-keys").await;
}

#[tokio::test]
async fn a_mode_the_capability_withheld_is_allowed_once_auth_grows_the_capability() {
    let app = spawn().await;
    let token = |capability: &str| {
        app.mock
            .issue_token(TokenParams {
                capability: Some(capability.to_owned()),
                ..TokenParams::default()
            })
            .token
    };
    for format in FORMATS {
        let channel = format!("grow-{}", format_param(format));
        let (mut client, _) =
            Client::with_token(&app.mock, &token(r#"{"*":["subscribe"]}"#), format).await;
        client.attach(&channel).await;
        client
            .send(&publish_frame(&channel, 0, json!([{"data": "x"}])))
            .await;
        let nack = client.expect(Action::NACK).await;
        assert_eq!(nack.error.unwrap().code, 40160);

        let mut auth = ProtocolMessage::new(Action::AUTH);
        auth.auth = Some(AuthDetails::new(token(r#"{"*":["publish","subscribe"]}"#)));
        client.send(&auth).await;
        client.expect(Action::CONNECTED).await;
        client
            .send(&publish_frame(&channel, 1, json!([{"data": "y"}])))
            .await;
        client.expect(Action::ACK).await;
    }
}
