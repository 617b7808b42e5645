//! `examples/java` compiled with javac against Debian's grpc-java and protobuf jars (stubs from
//! `examples/generate.sh java`, i.e. protoc with Debian's grpc-java plugin) and run against the
//! daemon. Without those packages the test says so and passes: `.ci/run` installs no JDK
//! packages. (Maven, as examples/java/pom.xml builds it, cannot be tested offline.)

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Output;

use super::super::tools::{PyTools, output, python_tools, said};
use super::*;

/// Where Debian's Java packages put their jars.
const DEBIAN_JARS: &str = "/usr/share/java";
/// The jars the client runs with (javac needs the first eight), with the Debian packages that
/// hold them.
const JARS: &[(&str, &str)] = &[
    ("protobuf.jar", "libprotobuf-java"),
    ("grpc-api.jar", "libgrpc-java"),
    ("grpc-stub.jar", "libgrpc-java"),
    ("grpc-protobuf.jar", "libgrpc-java"),
    ("grpc-protobuf-lite.jar", "libgrpc-java"),
    (
        "proto-google-common-protos.jar",
        "libgoogle-common-protos-java",
    ),
    ("guava.jar", "libguava-java"),
    // javax.annotation.Generated, which grpc-java's stubs carry.
    (
        "geronimo-annotation-1.3-spec.jar",
        "libgeronimo-annotation-1.3-spec-java",
    ),
    ("grpc-core.jar", "libgrpc-java"),
    ("grpc-context.jar", "libgrpc-java"),
    ("grpc-netty.jar", "libgrpc-java"),
    ("netty-common.jar", "libnetty-java"),
    ("netty-buffer.jar", "libnetty-java"),
    ("netty-transport.jar", "libnetty-java"),
    ("netty-resolver.jar", "libnetty-java"),
    ("netty-codec.jar", "libnetty-java"),
    ("netty-codec-http.jar", "libnetty-java"),
    ("netty-codec-http2.jar", "libnetty-java"),
    ("netty-codec-socks.jar", "libnetty-java"),
    ("netty-handler.jar", "libnetty-java"),
    ("netty-handler-proxy.jar", "libnetty-java"),
    ("netty-transport-native-unix-common.jar", "libnetty-java"),
    ("netty-tcnative.jar", "libnetty-tcnative-java"),
    ("perfmark-api.jar", "libperfmark-java"),
];
/// OpenSSL for netty, under the name Debian gives it. Debian's netty has no ALPN over the
/// JDK's own TLS, and gRPC over TLS needs ALPN; netty looks for `libnetty_tcnative.so` and
/// refuses a link to a file of another name, so the test copies it into the compiled
/// classes' `native/`.
const TCNATIVE: (&str, &str) = (
    "/usr/lib/x86_64-linux-gnu/jni/libnetty-tcnative.so",
    "libnetty-tcnative-jni",
);
/// How many of [`JARS`] javac needs.
const COMPILE_JARS: usize = 8;

fn classpath(jars: &[(&str, &str)], first: &[&Path]) -> std::ffi::OsString {
    let jars = jars.iter().map(|(jar, _)| Path::new(DEBIAN_JARS).join(jar));
    std::env::join_paths(first.iter().map(|p| p.to_path_buf()).chain(jars)).unwrap()
}

/// Why the Java example cannot be built here, if it cannot.
fn missing() -> Option<String> {
    let runs = |tool: &str, arg: &str| {
        std::process::Command::new(tool)
            .arg(arg)
            .output()
            .is_ok_and(|out| out.status.success())
    };
    let mut absent: Vec<&str> = Vec::new();
    if !runs("javac", "-version") || !runs("java", "-version") {
        absent.push("default-jdk-headless");
    }
    if !runs("protoc", "--version") {
        absent.push("protobuf-compiler");
    }
    if !runs("protoc-gen-grpc-java", "--version")
        && !Path::new("/usr/bin/grpc_java_plugin").exists()
    {
        absent.push("protobuf-compiler-grpc-java-plugin");
    }
    if !Path::new(TCNATIVE.0).exists() {
        absent.push(TCNATIVE.1);
    }
    for (jar, package) in JARS {
        if !Path::new(DEBIAN_JARS).join(jar).exists() && !absent.contains(package) {
            absent.push(package);
        }
    }
    (!absent.is_empty()).then(|| format!("apt-get install {}", absent.join(" ")))
}

/// The client's classes: generated and compiled once per content of the protos, the client's
/// source and the error-details proto, kept under the target directory.
async fn compile(tools: &PyTools) -> PathBuf {
    let work = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(root().join("examples/generate.sh"));
    cmd.arg("--out").arg(work.path()).arg("java");
    let out = output("examples/generate.sh java", &mut cmd, RUN_TIMEOUT).await;
    assert!(out.status.success(), "{}", said(&out));

    // Debian's proto-google-common-protos (1.16) predates google.rpc.ErrorInfo: generate it
    // from googleapis-common-protos' error_details.proto and put it first on the class path.
    // (Maven's proto-google-common-protos, which grpc-protobuf brings, has it.)
    let rpc_dir = work.path().join("google-rpc");
    std::fs::create_dir_all(&rpc_dir).unwrap();
    let include = googleapis_protos(tools).await;
    let mut cmd = tokio::process::Command::new("protoc");
    cmd.arg("-I")
        .arg(&include)
        .arg(format!("--java_out={}", rpc_dir.display()))
        .arg("google/rpc/error_details.proto");
    let out = output(
        "protoc google/rpc/error_details.proto",
        &mut cmd,
        RUN_TIMEOUT,
    )
    .await;
    assert!(out.status.success(), "{}", said(&out));

    let mut sources = java_files(work.path());
    sources.push(root().join("examples/java/src/main/java/dev/xpool/examples/BindingClient.java"));
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for source in &sources {
        std::fs::read(source).unwrap().hash(&mut hasher);
    }
    let classes = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("examples-java-{:016x}", hasher.finish()));
    if classes.join("done").exists() {
        return classes;
    }
    let partial = classes.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    let mut cmd = tokio::process::Command::new("javac");
    cmd.args(["-nowarn", "-encoding", "UTF-8", "-d"])
        .arg(&partial)
        .arg("-cp")
        .arg(classpath(&JARS[..COMPILE_JARS], &[]))
        .args(&sources);
    let out = output("javac (examples/java)", &mut cmd, RUN_TIMEOUT).await;
    assert!(out.status.success(), "javac failed\n{}", said(&out));
    let native = partial.join("native");
    std::fs::create_dir_all(&native).unwrap();
    std::fs::copy(TCNATIVE.0, native.join("libnetty_tcnative.so")).unwrap();
    std::fs::write(partial.join("done"), "").unwrap();
    // Another test process may have finished the same classes first: either copy will do.
    if std::fs::rename(&partial, &classes).is_err() {
        let _ = std::fs::remove_dir_all(&partial);
    }
    classes
}

/// The directory holding `google/rpc/error_details.proto` of the Python environment's
/// googleapis-common-protos.
async fn googleapis_protos(tools: &PyTools) -> PathBuf {
    let mut cmd = tokio::process::Command::new(&tools.python);
    cmd.args([
        "-c",
        "import google.rpc, os; print(os.path.dirname(os.path.dirname(google.rpc.__path__[0])))",
    ]);
    let out = output("finding google/rpc/*.proto", &mut cmd, RUN_TIMEOUT).await;
    assert!(out.status.success(), "{}", said(&out));
    let dir = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert!(
        dir.join("google/rpc/error_details.proto").exists(),
        "{dir:?}"
    );
    dir
}

fn java_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(at) = todo.pop() {
        for entry in std::fs::read_dir(&at).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "java") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

async fn client(classes: &Path, flags: &[String], token: Option<&str>) -> Output {
    let mut cmd = tokio::process::Command::new("java");
    let mut library_path = std::ffi::OsString::from("-Djava.library.path=");
    library_path.push(classes.join("native"));
    cmd.arg(library_path)
        .arg("-cp")
        .arg(classpath(JARS, &[classes]))
        .arg("dev.xpool.examples.BindingClient")
        .args(flags)
        .env_remove("XPOOL_TOKEN");
    if let Some(token) = token {
        cmd.env("XPOOL_TOKEN", token);
    }
    output("examples/java BindingClient", &mut cmd, RUN_TIMEOUT).await
}

#[tokio::test]
async fn the_java_example_binds_over_mutual_tls_with_a_token_and_explains_refusals() {
    if let Some(why) = missing() {
        eprintln!("SKIPPED: the Java example was not compiled: {why}");
        return;
    }
    let classes = compile(python_tools()).await;
    let served = Served::start(Tls::Mutual).await;

    let out = client(
        &classes,
        &served.flags(APP, "java-example-1", 1),
        Some(TOKEN),
    )
    .await;
    assert_bound_and_released(&served, &out, "java-example-1").await;

    let out = client(&classes, &served.flags(APP, "java-example-2", 3), None).await;
    assert_refused(&out, "UNAUTHENTICATED", "UNAUTHENTICATED", &[]);
}
