//! device: devices bound to a purchased order (purchase_plan, released again by a compensation or a
//! refund), and devices a user provisions within their quota in a simulated container (device_creation).

mod allocation;
mod provisioning;
mod runtime;

use saga_participant::Router;

/// The device service's actions.
pub(crate) fn router() -> Router {
    Router::new()
        .execute("AllocateDevice", allocation::allocate_device)
        .compensate("ReleaseDevice", allocation::release_device)
        .execute("ReleaseOrderDevices", allocation::release_order_devices)
        .execute("CheckQuota", provisioning::check_quota)
        .execute("CreateContainer", provisioning::create_container)
        .compensate("DestroyContainer", provisioning::destroy_container)
        .execute("CreateDeviceRecord", provisioning::create_device_record)
        .compensate("DeleteDeviceRecord", provisioning::delete_device_record)
        .execute("InitializeDevice", provisioning::initialize_device)
        .compensate("ResetDevice", provisioning::reset_device)
        .execute("IncrementQuotaUsage", provisioning::increment_quota_usage)
        .compensate("DecrementQuotaUsage", provisioning::decrement_quota_usage)
}
