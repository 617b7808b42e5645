//! `xpool bindings`: look bindings up, list them, release one (BindingService's GetBinding,
//! ListBindings, Unbind).

use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use xpool::grpc::pb;
use xpool::grpc::pb::binding_service_client::BindingServiceClient;

use super::{CallArgs, Conn, EXIT_CODES, Failure, Output, all_pages, finish, json, print_json};
use super::{page_size, table};

#[derive(Debug, Args)]
pub struct BindingsArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Show one binding, by its id or by the request id that made it.
    #[command(after_help = EXIT_CODES)]
    Get(Target),
    /// List bindings, filtered by app, party, X number and state (every page, or the first
    /// --limit).
    #[command(after_help = EXIT_CODES)]
    List {
        /// Only this app's (every app's, with a token that may read them all, when left out).
        #[arg(long)]
        app: Option<String>,
        /// Only bindings with this number as party A or B.
        #[arg(long)]
        party: Option<String>,
        /// Only bindings on this X number.
        #[arg(long)]
        x_number: Option<String>,
        /// Only bindings in this state.
        #[arg(long, value_enum)]
        state: Option<State>,
        /// At most this many bindings.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
        #[command(flatten)]
        call: CallArgs,
    },
    /// Release a binding on the platform; the slot then cools down (AX, AXE). A binding that has
    /// ended already is shown as it is.
    #[command(after_help = EXIT_CODES)]
    Unbind(Target),
}

/// A binding, by id or by `--app` and `--request-id`.
#[derive(Debug, Args)]
struct Target {
    /// The binding's id.
    #[arg(required_unless_present = "request_id", conflicts_with = "request_id")]
    id: Option<String>,
    /// The request id of the Bind that made it (with --app).
    #[arg(long, requires = "app")]
    request_id: Option<String>,
    /// The app of --request-id.
    #[arg(long, requires = "request_id")]
    app: Option<String>,
    #[command(flatten)]
    call: CallArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum State {
    Pending,
    Active,
    Releasing,
    Released,
    Expired,
}

impl From<State> for pb::BindingState {
    fn from(s: State) -> pb::BindingState {
        match s {
            State::Pending => pb::BindingState::Pending,
            State::Active => pb::BindingState::Active,
            State::Releasing => pb::BindingState::Releasing,
            State::Released => pb::BindingState::Released,
            State::Expired => pb::BindingState::Expired,
        }
    }
}

type Client = BindingServiceClient<super::Authed>;

/// Returns the process exit code.
pub async fn run(args: BindingsArgs) -> i32 {
    match args.action {
        Action::Get(target) => finish("bindings get", get(target, false).await),
        Action::Unbind(target) => finish("bindings unbind", get(target, true).await),
        Action::List {
            call,
            app,
            party,
            x_number,
            state,
            limit,
        } => {
            let req = pb::ListBindingsRequest {
                app: app.unwrap_or_default(),
                party: party.unwrap_or_default(),
                x_number: x_number.unwrap_or_default(),
                state: state
                    .map_or(pb::BindingState::Unspecified, Into::into)
                    .into(),
                page_size: 0,
                page_token: String::new(),
            };
            let limit = limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX));
            finish("bindings list", list(&call, req, limit).await)
        }
    }
}

/// GetBinding, or with `unbind` Unbind, of the target; prints the binding.
async fn get(target: Target, unbind: bool) -> Result<(), Failure> {
    let Target {
        call,
        id,
        request_id,
        app,
    } = target;
    let conn = Conn::open(&call).await?;
    let mut client: Client = BindingServiceClient::new(conn.channel.clone());
    let binding = match (id, request_id) {
        (Some(id), _) if unbind => {
            let req = pb::UnbindRequest::by_id(id);
            conn.ask(client.unbind(req)).await?
        }
        (Some(id), _) => {
            conn.ask(client.get_binding(pb::GetBindingRequest::by_id(id)))
                .await?
        }
        (None, Some(request_id)) => {
            let app = app.unwrap_or_default();
            if unbind {
                let req = pb::UnbindRequest::by_request(app, request_id);
                conn.ask(client.unbind(req)).await?
            } else {
                let req = pb::GetBindingRequest::by_request(app, request_id);
                conn.ask(client.get_binding(req)).await?
            }
        }
        (None, None) => return Err(Failure::Usage("a binding id or --request-id".into())),
    };
    match conn.output {
        Output::Json => print_json(&json::binding(&binding)),
        Output::Table => print_binding(&binding),
    }
    Ok(())
}

async fn list(
    call: &CallArgs,
    req: pb::ListBindingsRequest,
    limit: Option<usize>,
) -> Result<(), Failure> {
    let conn = Conn::open(call).await?;
    let client: Client = BindingServiceClient::new(conn.channel.clone());
    let bindings = all_pages(limit, |page_token| {
        let mut client = client.clone();
        let conn = &conn;
        let req = pb::ListBindingsRequest {
            page_size: page_size(limit),
            page_token,
            ..req.clone()
        };
        async move {
            let page = conn.ask(client.list_bindings(req)).await?;
            Ok((page.bindings, page.next_page_token))
        }
    })
    .await?;
    match conn.output {
        Output::Json => print_json(&json!({
            "bindings": bindings.iter().map(json::binding).collect::<Vec<_>>(),
        })),
        Output::Table => print_bindings(&bindings),
    }
    Ok(())
}

fn state_name(b: &pb::Binding) -> String {
    table::short(b.state().as_str_name(), "BINDING_STATE_")
}

fn print_bindings(bindings: &[pb::Binding]) {
    let mut t = table::new(
        &[
            "BINDING", "APP", "STATE", "X", "EXT", "PARTY A", "PARTY B", "AREA", "EXPIRES",
        ],
        &[],
    );
    for b in bindings {
        t.add_row(vec![
            b.binding_id.clone(),
            b.app.clone(),
            state_name(b),
            b.x_number.clone(),
            table::or_dash(&b.extension).to_owned(),
            b.party_a.clone(),
            table::or_dash(&b.party_b).to_owned(),
            table::or_dash(&b.area_code).to_owned(),
            table::time(&b.expire_time),
        ]);
    }
    table::print(&t);
}

/// One binding, a field a line.
fn print_binding(b: &pb::Binding) {
    let mode = table::short(b.mode().as_str_name(), "MODE_");
    let rows: [(&str, String); 17] = [
        ("binding", b.binding_id.clone()),
        ("app", b.app.clone()),
        ("mode", mode.to_ascii_uppercase()),
        ("state", state_name(b)),
        ("x number", b.x_number.clone()),
        ("extension", b.extension.clone()),
        ("y number", b.y_number.clone()),
        ("party a", b.party_a.clone()),
        ("party b", b.party_b.clone()),
        ("area", b.area_code.clone()),
        ("request id", b.request_id.clone()),
        ("subscription", b.subscription_id.clone()),
        ("user data", b.user_data.clone()),
        ("created", table::time(&b.create_time)),
        ("expires", table::time(&b.expire_time)),
        ("released", table::time(&b.release_time)),
        ("selection", b.selection_reason.clone()),
    ];
    for (what, value) in rows {
        println!("{what:<14}{}", table::or_dash(&value));
    }
}
