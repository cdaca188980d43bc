//! The engine's side of OPA reports: who may report for which System, and what the Systems'
//! OPAs report taken into their statuses (`status.opas`, `Live`), kept through a restart until
//! the OPAs have had time to report again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::Engine;
use crate::model::ObjectKey;

/// The engine's side of OPA reports.
pub(super) struct Reports {
    pub(super) ingest: Arc<crate::ingest::Ingest>,
    pub(super) reporters: crate::operator::reports::ReporterMap,
    pub(super) stores: crate::ingest::TenantStores,
    /// Until when statuses keep what they said of their OPAs at start, for Systems none of
    /// whose OPAs has reported since.
    pub(super) grace_until: Option<SystemTime>,
    /// The Systems OPAs may report for (each with what it reports as and its reporting
    /// interval), worked out again only after a round rebuilt something.
    pub(super) systems: Option<Vec<(ObjectKey, crate::ingest::SystemKey, Duration)>>,
}

impl Engine {
    /// Take OPA reports from `ingest`: keep `reporters` (who may report for which System) and
    /// `stores` (each Tenant's store for decisions) current, and show what the OPAs run in
    /// each System's status.
    pub fn with_reports(
        mut self,
        ingest: Arc<crate::ingest::Ingest>,
        reporters: crate::operator::reports::ReporterMap,
        stores: crate::ingest::TenantStores,
    ) -> Self {
        self.reports = Some(Reports { ingest, reporters, stores, grace_until: None, systems: None });
        self
    }

    /// Take what the OPAs reported by `now` into the Systems' statuses; returns whether any
    /// System's changed (then statuses are written). Also refreshes who may report for what.
    pub fn refresh_fleet(&mut self, now: SystemTime) -> bool {
        let Some(reports) = &mut self.reports else { return false };
        if reports.systems.is_none() {
            reports.systems = Some(reporting_systems(&self.ws, &reports.reporters));
        }
        let systems = reports.systems.as_deref().unwrap_or_default();
        let ingest = reports.ingest.clone();
        let grace_until = *reports.grace_until.get_or_insert(now + Duration::from_secs(90));
        if now < grace_until && !self.ws.fleet_observed().is_empty() {
            // Until the OPAs have had time to report again, a System none of whose OPAs has
            // reported since the start keeps what its status said.
            let reported: Vec<_> = systems
                .iter()
                .filter(|(key, system, interval)| {
                    !self.ws.fleet_observed().contains_key(key)
                        || ingest.summary(system, None, now, *interval).reporting > 0
                })
                .cloned()
                .collect();
            return self.ws.refresh_fleet(&ingest, &reported, now);
        }
        if !self.ws.fleet_observed().is_empty() {
            self.ws.observe_fleet(BTreeMap::new());
            // Every System now shows what its OPAs reported (the observed view is gone).
            self.ws.refresh_fleet(&ingest, systems, now);
            return true;
        }
        self.ws.refresh_fleet(&ingest, systems, now)
    }
}

/// The Systems OPAs may report for, with what each reports as and its OPAs' reporting
/// interval; `reporters` (who may report for which `system_id`) is replaced to match.
fn reporting_systems(
    ws: &crate::engine::workspace::Workspace,
    reporters: &crate::operator::reports::ReporterMap,
) -> Vec<(ObjectKey, crate::ingest::SystemKey, Duration)> {
    let mut allowed = BTreeMap::new();
    let mut systems = Vec::new();
    for (key, build) in &ws.builds {
        let Some(input) = &build.input else { continue };
        let Some(entry) = ws.catalog.systems().get(key) else { continue };
        let system = crate::ingest::SystemKey::new(&input.tenant, &input.cluster, &key.namespace, &key.name);
        let service_account = entry
            .system
            .spec
            .service_account_name
            .clone()
            .unwrap_or_else(|| crate::operator::reports::DEFAULT_SERVICE_ACCOUNT.to_string());
        let own_storage =
            ws.catalog.tenants().get(&input.tenant).is_some_and(|t| t.tenant.spec.storage.is_some());
        // OPAs report after each bundle poll: at most the polling's longest delay apart.
        let interval =
            Duration::from_secs(if own_storage { 30 } else { crate::opa_config::HTTP_POLL_MAX_SECONDS });
        allowed.insert(
            input.system_id(),
            crate::operator::reports::Reporter { key: system.clone(), service_account },
        );
        systems.push((key.clone(), system, interval));
    }
    if let Ok(mut r) = reporters.write() {
        *r = allowed;
    }
    systems
}
