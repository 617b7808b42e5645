//! A number's status on the platform, as its `numStatus` pushes report it (notifications.md §3).

/// What the platform says of one of the app's numbers. Anything but `Normal` keeps it out of
/// rotation; `BindingFrozen` lets existing bindings live on, the others stop their calls too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum NumberStatus {
    #[default]
    Normal,
    /// "9": no new bindings, no calls, no SMS.
    Paused,
    /// "10": no new bindings, no calls, no SMS (with a cause: deleted, arrears…).
    Unavailable,
    /// "11": no new bindings; existing ones keep working.
    BindingFrozen,
}

impl NumberStatus {
    /// The status of a push's `status` code; `None` for a code the contract does not list.
    pub fn from_code(code: &str) -> Option<Self> {
        use crate::platform::push::number_status as code_of;
        Some(match code.trim() {
            c if c == code_of::NORMAL => NumberStatus::Normal,
            c if c == code_of::PAUSED => NumberStatus::Paused,
            c if c == code_of::UNAVAILABLE => NumberStatus::Unavailable,
            c if c == code_of::BINDING_FROZEN => NumberStatus::BindingFrozen,
            _ => return None,
        })
    }

    /// Whether new bindings may use the number.
    pub fn takes_bindings(self) -> bool {
        self == NumberStatus::Normal
    }

    /// The name clients see.
    pub fn as_str(self) -> &'static str {
        match self {
            NumberStatus::Normal => "NORMAL",
            NumberStatus::Paused => "PAUSED",
            NumberStatus::Unavailable => "UNAVAILABLE",
            NumberStatus::BindingFrozen => "BINDING_FROZEN",
        }
    }
}
