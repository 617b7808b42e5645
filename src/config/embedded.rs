//! The configuration a newcomer meets with no file: one demo app per mode, served by a
//! simulator that runs in-process.

use std::fmt::Write as _;

use super::{AppConfig, Config, ConfigError, Problem, resolve, source};
use crate::platform::Mode;
use crate::sim::{SimAppConfig, SimConfig, SimNumber};

/// The base URL of every embedded demo app until the caller knows the simulator's address
/// (see [`Config::point_at_embedded_sim`]).
pub const EMBEDDED_SIM_URL: &str = "http://embedded-sim";

const ORIGIN: &str = "embedded default";

/// Demo numbers per area: enough to see allocation spread and run out.
const NUMBERS_PER_AREA: usize = 3;
const AREAS: [&str; 2] = ["010", "021"];

pub(super) fn load(env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
    let table = source::parse(&demo_toml(), ORIGIN)?;
    let mut config = resolve::build(table, ORIGIN, env)?;
    let sim = sim_config(&config.apps);
    sim.validate().map_err(|message| {
        ConfigError::Invalid(vec![Problem {
            origin: ORIGIN.to_owned(),
            key: "embedded_sim".to_owned(),
            message,
        }])
    })?;
    config.embedded_sim = Some(sim);
    Ok(config)
}

/// The embedded default as a config file, so it goes through the same overrides and checks.
fn demo_toml() -> String {
    let mut text = String::from(
        "[server]\nlisten = \"127.0.0.1:50051\"\n\n[store]\npath = \"./xpool-data\"\n",
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

/// The simulator serving every app still pointed at [`EMBEDDED_SIM_URL`].
fn sim_config(apps: &[AppConfig]) -> SimConfig {
    let apps = apps
        .iter()
        .filter(|app| app.base_url == EMBEDDED_SIM_URL)
        .map(sim_app)
        .collect();
    SimConfig {
        apps,
        ..SimConfig::default()
    }
}

fn sim_app(app: &AppConfig) -> SimAppConfig {
    SimAppConfig {
        app_key: app.app_key.clone(),
        app_secret: app.app_secret.expose().to_owned(),
        mode: app.mode,
        max_bindings_per_x: usize::try_from(app.max_bindings_per_x).unwrap_or(usize::MAX),
        extension_digits: app.extension_digits,
        max_extensions_per_x: app.max_extensions_per_x,
        // The simulator's own default.
        max_relations_per_y: 1000,
        recording_enabled: true,
        frozen: false,
        numbers: app
            .numbers
            .iter()
            .map(|n| SimNumber {
                number: n.number.clone(),
                area_code: n.area_code.clone(),
                blacklisted: false,
            })
            .collect(),
    }
}
