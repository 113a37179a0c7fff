//! A stand-in OTLP collector for measuring the cost of span export (e.g. with `saga-bench`): serves the
//! test suite's receiver on the address given (default `127.0.0.1:4317`), prints its endpoint, then once
//! a second the number of spans received so far, until interrupted.
//!
//! `cargo run --release -p e2e-tests --example otlp_sink -- 127.0.0.1:4317`

use std::time::Duration;

use e2e_tests::otlp::OtlpReceiver;

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4317".to_owned());
    let mut receiver = OtlpReceiver::start_on(&addr).await;
    println!("OTLP sink listening on {}", receiver.endpoint);
    let mut counted = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        let received = receiver.drain();
        if received != counted {
            counted = received;
            println!("{counted} spans received");
        }
    }
}
