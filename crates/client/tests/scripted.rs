//! Behaviour a correct server never provokes, against a scripted one: duplicates and gaps,
//! the server ending subscriptions, silence, close codes and refusals.

mod support;

use std::time::Duration;

use serde_json::json;
use switchboard_client::{
    ConnectionState, DisconnectReason, Error, ErrorCode, PublishQueue, SubscriptionEvent,
};
use tokio::time::timeout;

use support::{LIMIT, ScriptedConn, ScriptedServer, fast, next_event, wait_state};

/// Subscribes `client` to `channel` through `conn`, answering with `result`.
async fn subscribe(
    client: &switchboard_client::Client,
    conn: &mut ScriptedConn,
    channel: &str,
    result: serde_json::Value,
) -> switchboard_client::Subscription {
    let subscribing = tokio::spawn({
        let client = client.clone();
        let channel = channel.to_owned();
        async move { client.subscribe(channel).await }
    });
    let command = conn.recv().await;
    assert_eq!((&command["type"], &command["channel"]), (&json!("subscribe"), &json!(channel)));
    conn.reply(&command, result).await;
    timeout(LIMIT, subscribing).await.expect("in time").expect("task").expect("subscribed")
}

fn publication(offset: u64) -> SubscriptionEvent {
    SubscriptionEvent::Publication(switchboard_client::Publication {
        offset,
        data: json!(offset),
        info: None,
    })
}

#[tokio::test]
async fn duplicates_are_dropped_and_a_gap_resubscribes_with_since() {
    let server = ScriptedServer::bind().await;
    let client = fast(&server.url()).build().expect("build");
    let mut conn = server.accept_connected(25).await;
    let result = json!({"epoch": "e1", "offset": 5, "recoverable": true});
    let mut sub = subscribe(&client, &mut conn, "ch", result).await;

    for offset in [6, 6, 5, 7, 9] {
        conn.publication("ch", offset).await;
    }
    let unsubscribe = conn.recv().await;
    assert_eq!(unsubscribe["type"], "unsubscribe");
    conn.reply(&unsubscribe, json!({})).await;
    let resubscribe = conn.recv().await;
    assert_eq!(resubscribe["type"], "subscribe");
    assert_eq!(resubscribe["since"], json!({"offset": 7, "epoch": "e1"}));
    let recovered = json!({
        "epoch": "e1", "offset": 9, "recoverable": true, "recovered": true,
        "publications": [
            {"offset": 7, "data": 7}, {"offset": 8, "data": 8}, {"offset": 9, "data": 9}
        ]
    });
    conn.reply(&resubscribe, recovered).await;
    conn.publication("ch", 9).await;
    conn.publication("ch", 10).await;

    let mut events = Vec::new();
    for _ in 0..6 {
        events.push(next_event(&mut sub).await);
    }
    let expected = vec![
        publication(6),
        publication(7),
        SubscriptionEvent::Recovered { recovered: true },
        publication(8),
        publication(9),
        publication(10),
    ];
    assert_eq!(events, expected);
    let position = sub.position().expect("a position");
    assert_eq!((position.offset, position.epoch.as_str()), (10, "e1"));
}

#[tokio::test]
async fn the_server_ending_a_subscription_is_retried_only_when_temporary() {
    let server = ScriptedServer::bind().await;
    let client = fast(&server.url()).build().expect("build");
    let mut conn = server.accept_connected(25).await;
    let result = json!({"epoch": "e1", "offset": 0, "recoverable": true});
    let mut sub = subscribe(&client, &mut conn, "ch", result).await;
    conn.publication("ch", 1).await;
    assert_eq!(next_event(&mut sub).await, publication(1));

    let push = json!({"push": "unsubscribe", "channel": "ch", "code": "unavailable",
        "reason": "too many publications while subscribing: resubscribe with `since`"});
    conn.send(push).await;
    let resubscribe = conn.recv().await;
    assert_eq!(resubscribe["since"], json!({"offset": 1, "epoch": "e1"}));
    let lost = json!({"epoch": "e2", "offset": 4, "recoverable": true, "recovered": false});
    conn.reply(&resubscribe, lost).await;
    conn.publication("ch", 5).await;
    assert_eq!(next_event(&mut sub).await, SubscriptionEvent::Recovered { recovered: false });
    assert_eq!(next_event(&mut sub).await, publication(5));

    let push = json!({"push": "unsubscribe", "channel": "ch", "code": "permission_denied",
        "reason": "revoked"});
    conn.send(push).await;
    let ended = SubscriptionEvent::Unsubscribed {
        code: ErrorCode::PermissionDenied,
        reason: "revoked".to_owned(),
    };
    assert_eq!(next_event(&mut sub).await, ended);
    assert_eq!(timeout(LIMIT, sub.recv()).await.expect("the stream to end"), None);
}

#[tokio::test]
async fn silence_past_ping_interval_and_margin_reconnects() {
    let server = ScriptedServer::bind().await;
    let client =
        fast(&server.url()).heartbeat_margin(Duration::from_millis(200)).build().expect("build");
    let mut first = server.accept_connected(1).await;
    // Nothing is sent: after 1.2 s the client gives up on this connection.
    let _second = server.accept().await;
    assert!(first.closed_within(Duration::from_secs(1)).await);
    let state = wait_state(&client, |s| s.state == ConnectionState::Connecting).await;
    assert_eq!(state.reason, Some(DisconnectReason::HeartbeatTimeout), "{state:?}");
}

#[tokio::test]
async fn close_codes_follow_their_advice() {
    let server = ScriptedServer::bind().await;
    let client = fast(&server.url()).build().expect("build");
    let mut first = server.accept_connected(25).await;
    first.close(4000, "reconnect, please").await;
    let mut second = server.accept_connected(25).await;
    second.close(4401, "banned").await;
    let state = wait_state(&client, |s| s.state == ConnectionState::Closed).await;
    let banned = DisconnectReason::Closed { code: 4401, reason: "banned".to_owned() };
    assert_eq!(state.reason, Some(banned));
    assert!(!server.connection_within(Duration::from_millis(300)).await, "reconnected");
}

#[tokio::test]
async fn a_disconnect_push_stands_in_for_a_missing_close_frame() {
    let server = ScriptedServer::bind().await;
    let client = fast(&server.url()).build().expect("build");
    let mut conn = server.accept_connected(25).await;
    conn.send(json!({"push": "disconnect", "code": 4403, "reason": "gone", "advice": "stop"}))
        .await;
    drop(conn);
    let state = wait_state(&client, |s| s.state == ConnectionState::Closed).await;
    assert_eq!(state.reason, Some(DisconnectReason::Closed { code: 4403, reason: "gone".into() }));
}

#[tokio::test]
async fn a_lost_publish_fails_and_a_lost_read_is_sent_again() {
    let server = ScriptedServer::bind().await;
    let client = fast(&server.url()).build().expect("build");
    let mut conn = server.accept_connected(25).await;
    let publish = tokio::spawn({
        let client = client.clone();
        async move { client.publish("ch", 1).await }
    });
    assert_eq!(conn.recv().await["type"], "publish");
    let presence = tokio::spawn({
        let client = client.clone();
        async move { client.presence("ch").await }
    });
    assert_eq!(conn.recv().await["type"], "presence");
    drop(conn);

    let lost = timeout(LIMIT, publish).await.expect("in time").expect("task");
    assert!(matches!(lost, Err(Error::Disconnected)), "{lost:?}");
    let mut again = server.accept_connected(25).await;
    let retried = again.recv().await;
    assert_eq!(retried["type"], "presence");
    again.reply(&retried, json!({"clients": [{"client": "c9", "user": "bob"}]})).await;
    let clients = timeout(LIMIT, presence).await.expect("in time").expect("task").expect("ok");
    assert_eq!(clients[0].user.as_deref(), Some("bob"));
}

#[tokio::test]
async fn an_unanswered_publish_times_out_and_the_connection_stays() {
    let server = ScriptedServer::bind().await;
    let client = fast(&server.url())
        .ack_timeout(Duration::from_millis(300))
        .publish_queue(PublishQueue::Reject)
        .build()
        .expect("build");
    let mut conn = server.accept_connected(25).await;
    support::connected(&client).await;
    let publish = tokio::spawn({
        let client = client.clone();
        async move { client.publish("ch", 1).await }
    });
    assert_eq!(conn.recv().await["type"], "publish");
    let result = timeout(LIMIT, publish).await.expect("in time").expect("task");
    assert!(matches!(result, Err(Error::Timeout(_))), "{result:?}");
    assert_eq!(client.state().state, ConnectionState::Connected);
    assert_eq!(client.state().connections, 1);
}

#[tokio::test]
async fn a_refused_connect_stops_and_retry_after_is_a_minimum() {
    let server = ScriptedServer::bind().await;
    let client = fast(&server.url()).build().expect("build");
    let body = r#"{"error":{"code":"handshake_rate","message":"slow down"}}"#;
    let response = format!(
        "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    server.refuse(&response).await;
    let state = wait_state(&client, |s| s.state == ConnectionState::Reconnecting).await;
    assert!(state.retry_in >= Some(Duration::from_secs(1)), "{state:?}");
    match state.reason {
        Some(DisconnectReason::Refused { status: 429, code, message, retry_after }) => {
            assert_eq!(code.as_deref(), Some("handshake_rate"));
            assert_eq!(message, "slow down");
            assert_eq!(retry_after, Some(Duration::from_secs(1)));
        }
        other => panic!("expected a 429 refusal, got {other:?}"),
    }

    // Then the server refuses `connect` itself: credentials refused, stop.
    let mut conn = server.accept().await;
    let connect = conn.recv().await;
    let refusal = json!({"id": connect["id"], "error":
        {"code": "unauthorized", "message": "who are you", "temporary": false}});
    conn.send(refusal).await;
    let state = wait_state(&client, |s| s.state == ConnectionState::Closed).await;
    let expected = DisconnectReason::ConnectRefused {
        code: ErrorCode::Unauthorized,
        message: "who are you".to_owned(),
    };
    assert_eq!(state.reason, Some(expected));
}

#[tokio::test]
async fn a_cancelled_subscribe_is_undone_and_replaced() {
    let server = ScriptedServer::bind().await;
    let client = fast(&server.url()).build().expect("build");
    let mut conn = server.accept_connected(25).await;
    let cancelled = tokio::spawn({
        let client = client.clone();
        async move { client.subscribe("ch").await }
    });
    let first = conn.recv().await;
    assert_eq!(first["type"], "subscribe");
    cancelled.abort();
    let _ = cancelled.await;

    let replacing = tokio::spawn({
        let client = client.clone();
        async move { client.subscribe("ch").await }
    });
    let unsubscribe = conn.recv().await;
    assert_eq!(unsubscribe["type"], "unsubscribe");
    let second = conn.recv().await;
    assert_eq!(second["type"], "subscribe");
    // Replies in order: the first subscribe's is stale and ignored.
    conn.reply(&first, json!({"epoch": "e1", "offset": 3, "recoverable": true})).await;
    conn.reply(&unsubscribe, json!({})).await;
    conn.reply(&second, json!({"epoch": "e1", "offset": 3, "recoverable": true})).await;
    let mut sub =
        timeout(LIMIT, replacing).await.expect("in time").expect("task").expect("subscribed");
    conn.publication("ch", 4).await;
    assert_eq!(next_event(&mut sub).await, publication(4));
}
