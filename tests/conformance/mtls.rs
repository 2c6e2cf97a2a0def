//! Phoniro over HTTPS with mutual TLS: the mock serves its `[tls]` with the test CA as the
//! client CA, the project's Phoniro system reaches it with the certificates in `certs/`,
//! and the cases of refused client certificates (an expired one, one from a foreign CA)
//! apply. The correct system passes the whole catalogue; one that keeps sending with the
//! expired certificate fails exactly the expired-certificate case; the journal shows each
//! refusal with its code.

use std::collections::BTreeSet;
use std::path::PathBuf;

use carehub_conformance::cli::run_on_mock;
use carehub_conformance::mock::MockHub;
use carehub_devkit::conformance::http::{Certificates, Flaw, RestVendor, Vendor};
use serde_json::Value;

use super::http::{args, failed, junit_counts, system_with, MTLS_CASES};

fn certs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../certs")
}

/// The mock's `[tls]`: the hub's test certificate, and client certificates from the test CA.
fn tls() -> toml::Table {
    let file = |name: &str| toml::Value::String(certs().join(name).display().to_string());
    toml::Table::from_iter([
        ("cert".to_owned(), file("hub.pem")),
        ("key".to_owned(), file("hub.key")),
        ("client_ca".to_owned(), file("ca.pem")),
    ])
}

/// Phoniro (with `flaw`, a broken one) behind a mock that serves mTLS.
async fn over_mtls(flaw: Option<Flaw>) -> (RestVendor, MockHub) {
    let (vendor, hub) = system_with(Vendor::Phoniro, flaw, Some(tls())).await;
    vendor.use_certificates(&Certificates::phoniro(&certs()).expect("the certificates")).expect("clients");
    assert!(hub.url().starts_with("https://127.0.0.1:"), "{}", hub.url());
    (vendor, hub)
}

/// The journal over the mock's API, read as the vendor would (HTTPS, trusting the test CA).
async fn journal(hub: &MockHub) -> Vec<Value> {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(certs().join("ca.pem")).expect("ca")).expect("pem");
    let client =
        reqwest::Client::builder().tls_built_in_root_certs(false).add_root_certificate(ca).build().expect("client");
    let answer = client.get(format!("{}/mock/journal?limit=10000", hub.url())).send().await.expect("journal");
    assert!(answer.status().is_success(), "{}", answer.status());
    answer.json().await.expect("json")
}

/// The problems of the journal's refused handshakes, as (code, message).
fn refusals(journal: &[Value]) -> Vec<(String, String)> {
    journal
        .iter()
        .filter(|x| x["target"] == "TLS handshake")
        .inspect(|x| {
            assert_eq!(x["direction"], "inbound");
            assert!(x.get("status").is_none_or(Value::is_null), "a refused handshake had no answer: {x}");
        })
        .flat_map(|x| x["problems"].as_array().cloned().unwrap_or_default())
        .map(|p| {
            (p["code"].as_str().unwrap_or_default().to_owned(), p["message"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_phoniro_over_mtls_passes_the_whole_catalogue_with_the_refused_certificates() {
    let (vendor, hub) = over_mtls(None).await;
    let dir = tempfile::tempdir().expect("a folder");
    let outcome = run_on_mock(&args(Vendor::Phoniro, &vendor, dir.path(), 20), &hub).await.expect("the run");
    let failures: Vec<_> = outcome.run.cases.iter().filter(|c| !c.passed).collect();
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(outcome.run.score.total, 23, "every case ran, the two of refused certificates too");
    assert_eq!(outcome.run.score.not_applicable, 0);
    assert_eq!(outcome.exit_code(), 0);
    junit_counts(&outcome.written.junit, 23, 0, 0);
    for id in MTLS_CASES {
        let case = outcome.run.cases.iter().find(|c| c.id == id).expect("the case ran");
        let codes: BTreeSet<&str> =
            case.exchanges.iter().flat_map(|x| x.problems.iter().map(|p| p.code.as_str())).collect();
        let want = if id.ends_with("004") { "MOCK_CERT_EXPIRED" } else { "MOCK_CERT_FOREIGN" };
        assert!(codes.contains(want), "{id} shows {want} among its exchanges: {codes:?}");
    }

    // The journal, over /mock/journal like every other exchange.
    let refused = refusals(&journal(&hub).await);
    let expired: Vec<_> = refused.iter().filter(|(c, _)| c == "MOCK_CERT_EXPIRED").collect();
    let foreign: Vec<_> = refused.iter().filter(|(c, _)| c == "MOCK_CERT_FOREIGN").collect();
    assert!(!expired.is_empty() && !foreign.is_empty(), "{refused:?}");
    assert_eq!(expired.len() + foreign.len(), refused.len(), "no other refusal: {refused:?}");
    assert!(expired[0].1.contains("expired on 2001-01-01"), "the date the vendor can act on: {}", expired[0].1);
    assert!(
        foreign[0].1.contains("not issued by the hub's client CA (issuer: CN=foreign test CA, O=somewhere else)"),
        "{}",
        foreign[0].1
    );
    hub.stop().await;
    vendor.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phoniro_that_keeps_its_expired_certificate_fails_exactly_the_expired_certificate_case() {
    let (vendor, hub) = over_mtls(Some(Flaw::KeepsExpiredCertificate)).await;
    let dir = tempfile::tempdir().expect("a folder");
    let outcome = run_on_mock(&args(Vendor::Phoniro, &vendor, dir.path(), 4), &hub).await.expect("the run");
    let got = failed(&outcome);
    let why: Vec<_> = outcome.run.cases.iter().filter(|c| !c.passed).map(|c| (&c.id, &c.failure)).collect();
    assert_eq!(got, BTreeSet::from(["CONF-PHONIRO-VISIT-004".to_owned()]), "{why:#?}");
    assert_eq!(outcome.exit_code(), 1);
    let case = outcome.run.cases.iter().find(|c| c.id == "CONF-PHONIRO-VISIT-004").expect("the case");
    let failure = case.failure.as_ref().expect("why it failed");
    assert!(failure.what.contains("visit"), "it failed waiting for the visit taken: {failure:?}");
    // Every attempt with the expired certificate is in the journal, coded.
    let refused = refusals(&journal(&hub).await);
    let expired = refused.iter().filter(|(c, _)| c == "MOCK_CERT_EXPIRED").count();
    assert!(expired >= 2, "each attempt refused and journaled: {refused:?}");
    hub.stop().await;
    vendor.stop();
}
