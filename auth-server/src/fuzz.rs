//! Property-based fuzz targets for the parsers of the app's login JWT and
//! of the policy file (see `shared::fuzzing` for the inputs and the budget;
//! the request parameters' targets live beside their parser, in
//! `routes::token`). Run them alone with
//! `cargo test -p auth-server --lib fuzz_`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use proptest::prelude::*;
use secrecy::SecretString;
use serde_json::{Value, json};
use shared::Capability;
use shared::fuzzing::{config, json_value, json_value_with, mutated_text, text_over};

use crate::app_jwt::AppJwtVerifier;
use crate::policy::{Allowed, Policy};
use crate::{AppAuth, AppJwtRules};

const SECRET: &str = "app-secret";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

fn verifier() -> AppJwtVerifier {
    let rules = AppJwtRules {
        leeway: Duration::ZERO,
        ..AppJwtRules::defaults_for(&AppAuth::Secret(SecretString::from(SECRET)))
    };
    AppJwtVerifier::with_secret(&SecretString::from(SECRET), rules).expect("a valid secret")
}

/// Runs the verifier on one token. Verification with a secret never waits
/// on anything, so a current-thread runtime per case is enough.
fn verify(verifier: &AppJwtVerifier, token: &str) -> Option<(String, Vec<String>)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    runtime
        .block_on(verifier.verify(token))
        .ok()
        .map(|identity| {
            (
                identity.client_id.as_str().to_owned(),
                identity.roles.clone(),
            )
        })
}

fn sign(claims: &Value, header: &Header) -> Option<String> {
    let key = EncodingKey::from_secret(SECRET.as_bytes()).ok()?;
    jsonwebtoken::encode(header, claims, &key).ok()
}

/// The identities of [`app_jwt_examples`], in order.
fn app_jwt_identities() -> Vec<(String, Vec<String>)> {
    vec![
        (
            "alice".to_owned(),
            vec!["admin".to_owned(), "viewer".to_owned()],
        ),
        ("bob".to_owned(), Vec::new()),
    ]
}

fn app_jwt_examples() -> Vec<String> {
    let exp = now() + 3600;
    let header = Header::new(Algorithm::HS256);
    [
        json!({"sub": "alice", "exp": exp, "roles": ["admin", "viewer"], "iat": exp - 3600}),
        json!({"sub": "bob", "exp": exp, "nbf": exp - 3600, "aud": "app", "iss": "me"}),
    ]
    .iter()
    .map(|claims| sign(claims, &header).expect("the examples sign"))
    .collect()
}

const POLICY_EXAMPLE: &str = r#"# Everyone
[default]
"chat:*" = ["subscribe", "publish", "presence", "history"]
"private:{clientId}" = ["*"]
spaces = ["board-{clientId}"]

[roles.admin]
"*" = ["*"]

[roles.mod]
"[?rewind=1]chat:*" = ["message-delete-any"]
"#;

proptest! {
    #![proptest_config(config(1024))]

    /// A valid app JWT with a few bytes changed either still verifies as
    /// the same user with the same roles or is refused; never a panic.
    #[test]
    fn fuzz_app_jwt_verify_mutated(token in mutated_text(app_jwt_examples())) {
        if let Some(identity) = verify(&verifier(), &token) {
            prop_assert!(
                app_jwt_identities().contains(&identity),
                "a mutated token verified as {:?}",
                identity
            );
        }
    }

    /// Correctly signed tokens whose claims are any JSON, and headers with
    /// any algorithm: the claim checks get the input, and whatever passes
    /// names a real, non-wildcard user.
    #[test]
    fn fuzz_app_jwt_claims_of_any_shape(
        claims in proptest::collection::btree_map(
            proptest::sample::select(vec!["sub", "exp", "nbf", "iat", "roles", "aud", "iss"]),
            prop_oneof![
                json_value_with(text_over("alice*roles", 8).boxed()),
                (0..2u64).prop_map(|offset| json!(now() + offset * 3600)),
            ],
            0..7,
        ),
        payload in json_value(),
        alg in proptest::sample::select(vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512]),
    ) {
        let verifier = verifier();
        let claims = Value::Object(claims.into_iter().map(|(k, v)| (k.to_owned(), v)).collect());
        for body in [claims, payload] {
            if let Some(token) = sign(&body, &Header::new(alg))
                && let Some((client_id, _)) = verify(&verifier, &token)
            {
                prop_assert_eq!(alg, Algorithm::HS256);
                prop_assert!(!client_id.is_empty() && client_id != "*", "{:?}", client_id);
                prop_assert_eq!(
                    body.get("sub").and_then(Value::as_str),
                    Some(client_id.as_str())
                );
            }
        }
    }

    /// JWT-shaped text.
    #[test]
    fn fuzz_app_jwt_generated(token in text_over("eyJhbGciOiJIUzI1NiJ9._-=+/.", 200)) {
        prop_assert!(verify(&verifier(), &token).is_none());
    }

    /// The policy file: mutated examples and generated TOML-ish text. A
    /// policy that loads yields, for any clientId and roles, a capability
    /// (and an intersection with the key's) without panicking, and never a
    /// resource that came from a `{clientId}` template holding `*`, `[` or
    /// `]` unless the template itself put it there.
    #[test]
    fn fuzz_policy_toml(
        text in prop_oneof![
            mutated_text(vec![POLICY_EXAMPLE.to_owned()]),
            text_over("[]{}=\",#\n \"*:abroles.defaultclientIdpublishspaces", 160),
        ],
        client_id in "[a-z*\\[\\]:$?{}]{1,8}",
        roles in proptest::collection::vec(proptest::sample::select(vec!["admin", "mod", "x"]), 0..3),
    ) {
        let Ok(policy) = Policy::from_toml(&text) else {
            return Ok(());
        };
        let roles: Vec<String> = roles.into_iter().map(str::to_owned).collect();
        let capability = policy.capability_for(&client_id, &roles);
        let _ = capability.to_canonical_string();
        let _ = Allowed::for_user(&policy, &Capability::all(), &client_id, &roles);
        let _ = policy.roles().count();
    }
}
