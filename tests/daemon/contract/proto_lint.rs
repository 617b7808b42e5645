//! buf's STANDARD lint rules, as far as the compiled descriptor set shows them, checked without
//! buf: `.ci/run` runs `buf lint` itself (proto/buf.yaml) where buf can be installed, and this
//! keeps the main rules checked where it cannot. Plus AIP-141's "no unsigned integers", which
//! buf does not check. The exceptions are those of proto/buf.yaml, narrowed to the RPCs and
//! messages they are for, and each must still be needed.

use std::collections::{BTreeMap, BTreeSet};

use prost::Message as _;
use prost_types::field_descriptor_proto::Type;
use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorProto, FileDescriptorSet};

const PACKAGE: &str = "xpool.v1";

/// RPCs whose response is not named `<Rpc>Response` (buf's RPC_RESPONSE_STANDARD_NAME):
/// `(service, rpc, response)`.
const RESPONSE_NAME_EXCEPTIONS: &[(&str, &str, &str)] = &[
    // The standard methods on the Binding resource return it (AIP-131 get, AIP-133 create,
    // AIP-134 update), and so does Unbind, a custom method that changes it (AIP-136).
    ("BindingService", "Bind", "Binding"),
    ("BindingService", "Unbind", "Binding"),
    ("BindingService", "UpdateBinding", "Binding"),
    ("BindingService", "GetBinding", "Binding"),
    // The same for the ReconcileRun resource, which a long-running Reconcile returns at once
    // and GetReconcileRun / WatchReconcileRun show as it goes (AIP-151's pattern for an
    // operation the caller follows).
    ("ReconcileService", "Reconcile", "ReconcileRun"),
    ("ReconcileService", "GetReconcileRun", "ReconcileRun"),
    ("ReconcileService", "WatchReconcileRun", "ReconcileRun"),
];

/// Messages that several RPCs may take or return (buf's RPC_REQUEST_RESPONSE_UNIQUE): the
/// resource the methods above return.
const SHARED_MESSAGES: &[&str] = &["Binding", "ReconcileRun"];

/// Messages that still have unsigned integer fields (AIP-141: none). Empty; the check stays so
/// that an exception, if one is ever needed, is named here.
const UNSIGNED_PENDING: &[&str] = &[];

/// File options every file sets, so that each language's generator runs without flags; the
/// first three must be the same in every file of the package (buf's PACKAGE_SAME_*).
const FILE_OPTIONS: [&str; 4] = [
    "go_package",
    "java_package",
    "java_multiple_files",
    "java_outer_classname",
];

/// The API's files in the descriptor set the server's reflection serves.
fn api_files() -> Vec<FileDescriptorProto> {
    let set = FileDescriptorSet::decode(xpool::grpc::pb::FILE_DESCRIPTOR_SET).unwrap();
    set.file
        .into_iter()
        .filter(|f| f.package() == PACKAGE)
        .collect()
}

#[test]
fn the_protos_follow_bufs_standard_rules_and_have_no_unsigned_integers() {
    let files = api_files();
    let names: Vec<&str> = files.iter().map(|f| f.name()).collect();
    assert!(
        names.contains(&"xpool/v1/binding.proto") && names.len() >= 4,
        "the descriptor set holds the API: {names:?}"
    );
    let report = lint(&files);
    assert!(
        report.violations.is_empty(),
        "the protos break lint rules (see proto/buf.yaml; an intended exception goes there \
         and into tests/daemon/contract/proto_lint.rs):\n  {}",
        report.violations.join("\n  ")
    );
}

#[test]
fn every_lint_exception_is_still_needed() {
    let report = lint(&api_files());
    let mut stale = Vec::new();
    for (service, rpc, response) in RESPONSE_NAME_EXCEPTIONS {
        if !report.used.contains(&format!("response {service}.{rpc}")) {
            stale.push(format!(
                "{service}.{rpc} no longer returns {response}: remove it from \
                 RESPONSE_NAME_EXCEPTIONS (and from proto/buf.yaml's ignore_only if it was \
                 the last one of its file)"
            ));
        }
    }
    for message in UNSIGNED_PENDING {
        if !report.used.contains(&format!("unsigned {message}")) {
            stale.push(format!(
                "{message} has no unsigned field any more: remove it from UNSIGNED_PENDING"
            ));
        }
    }
    assert!(
        stale.is_empty(),
        "stale lint exceptions:\n  {}",
        stale.join("\n  ")
    );
}

/// The rules fire: a file that breaks each of them is reported for each.
#[test]
fn the_lint_finds_what_it_checks() {
    use prost_types::{
        EnumValueDescriptorProto, FieldDescriptorProto, MethodDescriptorProto,
        ServiceDescriptorProto,
    };
    let message = |name: &str| DescriptorProto {
        name: Some(name.into()),
        ..Default::default()
    };
    let bad = FileDescriptorProto {
        name: Some("xpool/v1/Bad.proto".into()),
        package: Some(PACKAGE.into()),
        syntax: Some("proto3".into()),
        message_type: vec![
            DescriptorProto {
                name: Some("FetchRequest".into()),
                field: vec![FieldDescriptorProto {
                    name: Some("itemCount".into()),
                    r#type: Some(Type::Uint32.into()),
                    ..Default::default()
                }],
                ..Default::default()
            },
            message("Thing"),
        ],
        enum_type: vec![EnumDescriptorProto {
            name: Some("Color".into()),
            value: vec![EnumValueDescriptorProto {
                name: Some("RED".into()),
                number: Some(0),
                ..Default::default()
            }],
            ..Default::default()
        }],
        service: vec![ServiceDescriptorProto {
            name: Some("Things".into()),
            method: vec![MethodDescriptorProto {
                name: Some("Get".into()),
                input_type: Some(".xpool.v1.FetchRequest".into()),
                output_type: Some(".xpool.v1.Thing".into()),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let found = lint(&[bad]).violations.join("\n");
    for rule in [
        "FILE_LOWER_SNAKE_CASE",
        "option go_package",
        "option java_outer_classname",
        "ENUM_VALUE_PREFIX",
        "ENUM_ZERO_VALUE_SUFFIX",
        "FIELD_LOWER_SNAKE_CASE",
        "AIP-141",
        "SERVICE_SUFFIX",
        "RPC_REQUEST_STANDARD_NAME",
        "RPC_RESPONSE_STANDARD_NAME",
    ] {
        assert!(found.contains(rule), "{rule} not reported:\n{found}");
    }
}

#[derive(Debug, Default)]
struct Report {
    violations: Vec<String>,
    /// The exceptions that applied: `response Service.Rpc`, `unsigned Message`.
    used: BTreeSet<String>,
}

fn lint(files: &[FileDescriptorProto]) -> Report {
    let mut report = Report::default();
    let mut same_options: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut uses: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in files {
        let v = &mut report.violations;
        let name = file.name();
        let base = name.rsplit('/').next().unwrap_or(name);
        if !name.starts_with("xpool/v1/") {
            v.push(format!("{name}: PACKAGE_DIRECTORY_MATCH: not in xpool/v1/"));
        }
        if !is_lower_snake(base.trim_end_matches(".proto")) {
            v.push(format!("{name}: FILE_LOWER_SNAKE_CASE"));
        }
        if file.syntax() != "proto3" {
            v.push(format!("{name}: SYNTAX_SPECIFIED: proto3"));
        }
        for (option, value) in FILE_OPTIONS.into_iter().zip(file_options(file)) {
            match value {
                None => v.push(format!("{name}: option {option} missing")),
                Some(value) if option != "java_outer_classname" => {
                    same_options.entry(option).or_default().insert(value);
                }
                Some(_) => {}
            }
        }
        for e in &file.enum_type {
            lint_enum(name, e, v);
        }
        for m in &file.message_type {
            lint_message(name, m, &mut report);
        }
        for service in &file.service {
            let s = service.name();
            let v = &mut report.violations;
            if !is_pascal(s) {
                v.push(format!("{name}: SERVICE_PASCAL_CASE: {s}"));
            }
            if !s.ends_with("Service") {
                v.push(format!("{name}: SERVICE_SUFFIX: {s}"));
            }
            for method in &service.method {
                let rpc = method.name();
                let request = local_name(method.input_type());
                let response = local_name(method.output_type());
                if !is_pascal(rpc) {
                    v.push(format!("{name}: RPC_PASCAL_CASE: {s}.{rpc}"));
                }
                if ![format!("{rpc}Request"), format!("{s}{rpc}Request")].contains(&request) {
                    v.push(format!(
                        "{name}: RPC_REQUEST_STANDARD_NAME: {s}.{rpc} takes {request}"
                    ));
                }
                let excepted = RESPONSE_NAME_EXCEPTIONS.contains(&(s, rpc, response.as_str()));
                if excepted {
                    report.used.insert(format!("response {s}.{rpc}"));
                } else if ![format!("{rpc}Response"), format!("{s}{rpc}Response")]
                    .contains(&response)
                {
                    v.push(format!(
                        "{name}: RPC_RESPONSE_STANDARD_NAME: {s}.{rpc} returns {response}"
                    ));
                }
                for message in [request, response] {
                    uses.entry(message).or_default().push(format!("{s}.{rpc}"));
                }
            }
        }
    }
    for (option, values) in same_options {
        if values.len() > 1 {
            report.violations.push(format!(
                "PACKAGE_SAME_{option}: differs between files: {values:?}"
            ));
        }
    }
    for (message, rpcs) in uses {
        if rpcs.len() > 1 && !SHARED_MESSAGES.contains(&message.as_str()) {
            report.violations.push(format!(
                "RPC_REQUEST_RESPONSE_UNIQUE: {message} is used by {rpcs:?}"
            ));
        }
    }
    report
}

/// The values of [`FILE_OPTIONS`], in that order.
fn file_options(file: &FileDescriptorProto) -> [Option<String>; 4] {
    let o = file.options.clone().unwrap_or_default();
    [
        o.go_package,
        o.java_package,
        o.java_multiple_files.map(|b| b.to_string()),
        o.java_outer_classname,
    ]
}

fn lint_enum(file: &str, e: &EnumDescriptorProto, v: &mut Vec<String>) {
    let name = e.name();
    if !is_pascal(name) {
        v.push(format!("{file}: ENUM_PASCAL_CASE: {name}"));
    }
    let prefix = format!("{}_", upper_snake(name));
    let zero = format!("{prefix}UNSPECIFIED");
    match e.value.first() {
        Some(first) if first.number() == 0 && first.name() == zero => {}
        _ => v.push(format!(
            "{file}: ENUM_ZERO_VALUE_SUFFIX: {name}'s first value must be {zero} = 0"
        )),
    }
    for value in &e.value {
        let value = value.name();
        if !value.starts_with(&prefix) || value.to_ascii_uppercase() != value {
            v.push(format!(
                "{file}: ENUM_VALUE_PREFIX: {name}.{value} is not {prefix}UPPER_SNAKE"
            ));
        }
    }
}

fn lint_message(file: &str, m: &DescriptorProto, report: &mut Report) {
    let name = m.name();
    let v = &mut report.violations;
    if !is_pascal(name) {
        v.push(format!("{file}: MESSAGE_PASCAL_CASE: {name}"));
    }
    for field in &m.field {
        let f = field.name();
        if !is_lower_snake(f) {
            v.push(format!("{file}: FIELD_LOWER_SNAKE_CASE: {name}.{f}"));
        }
        let unsigned = matches!(
            field.r#type(),
            Type::Uint32 | Type::Uint64 | Type::Fixed32 | Type::Fixed64
        );
        if unsigned && UNSIGNED_PENDING.contains(&name) {
            report.used.insert(format!("unsigned {name}"));
        } else if unsigned {
            v.push(format!(
                "{file}: AIP-141: {name}.{f} is unsigned; use int32 / int64"
            ));
        }
    }
    for (i, oneof) in m.oneof_decl.iter().enumerate() {
        // protoc's own oneof around a proto3 `optional` field is named `_<field>`.
        let synthetic = m
            .field
            .iter()
            .any(|f| f.oneof_index == Some(i as i32) && f.proto3_optional());
        if !synthetic && !is_lower_snake(oneof.name()) {
            v.push(format!(
                "{file}: ONEOF_LOWER_SNAKE_CASE: {name}.{}",
                oneof.name()
            ));
        }
    }
    for e in &m.enum_type {
        lint_enum(file, e, &mut report.violations);
    }
    for nested in &m.nested_type {
        // Map entries are generated by protoc, named `<Field>Entry`.
        if !nested.options.as_ref().is_some_and(|o| o.map_entry()) {
            lint_message(file, nested, report);
        }
    }
}

/// `.xpool.v1.BindRequest` → `BindRequest`; a type from another package keeps its full name,
/// so it never passes for a standard name.
fn local_name(type_name: &str) -> String {
    let ours = format!(".{PACKAGE}.");
    type_name
        .strip_prefix(&ours)
        .unwrap_or(type_name)
        .to_owned()
}

fn is_pascal(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_uppercase()) && s.chars().all(|c| c.is_ascii_alphanumeric())
}

fn is_lower_snake(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// `BindingState` → `BINDING_STATE`.
fn upper_snake(s: &str) -> String {
    let mut out = String::new();
    let mut previous_lower = false;
    for c in s.chars() {
        if c.is_ascii_uppercase() && previous_lower {
            out.push('_');
        }
        previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        out.push(c.to_ascii_uppercase());
    }
    out
}
