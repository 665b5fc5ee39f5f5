//! A loopback TCP relay between the app and PostgreSQL that a test can cut (every connection
//! dropped, new ones refused) and restore, to stand for a database outage without stopping the
//! shared server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The relay; dropped with the test.
pub struct DbProxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl DbProxy {
    /// Starts relaying connections on a free loopback port to `upstream`.
    pub async fn start(upstream: SocketAddr) -> DbProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (c, cs) = (cut.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if c.load(Ordering::SeqCst) {
                    drop(client); // the server "is down": the connection closes at once
                    continue;
                }
                let relay = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                let mut list = cs.lock().unwrap();
                list.retain(|h| !h.is_finished());
                list.push(relay);
            }
        });
        DbProxy { port, cut, conns, accept }
    }

    /// The outage: every open connection is dropped and new ones are closed at once.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for relay in self.conns.lock().unwrap().drain(..) {
            relay.abort();
        }
    }

    /// The database is back.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for DbProxy {
    fn drop(&mut self) {
        self.accept.abort();
        for relay in self.conns.lock().unwrap().drain(..) {
            relay.abort();
        }
    }
}
