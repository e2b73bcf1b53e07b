// The Rust binding against the real libattune.so and the tiny model
// (ATTUNE_FIXTURES_DIR points at tests/fixtures).
use attune::{Assistant, ERR_CLOSED, ERR_INVALID_ARGUMENT};

fn options(dir: &std::path::Path) -> String {
    let fixtures = std::env::var("ATTUNE_FIXTURES_DIR").expect("ATTUNE_FIXTURES_DIR is set by the test");
    format!(
        r#"{{"data_dir": "{}", "model_path": "{}/models/tiny_llama.gguf", "chat_template": "chatml",
            "background_training": false, "generation": {{"max_tokens": 8, "stop_at_eos": false}}}}"#,
        dir.display(),
        fixtures
    )
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("attune_rust_{}_{}", name, std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn abi_version_matches_the_binding() {
    assert_eq!(attune::abi_version(), attune::ABI_VERSION);
    assert!(attune::version().split('.').count() == 3);
}

#[test]
fn streams_a_reply_and_records_feedback_on_it() {
    let dir = temp_dir("chat");
    let a = Assistant::open(&options(&dir)).expect("open");
    let mut streamed = String::new();
    let reply = a
        .chat(r#"[{"role": "user", "content": "hello"}]"#, |piece| {
            streamed.push_str(piece);
            true
        })
        .expect("chat");
    assert!(!reply.cancelled);
    assert!(!streamed.is_empty());
    assert!(reply.json.contains(r#""finish_reason":"length""#), "{}", reply.json);
    let rid = reply.json.split(r#""response_id":""#).nth(1).unwrap().split('"').next().unwrap().to_string();
    let id = a.record_feedback(r#"{"user_id": "rs", "rating": {"thumb": "UP"}}"#, Some(&rid)).expect("feedback");
    assert!(id.contains(&rid));
    assert!(a.status_json().unwrap().contains(r#""stored_events":1"#));
    let report = a.forget_user("rs").expect("forget");
    assert!(report.contains(r#""events_erased":1"#), "{report}");
    drop(a);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn returning_false_cancels_the_reply() {
    let dir = temp_dir("cancel");
    let a = Assistant::open(&options(&dir)).expect("open");
    let mut calls = 0;
    let reply = a
        .chat(r#"[{"role": "user", "content": "hello"}]"#, |_| {
            calls += 1;
            false
        })
        .expect("chat");
    assert!(reply.cancelled);
    assert_eq!(calls, 1);
    assert!(reply.json.contains(r#""finish_reason":"cancelled""#));
    drop(a);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_input_and_closed_handles_are_errors() {
    let err = Assistant::open(r#"{"training": {"rank": "four"}}"#).err().expect("must fail");
    assert_eq!(err.code, ERR_INVALID_ARGUMENT);
    assert!(err.message.contains("options.training.rank"), "{}", err.message);

    let dir = temp_dir("closed");
    let a = Assistant::open(&options(&dir)).expect("open");
    assert_eq!(a.set_device_state("{").unwrap_err().code, ERR_INVALID_ARGUMENT);
    // Close through the raw ABI, then use the wrapper: a clean error, no crash.
    let raw_closed = unsafe { attune::attune_close(a.as_raw()) };
    assert_eq!(raw_closed, attune::OK);
    assert_eq!(a.status_json().unwrap_err().code, ERR_CLOSED);
    drop(a); // closing again inside Drop returns ERR_CLOSED, ignored
    let _ = std::fs::remove_dir_all(&dir);
}
