//! The report computed from the store: the month's orders, then each provider's counted
//! visits, through the [`Builder`], then the month's deviations and changes of need; the
//! only part of the follow-up that reads the store.

use super::*;

/// Reads the month's orders and counted visits from the store (one provider's visits at a
/// time, from the covering index `visits_provider_month_cover`) and computes the report. `provider` restricts it to
/// one provider's rows.
pub async fn compute(
    store: &dyn Store,
    month: Month,
    today: NaiveDate,
    threshold: f64,
    provider: Option<&str>,
) -> Result<FollowUp, StoreError> {
    let key = month.to_string();
    let mut orders = store.followup_orders(month).await?;
    if let Some(p) = provider {
        orders.retain(|o| o.provider == p);
    }
    let mut providers: Vec<String> = orders.iter().map(|o| o.provider.clone()).collect();
    providers.sort();
    providers.dedup();
    let mut shares = store.manual_shares(&key).await?;
    if let Some(p) = provider {
        shares.retain(|s| s.provider == p);
    }
    for s in &shares {
        if !providers.contains(&s.provider) {
            providers.push(s.provider.clone());
        }
    }
    let mut builder = Builder::new(month, today, &orders);
    drop(orders);
    for p in &providers {
        let visits = store.followup_visits(p, month).await?;
        builder.add_visits(&visits);
    }
    let mut report = builder.finish(&shares, threshold);
    let mut counts = store.followup_reports(month).await?;
    if let Some(p) = provider {
        counts.retain(|c| c.provider == p);
    }
    report.add_reports(&counts);
    if let Some(p) = provider {
        report.only_provider(p);
    }
    Ok(report)
}

/// Parses `YYYY-MM`.
pub fn parse_month(s: &str) -> Option<Month> {
    let (y, m) = s.trim().split_once('-')?;
    if y.len() != 4 || m.len() != 2 {
        return None;
    }
    Month::new(y.parse().ok()?, m.parse().ok()?)
}
