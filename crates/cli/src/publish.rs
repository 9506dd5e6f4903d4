//! `switchboard publish`: publish one message, or one per line of standard input, and
//! print each acknowledgement.
//!
//! Over a WebSocket with `switchboard-client` by default; with an API key, through the HTTP
//! API (`POST /api/publish`, `docs/api.md`) on the same server. The HTTP side uses hyper's
//! connection-level client (`hyper::client::conn::http1`): hyper is already in the build for
//! the server, and it gets response framing (lengths, chunks, keep-alive) right where a
//! hand-written HTTP/1.1 reader would be new code to test. One connection is enough (the
//! publishes go one at a time), so there is no pool and no `hyper-util` client.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use switchboard_client::connect::HttpRefusal;
use switchboard_client::{Client, Error, ServerUrl, Transport};
use switchboard_proto::Value;

use crate::common::{self, CommonArgs, ProtocolArg, close, failure};

/// Flags of `switchboard publish`.
#[derive(Debug, clap::Args)]
pub(crate) struct PublishArgs {
    /// Server URL: ws://, wss://, http:// or https:// (read as ws:// and wss://). Without a
    /// path: /ws. With --api-key only the host and port count.
    #[arg(value_parser = common::server_url)]
    url: ServerUrl,
    /// The channel.
    channel: String,
    /// The data: JSON, or a plain string when it is not JSON (`'"42"'` publishes the string
    /// "42"). Without it, each line of standard input is published, in order, each one
    /// acknowledged before the next; blank lines are skipped.
    data: Option<String>,
    /// Publish through the HTTP API (`POST /api/publish` on the same host and port) with this
    /// key instead of over a WebSocket. Prefer the environment variable: a command-line
    /// argument is visible to every user of the machine.
    #[arg(long, env = "SWITCHBOARD_API_KEY", hide_env_values = true, value_name = "KEY")]
    api_key: Option<String>,
    /// Wire format (WebSocket only).
    #[arg(long, value_enum, default_value_t)]
    protocol: ProtocolArg,
    #[command(flatten)]
    common: CommonArgs,
}

/// Runs `switchboard publish`.
pub(crate) fn run(args: &PublishArgs) -> anyhow::Result<ExitCode> {
    common::runtime()?.block_on(publish(args))
}

/// The acknowledgement, as printed: the publication's position.
#[derive(Debug, Deserialize, Serialize)]
struct Ack {
    offset: u64,
    epoch: String,
}

async fn publish(args: &PublishArgs) -> anyhow::Result<ExitCode> {
    let target = args.url.clone().with_default_path("/ws");
    let mut publisher = match &args.api_key {
        Some(key) => Publisher::Http(Box::new(Http::new(target, key, &args.common)?)),
        None => {
            let client =
                common::client(&target, &args.common, args.protocol.into(), Transport::WebSocket)?;
            common::first_connection(&client, &target, args.common.timeout).await?;
            Publisher::Ws { client, limit: args.common.timeout + REPLY_TIMEOUT }
        }
    };
    let result = async {
        match &args.data {
            Some(data) => publisher.publish_and_print(&args.channel, data).await,
            None => {
                let mut lines = common::stdin_lines()?;
                while let Some(line) = lines.recv().await {
                    let line = line.context("cannot read standard input")?;
                    if !line.trim().is_empty() {
                        publisher.publish_and_print(&args.channel, &line).await?;
                    }
                }
                Ok(())
            }
        }
    }
    .await;
    if let Publisher::Ws { client, .. } = &publisher {
        close(client).await;
    }
    result.map(|()| ExitCode::SUCCESS)
}

/// Where publications go.
enum Publisher {
    /// A WebSocket connection; each publish waits at most `limit` (through a reconnection).
    Ws { client: Client, limit: Duration },
    /// The HTTP API.
    Http(Box<Http>),
}

impl Publisher {
    async fn publish_and_print(&mut self, channel: &str, data: &str) -> anyhow::Result<()> {
        let data = parse_data(data);
        let ack = match self {
            Publisher::Ws { client, limit } => {
                match tokio::time::timeout(*limit, client.publish(channel, data)).await {
                    Ok(Ok(ack)) => Ack { offset: ack.offset, epoch: ack.epoch },
                    Ok(Err(e)) => bail!("cannot publish to {channel}: {}", ws_failure(client, &e)),
                    Err(_) => bail!(
                        "cannot publish to {channel}: no acknowledgement within {}",
                        humantime::format_duration(*limit)
                    ),
                }
            }
            Publisher::Http(http) => http.publish(channel, &data).await?,
        };
        let line = serde_json::to_string(&ack).context("cannot encode the acknowledgement")?;
        common::print_line(line.as_bytes()).context("cannot write to standard output")?;
        Ok(())
    }
}

fn ws_failure(client: &Client, e: &Error) -> String {
    match e {
        Error::Disconnected => {
            "connection lost before the acknowledgement: it may or may not have happened".to_owned()
        }
        other => failure(client, other),
    }
}

/// `POST /api/publish` over one kept-alive connection, opened again when the server closes
/// it.
struct Http {
    target: ServerUrl,
    authorization: header::HeaderValue,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Http {
    fn new(target: ServerUrl, key: &str, common: &CommonArgs) -> anyhow::Result<Self> {
        let authorization = header::HeaderValue::from_str(&format!("apikey {key}"))
            .ok()
            .filter(|_| !key.is_empty() && key.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| anyhow!("--api-key must be printable ASCII without spaces"))?;
        let tls = if target.is_tls() {
            Some(common::tls_config(common.cacert.as_deref())?)
        } else {
            None
        };
        Ok(Self { target, authorization, tls, timeout: common.timeout, sender: None })
    }

    async fn publish(&mut self, channel: &str, data: &Value) -> anyhow::Result<Ack> {
        let url = self.target.http_url(PUBLISH_PATH);
        let body = serde_json::to_vec(&PublishBody { channel, data })
            .context("cannot encode the request")?;
        let request = Request::post(PUBLISH_PATH)
            .header(header::HOST, self.target.authority())
            .header(header::AUTHORIZATION, self.authorization.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .context("cannot build the request")?;
        let sender = self.sender().await?;
        let exchange = async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        };
        let (status, body) = tokio::time::timeout(REPLY_TIMEOUT, exchange)
            .await
            .map_err(|_| {
                anyhow!(
                    "cannot publish to {channel}: no answer from {url} within {}",
                    humantime::format_duration(REPLY_TIMEOUT)
                )
            })?
            .with_context(|| format!("cannot publish to {channel}: request to {url} failed"))?;
        if status == StatusCode::OK {
            return serde_json::from_slice(&body).with_context(|| {
                format!("cannot publish to {channel}: unexpected answer from {url}")
            });
        }
        let refusal = HttpRefusal::from_body(status.as_u16(), &body);
        bail!("cannot publish to {channel}: {url} answered {refusal}")
    }

    /// The open connection's sender, connecting first when there is none.
    async fn sender(&mut self) -> anyhow::Result<&mut SendRequest<Full<Bytes>>> {
        if self.sender.as_ref().is_some_and(SendRequest::is_closed) {
            self.sender = None;
        }
        if self.sender.is_none() {
            let open = common::open_stream(&self.target, self.tls.as_ref());
            let io = tokio::time::timeout(self.timeout, open).await.map_err(|_| {
                anyhow!(
                    "cannot connect to {}: no answer within {}",
                    self.target.addr(),
                    humantime::format_duration(self.timeout)
                )
            })??;
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
                .await
                .with_context(|| format!("cannot talk HTTP/1.1 to {}", self.target.addr()))?;
            // Drives the connection; ends when the sender is dropped or the server closes.
            tokio::spawn(async move {
                let _ = connection.await;
            });
            self.sender = Some(sender);
        }
        // Set just above when it was not.
        self.sender.as_mut().context("no connection")
    }
}

/// The body of `POST /api/publish`.
#[derive(Serialize)]
struct PublishBody<'a> {
    channel: &'a str,
    data: &'a Value,
}

/// A command-line payload: JSON when it parses as JSON, else the text as a string.
fn parse_data(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

const PUBLISH_PATH: &str = "/api/publish";
/// How long a publish waits for its acknowledgement (the client's default ack timeout).
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_json_when_it_parses_else_a_string() {
        assert_eq!(parse_data(r#"{"text":"hi"}"#), serde_json::json!({"text": "hi"}));
        assert_eq!(parse_data("42"), serde_json::json!(42));
        assert_eq!(parse_data(r#""42""#), serde_json::json!("42"));
        assert_eq!(parse_data("hello world"), serde_json::json!("hello world"));
        assert_eq!(parse_data("{oops"), serde_json::json!("{oops"));
    }
}
