//! OpenID Connect load benchmark (not a test; run by `bench/run.sh`): the authorization request
//! with a signed-in session, then the code-for-token exchange (RS256 signing), each measured on
//! its own. Codes live 60 seconds, so the first phase collects them and the second spends them.
//!
//! `oidc_bench BASE COOKIE CLIENT_ID CLIENT_SECRET REDIRECT_URI [CODES] [CONNS]`
//!
//! With `SERVER_PID` set, each line also gives the server's own CPU time per request (user +
//! system, from `/proc/PID/stat`): the figure least moved by other load on a shared machine.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

const VERIFIER: &str = "vestibule-benchmark-pkce-verifier-0123456789abcdef";

/// CPU seconds (user + system) the server has used so far, when `SERVER_PID` names it.
fn server_cpu() -> Option<f64> {
    let pid = std::env::var("SERVER_PID").ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime: fields 14 and 15 of the line, 12 and 13 after the name; 100 ticks/s.
    Some((fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?) / 100.0)
}

fn report(name: &str, started: Instant, cpu_before: Option<f64>, mut lat: Vec<Duration>, errors: usize) {
    lat.sort();
    let n = lat.len();
    let p99 = lat.get((n * 99 / 100).min(n.saturating_sub(1))).copied().unwrap_or_default();
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let cpu = match (cpu_before, server_cpu()) {
        (Some(before), Some(after)) => {
            format!(" {:.2} ms server CPU/request |", (after - before) * 1000.0 / n.max(1) as f64)
        }
        _ => String::new(),
    };
    println!("| {name} | {rate:.0} | {:.1} ms | {errors} |{cpu}", p99.as_secs_f64() * 1000.0);
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, base, cookie, client_id, secret, redirect, rest @ ..] = args.as_slice() else {
        eprintln!("usage: oidc_bench BASE COOKIE CLIENT_ID CLIENT_SECRET REDIRECT_URI [CODES] [CONNS]");
        std::process::exit(2);
    };
    let codes_wanted: usize = rest.first().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let conns: usize = rest.get(1).and_then(|s| s.parse().ok()).unwrap_or(32);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(VERIFIER.as_bytes()));
    let url = format!(
        "{base}/o/bench/oidc/authorize?response_type=code&client_id={client_id}&scope=openid%20email%20profile&state=s&nonce=n&code_challenge={challenge}&code_challenge_method=S256&redirect_uri={}",
        url::form_urlencoded::byte_serialize(redirect.as_bytes()).collect::<String>()
    );
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();

    // Phase 1: authorization requests with a signed-in session.
    let codes = Arc::new(Mutex::new(Vec::with_capacity(codes_wanted)));
    let lat = Arc::new(Mutex::new(Vec::with_capacity(codes_wanted)));
    let issued = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let cpu = server_cpu();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (client, url, cookie) = (client.clone(), url.clone(), cookie.clone());
        let (codes, lat, issued, errors) = (codes.clone(), lat.clone(), issued.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            while issued.fetch_add(1, Ordering::Relaxed) < codes_wanted {
                let t = Instant::now();
                let res = client.get(&url).header("Cookie", &cookie).send().await;
                let elapsed = t.elapsed();
                let code = res.ok().filter(|r| r.status() == 302).and_then(|r| {
                    let loc = r.headers().get("location")?.to_str().ok()?.to_owned();
                    url::Url::parse(&loc).ok()?.query_pairs().find(|(k, _)| k == "code").map(|(_, v)| v.into_owned())
                });
                match code {
                    Some(c) => {
                        codes.lock().await.push(c);
                        lat.lock().await.push(elapsed);
                    }
                    None => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let lat_a = std::mem::take(&mut *lat.lock().await);
    report("authorization request (signed in, code issued)", started, cpu, lat_a, errors.load(Ordering::Relaxed));

    // Phase 2: exchanges (client_secret_basic, PKCE, RS256 ID token).
    let token_url = format!("{base}/o/bench/oidc/token");
    let errors = Arc::new(AtomicUsize::new(0));
    let cpu = server_cpu();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (client, token_url, codes, lat, errors) =
            (client.clone(), token_url.clone(), codes.clone(), lat.clone(), errors.clone());
        let (client_id, secret, redirect) = (client_id.clone(), secret.clone(), redirect.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(code) = codes.lock().await.pop() else { break };
                let form = [
                    ("grant_type", "authorization_code"),
                    ("code", code.as_str()),
                    ("redirect_uri", redirect.as_str()),
                    ("code_verifier", VERIFIER),
                ];
                let t = Instant::now();
                let res = client.post(&token_url).basic_auth(&client_id, Some(&secret)).form(&form).send().await;
                let ok = match res {
                    Ok(r) if r.status() == 200 => r.bytes().await.is_ok(),
                    _ => false,
                };
                let elapsed = t.elapsed();
                if ok {
                    lat.lock().await.push(elapsed);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let lat_t = std::mem::take(&mut *lat.lock().await);
    report("token exchange (code → RS256 ID token)", started, cpu, lat_t, errors.load(Ordering::Relaxed));
}
