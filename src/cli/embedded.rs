//! The embedded default (`xpool serve` with no config): the library's demo apps, and a
//! platform simulator in-process whose apps match them and push to the daemon's receiver.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use xpool::config::{AppConfig, Config, EMBEDDED_SIM_URL};
use xpool_sim::{SimAppConfig, SimConfig, SimNumber};

/// The embedded default's daemon config (env overrides applied) and the simulator config that
/// serves its apps.
pub fn config(
    env: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<(Config, Option<SimConfig>)> {
    let config = Config::embedded_default(env)?;
    let sim = sim_config(&config);
    sim.validate()
        .map_err(|message| anyhow::anyhow!("embedded default: simulator: {message}"))?;
    Ok((config, Some(sim)))
}

/// Starts the simulator of the embedded default on a free port and points the apps at it.
pub async fn start_sim(
    config: &mut Config,
    sim_config: SimConfig,
    stop: &CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the embedded simulator")?;
    let addr = listener.local_addr()?;
    config.point_at_embedded_sim(&format!("http://{addr}"));
    tracing::info!(
        %addr,
        "no config given: running the embedded default with the platform simulator in-process \
         and demo apps {}; pass --config FILE for a real platform",
        config.apps.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(", ")
    );
    let stop = stop.clone().cancelled_owned();
    Ok(tokio::spawn(async move {
        if let Err(e) = xpool_sim::serve(sim_config, listener, stop).await {
            tracing::error!(error = %e, "embedded simulator failed");
        }
    }))
}

/// The simulator serving every app still pointed at [`EMBEDDED_SIM_URL`], pushing to the
/// daemon's receiver.
fn sim_config(config: &Config) -> SimConfig {
    let receiver = receiver_url(config);
    let apps = config
        .apps
        .iter()
        .filter(|app| app.base_url == EMBEDDED_SIM_URL)
        .map(|app| sim_app(app, receiver.as_deref()))
        .collect();
    SimConfig {
        apps,
        ..SimConfig::default()
    }
}

/// Where the daemon's push receiver is reached from this host: `[callbacks] listen`, on
/// loopback when it listens on every interface; `None` when it is off or its port is chosen
/// at bind time (the simulator then pushes nowhere).
fn receiver_url(config: &Config) -> Option<String> {
    let listen = config.callbacks.listen.filter(|addr| addr.port() != 0)?;
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Some(format!("http://{}", SocketAddr::new(ip, listen.port())))
}

/// The simulator's app for `app`; with a `receiver`, call events and number status go to its
/// catch-all path, CDRs and SMS to their own paths.
fn sim_app(app: &AppConfig, receiver: Option<&str>) -> SimAppConfig {
    let url = |path: &str| receiver.map(|base| format!("{base}{path}"));
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
        // Any tone name is an uploaded file.
        tones: None,
        numbers: app
            .numbers
            .iter()
            .map(|n| SimNumber {
                number: n.number.clone(),
                area_code: n.area_code.clone(),
                blacklisted: false,
            })
            .collect(),
        callback_url: url("/"),
        cdr_url: url("/cdr"),
        sms_url: url("/sms"),
    }
}

#[cfg(test)]
mod tests {
    use xpool::platform::Mode;

    use super::*;

    #[test]
    fn the_simulator_serves_every_demo_app_with_its_numbers() {
        let (config, sim) = config(Vec::new()).unwrap();
        let sim = sim.unwrap();
        assert_eq!(sim.apps.len(), Mode::ALL.len());
        for app in &config.apps {
            let simulated = sim.apps.iter().find(|s| s.app_key == app.app_key).unwrap();
            assert_eq!(simulated.mode, app.mode);
            assert_eq!(simulated.app_secret, app.app_secret.expose());
            let sim_numbers: Vec<_> = simulated
                .numbers
                .iter()
                .map(|n| (&n.number, &n.area_code))
                .collect();
            let app_numbers: Vec<_> = app
                .numbers
                .iter()
                .map(|n| (&n.number, &n.area_code))
                .collect();
            assert_eq!(sim_numbers, app_numbers);
            let urls = [
                &simulated.callback_url,
                &simulated.cdr_url,
                &simulated.sms_url,
            ];
            assert_eq!(
                urls.map(Option::as_deref),
                [
                    Some("http://127.0.0.1:50052/"),
                    Some("http://127.0.0.1:50052/cdr"),
                    Some("http://127.0.0.1:50052/sms")
                ],
                "pushes go to the daemon's receiver"
            );
        }
        let listen = config.callbacks.listen.map(|addr| addr.to_string());
        assert_eq!(
            listen.as_deref(),
            Some(xpool::config::EMBEDDED_CALLBACKS_LISTEN)
        );
    }

    #[test]
    fn the_simulator_follows_the_receivers_address() {
        let at = |listen: &str| {
            let env = [("XPOOL__CALLBACKS__LISTEN".to_owned(), listen.to_owned())];
            let (_, sim) = config(env).unwrap();
            sim.unwrap().apps[0].cdr_url.clone()
        };
        assert_eq!(
            at("0.0.0.0:6000").as_deref(),
            Some("http://127.0.0.1:6000/cdr")
        );
        assert_eq!(at("[::]:6000").as_deref(), Some("http://[::1]:6000/cdr"));
        assert_eq!(
            at("127.0.0.1:0"),
            None,
            "a port chosen at bind time is not known yet"
        );
    }

    #[test]
    fn env_overrides_reach_the_simulator() {
        let env = [(
            "XPOOL__APPS__DEMO_AXE__EXTENSION_DIGITS".to_owned(),
            "2".to_owned(),
        )];
        let (_, sim) = config(env).unwrap();
        let sim = sim.unwrap();
        let axe = sim.apps.iter().find(|a| a.mode == Mode::Axe).unwrap();
        assert_eq!(axe.extension_digits, 2);
    }
}
