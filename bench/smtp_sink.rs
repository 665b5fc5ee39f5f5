//! A local SMTP sink for the mail-delivery benchmark (not part of the product): accepts every
//! message on 127.0.0.1:PORT, keeps nothing, and prints how many it took each second.
//!
//! `cargo run --release --example smtp_sink -- PORT`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(2525);
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        let mut last = 0;
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let now = c.load(Ordering::Relaxed);
            if now != last {
                println!("{now} messages (+{}/s)", now - last);
                last = now;
            }
        }
    });
    loop {
        let (socket, _) = listener.accept().await?;
        let count = count.clone();
        tokio::spawn(async move {
            let (read, mut write) = socket.into_split();
            let mut lines = BufReader::new(read).lines();
            if write.write_all(b"220 sink ESMTP\r\n").await.is_err() {
                return;
            }
            let mut in_data = false;
            while let Ok(Some(line)) = lines.next_line().await {
                let reply: &[u8] = if in_data {
                    if line != "." {
                        continue;
                    }
                    in_data = false;
                    count.fetch_add(1, Ordering::Relaxed);
                    b"250 OK queued\r\n"
                } else {
                    let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
                    match verb.as_str() {
                        "EHLO" => b"250-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
                        "DATA" => {
                            in_data = true;
                            b"354 go ahead\r\n"
                        }
                        "QUIT" => {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            return;
                        }
                        _ => b"250 OK\r\n",
                    }
                };
                if write.write_all(reply).await.is_err() {
                    return;
                }
            }
        });
    }
}
