//! Input that would stall subscribers, as the transports see it: the HTTP API refuses
//! data nested too deep and look-alike channel names, and a refused command is counted in
//! the metrics. What `/ws` clients get for such input is tested in memory
//! (`protocol/inputs.rs`).

use std::net::SocketAddr;

use serde_json::{Value, json};
use switchboard_proto::MAX_DEPTH;
use switchboard_test_support::client::WsClient;
use switchboard_test_support::http;
use switchboard_test_support::metrics::scrape;
use switchboard_test_support::protocol::{ProtocolClient, Strict};
use switchboard_test_support::server::{TestServer, open_config};

const KEY: &str = "k3y-for-input-tests-0123456789";

#[tokio::test]
async fn msgpack_publication_too_deep_for_json_is_counted_as_a_bad_request() {
    let server = TestServer::start(open_config()).await;
    let mut publisher = ProtocolClient::connect_msgpack(server.addr).await;
    let deep = json!({"id": 7, "type": "publish", "channel": "room", "data": nested(200)});
    publisher.send(&deep).await;
    let reply = publisher.reply(7).await;
    assert_eq!(reply["error"]["code"], "bad_request", "{reply}");

    let metrics = scrape(server.addr).await;
    assert!(
        metrics.lines().any(|l| l == "switchboard_command_errors_total{reason=\"bad_request\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn api_refuses_data_nested_deeper_than_ws_clients_may_publish() {
    let mut config = open_config();
    config.api_key = Some(KEY.into());
    let server = TestServer::start(config).await;
    let mut subscriber = strict_json(server.addr).await;
    subscriber.subscribe("room").await;
    let too_deep = format!("`data` nests deeper than {MAX_DEPTH} levels of arrays and maps");
    for (path, body) in [
        ("/api/publish", json!({"channel": "room", "data": nested(MAX_DEPTH + 1)})),
        ("/api/broadcast", json!({"channels": ["room"], "data": nested(100)})),
    ] {
        let (status, reply) = post(server.addr, path, &body).await;
        assert_eq!(status, 400, "{path}: {reply}");
        assert_eq!(reply["error"]["code"], "bad_request", "{reply}");
        assert_eq!(reply["error"]["message"], too_deep, "{reply}");
    }
    let body = json!({"channel": "room", "data": nested(MAX_DEPTH)});
    let (status, reply) = post(server.addr, "/api/publish", &body).await;
    assert_eq!((status, &reply["offset"]), (200, &json!(1)), "{reply}");
    assert_eq!(subscriber.next_publication().await["data"], nested(MAX_DEPTH));
}

#[tokio::test]
async fn api_refuses_channel_names_with_invisible_or_bidi_characters() {
    let mut config = open_config();
    config.api_key = Some(KEY.into());
    let server = TestServer::start(config).await;
    let cases = [
        ("lobby\u{202E}gnp", "U+202E, a bidi control character"),
        ("lob\u{200B}by", "U+200B, an invisible formatting character"),
        ("\u{FEFF}lobby", "U+FEFF, an invisible formatting character"),
        ("lobby\u{2066}", "U+2066, a bidi control character"),
    ];
    for (channel, what) in cases {
        let message = format!("channel name holds {what}");
        let (status, reply) =
            post(server.addr, "/api/publish", &json!({"channel": channel, "data": 1})).await;
        assert_eq!(status, 400, "{reply}");
        assert_eq!(reply["error"]["code"], "invalid_channel", "{reply}");
        assert_eq!(reply["error"]["message"], message, "{reply}");
    }
}

/// Null in `levels` arrays.
fn nested(levels: usize) -> Value {
    (0..levels).fold(Value::Null, |inner, _| Value::Array(vec![inner]))
}

/// A JSON client whose every received message must decode as a `ServerMessage`, as a
/// client library would decode it.
async fn strict_json(addr: SocketAddr) -> ProtocolClient<Strict<WsClient>> {
    let ws = WsClient::connect(addr, "/ws").await.expect("connect to /ws");
    ProtocolClient::new(Strict(ws), switchboard_proto::Format::Json)
}

/// `POST` with the API key; the status and the JSON body.
async fn post(addr: SocketAddr, path: &str, body: &Value) -> (u16, Value) {
    let key = format!("apikey {KEY}");
    let headers = [("Authorization", key.as_str()), ("Content-Type", "application/json")];
    let response = http::request(addr, "POST", path, &headers, &body.to_string()).await;
    (response.status, response.json())
}
