//! Which methods the layer routes, and where each request names its app: read at start-up
//! from the API's compiled descriptors, by field name, so a new method needs no code here —
//! only its place in [`WRITES`] when it changes state.

use std::collections::HashMap;

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};

use super::CallKind;

/// The services whose calls are about one app and are routed. The others stay local: health
/// and reflection answer for this replica, `StoreService` acts on its local store, and
/// `WatchService` streams the change feed every replica has.
pub(super) const ROUTED_SERVICES: [&str; 4] = [
    "xpool.v1.BindingService",
    "xpool.v1.PoolService",
    "xpool.v1.ReconcileService",
    "xpool.v1.CallService",
];

/// The methods (of [`ROUTED_SERVICES`]) that change state: they go to the app's leader. Every
/// other method is a read.
pub(super) const WRITES: [&str; 8] = [
    "Bind",
    "Unbind",
    "UpdateBinding",
    "AddNumbers",
    "DrainNumbers",
    "UndrainNumbers",
    "RemoveNumbers",
    "Reconcile",
];

/// The reads only the app's leader can answer (it alone holds the app's live pool: numbers,
/// their states, counts): always [`CallKind::ConsistentRead`], so a replica that does not
/// lead the app forwards them. Every other read is served from the local copy unless the
/// caller asks otherwise.
pub(super) const LEADER_READS: [&str; 2] = ["GetPoolStats", "ListNumbers"];

/// The request's field that names the app, and the one that names a binding.
pub(super) const APP_FIELD: &str = "app";
pub(super) const BINDING_FIELD: &str = "binding_id";

/// How one method is routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Method {
    /// The field number of the request's `app` string, if it has one.
    pub app: Option<u32>,
    /// The field number of the request's `binding_id` string, if it has one.
    pub binding_id: Option<u32>,
    /// Write, Read (a ConsistentRead by the caller's metadata) or, for [`LEADER_READS`],
    /// ConsistentRead.
    pub kind: CallKind,
}

/// Every routed method by its HTTP/2 path, `/xpool.v1.BindingService/Bind`.
#[derive(Debug, Default)]
pub(super) struct Methods {
    by_path: HashMap<String, Method>,
}

impl Methods {
    /// The methods of [`ROUTED_SERVICES`] in the encoded `FileDescriptorSet` `set`. A method
    /// whose client streams its requests is left out (served locally): the layer reads only a
    /// request's first message.
    pub(super) fn from_descriptors(set: &[u8]) -> Result<Methods, prost::DecodeError> {
        let set = FileDescriptorSet::decode(set)?;
        let mut messages = HashMap::new();
        for file in &set.file {
            let scope = match file.package() {
                "" => String::new(),
                package => format!(".{package}"),
            };
            for message in &file.message_type {
                index(&scope, message, &mut messages);
            }
        }
        let mut by_path = HashMap::new();
        for file in &set.file {
            for service in &file.service {
                let full = format!("{}.{}", file.package(), service.name());
                if !ROUTED_SERVICES.contains(&full.as_str()) {
                    continue;
                }
                for method in &service.method {
                    if method.client_streaming() {
                        continue;
                    }
                    let input = messages.get(method.input_type()).copied();
                    let kind = if WRITES.contains(&method.name()) {
                        CallKind::Write
                    } else if LEADER_READS.contains(&method.name()) {
                        CallKind::ConsistentRead
                    } else {
                        CallKind::Read
                    };
                    by_path.insert(
                        format!("/{full}/{}", method.name()),
                        Method {
                            app: input.and_then(|m| string_field(m, APP_FIELD)),
                            binding_id: input.and_then(|m| string_field(m, BINDING_FIELD)),
                            kind,
                        },
                    );
                }
            }
        }
        Ok(Methods { by_path })
    }

    /// The method at `path`, if it is routed.
    pub(super) fn get(&self, path: &str) -> Option<&Method> {
        self.by_path.get(path)
    }

    /// These methods and `method` at `path` (a test routes a method the API does not).
    #[cfg(test)]
    pub(super) fn with(mut self, path: &str, method: Method) -> Methods {
        self.by_path.insert(path.to_owned(), method);
        self
    }

    /// Every routed method, by path.
    #[cfg(test)]
    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, &Method)> {
        self.by_path.iter().map(|(path, m)| (path.as_str(), m))
    }
}

/// Adds `message` and its nested messages under their full names (`.xpool.v1.BindRequest`).
fn index<'a>(
    scope: &str,
    message: &'a DescriptorProto,
    out: &mut HashMap<String, &'a DescriptorProto>,
) {
    let name = format!("{scope}.{}", message.name());
    for nested in &message.nested_type {
        index(&name, nested, out);
    }
    out.insert(name, message);
}

/// The number of `message`'s singular string field `name`.
fn string_field(message: &DescriptorProto, name: &str) -> Option<u32> {
    message
        .field
        .iter()
        .find(|f| f.name() == name && f.r#type() == Type::String && f.label() != Label::Repeated)
        .and_then(|f| u32::try_from(f.number()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::pb::FILE_DESCRIPTOR_SET;

    /// Methods of the routed services whose requests name no app and no binding: a
    /// reconciliation run by its id (runs are kept by the replica that ran them), and the list
    /// of apps. They are served locally. A new method lands here only by a decision.
    const UNTARGETED: [&str; 4] = [
        "/xpool.v1.PoolService/ListApps",
        "/xpool.v1.ReconcileService/GetReconcileRun",
        "/xpool.v1.ReconcileService/ListReconcileRuns",
        "/xpool.v1.ReconcileService/WatchReconcileRun",
    ];

    fn every_method() -> Vec<(String, String)> {
        let set = FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).unwrap();
        let mut all = Vec::new();
        for file in set.file {
            for service in &file.service {
                let full = format!("{}.{}", file.package(), service.name());
                for method in &service.method {
                    all.push((full.clone(), format!("/{full}/{}", method.name())));
                }
            }
        }
        all
    }

    #[test]
    fn every_method_of_the_routed_services_is_classified_and_has_a_target() {
        let methods = Methods::from_descriptors(FILE_DESCRIPTOR_SET).unwrap();
        let mut seen = 0;
        for (service, path) in every_method() {
            if !ROUTED_SERVICES.contains(&service.as_str()) {
                assert_eq!(methods.get(&path), None, "{path} is not routed");
                continue;
            }
            seen += 1;
            let method = methods
                .get(&path)
                .unwrap_or_else(|| panic!("{path} is routed (no client streaming)"));
            let targeted = method.app.is_some() || method.binding_id.is_some();
            assert_eq!(
                targeted,
                !UNTARGETED.contains(&path.as_str()),
                "{path}: has an `app` or `binding_id` field, or is listed in UNTARGETED"
            );
        }
        assert_eq!(seen, methods.iter().count());
        for service in ROUTED_SERVICES {
            assert!(
                methods
                    .iter()
                    .any(|(p, _)| p.starts_with(&format!("/{service}/"))),
                "{service} has methods"
            );
        }
    }

    #[test]
    fn writes_are_the_methods_that_change_state() {
        let methods = Methods::from_descriptors(FILE_DESCRIPTOR_SET).unwrap();
        let mut writes: Vec<&str> = methods
            .iter()
            .filter(|(_, m)| m.kind == CallKind::Write)
            .map(|(p, _)| p.rsplit('/').next().unwrap())
            .collect();
        writes.sort_unstable();
        let mut want = WRITES.to_vec();
        want.sort_unstable();
        assert_eq!(writes, want, "every name in WRITES is a routed method");
        let mut leader_reads: Vec<&str> = methods
            .iter()
            .filter(|(_, m)| m.kind == CallKind::ConsistentRead)
            .map(|(p, _)| p.rsplit('/').next().unwrap())
            .collect();
        leader_reads.sort_unstable();
        assert_eq!(
            leader_reads, LEADER_READS,
            "every name in LEADER_READS is routed"
        );
    }

    #[test]
    fn field_numbers_come_from_the_descriptors() {
        let methods = Methods::from_descriptors(FILE_DESCRIPTOR_SET).unwrap();
        let get = |path: &str| *methods.get(path).unwrap();
        let bind = get("/xpool.v1.BindingService/Bind");
        assert_eq!(
            (bind.app, bind.binding_id, bind.kind),
            (Some(1), None, CallKind::Write)
        );
        let unbind = get("/xpool.v1.BindingService/Unbind");
        assert_eq!((unbind.app, unbind.binding_id), (Some(3), Some(1)));
        let update = get("/xpool.v1.BindingService/UpdateBinding");
        assert_eq!((update.app, update.binding_id), (None, Some(1)));
        let records = get("/xpool.v1.CallService/ListCallRecords");
        assert_eq!(
            (records.app, records.binding_id, records.kind),
            (Some(1), Some(2), CallKind::Read)
        );
        assert!(methods.get("/xpool.v1.WatchService/Watch").is_none());
        assert!(methods.get("/xpool.v1.StoreService/Backup").is_none());
        assert!(methods.get("/grpc.health.v1.Health/Check").is_none());
    }
}
