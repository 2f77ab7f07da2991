//! The deliverer: one task per deployment (a session-level advisory lock, as the projector takes;
//! the deliverers of other processes stand by) that follows every enabled subscription from its
//! cursor in each ledger it follows. Each round gives a turn to each subscription behind in some
//! ledger, in one of those ledgers (taken in turn), by the ledgers' heads (`Heads`: every
//! followed ledger's read once per `idle_poll_interval`, one statement per
//! `ledgers::BOOKS_PER_STATEMENT` books; in between only those that committed here). Each subscription has at most one delivery in
//! flight, so each ledger's deliveries arrive in its position order, and a failing one holds back
//! the later ones until it succeeds or the subscription is disabled; across subscriptions up to
//! `in_flight_max` run at once. It wakes when a writer of this process commits, when a
//! subscription changes here, when a retry falls due, or every `idle_poll_interval` (for what
//! another process did): never a tight loop. It is a log follower like the projector
//! (`follower`): its session, its wait, its retries after a failure are theirs; the turns of
//! subscriptions are its own.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use sqlx::postgres::PgConnectOptions;
use sqlx::{PgConnection, PgPool};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tracing::{info, warn};
use uuid::Uuid;

use super::guard::{self, Refused};
use super::signing::{self, LEDGER_HEADER, POSITION_HEADER, SIGNATURE_HEADER, SUBSCRIPTION_HEADER};
use super::store::{self, Attempt, Outcome, Subscription};
use super::{after_failure, WebhookConfig};
use crate::event_store::{self, Encode, StoredEvent};
use crate::follower::{self, Commits, Ended, Lock, Woken};
use crate::ledgers::{self, Ledger, LocalCommits};
use crate::Result;
use domain::LedgerName;
/// Events a turn reads ahead of a subscription's cursor at once (an event's JSON is at most a
/// few tens of KiB: this bounds the memory of each delivery in flight).
const READ_AHEAD_EVENTS: i64 = 256;
/// Steps (a delivery, or a page of events skipped) one turn of a subscription takes before
/// giving its slot back, so that the list of subscriptions is read again now and then.
const STEPS_PER_TURN: usize = 100;
/// The least time between two rounds over the subscriptions: under a steady load, a round per
/// interval rather than one per commit of the writer.
const ROUND_INTERVAL_MIN: Duration = Duration::from_millis(20);
/// Idle connections kept per receiver's host.
const IDLE_CONNECTIONS_PER_HOST: usize = 4;
/// Whether receivers may be `https` (reqwest is built with rustls).
pub const HTTPS_SUPPORTED: bool = true;

/// The deliverer's instruments.
#[derive(Default)]
pub struct WebhookMetrics {
    /// Attempts by outcome, in `Outcome::ALL`'s order.
    outcomes: [AtomicU64; 5],
    /// Whether this process's deliverer holds the lock.
    active: AtomicBool,
    /// Per enabled subscription, events after its cursors in the ledgers it follows, as of the
    /// last round.
    lag: Mutex<Vec<(Uuid, i64)>>,
}

impl WebhookMetrics {
    fn count(&self, outcome: Outcome) {
        if let Some(i) = Outcome::ALL.iter().position(|o| *o == outcome) {
            self.outcomes[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn set_lag(&self, subscriptions: &[Subscription], heads: &[(Ledger, i64)]) {
        if let Ok(mut lag) = self.lag.lock() {
            *lag = subscriptions
                .iter()
                .map(|s| {
                    let behind = heads
                        .iter()
                        .filter(|(ledger, _)| s.follows(&ledger.name))
                        .map(|(ledger, head)| (head - s.cursor(&ledger.name)).max(0))
                        .sum();
                    (s.id, behind)
                })
                .collect();
        }
    }
}

/// The webhooks of one process: whether delivery runs here, how to wake and stop it.
#[derive(Clone)]
pub struct Webhooks {
    allow_private: bool,
    metrics: Arc<WebhookMetrics>,
    wake: Arc<Notify>,
    stop: Arc<watch::Sender<bool>>,
    /// The deliverer's task, when this process delivers.
    task: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl Webhooks {
    /// Starts the deliverer. `commits` (the commits of the writers in this process) wakes it as
    /// soon as there are new events.
    pub fn spawn(
        connect: PgConnectOptions,
        pool: PgPool,
        commits: Option<LocalCommits>,
        config: WebhookConfig,
        encode: Encode,
    ) -> Result<Self> {
        let handle = Self::without_delivery(config.allow_private);
        let client = client(&config)?;
        let deliverer = Deliverer {
            connect,
            commits: Commits::of(commits.as_ref(), None),
            wake: handle.wake.clone(),
            stopped: handle.stop.subscribe(),
            context: Arc::new(Context {
                pool,
                client,
                config,
                encode,
                metrics: handle.metrics.clone(),
            }),
        };
        if let Ok(mut task) = handle.task.lock() {
            *task = Some(tokio::spawn(deliverer.run()));
        }
        Ok(handle)
    }

    /// Subscriptions can be managed, but nothing is delivered from this process.
    pub fn without_delivery(allow_private: bool) -> Self {
        Self {
            allow_private,
            metrics: Arc::default(),
            wake: Arc::new(Notify::new()),
            stop: Arc::new(watch::channel(false).0),
            task: Arc::default(),
        }
    }

    /// Whether private addresses are allowed (`--webhook-allow-private`).
    pub fn allow_private(&self) -> bool {
        self.allow_private
    }

    /// A subscription changed: look at the subscriptions again now.
    pub fn changed(&self) {
        self.wake.notify_one();
    }

    /// Stops the deliverer; a delivery in flight is abandoned (its cursor has not moved, so it
    /// is sent again later: at least once).
    pub async fn stop(&self) {
        self.stop.send_replace(true);
        let task = self.task.lock().ok().and_then(|mut task| task.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// The deliverer's series in Prometheus's text format.
    pub fn render(&self, out: &mut String) {
        let m = &self.metrics;
        let name = "ledger_webhook_deliveries_total";
        let _ = writeln!(
            out,
            "# HELP {name} Webhook delivery attempts by outcome.\n# TYPE {name} counter"
        );
        for (outcome, count) in Outcome::ALL.iter().zip(&m.outcomes) {
            let _ = writeln!(
                out,
                "{name}{{outcome=\"{}\"}} {}",
                outcome.as_str(),
                count.load(Ordering::Relaxed)
            );
        }
        let name = "ledger_webhook_lag_events";
        let _ = writeln!(out, "# HELP {name} Events after a subscription's cursors, in the ledgers it follows (on the process that delivers).\n# TYPE {name} gauge");
        if let Ok(lag) = m.lag.lock() {
            for (id, events) in lag.iter() {
                let _ = writeln!(out, "{name}{{subscription=\"{id}\"}} {events}");
            }
        }
        let name = "ledger_webhook_deliverer_active";
        let _ = writeln!(out, "# HELP {name} 1 when this process delivers webhooks (holds the lock).\n# TYPE {name} gauge");
        let _ = writeln!(out, "{name} {}", u8::from(m.active.load(Ordering::Relaxed)));
    }
}

/// The HTTP client of deliveries: names resolved through the guard, no redirects (a receiver
/// could redirect to an internal address), no proxy from the environment, bounded in time.
fn client(config: &WebhookConfig) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver {
            allow_private: config.allow_private,
        }))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(config.request_timeout)
        .connect_timeout(config.request_timeout)
        .pool_max_idle_per_host(IDLE_CONNECTIONS_PER_HOST)
        .user_agent(concat!("ledger-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| crate::Error::Corrupt(format!("the webhook HTTP client: {e}")))
}

/// Resolves a receiver's name and keeps only the addresses the guard allows: the connection goes
/// to one of exactly these, so the name cannot resolve elsewhere between check and connect.
struct GuardedResolver {
    allow_private: bool,
}

/// Every address a name resolved to was refused.
#[derive(Debug, thiserror::Error)]
#[error("refused: {name} resolves to {refused}")]
struct NameRefused {
    name: String,
    refused: Refused,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|a| match guard::check(a.ip(), allow_private) {
                    Ok(()) => true,
                    Err(r) => {
                        refused.get_or_insert(r);
                        false
                    }
                })
                .collect();
            match refused {
                Some(refused) if allowed.is_empty() => Err(Box::new(NameRefused {
                    name: host,
                    refused,
                })
                    as Box<dyn std::error::Error + Send + Sync>),
                _ => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
}

/// What the turns of subscriptions share.
struct Context {
    pool: PgPool,
    client: reqwest::Client,
    config: WebhookConfig,
    encode: Encode,
    metrics: Arc<WebhookMetrics>,
}

struct Deliverer {
    connect: PgConnectOptions,
    /// The commits of every writer in this process.
    commits: Commits,
    wake: Arc<Notify>,
    stopped: watch::Receiver<bool>,
    context: Arc<Context>,
}

impl follower::Follow for Deliverer {
    const WHAT: &'static str = "webhook deliverer";
    const STANDS_BY: bool = true;

    /// Connects and takes the lock, then delivers until an error or the stop.
    async fn follow(&mut self) -> Result<Ended> {
        let session = follower::Session::take(&self.connect, "ledger-webhooks", Lock::WEBHOOKS);
        let Some(mut session) = session.await? else {
            return Ok(Ended::Locked);
        };
        info!("webhook deliverer active");
        self.context.metrics.active.store(true, Ordering::Relaxed);
        let mut turns = Turns::default();
        let result = self.deliver(&mut session.conn, &mut turns).await;
        turns.set.shutdown().await;
        self.context.metrics.active.store(false, Ordering::Relaxed);
        session.release().await;
        result.map(|()| Ended::Done)
    }
}

impl Deliverer {
    async fn run(mut self) {
        let stopped = self.stopped.clone();
        let retry = follower::Retry::every(self.context.config.lock_retry_interval);
        follower::supervise(&mut self, stopped, retry).await;
    }

    /// Rounds over the enabled subscriptions: each that is behind and due gets a turn, while
    /// slots are free.
    async fn deliver(&mut self, conn: &mut PgConnection, turns: &mut Turns) -> Result<()> {
        let ctx = self.context.clone();
        let mut heads = Heads::default();
        while !*self.stopped.borrow() {
            let round = tokio::time::Instant::now();
            // The lock lives as long as this session: a broken one may have lost it. The
            // deliverer reads through the pool, so this is also what keeps the session from
            // idling out (`follower::SESSION_IDLE_MAX`): a round at least every `WAIT_MAX`.
            sqlx::query("SELECT 1").execute(&mut *conn).await?;
            let subscriptions = store::enabled(&ctx.pool).await?;
            let following = !subscriptions.is_empty();
            if following {
                heads
                    .look(&ctx.pool, &subscriptions, ctx.config.idle_poll_interval)
                    .await?;
            }
            let known = &heads.heads;
            ctx.metrics.set_lag(&subscriptions, known);
            let now = Utc::now();
            let mut next_due = None;
            for subscription in subscriptions {
                if turns.busy(subscription.id) {
                    continue;
                }
                let Some(ledger) = turns.next_ledger(&subscription, known) else {
                    continue;
                };
                if subscription.next_attempt_at > now {
                    let due = subscription.next_attempt_at;
                    next_due = Some(next_due.map_or(due, |d: chrono::DateTime<Utc>| d.min(due)));
                    continue;
                }
                if turns.set.len() >= ctx.config.in_flight_max {
                    break;
                }
                turns.start(ctx.clone(), subscription, ledger);
            }
            let due_in = next_due.map(|d| (d - now).to_std().unwrap_or_default());
            self.wait(turns, &mut heads, due_in, following, round).await;
        }
        Ok(())
    }

    /// Waits for something to do: a turn ends, the writer commits (when some subscription
    /// `following` the log would care), a subscription changes, a retry falls due, the poll
    /// interval passes, or the process stops.
    async fn wait(
        &mut self,
        turns: &mut Turns,
        heads: &mut Heads,
        due_in: Option<Duration>,
        following: bool,
        round: tokio::time::Instant,
    ) {
        let poll = self.context.config.idle_poll_interval;
        let until = round + due_in.map_or(poll, |d| d.min(poll)).max(ROUND_INTERVAL_MIN);
        let poll = until.saturating_duration_since(tokio::time::Instant::now());
        // Without a subscription, a commit is nothing to wake for.
        let mut not_following = Commits::None;
        let commits = if following {
            &mut self.commits
        } else {
            &mut not_following
        };
        let wake = &self.wake;
        let woken_by = async {
            tokio::select! {
                _ = wake.notified() => Wake::Changed,
                _ = turns.reap(), if !turns.set.is_empty() => Wake::TurnEnded,
            }
        };
        match follower::wait_for_events(commits, &self.stopped, poll, woken_by).await {
            Woken::Committed(notice) => heads.noticed(notice),
            // A subscription changed: it may follow ledgers whose heads were not read.
            Woken::Also(Wake::Changed) => heads.stale = true,
            Woken::Also(Wake::TurnEnded) | Woken::Polled => {}
            Woken::Stopped => return,
        }
        // Pacing: at most one round per interval; the commits meanwhile are for this round.
        tokio::time::sleep_until(round + ROUND_INTERVAL_MIN).await;
        for notice in self.commits.noticed() {
            heads.noticed(notice);
        }
    }
}

/// What else wakes the deliverer in its wait.
enum Wake {
    /// A subscription changed here.
    Changed,
    /// A turn ended: its slot is free.
    TurnEnded,
}

/// The heads of the ledgers the subscriptions follow (every ledger's when one follows them all),
/// as of the last look. Every one is read at most once per `idle_poll_interval` (for what other
/// processes wrote) or when the subscriptions change; in between, only those of the ledgers
/// that committed in this process: a round under load does not read a thousand books.
#[derive(Default)]
struct Heads {
    heads: Vec<(Ledger, i64)>,
    read_at: Option<tokio::time::Instant>,
    /// The ledgers that committed in this process since the last look.
    committed: HashSet<LedgerName>,
    /// The next look reads every followed ledger's head.
    stale: bool,
}

impl Heads {
    /// A commit of `ledger` in this process; of some ledgers, when `None` (notices were missed).
    fn noticed(&mut self, ledger: Option<LedgerName>) {
        match ledger {
            Some(ledger) => {
                self.committed.insert(ledger);
            }
            None => self.stale = true,
        }
    }

    async fn look(
        &mut self,
        pool: &PgPool,
        subscriptions: &[Subscription],
        every: Duration,
    ) -> Result<()> {
        if self.stale || self.read_at.is_none_or(|at| at.elapsed() >= every) {
            let named: Option<Vec<String>> = subscriptions
                .iter()
                .map(|s| s.ledger.as_ref().map(|l| l.to_string()))
                .collect();
            self.heads = ledgers::heads(pool, named.as_deref()).await?;
            self.read_at = Some(tokio::time::Instant::now());
            self.stale = false;
            self.committed.clear();
            return Ok(());
        }
        if self.committed.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = self.committed.drain().map(|l| l.to_string()).collect();
        for (ledger, head) in ledgers::heads(pool, Some(&names)).await? {
            match self.heads.iter_mut().find(|(l, _)| l.name == ledger.name) {
                Some(known) => known.1 = head,
                None => self.heads.push((ledger, head)),
            }
        }
        Ok(())
    }
}

/// The subscriptions with a turn running, and the ledger of each one's last turn.
#[derive(Default)]
struct Turns {
    set: JoinSet<()>,
    by_task: HashMap<tokio::task::Id, Uuid>,
    last_ledger: HashMap<Uuid, LedgerName>,
}

impl Turns {
    fn busy(&self, id: Uuid) -> bool {
        self.by_task.values().any(|s| *s == id)
    }

    /// The ledger of the subscription's next turn: of those it follows whose head is past its
    /// cursor, the first after its last turn's (in name order, wrapping), so that a busy ledger
    /// does not starve the others.
    fn next_ledger(&self, subscription: &Subscription, heads: &[(Ledger, i64)]) -> Option<Ledger> {
        let behind = heads.iter().filter(|(ledger, head)| {
            subscription.follows(&ledger.name) && *head > subscription.cursor(&ledger.name)
        });
        let last = self.last_ledger.get(&subscription.id);
        let mut first = None;
        for (ledger, _) in behind {
            if last.is_none_or(|last| ledger.name > *last) {
                return Some(ledger.clone());
            }
            first.get_or_insert(ledger);
        }
        first.cloned()
    }

    fn start(&mut self, ctx: Arc<Context>, subscription: Subscription, ledger: Ledger) {
        let id = subscription.id;
        self.last_ledger.insert(id, ledger.name.clone());
        let task = self.set.spawn(turn(ctx, subscription, ledger));
        self.by_task.insert(task.id(), id);
    }

    /// Waits for a turn to end, and forgets it.
    async fn reap(&mut self) {
        let task = match self.set.join_next_with_id().await {
            Some(Ok((task, ()))) => task,
            Some(Err(e)) => {
                warn!(error = %e, "a webhook turn failed");
                e.id()
            }
            None => return,
        };
        self.by_task.remove(&task);
    }
}

/// What one step of a subscription's turn did.
enum Step {
    /// Delivered, or skipped events that do not match: go on.
    Moved,
    /// Nothing after the cursor, a failed attempt (retried later), or the cursor moved elsewhere.
    Stop,
}

/// What a turn follows: a subscription in one ledger, from its cursor there.
struct Following {
    subscription: Subscription,
    ledger: Ledger,
    cursor: i64,
}

/// A subscription's turn in a ledger: steps until it is caught up there, fails, or has taken its
/// share. The events read after its cursor are kept for the next steps of the turn, so that each
/// is read once.
async fn turn(ctx: Arc<Context>, subscription: Subscription, ledger: Ledger) {
    if let Err(e) = store::ensure_cursor(&ctx.pool, subscription.id, &ledger.name).await {
        warn!(subscription = %subscription.id, ledger = %ledger.name, error = %e,
            "webhook delivery step failed");
        return;
    }
    let mut following = Following {
        cursor: subscription.cursor(&ledger.name),
        subscription,
        ledger,
    };
    let mut read_ahead = VecDeque::new();
    for _ in 0..STEPS_PER_TURN {
        match step(&ctx, &mut following, &mut read_ahead).await {
            Ok(Step::Moved) => {}
            Ok(Step::Stop) => return,
            Err(e) => {
                warn!(subscription = %following.subscription.id, ledger = %following.ledger.name,
                    error = %e, "webhook delivery step failed");
                return;
            }
        }
    }
}

/// The events of `ledger`'s log after `after`, at most `limit`: read on a session of the
/// registry's pool, its search path set to the book for this transaction only.
async fn page_of(
    pool: &PgPool,
    ledger: &Ledger,
    after: i64,
    limit: i64,
) -> Result<Vec<StoredEvent>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT set_config('search_path', $1, true)")
        .bind(&ledger.schema)
        .execute(&mut *tx)
        .await?;
    let page = event_store::page(&mut *tx, after, limit).await?;
    tx.commit().await?;
    follower::check_consecutive(after, &page)?;
    Ok(page)
}

/// Skips the events after the cursor that do not match, then delivers the first one that does.
async fn step(
    ctx: &Context,
    following: &mut Following,
    read_ahead: &mut VecDeque<StoredEvent>,
) -> Result<Step> {
    let Following {
        subscription,
        ledger,
        cursor,
    } = following;
    if read_ahead.is_empty() {
        read_ahead.extend(page_of(&ctx.pool, ledger, *cursor, READ_AHEAD_EVENTS).await?);
    }
    let mut skipped_to = None;
    let mut matching = None;
    while let Some(event) = read_ahead.pop_front() {
        if subscription.filter.matches(&event.decode()?) {
            matching = Some(event);
            break;
        }
        skipped_to = Some(event.position);
    }
    if let Some(to) = skipped_to {
        if !store::skip(&ctx.pool, subscription.id, &ledger.name, *cursor, to).await? {
            return Ok(Step::Stop);
        }
        *cursor = to;
    }
    let Some(event) = matching else {
        return Ok(if skipped_to.is_some() {
            Step::Moved
        } else {
            Step::Stop
        });
    };
    let position = event.position;
    let body = (ctx.encode)(&event)?;
    let attempt = send(ctx, subscription, &ledger.name, position, body).await;
    ctx.metrics.count(attempt.outcome);
    if attempt.outcome == Outcome::Delivered {
        if !store::record(&ctx.pool, subscription.id, *cursor, &attempt, None).await? {
            return Ok(Step::Stop);
        }
        *cursor = attempt.position;
        return Ok(Step::Moved);
    }
    let plan = after_failure(
        subscription.consecutive_failures,
        subscription.failing_since,
        attempt.attempted_at,
        &ctx.config,
    );
    if let Some(reason) = &plan.disabled_reason {
        warn!(subscription = %subscription.id, reason, "webhook subscription disabled");
    }
    store::record(&ctx.pool, subscription.id, *cursor, &attempt, Some(&plan)).await?;
    Ok(Step::Stop)
}

/// One attempt: the event's `body` POSTed to the receiver, signed, and what came of it.
async fn send(
    ctx: &Context,
    subscription: &Subscription,
    ledger: &LedgerName,
    position: i64,
    body: Vec<u8>,
) -> Attempt {
    let attempted_at = Utc::now();
    let started = Instant::now();
    let (outcome, status_code, error) = match post(ctx, subscription, ledger, position, body).await
    {
        Ok(status) if status.is_success() => (Outcome::Delivered, Some(status.as_u16()), None),
        Ok(status) => (
            Outcome::Rejected,
            Some(status.as_u16()),
            Some(format!("the receiver answered {status}")),
        ),
        Err((outcome, error)) => (outcome, None, Some(error)),
    };
    Attempt {
        ledger: ledger.clone(),
        position,
        outcome,
        status_code,
        error,
        latency_ms: u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX),
        attempted_at,
    }
}

async fn post(
    ctx: &Context,
    subscription: &Subscription,
    ledger: &LedgerName,
    position: i64,
    body: Vec<u8>,
) -> std::result::Result<reqwest::StatusCode, (Outcome, String)> {
    let target = guard::parse_target(&subscription.url, HTTPS_SUPPORTED)
        .map_err(|e| (Outcome::Refused, format!("refused: {e}")))?;
    // A name is checked as it resolves (`GuardedResolver`); an address here.
    if let Some(ip) = target.literal {
        guard::check(ip, ctx.config.allow_private)
            .map_err(|e| (Outcome::Refused, format!("refused: {e}")))?;
    }
    let signature = signing::header_value(&subscription.secret, Utc::now().timestamp(), &body);
    let response = ctx
        .client
        .post(target.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature)
        .header(LEDGER_HEADER, ledger.as_str())
        .header(POSITION_HEADER, position)
        .header(SUBSCRIPTION_HEADER, subscription.id.to_string())
        .body(body)
        .send()
        .await
        .map_err(|e| classify(&e, ctx.config.request_timeout))?;
    // The answer's body is not read: only its status counts.
    Ok(response.status())
}

/// A failed request as the delivery log tells it.
fn classify(e: &reqwest::Error, timeout: Duration) -> (Outcome, String) {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut chain = Vec::new();
    while let Some(current) = source {
        if let Some(refused) = current.downcast_ref::<NameRefused>() {
            return (Outcome::Refused, refused.to_string());
        }
        chain.push(current.to_string());
        source = current.source();
    }
    if e.is_timeout() {
        return (
            Outcome::Timeout,
            format!("no answer within {} ms", timeout.as_millis()),
        );
    }
    chain.dedup();
    (Outcome::NetworkError, chain.join(": "))
}
