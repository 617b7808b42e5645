package dev.xpool.examples;

import com.google.protobuf.Any;
import com.google.protobuf.Duration;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.Timestamp;
import com.google.rpc.ErrorInfo;
import dev.xpool.v1.Binding;
import dev.xpool.v1.BindingServiceGrpc;
import dev.xpool.v1.BindRequest;
import dev.xpool.v1.GetBindingRequest;
import dev.xpool.v1.UnbindRequest;
import io.grpc.ChannelCredentials;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.StatusRuntimeException;
import io.grpc.TlsChannelCredentials;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.MetadataUtils;
import java.io.File;
import java.io.IOException;
import java.time.Instant;
import java.util.HashMap;
import java.util.Map;
import java.util.TreeMap;
import java.util.UUID;
import java.util.concurrent.TimeUnit;

/**
 * Binds two parties to a masked number, looks the binding up, and releases it.
 *
 * <p>A small client of xpool's BindingService, on stubs generated from proto/ (protoc with
 * protoc-gen-grpc-java: examples/java/pom.xml, or examples/generate.sh java):
 *
 * <pre>
 * BindingClient [--server http://127.0.0.1:50051] [--ca-file ca.pem
 *               [--cert-file client.pem --key-file client.key]]
 *               [--app demo-axb] [--party-a +86...] [--party-b +86...] [--request-id ID]
 * </pre>
 *
 * <p>TLS when --server is https://... or --ca-file is given (the daemon's certificate is checked
 * against that CA; without one, against the JVM's trusted roots); --cert-file and --key-file
 * (PKCS#8 PEM) present a client certificate (mutual TLS). The token in XPOOL_TOKEN, if set, goes
 * with every call as {@code authorization: Bearer <token>}.
 *
 * <p>It prints one line per call. A refused call prints its gRPC code, message and the ErrorInfo
 * reason (and metadata) from the google.rpc.Status details on stderr, and the exit code is 1.
 */
public final class BindingClient {
  /** Each call's deadline, seconds. */
  private static final long TIMEOUT_SECONDS = 10;

  private static final Metadata.Key<String> AUTHORIZATION =
      Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);

  private BindingClient() {}

  public static void main(String[] argv) throws IOException, InterruptedException {
    Map<String, String> args = parse(argv);
    String server = args.get("server");
    String app = args.get("app");
    String requestId = args.get("request-id");

    ManagedChannel channel = channel(server, args);
    BindingServiceGrpc.BindingServiceBlockingStub stub = BindingServiceGrpc.newBlockingStub(channel);
    String token = System.getenv().getOrDefault("XPOOL_TOKEN", "").trim();
    if (!token.isEmpty()) {
      Metadata headers = new Metadata();
      headers.put(AUTHORIZATION, "Bearer " + token);
      stub = stub.withInterceptors(MetadataUtils.newAttachHeadersInterceptor(headers));
    }

    String call = "Bind";
    int exit = 0;
    try {
      Binding bound =
          deadline(stub)
              .bind(
                  BindRequest.newBuilder()
                      .setApp(app)
                      .setPartyA(args.get("party-a"))
                      .setPartyB(args.get("party-b"))
                      .setRequestId(requestId)
                      .setTtl(
                          Duration.newBuilder()
                              .setSeconds(Long.parseLong(args.get("ttl-seconds"))))
                      .build());
      show(call, bound);

      call = "GetBinding";
      Binding got =
          deadline(stub)
              .getBinding(
                  GetBindingRequest.newBuilder().setApp(app).setRequestId(requestId).build());
      show(call, got);

      call = "Unbind";
      Binding released =
          deadline(stub)
              .unbind(UnbindRequest.newBuilder().setBindingId(bound.getBindingId()).build());
      show(call, released);
    } catch (StatusRuntimeException e) {
      explain(call, e);
      exit = 1;
    } finally {
      channel.shutdown().awaitTermination(5, TimeUnit.SECONDS);
    }
    System.exit(exit);
  }

  private static BindingServiceGrpc.BindingServiceBlockingStub deadline(
      BindingServiceGrpc.BindingServiceBlockingStub stub) {
    return stub.withDeadlineAfter(TIMEOUT_SECONDS, TimeUnit.SECONDS);
  }

  /** A channel to --server: TLS with https:// or a CA file, else plaintext. */
  private static ManagedChannel channel(String server, Map<String, String> args)
      throws IOException {
    boolean tls = server.startsWith("https://") || args.containsKey("ca-file");
    String target = server.replaceFirst("^https?://", "");
    ChannelCredentials credentials = InsecureChannelCredentials.create();
    if (tls) {
      TlsChannelCredentials.Builder builder = TlsChannelCredentials.newBuilder();
      if (args.containsKey("ca-file")) {
        builder.trustManager(new File(args.get("ca-file")));
      }
      if (args.containsKey("cert-file")) {
        builder.keyManager(new File(args.get("cert-file")), new File(args.get("key-file")));
      }
      credentials = builder.build();
    }
    return Grpc.newChannelBuilder(target, credentials).build();
  }

  private static void show(String call, Binding b) {
    String expires = b.hasExpireTime() ? instant(b.getExpireTime()) : "never";
    System.out.printf(
        "%s: binding_id=%s x_number=%s state=%s expire_time=%s%n",
        call, b.getBindingId(), b.getXNumber(), b.getState(), expires);
  }

  private static String instant(Timestamp t) {
    return Instant.ofEpochSecond(t.getSeconds(), t.getNanos()).toString();
  }

  /** The refusal's code, message and ErrorInfo, as one line on stderr. */
  private static void explain(String call, StatusRuntimeException e) {
    StringBuilder line =
        new StringBuilder(
            String.format(
                "%s failed: code=%s message=%s",
                call, e.getStatus().getCode(), quoted(e.getStatus().getDescription())));
    com.google.rpc.Status status = StatusProto.fromThrowable(e);
    if (status != null) {
      for (Any detail : status.getDetailsList()) {
        if (!detail.is(ErrorInfo.class)) {
          continue;
        }
        try {
          ErrorInfo info = detail.unpack(ErrorInfo.class);
          line.append(" reason=").append(info.getReason());
          line.append(" domain=").append(info.getDomain());
          new TreeMap<>(info.getMetadataMap())
              .forEach((k, v) -> line.append(' ').append(k).append('=').append(v));
        } catch (InvalidProtocolBufferException bad) {
          line.append(" (ErrorInfo that does not decode: ").append(bad.getMessage()).append(')');
        }
      }
    }
    System.err.println(line);
  }

  /** {@code text} in double quotes, its quotes and backslashes escaped. */
  private static String quoted(String text) {
    String escaped = text == null ? "" : text.replace("\\", "\\\\").replace("\"", "\\\"");
    return '"' + escaped + '"';
  }

  /** --name value pairs, with the defaults for those not given. */
  private static Map<String, String> parse(String[] argv) {
    Map<String, String> args = new HashMap<>();
    args.put("server", "http://127.0.0.1:50051");
    args.put("app", "demo-axb");
    args.put("party-a", "+8613800000001");
    args.put("party-b", "+8613800000002");
    args.put("request-id", "example-" + UUID.randomUUID().toString().substring(0, 12));
    args.put("ttl-seconds", "3600");
    for (int i = 0; i < argv.length; i += 2) {
      String name = argv[i].replaceFirst("^--?", "");
      boolean known =
          args.containsKey(name) || name.equals("ca-file") || name.equals("cert-file")
              || name.equals("key-file");
      if (!argv[i].startsWith("-") || !known || i + 1 >= argv.length) {
        usage("unknown or incomplete argument: " + argv[i]);
      }
      args.put(name, argv[i + 1]);
    }
    if (args.containsKey("cert-file") != args.containsKey("key-file")) {
      usage("--cert-file and --key-file go together");
    }
    return args;
  }

  private static void usage(String why) {
    System.err.println(
        why
            + "\nusage: BindingClient [--server URL] [--ca-file PEM [--cert-file PEM --key-file"
            + " PEM]] [--app APP] [--party-a E164] [--party-b E164] [--request-id ID]"
            + " [--ttl-seconds N]");
    System.exit(2);
  }
}
