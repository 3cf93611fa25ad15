//! Tests of the KIP-848 member ([`Kip848`]): property tests that run it against a model KIP-848
//! coordinator answering every request it sends by a generated script (success with a target
//! assignment of topic `t` that changes over time, a junk negative epoch, or any code a
//! ConsumerGroupHeartbeat or FindCoordinator can answer; static and dynamic; with and without the
//! application's calls in between) and check its invariants after every input; then focused
//! tests of what they found.
//!
//! Everything is deterministic: time is a fake clock (an `Instant` taken once, moved by hand),
//! and the property tests run from a fixed seed and persist nothing.

use super::*;
use crate::group::core_model::CoreModel;
use proptest::prelude::*;
use proptest::test_runner::{RngSeed, TestCaseError};

const BACKOFF: Duration = Duration::from_millis(100);
const MS: Duration = Duration::from_millis(1);
/// The heartbeat interval the member keeps until the coordinator names one.
const FIRST_INTERVAL: Duration = Duration::from_secs(5);
/// The partitions of `t`.
const PARTITIONS: i32 = 6;
/// How many requests the member may take, once the coordinator answers only successes with a
/// fixed target, to own exactly that target (or be out, after `leave`).
const LIVENESS: usize = 10;
const ASSIGNOR: &str = "uniform";
const INSTANCE: &str = "instance-1";

/// Every code the model coordinator may answer a ConsumerGroupHeartbeat with.
const CODES: [ErrorCode; 13] = [
    ErrorCode::FencedMemberEpoch,
    ErrorCode::UnknownMemberId,
    ErrorCode::NotCoordinator,
    ErrorCode::CoordinatorNotAvailable,
    ErrorCode::CoordinatorLoadInProgress,
    ErrorCode::UnreleasedInstanceId,
    ErrorCode::FencedInstanceId,
    ErrorCode::GroupAuthorizationFailed,
    ErrorCode::UnsupportedAssignor,
    ErrorCode::GroupMaxSizeReached,
    ErrorCode::InvalidRequest,
    ErrorCode::UnknownServerError,
    ErrorCode::RequestTimedOut,
];

/// The codes that end a member when a heartbeat answers them.
const FATAL: [ErrorCode; 5] = [
    ErrorCode::FencedInstanceId,
    ErrorCode::GroupAuthorizationFailed,
    ErrorCode::UnsupportedAssignor,
    ErrorCode::GroupMaxSizeReached,
    ErrorCode::InvalidRequest,
];

/// The codes after which the member finds the coordinator again (as after a lost connection).
const FIND_AGAIN: [ErrorCode; 3] =
    [ErrorCode::NotCoordinator, ErrorCode::CoordinatorNotAvailable, ErrorCode::RequestTimedOut];

fn settings(instance_id: Option<&str>, assignor: Option<&str>) -> Settings {
    Settings {
        instance_id: instance_id.map(str::to_owned),
        assignor: assignor.map(str::to_owned),
        retry_backoff: BACKOFF,
        auto_commit: false,
    }
}

fn tp(partition: i32) -> TopicPartition {
    TopicPartition::new("t", partition)
}

/// Partitions of `t`.
fn t(partitions: &[i32]) -> Vec<TopicPartition> {
    partitions.iter().map(|&p| tp(p)).collect()
}

fn set(partitions: &[i32]) -> BTreeSet<TopicPartition> {
    partitions.iter().map(|&p| tp(p)).collect()
}

/// The partitions of `t` whose bits are set.
fn mask(bits: u8) -> BTreeSet<TopicPartition> {
    (0..PARTITIONS).filter(|p| bits & (1 << p) != 0).map(tp).collect()
}

fn topics(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Every action the machine has queued.
fn drain(m: &mut Kip848) -> Vec<Action> {
    std::iter::from_fn(|| m.next_action()).collect()
}

/// Carries a revocation through as a driver does with nothing to commit and nobody listening:
/// paused, released at once; the Release and Remove actions are taken.
fn revoked(m: &mut Kip848, at: Instant) {
    m.core.pause_for_test();
    m.released(at);
    m.core.take_for_test(|a| matches!(a, Action::Remove(_)));
}

// ---------------------------------------------------------------------------------------------
// Property tests against a model coordinator.

/// What the model coordinator answers a ConsumerGroupHeartbeat.
#[derive(Debug, Clone)]
enum Beat {
    /// Success.
    Ok {
        /// The target assignment changes to these partitions of `t` first (when the member is
        /// subscribed to `t`; else its target is nothing).
        change: Option<u8>,
        /// The target unchanged, send it all the same.
        resend: bool,
        /// The heartbeat interval (zero: none named).
        interval: Duration,
        /// A junk answer: epoch -1, no member id, no assignment, nothing changed at the
        /// coordinator (a negative epoch in a success must be ignored).
        junk: bool,
    },
    Err(Failure),
}

/// What the model coordinator answers the request in flight, whichever it is.
#[derive(Debug, Clone)]
struct Reply {
    heartbeat: Beat,
    find: Result<(), Failure>,
    /// How long the answer takes.
    latency: Duration,
}

/// Something the application does between answers.
#[derive(Debug, Clone)]
enum App {
    /// To `["t"]` (true) or to nothing.
    Subscribe(bool),
    Leave,
    PollExpired,
    PollResumed,
    /// Commit every owned position.
    Commit,
    /// The auto-commit interval came.
    Interval,
    /// Acknowledge the revocation awaited.
    Ack,
}

#[derive(Debug, Clone)]
enum Step {
    /// Answers the request in flight; with none, time passes to the deadline first.
    Reply(Reply),
    /// With nothing in flight, time passes to the deadline (so that what the application does
    /// next may find a request in flight).
    Tick,
    App(App),
    /// Answers the commit in flight (`None`: success), if any.
    Commit(Option<Failure>),
}

fn beat() -> impl Strategy<Value = Beat> {
    let ok = (
        proptest::option::weighted(0.4, 0u8..64),
        proptest::bool::weighted(0.2),
        prop_oneof![Just(0u64), Just(50), Just(300), Just(2_000)].prop_map(Duration::from_millis),
        proptest::bool::weighted(0.08),
    )
        .prop_map(|(change, resend, interval, junk)| Beat::Ok { change, resend, interval, junk });
    let retriable: Vec<ErrorCode> = CODES.iter().copied().filter(|c| !FATAL.contains(c)).collect();
    prop_oneof![
        28 => ok,
        10 => proptest::sample::select(retriable).prop_map(|c| Beat::Err(Failure::Code(c))),
        2 => Just(Beat::Err(Failure::Transport)),
        1 => proptest::sample::select(FATAL.to_vec()).prop_map(|c| Beat::Err(Failure::Code(c))),
    ]
}

fn find() -> impl Strategy<Value = Result<(), Failure>> {
    prop_oneof![
        24 => Just(Ok(())),
        3 => Just(Err(Failure::Transport)),
        3 => Just(Err(Failure::Code(ErrorCode::CoordinatorNotAvailable))),
        1 => Just(Err(Failure::Code(ErrorCode::GroupAuthorizationFailed))),
    ]
}

fn reply() -> impl Strategy<Value = Reply> {
    (beat(), find(), prop_oneof![Just(0u64), Just(1), Just(40), Just(700)].prop_map(Duration::from_millis))
        .prop_map(|(heartbeat, find, latency)| Reply { heartbeat, find, latency })
}

fn app() -> impl Strategy<Value = App> {
    prop_oneof![
        3 => Just(App::Subscribe(true)),
        2 => Just(App::Subscribe(false)),
        1 => Just(App::Leave),
        3 => Just(App::PollExpired),
        3 => Just(App::PollResumed),
        2 => Just(App::Commit),
        2 => Just(App::Interval),
        5 => Just(App::Ack),
    ]
}

fn commit_answer() -> impl Strategy<Value = Option<Failure>> {
    prop_oneof![
        3 => Just(None),
        1 => Just(Some(Failure::Transport)),
        1 => Just(Some(Failure::Code(ErrorCode::FencedMemberEpoch))),
        1 => Just(Some(Failure::Code(ErrorCode::StaleMemberEpoch))),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => reply().prop_map(Step::Reply),
        1 => Just(Step::Tick),
        3 => app().prop_map(Step::App),
        2 => commit_answer().prop_map(Step::Commit),
    ]
}

/// Static or dynamic; a named assignor or the broker's default; auto-commit or not.
fn member() -> impl Strategy<Value = Settings> {
    (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(is_static, named, auto_commit)| Settings {
        auto_commit,
        ..settings(is_static.then_some(INSTANCE), named.then_some(ASSIGNOR))
    })
}

/// The model coordinator's memory of the one member.
#[derive(Debug, Default)]
struct Coordinator {
    next_id: u32,
    /// Every member id it gave.
    ids: BTreeSet<String>,
    /// The member id of the member in the group.
    member: Option<String>,
    /// The member's epoch (0: not in the group).
    epoch: i32,
    /// The group epoch: the highest member epoch given.
    group_epoch: i32,
    /// The target assignment of `t` (the member's, when it subscribes to `t`).
    target: BTreeSet<TopicPartition>,
    /// The assignment the member was last told (`None`: nothing since it joined).
    assigned: Option<BTreeSet<TopicPartition>>,
}

impl Coordinator {
    fn fresh_id(&mut self) -> String {
        self.next_id += 1;
        let id = format!("member-{}", self.next_id);
        self.ids.insert(id.clone());
        id
    }

    /// The member is out of the group (left, fenced, unknown).
    fn drop_member(&mut self) {
        self.member = None;
        self.epoch = 0;
        self.assigned = None;
    }

    /// Answers a ConsumerGroupHeartbeat by `beat`.
    fn heartbeat(
        &mut self,
        member_id: &str,
        epoch: i32,
        topics: Option<&[String]>,
        beat: &Beat,
    ) -> Result<Answer, Failure> {
        match *beat {
            Beat::Err(failure) => {
                if matches!(failure, Failure::Code(ErrorCode::FencedMemberEpoch | ErrorCode::UnknownMemberId)) {
                    self.drop_member();
                }
                Err(failure)
            }
            Beat::Ok { interval, .. } if epoch < 0 => {
                self.drop_member();
                Ok(Answer { member_id: Some(member_id.to_string()), epoch, interval, assignment: None })
            }
            Beat::Ok { interval, junk: true, .. } => {
                Ok(Answer { member_id: None, epoch: -1, interval, assignment: None })
            }
            Beat::Ok { change, resend, interval, junk: false } => {
                if let Some(bits) = change {
                    self.target = mask(bits);
                }
                let id = if member_id.is_empty() { self.fresh_id() } else { member_id.to_string() };
                let subscribed = topics.is_some_and(|topics| topics.iter().any(|t| t == "t"));
                let target = if subscribed { self.target.clone() } else { BTreeSet::new() };
                let assignment = if epoch == 0 || self.assigned.as_ref() != Some(&target) {
                    self.group_epoch += 1;
                    self.epoch = self.group_epoch;
                    self.assigned = Some(target.clone());
                    Some(target)
                } else {
                    resend.then_some(target)
                };
                self.member = Some(id.clone());
                Ok(Answer { member_id: Some(id), epoch: self.epoch, interval, assignment })
            }
        }
    }
}

/// A run of the machine against the model coordinator, and what the test knows of it.
struct Run {
    m: Kip848,
    settings: Settings,
    /// Call `poll_expired` only when the member is in the group (`generation() >= 0`), as the
    /// driver does; otherwise whenever the script says.
    gated: bool,
    start: Instant,
    now: Instant,
    coordinator: Coordinator,
    /// The request sent and not answered yet.
    in_flight: Option<Request>,
    /// The heartbeat in flight is given up (an expiry came after it went, or it is the expiry's
    /// leave): the member drops its answer, whatever it is.
    abandoned: bool,
    /// What the driver would be fetching: Assign adds, Revoke and Lost remove.
    owned: BTreeSet<TopicPartition>,
    /// The last target assignment the member took (`None` since it last lost everything).
    target: Option<BTreeSet<TopicPartition>>,
    /// The subscription.
    topics: BTreeSet<String>,
    /// What the member's id and epoch must be (the epoch 0 when not in the group).
    member_id: String,
    epoch: i32,
    /// The member knows the coordinator (FindCoordinator answered, nothing lost since).
    knows_coordinator: bool,
    /// The heartbeat interval last named.
    interval: Duration,
    /// Fatal or Left, once seen.
    end: Option<Action>,
    leave_asked: bool,
    /// The leave (epoch -1 or -2) that `leave` calls for went.
    leave_sent: bool,
    /// `poll_expired` took effect and `poll_resumed` was not called since.
    expired: bool,
    /// Inside the `poll_expired` call that took effect (its leave may go).
    expiring: bool,
    /// The member id the next join must carry: the same after FENCED_MEMBER_EPOCH, none after
    /// UNKNOWN_MEMBER_ID.
    next_join_id: Option<String>,
    /// The next request must be FindCoordinator (the coordinator was lost).
    must_find: bool,
    /// When a failure was answered after which the next request must wait for the backoff.
    backoff_from: Option<Instant>,
    /// The subscription changed while a heartbeat was in flight: the next goes at once.
    resubscribed: bool,
    /// The earliest application call since the last tick (a deadline it set may be that old).
    app_at: Option<Instant>,
    trace: Vec<String>,
    /// The driver's side of the core: positions, commits, acknowledgements.
    core: CoreModel,
}

impl Run {
    fn new(settings: Settings, target: u8, gated: bool) -> Self {
        let start = Instant::now();
        let core = CoreModel::new(settings.auto_commit);
        let mut m = Kip848::new(settings.clone(), start);
        m.subscribe(topics(&["t"]), start);
        Run {
            m,
            settings,
            gated,
            start,
            now: start,
            coordinator: Coordinator { target: mask(target), ..Coordinator::default() },
            in_flight: None,
            abandoned: false,
            owned: BTreeSet::new(),
            target: None,
            topics: topics(&["t"]),
            member_id: String::new(),
            epoch: 0,
            knows_coordinator: false,
            interval: FIRST_INTERVAL,
            end: None,
            leave_asked: false,
            leave_sent: false,
            expired: false,
            expiring: false,
            next_join_id: None,
            must_find: false,
            backoff_from: None,
            resubscribed: false,
            app_at: None,
            trace: Vec::new(),
            core,
        }
    }

    fn is_static(&self) -> bool {
        self.settings.instance_id.is_some()
    }

    fn log(&mut self, what: String) {
        let at = self.now.duration_since(self.start).as_millis();
        self.trace.push(format!("{at:>6}ms {:?} e{}: {what}", self.m.phase(), self.m.epoch));
    }

    /// A failure, with the run so far.
    fn failed(&self, why: impl std::fmt::Display) -> String {
        let from = self.trace.len().saturating_sub(60);
        format!(
            "{why}\n  settings: {:?}, gated={}\n  trace:\n    {}",
            self.settings,
            self.gated,
            self.trace[from..].join("\n    ")
        )
    }

    /// The request in flight is the member's leave.
    fn leaving(&self) -> bool {
        matches!(self.in_flight, Some(Request::ConsumerHeartbeat { epoch, .. }) if epoch < 0)
    }

    /// Takes every action queued and checks the invariants that hold between inputs; how many.
    fn settle(&mut self) -> Result<usize, String> {
        let mut n = 0;
        while let Some(action) = self.m.next_action() {
            n += 1;
            if n > 16 {
                return Err(self.failed("more than 16 actions from one input"));
            }
            self.process(action)?;
        }
        if self.owned != *self.m.owned() {
            return Err(self.failed(format!("owned {:?}, the machine says {:?}", self.owned, self.m.owned())));
        }
        if self.m.in_flight != self.in_flight.is_some() {
            return Err(self.failed(format!("in flight: {:?}, the machine says {}", self.in_flight, self.m.in_flight)));
        }
        if self.end.is_some() {
            if self.m.deadline().is_some() || self.in_flight.is_some() || !self.owned.is_empty() {
                return Err(self.failed("a deadline, a request or partitions after the end"));
            }
        } else if (self.m.member_id(), self.m.epoch) != (self.member_id.as_str(), self.epoch) {
            return Err(self.failed(format!(
                "the member is {:?} at epoch {}, it should be {:?} at {}",
                self.m.member_id(),
                self.m.epoch,
                self.member_id,
                self.epoch
            )));
        }
        Ok(n)
    }

    fn process(&mut self, action: Action) -> Result<(), String> {
        self.log(format!("{action:?}"));
        if let Some(end) = &self.end {
            return Err(self.failed(format!("{action:?} after {end:?}")));
        }
        match action {
            Action::Send(request) => {
                if let Some(before) = &self.in_flight {
                    return Err(self.failed(format!("{request:?} sent with {before:?} in flight")));
                }
                self.check_request(&request)?;
                self.in_flight = Some(request);
            }
            Action::Revoke(partitions) => {
                if partitions.is_empty() || !partitions.iter().all(|tp| self.owned.remove(tp)) {
                    return Err(self.failed(format!("revoking {partitions:?}, not all owned")));
                }
                // A reconciliation revokes only what its target leaves out (a leave, everything).
                if !self.leave_asked
                    && let Some(target) = &self.target
                    && partitions.iter().any(|tp| target.contains(tp))
                {
                    return Err(self.failed(format!("revoking {partitions:?}, in the target {target:?}")));
                }
                let stamp = self.m.stamp();
                let positions = self.core.revoke(&partitions, stamp.as_ref()).map_err(|e| self.failed(e))?;
                self.m.core_mut().paused(positions, stamp);
            }
            Action::Lost(partitions) => {
                if partitions.is_empty() {
                    return Err(self.failed("losing nothing"));
                }
                self.core.lost(&partitions, &mut self.owned).map_err(|e| self.failed(e))?;
            }
            Action::Commit(_) | Action::Committed { .. } | Action::Release(_) | Action::Remove(_) => {
                let stamp = self.m.stamp();
                if let (Action::Commit(_), Some(s)) = (&action, &stamp)
                    && (s.generation, &s.member_id) != (self.epoch, &self.member_id)
                {
                    return Err(
                        self.failed(format!("a commit as {s:?}; the member is {} at {}", self.member_id, self.epoch))
                    );
                }
                self.core.process(&action, stamp.as_ref()).map_err(|e| self.failed(e))?;
            }
            Action::Assign(partitions) => {
                if partitions.is_empty() || !partitions.iter().all(|tp| self.owned.insert(tp.clone())) {
                    return Err(self.failed(format!("assigning {partitions:?}, some owned already")));
                }
                if self.expired {
                    return Err(self.failed("assigning while expired"));
                }
                // Whatever the target leaves out is revoked before anything is added.
                let Some(target) = &self.target else { return Err(self.failed("assigning with no target")) };
                if !self.owned.is_subset(target) {
                    return Err(
                        self.failed(format!("owning {:?} with a target of {target:?}: not revoked first", self.owned))
                    );
                }
            }
            Action::Fatal(code) => {
                if !self.owned.is_empty() {
                    return Err(self.failed(format!("fatal, owning {:?}", self.owned)));
                }
                self.end = Some(Action::Fatal(code));
            }
            Action::Left => {
                if !self.leave_asked {
                    return Err(self.failed("left, never asked to"));
                }
                if !self.owned.is_empty() {
                    return Err(self.failed(format!("left owning {:?}: neither revoked nor lost", self.owned)));
                }
                self.end = Some(Action::Left);
            }
            Action::Metadata(_) => return Err(self.failed("the KIP-848 member asked for metadata")),
        }
        Ok(())
    }

    /// Checks a request as the machine sends it.
    fn check_request(&mut self, request: &Request) -> Result<(), String> {
        let is_leave = matches!(request, Request::ConsumerHeartbeat { epoch, .. } if *epoch < 0);
        if let Some(from) = self.backoff_from.take()
            && !is_leave
            && self.now < from + BACKOFF
        {
            return Err(self.failed(format!(
                "{request:?} {}ms after a failure that calls for the backoff",
                self.now.duration_since(from).as_millis()
            )));
        }
        if std::mem::take(&mut self.must_find) && *request != Request::FindCoordinator {
            return Err(self.failed(format!("{request:?}: the coordinator was lost, find it first")));
        }
        let Request::ConsumerHeartbeat { member_id, epoch, topics, assignor, owned } = request else {
            if *request == Request::FindCoordinator {
                return Ok(());
            }
            return Err(self.failed(format!("the KIP-848 member sent {request:?}")));
        };
        let epoch = *epoch;
        if !self.knows_coordinator {
            return Err(self.failed("a heartbeat with no coordinator known"));
        }
        if *member_id != self.member_id {
            return Err(self.failed(format!("a heartbeat as {member_id:?}, the member is {:?}", self.member_id)));
        }
        if !member_id.is_empty() && !self.coordinator.ids.contains(member_id) {
            return Err(self.failed(format!("a heartbeat as {member_id:?}, an id never given")));
        }
        if epoch < 0 {
            let expected = if self.is_static() { -2 } else { -1 };
            if epoch != expected || topics.is_some() || owned.is_some() {
                return Err(self.failed(format!("a leave {request:?}: epoch {expected}, no topics, nothing owned")));
            }
            if !self.owned.is_empty() {
                return Err(self.failed(format!("a leave owning {:?}: neither revoked nor lost", self.owned)));
            }
            if (self.epoch <= 0 && !self.expiring) || member_id.is_empty() {
                return Err(self.failed("a leave with no membership"));
            }
            if self.expiring {
                self.abandoned = true;
            } else if self.leave_asked && !self.leave_sent {
                self.leave_sent = true;
            } else {
                return Err(self.failed("a leave neither leave() nor poll_expired() asked for (or a second one)"));
            }
            return Ok(());
        }
        if self.expired {
            return Err(self.failed("a heartbeat while expired"));
        }
        if self.leave_asked {
            return Err(self.failed("a heartbeat after leave() other than the leave"));
        }
        let subscription: Vec<String> = self.topics.iter().cloned().collect();
        let holding: Vec<TopicPartition> = self.owned.iter().cloned().collect();
        if topics.as_ref() != Some(&subscription) || owned.as_ref() != Some(&holding) {
            return Err(self.failed(format!(
                "a heartbeat with topics {topics:?} owning {owned:?}: the subscription is {subscription:?}, owned {holding:?}"
            )));
        }
        if *assignor != self.settings.assignor {
            return Err(self.failed(format!("assignor {assignor:?}, not {:?}", self.settings.assignor)));
        }
        // Epoch 0 only to join (at first, after a fence, an unknown member id, an expiry); else the
        // epoch the coordinator gave.
        if epoch != self.epoch {
            return Err(self.failed(format!("a heartbeat at epoch {epoch}, the member's is {}", self.epoch)));
        }
        if epoch == 0 {
            if let Some(id) = self.next_join_id.take()
                && *member_id != id
            {
                return Err(self.failed(format!("joining as {member_id:?}, not {id:?}")));
            }
        } else if (self.coordinator.member.as_deref(), self.coordinator.epoch) != (Some(member_id.as_str()), epoch) {
            return Err(self.failed(format!(
                "a heartbeat of {member_id:?} at {epoch}: the coordinator has {:?} at {}",
                self.coordinator.member, self.coordinator.epoch
            )));
        }
        self.resubscribed = false;
        Ok(())
    }

    /// The model coordinator answers the request in flight.
    fn answer(&mut self, reply: &Reply) -> Result<(), String> {
        let request = self.in_flight.take().expect("a request in flight");
        self.now += reply.latency;
        let now = self.now;
        let dropped = std::mem::take(&mut self.abandoned);
        let mut fatal = None;
        match request {
            Request::FindCoordinator => {
                let result = reply.find;
                self.log(format!("answer {result:?} to FindCoordinator"));
                match result {
                    Ok(()) => self.knows_coordinator = true,
                    Err(Failure::Code(code @ ErrorCode::GroupAuthorizationFailed)) => fatal = Some(code),
                    Err(_) => self.backoff_from = Some(now),
                }
                self.m.on_coordinator(result, now);
                self.settle()?;
            }
            Request::ConsumerHeartbeat { member_id, epoch, topics, .. } => {
                let result = self.coordinator.heartbeat(&member_id, epoch, topics.as_deref(), &reply.heartbeat);
                self.log(format!("answer {result:?} to epoch {epoch}{}", if dropped { " (dropped)" } else { "" }));
                if !dropped && epoch >= 0 {
                    fatal = self.expect(&member_id, &result);
                }
                let before = self.owned.clone();
                self.m.on_heartbeat(result.clone(), now);
                let n = self.settle()?;
                if self.leave_asked {
                    if epoch < 0 && self.end != Some(Action::Left) {
                        return Err(self.failed("the leave answered, not left"));
                    }
                    if self.end.is_none() && !self.leaving() && !self.core.revoking() {
                        return Err(self.failed("asked to leave, answered: neither left nor leaving"));
                    }
                } else if dropped {
                    // The expiry's leave, or a heartbeat the expiry gave up.
                    let due = (!self.expired).then_some(now);
                    if n != 0 || self.m.deadline() != due {
                        return Err(
                            self.failed(format!("a dropped answer: {n} actions, deadline {:?}", self.m.deadline()))
                        );
                    }
                } else if fatal.is_none() && self.core.revoking() {
                    // A revocation waits for its commit or the application: nothing goes meanwhile,
                    // and nothing of the target is added yet.
                    let within = self.target.as_ref().is_none_or(|t| self.owned.is_subset(t));
                    if self.m.deadline().is_some() || !within {
                        return Err(self.failed(format!(
                            "revoking: deadline {:?}, owning {:?} with a target of {:?}",
                            self.m.deadline(),
                            self.owned,
                            self.target
                        )));
                    }
                } else if fatal.is_none() {
                    let due = match &result {
                        Ok(_) => {
                            if let Some(target) = &self.target
                                && self.owned != *target
                            {
                                return Err(self.failed(format!("owning {:?}, not the target {target:?}", self.owned)));
                            }
                            // Acknowledged at once when anything changed, else after the interval.
                            if before != self.owned || self.resubscribed { now } else { now + self.interval }
                        }
                        Err(Failure::Code(ErrorCode::FencedMemberEpoch | ErrorCode::UnknownMemberId)) => now,
                        Err(_) => now + BACKOFF,
                    };
                    if self.m.deadline() != Some(due) {
                        return Err(self.failed(format!(
                            "the deadline is {:?}, not {}ms",
                            self.m.deadline().map(|d| d.duration_since(self.start).as_millis()),
                            due.duration_since(self.start).as_millis()
                        )));
                    }
                }
            }
            other => return Err(self.failed(format!("{other:?} in flight"))),
        }
        if self.end != fatal.map(Action::Fatal) && (fatal.is_some() || matches!(self.end, Some(Action::Fatal(_)))) {
            return Err(self.failed(format!("expected fatal {fatal:?}, got {:?}", self.end)));
        }
        Ok(())
    }

    /// What a heartbeat's answer the member takes makes of it; the fatal code it must end on.
    fn expect(&mut self, member_id: &str, result: &Result<Answer, Failure>) -> Option<ErrorCode> {
        match result {
            Ok(answer) => {
                if let Some(id) = answer.member_id.as_ref().filter(|id| !id.is_empty()) {
                    self.member_id = id.clone();
                }
                if answer.epoch >= 0 {
                    self.epoch = answer.epoch;
                }
                if !answer.interval.is_zero() {
                    self.interval = answer.interval;
                }
                if let Some(target) = &answer.assignment {
                    self.target = Some(target.clone());
                }
            }
            Err(Failure::Code(ErrorCode::FencedMemberEpoch)) => {
                self.next_join_id = Some(member_id.to_string());
                (self.epoch, self.target) = (0, None);
            }
            Err(Failure::Code(ErrorCode::UnknownMemberId)) => {
                self.next_join_id = Some(String::new());
                self.member_id.clear();
                (self.epoch, self.target) = (0, None);
            }
            Err(Failure::Code(code)) if FATAL.contains(code) => return Some(*code),
            Err(failure) => {
                if *failure == Failure::Transport || matches!(failure, Failure::Code(c) if FIND_AGAIN.contains(c)) {
                    self.knows_coordinator = false;
                    self.must_find = true;
                }
                self.backoff_from = Some(self.now);
            }
        }
        None
    }

    /// Nothing in flight: time passes to the deadline and the machine ticks. False when it has
    /// no deadline (which only a member out of the group by the application's doing may have).
    fn wait(&mut self) -> Result<bool, String> {
        let Some(deadline) = self.m.deadline() else {
            if self.end.is_none()
                && (self.leave_asked || (!self.expired && !self.topics.is_empty()))
                && !self.core.waiting()
            {
                return Err(self.failed("nothing in flight, nothing due: stuck"));
            }
            return Ok(false);
        };
        // A deadline in the past is for at once; older than the backoff it is stale (unless an
        // application call made while a request was in flight set it).
        let floor = self.now.checked_sub(BACKOFF).unwrap_or(self.start);
        let floor = self.app_at.map_or(floor, |at| at.min(floor));
        if deadline < floor {
            return Err(
                self.failed(format!("a deadline {}ms in the past", self.now.duration_since(deadline).as_millis()))
            );
        }
        self.now = self.now.max(deadline);
        self.app_at = None;
        self.log("tick".into());
        self.m.tick(self.now);
        if self.settle()? == 0 && self.m.deadline().is_some_and(|d| d <= self.now) {
            return Err(self.failed("a tick at the deadline did nothing and left it due: a busy loop"));
        }
        Ok(true)
    }

    /// The application calls the machine (as the driver does: between answers, with the action
    /// queue empty).
    fn app(&mut self, call: &App) -> Result<(), String> {
        self.log(format!("app {call:?}"));
        self.backoff_from = None;
        self.app_at.get_or_insert(self.now);
        let now = self.now;
        match call {
            App::Subscribe(to_t) => {
                let new = if *to_t { topics(&["t"]) } else { BTreeSet::new() };
                if new != self.topics && matches!(self.in_flight, Some(Request::ConsumerHeartbeat { .. })) {
                    self.resubscribed = true;
                }
                self.topics = new.clone();
                self.m.subscribe(new, now);
                self.settle()?;
            }
            App::Leave => {
                let was_out = self.end.is_some();
                self.leave_asked = true;
                self.m.leave(now);
                self.settle()?;
                if !was_out && self.in_flight.is_none() && self.end != Some(Action::Left) && !self.core.revoking() {
                    return Err(self.failed("leave() with nothing in flight: neither left nor leaving"));
                }
            }
            App::PollExpired => {
                if self.gated && self.m.generation() < 0 {
                    return Ok(());
                }
                let takes = self.end.is_none() && !self.leave_asked && !self.expired && self.epoch > 0;
                if takes {
                    self.expired = true;
                    self.expiring = true;
                    self.abandoned = matches!(self.in_flight, Some(Request::ConsumerHeartbeat { .. }));
                    (self.epoch, self.target, self.next_join_id, self.resubscribed) = (0, None, None, false);
                }
                let idle = self.in_flight.is_none();
                self.m.poll_expired(now);
                let settled = self.settle();
                self.expiring = false;
                settled?;
                if takes {
                    let leave_due = idle && self.knows_coordinator;
                    if leave_due != self.leaving() || self.m.deadline().is_some() {
                        return Err(self.failed(format!(
                            "an expiry: a leave in flight {}, deadline {:?}",
                            self.leaving(),
                            self.m.deadline()
                        )));
                    }
                }
            }
            App::PollResumed => {
                let resumes = self.expired && self.end.is_none();
                self.expired = false;
                self.m.poll_resumed(now);
                self.settle()?;
                if resumes && self.in_flight.is_none() && self.m.deadline() != Some(now) {
                    return Err(self.failed(format!("resumed: the deadline is {:?}, not now", self.m.deadline())));
                }
            }
            App::Commit => {
                let (id, offsets) = self.core.user_commit(&self.owned);
                let stamp = self.m.stamp();
                self.m.core_mut().commit(id, offsets, stamp);
                self.settle()?;
            }
            App::Interval => {
                let positions = self.core.interval(&self.owned);
                let stamp = self.m.stamp();
                self.m.core_mut().interval(positions, stamp);
                self.settle()?;
            }
            App::Ack => {
                if self.core.ack() {
                    self.m.released(now);
                    self.settle()?;
                    // Reconciled: the new owned set is acknowledged at once.
                    if self.m.phase() == Phase::Stable && self.in_flight.is_none() {
                        if let Some(target) = &self.target
                            && self.owned != *target
                        {
                            return Err(self.failed(format!("released: owning {:?}, not {target:?}", self.owned)));
                        }
                        if self.m.deadline() != Some(now) {
                            return Err(
                                self.failed(format!("released: the deadline is {:?}, not now", self.m.deadline()))
                            );
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Runs `script`, then answers only successes with `target` fixed: the member must own exactly
    /// the target (or be out, if asked to leave, or fatal) within [`LIVENESS`] requests.
    fn run(mut self, script: &[Step], target: u8) -> Result<(), String> {
        self.settle()?;
        let mut steps = script.iter().peekable();
        let mut guard = 0;
        while let Some(step) = steps.peek() {
            guard += 1;
            if guard > 100 * (script.len() + 1) {
                return Err(self.failed("the script does not advance"));
            }
            if self.end.is_some() {
                break;
            }
            match step {
                Step::App(call) => {
                    self.app(call)?;
                    steps.next();
                }
                Step::Tick => {
                    if self.in_flight.is_none() {
                        self.wait()?;
                    }
                    steps.next();
                }
                Step::Reply(reply) => {
                    self.core.read(&self.owned);
                    if self.in_flight.is_some() {
                        self.answer(reply)?;
                        steps.next();
                    } else if !self.wait()? {
                        steps.next();
                    }
                }
                Step::Commit(failure) => {
                    self.commit_answer(*failure)?;
                    steps.next();
                }
            }
        }
        self.log("the script is over".into());
        if self.end.is_none() {
            if self.expired {
                self.app(&App::PollResumed)?;
            }
            if self.topics != topics(&["t"]) {
                self.app(&App::Subscribe(true))?;
            }
        }
        let success = Reply {
            heartbeat: Beat::Ok {
                change: Some(target),
                resend: false,
                interval: Duration::from_millis(300),
                junk: false,
            },
            find: Ok(()),
            latency: MS,
        };
        let goal = mask(target);
        let mut answered = 0;
        loop {
            if self.end.is_some() {
                return self.after_the_end();
            }
            // What the core waits for comes at once.
            if self.core.awaiting_ack() {
                self.app(&App::Ack)?;
                continue;
            }
            if self.commit_answer(None)? {
                continue;
            }
            if !self.leave_asked
                && self.core.idle()
                && self.owned == goal
                && self.coordinator.assigned.as_ref() == Some(&goal)
                && matches!(&self.in_flight, Some(Request::ConsumerHeartbeat { epoch, owned: Some(o), .. })
                    if *epoch > 0 && o.iter().cloned().collect::<BTreeSet<_>>() == goal)
            {
                return Ok(());
            }
            if answered == LIVENESS {
                return Err(self.failed(format!("not owning {goal:?} after {LIVENESS} successes")));
            }
            if self.in_flight.is_some() {
                self.answer(&success)?;
                answered += 1;
            } else if !self.wait()? {
                return Err(self.failed("nothing due, not reconciled"));
            }
        }
    }

    /// The coordinator answers the commit in flight, if any (true when one was).
    fn commit_answer(&mut self, failure: Option<Failure>) -> Result<bool, String> {
        let Some(result) = self.core.answer(failure, &self.owned) else { return Ok(false) };
        self.log(format!("commit answered {failure:?}"));
        let stamp = self.m.stamp();
        self.m.core_mut().on_commit(result, stamp);
        self.settle()?;
        Ok(true)
    }

    /// After Fatal or Left nothing the application or a stray answer does brings anything.
    fn after_the_end(&mut self) -> Result<(), String> {
        let later = self.now + Duration::from_secs(60);
        self.m.tick(later);
        self.m.subscribe(topics(&["t", "v"]), later);
        self.m.leave(later);
        self.m.poll_expired(later);
        self.m.poll_resumed(later);
        self.m.on_coordinator(Ok(()), later);
        let stray = Answer { member_id: Some("x".into()), epoch: 9, interval: MS, assignment: Some(set(&[0])) };
        self.m.on_heartbeat(Ok(stray), later);
        self.m.tick(later);
        match self.m.next_action() {
            None if self.m.deadline().is_none() && self.m.owned().is_empty() => Ok(()),
            action => Err(self.failed(format!("after the end: {action:?}, deadline {:?}", self.m.deadline()))),
        }
    }
}

/// Runs `script` from a target of `first`, then has the member reconcile to `last`.
fn run(settings: Settings, first: u8, script: &[Step], last: u8, gated: bool) -> Result<(), TestCaseError> {
    Run::new(settings, first, gated).run(script, last).map_err(TestCaseError::fail)
}

#[test]
fn the_model_runs_a_quiet_group_for_every_kind_of_member() {
    for instance in [None, Some(INSTANCE)] {
        for assignor in [None, Some(ASSIGNOR)] {
            for (first, last) in [(0, 0), (0b1, 0b1), (0b11_1111, 0b10_0110), (0b1_1000, 0)] {
                run(settings(instance, assignor), first, &[], last, true).unwrap();
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2048,
        rng_seed: RngSeed::Fixed(0x6b72_6162_0848_0848),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// The coordinator answers by the script; the member only reacts.
    #[test]
    fn against_a_model_coordinator(
        settings in member(),
        first in 0u8..64,
        last in 0u8..64,
        script in proptest::collection::vec(reply().prop_map(Step::Reply), 0..80),
    ) {
        run(settings, first, &script, last, true)?;
    }

    /// The same, with the application subscribing, leaving, and not polling in between
    /// (`poll_expired` as the driver calls it: only for a member in the group).
    #[test]
    fn against_a_model_coordinator_with_the_application(
        settings in member(),
        first in 0u8..64,
        last in 0u8..64,
        script in proptest::collection::vec(step(), 0..80),
    ) {
        run(settings, first, &script, last, true)?;
    }

    /// The same, with `poll_expired` called whatever the member's phase.
    #[test]
    fn against_a_model_coordinator_with_expiries_at_any_time(
        settings in member(),
        first in 0u8..64,
        last in 0u8..64,
        script in proptest::collection::vec(step(), 0..80),
    ) {
        run(settings, first, &script, last, false)?;
    }
}

// ---------------------------------------------------------------------------------------------
// What the properties found, one by one.

/// The one request `actions` hold, and nothing else.
fn only_send(actions: Vec<Action>) -> Request {
    match <[Action; 1]>::try_from(actions) {
        Ok([Action::Send(request)]) => request,
        other => panic!("expected exactly one request, got {other:?}"),
    }
}

/// A successful answer as `m-1` at `epoch` (interval 1 s).
fn ok(epoch: i32, assignment: Option<&[i32]>) -> Result<Answer, Failure> {
    Ok(Answer {
        member_id: Some("m-1".into()),
        epoch,
        interval: Duration::from_secs(1),
        assignment: assignment.map(set),
    })
}

/// A member subscribed to `t`, joined as `m-1` at epoch 1 owning `parts`, its acknowledging
/// heartbeat (if any) answered: nothing in flight, the next heartbeat due in 1 s.
fn stable(settings: Settings, parts: &[i32], now: Instant) -> Kip848 {
    let mut m = Kip848::new(settings, now);
    m.subscribe(topics(&["t"]), now);
    m.tick(now);
    assert_eq!(only_send(drain(&mut m)), Request::FindCoordinator);
    m.on_coordinator(Ok(()), now);
    m.tick(now);
    assert!(matches!(only_send(drain(&mut m)), Request::ConsumerHeartbeat { epoch: 0, .. }));
    m.on_heartbeat(ok(1, Some(parts)), now);
    if !parts.is_empty() {
        assert_eq!(drain(&mut m), vec![Action::Assign(t(parts))]);
        m.tick(now);
        assert!(matches!(only_send(drain(&mut m)), Request::ConsumerHeartbeat { epoch: 1, .. }));
        m.on_heartbeat(ok(1, None), now);
    }
    assert_eq!((drain(&mut m), m.deadline()), (vec![], Some(now + Duration::from_secs(1))));
    m
}

/// A heartbeat goes at `at`; its epoch, topics and owned partitions.
fn beat_at(m: &mut Kip848, at: Instant) -> (i32, Option<Vec<String>>, Option<Vec<TopicPartition>>) {
    m.tick(at);
    match only_send(drain(m)) {
        Request::ConsumerHeartbeat { epoch, topics, owned, .. } => (epoch, topics, owned),
        other => panic!("expected a heartbeat, got {other:?}"),
    }
}

#[test]
fn a_leave_while_the_expiry_leave_is_in_flight_ends_the_member_once_it_is_answered() {
    let now = Instant::now();
    let mut m = stable(settings(None, None), &[0], now);
    m.poll_expired(now);
    let actions = drain(&mut m);
    assert_eq!(actions[0], Action::Lost(t(&[0])));
    assert!(matches!(&actions[1..], [Action::Send(Request::ConsumerHeartbeat { epoch: -1, .. })]));
    m.leave(now);
    assert_eq!(drain(&mut m), vec![], "the expiry's leave is in flight");
    m.on_heartbeat(ok(-1, None), now);
    // It used to drop the answer as an expiry's and wait, with no deadline, for a poll.
    assert_eq!((drain(&mut m), m.phase(), m.deadline()), (vec![Action::Left], Phase::Done, None));
}

#[test]
fn a_leave_during_a_reconciliation_revokes_what_the_target_kept_before_leaving() {
    let now = Instant::now();
    let at = now + Duration::from_secs(1);
    let mut m = stable(settings(None, None), &[0, 1], now);
    beat_at(&mut m, at);
    m.leave(at);
    m.on_heartbeat(ok(2, Some(&[1, 2])), at);
    assert_eq!(drain(&mut m), vec![Action::Revoke(t(&[0]))]);
    revoked(&mut m, at);
    // It used to send the leave at once, still owning t-1, and end so (never revoked).
    assert_eq!(drain(&mut m), vec![Action::Revoke(t(&[1]))], "what the target kept, and nothing of t-2");
    revoked(&mut m, at);
    let request = only_send(drain(&mut m));
    assert!(matches!(request, Request::ConsumerHeartbeat { epoch: -1, topics: None, owned: None, .. }), "{request:?}");
    m.on_heartbeat(ok(-1, None), at);
    assert_eq!((drain(&mut m), m.owned().is_empty()), (vec![Action::Left], true));
}

#[test]
fn nothing_brings_a_member_back_after_an_expiry_then_the_end() {
    let now = Instant::now();
    // Left while expired.
    let mut m = stable(settings(None, None), &[], now);
    m.poll_expired(now);
    assert!(matches!(only_send(drain(&mut m)), Request::ConsumerHeartbeat { epoch: -1, .. }));
    m.on_heartbeat(ok(-1, None), now);
    m.leave(now);
    assert_eq!(drain(&mut m), vec![Action::Left]);
    m.poll_resumed(now);
    m.tick(now);
    // It used to come back to life, unjoined, and end a second time.
    assert_eq!((drain(&mut m), m.phase(), m.deadline()), (vec![], Phase::Done, None));

    // Fatal while expired (its coordinator lost, found again at a subscription change).
    let mut m = stable(settings(Some(INSTANCE), None), &[], now);
    beat_at(&mut m, now + Duration::from_secs(1));
    let now = now + Duration::from_secs(1);
    m.on_heartbeat(Err(Failure::Code(ErrorCode::NotCoordinator)), now);
    m.poll_expired(now);
    assert_eq!(drain(&mut m), vec![], "no coordinator to leave");
    m.subscribe(topics(&["t", "u"]), now);
    m.tick(now);
    assert_eq!(only_send(drain(&mut m)), Request::FindCoordinator);
    m.on_coordinator(Err(Failure::Code(ErrorCode::GroupAuthorizationFailed)), now);
    assert_eq!(drain(&mut m), vec![Action::Fatal(ErrorCode::GroupAuthorizationFailed)]);
    m.poll_resumed(now);
    m.tick(now);
    assert_eq!((drain(&mut m), m.phase(), m.deadline()), (vec![], Phase::Done, None));
}

#[test]
fn an_expiry_while_finding_the_coordinator_still_takes_its_answer() {
    let now = Instant::now();
    let at = now + Duration::from_secs(1);
    let mut m = stable(settings(None, None), &[0], now);
    beat_at(&mut m, at);
    m.on_heartbeat(Err(Failure::Transport), at);
    let at = at + BACKOFF;
    m.tick(at);
    assert_eq!(only_send(drain(&mut m)), Request::FindCoordinator);
    m.poll_expired(at);
    assert_eq!(drain(&mut m), vec![Action::Lost(t(&[0]))], "no coordinator to leave");
    m.on_coordinator(Ok(()), at);
    // It used to ignore the answer (no longer finding) and wait for it forever.
    assert!(!m.in_flight, "FindCoordinator answered");
    assert_eq!(drain(&mut m), vec![]);
    m.tick(at);
    assert_eq!((drain(&mut m), m.deadline()), (vec![], None), "out until polled");
    m.poll_resumed(at);
    assert_eq!(beat_at(&mut m, at), (0, Some(vec!["t".to_string()]), Some(vec![])));
}

#[test]
fn a_poll_resumed_while_finding_the_coordinator_still_takes_its_answer() {
    let now = Instant::now();
    let at = now + Duration::from_secs(1);
    let mut m = stable(settings(None, None), &[0], now);
    beat_at(&mut m, at);
    m.on_heartbeat(Err(Failure::Code(ErrorCode::NotCoordinator)), at);
    m.poll_expired(at);
    assert_eq!(drain(&mut m), vec![Action::Lost(t(&[0]))]);
    // A new subscription has it find the coordinator while expired.
    m.subscribe(topics(&["t", "u"]), at);
    m.tick(at);
    assert_eq!(only_send(drain(&mut m)), Request::FindCoordinator);
    m.poll_resumed(at);
    assert_eq!(drain(&mut m), vec![]);
    m.on_coordinator(Ok(()), at);
    assert!(!m.in_flight, "FindCoordinator answered");
    assert_eq!(beat_at(&mut m, at), (0, Some(vec!["t".to_string(), "u".to_string()]), Some(vec![])));
}

#[test]
fn a_subscription_changed_while_a_heartbeat_is_in_flight_goes_at_once_after_the_answer() {
    let now = Instant::now();
    let at = now + Duration::from_secs(1);
    let mut m = stable(settings(None, None), &[0], now);
    beat_at(&mut m, at);
    m.subscribe(topics(&["t", "u"]), at);
    assert_eq!(m.deadline(), None, "one request at a time");
    let answered = at + 40 * MS;
    m.on_heartbeat(ok(1, None), answered);
    // It used to wait the whole interval (1 s) before telling the coordinator.
    assert_eq!(m.deadline(), Some(answered));
    let (epoch, topics, _) = beat_at(&mut m, answered);
    assert_eq!((epoch, topics), (1, Some(vec!["t".to_string(), "u".to_string()])));
    m.on_heartbeat(ok(1, None), answered);
    assert_eq!(m.deadline(), Some(answered + Duration::from_secs(1)), "then the interval again");
}

#[test]
fn a_negative_epoch_in_a_successful_answer_is_ignored() {
    let now = Instant::now();
    let at = now + Duration::from_secs(1);
    let mut m = stable(settings(None, None), &[0], now);
    beat_at(&mut m, at);
    m.on_heartbeat(Ok(Answer { member_id: None, epoch: -1, interval: Duration::ZERO, assignment: None }), at);
    assert_eq!((drain(&mut m), m.generation(), m.member_id()), (vec![], 1, "m-1"));
    assert_eq!(m.deadline(), Some(at + Duration::from_secs(1)), "the interval kept");
    let at = at + Duration::from_secs(1);
    assert_eq!(beat_at(&mut m, at), (1, Some(vec!["t".to_string()]), Some(t(&[0]))));
}

#[test]
fn retriable_codes_heartbeat_again_after_the_backoff_with_the_epoch_and_partitions_kept() {
    for code in [ErrorCode::UnreleasedInstanceId, ErrorCode::CoordinatorLoadInProgress, ErrorCode::UnknownServerError] {
        let now = Instant::now();
        let at = now + Duration::from_secs(1);
        let mut m = stable(settings(Some(INSTANCE), None), &[0, 1], now);
        beat_at(&mut m, at);
        m.on_heartbeat(Err(Failure::Code(code)), at);
        assert_eq!((drain(&mut m), m.deadline()), (vec![], Some(at + BACKOFF)), "{code:?}");
        m.tick(at + BACKOFF - MS);
        assert_eq!(drain(&mut m), vec![], "{code:?}");
        assert_eq!(beat_at(&mut m, at + BACKOFF), (1, Some(vec!["t".to_string()]), Some(t(&[0, 1]))), "{code:?}");
    }
}

#[test]
fn a_fence_on_a_first_join_joins_again_at_once_still_with_no_id() {
    let now = Instant::now();
    let mut m = Kip848::new(settings(None, Some(ASSIGNOR)), now);
    m.subscribe(topics(&["t"]), now);
    m.tick(now);
    assert_eq!(only_send(drain(&mut m)), Request::FindCoordinator);
    m.on_coordinator(Ok(()), now);
    assert_eq!(beat_at(&mut m, now).0, 0);
    m.on_heartbeat(Err(Failure::Code(ErrorCode::FencedMemberEpoch)), now);
    assert_eq!((drain(&mut m), m.deadline()), (vec![], Some(now)));
    m.tick(now);
    match only_send(drain(&mut m)) {
        Request::ConsumerHeartbeat { member_id, epoch: 0, assignor, .. } => {
            assert_eq!((member_id.as_str(), assignor.as_deref()), ("", Some(ASSIGNOR)));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_expired_static_member_leaves_with_epoch_minus_two_and_rejoins_with_its_id() {
    let now = Instant::now();
    let mut m = stable(settings(Some(INSTANCE), None), &[0], now);
    m.poll_expired(now);
    let actions = drain(&mut m);
    assert_eq!(actions[0], Action::Lost(t(&[0])));
    match &actions[1..] {
        [Action::Send(Request::ConsumerHeartbeat { member_id, epoch: -2, topics: None, owned: None, .. })] => {
            assert_eq!(member_id, "m-1");
        }
        other => panic!("{other:?}"),
    }
    m.on_heartbeat(ok(-2, None), now);
    m.poll_resumed(now);
    m.tick(now);
    assert!(
        matches!(only_send(drain(&mut m)), Request::ConsumerHeartbeat { member_id, epoch: 0, .. } if member_id == "m-1")
    );
}

#[test]
fn find_coordinator_failures_retry_after_the_backoff_and_group_authorization_is_fatal() {
    let now = Instant::now();
    let mut m = Kip848::new(settings(None, None), now);
    m.subscribe(topics(&["t"]), now);
    for failure in [Failure::Transport, Failure::Code(ErrorCode::CoordinatorNotAvailable)] {
        m.tick(m.deadline().expect("due"));
        assert_eq!(only_send(drain(&mut m)), Request::FindCoordinator);
        let at = now;
        m.on_coordinator(Err(failure), at);
        assert_eq!((drain(&mut m), m.deadline()), (vec![], Some(at + BACKOFF)));
    }
    m.tick(now + BACKOFF);
    assert_eq!(only_send(drain(&mut m)), Request::FindCoordinator);
    m.on_coordinator(Err(Failure::Code(ErrorCode::GroupAuthorizationFailed)), now + BACKOFF);
    assert_eq!(
        (drain(&mut m), m.phase(), m.deadline()),
        (vec![Action::Fatal(ErrorCode::GroupAuthorizationFailed)], Phase::Done, None)
    );
}
