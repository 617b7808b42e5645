//! The lifecycle's calls to the platform, over the typed client in `crate::upstream`: one
//! bind, one lookup, one listing, one modify and one unbind per mode, each with explicit
//! [`CallOpts`].
//! "Not found" on an unbind counts as done.

use std::collections::HashSet;

use crate::platform::Mode;
use crate::platform::options::{CallDirection, CallOptions};
use crate::platform::wire::*;
use crate::store::BindingRecord;
use crate::upstream::{AppClient, CallOpts, ErrorClass, UpstreamError};

mod modify;

use modify::pre_voice;
pub use modify::{Modify, modify};

/// What the platform holds for a binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    pub subscription_id: String,
    pub x: String,
    pub y: Option<String>,
}

impl Bound {
    /// A binding on X alone, without a Y.
    fn on_x(x: String, subscription_id: String) -> Bound {
        Bound {
            subscription_id,
            x,
            y: None,
        }
    }
}

fn lifetime(ttl: u64) -> Option<u64> {
    (ttl > 0).then_some(ttl)
}

/// Binds `rec` on the platform (both steps for AXYB), its calls made with `opts`.
pub async fn bind(
    client: &AppClient,
    rec: &BindingRecord,
    opts: CallOpts,
) -> Result<Bound, UpstreamError> {
    let client = &client.with_opts(opts);
    let user_data = rec.user_data.clone();
    // The options in force, all of which the mode takes (`options::in_force`); unset ones are
    // not sent, so the platform's defaults apply.
    let o = CallOptions::from(rec.call_options.clone());
    let call_direction = o.call_direction.map(CallDirection::wire);
    let max_duration = o.max_call_minutes.map(u64::from);
    match rec.mode {
        Mode::Axb => {
            let req = AxbBindRequest {
                caller_num: rec.party_a.clone(),
                callee_num: rec.party_b.clone().unwrap_or_default(),
                relation_num: Some(rec.x.clone()),
                call_direction,
                duration: lifetime(rec.ttl_seconds),
                record_flag: o.record,
                record_hint_tone: o.record_hint_tone.clone(),
                max_duration,
                last_min_voice: o.last_minute_tone.clone(),
                private_sms: o.private_sms,
                pre_voice: pre_voice(&o),
                user_data,
                ..Default::default()
            };
            let r = client.axb_bind(&req).await?;
            Ok(Bound::on_x(rec.x.clone(), r.subscription_id))
        }
        Mode::Ax => {
            let req = AxBindRequest {
                orig_num: rec.party_a.clone(),
                private_num: Some(rec.x.clone()),
                call_direction,
                record_flag: o.record,
                record_hint_tone: o.record_hint_tone.clone(),
                max_duration,
                last_min_voice: o.last_minute_tone.clone(),
                private_sms: o.private_sms,
                pre_voice: pre_voice(&o),
                user_data,
                ..Default::default()
            };
            let r = client.ax_bind(&req).await?;
            Ok(Bound::on_x(rec.x.clone(), r.subscription_id))
        }
        Mode::Axe => {
            let req = AxeBindRequest {
                bind_num: rec.party_a.clone(),
                virtual_num: Some(rec.x.clone()),
                extend_num: rec.extension.clone(),
                record_flag: o.record,
                record_hint_tone: o.record_hint_tone.clone(),
                callback_tone: o.callback_tone.clone(),
                time_unit: lifetime(rec.ttl_seconds).map(|_| TimeUnit::Minutes),
                bind_expired_time: lifetime(rec.ttl_seconds).map(|s| s / 60),
                user_data,
                ..Default::default()
            };
            let r = client.axe_bind(&req).await?;
            Ok(Bound::on_x(r.virtual_num, r.subscription_id))
        }
        Mode::Axyb => bind_axyb(client, rec, &o).await,
        Mode::X => Ok(Bound::on_x(rec.x.clone(), String::new())),
    }
}

async fn bind_axyb(
    client: &AppClient,
    rec: &BindingRecord,
    o: &CallOptions,
) -> Result<Bound, UpstreamError> {
    let ax = AxybAxRequest {
        orig_num: rec.party_a.clone(),
        area_code: Some(rec.area_code.clone()),
        area_match_mode: Some(AreaMatch::Strict),
        call_direction: o.call_direction.map(CallDirection::wire),
        duration: Some(rec.ttl_seconds),
        record_flag: o.record,
        record_hint_tone: o.record_hint_tone.clone(),
        user_data: rec.user_data.clone(),
        ..Default::default()
    };
    let x = client.axyb_bind_ax(&ax).await?;
    let yb = AxybYbRequest {
        orig_num: rec.party_b.clone().unwrap_or_default(),
        subscription_id: x.subscription_id.clone(),
        ..Default::default()
    };
    match client.axyb_bind_yb(&yb).await {
        Ok(y) => Ok(Bound {
            subscription_id: x.subscription_id,
            x: x.relation_number,
            y: Some(y.relation_number),
        }),
        Err(e) => {
            // Do not leave half a binding behind: take the AX step back.
            let undo = AxybUnbind {
                subscription_id: x.subscription_id.clone(),
                y_num: None,
                b_num: None,
            };
            if let Err(undo_err) = client.axyb_unbind(&undo).await {
                tracing::warn!(error = %undo_err, "could not undo an AXYB AX step after its YB step failed");
            }
            Err(e)
        }
    }
}

/// Looks for `rec` on the platform, after a bind whose outcome is unknown.
///
/// `theirs` are the subscriptions other bindings here already hold: a bind always makes a new
/// subscription, so a platform binding with one of them is never `rec`'s, however alike their
/// parties (an earlier binding of the same parties still RELEASING here, say).
pub async fn find(
    client: &AppClient,
    rec: &BindingRecord,
    candidates: &[String],
    theirs: &HashSet<String>,
    opts: CallOpts,
) -> Result<Option<Bound>, UpstreamError> {
    let client = &client.with_opts(opts);
    let ours = |subscription_id: &str| !theirs.contains(subscription_id);
    let found = match rec.mode {
        Mode::Axb => {
            let q = AxbQuery::RelationNum {
                relation_num: rec.x.clone(),
                caller: Some(rec.party_a.clone()),
                callee: rec.party_b.clone(),
                page_index: None,
                page_size: None,
            };
            not_found_is_none(client.axb_query(&q).await)?.and_then(|r| {
                r.relation_num_list
                    .into_iter()
                    .find(|b| {
                        b.caller_num == rec.party_a
                            && Some(&b.callee_num) == rec.party_b.as_ref()
                            && ours(&b.subscription_id)
                    })
                    .map(|b| Bound {
                        subscription_id: b.subscription_id,
                        x: rec.x.clone(),
                        y: None,
                    })
            })
        }
        Mode::Ax => {
            let q = AxSelector::PrivateNum(rec.x.clone());
            not_found_is_none(client.ax_query(&q).await)?.and_then(|r| {
                r.private_num_list
                    .into_iter()
                    .find(|b| b.orig_num == rec.party_a)
                    .and_then(|b| b.subscription_id)
                    .filter(|id| ours(id))
                    .map(|id| Bound {
                        subscription_id: id,
                        x: rec.x.clone(),
                        y: None,
                    })
            })
        }
        Mode::Axe => {
            let q = AxeSelector::Slot {
                virtual_num: rec.x.clone(),
                extend_num: rec.extension.clone().unwrap_or_default(),
            };
            not_found_is_none(client.axe_query_v1(&q).await)?
                .filter(|b| b.bind_num == rec.party_a && ours(&b.subscription_id))
                .map(|b| Bound {
                    subscription_id: b.subscription_id,
                    x: rec.x.clone(),
                    y: None,
                })
        }
        Mode::Axyb => find_axyb(client, rec, candidates, theirs).await?,
        Mode::X => None,
    };
    Ok(found)
}

/// An AXYB bind whose answer was lost left no X behind: look on each candidate X of its area,
/// passing over the relations of subscriptions in `theirs` (other bindings' here).
async fn find_axyb(
    client: &AppClient,
    rec: &BindingRecord,
    candidates: &[String],
    theirs: &HashSet<String>,
) -> Result<Option<Bound>, UpstreamError> {
    let xs: Vec<String> = if rec.x.is_empty() {
        candidates.to_vec()
    } else {
        vec![rec.x.clone()]
    };
    let mut half = None;
    for x in xs {
        let q = AxybQuery::RelationNum(x.clone());
        let Some(r) = not_found_is_none(client.axyb_query(&q).await)? else {
            continue;
        };
        for b in r
            .xy_relation_num_list
            .into_iter()
            .filter(|b| b.num_a == rec.party_a && !theirs.contains(&b.bind_id))
        {
            if b.num_b.as_ref() == rec.party_b.as_ref() {
                return Ok(Some(Bound {
                    subscription_id: b.bind_id,
                    x,
                    y: b.num_y,
                }));
            }
            if b.num_b.is_none() && half.is_none() {
                half = Some((b.bind_id, x.clone()));
            }
        }
    }
    // The AX step was made but the YB step never was (the daemon died between them, or its
    // answer was lost): finish the bind, or take the AX step back if the YB step is refused.
    let Some((subscription_id, x)) = half else {
        return Ok(None);
    };
    let yb = AxybYbRequest {
        orig_num: rec.party_b.clone().unwrap_or_default(),
        subscription_id: subscription_id.clone(),
        ..Default::default()
    };
    match client.axyb_bind_yb(&yb).await {
        Ok(y) => Ok(Some(Bound {
            subscription_id,
            x,
            y: Some(y.relation_number),
        })),
        Err(e) if e.outcome_unknown() || e.not_sent() => Err(e),
        Err(_) => {
            let undo = AxybUnbind {
                subscription_id,
                y_num: None,
                b_num: None,
            };
            not_found_is_none(client.axyb_unbind(&undo).await)?;
            Ok(None)
        }
    }
}

/// Unbinds `rec` on the platform; a binding the platform no longer has counts as unbound.
///
/// AXYB: with `only_yb`, just this binding's YB relation goes (its AX subscription carries
/// other YB relations that are bindings of their own); otherwise the AX with all its YBs.
pub async fn unbind(
    client: &AppClient,
    rec: &BindingRecord,
    only_yb: bool,
    opts: CallOpts,
) -> Result<(), UpstreamError> {
    let Some(id) = rec.subscription_id.clone() else {
        return Ok(());
    };
    let y = if only_yb { rec.y.clone() } else { None };
    unbind_subscription(client, rec.mode, id, y, opts).await
}

/// Unbinds subscription `id` of a binding in `mode` on the platform; "no such record" counts
/// as unbound. AXYB: with `only_yb_of`, just the YB relation on that Y goes; otherwise the AX
/// with all its YBs.
pub async fn unbind_subscription(
    client: &AppClient,
    mode: Mode,
    id: String,
    only_yb_of: Option<String>,
    opts: CallOpts,
) -> Result<(), UpstreamError> {
    let client = &client.with_opts(opts);
    let result = match mode {
        Mode::Axb => client.axb_unbind(&AxbUnbind::Subscription(id)).await,
        Mode::Ax => client.ax_unbind(&AxSelector::Subscription(id)).await,
        Mode::Axe => client.axe_unbind(&AxeSelector::Subscription(id)).await,
        Mode::Axyb => {
            client
                .axyb_unbind(&AxybUnbind {
                    subscription_id: id,
                    y_num: only_yb_of,
                    b_num: None,
                })
                .await
        }
        Mode::X => Ok(()),
    };
    not_found_is_none(result).map(|_| ())
}

/// Reads a platform "no such record" as an empty answer.
fn not_found_is_none<T>(result: Result<T, UpstreamError>) -> Result<Option<T>, UpstreamError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.class() == ErrorClass::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Asks the platform about `x` as one of the app's numbers (one query on X, the cheapest the
/// mode has). `Ok` when the platform answers for it, bindings or none ("no record" included);
/// its refusal otherwise, e.g. 1012001 / 1011001 when `x` is not the app's. Which queries the
/// platform refuses for a foreign X is not documented (binding-api.md §5): a platform that
/// answers "no record" instead lets the number through, and the first Bind on it retires it.
pub async fn check_number(
    client: &AppClient,
    mode: Mode,
    x: &str,
    opts: CallOpts,
) -> Result<(), UpstreamError> {
    let client = &client.with_opts(opts);
    let asked = match mode {
        Mode::Axb => client.axb_query(&AxbQuery::page(x, 1, 10)).await.map(drop),
        Mode::Ax => {
            let q = AxSelector::PrivateNum(x.to_owned());
            client.ax_query(&q).await.map(drop)
        }
        Mode::Axe => {
            let q = AxeCountQuery::Number(x.to_owned());
            client.axe_binding_count(&q).await.map(drop)
        }
        Mode::Axyb => {
            let q = AxybQuery::RelationNum(x.to_owned());
            client.axyb_query(&q).await.map(drop)
        }
        Mode::X => Ok(()),
    };
    not_found_is_none(asked).map(drop)
}

/// One binding as the platform reports it on an X.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    pub subscription_id: String,
    pub a: String,
    pub b: Option<String>,
    pub extension: Option<String>,
    pub y: Option<String>,
    /// Computed from `subscribeTime + duration` where the platform reports both.
    pub expires_at_ms: Option<i64>,
}

/// Page size of the AXB and AXE listings.
const PAGE: u32 = 100;

fn deadline(subscribe_time: Option<&str>, duration: Option<u64>) -> Option<i64> {
    let seconds = duration.filter(|d| *d > 0)?;
    let start = crate::platform::time::parse_subscribe_time(subscribe_time?)?;
    Some((start.unix_timestamp() + seconds as i64) * 1000)
}

/// Every binding the platform holds on `x` (all pages). "No record" is an empty list.
pub async fn list_on(
    client: &AppClient,
    mode: Mode,
    x: &str,
    opts: CallOpts,
) -> Result<Vec<Remote>, UpstreamError> {
    let client = &client.with_opts(opts);
    let mut out = Vec::new();
    match mode {
        Mode::Axb => {
            let mut page = 1;
            loop {
                let Some(r) =
                    not_found_is_none(client.axb_query(&AxbQuery::page(x, page, PAGE)).await)?
                else {
                    break;
                };
                let n = r.relation_num_list.len();
                out.extend(r.relation_num_list.into_iter().map(|b| Remote {
                    expires_at_ms: deadline(b.subscribe_time.as_deref(), b.duration),
                    subscription_id: b.subscription_id,
                    a: b.caller_num,
                    b: Some(b.callee_num),
                    extension: None,
                    y: None,
                }));
                if n == 0 || out.len() as u64 >= r.total_count {
                    break;
                }
                page += 1;
            }
        }
        Mode::Ax => {
            if let Some(r) =
                not_found_is_none(client.ax_query(&AxSelector::PrivateNum(x.to_owned())).await)?
            {
                out.extend(r.private_num_list.into_iter().filter_map(|b| {
                    Some(Remote {
                        subscription_id: b.subscription_id?,
                        a: b.orig_num,
                        b: None,
                        extension: None,
                        y: None,
                        expires_at_ms: None,
                    })
                }));
            }
        }
        Mode::Axe => {
            let mut cursor = AXE_FIRST_CURSOR.to_owned();
            loop {
                let q = AxeQueryV2::Page {
                    virtual_num: x.to_owned(),
                    cursor: cursor.clone(),
                    limit: Some(PAGE),
                };
                let Some(r) = not_found_is_none(client.axe_query_v2(&q).await)? else {
                    break;
                };
                out.extend(r.bind_info_list.into_iter().map(|b| Remote {
                    subscription_id: b.subscription_id,
                    a: b.bind_num,
                    b: None,
                    extension: Some(b.extend_num),
                    y: None,
                    // The v2 records show bind-time lifetimes only: not a reliable deadline.
                    expires_at_ms: None,
                }));
                match r.next_cursor {
                    Some(next) if !next.is_empty() && next != cursor => cursor = next,
                    _ => break,
                }
            }
        }
        Mode::Axyb => {
            if let Some(r) = not_found_is_none(
                client
                    .axyb_query(&AxybQuery::RelationNum(x.to_owned()))
                    .await,
            )? {
                out.extend(r.xy_relation_num_list.into_iter().map(|b| Remote {
                    expires_at_ms: deadline(b.subscribe_time.as_deref(), b.duration),
                    subscription_id: b.bind_id,
                    a: b.num_a,
                    b: b.num_b,
                    extension: None,
                    y: b.num_y,
                }));
            }
        }
        Mode::X => {}
    }
    Ok(out)
}
