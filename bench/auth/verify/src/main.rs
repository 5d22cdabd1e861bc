//! In-process cost of checking one app JWT, for each crypto backend that
//! auth-server could verify with, on the login-storm path: every token is
//! distinct, so nothing is remembered between verifications.
//!
//! Usage: bench-verify BACKEND [TOKENS] [ROUNDS]
//!   BACKEND: `rust_crypto` or `aws_lc_rs`: jsonwebtoken's `decode` with
//!   that backend installed as its provider (header, signature, claims and
//!   their checks, all that auth-server asks of it). Two more isolate the
//!   signature with aws-lc-rs: `aws_lc_rs_signature` builds the public key
//!   from the JWK's components at every call, as jsonwebtoken's backend does,
//!   and `aws_lc_rs_signature_parsed_once` parses it once, as a JWKS cache
//!   could; the difference is what parsing the key costs per token.
//!
//! For RS256 (RSA-2048) and ES256 (P-256), TOKENS distinct app JWTs (default
//! 2,000; distinct `sub`, with `iss`, `aud` and `exp`, as auth-server's JWKS
//! mode requires) are signed from the test fixtures' keys, then each round
//! verifies every one of them: the signature, then `exp`, `iss` and `aud`,
//! into a JSON map, as auth-server does. Prints the median over ROUNDS
//! (default 7) of the mean time per verification, in microseconds.

use std::hint::black_box;
use std::time::Instant;

use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256,
    RsaPublicKeyComponents,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value, json};

const ISSUER: &str = "https://idp.bench.invalid/";
const AUDIENCE: &str = "ably-auth-bench";

fn main() {
    let mut args = std::env::args().skip(1);
    let backend = args.next().unwrap_or_else(|| usage());
    let tokens: usize = args
        .next()
        .map_or(2_000, |n| n.parse().unwrap_or_else(|_| usage()));
    let rounds: usize = args
        .next()
        .map_or(7, |n| n.parse().unwrap_or_else(|_| usage()));
    let mode = match backend.as_str() {
        "rust_crypto" => {
            install(&jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER);
            Mode::Decode
        }
        "aws_lc_rs" => {
            install(&jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER);
            Mode::Decode
        }
        "aws_lc_rs_signature" => {
            install(&jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER);
            Mode::SignatureParsedPerCall
        }
        "aws_lc_rs_signature_parsed_once" => {
            install(&jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER);
            Mode::SignatureParsedOnce
        }
        _ => usage(),
    };

    let fixtures = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../auth-server/tests/fixtures"
    );
    let rsa = std::fs::read(format!("{fixtures}/rsa-1.pem")).expect("rsa-1.pem");
    let ec = std::fs::read(format!("{fixtures}/ec-p256.pem")).expect("ec-p256.pem");
    let cases = [
        (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(&rsa).expect("RSA key"),
        ),
        (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(&ec).expect("EC key"),
        ),
    ];
    for (alg, signing_key) in cases {
        // The public half as a JWKS serves it, read as auth-server reads it.
        let jwk = Jwk::from_encoding_key(&signing_key, alg).expect("JWK");
        let key = DecodingKey::from_jwk(&jwk).expect("decoding key");
        let once = (mode == Mode::SignatureParsedOnce).then(|| parse_once(&jwk, alg));
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let exp = jsonwebtoken::get_current_timestamp() + 7_200;
        let signed: Vec<String> = (0..tokens)
            .map(|n| {
                let claims = json!({
                    "sub": format!("storm-user-{n}"), "roles": ["bench"],
                    "iss": ISSUER, "aud": AUDIENCE, "exp": exp,
                });
                let header = Header {
                    kid: Some("bench".into()),
                    ..Header::new(alg)
                };
                jsonwebtoken::encode(&header, &claims, &signing_key).expect("sign")
            })
            .collect();

        let mut per_round: Vec<f64> = (0..rounds)
            .map(|_| {
                let start = Instant::now();
                for token in &signed {
                    match mode {
                        Mode::Decode => {
                            let claims = jsonwebtoken::decode::<Map<String, Value>>(
                                token,
                                &key,
                                &validation,
                            )
                            .expect("verifies")
                            .claims;
                            black_box(claims);
                        }
                        Mode::SignatureParsedPerCall => verify_signature(token, &jwk, alg, None),
                        Mode::SignatureParsedOnce => {
                            verify_signature(token, &jwk, alg, once.as_ref());
                        }
                    }
                }
                start.elapsed().as_secs_f64() * 1e6 / tokens as f64
            })
            .collect();
        per_round.sort_by(f64::total_cmp);
        println!("{backend} {alg:?} {:.2}", per_round[rounds / 2]);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `jsonwebtoken::decode`: header, signature, claims, checks.
    Decode,
    /// The signature alone, the key built from its JWK components per call.
    SignatureParsedPerCall,
    /// The signature alone, the key parsed once.
    SignatureParsedOnce,
}

fn install(provider: &'static CryptoProvider) {
    provider
        .install_default()
        .expect("first provider installed");
}

/// The JWK's public key parsed into aws-lc-rs's form once.
fn parse_once(jwk: &Jwk, alg: Algorithm) -> ParsedPublicKey {
    match (&jwk.algorithm, alg) {
        (AlgorithmParameters::RSA(rsa), Algorithm::RS256) => {
            let n = URL_SAFE_NO_PAD.decode(&rsa.n).expect("n");
            let e = URL_SAFE_NO_PAD.decode(&rsa.e).expect("e");
            RsaPublicKeyComponents { n: &n, e: &e }
                .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
                .expect("RSA public key")
        }
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256) => {
            let mut point = vec![4u8];
            point.extend(URL_SAFE_NO_PAD.decode(&ec.x).expect("x"));
            point.extend(URL_SAFE_NO_PAD.decode(&ec.y).expect("y"));
            ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).expect("P-256 public key")
        }
        _ => panic!("no parsed form for {alg:?}"),
    }
}

/// The signature alone, checked with the key parsed once (`once`) or from
/// its components at every call, as jsonwebtoken's aws-lc-rs backend does.
fn verify_signature(token: &str, jwk: &Jwk, alg: Algorithm, once: Option<&ParsedPublicKey>) {
    let (message, signature) = token.rsplit_once('.').expect("three parts");
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .expect("base64url signature");
    let verified = match (once, &jwk.algorithm) {
        (Some(public), _) => public.verify_sig(message.as_bytes(), &signature),
        (None, AlgorithmParameters::RSA(rsa)) => {
            let n = URL_SAFE_NO_PAD.decode(&rsa.n).expect("n");
            let e = URL_SAFE_NO_PAD.decode(&rsa.e).expect("e");
            RsaPublicKeyComponents { n: &n, e: &e }.verify(
                &RSA_PKCS1_2048_8192_SHA256,
                message.as_bytes(),
                &signature,
            )
        }
        (None, AlgorithmParameters::EllipticCurve(ec)) => {
            let mut point = vec![4u8];
            point.extend(URL_SAFE_NO_PAD.decode(&ec.x).expect("x"));
            point.extend(URL_SAFE_NO_PAD.decode(&ec.y).expect("y"));
            signature::UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                .verify(message.as_bytes(), &signature)
        }
        _ => panic!("no signature check for {alg:?}"),
    };
    verified.expect("signature verifies");
}

fn usage() -> ! {
    eprintln!(
        "usage: bench-verify rust_crypto|aws_lc_rs|aws_lc_rs_signature|aws_lc_rs_signature_parsed_once [TOKENS] [ROUNDS]"
    );
    std::process::exit(2);
}
