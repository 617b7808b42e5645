#!/usr/bin/env bash
# Regenerates the example clients' stubs from proto/xpool/v1/*.proto (README.md beside this
# file says which tool versions made the committed ones, and how to install them).
#
#   examples/generate.sh [--out DIR] [python] [go] [java]     (no language: python and go)
#
#   python  examples/python/xpool/v1/*_pb2.py, *_pb2_grpc.py   (committed)
#           with `$PYTHON -m grpc_tools.protoc` (PYTHON defaults to python3; it needs grpcio-tools)
#   go      examples/go/gen/xpool/v1/*.pb.go, *_grpc.pb.go     (committed; module
#           github.com/xpool-dev/xpool/gen/go, the protos' go_package)
#           with `$PROTOC` (default protoc), protoc-gen-go and protoc-gen-go-grpc on PATH
#   java    examples/java/build/generated/dev/xpool/v1/*.java  (not committed: Maven generates
#           its own, see examples/java/pom.xml)
#           with `$PROTOC` and `$GRPC_JAVA_PLUGIN` (default: protoc-gen-grpc-java on PATH,
#           else Debian's /usr/bin/grpc_java_plugin)
#
# --out DIR writes under DIR instead of examples/ (DIR/python/xpool/v1, DIR/go/gen/xpool/v1,
# DIR/java/build/generated), which is how tests/daemon/contract/examples.rs checks that the
# committed stubs are what this script makes now. Each language's directory is emptied first,
# so stubs of a deleted .proto file do not linger.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/examples
langs=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$(mkdir -p "$2" && cd "$2" && pwd); shift 2 ;;
    python | go | java) langs+=("$1"); shift ;;
    *) echo "usage: $0 [--out DIR] [python] [go] [java]" >&2; exit 2 ;;
  esac
done
[ ${#langs[@]} -gt 0 ] || langs=(python go)

# Relative paths, sorted: the generated code names each file as protoc was given it.
cd "$root/proto"
protos=()
while IFS= read -r file; do protos+=("$file"); done < <(find xpool/v1 -name '*.proto' | LC_ALL=C sort)

# Empties $1 (made if missing) for the files about to be written into it.
fresh() {
  rm -rf "$1"
  mkdir -p "$1"
}

gen_python() {
  local python=${PYTHON:-python3}
  fresh "$out/python/xpool"
  "$python" -m grpc_tools.protoc -I . \
    --python_out="$out/python" --grpc_python_out="$out/python" "${protos[@]}"
  echo "generate.sh: python: $out/python/xpool/v1 (grpcio-tools $("$python" -c \
    'import importlib.metadata as m; print(m.version("grpcio-tools"))'))"
}

gen_go() {
  local protoc=${PROTOC:-protoc} module=github.com/xpool-dev/xpool/gen/go
  for tool in protoc-gen-go protoc-gen-go-grpc; do
    command -v "$tool" >/dev/null || {
      echo "generate.sh: go: $tool is not on PATH (see examples/README.md)" >&2
      exit 1
    }
  done
  fresh "$out/go/gen/xpool"
  "$protoc" -I . \
    --go_out="$out/go/gen" --go_opt=module=$module \
    --go-grpc_out="$out/go/gen" --go-grpc_opt=module=$module \
    "${protos[@]}"
  echo "generate.sh: go: $out/go/gen/xpool/v1 ($("$protoc" --version)," \
    "protoc-gen-go $(protoc-gen-go --version 2>&1 | awk '{print $NF}')," \
    "protoc-gen-go-grpc $(protoc-gen-go-grpc --version 2>&1 | awk '{print $NF}'))"
}

gen_java() {
  local protoc=${PROTOC:-protoc} plugin=${GRPC_JAVA_PLUGIN:-}
  if [ -z "$plugin" ]; then
    plugin=$(command -v protoc-gen-grpc-java || command -v grpc_java_plugin || true)
  fi
  [ -n "$plugin" ] || {
    echo "generate.sh: java: no protoc-gen-grpc-java (set GRPC_JAVA_PLUGIN; Debian:" \
      "apt-get install protobuf-compiler-grpc-java-plugin)" >&2
    exit 1
  }
  fresh "$out/java/build/generated"
  "$protoc" -I . --plugin=protoc-gen-grpc-java="$plugin" \
    --java_out="$out/java/build/generated" --grpc-java_out="$out/java/build/generated" \
    "${protos[@]}"
  echo "generate.sh: java: $out/java/build/generated ($("$protoc" --version), $plugin)"
}

for lang in "${langs[@]}"; do
  "gen_$lang"
done
