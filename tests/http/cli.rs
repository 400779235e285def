//! The `mlx-serve serve` binary: configuration errors and signals decide its exit status.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mlx-serve");

#[test]
fn invalid_setting_exits_non_zero_naming_the_key() {
    let out = Command::new(BIN)
        .args(["serve", "--fake", "--port", "0"])
        .env("MLX_SERVE__SERVER__QUEUE_SIZE", "0")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("server.queue_size") && err.contains("1 ..= 100000"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn sigterm_shuts_down_cleanly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--fake",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(Instant::now() < deadline, "server did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn tools_parse_stream_prints_one_delta_per_line_rebuilding_the_call() {
    use std::io::Write;
    let text = "Ok.\n<minimax:tool_call>\n<invoke name=\"write_file\">\n<parameter name=\"path\">a.txt</parameter>\n<parameter name=\"content\">hello\nworld</parameter>\n</invoke>\n</minimax:tool_call>";
    let mut child = Command::new(BIN)
        .args([
            "tools",
            "parse",
            "--stream",
            "--format",
            "minimax_m2",
            "--chunk-chars",
            "2",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("written");
    let out = child.wait_with_output().expect("ends");
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
        .collect();
    let content: String = lines.iter().filter_map(|l| l["content"].as_str()).collect();
    assert_eq!(content, "Ok.");
    let first = lines
        .iter()
        .position(|l| l.get("tool_calls").is_some())
        .expect("a call");
    assert_eq!(
        lines[first]["tool_calls"][0]["function"]["name"],
        "write_file"
    );
    let args: String = lines[first..]
        .iter()
        .filter_map(|l| l["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(args, r#"{"path":"a.txt","content":"hello\nworld"}"#);
    assert!(lines.len() > 5, "streamed in pieces: {lines:?}");
}
