//! `POST /sim/sms`: a text to an app's number, forwarded and pushed to its `sms_url` as the
//! platform does (notifications.md §4.2): AXB forwards between A and B (Notify); AX forwards
//! anyone's text to A with `[From<sender>]` appended and A's text ending in `@<B>` to B with the
//! suffix stripped (Notify), and asks the customer about A's text without one (Block); X mode
//! asks about every text (Block), then, if told to route it, forwards it (Notify). AXE and AXYB
//! apps have no SMS, nor do bindings with `privateSms` off.

use serde_json::{Map, Value, json};

use super::config::SimAppConfig;
use super::controls::{Answer, app, bad, global_number, only_fields, opt_str};
use super::state::{AppState, Bindings, Sim, lock};
use xpool_platform::Mode;
use xpool_platform::number::is_global;
use xpool_platform::push::{
    BLOCK, NOTIFY, PushKind, SmsBlockAnswer, SmsEvent, SmsNotification, SmsOperation, TEXT_SMS,
};
use xpool_platform::time::format_sms_time;

/// The longest text accepted.
const MAX_TEXT_CHARS: usize = 1000;

/// What the platform does with one text.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    /// Forward `text` to `to`.
    Forward {
        to: String,
        text: String,
        subscription_id: Option<String>,
    },
    /// Ask the customer (a Block push).
    Ask { subscription_id: Option<String> },
    /// Drop it: no binding, a binding with `privateSms` off, or a paused or unavailable number.
    Drop,
}

/// Sends one text; answers `{"smsIdentifier", "forwardedTo", "forwardedText"}`.
pub(crate) async fn send(sim: &Sim, body: &Map<String, Value>) -> Answer {
    only_fields(body, &["app_key", "from", "to", "text"])?;
    let app = app(sim, body)?;
    let config = &app.config;
    if matches!(config.mode, Mode::Axe | Mode::Axyb) {
        return Err(bad(format!("{} apps have no SMS", config.mode)));
    }
    let from = global_number(body, "from")?;
    let to = global_number(body, "to")?;
    let text = opt_str(body, "text")?
        .filter(|t| (1..=MAX_TEXT_CHARS).contains(&t.chars().count()))
        .ok_or_else(|| bad("text must be a string of 1 to 1000 characters"))?;
    let now = sim.clock.now();
    let (decision, seq) = {
        let mut state = lock(&app.state);
        state.purge(now);
        if state.numbers.get(&to).is_none() {
            return Err(bad(format!(
                "to {to} is not a number of app {}",
                config.app_key
            )));
        }
        let mut traffic = lock(&sim.traffic);
        let decision = if traffic.blocked(&config.app_key, &to) {
            Decision::Drop
        } else {
            decide(&state, &from, &to, &text)
        };
        (decision, traffic.next_seq())
    };
    let id = format!("sim-sms-{seq}-{}", uuid::Uuid::new_v4().simple());
    let event = SmsEvent {
        sms_identifier: Some(id.clone()),
        calling: Some(from.clone()),
        virtual_number: Some(to.clone()),
        event: Some(TEXT_SMS.to_owned()),
        time_stamp: Some(format_sms_time(now)),
        sms_content: Some(text.clone()),
        ..SmsEvent::default()
    };
    let forward = match decision {
        Decision::Forward {
            to,
            text,
            subscription_id,
        } => Some((to, text, subscription_id)),
        Decision::Ask { subscription_id } => {
            let event = SmsEvent {
                subscription_id: subscription_id.clone(),
                ..event.clone()
            };
            ask(sim, config, event)
                .await
                .map(|called| (called, text, subscription_id))
        }
        Decision::Drop => None,
    };
    if let (Some((called, text, subscription_id)), Some(url)) = (&forward, &config.sms_url) {
        let notify = SmsEvent {
            notification_mode: Some(NOTIFY.to_owned()),
            called: Some(called.clone()),
            subscription_id: subscription_id.clone(),
            sms_content: Some(text.clone()),
            time_stamp: Some(format_sms_time(sim.clock.now())),
            send_result: Some(2),
            ..event
        };
        let body = notification(config, notify);
        sim.pushes
            .notify(&sim.clock, config, url, PushKind::Sms, &body)
            .await;
    }
    Ok(json!({
        "smsIdentifier": id,
        "forwardedTo": forward.as_ref().map(|f| &f.0),
        "forwardedText": forward.as_ref().map(|f| &f.1),
    }))
}

/// Where the platform sends a text from `from` to `to` (§4.2).
fn decide(state: &AppState, from: &str, to: &str, text: &str) -> Decision {
    match &state.bindings {
        Bindings::Axb(s) => match s.call_view(to, from).filter(|v| v.sms) {
            Some(v) => Decision::Forward {
                to: if from == v.a { v.b } else { v.a },
                text: text.to_owned(),
                subscription_id: v.bound.id,
            },
            None => Decision::Drop,
        },
        Bindings::Ax(s) => match s.call_view(to).filter(|v| v.sms) {
            Some(v) if from != v.a => Decision::Forward {
                to: v.a,
                text: format!("{text}[From{from}]"),
                subscription_id: v.bound.id,
            },
            Some(v) => match addressed(text) {
                Some((b, text)) => Decision::Forward {
                    to: b,
                    text,
                    subscription_id: v.bound.id,
                },
                None => Decision::Ask {
                    subscription_id: v.bound.id,
                },
            },
            None => Decision::Drop,
        },
        Bindings::X => Decision::Ask {
            subscription_id: None,
        },
        Bindings::Axe(_) | Bindings::Axyb(_) => Decision::Drop,
    }
}

/// AX: a text ending in `@<B>` (B national, e.g. `@13800000002`, or global): B in global
/// format and the text without the suffix.
fn addressed(text: &str) -> Option<(String, String)> {
    let at = text.rfind('@')?;
    let suffix = text[at + 1..].trim();
    let number = match suffix.strip_prefix('+') {
        Some(_) => suffix.to_owned(),
        None => format!("+86{suffix}"),
    };
    is_global(&number).then(|| (number, text[..at].trim_end().to_owned()))
}

/// Pushes a Block event and reads the answer: the party to route to, if the customer said
/// `vNumberRoute` with a valid `message.called`.
async fn ask(sim: &Sim, config: &SimAppConfig, event: SmsEvent) -> Option<String> {
    let url = config.sms_url.as_ref()?;
    let event = SmsEvent {
        notification_mode: Some(BLOCK.to_owned()),
        send_result: Some(0),
        ..event
    };
    let body = notification(config, event);
    let answer = sim
        .pushes
        .block(&sim.clock, config, url, PushKind::Sms, &body)
        .await?;
    let answer: SmsBlockAnswer = serde_json::from_str(&answer).ok()?;
    let action = answer.actions.into_iter().next()?;
    if action.operation != SmsOperation::VNumberRoute {
        return None;
    }
    action.message?.called.filter(|n| is_global(n))
}

fn notification(config: &SimAppConfig, sms_event: SmsEvent) -> SmsNotification {
    SmsNotification {
        app_key: config.app_key.clone(),
        sms_event,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ax_texts_address_b_with_a_trailing_at_number() {
        assert_eq!(
            addressed("see you at 5 @13800000002"),
            Some(("+8613800000002".into(), "see you at 5".into()))
        );
        assert_eq!(
            addressed("hi@+8613800000002 "),
            Some(("+8613800000002".into(), "hi".into()))
        );
        assert_eq!(addressed("mail me at a@b"), None);
        assert_eq!(addressed("no address"), None);
    }
}
