//! Plain HTTP/1.0 GETs over a TCP socket: enough for sagad's `/metrics` and Prometheus's query API,
//! without an HTTP client library.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An HTTP answer: status code and body.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The body, as text.
    pub body: String,
}

/// `GET http://{addr}{target}`; `target` is the path and query, already encoded (see [`encode`]).
/// An error when the server cannot be reached.
///
/// # Panics
/// When the server answers something that is not HTTP.
pub async fn get(addr: &str, target: &str) -> std::io::Result<Answer> {
    let mut stream = TcpStream::connect(addr).await?;
    // HTTP/1.0: the server closes the connection after the answer, which marks the body's end.
    let request = format!("GET {target} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8(raw).expect("utf-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("headers end");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    Ok(Answer {
        status,
        body: body.to_owned(),
    })
}

/// Percent-encodes `text` for a query string: every byte but the unreserved ones.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
