//! Stored responses over time and after a delete: a response past `[responses] ttl`, or
//! deleted, is a 404 in OpenAI's shape to `previous_response_id` (streamed or not), `GET`,
//! `input_items` and `DELETE`; expired rows are deleted by the purge, which runs as the
//! gateway starts and every 10 minutes of its clock while it runs. Time is the test's clock, moved by `TestClock::advance`, never
//! waited for.

use std::time::Duration;

use serde_json::{json, Value};

use super::responses::{config, events, ledger_rows, output_text, post_as, OTHER_KEY};
use crate::common::*;

/// The `[responses] ttl` of these tests.
const TTL: Duration = Duration::from_secs(3600);

fn ttl_config(mock: &MockUpstream) -> String {
    config("compatible", mock, "[responses]\nttl = \"1h\"")
}

/// Creates a stored response to `input` (continuing `previous`) and returns it.
async fn create(gw: &TestGateway, input: &str, previous: Option<&str>) -> Value {
    let mut body = json!({"model": "m", "input": input});
    if let Some(previous) = previous {
        body["previous_response_id"] = json!(previous);
    }
    let resp = gw.post("/v1/responses", body).await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn send(
    gw: &TestGateway,
    key: &str,
    method: reqwest::Method,
    path: &str,
) -> reqwest::Response {
    gw.client
        .request(method, gw.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

/// `GET /v1/responses/{id}` with the test key, which must answer.
async fn stored(gw: &TestGateway, id: &str) -> Value {
    let resp = send(
        gw,
        KEY,
        reqwest::Method::GET,
        &format!("/v1/responses/{id}"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// The statuses of ledger `rows`, sorted: rows of calls made in one millisecond (the
/// test clock stands still) come back in no set order.
fn statuses(rows: Vec<bazaar::billing::ledger::LedgerRow>) -> Vec<i32> {
    let mut statuses: Vec<i32> = rows.iter().map(|r| r.status).collect();
    statuses.sort_unstable();
    statuses
}

/// Asserts that every way of reaching response `id` is OpenAI's 404 naming it: a
/// continuation (plain and streamed: the error comes before any stream), `GET`,
/// `input_items` and `DELETE`.
async fn gone(gw: &TestGateway, id: &str) {
    for stream in [false, true] {
        let resp = gw
            .post(
                "/v1/responses",
                json!({"model": "m", "input": "hi", "previous_response_id": id, "stream": stream}),
            )
            .await;
        let e = expect_error(resp, 404).await;
        assert_eq!(e["param"], "previous_response_id", "{e}");
        assert!(e["message"].as_str().unwrap().contains(id), "{e}");
    }
    let paths = [
        format!("/v1/responses/{id}"),
        format!("/v1/responses/{id}/input_items"),
    ];
    for path in &paths {
        let e = expect_error(send(gw, KEY, reqwest::Method::GET, path).await, 404).await;
        assert!(e["message"].as_str().unwrap().contains(id), "{path}: {e}");
    }
    expect_error(send(gw, KEY, reqwest::Method::DELETE, &paths[0]).await, 404).await;
}

/// Issue 15: a `previous_response_id` past its TTL is a 404 in OpenAI's shape, as are
/// `GET`, `input_items` and `DELETE` of it, whether the response is still in memory or
/// read from the database; the purge deletes expired rows and keeps live ones.
#[tokio::test]
async fn issue_15_an_expired_response_is_a_404_everywhere_and_purged() {
    expires_and_is_purged(None).await;
}

/// The same on a PostgreSQL ledger.
#[tokio::test]
async fn issue_15_an_expired_response_is_a_404_and_purged_on_postgres() {
    let test = "responses_stored::issue_15_an_expired_response_is_a_404_and_purged_on_postgres";
    let Some(url) = fresh_postgres(test).await else {
        return;
    };
    expires_and_is_purged(Some(&url)).await;
    drop_postgres(&url).await;
}

/// The expiry test on the ledger at `ledger` (a temporary SQLite file when `None`).
async fn expires_and_is_purged(ledger: Option<&str>) {
    let clock = TestClock::new();
    let mock = MockUpstream::start().await;
    let toml = match ledger {
        Some(url) => config(
            "compatible",
            &mock,
            &format!("[ledger]\nurl = \"{url}\"\n[responses]\nttl = \"1h\""),
        ),
        None => ttl_config(&mock),
    };
    let gw = TestGateway::start_with_clock(&toml, &clock).await;
    let old = create(&gw, "My name is Ada.", None).await;
    let old_id = old["id"].as_str().unwrap();

    // Alive up to its last millisecond.
    clock.advance(TTL - Duration::from_millis(1));
    assert_eq!(stored(&gw, old_id).await, old);
    let resp = gw
        .post(
            "/v1/responses",
            json!({"model": "m", "input": "Who am I?", "previous_response_id": old_id, "store": false}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let sent = mock.received().pop().unwrap().body;
    assert_eq!(sent["messages"][1]["content"], output_text(&old).as_str());

    // Expired.
    clock.advance(Duration::from_millis(1));
    gone(&gw, old_id).await;
    assert_eq!(mock.received().len(), 2, "a 404 calls no backend");

    // A response saved now lives its own TTL.
    let new = create(&gw, "Hello", None).await;
    let new_id = new["id"].as_str().unwrap().to_string();
    let dir = gw.dir.clone();
    // The shutdown writes the stored responses to the database.
    assert_eq!(
        statuses(ledger_rows(gw).await),
        [200, 200, 200, 404, 404],
        "every call is a ledger row"
    );

    // Restarted on the same database: the purge as it starts deletes the expired row only.
    let gw = TestGateway::restart(&toml, &dir, &clock).await;
    gw.state.responses.get().unwrap().purged(1).await;
    let pool = gw.state.billing.connected().unwrap().ledger.pool().clone();
    let kept: Vec<String> = sqlx::query_scalar("SELECT id FROM stored_responses")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(kept, [new_id.as_str()]);
    // Read from the database: alive, then expired at its TTL.
    assert_eq!(stored(&gw, &new_id).await, new);
    gone(&gw, old_id).await;
    clock.advance(TTL);
    gone(&gw, &new_id).await;
    // Its rows written before the database goes.
    gw.shutdown().await.unwrap();
}

/// Issue 15: while the gateway runs, expired stored responses are deleted every 10
/// minutes of its clock, live ones kept. The writer looks whether a purge is due after
/// each batch it writes, so a save made after the clock moved brings the purge about; the
/// test waits for the purge of that moment, never for time.
#[tokio::test]
async fn issue_15_expired_responses_are_purged_while_the_gateway_runs() {
    let clock = TestClock::new();
    let now = clock.clock();
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start_with_clock(&ttl_config(&mock), &clock).await;
    let store = gw.state.responses.get().unwrap().clone();
    let pool = gw.state.billing.connected().unwrap().ledger.pool().clone();
    let rows = || async {
        let mut ids: Vec<String> = sqlx::query_scalar("SELECT id FROM stored_responses")
            .fetch_all(&pool)
            .await
            .unwrap();
        ids.sort_unstable();
        ids
    };
    store.purged(1).await;
    let old = create(&gw, "My name is Ada.", None).await;
    let old_id = old["id"].as_str().unwrap().to_string();

    // Ten minutes on, a purge is due; nothing has expired, so nothing goes.
    clock.advance(Duration::from_secs(600));
    let mid = create(&gw, "Hello", None).await;
    let mid_id = mid["id"].as_str().unwrap().to_string();
    store.purged_through(now()).await;
    assert!(rows().await.contains(&old_id));

    // At the first response's TTL, the next purge deletes it and keeps the second.
    clock.advance(TTL - Duration::from_secs(600));
    create(&gw, "Again", None).await;
    store.purged_through(now()).await;
    let kept = rows().await;
    assert!(!kept.contains(&old_id), "{kept:?}");
    assert!(kept.contains(&mid_id), "{kept:?}");
    assert_eq!(stored(&gw, &mid_id).await, mid);
    gone(&gw, &old_id).await;

    // At the second's TTL (ten minutes later), it goes too.
    clock.advance(Duration::from_secs(600));
    create(&gw, "Once more", None).await;
    store.purged_through(now()).await;
    assert!(!rows().await.contains(&mid_id));
    assert_eq!(
        statuses(ledger_rows(gw).await),
        [200, 200, 200, 200, 404, 404],
        "every call is a ledger row"
    );
}

/// Issue 15: a deleted response cannot be continued, read or deleted again, by its key or
/// another; the continuations it had keep their own copy of the conversation.
#[tokio::test]
async fn issue_15_a_deleted_response_is_a_404_and_its_continuations_live_on() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&ttl_config(&mock)).await;
    let first = create(&gw, "My name is Ada.", None).await;
    let first_id = first["id"].as_str().unwrap();
    let second = create(&gw, "Who am I?", Some(first_id)).await;
    let second_id = second["id"].as_str().unwrap();

    // Another key's delete is a 404 and changes nothing.
    let path = format!("/v1/responses/{first_id}");
    let resp = send(&gw, OTHER_KEY, reqwest::Method::DELETE, &path).await;
    expect_error(resp, 404).await;
    let resp = send(&gw, KEY, reqwest::Method::DELETE, &path).await;
    assert_eq!(resp.status(), 200);
    gone(&gw, first_id).await;
    let e = expect_error(
        post_as(
            &gw,
            OTHER_KEY,
            json!({"model": "m", "input": "hi", "previous_response_id": first_id}),
        )
        .await,
        404,
    )
    .await;
    assert_eq!(e["param"], "previous_response_id");

    // The second response carries the whole conversation, the deleted turn included.
    create(&gw, "And again?", Some(second_id)).await;
    let sent = mock.received().pop().unwrap().body;
    let turns: Vec<&str> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(turns, ["user", "assistant", "user", "assistant", "user"]);
    assert_eq!(sent["messages"][0]["content"], "My name is Ada.");
    assert_eq!(
        statuses(ledger_rows(gw).await),
        [200, 200, 200, 404, 404, 404],
        "every call is a ledger row"
    );
}

/// Issue 15: a call without `previous_response_id` looks nothing up in the response
/// store, plain or streamed, stored or not, translated or passed through to a backend
/// serving Responses; a continuation does (in memory while its response waits for the
/// writer, in the database after a restart), so the counts do move when there is a read.
#[tokio::test]
async fn issue_15_a_call_without_previous_response_id_reads_no_stored_response() {
    for kind in ["compatible", "openai"] {
        let clock = TestClock::new();
        let mock = MockUpstream::start().await;
        let native = kind == "openai";
        let (reply, stream) = (
            Step::fixture(200, "openai/responses_reply.json"),
            Step::fixture(200, "openai/responses_stream.sse"),
        );
        if native {
            // A backend serving Responses answers each call below in turn.
            mock.script([
                reply.clone(),
                reply.clone(),
                reply.clone(),
                stream.clone(),
                stream,
                reply.clone(),
                reply.clone(),
                reply,
            ]);
        }
        let toml = config(kind, &mock, "[responses]\nttl = \"1h\"");
        let gw = TestGateway::start_with_clock(&toml, &clock).await;
        let store = gw.state.responses.get().unwrap().clone();
        let first = create(&gw, "My name is Ada.", None).await;
        let first_id = first["id"].as_str().unwrap().to_string();
        for stream in [false, true] {
            for keep in [true, false] {
                let body = json!({"model": "m", "input": "hi", "stream": stream, "store": keep});
                let resp = gw.post("/v1/responses", body).await;
                assert_eq!(resp.status(), 200, "{kind}");
                if stream {
                    let ev = events(resp).await;
                    assert_eq!(ev.last().unwrap().0, "response.completed", "{kind}");
                } else {
                    resp.bytes().await.unwrap();
                }
            }
        }
        assert_eq!(
            (store.loads(), store.database_reads()),
            (0, 0),
            "{kind}: a call without previous_response_id read the store"
        );

        // A continuation reads its response: from memory before the writer ran.
        create(&gw, "Who am I?", Some(&first_id)).await;
        assert_eq!(store.loads(), 1, "{kind}");
        let dir = gw.dir.clone();
        gw.shutdown().await.unwrap();

        // After a restart, from the database; a call without it still reads nothing.
        let gw = TestGateway::restart(&toml, &dir, &clock).await;
        let store = gw.state.responses.get().unwrap().clone();
        create(&gw, "Who am I?", Some(&first_id)).await;
        assert_eq!((store.loads(), store.database_reads()), (1, 1), "{kind}");
        let body = json!({"model": "m", "input": "Hello again", "store": false});
        assert_eq!(gw.post("/v1/responses", body).await.status(), 200, "{kind}");
        assert_eq!((store.loads(), store.database_reads()), (1, 1), "{kind}");
        gw.shutdown().await.unwrap();
    }
}
