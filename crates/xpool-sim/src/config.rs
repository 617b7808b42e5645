//! Simulator configuration: the platform apps, their numbers and the auth guard.
//!
//! Loaded from TOML and validated as a whole before the simulator binds anything; every error
//! names the offending key, app or number.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

use xpool_platform::Mode;
use xpool_platform::number::{is_area_code, is_global};

/// Why a simulator configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum SimConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The TOML does not parse or has unknown / mistyped keys.
    #[error("{origin}: {source}")]
    Syntax {
        origin: String,
        source: Box<toml::de::Error>,
    },
    /// The TOML parses but a value is not allowed.
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// The whole simulator: its apps and server-wide settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// Serve the unauthenticated `/sim/*` test controls (false ⇒ those paths answer 404).
    #[serde(default = "default_true")]
    pub controls: bool,
    /// Largest accepted request body; larger bodies get HTTP 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Clock skew, nonce replay and the failed-authentication IP blacklist.
    #[serde(default)]
    pub auth: AuthSettings,
    /// How the simulator pushes to the apps' URLs: retries, timeout, signature.
    #[serde(default)]
    pub push: PushSettings,
    /// The platform applications (one mode each).
    #[serde(default)]
    pub apps: Vec<SimAppConfig>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            controls: true,
            max_body_bytes: default_max_body_bytes(),
            auth: AuthSettings::default(),
            push: PushSettings::default(),
            apps: Vec::new(),
        }
    }
}

/// Authentication rules (binding-api.md §1.3, §1.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Largest accepted distance between `Created` and real UTC now.
    pub max_clock_skew_seconds: u64,
    /// Failed authentications from one IP within the window that blacklist it.
    pub max_failures: u32,
    /// The window over which failures are counted.
    pub failure_window_seconds: u64,
    /// How long a blacklisted IP gets 1020176.
    pub blacklist_seconds: u64,
    /// Refuse a nonce already used by the same app while its token is still within the clock
    /// skew (a replayed header) with 401 / 1010013.
    pub reject_replayed_nonces: bool,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            max_clock_skew_seconds: 600,
            max_failures: 20,
            failure_window_seconds: 600,
            blacklist_seconds: 1800,
            reject_replayed_nonces: true,
        }
    }
}

/// Pushes to the customer's server (notifications.md §0, §6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushSettings {
    /// When a failed Notify push is re-sent: minutes after its first failure (§6 reads "at 1,
    /// 4, 9, 106, 203 and 300 minutes" as offsets), on the simulator's clock. Empty: no retries.
    pub retry_minutes: Vec<u64>,
    /// How long one push waits for the customer's answer.
    pub timeout_ms: u64,
    /// The headers that sign each push with the app's key and secret (§0.3).
    pub sign: PushSigning,
}

impl Default for PushSettings {
    fn default() -> Self {
        PushSettings {
            retry_minutes: vec![1, 4, 9, 106, 203, 300],
            timeout_ms: 2000,
            sign: PushSigning::Aksk,
        }
    }
}

/// How pushes are signed (notifications.md §0.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PushSigning {
    /// `Authorization: AKSK …` and `X-AKSK` (the current docs).
    #[serde(rename = "AKSK")]
    Aksk,
    /// `Authorization: WSSE …` and `X-WSSE` (the legacy docs).
    #[serde(rename = "WSSE")]
    Wsse,
    /// No signature headers.
    #[serde(rename = "none")]
    None,
}

/// One platform application.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimAppConfig {
    pub app_key: String,
    /// Never printed: `Debug` redacts it.
    pub app_secret: String,
    #[serde(deserialize_with = "de_mode")]
    pub mode: Mode,
    /// AXB: live bindings one X may carry.
    #[serde(default = "default_max_bindings_per_x")]
    pub max_bindings_per_x: usize,
    /// AXE: extension length in digits, 1..=4.
    #[serde(default = "default_extension_digits")]
    pub extension_digits: u8,
    /// AXE: optional cap on extensions per X below the extension space.
    #[serde(default)]
    pub max_extensions_per_x: Option<u32>,
    /// AXYB: live YB relations one Y may carry.
    #[serde(default = "default_max_relations_per_y")]
    pub max_relations_per_y: usize,
    /// False ⇒ `recordFlag=true` is refused with 1012012.
    #[serde(default = "default_true")]
    pub recording_enabled: bool,
    /// True ⇒ every business call gets 1010029.
    #[serde(default)]
    pub frozen: bool,
    /// The tone files uploaded and approved in the console: any other name in a tone
    /// parameter gets 1010002 naming the parameter. Absent: any name of 1 to 128 characters.
    #[serde(default)]
    pub tones: Option<Vec<String>>,
    /// The privacy numbers the app owns.
    #[serde(default)]
    pub numbers: Vec<SimNumber>,
    /// Where call events go (notifications.md §1), and number status (§3); in X mode also the
    /// Block `callin` that routes each call. Absent: those are not pushed (X-mode calls fail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// Where CDRs go (§2). Absent: not pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cdr_url: Option<String>,
    /// Where SMS events go, Notify and Block alike (§4). Absent: not pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms_url: Option<String>,
}

impl std::fmt::Debug for SimAppConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimAppConfig")
            .field("app_key", &self.app_key)
            .field("app_secret", &"<redacted>")
            .field("mode", &self.mode)
            .field("max_bindings_per_x", &self.max_bindings_per_x)
            .field("extension_digits", &self.extension_digits)
            .field("max_extensions_per_x", &self.max_extensions_per_x)
            .field("max_relations_per_y", &self.max_relations_per_y)
            .field("recording_enabled", &self.recording_enabled)
            .field("frozen", &self.frozen)
            .field("tones", &self.tones)
            .field("numbers", &self.numbers)
            .field("callback_url", &self.callback_url)
            .field("cdr_url", &self.cdr_url)
            .field("sms_url", &self.sms_url)
            .finish()
    }
}

/// One privacy number (X or Y) owned by an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimNumber {
    /// Global format, e.g. `+8617000000001`.
    pub number: String,
    /// City code such as `010`.
    pub area_code: String,
    /// Blacklisted numbers are refused when named (1012102) and never chosen by the platform.
    #[serde(default)]
    pub blacklisted: bool,
}

impl SimNumber {
    /// Checks the number and its area code; the message names the number.
    pub fn validate(&self) -> Result<(), String> {
        if !is_global(&self.number) {
            return Err(format!(
                "number {:?} is not in global format (+ country code and digits)",
                self.number
            ));
        }
        if !is_area_code(&self.area_code) {
            return Err(format!(
                "number {}: area_code {:?} must be 2 to 6 digits",
                self.number, self.area_code
            ));
        }
        Ok(())
    }
}

impl SimConfig {
    /// Parses and validates a TOML configuration.
    pub fn from_toml_str(text: &str) -> Result<SimConfig, SimConfigError> {
        Self::parse(text, "simulator config")
    }

    /// Reads, parses and validates a TOML file; errors name the file.
    pub fn load(path: &Path) -> Result<SimConfig, SimConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| SimConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    fn parse(text: &str, origin: &str) -> Result<SimConfig, SimConfigError> {
        let config: SimConfig = toml::from_str(text).map_err(|e| SimConfigError::Syntax {
            origin: origin.to_owned(),
            source: Box::new(e),
        })?;
        config
            .validate()
            .map_err(|message| SimConfigError::Invalid {
                origin: origin.to_owned(),
                message,
            })?;
        Ok(config)
    }

    /// Checks every rule that serde cannot; the message names the key, app or number.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_body_bytes == 0 {
            return Err("max_body_bytes must be at least 1".into());
        }
        if self.auth.max_failures == 0 {
            return Err("auth.max_failures must be at least 1".into());
        }
        self.push.validate()?;
        let mut keys = HashSet::new();
        for app in &self.apps {
            if !keys.insert(app.app_key.as_str()) {
                return Err(format!("app_key {:?} is used by two apps", app.app_key));
            }
            app.validate()
                .map_err(|m| format!("app {:?}: {m}", app.app_key))?;
        }
        Ok(())
    }
}

impl SimAppConfig {
    fn validate(&self) -> Result<(), String> {
        if self.app_key.is_empty() {
            return Err("app_key must not be empty".into());
        }
        if self.app_secret.is_empty() {
            return Err("app_secret must not be empty".into());
        }
        if !(1..=4).contains(&self.extension_digits) {
            return Err(format!(
                "extension_digits {} must be 1 to 4",
                self.extension_digits
            ));
        }
        if self.max_bindings_per_x == 0 {
            return Err("max_bindings_per_x must be at least 1".into());
        }
        if self.max_relations_per_y == 0 {
            return Err("max_relations_per_y must be at least 1".into());
        }
        if self.max_extensions_per_x == Some(0) {
            return Err("max_extensions_per_x must be at least 1".into());
        }
        for tone in self.tones.iter().flatten() {
            if !(1..=128).contains(&tone.chars().count()) {
                return Err(format!("tone {tone:?} must be 1 to 128 characters"));
            }
        }
        let mut seen = HashSet::new();
        for number in &self.numbers {
            number.validate()?;
            if !seen.insert(number.number.as_str()) {
                return Err(format!("number {} is listed twice", number.number));
            }
        }
        for (key, url) in [
            ("callback_url", &self.callback_url),
            ("cdr_url", &self.cdr_url),
            ("sms_url", &self.sms_url),
        ] {
            if let Some(url) = url {
                check_push_url(url).map_err(|m| format!("{key} {url:?}: {m}"))?;
            }
        }
        Ok(())
    }
}

impl PushSettings {
    fn validate(&self) -> Result<(), String> {
        if self.timeout_ms == 0 {
            return Err("push.timeout_ms must be at least 1".into());
        }
        if self.retry_minutes.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!(
                "push.retry_minutes {:?} must be increasing",
                self.retry_minutes
            ));
        }
        Ok(())
    }
}

/// A push URL: absolute `http` or `https` with a host (the path is whatever the customer typed).
fn check_push_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    if !matches!(parsed.scheme(), "http" | "https") || !parsed.has_host() {
        return Err("must be an http:// or https:// URL with a host".into());
    }
    Ok(())
}

fn de_mode<'de, D: Deserializer<'de>>(d: D) -> Result<Mode, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(serde::de::Error::custom)
}

fn default_true() -> bool {
    true
}

fn default_max_body_bytes() -> usize {
    65536
}

fn default_max_bindings_per_x() -> usize {
    5000
}

fn default_extension_digits() -> u8 {
    4
}

fn default_max_relations_per_y() -> usize {
    1000
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[[apps]]
app_key = "k-axb"
app_secret = "s-axb"
mode = "AXB"                  # AX | AXB | AXE | AXYB | X
max_bindings_per_x = 5000     # AXB, optional
extension_digits = 4          # AXE, optional
numbers = [
  { number = "+8617000000001", area_code = "010" },
  { number = "+8617000000002", area_code = "021" },
]
"#;

    #[test]
    fn the_documented_example_parses_with_defaults() {
        let config = SimConfig::from_toml_str(EXAMPLE).unwrap();
        assert!(config.controls);
        assert_eq!(config.max_body_bytes, 65536);
        assert_eq!(config.auth, AuthSettings::default());
        let app = &config.apps[0];
        assert_eq!(app.mode, Mode::Axb);
        assert!(app.recording_enabled && !app.frozen);
        assert_eq!(app.max_relations_per_y, 1000);
        assert_eq!(app.numbers.len(), 2);
        assert!(!app.numbers[1].blacklisted);
    }

    #[test]
    fn debug_redacts_the_secret() {
        let config = SimConfig::from_toml_str(EXAMPLE).unwrap();
        let text = format!("{config:?}");
        assert!(!text.contains("s-axb"), "{text}");
        assert!(text.contains("<redacted>"));
    }

    fn error_of(text: &str) -> String {
        SimConfig::from_toml_str(text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_offender() {
        let dup = format!("{EXAMPLE}\n{EXAMPLE}");
        assert!(error_of(&dup).contains("k-axb"));
        let bad_number = EXAMPLE.replace("+8617000000002", "8617000000002");
        assert!(error_of(&bad_number).contains("8617000000002"));
        let bad_area = EXAMPLE.replace("\"021\"", "\"21a\"");
        assert!(error_of(&bad_area).contains("area_code"));
        let bad_digits = EXAMPLE.replace("extension_digits = 4", "extension_digits = 5");
        assert!(error_of(&bad_digits).contains("extension_digits"));
        let bad_mode = EXAMPLE.replace("mode = \"AXB\"", "mode = \"AXZ\"");
        assert!(error_of(&bad_mode).contains("AXZ"));
        let unknown = EXAMPLE
            .replace("frozen", "")
            .replace("mode =", "colour = 1\nmode =");
        assert!(error_of(&unknown).contains("colour"));
    }

    #[test]
    fn push_urls_and_settings_are_checked() {
        let config = SimConfig::from_toml_str(EXAMPLE).unwrap();
        assert_eq!(config.push.retry_minutes, [1, 4, 9, 106, 203, 300]);
        assert_eq!(config.push.sign, PushSigning::Aksk);
        assert_eq!(config.apps[0].callback_url, None);
        let with_urls = EXAMPLE.replace(
            "mode = \"AXB\"",
            "mode = \"AXB\"\ncallback_url = \"http://127.0.0.1:9/status\"\ncdr_url = \"https://h/fee\"",
        );
        let config = SimConfig::from_toml_str(&with_urls).unwrap();
        assert_eq!(config.apps[0].cdr_url.as_deref(), Some("https://h/fee"));
        let bad_url = with_urls.replace("https://h/fee", "ftp://h/fee");
        assert!(error_of(&bad_url).contains("cdr_url"));
        let settings = format!("{EXAMPLE}\n[push]\nretry_minutes = [1, 1]\nsign = \"WSSE\"\n");
        assert!(error_of(&settings).contains("push.retry_minutes"));
        let settings = settings.replace("[1, 1]", "[]");
        let config = SimConfig::from_toml_str(&settings).unwrap();
        assert_eq!(
            (config.push.sign, config.push.retry_minutes.len()),
            (PushSigning::Wsse, 0)
        );
        assert!(error_of(&settings.replace("WSSE", "HMAC")).contains("HMAC"));
    }

    #[test]
    fn the_deploy_sample_parses_with_and_without_its_commented_keys() {
        let sample = include_str!("../../../deploy/sim.toml");
        let plain = SimConfig::from_toml_str(sample).unwrap();
        assert!(plain.apps.iter().all(|a| a.callback_url.is_none()));
        // Uncomment every commented key and table header.
        let keys: String = sample
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest)
                    if rest.starts_with('[')
                        || rest
                            .split_once(" = ")
                            .is_some_and(|(k, _)| !k.contains(' ')) =>
                {
                    rest
                }
                _ => line,
            })
            .map(|line| format!("{line}\n"))
            .collect();
        let full = SimConfig::from_toml_str(&keys).unwrap();
        let x = full.apps.iter().find(|a| a.mode == Mode::X).unwrap();
        assert!(x.callback_url.is_some() && x.cdr_url.is_some() && x.sms_url.is_some());
        assert_eq!(full.push, PushSettings::default());
    }
}
