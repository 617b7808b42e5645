//! `deploy/Dockerfile` and `.dockerignore`: a cached multi-stage build, and a runtime image
//! that runs as a numeric non-root user, checks its own health and can reach the platform.

use std::path::Path;

/// One instruction, its continuation lines joined and comments dropped.
#[derive(Debug)]
struct Instruction {
    /// 0 for the first `FROM`'s stage, and so on.
    stage: usize,
    keyword: String,
    args: String,
}

fn instructions() -> Vec<Instruction> {
    let text = super::read(&super::deploy_dir().join("Dockerfile"));
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                logical.push(std::mem::take(&mut current));
            }
        }
    }
    assert!(current.is_empty(), "the Dockerfile ends in a continuation");
    let mut stage = 0;
    let mut seen_from = false;
    logical
        .into_iter()
        .map(|line| {
            let (keyword, args) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
            let keyword = keyword.to_ascii_uppercase();
            if keyword == "FROM" {
                stage += usize::from(seen_from);
                seen_from = true;
            }
            let args = args.split_whitespace().collect::<Vec<_>>().join(" ");
            Instruction {
                stage,
                keyword,
                args,
            }
        })
        .collect()
}

/// The `XPOOL__*` variables the image's `ENV` sets.
pub fn xpool_env() -> Vec<(String, String)> {
    let mut vars = Vec::new();
    for env in instructions().iter().filter(|i| i.keyword == "ENV") {
        for pair in env.args.split_whitespace() {
            let (name, value) = pair.split_once('=').expect("ENV NAME=value");
            if name.starts_with("XPOOL__") {
                vars.push((name.to_owned(), value.trim_matches('"').to_owned()));
            }
        }
    }
    vars
}

#[test]
fn the_build_is_multi_stage_pinned_and_cached() {
    let all = instructions();
    let froms: Vec<&Instruction> = all.iter().filter(|i| i.keyword == "FROM").collect();
    assert!(froms.len() >= 2, "a build stage and a runtime stage");
    for from in &froms {
        let image = from.args.split_whitespace().next().unwrap_or("");
        let tag = image.rsplit_once(':').map(|(_, tag)| tag).unwrap_or("");
        assert!(
            !tag.is_empty() && tag != "latest",
            "FROM {image}: pin a tag"
        );
    }
    // The build image's toolchain is the workspace's rust-version.
    let manifest: toml::Value = toml::from_str(&super::read(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"),
    ))
    .unwrap();
    let rust = manifest["workspace"]["package"]["rust-version"]
        .as_str()
        .unwrap();
    assert!(
        froms[0].args.starts_with(&format!("rust:{rust}-")),
        "{}",
        froms[0].args
    );
    let last = froms.last().unwrap();
    assert!(
        last.args.starts_with("debian:") && last.args.contains("-slim"),
        "{}",
        last.args
    );

    let build = all
        .iter()
        .find(|i| i.keyword == "RUN" && i.args.contains("cargo build"))
        .expect("RUN cargo build");
    assert!(build.args.contains("--locked"), "cargo build --locked");
    for cached in ["/usr/local/cargo/registry", "/target"] {
        let mount = build.args.split_whitespace().any(|word| {
            word.starts_with("--mount=type=cache")
                && word
                    .split(',')
                    .filter_map(|option| option.strip_prefix("target="))
                    .any(|target| target.ends_with(cached))
        });
        assert!(
            mount,
            "RUN cargo build: no cache mount for {cached}: {}",
            build.args
        );
    }
    assert!(
        !all.iter().any(|i| i.args.contains("protobuf-compiler")),
        "protoc is vendored"
    );
}

#[test]
fn the_runtime_image_is_non_root_with_certificates_a_volume_and_a_healthcheck() {
    let all = instructions();
    let runtime = all.last().expect("instructions").stage;
    let final_stage: Vec<&Instruction> = all.iter().filter(|i| i.stage == runtime).collect();
    let find = |keyword: &'static str| {
        final_stage
            .iter()
            .copied()
            .filter(move |i| i.keyword == keyword)
    };

    let user = find("USER").next_back().expect("USER in the runtime stage");
    let uid = user.args.split(':').next().unwrap_or("");
    let uid: u32 = uid
        .parse()
        .unwrap_or_else(|_| panic!("USER {}: a numeric UID (runAsNonRoot checks it)", user.args));
    assert_eq!(uid, 10001, "USER: the UID the Kubernetes manifests run as");

    let installs = find("RUN").any(|run| {
        run.args.contains("apt-get install")
            && run.args.split_whitespace().any(|w| w == "ca-certificates")
    });
    assert!(
        installs,
        "the runtime stage installs ca-certificates (rustls-platform-verifier)"
    );

    let healthcheck = find("HEALTHCHECK").next().expect("HEALTHCHECK");
    let command = healthcheck
        .args
        .split_once("CMD")
        .expect("HEALTHCHECK … CMD")
        .1;
    let words: Vec<&str> = command
        .split([' ', ',', '[', ']', '"'])
        .filter(|w| !w.is_empty())
        .collect();
    let runs = words
        .windows(2)
        .any(|w| (w[0] == "xpool" || w[0].ends_with("/xpool")) && w[1] == "health");
    assert!(runs, "HEALTHCHECK runs `xpool health`: {command}");

    let volume = find("VOLUME")
        .next()
        .expect("VOLUME")
        .args
        .trim_matches(['[', ']', '"'])
        .to_owned();
    let store = xpool_env()
        .into_iter()
        .find(|(name, _)| name == "XPOOL__STORE__PATH")
        .expect("ENV XPOOL__STORE__PATH")
        .1;
    assert!(
        store.starts_with(&format!("{volume}/")),
        "store {store} is not inside VOLUME {volume}"
    );

    let exposed: Vec<&str> = find("EXPOSE")
        .flat_map(|e| e.args.split_whitespace())
        .collect();
    for port in ["50051", "8090", "9090"] {
        assert!(exposed.contains(&port), "EXPOSE {port}");
    }
    let entrypoint = find("ENTRYPOINT").next().expect("ENTRYPOINT");
    assert!(entrypoint.args.contains("/usr/local/bin/xpool"));
}

#[test]
fn the_dockerignore_keeps_build_output_and_history_out() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(".dockerignore");
    let text = super::read(&path);
    let patterns: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_start_matches('/').trim_end_matches('/'))
        .collect();
    for needed in ["target", ".git", "xpool-data", "bench-out"] {
        assert!(patterns.contains(&needed), ".dockerignore lacks {needed}");
    }
    // What the build needs stays in the context.
    for kept in [
        "src",
        "proto",
        "crates",
        "Cargo.toml",
        "Cargo.lock",
        "build.rs",
        "benches",
    ] {
        assert!(!patterns.contains(&kept), ".dockerignore drops {kept}");
    }
}
