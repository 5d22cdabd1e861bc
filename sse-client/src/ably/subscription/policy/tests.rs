//! The decisions, called directly: no server, no clock, no waiting.

use std::time::Duration;

use shared::ErrorInfo;
use tokio::time::Instant;

use super::*;

fn settings() -> Settings {
    Settings {
        can_renew: true,
        max_token_renewals: 3,
        reconnect: ReconnectOptions::default()
            .initial_delay(Duration::from_millis(100))
            .max_delay(Duration::from_secs(1))
            .jitter(false),
        resume_window: Duration::from_secs(120),
        renew_before: Duration::from_secs(30),
    }
}

fn ably(code: u32) -> Error {
    Error::Ably(ErrorInfo::from_code(code, format!("error {code}")))
}

fn decode_error() -> Error {
    Error::Decode(shared::Error::InvalidEncoding("bad".into()))
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn every_token_error_renews_at_once_the_first_time_then_with_backoff() {
    let now = Instant::now();
    for code in 40140..40150 {
        let mut policy = Policy::new(settings());

        let decisions: Vec<_> = (0..3)
            .map(|_| policy.on_failure(&ably(code), Some("e1"), now, 0.0))
            .collect();

        assert_eq!(
            decisions,
            [
                Decision::Renew { delay: ms(0) },
                Decision::Renew { delay: ms(200) },
                Decision::Renew { delay: ms(400) },
            ],
            "{code}"
        );
    }
}

#[test]
fn a_revoked_token_is_renewed_like_an_expired_one() {
    let now = Instant::now();
    let mut revoked = Policy::new(settings());
    let mut expired = Policy::new(settings());

    assert_eq!(
        revoked.on_failure(&ably(40141), Some("e1"), now, 0.5),
        expired.on_failure(&ably(40142), Some("e1"), now, 0.5),
    );
    assert_eq!(
        revoked.on_failure(&ably(40141), Some("e1"), now, 0.0),
        Decision::Renew { delay: ms(200) }
    );
}

#[test]
fn token_errors_past_the_renewal_cap_give_up() {
    let now = Instant::now();
    let mut policy = Policy::new(settings());

    let decisions: Vec<_> = (0..4)
        .map(|_| policy.on_failure(&ably(40144), None, now, 0.0))
        .collect();

    assert!(matches!(decisions[2], Decision::Renew { .. }));
    assert_eq!(decisions[3], Decision::GiveUp);
}

#[test]
fn a_token_error_gives_up_at_once_when_the_token_cannot_be_renewed() {
    let mut policy = Policy::new(Settings {
        can_renew: false,
        ..settings()
    });

    assert_eq!(
        policy.on_failure(&ably(40141), Some("e1"), Instant::now(), 0.0),
        Decision::GiveUp
    );
}

#[test]
fn a_message_or_a_heartbeat_resets_the_token_error_count() {
    let now = Instant::now();
    let mut policy = Policy::new(settings());
    for reset in [Policy::on_message, Policy::on_heartbeat] {
        for _ in 0..3 {
            policy.on_failure(&ably(40142), None, now, 0.0);
        }
        reset(&mut policy);

        assert_eq!(
            policy.on_failure(&ably(40142), None, now, 0.0),
            Decision::Renew { delay: ms(0) }
        );
        policy.on_message();
    }
}

#[test]
fn retryable_errors_back_off_doubling_to_the_cap_with_jitter_in_the_upper_half() {
    let now = Instant::now();
    let mut policy = Policy::new(settings());

    let delays: Vec<_> = (0..6)
        .map(|_| policy.on_failure(&Error::StreamEnded, Some("e1"), now, 0.0))
        .collect();

    assert_eq!(
        delays,
        [100, 200, 400, 800, 1000, 1000].map(|n| Decision::Retry { delay: ms(n) })
    );
    let mut jittered = Policy::new(Settings {
        reconnect: settings().reconnect.jitter(true),
        ..settings()
    });
    assert_eq!(
        jittered.on_failure(&ably(50003), None, now, 0.0),
        Decision::Retry { delay: ms(50) }
    );
    assert_eq!(
        jittered.on_failure(&ably(50003), None, now, 0.5),
        Decision::Retry { delay: ms(150) }
    );
}

#[test]
fn retries_stop_after_max_retries_in_a_row_and_a_message_resets_them() {
    let now = Instant::now();
    let mut policy = Policy::new(Settings {
        reconnect: settings().reconnect.max_retries(Some(2)),
        ..settings()
    });

    policy.on_failure(&Error::StreamEnded, None, now, 0.0);
    policy.on_message();
    let decisions: Vec<_> = (0..3)
        .map(|_| policy.on_failure(&Error::StreamEnded, None, now, 0.0))
        .collect();

    assert!(matches!(decisions[1], Decision::Retry { .. }));
    assert_eq!(decisions[2], Decision::Exhausted { attempts: 3 });
}

#[test]
fn other_client_errors_give_up() {
    let now = Instant::now();
    for err in [
        ably(40160),
        ably(40300),
        ably(40400),
        Error::Status { status: 404 },
        Error::ContentType("text/html".into()),
        Error::EventTooLarge { limit: 1 },
    ] {
        let mut policy = Policy::new(settings());

        assert_eq!(
            policy.on_failure(&err, Some("e1"), now, 0.0),
            Decision::GiveUp,
            "{err:?}"
        );
    }
}

#[test]
fn the_third_decode_failure_from_the_same_point_skips_the_message() {
    let now = Instant::now();
    let mut policy = Policy::new(settings());
    policy.on_open(now);

    let decisions: Vec<_> = (0..3)
        .map(|_| policy.on_failure(&decode_error(), Some("e1"), now, 0.0))
        .collect();

    assert_eq!(
        decisions,
        [
            Decision::Retry { delay: ms(100) },
            Decision::Retry { delay: ms(200) },
            Decision::Skip { delay: ms(400) },
        ]
    );
    // Fresh: neither the cursor nor a rewind, until a stream opens.
    assert_eq!(
        policy.resume_from(Some("e1"), Some(&Rewind::Messages(5)), now),
        ResumeFrom::Nothing
    );
    policy.on_open(now);
    assert_eq!(
        policy.resume_from(Some("e9"), None, now),
        ResumeFrom::LastEvent("e9")
    );
}

#[test]
fn decode_failures_from_different_points_are_counted_afresh() {
    let now = Instant::now();
    let mut policy = Policy::new(settings());

    for cursor in ["e1", "e2", "e3", "e4"] {
        let decision = policy.on_failure(&decode_error(), Some(cursor), now, 0.0);
        assert!(matches!(decision, Decision::Retry { .. }), "{decision:?}");
    }
    policy.on_failure(&decode_error(), Some("e4"), now, 0.0);
    assert!(matches!(
        policy.on_failure(&decode_error(), Some("e4"), now, 0.0),
        Decision::Skip { .. }
    ));
}

#[test]
fn the_resume_point_is_dropped_only_past_the_resume_window() {
    let start = Instant::now();
    let mut policy = Policy::new(Settings {
        resume_window: ms(300),
        ..settings()
    });
    policy.on_open(start);
    policy.on_failure(&Error::StreamEnded, Some("e1"), start, 0.0);

    assert!(!policy.resume_expired(true, start + ms(300)));
    assert!(policy.resume_expired(true, start + ms(301)));
    // The fresh start began a new outage: its window runs from now, and
    // with neither cursor nor first stream there is nothing to drop.
    assert!(!policy.resume_expired(false, start + ms(10_000)));
}

#[test]
fn without_a_cursor_a_first_stream_is_still_a_resume_point() {
    let start = Instant::now();
    let mut policy = Policy::new(Settings {
        resume_window: ms(300),
        ..settings()
    });
    assert!(
        !policy.resume_expired(false, start + ms(1000)),
        "never open"
    );
    policy.on_open(start);
    policy.on_failure(&Error::StreamEnded, None, start + ms(50), 0.0);

    assert_eq!(
        policy.resume_from(None, None, start + ms(350)),
        ResumeFrom::SecondsSinceConnected(1)
    );
    assert!(policy.resume_expired(false, start + ms(351)));
    assert_eq!(
        policy.resume_from(None, None, start + ms(351)),
        ResumeFrom::Nothing
    );
}

#[test]
fn a_resume_prefers_the_cursor_then_the_rewind_then_the_time_since_the_first_stream() {
    let start = Instant::now();
    let mut policy = Policy::new(settings());
    let rewind = Rewind::Messages(10);

    assert_eq!(policy.resume_from(None, None, start), ResumeFrom::Nothing);
    assert_eq!(
        policy.resume_from(None, Some(&rewind), start),
        ResumeFrom::Rewind(&rewind)
    );
    policy.on_open(start);
    assert_eq!(
        policy.resume_from(Some("e7"), Some(&rewind), start),
        ResumeFrom::LastEvent("e7")
    );
    assert_eq!(
        policy.resume_from(None, None, start + ms(2500)),
        ResumeFrom::SecondsSinceConnected(3)
    );
    assert_eq!(
        policy.resume_from(None, None, start + Duration::from_secs(600)),
        ResumeFrom::SecondsSinceConnected(MAX_REWIND_SECS)
    );
}

#[test]
fn a_token_is_renewed_ahead_by_renew_before_or_half_its_life() {
    let now = Instant::now();
    let policy = Policy::new(settings());

    assert_eq!(
        policy.renew_at(Some(now + Duration::from_secs(3600)), now),
        Some(now + Duration::from_secs(3570))
    );
    assert_eq!(
        policy.renew_at(Some(now + ms(1000)), now),
        Some(now + ms(500))
    );
    assert_eq!(policy.renew_at(Some(now + ms(499)), now), None);
    assert_eq!(policy.renew_at(Some(now), now), None);
    assert_eq!(policy.renew_at(None, now), None);
    let fixed = Policy::new(Settings {
        can_renew: false,
        ..settings()
    });
    assert_eq!(
        fixed.renew_at(Some(now + Duration::from_secs(60)), now),
        None
    );
}

#[test]
fn a_credential_is_fetched_when_missing_or_expired_and_renewable() {
    let now = Instant::now();
    let policy = Policy::new(settings());
    let fixed = Policy::new(Settings {
        can_renew: false,
        ..settings()
    });

    assert!(policy.needs_credential(false, None, now));
    assert!(!policy.needs_credential(true, None, now));
    assert!(!policy.needs_credential(true, Some(now + ms(1)), now));
    assert!(policy.needs_credential(true, Some(now), now));
    assert!(!fixed.needs_credential(true, Some(now), now));
    assert!(fixed.needs_credential(false, None, now));
}
