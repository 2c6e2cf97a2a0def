//! What a later version of a decision does to its orders (SPEC §4.4): pure, from the
//! decision as it stands, its orders and the change, to the decision after it and what each
//! provider must be told.
//!
//! - **services** (minutes raised after a fall): every order with days from the effective
//!   date on gets the new services from then ([`Revision`]) and an [`OrderChange`].
//! - **end date**: every order still running gets the new last day (an order change).
//! - **ended**: every order still running ends on the day (an [`OrderEnd`] with the reason).
//! - **paused** (hospital stay): every order with days in the pause gets it ([`Pause`]) and
//!   an order change.
//! - **new provider** from a day (LOV): the running order ends the day before (reason
//!   `provider_switch`) and the new provider gets a new order from that day, with its own
//!   deadlines: execute-by counted from the order date, plan-due from its start. Pauses of
//!   the old order from that day on travel with the client.
//!
//! An order "still running" is one not ended, not rejected by its provider, whose last day
//! is not before the change's. With reconfirmation on ([`Deadlines::reconfirm_changes`]),
//! each order change asks the provider to confirm again by the order date plus the execute
//! deadline. The flow ([`crate::flows::life`]) stores the results and delivers the messages;
//! nothing here reads a clock or a store.

use carehub_model::{
    Deadlines, Decision, DecisionChange, DecisionChangeKind, ErrorCode, Order, OrderChange, OrderChangeKind, OrderEnd,
    OrderEndReason, OrgNumber, Pause, Revision, ValidationError,
};
use chrono::{Days, NaiveDate};

/// One of the decision's orders as the derivation sees it.
#[derive(Debug, Clone)]
pub struct LiveOrder {
    pub order: Order,
    /// The provider rejected it: a change does not reach it.
    pub rejected: bool,
}

/// What a change does to one order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// The order's terms change (revised order, and the message its provider receives).
    Changed { order: Order, message: OrderChange },
    /// The order ends (revised order, and the message).
    Ended { order: Order, message: OrderEnd },
    /// A new order for the provider the client chose.
    New { order: Order },
}

impl Effect {
    pub fn order(&self) -> &Order {
        match self {
            Effect::Changed { order, .. } | Effect::Ended { order, .. } | Effect::New { order } => order,
        }
    }
}

/// The decision after the change, and what it does to the orders, in the orders' order
/// (a provider switch: the old order's end first, then the new order).
#[derive(Debug, Clone, PartialEq)]
pub struct Derived {
    pub decision: Decision,
    pub effects: Vec<Effect>,
}

fn day_before(d: NaiveDate) -> NaiveDate {
    d.pred_opt().unwrap_or(d)
}

fn plus(d: NaiveDate, days: u32) -> NaiveDate {
    d.checked_add_days(Days::new(u64::from(days))).unwrap_or(NaiveDate::MAX)
}

/// Still running on or after `day`: not ended, not rejected, its last day not before it.
fn running_from(o: &LiveOrder, day: NaiveDate) -> bool {
    !o.rejected && o.order.ended.is_none() && o.order.end_date.is_none_or(|e| e >= day)
}

/// Applies `change` to `decision` and its `orders`. `order_date` is the day the change was
/// decided (or received): deadlines count from it. `new_order_id` names the order a
/// provider switch creates.
pub fn derive(
    decision: &Decision,
    orders: &[LiveOrder],
    change: &DecisionChange,
    order_date: NaiveDate,
    deadlines: Deadlines,
    new_order_id: impl FnOnce() -> String,
) -> Result<Derived, ValidationError> {
    let v = change.version;
    let mut next = decision.clone();
    let mut effects = Vec::new();
    let confirm_by = deadlines.reconfirm_changes.then(|| plus(order_date, deadlines.execute_days));
    // A changed order to be confirmed again is due by then, like a new one.
    let reconfirm = |mut order: Order| {
        if let Some(by) = confirm_by {
            order.execute_by = by;
        }
        order
    };
    let message = |o: &Order, kind: OrderChangeKind, from: NaiveDate| OrderChange {
        order_id: o.id.clone(),
        decision_id: o.decision_id.clone(),
        version: v,
        provider: o.provider.clone(),
        client: o.client.clone(),
        effective_from: from,
        change: kind,
        confirm_by,
    };
    let end = |o: &Order, on: NaiveDate, reason: OrderEndReason| {
        let mut order = o.clone();
        order.end_date = Some(on);
        order.ended = Some(reason);
        order.version = v;
        let message = OrderEnd {
            order_id: o.id.clone(),
            decision_id: o.decision_id.clone(),
            version: v,
            provider: o.provider.clone(),
            client: o.client.clone(),
            end_date: on,
            reason,
        };
        Effect::Ended { order, message }
    };

    match &change.change {
        DecisionChangeKind::Services { services } => {
            next.services.clone_from(services);
            for o in orders.iter().filter(|o| running_from(o, change.effective_from)) {
                let from = change.effective_from.max(o.order.start_date);
                let mut order = o.order.clone();
                order.revisions.push(Revision { from, version: v, services: services.clone() });
                order.version = v;
                let kind = OrderChangeKind::Services { services: services.clone() };
                effects.push(Effect::Changed { message: message(&order, kind, from), order: reconfirm(order) });
            }
        }
        DecisionChangeKind::EndDate { valid_to } => {
            next.valid_to = Some(*valid_to);
            // Every order not ended moves with the decision (an earlier end, or a later
            // one); an order ended by a switch or an end keeps its last day.
            for o in orders.iter().filter(|o| !o.rejected && o.order.ended.is_none()) {
                if o.order.end_date == Some(*valid_to) {
                    continue;
                }
                let mut order = o.order.clone();
                order.end_date = Some(*valid_to);
                order.version = v;
                let kind = OrderChangeKind::EndDate { end_date: *valid_to };
                let message = message(&order, kind, change.effective_from);
                effects.push(Effect::Changed { message, order: reconfirm(order) });
            }
        }
        DecisionChangeKind::Ended { on, reason } => {
            next.valid_to = Some(*on);
            for o in orders.iter().filter(|o| running_from(o, *on)) {
                effects.push(end(&o.order, *on, (*reason).into()));
            }
        }
        DecisionChangeKind::Paused { from, to, reason } => {
            for o in orders.iter().filter(|o| running_from(o, *from) && o.order.start_date <= *to) {
                let pause = Pause {
                    from: (*from).max(o.order.start_date),
                    to: o.order.end_date.map_or(*to, |e| e.min(*to)),
                    reason: *reason,
                    version: v,
                };
                let mut order = o.order.clone();
                let kind = OrderChangeKind::Paused { from: pause.from, to: pause.to, reason: *reason };
                order.pauses.push(pause);
                order.version = v;
                let message = message(&order, kind, change.effective_from);
                effects.push(Effect::Changed { message, order: reconfirm(order) });
            }
        }
        DecisionChangeKind::NewProvider { provider, from } => {
            let running: Vec<&LiveOrder> = orders.iter().filter(|o| running_from(o, *from)).collect();
            if running.iter().any(|o| same(&o.order.provider, provider) && o.order.start_date <= *from) {
                return Err(ValidationError::new(
                    ErrorCode::InvalidValue,
                    format!("change.provider: the client already has provider {provider} on {from}"),
                ));
            }
            next.provider = provider.clone();
            let mut pauses = Vec::new();
            for o in &running {
                pauses.extend(
                    o.order
                        .pauses
                        .iter()
                        .filter(|p| p.to >= *from)
                        .map(|p| Pause { from: p.from.max(*from), ..p.clone() }),
                );
                effects.push(end(&o.order, day_before(*from), OrderEndReason::ProviderSwitch));
            }
            let mut order = Order::from_decision(new_order_id(), &next, order_date, deadlines);
            order.start_date = *from;
            order.plan_due = plus(*from, deadlines.plan_days);
            order.services.clone_from(&next.services);
            order.end_date = next.valid_to;
            order.pauses = pauses;
            order.version = v;
            effects.push(Effect::New { order });
        }
    }
    Ok(Derived { decision: next, effects })
}

fn same(a: &OrgNumber, b: &OrgNumber) -> bool {
    a.as_str() == b.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use carehub_model::{EndReason, PauseReason, PersonalIdentityNumber, Service, ServiceCategory, SourceId};

    fn d(s: &str) -> NaiveDate {
        s.parse().expect("date")
    }

    fn svc(minutes: u32) -> Vec<Service> {
        vec![Service { code: "PO".into(), category: ServiceCategory::PersonalCare, minutes_per_month: minutes }]
    }

    fn decision() -> Decision {
        Decision {
            id: SourceId::parse("combine:DEC-1").expect("id"),
            client: PersonalIdentityNumber::parse("193601016987").expect("pin"),
            case_officer: "hl-1".into(),
            provider: OrgNumber::parse("5599000014").expect("org"),
            valid_from: d("2026-11-01"),
            valid_to: Some(d("2027-04-30")),
            services: svc(600),
            decided_at: None,
        }
    }

    fn orders() -> Vec<LiveOrder> {
        let order = Order::from_decision("O-1".into(), &decision(), d("2026-10-28"), Deadlines::default());
        vec![LiveOrder { order, rejected: false }]
    }

    fn change(version: u32, from: &str, change: DecisionChangeKind) -> DecisionChange {
        DecisionChange {
            decision_id: SourceId::parse("combine:DEC-1").expect("id"),
            version,
            effective_from: d(from),
            change,
            decided_at: None,
        }
    }

    fn run(c: &DecisionChange, deadlines: Deadlines) -> Derived {
        derive(&decision(), &orders(), c, d("2026-11-16"), deadlines, || "O-2".into()).expect("derives")
    }

    #[test]
    fn a_switch_ends_the_old_order_the_day_before_and_starts_a_new_one() {
        let to = OrgNumber::parse("5599000030").expect("org");
        let c =
            change(1, "2026-11-17", DecisionChangeKind::NewProvider { provider: to.clone(), from: d("2026-11-17") });
        let out = run(&c, Deadlines::default());
        assert_eq!(out.decision.provider, to);
        let [Effect::Ended { order: old, message }, Effect::New { order: new }] = out.effects.as_slice() else {
            panic!("{:?}", out.effects)
        };
        assert_eq!((old.end_date, message.reason), (Some(d("2026-11-16")), OrderEndReason::ProviderSwitch));
        assert_eq!((new.id.as_str(), new.provider.as_str(), new.start_date), ("O-2", "5599000030", d("2026-11-17")));
        // Its own deadlines: execute-by from the order date, plan-due from its start.
        assert_eq!((new.execute_by, new.plan_due), (d("2026-11-30"), d("2026-12-01")));
        assert_eq!(new.end_date, Some(d("2027-04-30")));
    }

    #[test]
    fn a_switch_to_the_provider_the_client_has_is_refused() {
        let same = OrgNumber::parse("5599000014").expect("org");
        let c = change(1, "2026-11-17", DecisionChangeKind::NewProvider { provider: same, from: d("2026-11-17") });
        let e = derive(&decision(), &orders(), &c, d("2026-11-16"), Deadlines::default(), || "O-2".into());
        assert_eq!(e.map_err(|e| e.code), Err(ErrorCode::InvalidValue));
    }

    #[test]
    fn raised_minutes_revise_the_order_from_the_day_and_may_ask_for_a_new_confirmation() {
        let c = change(2, "2026-11-10", DecisionChangeKind::Services { services: svc(900) });
        let out = run(&c, Deadlines { reconfirm_changes: true, ..Deadlines::default() });
        let [Effect::Changed { order, message }] = out.effects.as_slice() else { panic!("{:?}", out.effects) };
        assert_eq!(order.schedule().minutes_on(d("2026-11-09")), 600);
        assert_eq!(order.schedule().minutes_on(d("2026-11-10")), 900);
        assert_eq!((message.version, message.confirm_by), (2, Some(d("2026-11-30"))));
        assert_eq!(order.execute_by, d("2026-11-30"), "the changed order is due for confirmation then");
        let out = run(&c, Deadlines::default());
        let [Effect::Changed { message, .. }] = out.effects.as_slice() else { panic!() };
        assert_eq!(message.confirm_by, None);
    }

    #[test]
    fn a_pause_and_an_end_reach_the_running_order_only() {
        let c = change(
            1,
            "2026-11-05",
            DecisionChangeKind::Paused {
                from: d("2026-11-05"),
                to: d("2026-11-12"),
                reason: PauseReason::HospitalStay,
            },
        );
        let out = run(&c, Deadlines::default());
        let [Effect::Changed { order, .. }] = out.effects.as_slice() else { panic!() };
        assert!(!order.active_on(d("2026-11-05")) && order.active_on(d("2026-11-13")));

        let mut ended = orders();
        ended[0].order.ended = Some(OrderEndReason::Died);
        let c = change(2, "2026-11-20", DecisionChangeKind::Ended { on: d("2026-11-20"), reason: EndReason::Died });
        let out = derive(&decision(), &ended, &c, d("2026-11-20"), Deadlines::default(), || "x".into()).expect("ok");
        assert!(out.effects.is_empty());
        assert_eq!(out.decision.valid_to, Some(d("2026-11-20")));
    }
}
