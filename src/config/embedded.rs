//! The configuration a newcomer meets with no file: one demo app per mode, each pointed at
//! [`EMBEDDED_SIM_URL`] until the binary starts a simulator in-process and calls
//! [`Config::point_at_embedded_sim`].

use std::fmt::Write as _;

use super::{Config, ConfigError, resolve, source};
use crate::platform::Mode;

/// The base URL of every embedded demo app until the caller knows the simulator's address
/// (see [`Config::point_at_embedded_sim`]).
pub const EMBEDDED_SIM_URL: &str = "http://embedded-sim";

/// Where the embedded default's push receiver listens; the in-process simulator pushes there.
pub const EMBEDDED_CALLBACKS_LISTEN: &str = "127.0.0.1:50052";

const ORIGIN: &str = "embedded default";

/// Demo numbers per area: enough to see allocation spread and run out.
const NUMBERS_PER_AREA: usize = 3;
const AREAS: [&str; 2] = ["010", "021"];

pub(super) fn load(env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
    let table = source::parse(&demo_toml(), ORIGIN)?;
    resolve::build(table, ORIGIN, env)
}

/// The embedded default as a config file, so it goes through the same overrides and checks.
fn demo_toml() -> String {
    let mut text = format!(
        "[server]\nlisten = \"127.0.0.1:50051\"\n\n[store]\npath = \"./xpool-data\"\n\n\
         [callbacks]\nlisten = \"{EMBEDDED_CALLBACKS_LISTEN}\"\n"
    );
    for (i, mode) in Mode::ALL.into_iter().enumerate() {
        let name = format!("demo-{}", mode.as_str().to_ascii_lowercase());
        let _ = write!(
            text,
            "\n[[apps]]\nname = \"{name}\"\nmode = \"{mode}\"\nbase_url = \"{EMBEDDED_SIM_URL}\"\n\
             app_key = \"{name}-key\"\napp_secret = \"{name}-secret\"\nnumbers = [\n"
        );
        for (a, area) in AREAS.into_iter().enumerate() {
            for n in 1..=NUMBERS_PER_AREA {
                let number = format!("+86170{i}{a}00000{n}");
                let _ = writeln!(
                    text,
                    "  {{ number = \"{number}\", area_code = \"{area}\" }},"
                );
            }
        }
        text.push_str("]\n");
    }
    text
}
