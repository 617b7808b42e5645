"""A Python client of xpool's gRPC API, from stubs generated out of proto/ with grpcio-tools
(`python -m grpc_tools.protoc -I proto --python_out=OUT --grpc_python_out=OUT ...`).

Run by tests/daemon/contract/python_client.rs against a daemon it started; one phase a run:

  calls          Bind, the same Bind again, GetBinding (by request id, by binding id),
                 ListBindings page by page, Unbind; then a Bind to an unknown app, refused with
                 INVALID_ARGUMENT or NOT_FOUND whose google.rpc.Status, when it has one, must
                 decode and carry ErrorInfo reason UNKNOWN_APP (required with
                 --require-error-info).
  storage-error  a Bind while the daemon's disk is full: UNAVAILABLE with a google.rpc.Status
                 that decodes (grpc_status.rpc_status.from_call) and carries ErrorInfo
                 (--reason, domain "xpool") and RetryInfo, plus the retry-after-ms trailer.

Any failed check raises AssertionError; the exit code is then non-zero.
"""

import argparse
import sys

import grpc
from google.rpc import code_pb2, error_details_pb2
from grpc_status import rpc_status

# Every call's deadline, seconds.
TIMEOUT = 10
# ErrorInfo.domain of every reason xpool gives.
DOMAIN = "xpool"


def check(ok, what):
    if not ok:
        raise AssertionError(what)
    print(f"ok: {what}")


def details(status, kind):
    """The details of type `kind` packed into a google.rpc.Status."""
    found = []
    for any_detail in status.details:
        if any_detail.Is(kind.DESCRIPTOR):
            detail = kind()
            any_detail.Unpack(detail)
            found.append(detail)
    return found


def refusal(call):
    """The grpc.RpcError a call must end with."""
    try:
        answer = call()
    except grpc.RpcError as err:
        return err
    raise AssertionError(f"the call was expected to fail, but answered {answer}")


def list_ids(stub, pb, app, state):
    """The binding ids of every page of ListBindings, two a page."""
    ids, token = [], ""
    while True:
        page = stub.ListBindings(
            pb.ListBindingsRequest(app=app, state=state, page_size=2, page_token=token),
            timeout=TIMEOUT,
        )
        ids.extend(b.binding_id for b in page.bindings)
        if not page.next_page_token:
            return ids
        token = page.next_page_token


def calls(stub, pb, app, require_error_info):
    request = pb.BindRequest(
        app=app,
        party_a="+8613900000071",
        party_b="+8613900000072",
        area_code="010",
        request_id="python-client-1",
    )
    request.ttl.FromSeconds(3600)
    bound = stub.Bind(request, timeout=TIMEOUT)
    check(bound.state == pb.BINDING_STATE_ACTIVE, f"Bind: ACTIVE ({bound.state})")
    check(bound.x_number.startswith("+"), f"Bind: an X number ({bound.x_number!r})")
    lifetime = bound.expire_time.ToSeconds() - bound.create_time.ToSeconds()
    check(lifetime == 3600, f"Bind: expire_time is create_time + ttl ({lifetime} s)")

    again = stub.Bind(request, timeout=TIMEOUT)
    check(again.binding_id == bound.binding_id, "Bind again: the same binding")

    by_request = stub.GetBinding(
        pb.GetBindingRequest(app=app, request_id="python-client-1"), timeout=TIMEOUT
    )
    check(by_request.binding_id == bound.binding_id, "GetBinding by request id")
    by_id = stub.GetBinding(pb.GetBindingRequest(binding_id=bound.binding_id), timeout=TIMEOUT)
    check(by_id == by_request, "GetBinding by binding id: the same binding")

    active = list_ids(stub, pb, app, pb.BINDING_STATE_ACTIVE)
    check(bound.binding_id in active, f"ListBindings: listed among {len(active)} active")

    released = stub.Unbind(pb.UnbindRequest(binding_id=bound.binding_id), timeout=TIMEOUT)
    check(released.state == pb.BINDING_STATE_RELEASED, "Unbind: RELEASED")
    check(released.HasField("release_time"), "Unbind: release_time set")
    active = list_ids(stub, pb, app, pb.BINDING_STATE_ACTIVE)
    check(bound.binding_id not in active, "ListBindings: no longer active")

    unknown = pb.BindRequest(app="no-such-app", party_a="+8613900000071")
    err = refusal(lambda: stub.Bind(unknown, timeout=TIMEOUT))
    check(
        err.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND),
        f"Bind to an unknown app: refused ({err.code()}: {err.details()})",
    )
    # from_call raises ValueError if the status details disagree with the call's own status.
    status = rpc_status.from_call(err)
    infos = details(status, error_details_pb2.ErrorInfo) if status else []
    if not infos:
        if require_error_info:
            raise AssertionError(f"Bind to an unknown app: no ErrorInfo in {status}")
        print("note: the unknown-app refusal carries no ErrorInfo yet")
        return
    check(status.code == err.code().value[0], "Bind to an unknown app: status decodes")
    check(
        (infos[0].reason, infos[0].domain) == ("UNKNOWN_APP", DOMAIN),
        f"Bind to an unknown app: ErrorInfo UNKNOWN_APP ({infos[0].reason}, {infos[0].domain})",
    )


def storage_error(stub, pb, app, reason):
    request = pb.BindRequest(app=app, party_a="+8613900000081", party_b="+8613900000082")
    err = refusal(lambda: stub.Bind(request, timeout=TIMEOUT))
    check(err.code() == grpc.StatusCode.UNAVAILABLE, f"Bind on a full disk: UNAVAILABLE ({err})")
    status = rpc_status.from_call(err)
    check(status is not None, "a google.rpc.Status in grpc-status-details-bin")
    check(status.code == code_pb2.UNAVAILABLE, "the status' code is UNAVAILABLE")
    infos = details(status, error_details_pb2.ErrorInfo)
    check(len(infos) == 1, "one ErrorInfo")
    check(
        (infos[0].reason, infos[0].domain) == (reason, DOMAIN),
        f"ErrorInfo reason {reason} ({infos[0].reason}, {infos[0].domain})",
    )
    retries = details(status, error_details_pb2.RetryInfo)
    check(
        len(retries) == 1 and retries[0].retry_delay.ToMilliseconds() > 0,
        "RetryInfo with a delay",
    )
    trailers = dict(err.trailing_metadata() or ())
    check(int(trailers.get("retry-after-ms", "0")) > 0, "retry-after-ms trailer")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stubs", required=True, help="directory of the generated stubs")
    parser.add_argument("--addr", required=True, help="the daemon, host:port")
    parser.add_argument("--app", required=True, help="an AXB app of the daemon")
    phases = parser.add_subparsers(dest="phase", required=True)
    phases.add_parser("calls").add_argument("--require-error-info", action="store_true")
    phases.add_parser("storage-error").add_argument("--reason", default="STORAGE_FULL")
    args = parser.parse_args()

    sys.path.insert(0, args.stubs)
    from xpool.v1 import binding_pb2, binding_pb2_grpc

    with grpc.insecure_channel(args.addr) as channel:
        grpc.channel_ready_future(channel).result(timeout=TIMEOUT)
        stub = binding_pb2_grpc.BindingServiceStub(channel)
        if args.phase == "calls":
            calls(stub, binding_pb2, args.app, args.require_error_info)
        else:
            storage_error(stub, binding_pb2, args.app, args.reason)


if __name__ == "__main__":
    main()
