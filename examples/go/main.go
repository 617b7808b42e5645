// Command client binds two parties to a masked number, looks the binding up, and releases it.
//
// A small client of xpool's BindingService, on the stubs in gen/ (made by examples/generate.sh
// from proto/):
//
//	go run . [-server http://127.0.0.1:50051] [-ca-file ca.pem [-cert-file client.pem -key-file client.key]]
//	         [-app demo-axb] [-party-a +86...] [-party-b +86...] [-request-id ID]
//
// TLS when -server is https://... or -ca-file is given (the daemon's certificate is checked
// against that CA; without one, against the system's roots); -cert-file and -key-file present a
// client certificate (mutual TLS). The token in XPOOL_TOKEN, if set, goes with every call as
// `authorization: Bearer <token>`.
//
// It prints one line per call. A refused call prints its gRPC code, message and the ErrorInfo
// reason (and metadata) from the google.rpc.Status details on stderr, and the exit code is 1.
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	xpoolv1 "github.com/xpool-dev/xpool/gen/go/xpool/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Each call's deadline.
const timeout = 10 * time.Second

type options struct {
	server, caFile, certFile, keyFile string
	app, partyA, partyB, requestID    string
	ttlSeconds                        int64
}

func parseFlags() options {
	var o options
	flag.StringVar(&o.server, "server", "http://127.0.0.1:50051",
		"the daemon: http://host:port, https://host:port or host:port")
	flag.StringVar(&o.caFile, "ca-file", "", "CA certificate (PEM) to check the daemon's; implies TLS")
	flag.StringVar(&o.certFile, "cert-file", "", "client certificate (PEM), for mutual TLS")
	flag.StringVar(&o.keyFile, "key-file", "", "the client certificate's private key (PEM)")
	flag.StringVar(&o.app, "app", "demo-axb", "a configured AXB app")
	flag.StringVar(&o.partyA, "party-a", "+8613800000001", "party A's real number")
	flag.StringVar(&o.partyB, "party-b", "+8613800000002", "party B's real number")
	flag.StringVar(&o.requestID, "request-id", "", "idempotency key of the Bind (default: a new one)")
	flag.Int64Var(&o.ttlSeconds, "ttl-seconds", 3600, "the binding's lifetime")
	flag.Parse()
	if (o.certFile == "") != (o.keyFile == "") {
		fail("-cert-file and -key-file go together")
	}
	if o.requestID == "" {
		id := make([]byte, 6)
		if _, err := rand.Read(id); err != nil {
			fail(err.Error())
		}
		o.requestID = "example-" + hex.EncodeToString(id)
	}
	return o
}

func fail(why string) {
	fmt.Fprintln(os.Stderr, why)
	os.Exit(2)
}

// bearer sends the token with every call. It does not require TLS: the embedded default
// serves plaintext on loopback.
type bearer string

func (t bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }

// dial connects to -server: TLS with https:// or a CA file, else plaintext.
func dial(o options) (*grpc.ClientConn, error) {
	useTLS := strings.HasPrefix(o.server, "https://") || o.caFile != ""
	target := strings.TrimPrefix(strings.TrimPrefix(o.server, "https://"), "http://")
	// grpc.WithInsecure: insecure.NewCredentials() from grpc-go 1.34 on.
	dialOpts := []grpc.DialOption{grpc.WithInsecure()}
	if useTLS {
		config := &tls.Config{MinVersion: tls.VersionTLS12}
		if o.caFile != "" {
			pem, err := os.ReadFile(o.caFile)
			if err != nil {
				return nil, err
			}
			config.RootCAs = x509.NewCertPool()
			if !config.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("%s: no PEM certificate", o.caFile)
			}
		}
		if o.certFile != "" {
			cert, err := tls.LoadX509KeyPair(o.certFile, o.keyFile)
			if err != nil {
				return nil, err
			}
			config.Certificates = []tls.Certificate{cert}
		}
		dialOpts = []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(config))}
	}
	if token := strings.TrimSpace(os.Getenv("XPOOL_TOKEN")); token != "" {
		dialOpts = append(dialOpts, grpc.WithPerRPCCredentials(bearer(token)))
	}
	return grpc.Dial(target, dialOpts...)
}

func show(call string, b *xpoolv1.Binding) {
	expires := "never"
	if b.ExpireTime != nil {
		expires = b.ExpireTime.AsTime().Format(time.RFC3339Nano)
	}
	fmt.Printf("%s: binding_id=%s x_number=%s state=%s expire_time=%s\n",
		call, b.BindingId, b.XNumber, b.State, expires)
}

// codeNames are the gRPC codes as the other languages and the README spell them.
var codeNames = map[codes.Code]string{
	codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN",
	codes.InvalidArgument: "INVALID_ARGUMENT", codes.DeadlineExceeded: "DEADLINE_EXCEEDED",
	codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
	codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED",
	codes.OutOfRange: "OUT_OF_RANGE", codes.Unimplemented: "UNIMPLEMENTED",
	codes.Internal: "INTERNAL", codes.Unavailable: "UNAVAILABLE", codes.DataLoss: "DATA_LOSS",
	codes.Unauthenticated: "UNAUTHENTICATED",
}

// explain prints a refusal's code, message and ErrorInfo as one line on stderr.
func explain(call string, err error) {
	st, _ := status.FromError(err)
	name, ok := codeNames[st.Code()]
	if !ok {
		name = st.Code().String()
	}
	line := fmt.Sprintf("%s failed: code=%s message=%q", call, name, st.Message())
	for _, detail := range st.Details() {
		if info, ok := detail.(*errdetails.ErrorInfo); ok {
			line += fmt.Sprintf(" reason=%s domain=%s", info.Reason, info.Domain)
			keys := make([]string, 0, len(info.Metadata))
			for k := range info.Metadata {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				line += fmt.Sprintf(" %s=%s", k, info.Metadata[k])
			}
		}
	}
	fmt.Fprintln(os.Stderr, line)
}

func main() {
	o := parseFlags()
	conn, err := dial(o)
	if err != nil {
		fail(fmt.Sprintf("connecting to %s: %v", o.server, err))
	}
	defer conn.Close()
	client := xpoolv1.NewBindingServiceClient(conn)
	if call, err := run(client, o); err != nil {
		explain(call, err)
		conn.Close()
		os.Exit(1)
	}
}

// run makes the three calls; on an error, it returns the call that failed.
func run(client xpoolv1.BindingServiceClient, o options) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	bound, err := client.Bind(ctx, &xpoolv1.BindRequest{
		App:       o.app,
		PartyA:    o.partyA,
		PartyB:    o.partyB,
		RequestId: o.requestID,
		Ttl:       durationpb.New(time.Duration(o.ttlSeconds) * time.Second),
	})
	cancel()
	if err != nil {
		return "Bind", err
	}
	show("Bind", bound)

	ctx, cancel = context.WithTimeout(context.Background(), timeout)
	got, err := client.GetBinding(ctx, &xpoolv1.GetBindingRequest{
		App:     o.app,
		Binding: &xpoolv1.GetBindingRequest_RequestId{RequestId: o.requestID},
	})
	cancel()
	if err != nil {
		return "GetBinding", err
	}
	show("GetBinding", got)

	ctx, cancel = context.WithTimeout(context.Background(), timeout)
	released, err := client.Unbind(ctx, &xpoolv1.UnbindRequest{
		Binding: &xpoolv1.UnbindRequest_BindingId{BindingId: bound.BindingId},
	})
	cancel()
	if err != nil {
		return "Unbind", err
	}
	show("Unbind", released)
	return "", nil
}
