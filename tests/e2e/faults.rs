//! Flow 3: a long run with short-lived tokens and injected faults while
//! messages are published over REST at a steady rate. Every message arrives
//! exactly once and in order, and the subscription reports exactly the
//! renewals, disconnections, backoff delays and reconnections the faults
//! imply; the auth server counts exactly the token fetches they imply.
//!
//! How the run stays exact: tokens live 3 s, and the client renews one at
//! half its remaining life, so a proactive renewal comes every 1 to 1.5 s.
//! Each fault is injected right after a proactive renewal's new stream has
//! delivered a message, so it never races a renewal (which is at least a
//! second away, while a fault is handled in milliseconds) and the backoff
//! counters have been reset by that message. Then the faults alone decide
//! what the subscription reports.
//!
//! The default run takes about ten seconds; the soak repeats the faults for
//! about a minute: `cargo test -p integration-tests --test e2e -- --ignored`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use integration_tests::{
    TestEnv, TokenEndpoint, connected, eventually, next_message, next_update, text, within_named,
};
use mock_ably::{FailNext, FailTarget, MockAbly};
use shared::{ErrorInfo, codes};
use sse_client::ably::{StateChange, SubscribeOptions, Subscription, Update};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const CHANNEL: &str = "chat:soak";

/// The tokens' TTL. A JWT's `exp` is in whole seconds, so a token lives
/// between `TOKEN_TTL - 1 s` and `TOKEN_TTL` once issued.
const TOKEN_TTL: Duration = Duration::from_secs(3);

/// The steady publishing rate: one message every 25 ms.
const PUBLISH_EVERY: Duration = Duration::from_millis(25);

/// The test client's backoff (`TestEnv::client`): 10 ms, doubling, no jitter.
const BACKOFF: Duration = Duration::from_millis(10);

/// A 503 as Ably answers an overloaded request.
const UNAVAILABLE: u32 = 50300;

/// What the mock is made to do.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Cut the stream mid-body, as a network failure would.
    Drop,
    /// Revoke every credential: a 40142 `error` event ends the stream.
    Revoke,
    /// Cut the stream, then answer the next `n` connection attempts 503.
    Unavailable(u32),
    /// Cut the stream, then refuse the reconnection with a 40142 envelope.
    RejectReconnect,
}

/// A state change, reduced to what the faults decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Connected,
    /// Disconnected by an Ably error with this code, or (`None`) by the
    /// stream ending; then the wait before the next attempt.
    Disconnected(Option<u32>, Duration),
    Renewed {
        proactive: bool,
    },
    ContinuityLost,
}

impl Seen {
    fn of(state: &StateChange) -> Self {
        match state {
            StateChange::Connected => Seen::Connected,
            StateChange::Disconnected { reason, retry_in } => {
                let code = reason.error_info().map(|info| info.code);
                if code.is_none() {
                    assert!(
                        reason.is_retryable(),
                        "a cut stream is a retryable failure: {reason:?}"
                    );
                }
                Seen::Disconnected(code, *retry_in)
            }
            StateChange::TokenRenewed { proactive } => Seen::Renewed {
                proactive: *proactive,
            },
            StateChange::ContinuityLost => Seen::ContinuityLost,
            other => panic!("a state change this suite does not know: {other:?}"),
        }
    }
}

impl Fault {
    fn inject(self, mock: &MockAbly) {
        let fail_streams = |count, error| {
            mock.fail_next(FailNext::new(error).count(count).target(FailTarget::Stream));
        };
        match self {
            Fault::Drop => mock.drop_streams(),
            Fault::Revoke => mock.expire_credentials(),
            Fault::Unavailable(n) => {
                // Queued before the cut, so the reconnection meets them.
                fail_streams(
                    n,
                    ErrorInfo::new(UNAVAILABLE, 503, "Service unavailable (injected)"),
                );
                mock.drop_streams();
            }
            Fault::RejectReconnect => {
                fail_streams(
                    1,
                    ErrorInfo::from_code(codes::TOKEN_EXPIRED, "Token expired"),
                );
                mock.drop_streams();
            }
        }
    }

    /// What the subscription must report: a cut stream is retried after
    /// the backoff (10 ms, then 20, 40 ... per failure in a row); a token
    /// error is answered at once with a new token; every fault ends with
    /// one new stream.
    fn expected(self) -> Vec<Seen> {
        let cut = Seen::Disconnected(None, BACKOFF);
        let token_error = Seen::Disconnected(Some(codes::TOKEN_EXPIRED), Duration::ZERO);
        let renewed = Seen::Renewed { proactive: false };
        let mut seen = match self {
            Fault::Drop => vec![cut],
            Fault::Revoke => vec![token_error, renewed],
            Fault::Unavailable(n) => std::iter::once(cut)
                .chain((1..=n).map(|failure| {
                    Seen::Disconnected(Some(UNAVAILABLE), BACKOFF * 2_u32.pow(failure))
                }))
                .collect(),
            Fault::RejectReconnect => vec![cut, token_error, renewed],
        };
        seen.push(Seen::Connected);
        seen
    }
}

/// The subscription and everything it has reported so far.
struct Run {
    sub: Subscription,
    received: Vec<String>,
    seen: Vec<(Instant, Seen)>,
}

impl Run {
    /// Reads until the state changes in `expected` have come, in that
    /// order and with nothing else between them; messages may come at any
    /// point and are recorded.
    async fn expect(&mut self, expected: &[Seen]) {
        for (index, want) in expected.iter().enumerate() {
            let got = self.next_state().await;
            assert_eq!(
                got,
                *want,
                "state change {index} of {expected:?}; everything so far: {:?}",
                self.states()
            );
        }
    }

    /// Reads until the next message; no state change may come first.
    async fn message(&mut self) {
        let count = self.received.len();
        while self.received.len() == count {
            let state = self.next_update().await;
            assert!(
                state.is_none(),
                "expected a message, got {state:?}; everything so far: {:?}",
                self.states()
            );
        }
    }

    async fn next_state(&mut self) -> Seen {
        loop {
            if let Some(state) = self.next_update().await {
                return state;
            }
        }
    }

    /// One update: a message is recorded (`None`), a state change logged
    /// and returned.
    async fn next_update(&mut self) -> Option<Seen> {
        match next_update(&mut self.sub).await {
            Ok(Update::Message(message)) => {
                assert_eq!(message.channel.as_deref(), Some(CHANNEL));
                self.received.push(text(&message));
                None
            }
            Ok(Update::State(state)) => {
                let seen = Seen::of(&state);
                self.seen.push((Instant::now(), seen));
                Some(seen)
            }
            Ok(other) => panic!("an update this suite does not know: {other:?}"),
            Err(err) => panic!(
                "the subscription failed: {err:?}; everything so far: {:?}",
                self.states()
            ),
        }
    }

    fn states(&self) -> Vec<Seen> {
        self.seen.iter().map(|(_, seen)| *seen).collect()
    }

    /// How many state changes so far were `wanted`.
    fn count(&self, wanted: Seen) -> usize {
        self.count_where(|seen| *seen == wanted)
    }

    /// How many state changes so far satisfy `wanted`.
    fn count_where(&self, wanted: impl Fn(&Seen) -> bool) -> usize {
        self.seen.iter().filter(|(_, seen)| wanted(seen)).count()
    }
}

/// Publishes `0`, `1`, `2` ... over REST, one every [`PUBLISH_EVERY`],
/// until told to stop; returns how many it published.
fn publish_steadily(env: Arc<TestEnv>) -> (oneshot::Sender<()>, JoinHandle<usize>) {
    let (stop, mut stopped) = oneshot::channel::<()>();
    let publisher = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(PUBLISH_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut published = 0_usize;
        loop {
            tokio::select! {
                _ = &mut stopped => return published,
                _ = ticks.tick() => {
                    env.publish(CHANNEL, published.to_string()).await;
                    published += 1;
                }
            }
        }
    });
    (stop, publisher)
}

/// The run: connect, then for each fault wait for a proactive renewal and a
/// message on its new stream, inject the fault and check its consequences;
/// then stop publishing and check every message and every count.
async fn run_with_faults(faults: &[Fault]) {
    // The server's default TTL (`AUTH_TOKEN_TTL`): the client asks for none.
    let env = Arc::new(TestEnv::builder().token_ttl(TOKEN_TTL).start().await);
    let login = env.login("sam", &[]);
    let mut run = Run {
        sub: env
            .client(&login)
            .subscribe(SubscribeOptions::new([CHANNEL])),
        received: Vec::new(),
        seen: Vec::new(),
    };
    run.expect(&[Seen::Connected]).await;
    let (stop, publisher) = publish_steadily(Arc::clone(&env));

    for &fault in faults {
        run.expect(&[Seen::Renewed { proactive: true }, Seen::Connected])
            .await;
        run.message().await;
        fault.inject(env.mock());
        run.expect(&fault.expected()).await;
    }
    // No stream was left behind by the switches and faults
    // (`docs/protocol.md#the-sse-client-algorithm`: never two at once). The
    // mock notices a closed socket when it next writes to it, which the steady
    // publishing makes happen soon.
    eventually("the mock to count one open stream", || {
        env.mock().stats().open_streams == 1
    })
    .await;
    stop.send(()).expect("the publisher is running");
    let published = within_named("the publisher to stop", publisher)
        .await
        .expect("the publisher did not panic");
    // The last messages: only a proactive renewal may come meanwhile, if
    // reading them takes over a second.
    while run.received.len() < published {
        match run.next_update().await {
            None | Some(Seen::Renewed { proactive: true } | Seen::Connected) => {}
            Some(other) => panic!("{other:?} after the faults; {:?}", run.states()),
        }
    }

    // Every message once, in order.
    let expected: Vec<String> = (0..published).map(|n| n.to_string()).collect();
    assert_eq!(run.received, expected);
    assert!(
        published >= faults.len() * 30,
        "the publisher kept its rate: {published} messages"
    );

    // Exactly the renewals the faults imply: one proactive renewal before
    // each fault (and possibly one while the last messages were read), one
    // reactive renewal per rejected token.
    let proactive = run.count(Seen::Renewed { proactive: true });
    let tail = proactive - faults.len();
    assert!(
        tail <= 1,
        "{proactive} proactive renewals: {:?}",
        run.states()
    );
    let reactive = faults
        .iter()
        .filter(|f| matches!(f, Fault::Revoke | Fault::RejectReconnect))
        .count();
    assert_eq!(run.count(Seen::Renewed { proactive: false }), reactive);
    assert_eq!(run.count(Seen::ContinuityLost), 0);
    // One stream per fault and per proactive switch, after the first.
    assert_eq!(run.count(Seen::Connected), 1 + faults.len() + proactive);
    let disconnections = faults
        .iter()
        .flat_map(|fault| fault.expected())
        .filter(|seen| matches!(seen, Seen::Disconnected(..)))
        .count();
    assert_eq!(
        run.count_where(|seen| matches!(seen, Seen::Disconnected(..))),
        disconnections
    );

    // The auth server saw exactly one request per token: the first and one
    // per renewal.
    let metrics = env.auth_metrics().await;
    let fetches = 1 + proactive + reactive;
    assert_eq!(metrics.issued(TokenEndpoint::Jwt), fetches as u64);
    assert_eq!(metrics.issued_total(), fetches as u64);
    assert_eq!(metrics.refusals_total(), 0);

    // Proactive renewals are spaced by the tokens' life: the client renews
    // at half a token's remaining life, and a JWT lives more than
    // `TOKEN_TTL - 1 s` (its `exp` is in whole seconds), so two renewals
    // are at least a second apart (a fault in between only delays the
    // next); and a renewal always comes before the token it replaces
    // expires, so never more than `TOKEN_TTL` apart. The floor allows for
    // the wall clock and the timer not ticking together.
    let renewals: Vec<Instant> = run
        .seen
        .iter()
        .filter(|(_, seen)| *seen == Seen::Renewed { proactive: true })
        .map(|(at, _)| *at)
        .collect();
    let floor = (TOKEN_TTL - Duration::from_secs(1)) / 2 - Duration::from_millis(50);
    for pair in renewals.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            (floor..TOKEN_TTL).contains(&gap),
            "proactive renewals {gap:?} apart"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_short_tokens_and_faults_delivers_every_message_once_in_order() {
    run_with_faults(&[
        Fault::Drop,
        Fault::Revoke,
        Fault::Unavailable(2),
        Fault::RejectReconnect,
        Fault::Drop,
        Fault::Unavailable(1),
        Fault::Revoke,
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a soak of about a minute: run with -- --ignored"]
async fn a_minute_of_short_tokens_and_faults_delivers_every_message_once_in_order() {
    let faults = [
        Fault::Drop,
        Fault::Revoke,
        Fault::Unavailable(3),
        Fault::RejectReconnect,
        Fault::Unavailable(1),
    ];
    run_with_faults(&faults.repeat(9)).await;
}

/// Ably answers 503 while a token is being issued: behind the auth server
/// (`/api/ably-token`, which answers 502) or at the client's own exchange of
/// a TokenRequest. Either is a retryable failure: backoff, then a new
/// attempt that fetches a new credential, until one is issued.
#[tokio::test]
async fn ably_failing_to_issue_a_token_is_retried_with_backoff() {
    for (endpoint, code) in [
        (TokenEndpoint::TokenDetails, codes::INTERNAL_ERROR),
        (TokenEndpoint::TokenRequest, UNAVAILABLE),
    ] {
        let env = TestEnv::start().await;
        env.mock().fail_next(
            FailNext::new(ErrorInfo::new(
                UNAVAILABLE,
                503,
                "Service unavailable (injected)",
            ))
            .count(2)
            .target(FailTarget::Rest),
        );
        let mut sub = env
            .client(&env.login("sam", &[]).endpoint(endpoint))
            .subscribe(SubscribeOptions::new([CHANNEL]));

        let before = connected(&mut sub).await;

        let before: Vec<Seen> = before.iter().map(Seen::of).collect();
        assert_eq!(
            before,
            [
                Seen::Disconnected(Some(code), BACKOFF),
                Seen::Disconnected(Some(code), BACKOFF * 2),
            ],
            "{endpoint:?}"
        );
        env.publish(CHANNEL, "through").await;
        assert_eq!(text(&next_message(&mut sub).await.1), "through");
        let metrics = env.auth_metrics().await;
        match endpoint {
            // The auth server asked Ably three times and issued once.
            TokenEndpoint::TokenDetails => {
                assert_eq!(metrics.issued(endpoint), 1);
                assert_eq!(metrics.refusals("unavailable"), 2);
            }
            // A TokenRequest is single-use: each attempt fetched a new one.
            _ => {
                assert_eq!(metrics.issued(endpoint), 3);
                assert_eq!(metrics.refusals_total(), 0);
            }
        }
    }
}
