//! `carehub token`: issue a bearer token signed with the configured key, for a role and,
//! for a system's token, the configured system it speaks for.

use std::process::ExitCode;
use std::time::Duration;

use carehub_model::Clock;

use crate::auth::{Auth, Role};
use crate::config::Config;

/// Issues the token and prints it; exit 2 when the role, system and organisation do not fit
/// the configuration.
pub(super) fn run(
    config: Config,
    role: Role,
    system: Option<String>,
    org: Option<String>,
    subject: String,
    ttl_minutes: Option<u64>,
) -> anyhow::Result<ExitCode> {
    if let Err(why) = token_system_fits(&config, role, system.as_deref(), org.as_deref()) {
        eprintln!("carehub token: {why}");
        return Ok(ExitCode::from(2));
    }
    let ttl = ttl_minutes.map(|m| Duration::from_secs(m * 60)).unwrap_or(config.token_ttl());
    match Auth::new(config.jwt_secret.expose(), Clock::system()).issue(
        &subject,
        role,
        system.as_deref(),
        org.as_deref(),
        ttl,
    ) {
        Ok(token) => {
            crate::out!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ crate::auth::TokenError::Sign(_)) => Err(e.into()),
        Err(e) => {
            eprintln!("carehub token: {e}");
            Ok(ExitCode::from(2))
        }
    }
}

/// Whether a token for `role` may name `system` (and `org`): the system must be configured,
/// of the role's kind, and a provider routed elsewhere may not speak through it.
fn token_system_fits(config: &Config, role: Role, system: Option<&str>, org: Option<&str>) -> Result<(), String> {
    use carehub_core::adapter::SystemRole;
    let Some(name) = system else {
        return match role.is_system() {
            true => Err(format!("a {} token needs --system (the configured system it speaks for)", role.as_str())),
            false => Ok(()),
        };
    };
    if !role.is_system() {
        return Err(format!("{} tokens name no system; leave out --system", role.as_str()));
    }
    let Some(sys) = config.systems.iter().find(|s| s.name == name) else {
        let known: Vec<&str> = config.systems.iter().map(|s| s.name.as_str()).collect();
        return Err(format!("no system named '{name}' is configured (configured: {})", known.join(", ")));
    };
    let want = match role {
        Role::ProviderSystem => SystemRole::ProviderSystem,
        _ => SystemRole::CaseManagement,
    };
    if sys.vendor.role() != want {
        return Err(format!(
            "'{name}' is a {} system; a {} token names a {} system",
            sys.vendor.role().as_str(),
            role.as_str(),
            want.as_str()
        ));
    }
    let routed = org
        .and_then(|o| carehub_model::OrgNumber::parse(o).ok())
        .and_then(|o| config.routes().get(o.as_str()).map(|r| r.system.clone()));
    match routed {
        Some(other) if other != name => {
            Err(format!("the provider's orders go to the system '{other}', not '{name}'; name that system"))
        }
        _ => Ok(()),
    }
}
