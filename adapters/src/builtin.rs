//! The mapping files compiled into the binary, so the hub runs with no files beside it.
//! A configured `mappings_dir` replaces them with files read at start, which a
//! municipality can edit without recompiling. A test checks that this list matches the
//! files in `mappings/`.

/// (vendor, file name, text) of every built-in mapping file.
pub const FILES: &[(&str, &str, &str)] = &[
    ("combine", "decision.in.toml", include_str!("../../mappings/combine/decision.in.toml")),
    ("combine", "order_ack.out.toml", include_str!("../../mappings/combine/order_ack.out.toml")),
    ("combine", "plan_notice.out.toml", include_str!("../../mappings/combine/plan_notice.out.toml")),
    ("combine", "visit.out.toml", include_str!("../../mappings/combine/visit.out.toml")),
    ("combine", "verification.out.toml", include_str!("../../mappings/combine/verification.out.toml")),
    ("phoniro", "order.out.toml", include_str!("../../mappings/phoniro/order.out.toml")),
    ("phoniro", "order_ack.in.toml", include_str!("../../mappings/phoniro/order_ack.in.toml")),
    ("phoniro", "plan_notice.in.toml", include_str!("../../mappings/phoniro/plan_notice.in.toml")),
    ("phoniro", "visit.in.toml", include_str!("../../mappings/phoniro/visit.in.toml")),
    ("phoniro", "visits.in.toml", include_str!("../../mappings/phoniro/visits.in.toml")),
    ("phoniro", "verification.out.toml", include_str!("../../mappings/phoniro/verification.out.toml")),
    ("treserva", "decision.in.toml", include_str!("../../mappings/treserva/decision.in.toml")),
    ("treserva", "order_ack.out.toml", include_str!("../../mappings/treserva/order_ack.out.toml")),
    ("treserva", "plan_notice.out.toml", include_str!("../../mappings/treserva/plan_notice.out.toml")),
    ("treserva", "visit.out.toml", include_str!("../../mappings/treserva/visit.out.toml")),
    ("treserva", "verification.out.toml", include_str!("../../mappings/treserva/verification.out.toml")),
    ("lifecare", "decision.in.toml", include_str!("../../mappings/lifecare/decision.in.toml")),
    ("lifecare", "order_ack.out.toml", include_str!("../../mappings/lifecare/order_ack.out.toml")),
    ("lifecare", "plan_notice.out.toml", include_str!("../../mappings/lifecare/plan_notice.out.toml")),
    ("lifecare", "visit.out.toml", include_str!("../../mappings/lifecare/visit.out.toml")),
    ("lifecare", "verification.out.toml", include_str!("../../mappings/lifecare/verification.out.toml")),
    ("lifecare-mobil", "order.out.toml", include_str!("../../mappings/lifecare-mobil/order.out.toml")),
    (
        "lifecare-mobil",
        "order_ack.accepted.in.toml",
        include_str!("../../mappings/lifecare-mobil/order_ack.accepted.in.toml"),
    ),
    (
        "lifecare-mobil",
        "order_ack.rejected.in.toml",
        include_str!("../../mappings/lifecare-mobil/order_ack.rejected.in.toml"),
    ),
    ("lifecare-mobil", "plan_notice.in.toml", include_str!("../../mappings/lifecare-mobil/plan_notice.in.toml")),
    ("lifecare-mobil", "visit.in.toml", include_str!("../../mappings/lifecare-mobil/visit.in.toml")),
    ("lifecare-mobil", "verification.out.toml", include_str!("../../mappings/lifecare-mobil/verification.out.toml")),
    ("procapita", "decision.in.toml", include_str!("../../mappings/procapita/decision.in.toml")),
    ("procapita", "order_ack.out.toml", include_str!("../../mappings/procapita/order_ack.out.toml")),
    ("procapita", "plan_notice.out.toml", include_str!("../../mappings/procapita/plan_notice.out.toml")),
    ("procapita", "receipt.out.toml", include_str!("../../mappings/procapita/receipt.out.toml")),
    ("procapita", "visit.out.toml", include_str!("../../mappings/procapita/visit.out.toml")),
    ("procapita", "verification.out.toml", include_str!("../../mappings/procapita/verification.out.toml")),
    ("paraga", "order.out.toml", include_str!("../../mappings/paraga/order.out.toml")),
    ("paraga", "order_ack.in.toml", include_str!("../../mappings/paraga/order_ack.in.toml")),
    ("paraga", "plan_notice.in.toml", include_str!("../../mappings/paraga/plan_notice.in.toml")),
    ("paraga", "visit.in.toml", include_str!("../../mappings/paraga/visit.in.toml")),
    ("paraga", "verification.out.toml", include_str!("../../mappings/paraga/verification.out.toml")),
];
