//! One description of the apps (modes, numbers, limits) from which both the simulator's TOML
//! and the daemon's TOML are written, so the two sides cannot drift apart.

use std::path::Path;

use toml::Value;

/// A number of an app; `blacklisted` ones exist only on the platform.
#[derive(Debug, Clone)]
pub struct Number {
    pub number: String,
    pub area: String,
    pub blacklisted: bool,
}

/// One app: the platform app `key` (secret `s-…` for `k-…`) and the daemon app `name` over it.
/// An app without a key is a local X-mode app the platform does not know.
#[derive(Debug, Clone)]
pub struct App {
    pub name: String,
    pub key: Option<String>,
    pub mode: &'static str,
    pub numbers: Vec<Number>,
    sim: Vec<(String, Value)>,
    daemon: Vec<(String, Value)>,
}

fn set(keys: &mut Vec<(String, Value)>, key: &str, value: Value) {
    match keys.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value,
        None => keys.push((key.to_owned(), value)),
    }
}

impl App {
    /// A platform app in `mode` ("AXB", "AX", "AXE", "AXYB") with the daemon's usual limits
    /// (rate 10000/s, 2 s timeout).
    pub fn new(name: &str, key: &str, mode: &'static str) -> App {
        let secret = Value::from(key.replacen("k-", "s-", 1));
        App {
            name: name.into(),
            key: Some(key.into()),
            mode,
            numbers: Vec::new(),
            sim: vec![("app_secret".into(), secret.clone())],
            daemon: vec![
                ("app_secret".into(), secret),
                ("rate_per_second".into(), Value::from(10_000)),
                ("timeout_ms".into(), Value::from(2_000)),
            ],
        }
    }

    /// A local X-mode app (no platform side).
    pub fn local(name: &str) -> App {
        App {
            name: name.into(),
            key: None,
            mode: "X",
            numbers: Vec::new(),
            sim: Vec::new(),
            daemon: Vec::new(),
        }
    }

    /// Numbers `first`, `first + 1`, … (written `+<digits>`), one per area in `areas`.
    pub fn numbers(mut self, first: u64, areas: &[&str]) -> App {
        for (i, area) in (0u64..).zip(areas) {
            self.numbers.push(Number {
                number: format!("+{}", first + i),
                area: (*area).into(),
                blacklisted: false,
            });
        }
        self
    }

    /// Replaces the numbers with `first`, `first + 1`, … one per area in `areas`.
    pub fn renumber(mut self, first: u64, areas: &[&str]) -> App {
        self.numbers.clear();
        self.numbers(first, areas)
    }

    /// A number the platform has blacklisted (the daemon does not own it).
    pub fn blacklisted(mut self, number: &str, area: &str) -> App {
        self.numbers.push(Number {
            number: number.into(),
            area: area.into(),
            blacklisted: true,
        });
        self
    }

    /// A key with the same value on both sides (`max_bindings_per_x`, `extension_digits`).
    pub fn both(self, key: &str, value: impl Into<Value>) -> App {
        let value = value.into();
        self.sim(key, value.clone()).daemon(key, value)
    }

    /// A key of the simulator's app only (replaces an earlier value).
    pub fn sim(mut self, key: &str, value: impl Into<Value>) -> App {
        set(&mut self.sim, key, value.into());
        self
    }

    /// A key of the daemon's app only (replaces an earlier value).
    pub fn daemon(mut self, key: &str, value: impl Into<Value>) -> App {
        set(&mut self.daemon, key, value.into());
        self
    }

    /// The numbers the daemon owns, as (number, area).
    pub fn owned(&self) -> Vec<(&str, &str)> {
        self.numbers
            .iter()
            .filter(|n| !n.blacklisted)
            .map(|n| (n.number.as_str(), n.area.as_str()))
            .collect()
    }

    fn numbers_toml(&self, platform: bool) -> String {
        let mut out = String::from("numbers = [\n");
        for n in self.numbers.iter().filter(|n| platform || !n.blacklisted) {
            let flag = if n.blacklisted {
                ", blacklisted = true"
            } else {
                ""
            };
            out += &format!(
                "  {{ number = \"{}\", area_code = \"{}\"{flag} }},\n",
                n.number, n.area
            );
        }
        out + "]\n"
    }
}

fn keys_toml(keys: &[(String, Value)]) -> String {
    keys.iter().map(|(k, v)| format!("{k} = {v}\n")).collect()
}

/// The apps of a test, plus extra `[server]` keys and whole sections for either side.
#[derive(Debug, Clone)]
pub struct Setup {
    pub apps: Vec<App>,
    server: Vec<(String, Value)>,
    /// `[store]` keys of the daemon beside its path.
    store: Vec<(String, Value)>,
    /// `[callbacks]` keys of the daemon beside its listener; `Some` turns its push receiver on
    /// (see [`Setup::receiver`]).
    callbacks: Option<Vec<(String, Value)>>,
    sim_sections: String,
    daemon_sections: String,
}

impl Setup {
    pub fn new(apps: Vec<App>) -> Setup {
        Setup {
            apps,
            server: vec![
                ("shutdown_grace_seconds".into(), Value::from(5)),
                // Tests restart daemons often: no wait before refusing new calls.
                ("shutdown_delay_seconds".into(), Value::from(0)),
            ],
            store: Vec::new(),
            callbacks: None,
            sim_sections: String::new(),
            daemon_sections: String::new(),
        }
    }

    /// The daemon tests' default: one app per mode, and a local X-mode app.
    pub fn standard() -> Setup {
        Setup::new(vec![
            App::new("rides", "k-axb", "AXB")
                .both("max_bindings_per_x", 5000)
                .daemon("fallback_areas", vec!["021"])
                .numbers(8617000000001, &["010", "010", "021", "0755"]),
            App::new("drivers", "k-ax", "AX")
                .daemon("cool_down_seconds", 60)
                .numbers(8617100000001, &["010", "010", "021"]),
            App::new("stores", "k-axe", "AXE")
                .both("extension_digits", 2)
                .daemon("cool_down_seconds", 60)
                .numbers(8617200000001, &["010", "010"]),
            App::new("chat", "k-axyb", "AXYB")
                .numbers(8617300000001, &["010", "010", "021", "021"]),
            App::local("local")
                .daemon("max_bindings_per_x", 2)
                .numbers(8617400000001, &["010", "021"]),
        ])
    }

    /// Small pools for concurrency and fault tests: AXB with 6 Xs of at most 10 bindings, AX
    /// with 8 Xs, AXE with 3 Xs of 1-digit extensions.
    pub fn small_pools() -> Setup {
        Setup::new(vec![
            App::new("rides", "k-axb", "AXB")
                .both("max_bindings_per_x", 10)
                .numbers(8617000000001, &["010", "010", "010", "021", "021", "021"]),
            App::new("drivers", "k-ax", "AX")
                .daemon("cool_down_seconds", 60)
                .numbers(
                    8617100000001,
                    &["010", "010", "010", "010", "021", "021", "021", "021"],
                ),
            App::new("stores", "k-axe", "AXE")
                .both("extension_digits", 1)
                .daemon("cool_down_seconds", 60)
                .numbers(8617200000001, &["010", "010", "021"]),
        ])
    }

    /// The platform tests' default: one app per mode, a frozen app, an app without recording,
    /// and at most 5 failed logins.
    pub fn platform() -> Setup {
        Setup::new(vec![
            App::new("rides", "k-axb", "AXB")
                .both("max_bindings_per_x", 3)
                .numbers(8617000000001, &["010", "010", "021"])
                .blacklisted("+8617000000009", "0755"),
            App::new("drivers", "k-ax", "AX")
                .numbers(8617100000001, &["010", "010", "021", "021", "021", "0755"]),
            App::new("stores", "k-axe", "AXE")
                .both("extension_digits", 1)
                .numbers(8617200000001, &["010", "021"]),
            App::new("chat", "k-axyb", "AXYB").numbers(8617300000001, &["010", "010", "021"]),
            App::new("frozen", "k-frozen", "AXB")
                .sim("frozen", true)
                .numbers(8617400000001, &["010"]),
            App::new("norec", "k-norec", "AXB")
                .sim("recording_enabled", false)
                .numbers(8617500000001, &["010"]),
        ])
        .sim_section("[auth]\nmax_failures = 5\n")
    }

    /// Changes the app called `name`.
    pub fn app(mut self, name: &str, change: impl FnOnce(App) -> App) -> Setup {
        let i = self
            .apps
            .iter()
            .position(|a| a.name == name)
            .unwrap_or_else(|| panic!("no app {name} in the setup"));
        let app = self.apps.remove(i);
        self.apps.insert(i, change(app));
        self
    }

    /// Keeps only the apps called one of `names`.
    pub fn only(mut self, names: &[&str]) -> Setup {
        self.apps.retain(|a| names.contains(&a.name.as_str()));
        self
    }

    /// The app called `name`.
    pub fn get(&self, name: &str) -> &App {
        self.apps
            .iter()
            .find(|a| a.name == name)
            .unwrap_or_else(|| panic!("no app {name} in the setup"))
    }

    /// A `[server]` key of the daemon.
    pub fn server(mut self, key: &str, value: impl Into<Value>) -> Setup {
        set(&mut self.server, key, value.into());
        self
    }

    /// A `[store]` key of the daemon (its path is the test's own).
    pub fn store(mut self, key: &str, value: impl Into<Value>) -> Setup {
        set(&mut self.store, key, value.into());
        self
    }

    /// The daemon's push receiver on: the harness binds it on a free port, hands it over, and
    /// points every platform app of the simulator at it ([`Setup::pushing_to`]).
    pub fn receiver(mut self) -> Setup {
        self.callbacks.get_or_insert_with(Vec::new);
        self
    }

    /// A `[callbacks]` key of the daemon; turns the receiver on.
    pub fn callbacks(mut self, key: &str, value: impl Into<Value>) -> Setup {
        set(
            self.callbacks.get_or_insert_with(Vec::new),
            key,
            value.into(),
        );
        self
    }

    /// Whether the daemon's push receiver is on.
    pub fn has_receiver(&self) -> bool {
        self.callbacks.is_some()
    }

    /// Every platform app of the simulator pushes to the receiver at `base`
    /// (`http://host:port`): call events and number status to `/`, CDRs to `/cdr`, SMS to
    /// `/sms`; URLs an app sets itself are kept.
    pub fn pushing_to(mut self, base: &str) -> Setup {
        for app in self.apps.iter_mut().filter(|app| app.key.is_some()) {
            for (key, path) in [
                ("callback_url", "/"),
                ("cdr_url", "/cdr"),
                ("sms_url", "/sms"),
            ] {
                if !app.sim.iter().any(|(k, _)| k == key) {
                    app.sim
                        .push((key.into(), Value::from(format!("{base}{path}"))));
                }
            }
        }
        self
    }

    /// A whole TOML section appended to the simulator's config (replaces earlier ones).
    pub fn sim_section(mut self, text: &str) -> Setup {
        self.sim_sections = text.into();
        self
    }

    /// A whole TOML section appended to the daemon's config.
    pub fn daemon_section(mut self, text: &str) -> Setup {
        self.daemon_sections += text;
        self
    }

    /// The simulator's TOML: every app that has a platform key.
    pub fn sim_toml(&self) -> String {
        let mut out = String::new();
        for app in &self.apps {
            let Some(key) = &app.key else { continue };
            out += &format!("[[apps]]\napp_key = \"{key}\"\nmode = \"{}\"\n", app.mode);
            out += &keys_toml(&app.sim);
            out += &app.numbers_toml(true);
            out += "\n";
        }
        out + &self.sim_sections
    }

    /// The daemon's TOML, listening on `listen`, calling the simulator at `sim_url`, with its
    /// store at `store`.
    pub fn daemon_toml(&self, listen: &str, sim_url: &str, store: &Path) -> String {
        let mut out = format!("[server]\nlisten = \"{listen}\"\n");
        out += &keys_toml(&self.server);
        out += &format!(
            "\n[store]\npath = {}\n",
            Value::from(store.display().to_string())
        );
        out += &keys_toml(&self.store);
        out += "\n";
        if let Some(callbacks) = &self.callbacks {
            // The in-process harness hands over the listener it bound, so this only turns the
            // receiver on; a child process is given its port (`callbacks("listen", …)`).
            out += "[callbacks]\n";
            if !callbacks.iter().any(|(key, _)| key == "listen") {
                out += "listen = \"127.0.0.1:0\"\n";
            }
            out += &keys_toml(callbacks);
            out += "\n";
        }
        for app in &self.apps {
            out += &format!(
                "[[apps]]\nname = \"{}\"\nmode = \"{}\"\n",
                app.name, app.mode
            );
            if let Some(key) = &app.key {
                out += &format!("base_url = \"{sim_url}\"\napp_key = \"{key}\"\n");
            }
            out += &keys_toml(&app.daemon);
            out += &app.numbers_toml(false);
            out += "\n";
        }
        out + &self.daemon_sections
    }
}
