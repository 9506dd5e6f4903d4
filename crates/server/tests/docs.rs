//! The documents say what the server does: checks cheap enough to keep them honest.

use std::time::Duration;

use switchboard_codec::CloseCode;
use switchboard_test_support::client::WsClient;
use switchboard_test_support::server::{TestServer, open_config};

const LIMIT: Duration = Duration::from_secs(5);

fn doc(name: &str) -> String {
    let path = format!("{}/../../docs/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn api_contents_list_every_endpoint() {
    let api = doc("api.md");
    let (contents, body) = api.split_once("## 1. Conventions").expect("a contents list");
    let endpoints: Vec<&str> = body
        .lines()
        .filter_map(|line| line.strip_prefix("### `"))
        .filter_map(|rest| rest.strip_suffix('`'))
        .collect();
    assert!(endpoints.len() >= 6, "{endpoints:?}");
    for endpoint in endpoints {
        // GitHub's anchors: lower case, without the punctuation but `-` and `_`.
        let anchor: String = endpoint
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let entry = format!("[`{endpoint}`](#{anchor})");
        assert!(contents.contains(&entry), "the contents lack {entry}");
    }
}

#[tokio::test]
async fn a_clients_close_code_is_echoed_as_protocol_md_says() {
    // Compared with the lines unwrapped.
    let protocol = doc("protocol.md").split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        protocol.contains("a client closing with 1000 gets 1000, one closing with 3001 gets 3001"),
        "§8 no longer describes the echo"
    );
    let server = TestServer::start(open_config()).await;
    for code in [1000, 3001, 4500] {
        let mut ws = WsClient::connect(server.addr, "/ws").await.unwrap();
        ws.close(CloseCode(code), "bye").await.unwrap();
        assert_eq!(ws.expect_close(LIMIT).await.unwrap(), Some(CloseCode(code)));
    }
}

#[tokio::test]
async fn anonymous_unauthorized_in_the_default_namespace_is_explained_by_protocol_md() {
    let protocol = doc("protocol.md");
    let section = |from: &str, to: &str| {
        let start = protocol.find(from).unwrap_or_else(|| panic!("no {from}"));
        let end = protocol[start..].find(to).map_or(protocol.len(), |n| start + n);
        protocol[start..end].to_owned()
    };
    let options = section("### Namespace options", "## 7.");
    assert!(options.contains("Anonymous access (`anonymous`)"), "{options}");
    let unwrapped = options.split_whitespace().collect::<Vec<_>>().join(" ");
    let news = "subscribing to `news` (the default namespace) fails with `unauthorized`";
    assert!(unwrapped.contains(news), "{options}");
    let errors = section("## 7. Error codes", "## 8.");
    let row = errors.lines().find(|l| l.starts_with("| `unauthorized`")).expect("a row");
    assert!(row.contains("anonymous connections"), "{row}");

    // What the doc describes: the built-in configuration, no token, `news`.
    let server = TestServer::start(switchboard_server::Config::default()).await;
    let mut ws = WsClient::connect(server.addr, "/ws").await.unwrap();
    let subscribe = r#"{"id":1,"type":"subscribe","channel":"news"}"#;
    ws.send(switchboard_codec::Message::text(subscribe)).await.unwrap();
    let reply = loop {
        match ws.recv_timeout(LIMIT).await.unwrap() {
            Some(switchboard_codec::Event::Text(text)) => break text,
            Some(_) => {}
            None => panic!("closed"),
        }
    };
    let reply: serde_json::Value = serde_json::from_slice(&reply).unwrap();
    assert_eq!(reply["error"]["code"], "unauthorized", "{reply}");
    // The reply the section shows, message and all, is the one the server sends.
    let shown = options
        .lines()
        .find(|line| line.starts_with(r#"{"id": 1, "error": {"code": "unauthorized""#))
        .expect("an example reply");
    let shown: serde_json::Value = serde_json::from_str(shown).expect("JSON");
    assert_eq!(reply, shown);
}
