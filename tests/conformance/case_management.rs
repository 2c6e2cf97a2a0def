//! The case-management catalogues (Combine, Treserva, Lifecare) held to the project's own
//! systems of those vendors (`carehub_devkit::conformance::case_management`), each on
//! 127.0.0.1 in front of a mock hub started in process: a correct system passes its whole
//! catalogue, and each broken one fails exactly the cases named for its mistake.

use std::collections::BTreeSet;
use std::sync::Arc;

use carehub_conformance::cli::{run, ConformanceArgs, Outcome};
use carehub_conformance::mock::{MockConfig, MockHub};
use carehub_devkit::conformance::case_management::{CaseManagementSystem, Mistake, Vendor};

const START: &str = "2026-11-02T08:00:00+01:00";

/// Runs `vendor`'s whole catalogue against its system with `mistake`; the outcome and the
/// system (for what it took).
async fn play(vendor: Vendor, mistake: Mistake, wait: u64) -> (Outcome, Arc<CaseManagementSystem>) {
    let system = CaseManagementSystem::new(vendor, mistake);
    let served = system.serve().await.expect("the vendor's system serves");
    let config =
        MockConfig::parse(&format!("at = \"{START}\"\n[system]\n{}", served.system)).expect("the mock's config");
    let hub = MockHub::on_loopback(vendor.name(), config).await.expect("the mock starts");
    system.connect(hub.url(), hub.system(), hub.token());
    let dir = tempfile::tempdir().expect("a folder");
    let args = ConformanceArgs {
        vendor: vendor.name().into(),
        target: served.url.clone(),
        out: dir.path().to_owned(),
        cases: Vec::new(),
        trigger: Some(served.trigger.clone()),
        wait,
        case_timeout: 150,
        mappings: None,
    };
    let outcome = run(&args, &hub).await.expect("the run");
    assert!(outcome.written.json.exists(), "the JSON report is written");
    hub.stop().await;
    (outcome, system)
}

fn failed(outcome: &Outcome) -> BTreeSet<String> {
    outcome.run.cases.iter().filter(|c| !c.passed).map(|c| c.id.clone()).collect()
}

fn ids(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// A correct system passes every case, and took each kind of message the hub sends it
/// (`kinds`: the last part of its path, or the SOAP operation).
async fn passes_in_full(vendor: Vendor, kinds: &[&str]) {
    let (outcome, system) = play(vendor, Mistake::None, 20).await;
    let failures: Vec<_> = outcome.run.cases.iter().filter(|c| !c.passed).map(|c| (&c.id, &c.failure)).collect();
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(outcome.run.score.total, 25);
    assert_eq!(outcome.exit_code(), 0);
    assert!((outcome.run.coverage.share - 1.0).abs() < 1e-9, "every message and field: {:?}", outcome.run.coverage);
    // What the hub sent reached the system, each kind at least once.
    let taken: BTreeSet<String> = system.taken().into_iter().collect();
    assert_eq!(taken, ids(kinds));
    assert_eq!(system.errors(), Vec::<String>::new(), "every trigger was acted on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_combine_passes_its_whole_catalogue() {
    passes_in_full(Vendor::Combine, &["callback", "aterrapportering", "avvikelse", "bevakning", "fakturagranskning"])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_treserva_passes_its_whole_catalogue() {
    let operations = ["Kvittens", "Genomforandeplan", "Besok", "Avvikelse", "Bevakning", "Fakturagranskning"];
    passes_in_full(Vendor::Treserva, &operations.map(|o| format!("TaEmot{o}")).each_ref().map(String::as_str)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_lifecare_passes_its_whole_catalogue() {
    passes_in_full(
        Vendor::Lifecare,
        &["acknowledgements", "care-plans", "visits", "deviations", "need-changes", "invoice-verifications"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_combine_writing_a_last_day_in_the_wrong_format_fails_only_the_last_day_case() {
    let (outcome, _) = play(Vendor::Combine, Mistake::DateFormat, 10).await;
    assert_eq!(failed(&outcome), ids(&["CONF-COMBINE-DECISION-002"]));
    assert_eq!(outcome.exit_code(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_treserva_answering_a_fault_with_200_fails_only_the_refusal_case() {
    let (outcome, _) = play(Vendor::Treserva, Mistake::FaultWith200, 10).await;
    assert_eq!(failed(&outcome), ids(&["CONF-TRESERVA-ORDER_ACK-004"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lifecare_leaving_out_a_change_s_version_fails_only_the_change_cases() {
    let (outcome, _) = play(Vendor::Lifecare, Mistake::MissingVersion, 10).await;
    assert_eq!(
        failed(&outcome),
        ids(&[
            "CONF-LIFECARE-DECISION_CHANGE-001",
            "CONF-LIFECARE-DECISION_CHANGE-002",
            "CONF-LIFECARE-DECISION_CHANGE-003",
            "CONF-LIFECARE-DECISION_CHANGE-004",
            "CONF-LIFECARE-DECISION_CHANGE-005",
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_combine_with_a_check_digit_off_in_the_short_form_fails_only_that_case() {
    let (outcome, _) = play(Vendor::Combine, Mistake::CheckDigit, 10).await;
    assert_eq!(failed(&outcome), ids(&["CONF-COMBINE-DECISION-010"]));
    let failure = outcome.run.cases.iter().find(|c| !c.passed).and_then(|c| c.failure.as_ref()).expect("a failure");
    assert_eq!(failure.step, 2, "the step that waits for the decision taken: {failure:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_treserva_writing_a_last_day_in_the_wrong_format_fails_only_the_last_day_case() {
    let (outcome, _) = play(Vendor::Treserva, Mistake::DateFormat, 10).await;
    assert_eq!(failed(&outcome), ids(&["CONF-TRESERVA-DECISION-002"]));
}
