//! Peer server on fastwebsockets and hyper 1: echo on every path, fan-out on `/broadcast`.
//!
//! Echo follows the library's `echo_server` example; broadcast its `echo_server_split`
//! example, with the write half in its own task fed by the hub and by the read half's
//! obligated replies (pong, close).

use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use fastwebsockets::{
    FragmentCollector, FragmentCollectorRead, Frame, OpCode, Payload, WebSocketError, upgrade,
};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use switchboard_bench_peers::{BROADCAST_PATH, Hub, port_from_args};
use tokio::net::TcpListener;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

type Shared = Arc<Hub<(OpCode, Bytes)>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let port = port_from_args()?;
    let listener = TcpListener::bind(("127.0.0.1", port)).await.context("bind")?;
    let hub: Shared = Arc::new(Hub::new());
    loop {
        let (stream, _) = listener.accept().await.context("accept")?;
        let _ = stream.set_nodelay(true);
        let hub = Arc::clone(&hub);
        tokio::spawn(async move {
            let service = service_fn(move |req| upgrade_request(req, Arc::clone(&hub)));
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            let _ = conn.with_upgrades().await;
        });
    }
}

async fn upgrade_request(
    mut req: Request<Incoming>,
    hub: Shared,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let is_broadcast = req.uri().path() == BROADCAST_PATH;
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::spawn(async move {
        let _ = if is_broadcast {
            broadcast(fut, hub).await
        } else {
            tokio::task::unconstrained(echo(fut)).await
        };
    });
    Ok(response)
}

async fn echo(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = FragmentCollector::new(fut.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => return Ok(()),
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
}

async fn broadcast(fut: upgrade::UpgradeFut, hub: Shared) -> Result<(), WebSocketError> {
    let (read, mut write) = fut.await?.split(tokio::io::split);
    let mut read = FragmentCollectorRead::new(read);
    let (control_tx, mut control_rx) = mpsc::unbounded_channel::<Frame<'static>>();
    let (id, mut rx) = hub.subscribe();
    let writer = tokio::spawn(async move {
        loop {
            tokio::select! {
                frame = control_rx.recv() => {
                    let Some(frame) = frame else { return Ok(()) };
                    let is_close = frame.opcode == OpCode::Close;
                    write.write_frame(frame).await?;
                    if is_close {
                        return Ok(());
                    }
                }
                msg = rx.recv() => match msg {
                    Ok((from, (opcode, payload))) if from != id => {
                        let frame = Frame::new(true, opcode, None, Payload::Borrowed(&payload));
                        write.write_frame(frame).await?;
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return Ok::<_, WebSocketError>(()),
                },
            }
        }
    });
    let mut send_obligated = |frame: Frame<'static>| {
        let sent = control_tx.send(frame).map_err(|_| WebSocketError::ConnectionClosed);
        std::future::ready(sent)
    };
    let result = loop {
        let frame = match read.read_frame(&mut send_obligated).await {
            Ok(frame) => frame,
            Err(e) => break Err(e),
        };
        match frame.opcode {
            OpCode::Close => break Ok(()),
            OpCode::Text | OpCode::Binary => {
                let payload = match frame.payload {
                    Payload::Bytes(b) => b.freeze(),
                    other => Bytes::copy_from_slice(&other),
                };
                hub.publish(id, (frame.opcode, payload));
            }
            _ => {}
        }
    };
    // The close reply, if any, is queued: let the writer send it, then stop.
    drop(control_tx);
    let _ = writer.await;
    result
}
