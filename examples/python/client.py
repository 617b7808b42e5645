"""Binds two parties to a masked number, looks the binding up, and releases it.

A small client of xpool's BindingService, on the stubs in xpool/v1/ beside this file (made by
examples/generate.sh from proto/). It needs grpcio, grpcio-status and protobuf (requirements.txt
beside this file).

    python client.py [--server http://127.0.0.1:50051] [--ca-file ca.pem
                     [--cert-file client.pem --key-file client.key]]
                     [--app demo-axb] [--party-a +86...] [--party-b +86...] [--request-id ID]

TLS when --server is https://... or --ca-file is given (the daemon's certificate is checked
against that CA; without one, against the system's roots); --cert-file and --key-file present a
client certificate (mutual TLS). The token in XPOOL_TOKEN, if set, goes with every call as
`authorization: Bearer <token>`.

It prints one line per call. A refused call prints its gRPC code, message and the ErrorInfo
reason (and metadata) from the google.rpc.Status details on stderr, and the exit code is 1.
"""

import argparse
import json
import os
import sys
import uuid

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from xpool.v1 import binding_pb2, binding_pb2_grpc

# Each call's deadline, seconds.
TIMEOUT = 10


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="http://127.0.0.1:50051",
                        help="the daemon: http://host:port, https://host:port or host:port")
    parser.add_argument("--ca-file", help="CA certificate (PEM) to check the daemon's; implies TLS")
    parser.add_argument("--cert-file", help="client certificate (PEM), for mutual TLS")
    parser.add_argument("--key-file", help="the client certificate's private key (PEM)")
    parser.add_argument("--app", default="demo-axb", help="a configured AXB app")
    parser.add_argument("--party-a", default="+8613800000001", help="party A's real number")
    parser.add_argument("--party-b", default="+8613800000002", help="party B's real number")
    parser.add_argument("--request-id", default=f"example-{uuid.uuid4().hex[:12]}",
                        help="idempotency key of the Bind (default: a new one)")
    parser.add_argument("--ttl-seconds", type=int, default=3600, help="the binding's lifetime")
    args = parser.parse_args()
    if (args.cert_file is None) != (args.key_file is None):
        parser.error("--cert-file and --key-file go together")
    return args


def channel(args):
    """A channel to --server: TLS with https:// or a CA file, else plaintext."""
    target = args.server
    tls = target.startswith("https://") or args.ca_file is not None
    for scheme in ("https://", "http://"):
        if target.startswith(scheme):
            target = target[len(scheme):]
    if not tls:
        return grpc.insecure_channel(target)

    def read(path):
        if path is None:
            return None
        with open(path, "rb") as f:
            return f.read()

    credentials = grpc.ssl_channel_credentials(
        root_certificates=read(args.ca_file),
        private_key=read(args.key_file),
        certificate_chain=read(args.cert_file),
    )
    return grpc.secure_channel(target, credentials)


def show(call, binding):
    expires = binding.expire_time.ToJsonString() if binding.HasField("expire_time") else "never"
    print(f"{call}: binding_id={binding.binding_id} x_number={binding.x_number} "
          f"state={binding_pb2.BindingState.Name(binding.state)} expire_time={expires}")


def explain(call, err):
    """The refusal's code, message and ErrorInfo, as one line on stderr."""
    message = json.dumps(err.details() or "", ensure_ascii=False)
    line = f"{call} failed: code={err.code().name} message={message}"
    status = rpc_status.from_call(err)
    for detail in status.details if status else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            line += f" reason={info.reason} domain={info.domain}"
            line += "".join(f" {k}={v}" for k, v in sorted(info.metadata.items()))
    print(line, file=sys.stderr)


def main():
    args = parse_args()
    token = os.environ.get("XPOOL_TOKEN", "").strip()
    metadata = [("authorization", f"Bearer {token}")] if token else []

    with channel(args) as ch:
        stub = binding_pb2_grpc.BindingServiceStub(ch)
        call = "Bind"
        try:
            request = binding_pb2.BindRequest(
                app=args.app,
                party_a=args.party_a,
                party_b=args.party_b,
                request_id=args.request_id,
            )
            request.ttl.FromSeconds(args.ttl_seconds)
            bound = stub.Bind(request, timeout=TIMEOUT, metadata=metadata)
            show(call, bound)

            call = "GetBinding"
            got = stub.GetBinding(
                binding_pb2.GetBindingRequest(app=args.app, request_id=args.request_id),
                timeout=TIMEOUT, metadata=metadata,
            )
            show(call, got)

            call = "Unbind"
            released = stub.Unbind(
                binding_pb2.UnbindRequest(binding_id=bound.binding_id),
                timeout=TIMEOUT, metadata=metadata,
            )
            show(call, released)
        except grpc.RpcError as err:
            explain(call, err)
            sys.exit(1)


if __name__ == "__main__":
    main()
