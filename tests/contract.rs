//! The published contracts, checked by the tools their readers use: `/openapi.json` by
//! `openapi-spec-validator` and by schemathesis (which calls every route with what the
//! document allows and checks the answers against it), and the Treserva SOAP endpoint by
//! zeep, a SOAP client that builds its calls from the hub's WSDL (`tests/soap_client.py`).
//!
//! The Python tools are installed by `scripts/test` into `target/test-python`; without them
//! these tests fail, they do not skip.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use carehub_server::auth::Role;
use reqwest::StatusCode;
use wiremock::MockServer;

use crate::support::*;

/// This folder, where the Python halves of these tests are.
fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests")
}

/// Runs a program to its end within `limit`, and returns its exit status and output.
async fn run(program: &Path, args: &[&str], envs: &[(&str, &Path)], limit: Duration) -> (Option<i32>, String) {
    let child = tokio::process::Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        // Nothing the tools leave behind lands in the work tree.
        .current_dir(std::env::temp_dir())
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{} ran longer than {limit:?}", program.display()))
        .expect("wait");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

/// The last lines of a tool's output, each cut at 1000 characters, for an assertion's
/// message.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<String> = text.lines().map(|l| l.chars().take(1000).collect()).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[tokio::test]
async fn the_openapi_document_is_valid_openapi() {
    // The document is an answer like any other: no socket needed.
    let hub = TestApp::start();
    let (status, _, bytes) = hub.send(axum::http::Method::GET, "/openapi.json", None, &[], "").await;
    assert_eq!(status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
    // Every error answer's code is one of the stable codes, and the document says which.
    let codes: Vec<&str> = json["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("ErrorCode is an enum")
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    let all: Vec<&str> = carehub_model::ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(codes, all);
    // The message endpoint takes every vendor's kind of payload.
    let content = &json["paths"]["/v1/systems/{system}/messages"]["post"]["requestBody"]["content"];
    for kind in ["application/xml", "text/xml", "application/json", "text/csv"] {
        assert!(content.get(kind).is_some(), "the message endpoint does not document {kind}: {content}");
    }
    let doc = hub.dir.path().join("openapi.json");
    std::fs::write(&doc, &bytes).expect("write");
    let validator = python_tool("openapi-spec-validator");
    let (code, out) =
        run(&validator, &["--validation-errors", "all", doc.to_str().expect("path")], &[], Duration::from_secs(120))
            .await;
    assert_eq!(code, Some(0), "openapi-spec-validator:\n{}", tail(&out, 60));
    println!("openapi-spec-validator: {}", tail(&out, 5));
}

#[tokio::test]
async fn schemathesis_finds_no_answer_outside_the_openapi_document() {
    let phoniro = MockServer::start().await;
    let hub = TestHub::start(&phoniro.uri(), &phoniro.uri()).await;
    let token = hub.token_for(Role::Admin, None, Duration::from_secs(3600));
    let schemathesis = python_tool("schemathesis");
    let url = format!("{}/openapi.json", hub.url);
    let auth = format!("Authorization: Bearer {token}");
    let config = tests_dir().join("schemathesis.toml");
    let (code, out) = run(
        &schemathesis,
        &[
            "--no-color",
            "--config-file",
            config.to_str().expect("path"),
            "run",
            &url,
            "--checks",
            "all",
            "--header",
            &auth,
            "--max-examples",
            "25",
            "--seed",
            "1",
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--suppress-health-check",
            "all",
        ],
        &[("SCHEMATHESIS_HOOKS", &tests_dir().join("schemathesis_hooks.py"))],
        Duration::from_secs(420),
    )
    .await;
    assert_eq!(code, Some(0), "schemathesis:\n{}", tail(&out, 120));
    println!("schemathesis:\n{}", tail(&out, 25));
}

#[tokio::test]
async fn zeep_sends_a_decision_from_the_wsdl_and_reads_the_hubs_faults() {
    let phoniro = MockServer::start().await;
    let hub = TestHub::start(&phoniro.uri(), &phoniro.uri()).await;
    let python = python_tool("python");
    let script = tests_dir().join("soap_client.py");
    let token = hub.system_token("treserva");
    let (code, out) =
        run(&python, &[script.to_str().expect("path"), &hub.url, &token, PROVIDER_A], &[], Duration::from_secs(120))
            .await;
    assert_eq!(code, Some(0), "soap_client.py:\n{}", tail(&out, 60));
    let lines: Vec<&str> = out.lines().collect();
    let order = hub.order_of("treserva:ZEEP-1").await;
    assert!(lines.iter().any(|l| l.starts_with("accepted ") && l.ends_with(&order)), "{out}");
    let refused = lines
        .iter()
        .find(|l| l.starts_with("fault soap:Client INVALID_PERSONAL_IDENTITY_NUMBER "))
        .unwrap_or_else(|| panic!("no refusal read by zeep: {out}"));
    assert!(lines.iter().any(|l| l.starts_with("fault soap:Client UNAUTHENTICATED - ")), "{out}");
    // What zeep read is what the hub logged.
    let message_id = refused.split(' ').nth(3).expect("a message id");
    let (status, entry) = hub.get(&format!("/v1/messages/{message_id}"), Some(&hub.admin())).await;
    assert_eq!(status, StatusCode::OK, "{entry}");
    assert_eq!(entry["status"], "rejected");
    assert_eq!(entry["error_code"], "INVALID_PERSONAL_IDENTITY_NUMBER");
    let (status, _) = hub.get(&format!("/v1/orders/{order}"), Some(&hub.admin())).await;
    assert_eq!(status, StatusCode::OK, "the accepted decision became an order");
}
