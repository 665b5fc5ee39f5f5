//! A real SMTP listener on loopback that keeps what it receives, and a small MIME reader.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// One received message.
#[derive(Debug, Clone)]
pub struct Mail {
    pub rcpt: Vec<String>,
    pub raw: String,
}

/// The listener.
pub struct SmtpSink {
    pub port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
    notify: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl SmtpSink {
    /// Starts on `port` (0 = any free port).
    pub async fn start(port: u16) -> SmtpSink {
        Self::start_slow(port, Duration::ZERO).await
    }

    /// Starts a listener that keeps each message, then waits `delay` before saying it is
    /// accepted (a slow server: a sender killed meanwhile never hears that it was).
    pub async fn start_slow(port: u16, delay: Duration) -> SmtpSink {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind smtp sink");
        let port = listener.local_addr().unwrap().port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let notify = Arc::new(Notify::new());
        let (m, n) = (mails.clone(), notify.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    break;
                };
                let (m, n) = (m.clone(), n.clone());
                tokio::spawn(async move {
                    let _ = session(stream, m, n, delay).await;
                });
            }
        });
        SmtpSink { port, mails, notify, task }
    }

    /// A sink that listens nowhere (the SMTP server is "down"); replace it with [`SmtpSink::start`].
    pub fn dead(port: u16) -> SmtpSink {
        SmtpSink {
            port,
            mails: Arc::new(Mutex::new(Vec::new())),
            notify: Arc::new(Notify::new()),
            task: tokio::spawn(async {}),
        }
    }

    /// Everything received so far.
    pub fn all(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }

    /// Waits until `n` messages for `to` arrived; returns the newest.
    pub async fn wait_for_nth(&self, to: &str, n: usize) -> Mail {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let found: Vec<Mail> =
                self.all().into_iter().filter(|m| m.rcpt.iter().any(|r| r.eq_ignore_ascii_case(to))).collect();
            if found.len() >= n {
                return found[n - 1].clone();
            }
            if tokio::time::Instant::now() > deadline {
                panic!("no mail #{n} for {to} within 30 s; got {} in all", self.all().len());
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), self.notify.notified()).await;
        }
    }

    /// Waits for the first message to `to`.
    pub async fn wait_for(&self, to: &str) -> Mail {
        self.wait_for_nth(to, 1).await
    }

    /// Count of messages to `to`.
    pub fn count_for(&self, to: &str) -> usize {
        self.all().iter().filter(|m| m.rcpt.iter().any(|r| r.eq_ignore_ascii_case(to))).count()
    }
}

async fn session(
    stream: tokio::net::TcpStream,
    mails: Arc<Mutex<Vec<Mail>>>,
    notify: Arc<Notify>,
    delay: Duration,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    write.write_all(b"220 sink ESMTP ready\r\n").await?;
    let mut rcpt = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            write.write_all(b"250-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n").await?;
        } else if upper.starts_with("HELO")
            || upper.starts_with("MAIL FROM")
            || upper.starts_with("RSET")
            || upper.starts_with("NOOP")
        {
            if upper.starts_with("RSET") {
                rcpt.clear();
            }
            write.write_all(b"250 OK\r\n").await?;
        } else if upper.starts_with("RCPT TO") {
            let addr = cmd[8..].trim().trim_start_matches(':').trim().trim_start_matches('<');
            let addr = addr.split('>').next().unwrap_or("").to_string();
            rcpt.push(addr);
            write.write_all(b"250 OK\r\n").await?;
        } else if upper == "DATA" {
            write.write_all(b"354 go ahead\r\n").await?;
            let mut data = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                let l = line.strip_prefix('.').filter(|_| line.starts_with("..")).unwrap_or(&line);
                data.push_str(l);
            }
            mails.lock().unwrap().push(Mail { rcpt: std::mem::take(&mut rcpt), raw: data });
            notify.notify_waiters();
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            write.write_all(b"250 OK queued\r\n").await?;
        } else if upper.starts_with("QUIT") {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            write.write_all(b"502 not implemented\r\n").await?;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Mail {
    fn split_head(raw: &str) -> (&str, &str) {
        raw.split_once("\r\n\r\n").or_else(|| raw.split_once("\n\n")).unwrap_or((raw, ""))
    }

    /// A top-level header, unfolded and RFC 2047-decoded.
    pub fn header(&self, name: &str) -> Option<String> {
        header_in(Self::split_head(&self.raw).0, name)
    }

    /// The decoded `text/plain` part.
    pub fn text(&self) -> String {
        self.part("text/plain")
    }

    /// The decoded `text/html` part.
    pub fn html(&self) -> String {
        self.part("text/html")
    }

    fn part(&self, mime: &str) -> String {
        let (head, body) = Self::split_head(&self.raw);
        let ctype = header_in(head, "Content-Type").unwrap_or_default();
        let boundary = ctype
            .split("boundary=")
            .nth(1)
            .map(|b| b.trim_matches('"').split(';').next().unwrap_or("").trim_matches('"').to_string());
        let Some(boundary) = boundary else {
            return decode_body(head, body);
        };
        for part in body.split(&format!("--{boundary}")) {
            let part = part.trim_start_matches("\r\n");
            let (ph, pb) = Self::split_head(part);
            if header_in(ph, "Content-Type").unwrap_or_default().starts_with(mime) {
                return decode_body(ph, pb);
            }
        }
        String::new()
    }

    /// The first redeem link in the text part.
    pub fn redeem_link(&self) -> String {
        let text = self.text();
        let start = text.find("http").expect("a link in the mail");
        let link: String = text[start..].chars().take_while(|c| !c.is_whitespace()).collect();
        assert!(link.contains("/redeem/"), "unexpected first link {link}");
        link
    }
}

fn header_in(head: &str, name: &str) -> Option<String> {
    let mut unfolded: Vec<String> = Vec::new();
    for line in head.lines() {
        if (line.starts_with(' ') || line.starts_with('\t'))
            && let Some(last) = unfolded.last_mut()
        {
            last.push_str(line.trim_start());
            continue;
        }
        unfolded.push(line.trim_end_matches('\r').to_string());
    }
    unfolded.iter().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| decode_words(v.trim()))
    })
}

fn decode_words(v: &str) -> String {
    let mut out = String::new();
    let mut rest = v;
    let mut last_was_word = false;
    while let Some(start) = rest.find("=?") {
        let between = &rest[..start];
        // Whitespace between two encoded words is not part of the text.
        if !(last_was_word && between.trim().is_empty()) {
            out.push_str(between);
        }
        let after = &rest[start + 2..];
        let parts: Vec<&str> = after.splitn(3, '?').collect();
        let Some(end) = parts.get(2).and_then(|t| t.find("?=")) else {
            out.push_str(&rest[start..]);
            return out;
        };
        let (enc, tail) = (parts[1], parts[2]);
        let text = &tail[..end];
        let bytes = if enc.eq_ignore_ascii_case("b") {
            base64::engine::general_purpose::STANDARD.decode(text).unwrap_or_default()
        } else {
            qp_decode(&text.replace('_', " "))
        };
        out.push_str(&String::from_utf8_lossy(&bytes));
        rest = &tail[end + 2..];
        last_was_word = true;
    }
    out.push_str(rest);
    out
}

fn decode_body(head: &str, body: &str) -> String {
    let cte = header_in(head, "Content-Transfer-Encoding").unwrap_or_default().to_ascii_lowercase();
    let body = body.trim_end_matches("\r\n");
    match cte.as_str() {
        "base64" => {
            let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            String::from_utf8_lossy(&base64::engine::general_purpose::STANDARD.decode(compact).unwrap_or_default())
                .into_owned()
        }
        "quoted-printable" => {
            String::from_utf8_lossy(&qp_decode(&body.replace("=\r\n", "").replace("=\n", ""))).into_owned()
        }
        _ => body.replace("\r\n", "\n"),
    }
    .replace("\r\n", "\n")
}

fn qp_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'='
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}
