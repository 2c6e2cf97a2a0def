//! The pure computation: [`Builder`] folds the month's orders, then its visits a provider at
//! a time, into a [`FollowUp`], keeping per client only a bit mask of days per staff member.

use super::*;

/// A client's figures so far.
#[derive(Default)]
struct ClientAcc {
    orders: Vec<String>,
    granted: i64,
    seconds: i64,
    visits: u64,
    /// Staff member → a bit per day of the month (bit 0 = the 1st).
    staff_days: HashMap<String, u32>,
}

/// Folds the month's orders and visits into a [`FollowUp`].
pub struct Builder {
    month: Month,
    today: NaiveDate,
    /// Order id → (provider, client): the client's row.
    client_of: HashMap<String, (String, String)>,
    clients: BTreeMap<(String, String), ClientAcc>,
    plans: Vec<PlanRow>,
    confirmations: Vec<ConfirmationRow>,
    visits_without_order: u64,
}

impl Builder {
    /// Starts the month from its orders (those that are not relevant are ignored).
    pub fn new(month: Month, today: NaiveDate, orders: &[FollowUpOrder]) -> Builder {
        let mut b = Builder {
            month,
            today,
            client_of: HashMap::new(),
            clients: BTreeMap::new(),
            plans: Vec::new(),
            confirmations: Vec::new(),
            visits_without_order: 0,
        };
        let mut sorted: Vec<&FollowUpOrder> = orders.iter().collect();
        sorted.sort_by(|a, b| a.order_id.cmp(&b.order_id));
        for o in sorted {
            if o.overlaps(month) {
                let row = (o.provider.clone(), o.client.clone());
                b.client_of.insert(o.order_id.clone(), row.clone());
                let granted = o.granted(month);
                if granted > 0 {
                    let acc = b.clients.entry(row).or_default();
                    acc.granted += granted;
                    acc.orders.push(o.order_id.clone());
                }
            }
            if month.contains(o.plan_due) && !o.rejected {
                let (status, days_late) = match o.plan_established_on {
                    Some(on) if on <= o.plan_due => (PlanStatus::OnTime, None),
                    Some(on) => (PlanStatus::Late, Some((on - o.plan_due).num_days())),
                    None if today > o.plan_due => (PlanStatus::Missing, Some((today - o.plan_due).num_days())),
                    None => (PlanStatus::Pending, None),
                };
                b.plans.push(PlanRow {
                    order_id: o.order_id.clone(),
                    provider: o.provider.clone(),
                    plan_due: o.plan_due,
                    established_on: o.plan_established_on,
                    status,
                    days_late,
                });
            }
            if month.contains(o.execute_by) {
                let confirmed_on = o.acked_at.map(carehub_model::local_date);
                let (status, days_late) = match confirmed_on {
                    Some(on) if on <= o.execute_by => (ConfirmStatus::OnTime, None),
                    Some(on) => (ConfirmStatus::Late, Some((on - o.execute_by).num_days())),
                    None if today > o.execute_by => {
                        (ConfirmStatus::NotConfirmed, Some((today - o.execute_by).num_days()))
                    }
                    None => (ConfirmStatus::Pending, None),
                };
                b.confirmations.push(ConfirmationRow {
                    order_id: o.order_id.clone(),
                    provider: o.provider.clone(),
                    execute_by: o.execute_by,
                    confirmed_on,
                    status,
                    days_late,
                });
            }
        }
        b
    }

    /// Folds in counted visits (any provider, any order; those outside the month are
    /// ignored).
    pub fn add_visits<'a>(&mut self, visits: impl IntoIterator<Item = &'a FollowUpVisit>) {
        for v in visits {
            let day = carehub_model::local_date(v.check_in);
            if !self.month.contains(day) || !v.performed {
                continue;
            }
            let Some(row) = self.client_of.get(&v.order_id) else {
                self.visits_without_order += 1;
                continue;
            };
            let acc = self.clients.entry(row.clone()).or_default();
            if !acc.orders.contains(&v.order_id) {
                acc.orders.push(v.order_id.clone());
                acc.orders.sort();
            }
            acc.seconds += v.seconds.unwrap_or(0).max(0);
            acc.visits += 1;
            *acc.staff_days.entry(v.staff.clone()).or_default() |= 1 << (day.day() - 1);
        }
    }

    /// The report, with the store's manual shares and the threshold.
    pub fn finish(self, shares: &[ManualShare], threshold: f64) -> FollowUp {
        let month = self.month;
        let mut providers: BTreeMap<String, ProviderRow> = BTreeMap::new();
        // (Σ staff, Σ max-14, clients with visits) per provider.
        let mut continuity: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
        let mut clients = Vec::with_capacity(self.clients.len());
        for ((provider, _client), acc) in self.clients {
            let performed = invoices::performed_minutes(acc.seconds);
            let band = Band::of(acc.granted, performed);
            let staff_in_month = u32::try_from(acc.staff_days.len()).unwrap_or(u32::MAX);
            let max_staff_14_days = max_in_window(acc.staff_days.values().copied(), month);
            let row = providers
                .entry(provider.clone())
                .or_insert_with(|| ProviderRow { provider: provider.clone(), ..Default::default() });
            row.clients += 1;
            row.bands.add(band);
            row.granted_minutes += acc.granted;
            row.performed_minutes += performed;
            if acc.visits > 0 {
                let c = continuity.entry(provider.clone()).or_default();
                c.0 += u64::from(staff_in_month);
                c.1 += u64::from(max_staff_14_days);
                c.2 += 1;
            }
            clients.push(ClientRow {
                key: acc.orders.first().cloned().unwrap_or_default(),
                provider,
                orders: acc.orders,
                granted_minutes: acc.granted,
                performed_minutes: performed,
                ratio: ratio(performed, acc.granted),
                band,
                visits: acc.visits,
                staff_in_month,
                max_staff_14_days,
            });
        }
        clients.sort_by(|a, b| (&a.provider, &a.key).cmp(&(&b.provider, &b.key)));
        for p in &self.plans {
            providers
                .entry(p.provider.clone())
                .or_insert_with(|| ProviderRow { provider: p.provider.clone(), ..Default::default() })
                .plans
                .add(p.status);
        }
        for c in &self.confirmations {
            providers
                .entry(c.provider.clone())
                .or_insert_with(|| ProviderRow { provider: c.provider.clone(), ..Default::default() })
                .confirmations
                .add(c.status);
        }
        for s in shares {
            let row = providers
                .entry(s.provider.clone())
                .or_insert_with(|| ProviderRow { provider: s.provider.clone(), ..Default::default() });
            row.visits = s.visits;
            row.manual = s.manual;
            row.manual_share = s.share;
            row.over_threshold = s.share > threshold;
        }
        let mut summary = Summary { visits_without_order: self.visits_without_order, ..Summary::default() };
        let mut all_continuity = (0u64, 0u64, 0u64);
        for row in providers.values_mut() {
            row.ratio = ratio(row.performed_minutes, row.granted_minutes);
            if let Some(&(staff, max14, n)) = continuity.get(&row.provider) {
                row.avg_staff_per_client = mean(staff, n);
                row.avg_max_staff_14_days = mean(max14, n);
                all_continuity = (all_continuity.0 + staff, all_continuity.1 + max14, all_continuity.2 + n);
            }
            summary.clients += row.clients;
            summary.bands.under += row.bands.under;
            summary.bands.within += row.bands.within;
            summary.bands.over += row.bands.over;
            summary.bands.not_granted += row.bands.not_granted;
            summary.granted_minutes += row.granted_minutes;
            summary.performed_minutes += row.performed_minutes;
            summary.visits += row.visits;
            summary.manual += row.manual;
            summary.providers_over_threshold += u64::from(row.over_threshold);
        }
        summary.ratio = ratio(summary.performed_minutes, summary.granted_minutes);
        summary.manual_share = mean(summary.manual, summary.visits).unwrap_or(0.0);
        summary.avg_staff_per_client = mean(all_continuity.0, all_continuity.2);
        summary.avg_max_staff_14_days = mean(all_continuity.1, all_continuity.2);
        for p in &self.plans {
            summary.plans.add(p.status);
        }
        for c in &self.confirmations {
            summary.confirmations.add(c.status);
        }
        let mut plans = self.plans;
        plans.sort_by(|a, b| (&a.provider, a.plan_due, &a.order_id).cmp(&(&b.provider, b.plan_due, &b.order_id)));
        let mut confirmations = self.confirmations;
        confirmations
            .sort_by(|a, b| (&a.provider, a.execute_by, &a.order_id).cmp(&(&b.provider, b.execute_by, &b.order_id)));
        FollowUp {
            month,
            computed_on: self.today,
            manual_share_threshold: threshold,
            summary,
            providers: providers.into_values().collect(),
            clients,
            plans,
            confirmations,
            reports: Vec::new(),
        }
    }
}

/// The most staff members with a visit in any window of [`WINDOW_DAYS`] days inside the
/// month (`masks`: a bit per day for each staff member).
pub(super) fn max_in_window(masks: impl Iterator<Item = u32> + Clone, month: Month) -> u32 {
    let days = u32::try_from(month.days()).unwrap_or(31);
    let window: u32 = (1u32 << WINDOW_DAYS) - 1;
    (0..=days.saturating_sub(WINDOW_DAYS))
        .map(|start| {
            let w = window << start;
            u32::try_from(masks.clone().filter(|m| m & w != 0).count()).unwrap_or(u32::MAX)
        })
        .max()
        .unwrap_or(0)
}

#[allow(clippy::cast_precision_loss)]
fn ratio(performed: i64, granted: i64) -> Option<f64> {
    (granted > 0).then(|| performed as f64 / granted as f64)
}

#[allow(clippy::cast_precision_loss)]
fn mean(sum: u64, n: u64) -> Option<f64> {
    (n > 0).then(|| sum as f64 / n as f64)
}
