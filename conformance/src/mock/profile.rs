//! Which vendor the mock plays the hub toward, and how: its side, its wire, the system
//! settings it starts with, and the counterpart the mock keeps inside itself so the hub has
//! something to send it.
//!
//! Why per vendor and not generic: the seven vendors are a closed set (as in
//! `carehub_adapters::VENDORS`), and what the mock must add differs by side. A
//! provider-side vendor (Phoniro, Lifecare Mobil, ParaGå) is sent orders, which the hub
//! makes from decisions, so the mock holds a case-management system (Combine) it injects
//! decisions through. A case-management vendor (Combine, Treserva, Procapita, Lifecare) is
//! sent acknowledgements and plan notices, which the hub makes from what a provider says,
//! so the mock holds a provider system (Phoniro) it injects those through. The transport
//! is a per-vendor choice ([`Transport`]); the SFTP vendors use the mock's own drop box
//! (`files`).

use crate::exchange::Wire;
use crate::mock::MockError;

/// Which side of the hub a vendor's system sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// A case-management system: sends decisions, is sent acknowledgements and plans.
    CaseManagement,
    /// A provider's time-registration system: is sent orders, sends acknowledgements.
    Provider,
}

/// How the vendor's messages travel to and from the mock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The vendor calls the hub's API over HTTP(S) and the hub calls the vendor back.
    Http(Wire),
    /// Files in an SFTP drop box the mock serves itself (`conformance/src/dropbox/`).
    Sftp,
}

/// One vendor as the mock plays toward it.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    /// The vendor's name in configuration; also the name of its system in the mock.
    pub vendor: &'static str,
    pub side: Side,
    pub transport: Transport,
    /// The vendor system's keys (a `[[systems]]` table without name and vendor) when the
    /// mock's configuration gives none: addresses on loopback where nothing need listen.
    pub defaults: &'static str,
}

impl Profile {
    /// The wire the journal records the vendor's exchanges on.
    pub fn wire(&self) -> Wire {
        match self.transport {
            Transport::Http(w) => w,
            Transport::Sftp => Wire::Sftp,
        }
    }
}

/// The name of the case-management system inside a mock that plays toward a provider-side
/// vendor.
pub const CASE_MANAGEMENT_COUNTERPART: &str = "mock-case-management";
/// The name of the provider system inside a mock that plays toward a case-management
/// vendor.
pub const PROVIDER_COUNTERPART: &str = "mock-provider";

const VENDORS: &[Profile] = &[
    Profile {
        vendor: "combine",
        side: Side::CaseManagement,
        transport: Transport::Http(Wire::Http),
        defaults: "callback_url = \"http://127.0.0.1:9101/carehub/callback\"\n",
    },
    Profile {
        vendor: "treserva",
        side: Side::CaseManagement,
        transport: Transport::Http(Wire::Soap),
        defaults: "endpoint_url = \"http://127.0.0.1:9103/soap\"\n",
    },
    Profile { vendor: "procapita", side: Side::CaseManagement, transport: Transport::Sftp, defaults: "" },
    Profile {
        vendor: "lifecare",
        side: Side::CaseManagement,
        transport: Transport::Http(Wire::Http),
        defaults: "base_url = \"http://127.0.0.1:9104/api/v1\"\ntoken_url = \"http://127.0.0.1:9104/oauth/token\"\nclient_id = \"carehub\"\nclient_secret = \"mock-only-secret\"\n",
    },
    Profile {
        vendor: "phoniro",
        side: Side::Provider,
        transport: Transport::Http(Wire::Http),
        defaults: "base_url = \"http://127.0.0.1:9102/api/v1\"\n",
    },
    Profile {
        vendor: "lifecare-mobil",
        side: Side::Provider,
        transport: Transport::Http(Wire::Http),
        defaults: "base_url = \"http://127.0.0.1:9105/api/v1\"\ntoken_url = \"http://127.0.0.1:9105/oauth/token\"\nclient_id = \"carehub\"\nclient_secret = \"mock-only-secret\"\n",
    },
    Profile { vendor: "paraga", side: Side::Provider, transport: Transport::Sftp, defaults: "" },
];

/// The profile of `vendor`, or an error naming the vendors the mock knows.
pub fn profile(vendor: &str) -> Result<Profile, MockError> {
    VENDORS.iter().find(|p| p.vendor == vendor).copied().ok_or_else(|| MockError::UnknownVendor {
        vendor: vendor.to_owned(),
        known: VENDORS.iter().map(|p| p.vendor).collect::<Vec<_>>().join(", "),
    })
}

/// What the mock can send the vendor through its counterpart, by side.
pub fn messages(side: Side) -> &'static [&'static str] {
    match side {
        Side::Provider => &["order", "order_change", "order_end"],
        Side::CaseManagement => &["order_ack", "plan_notice", "verification"],
    }
}
