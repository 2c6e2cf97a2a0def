//! The services a decision grants and an order carries: a leaf of the model, so that the
//! messages ([`crate::message`]), a decision's life ([`crate::life`]) and an order's days
//! ([`crate::schedule`]) can all name them without naming each other.

use serde::{Deserialize, Serialize};

/// The canonical service categories a decision grants (SoL insatser).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceCategory {
    /// Serviceinsatser: cleaning, laundry, shopping.
    Service,
    /// Personlig omvårdnad.
    PersonalCare,
    /// Matdistribution, måltider.
    Meals,
    /// Trygghetslarm.
    SafetyAlarm,
    /// Ledsagning.
    Escort,
    /// Avlösning.
    Relief,
}

/// One granted service of a decision or order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// The code the case-management system uses for the service (kept for traceability).
    pub code: String,
    pub category: ServiceCategory,
    /// Granted minutes per calendar month.
    pub minutes_per_month: u32,
}
