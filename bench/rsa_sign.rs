//! Raw RS256 signing speed (not a test; see README, "Performance"): signatures per second of a
//! 2048-bit key with pure-Rust `rsa` 0.10 (the backend used before) and with AWS-LC (the one used
//! now), each as `jsonwebtoken`'s backend signer does it (key parsed at every signature) and with
//! the key parsed once, on 1 and N threads.
//!
//! `rsa_sign [SECONDS] [THREADS]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use jsonwebtoken::crypto::aws_lc;
use jsonwebtoken::signature::Signer;
use jsonwebtoken::{Algorithm, EncodingKey};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use sha2::Sha256;

const MESSAGE: &[u8] = b"eyJhbGciOiJSUzI1NiIsImtpZCI6ImFiY2RlZmdoaWprbG1ub3AifQ.eyJpc3MiOiJodHRwOi8vMTI3LjAuMC4xOjE4MDgwL28vYmVuY2giLCJzdWIiOiJzdWIifQ";

/// CPU time this process has used so far (user + system), from `/proc/self/stat`.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name; 100 ticks/s.
    (ticks(11) + ticks(12)) / 100.0
}

/// Calls `sign` on `threads` threads for `seconds`; returns signatures per second of wall time
/// and milliseconds of CPU per signature (the figure least moved by other load on the machine).
fn rate(threads: usize, seconds: f64, sign: Arc<dyn Fn() + Send + Sync>) -> (f64, f64) {
    let cpu = cpu_seconds();
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
    let per_second = total as f64 / started.elapsed().as_secs_f64();
    (per_second, (cpu_seconds() - cpu) * 1000.0 / total.max(1) as f64)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let threads: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
    let private = rsa::PrivateKey::new(&mut rand::rng(), 2048).expect("an RSA key");
    let der = private.to_pkcs1_der().expect("DER").as_bytes().to_vec();

    let key = EncodingKey::from_rsa_der(&der);
    let reparse_der = der.clone();
    let rsa_reparse: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        let private = rsa::PrivateKey::from_pkcs1_der(&reparse_der).expect("key");
        let _ = SigningKey::<Sha256>::new(private).try_sign(MESSAGE).expect("signature");
    });
    let parsed = Arc::new(SigningKey::<Sha256>::new(private));
    let rsa_once: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        let _ = parsed.try_sign(MESSAGE).expect("signature");
    });
    let aws_reparse: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        let signer = (aws_lc::DEFAULT_PROVIDER.signer_factory)(&Algorithm::RS256, &key).expect("signer");
        let _ = signer.try_sign(MESSAGE).expect("signature");
    });
    let pair = Arc::new(RsaKeyPair::from_der(&der).expect("key"));
    let rng = SystemRandom::new();
    let aws_once: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        let mut sig = vec![0; pair.public_modulus_len()];
        pair.sign(&RSA_PKCS1_SHA256, &rng, MESSAGE, &mut sig).expect("signature");
    });

    println!("| RS256, 2048-bit key | 1 thread | {threads} threads | CPU per signature |");
    println!("|---|---:|---:|---:|");
    for (name, f) in [
        ("pure-Rust `rsa` 0.10, key parsed at every signature", rsa_reparse),
        ("pure-Rust `rsa` 0.10, key parsed once", rsa_once),
        ("AWS-LC, key parsed at every signature (jsonwebtoken aws_lc_rs)", aws_reparse),
        ("AWS-LC, key parsed once (services::oidc::signer)", aws_once),
    ] {
        let (one, cpu) = rate(1, seconds, f.clone());
        let (many, _) = rate(threads, seconds, f);
        println!("| {name} | {one:.0}/s | {many:.0}/s | {cpu:.2} ms |");
    }
}
