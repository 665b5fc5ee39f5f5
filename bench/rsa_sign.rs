//! Raw RS256 signing speed (not a test; see README, "Performance"): signatures per second of a
//! 2048-bit key with `jsonwebtoken::encode` as the crate's RustCrypto backend does it (key parsed
//! at every signature) and with `rsa`'s PKCS#1 v1.5 signing key parsed once, on 1 and N threads.
//!
//! `rsa_sign [SECONDS] [THREADS]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::crypto::rust_crypto;
use jsonwebtoken::signature::Signer;
use jsonwebtoken::{Algorithm, EncodingKey};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use sha2::Sha256;

const MESSAGE: &[u8] = b"eyJhbGciOiJSUzI1NiIsImtpZCI6ImFiY2RlZmdoaWprbG1ub3AifQ.eyJpc3MiOiJodHRwOi8vMTI3LjAuMC4xOjE4MDgwL28vYmVuY2giLCJzdWIiOiJzdWIifQ";

/// Calls `sign` on `threads` threads for `seconds`; returns signatures per second.
fn rate(threads: usize, seconds: f64, sign: Arc<dyn Fn() + Send + Sync>) -> f64 {
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(seconds);
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let sign = sign.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while Instant::now() < until {
                    sign();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    total as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let threads: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
    let private = rsa::PrivateKey::new(&mut rand::rng(), 2048).expect("an RSA key");
    let der = private.to_pkcs1_der().expect("DER").as_bytes().to_vec();

    let key = EncodingKey::from_rsa_der(&der);
    let reparse: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        let signer = (rust_crypto::DEFAULT_PROVIDER.signer_factory)(&Algorithm::RS256, &key).expect("signer");
        let _ = signer.try_sign(MESSAGE).expect("signature");
    });
    let parsed = Arc::new(SigningKey::<Sha256>::new(private));
    let once: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        let _ = parsed.try_sign(MESSAGE).expect("signature");
    });

    println!("| RS256, 2048-bit key | 1 thread | {threads} threads |");
    println!("|---|---:|---:|");
    for (name, f) in [
        ("key parsed at every signature (jsonwebtoken rust_crypto)", reparse),
        ("key parsed once (rsa SigningKey)", once),
    ] {
        let one = rate(1, seconds, f.clone());
        let many = rate(threads, seconds, f);
        println!("| {name} | {one:.0}/s | {many:.0}/s |");
    }
}
