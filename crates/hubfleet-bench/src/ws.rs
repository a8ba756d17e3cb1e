//! WebSocket load: an echo upstream inside the harness, round-trip latency through a proxy, and
//! a crowd of idle connections for memory measurements.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt, stream};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Starts a WebSocket echo server on 127.0.0.1 (any path); returns its port.
pub async fn start_echo_server() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(message)) = socket.next().await {
                    if (message.is_text() || message.is_binary())
                        && socket.send(message).await.is_err()
                    {
                        break;
                    }
                }
            });
        }
    });
    Ok(port)
}

/// Round-trip latencies of one WebSocket, in milliseconds (median, 99th percentile).
#[derive(Debug, Clone, Copy)]
pub struct RoundTrips {
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Sends `count` small text messages one at a time over one connection and times each echo.
pub async fn measure_round_trips(url: &str, count: usize) -> Result<RoundTrips> {
    let (mut socket, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .with_context(|| format!("connect {url}"))?;
    let payload = "x".repeat(64);
    let mut samples = Vec::with_capacity(count);
    // A few unmeasured exchanges warm up connection state in the proxy.
    for i in 0..count + 50 {
        let started = Instant::now();
        socket.send(Message::text(payload.clone())).await?;
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(_))) => break,
                Some(Ok(_)) => continue,
                Some(Err(err)) => return Err(err.into()),
                None => bail!("echo socket closed"),
            }
        }
        if i >= 50 {
            samples.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let _ = socket.close(None).await;
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    Ok(RoundTrips {
        p50_ms: at(0.5),
        p99_ms: at(0.99),
    })
}

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens `count` WebSockets to `url` (bounded concurrency) and checks each echoes once.
pub async fn open_idle_sockets(url: &str, count: usize) -> Result<Vec<Socket>> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let sockets: Vec<Result<Socket>> = stream::iter(0..count)
        .map(|_| async move {
            let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
            socket.send(Message::text("hello")).await?;
            match socket.next().await {
                Some(Ok(Message::Text(_))) => Ok(socket),
                other => bail!("no echo on a fresh socket: {other:?}"),
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    if Instant::now() > deadline {
        bail!("opening {count} sockets took over two minutes");
    }
    sockets.into_iter().collect()
}
