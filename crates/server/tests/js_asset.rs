//! `GET /switchboard.js`: the browser client built into the server.

use switchboard_test_support::client::WsClient;
use switchboard_test_support::server::TestServer;

const CLIENT: &str = switchboard_js::SOURCE;

fn request(method: &str, addr: std::net::SocketAddr) -> String {
    format!("{method} /switchboard.js HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
}

#[tokio::test]
async fn serves_the_js_client_as_a_module_any_origin_may_load() {
    let server = TestServer::start(switchboard_server::Config::default()).await;
    let response = WsClient::expect_refusal(server.addr, request("GET", server.addr).as_bytes())
        .await
        .expect("a response");
    assert_eq!(response.status, 200, "{}", response.response);
    let (head, body) = response.response.split_once("\r\n\r\n").expect("a head and a body");
    let head = head.to_ascii_lowercase();
    assert!(head.contains("content-type: text/javascript; charset=utf-8"), "{head}");
    assert!(head.contains("access-control-allow-origin: *"), "{head}");
    assert!(head.contains(&format!("content-length: {}", CLIENT.len())), "{head}");
    assert_eq!(body, CLIENT);
    assert!(body.contains("export class Switchboard"));
}

#[tokio::test]
async fn head_has_no_body_and_other_methods_are_refused() {
    let server = TestServer::start(switchboard_server::Config::default()).await;
    let head = WsClient::expect_refusal(server.addr, request("HEAD", server.addr).as_bytes())
        .await
        .expect("a response");
    assert_eq!(head.status, 200, "{}", head.response);
    assert!(head.response.ends_with("\r\n\r\n"), "{}", head.response);
    let post = WsClient::expect_refusal(server.addr, request("POST", server.addr).as_bytes())
        .await
        .expect("a response");
    assert_eq!(post.status, 405, "{}", post.response);
    assert!(post.response.to_ascii_lowercase().contains("allow: get, head"), "{}", post.response);
}
