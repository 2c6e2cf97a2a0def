//! Every sample in every mapping file translates as the file says: the built-in copies and
//! the files in `mappings/` (which a municipality edits).

use std::path::Path;

use carehub_adapters::{load_mappings, VENDORS};

#[test]
fn every_mapping_sample_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mappings");
    let mut total = 0;
    for vendor in VENDORS {
        for source in [None, Some(dir.as_path())] {
            let set = load_mappings(vendor, source).unwrap_or_else(|e| panic!("{vendor}: {e:?}"));
            let (n, failures) = set.run_samples();
            assert!(
                failures.is_empty(),
                "{vendor}: {}",
                failures.iter().map(|f| f.to_string()).collect::<Vec<_>>().join("\n")
            );
            assert!(n > 0, "{vendor} has samples");
            total += n;
        }
    }
    assert!(total >= 2 * 15, "{total} samples ran");
}

#[test]
fn a_broken_sample_is_reported() {
    let text = include_str!("../mappings/combine/decision.in.toml")
        .replace("\"minutes_per_month\": 1800", "\"minutes_per_month\": 1801");
    let set = carehub_core::mapping::MappingSet::from_sources("combine", [("decision.in.toml", text.as_str())])
        .expect("loads");
    let (_, failures) = set.run_samples();
    assert_eq!(failures.len(), 1);
    assert!(failures[0].reason.contains("canonical differs"), "{}", failures[0]);
}
