//! What a caller may do: scopes as configured (`bind:<app>`, `read:<app>`, `admin`), and the
//! access each call needs.

use std::fmt::{self, Display};
use std::str::FromStr;

/// The apps a `bind:` or `read:` scope covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Apps {
    /// `*`: every app, present and future.
    All,
    One(String),
}

impl Apps {
    fn covers(&self, app: &str) -> bool {
        match self {
            Apps::All => true,
            Apps::One(name) => name == app,
        }
    }
}

impl Display for Apps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Apps::All => f.write_str("*"),
            Apps::One(name) => f.write_str(name),
        }
    }
}

/// One configured scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Bind, Unbind, UpdateBinding, GetBinding and ListBindings on these apps, and everything
    /// `read:` allows on them.
    Bind(Apps),
    /// GetBinding, ListBindings, ListNumbers, GetPoolStats, the call records and Watch.
    Read(Apps),
    /// Everything: PoolService's changes, ReconcileService, StoreService, every app.
    Admin,
}

impl Scope {
    /// The app a `bind:` or `read:` scope names, if it names one.
    pub fn app(&self) -> Option<&str> {
        match self {
            Scope::Bind(Apps::One(app)) | Scope::Read(Apps::One(app)) => Some(app),
            _ => None,
        }
    }

    fn grants(&self, access: &Access<'_>) -> bool {
        match (self, access) {
            (Scope::Admin, _) => true,
            (Scope::Bind(apps), Access::Bind(app) | Access::Read(app))
            | (Scope::Read(apps), Access::Read(app)) => apps.covers(app),
            (Scope::Bind(Apps::All) | Scope::Read(Apps::All), Access::ReadAll) => true,
            _ => false,
        }
    }
}

impl Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Bind(apps) => write!(f, "bind:{apps}"),
            Scope::Read(apps) => write!(f, "read:{apps}"),
            Scope::Admin => f.write_str("admin"),
        }
    }
}

impl FromStr for Scope {
    type Err = String;

    /// `admin`, `bind:<app>`, `read:<app>`, with `*` for every app. Whether the app exists is
    /// the configuration's check.
    fn from_str(s: &str) -> Result<Scope, String> {
        if s == "admin" {
            return Ok(Scope::Admin);
        }
        let apps = |name: &str| match name {
            "*" => Ok(Apps::All),
            "" => Err(format!("{s:?} names no app (use {s}* for every app)")),
            name => Ok(Apps::One(name.to_owned())),
        };
        match s.split_once(':') {
            Some(("bind", app)) => apps(app).map(Scope::Bind),
            Some(("read", app)) => apps(app).map(Scope::Read),
            _ => Err(format!(
                "{s:?} is not a scope: expected admin, bind:<app>, read:<app> (<app> may be *)"
            )),
        }
    }
}

/// What one call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access<'a> {
    /// A change to this app's bindings.
    Bind(&'a str),
    /// Reading this app's bindings, numbers, calls or changes.
    Read(&'a str),
    /// Reading every app's (a call record listing or Watch with no app filter).
    ReadAll,
    /// Changing the pool, reconciling, backing up.
    Admin,
}

impl Access<'_> {
    /// The narrowest scope that grants it, as a refusal names it.
    pub fn scope(&self) -> String {
        match self {
            Access::Bind(app) => format!("bind:{app}"),
            Access::Read(app) => format!("read:{app}"),
            Access::ReadAll => "read:*".to_owned(),
            Access::Admin => "admin".to_owned(),
        }
    }
}

/// Whether any of `scopes` grants `access`.
pub fn granted(scopes: &[Scope], access: &Access<'_>) -> bool {
    scopes.iter().any(|scope| scope.grants(access))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(list: &[&str]) -> Vec<Scope> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn scopes_parse_and_print_back() {
        for s in ["admin", "bind:rides", "read:rides", "bind:*", "read:*"] {
            assert_eq!(s.parse::<Scope>().unwrap().to_string(), s);
        }
        for bad in ["", "root", "bind", "bind:", "write:rides", "Admin"] {
            assert!(bad.parse::<Scope>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn each_scope_grants_what_it_says_and_no_more() {
        let bind = scopes(&["bind:rides"]);
        assert!(granted(&bind, &Access::Bind("rides")));
        assert!(granted(&bind, &Access::Read("rides")), "bind implies read");
        assert!(!granted(&bind, &Access::Bind("food")));
        assert!(!granted(&bind, &Access::ReadAll));
        assert!(!granted(&bind, &Access::Admin));

        let read = scopes(&["read:rides"]);
        assert!(granted(&read, &Access::Read("rides")));
        assert!(
            !granted(&read, &Access::Bind("rides")),
            "read does not bind"
        );

        let every = scopes(&["read:*"]);
        assert!(granted(&every, &Access::Read("food")));
        assert!(granted(&every, &Access::ReadAll));
        assert!(!granted(&every, &Access::Bind("food")));
        assert!(!granted(&every, &Access::Admin));

        let admin = scopes(&["admin"]);
        for access in [
            Access::Bind("rides"),
            Access::Read("food"),
            Access::ReadAll,
            Access::Admin,
        ] {
            assert!(granted(&admin, &access), "{access:?}");
        }
        assert!(!granted(&[], &Access::Read("rides")));
    }
}
