//! Between the store's records and the domain's types: the only place that knows both.

use super::binding::{Binding, BindingId, BindingState};
use crate::alloc::{Number, NumberState, NumberStatus, Occupant};
use crate::platform::options::{CallDirection, CallOptions};
use crate::store;

/// The slot a stored binding holds, for the index.
pub(super) fn occupant(b: &store::BindingRecord) -> Occupant<'_> {
    Occupant {
        x: &b.x,
        extension: b.extension.as_deref(),
        y: b.y.as_deref(),
        party_a: &b.party_a,
        party_b: b.party_b.as_deref(),
        binding: b.id.0,
    }
}

/// The slot binding `id` holds, from its `slots` entry, for the index.
pub(super) fn slot_occupant<'a>(
    x: &'a str,
    id: store::BindingId,
    slot: &store::SlotView<'a>,
) -> Occupant<'a> {
    Occupant {
        x,
        extension: slot.extension,
        y: slot.y,
        party_a: slot.party_a,
        party_b: slot.party_b,
        binding: id.0,
    }
}

/// A stored number, for the index.
pub(super) fn number(r: &store::NumberRecord) -> Number<'_> {
    Number {
        number: &r.number,
        area_code: &r.area_code,
        state: r.state.into(),
        suspect: r.needs_reconcile,
        status: r.platform_status.into(),
    }
}

impl From<store::PlatformStatus> for NumberStatus {
    fn from(s: store::PlatformStatus) -> Self {
        match s {
            store::PlatformStatus::Normal => NumberStatus::Normal,
            store::PlatformStatus::Paused => NumberStatus::Paused,
            store::PlatformStatus::Unavailable => NumberStatus::Unavailable,
            store::PlatformStatus::BindingFrozen => NumberStatus::BindingFrozen,
        }
    }
}

impl From<NumberStatus> for store::PlatformStatus {
    fn from(s: NumberStatus) -> Self {
        match s {
            NumberStatus::Normal => store::PlatformStatus::Normal,
            NumberStatus::Paused => store::PlatformStatus::Paused,
            NumberStatus::Unavailable => store::PlatformStatus::Unavailable,
            NumberStatus::BindingFrozen => store::PlatformStatus::BindingFrozen,
        }
    }
}

impl From<store::BindingId> for BindingId {
    fn from(id: store::BindingId) -> Self {
        BindingId(id.0)
    }
}

impl From<BindingId> for store::BindingId {
    fn from(id: BindingId) -> Self {
        store::BindingId(id.0)
    }
}

impl From<store::BindingState> for BindingState {
    fn from(s: store::BindingState) -> Self {
        match s {
            store::BindingState::Pending => BindingState::Pending,
            store::BindingState::Active => BindingState::Active,
            store::BindingState::Releasing => BindingState::Releasing,
            store::BindingState::Released => BindingState::Released,
            store::BindingState::Expired => BindingState::Expired,
        }
    }
}

impl From<store::NumberState> for NumberState {
    fn from(s: store::NumberState) -> Self {
        match s {
            store::NumberState::Active => NumberState::Active,
            store::NumberState::Draining => NumberState::Draining,
            store::NumberState::Frozen => NumberState::Frozen,
            store::NumberState::Removed => NumberState::Removed,
        }
    }
}

/// The domain's view of a stored binding. Fields the store adds stay internal until `Binding`
/// names them (and then this does not compile until they are filled in).
impl From<store::BindingRecord> for Binding {
    fn from(r: store::BindingRecord) -> Self {
        Binding {
            id: r.id.into(),
            state: r.state.into(),
            app: r.app,
            mode: r.mode,
            x: r.x,
            extension: r.extension,
            y: r.y,
            party_a: r.party_a,
            party_b: r.party_b,
            area_code: r.area_code,
            subscription_id: r.subscription_id,
            request_id: r.request_id,
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
            expires_at_ms: r.expires_at_ms,
            released_at_ms: r.released_at_ms,
            ttl_seconds: r.ttl_seconds,
            call_options: r.call_options.into(),
            user_data: r.user_data,
            reason: r.reason,
        }
    }
}

impl From<store::CallOptionsRecord> for CallOptions {
    fn from(r: store::CallOptionsRecord) -> Self {
        let store::CallOptionsRecord {
            call_direction,
            record,
            max_call_minutes,
            record_hint_tone,
            last_minute_tone,
            caller_hint_tone,
            callee_hint_tone,
            callback_tone,
            private_sms,
        } = r;
        CallOptions {
            // Only 0..=2 are ever written.
            call_direction: call_direction.and_then(|d| CallDirection::from_wire(u64::from(d))),
            record,
            max_call_minutes,
            record_hint_tone,
            last_minute_tone,
            caller_hint_tone,
            callee_hint_tone,
            callback_tone,
            private_sms,
        }
    }
}

impl From<CallOptions> for store::CallOptionsRecord {
    fn from(o: CallOptions) -> Self {
        let CallOptions {
            call_direction,
            record,
            max_call_minutes,
            record_hint_tone,
            last_minute_tone,
            caller_hint_tone,
            callee_hint_tone,
            callback_tone,
            private_sms,
        } = o;
        store::CallOptionsRecord {
            call_direction: call_direction.map(|d| d.wire() as u8),
            record,
            max_call_minutes,
            record_hint_tone,
            last_minute_tone,
            caller_hint_tone,
            callee_hint_tone,
            callback_tone,
            private_sms,
        }
    }
}
