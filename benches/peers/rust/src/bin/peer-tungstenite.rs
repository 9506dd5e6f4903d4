//! Peer server on tokio-tungstenite: echo on every path, fan-out on `/broadcast`.

use std::sync::Arc;

use anyhow::Context as _;
use futures_util::{SinkExt as _, StreamExt as _, TryStreamExt as _, future};
use switchboard_bench_peers::{BROADCAST_PATH, Hub, port_from_args};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let port = port_from_args()?;
    let listener = TcpListener::bind(("127.0.0.1", port)).await.context("bind")?;
    let hub = Arc::new(Hub::new());
    loop {
        let (stream, _) = listener.accept().await.context("accept")?;
        tokio::spawn(serve(stream, Arc::clone(&hub)));
    }
}

// The handshake callback's error type is tungstenite's `ErrorResponse`, not ours to shrink.
#[allow(clippy::result_large_err)]
async fn serve(stream: TcpStream, hub: Arc<Hub<Message>>) {
    let _ = stream.set_nodelay(true);
    let mut is_broadcast = false;
    let callback = |req: &Request, resp: Response| {
        is_broadcast = req.uri().path() == BROADCAST_PATH;
        Ok(resp)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else { return };
    let (mut write, read) = ws.split();
    if !is_broadcast {
        // As the library's echo example: forward batches writes and flushes once the
        // reader has nothing more buffered.
        let _ =
            read.try_filter(|m| future::ready(m.is_text() || m.is_binary())).forward(write).await;
        return;
    }
    let (id, mut rx) = hub.subscribe();
    let incoming = read.try_for_each(|m| {
        if m.is_text() || m.is_binary() {
            hub.publish(id, m);
        }
        future::ok(())
    });
    let outgoing = async {
        loop {
            let (from, msg) = match rx.recv().await {
                Ok(m) => m,
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => {
                    return Ok::<(), tokio_tungstenite::tungstenite::Error>(());
                }
            };
            if from != id {
                write.feed(msg).await?;
            }
            // Queue what is already waiting, then flush once.
            loop {
                match rx.try_recv() {
                    Ok((from, msg)) if from != id => write.feed(msg).await?,
                    Ok(_) | Err(TryRecvError::Lagged(_)) => {}
                    Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                }
            }
            write.flush().await?;
        }
    };
    tokio::select! {
        _ = incoming => {}
        _ = outgoing => {}
    }
}
