//! Execution slots shared fairly between modules.
//!
//! A plain FIFO of slots lets a flood of one bad function hold every slot
//! (endless loops hold one each for a whole deadline), so an honest call
//! waits about a deadline. Here calls wait in one bounded queue per module,
//! and a freed slot goes to the waiting module that has been charged the
//! least slot time (start-time fair queueing, each call charged its
//! module's average hold): modules share slot *time* evenly, so a module
//! whose calls are short is served before one whose calls hold a slot long,
//! and none starves. Fair shares alone still let slow calls fill every slot
//! between two dispatches, so
//! modules are also sorted into two lanes by how long their calls held a
//! slot lately: modules known to be quick may use every slot, while slow or
//! never-seen modules share all but a reserve. The reserve is lent to slow
//! modules only while no quick call has been dispatched for
//! [`QUICK_TRAFFIC_WINDOW`], so a node that only runs slow functions still
//! uses all its slots.
//!
//! A full queue is refused at once with a retry hint rather than queued
//! without bound.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nebula_protocol::ModuleId;
use tokio::sync::oneshot;

/// A module whose calls held a slot this long on average (recent calls
/// weigh most) is slow: a quick call should not wait for it. This bounds
/// how long a quick call may wait for a slot under a flood (the quick lane's
/// calls are all shorter): with 25 ms, memory bombs (~15 ms) stayed quick and
/// normal calls waited behind them (`scripts/hostile-flood`).
pub const SLOW_HOLD: Duration = Duration::from_millis(10);

/// How recently a quick call must have been dispatched for the reserve to
/// be kept for quick calls (`NodeConfig::quick_traffic_window`).
pub const QUICK_TRAFFIC_WINDOW: Duration = Duration::from_secs(2);

/// Weight of the newest hold time in a module's average.
const NEWEST_WEIGHT: f64 = 0.3;

/// Modules whose hold times are remembered; beyond this an arbitrary one is
/// forgotten (it then counts as never seen, which only queues it as slow).
const REMEMBERED_MODULES: usize = 4096;

/// The queue of this module is full: try again after `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overloaded {
    pub queued: usize,
    pub retry_after: Duration,
}

pub struct FairSlots {
    state: Mutex<State>,
}

/// Holding one lets an execution run; dropping it hands the slot on.
pub struct Slot {
    slots: Arc<FairSlots>,
    module: ModuleId,
    slow_lane: bool,
    since: Instant,
    /// What its module was charged for this call (its average hold then),
    /// corrected by the real hold on release.
    expected_us: f64,
    /// False for a slot that never reached its caller (already accounted for).
    armed: bool,
}

/// What [`FairSlots::acquire`] gives: a slot now, or one to wait for (the
/// receiver fails if the slots are closed meanwhile).
pub enum Acquired {
    Now(Slot),
    Queued(oneshot::Receiver<Slot>),
}

struct State {
    total: usize,
    quick_traffic_window: Duration,
    /// `SLOW_HOLD` unless configured, in microseconds.
    slow_hold_us: f64,
    reserve: usize,
    queue_per_module: usize,
    free: usize,
    slow_running: usize,
    waiting: HashMap<ModuleId, VecDeque<oneshot::Sender<Slot>>>,
    /// Modules with waiting calls, oldest first: among modules charged
    /// alike, the one waiting longest is served.
    turns: VecDeque<ModuleId>,
    /// Average hold time per module, in microseconds.
    holds: HashMap<ModuleId, f64>,
    /// Slot time charged per module, in microseconds: the average holds of
    /// its calls, summed from where it stood when it was last served.
    charged: HashMap<ModuleId, f64>,
    /// Where the module served last stood before its call was charged: a
    /// module that was idle is raised to it, so idleness is not saved up
    /// for a burst that would shut the others out.
    virtual_now: f64,
    last_quick_dispatch: Option<Instant>,
    closed: bool,
}

impl FairSlots {
    /// `total` slots; a module may queue `queue_per_module` calls.
    pub fn new(
        total: usize,
        queue_per_module: usize,
        quick_traffic_window: Duration,
        slow_hold: Duration,
    ) -> Arc<Self> {
        let total = total.max(1);
        Arc::new(FairSlots {
            state: Mutex::new(State {
                total,
                quick_traffic_window,
                slow_hold_us: slow_hold.as_micros() as f64,
                // Half the slots, at least one: what slow calls cannot take
                // while quick calls keep coming. Lent to them otherwise, so
                // it costs nothing to a node running only slow functions.
                reserve: (total / 2).max(1),
                queue_per_module: queue_per_module.max(1),
                free: total,
                slow_running: 0,
                waiting: HashMap::new(),
                turns: VecDeque::new(),
                holds: HashMap::new(),
                charged: HashMap::new(),
                virtual_now: 0.0,
                last_quick_dispatch: None,
                closed: false,
            }),
        })
    }

    /// A slot for a call to `module`, now or once it is this module's turn.
    pub fn acquire(self: &Arc<Self>, module: ModuleId) -> Result<Acquired, Overloaded> {
        let mut state = self.state.lock().expect("slots lock");
        if state.closed {
            let (_, never) = oneshot::channel();
            return Ok(Acquired::Queued(never));
        }
        let now = Instant::now();
        let nobody_waiting = !state.waiting.contains_key(&module);
        if nobody_waiting && state.may_start(&module, now) {
            return Ok(Acquired::Now(self.take(&mut state, module, now)));
        }
        let queued = state.waiting.get(&module).map_or(0, VecDeque::len);
        if queued >= state.queue_per_module {
            return Err(Overloaded { queued, retry_after: state.retry_hint(&module, queued) });
        }
        let queue = state.waiting.entry(module).or_default();
        let (sender, receiver) = oneshot::channel();
        queue.push_back(sender);
        if queue.len() == 1 {
            state.turns.push_back(module);
        }
        Ok(Acquired::Queued(receiver))
    }

    /// Calls waiting for a slot, over all modules.
    pub fn queued(&self) -> usize {
        self.state.lock().expect("slots lock").waiting.values().map(VecDeque::len).sum()
    }

    /// Refuses every waiting call (their receivers get `None`) and every later one.
    pub fn close(&self) {
        let mut state = self.state.lock().expect("slots lock");
        state.closed = true;
        state.waiting.clear();
        state.turns.clear();
    }

    fn release(self: &Arc<Self>, module: ModuleId, slow_lane: bool, expected_us: f64, held: Duration) {
        let mut state = self.state.lock().expect("slots lock");
        state.give_back(slow_lane);
        // A quick module turned endless pays for the time it really held.
        state.recharge(&module, held.as_secs_f64() * 1e6 - expected_us);
        state.remember_hold(module, held);
        self.dispatch(&mut state);
    }

    /// A slot for `module`, taken from `state`.
    fn take(self: &Arc<Self>, state: &mut State, module: ModuleId, now: Instant) -> Slot {
        let (slow_lane, expected_us) = state.take(&module, now);
        Slot { slots: self.clone(), module, slow_lane, since: now, expected_us, armed: true }
    }

    /// Hands free slots to waiting calls, each to the module charged least
    /// among those that may start (a full slow lane holds back slow ones).
    fn dispatch(self: &Arc<Self>, state: &mut State) {
        let now = Instant::now();
        while state.free > 0 && !state.closed {
            let next = (state.turns.iter().enumerate())
                .filter(|(_, module)| state.may_start(module, now))
                .map(|(turn, module)| (turn, state.charge_of(module)))
                // The first of equals: the module waiting longest.
                .min_by(|(_, a), (_, b)| a.total_cmp(b));
            let Some((turn, _)) = next else { break };
            let module = state.turns.remove(turn).expect("an index from this queue");
            let Some(queue) = state.waiting.get_mut(&module) else { continue };
            let Some(waiter) = queue.pop_front() else { continue };
            let more = !queue.is_empty();
            if more {
                state.turns.push_back(module);
            } else {
                state.waiting.remove(&module);
            }
            let slot = self.take(state, module, now);
            // A caller that stopped waiting hands the slot straight back
            // (disarmed: its drop would re-enter `release` under this lock).
            if let Err(mut slot) = waiter.send(slot) {
                slot.armed = false;
                state.give_back(slot.slow_lane);
                state.recharge(&module, -slot.expected_us);
            }
        }
    }
}

impl State {
    fn is_quick(&self, module: &ModuleId) -> bool {
        self.holds.get(module).is_some_and(|micros| *micros < self.slow_hold_us)
    }

    fn may_start(&self, module: &ModuleId, now: Instant) -> bool {
        if self.free == 0 || self.closed {
            return false;
        }
        if self.is_quick(module) {
            return true;
        }
        let quick_traffic =
            self.last_quick_dispatch.is_some_and(|at| now.duration_since(at) < self.quick_traffic_window);
        !quick_traffic || self.slow_running < self.total - self.reserve
    }

    /// What `module` was charged, raised to where the others stand if it was idle.
    fn charge_of(&self, module: &ModuleId) -> f64 {
        self.charged.get(module).map_or(self.virtual_now, |charged| charged.max(self.virtual_now))
    }

    /// Adds `micros` (negative: a refund) to what `module` was charged.
    fn recharge(&mut self, module: &ModuleId, micros: f64) {
        if let Some(charged) = self.charged.get_mut(module) {
            *charged += micros;
        }
    }

    /// Takes a slot for `module`; says whether it runs in the slow lane,
    /// and what the module was charged for it.
    fn take(&mut self, module: &ModuleId, now: Instant) -> (bool, f64) {
        self.free -= 1;
        let start = self.charge_of(module);
        self.virtual_now = self.virtual_now.max(start);
        let expected_hold = self.holds.get(module).copied().unwrap_or(self.slow_hold_us);
        self.charged.insert(*module, start + expected_hold);
        let slow_lane = !self.is_quick(module);
        if slow_lane {
            self.slow_running += 1;
        } else {
            self.last_quick_dispatch = Some(now);
        }
        (slow_lane, expected_hold)
    }

    /// Undoes [`State::take`].
    fn give_back(&mut self, slow_lane: bool) {
        self.free += 1;
        if slow_lane {
            self.slow_running -= 1;
        }
    }

    fn remember_hold(&mut self, module: ModuleId, held: Duration) {
        let micros = held.as_micros() as f64;
        let average = match self.holds.get(&module) {
            Some(previous) => previous * (1.0 - NEWEST_WEIGHT) + micros * NEWEST_WEIGHT,
            None => {
                if self.holds.len() >= REMEMBERED_MODULES
                    && let Some(forgotten) = self.holds.keys().next().copied()
                {
                    self.holds.remove(&forgotten);
                    self.charged.remove(&forgotten);
                }
                micros
            }
        };
        self.holds.insert(module, average);
    }

    /// Roughly when a full queue of `module` will have room: its `queued`
    /// calls' worth of average holds spread over the slots, between 100 ms
    /// and 30 s.
    fn retry_hint(&self, module: &ModuleId, queued: usize) -> Duration {
        let hold = self.holds.get(module).copied().unwrap_or(self.slow_hold_us);
        let micros = queued as f64 * hold / self.total as f64;
        Duration::from_micros(micros as u64).clamp(Duration::from_millis(100), Duration::from_secs(30))
    }
}

impl Slot {
    /// Whether this slot was taken in the slow lane (see `slow_lane`).
    pub fn slow_lane(&self) -> bool {
        self.slow_lane
    }

    /// Whether this is the only slot taken, for a module known to be quick:
    /// then the call may run on the thread that asked for it (see
    /// `executions::run`) without keeping another call from a core.
    pub fn quick_and_alone(&self) -> bool {
        !self.slow_lane && {
            let state = self.slots.state.lock().expect("slots lock");
            state.free + 1 == state.total
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.armed {
            self.slots.release(self.module, self.slow_lane, self.expected_us, self.since.elapsed());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(n: u8) -> ModuleId {
        ModuleId::of_bytes(&[n])
    }

    fn now(acquired: Acquired) -> Slot {
        match acquired {
            Acquired::Now(slot) => slot,
            Acquired::Queued(_) => panic!("expected a slot at once"),
        }
    }

    fn queued(acquired: Acquired) -> oneshot::Receiver<Slot> {
        match acquired {
            Acquired::Queued(receiver) => receiver,
            Acquired::Now(_) => panic!("expected to queue"),
        }
    }

    /// Makes `module` known as quick (or slow) by one remembered hold.
    fn teach(slots: &Arc<FairSlots>, module: ModuleId, held: Duration) {
        slots.state.lock().unwrap().remember_hold(module, held);
    }

    #[test]
    fn only_a_quick_module_alone_on_the_node_may_run_in_place() {
        let slots = FairSlots::new(2, 100, QUICK_TRAFFIC_WINDOW, SLOW_HOLD);
        let (quick, slow, unknown) = (module(1), module(2), module(3));
        teach(&slots, quick, Duration::from_millis(1));
        teach(&slots, slow, Duration::from_secs(1));
        let alone = now(slots.acquire(quick).unwrap());
        assert!(alone.quick_and_alone());
        let beside = now(slots.acquire(quick).unwrap());
        assert!(!alone.quick_and_alone() && !beside.quick_and_alone(), "another call holds a slot");
        drop((alone, beside));
        assert!(!now(slots.acquire(slow).unwrap()).quick_and_alone(), "a slow module never runs in place");
        assert!(!now(slots.acquire(unknown).unwrap()).quick_and_alone(), "nor one never seen");
    }

    /// Ends `slot` as if its call had held it for `held` (a test's real holds are ~0).
    fn finish(mut slot: Slot, held: Duration) {
        slot.armed = false;
        slot.slots.release(slot.module, slot.slow_lane, slot.expected_us, held);
    }

    #[test]
    fn modules_charged_alike_take_turns_whatever_their_queues() {
        let ms = Duration::from_millis(1);
        let slots = FairSlots::new(1, 100, QUICK_TRAFFIC_WINDOW, SLOW_HOLD);
        let (flood, honest) = (module(1), module(2));
        teach(&slots, flood, ms);
        teach(&slots, honest, ms);
        let running = now(slots.acquire(flood).unwrap());
        let mut flood_waiting: Vec<_> = (0..5).map(|_| queued(slots.acquire(flood).unwrap())).collect();
        let mut honest_waiting: Vec<_> = (0..2).map(|_| queued(slots.acquire(honest).unwrap())).collect();

        // The flood was charged for its running call: the honest module goes next.
        finish(running, ms);
        let first = honest_waiting[0].try_recv().expect("the module charged least is served");
        finish(first, ms);
        let second = flood_waiting.remove(0).try_recv().expect("then the flood's turn");
        assert!(honest_waiting[1].try_recv().is_err());
        finish(second, ms);
        let third = honest_waiting[1].try_recv();
        assert!(third.is_ok(), "then the honest module's again, ahead of 4 flood calls");
        assert_eq!(slots.queued(), 4);
    }

    #[test]
    fn a_module_with_short_calls_is_served_before_one_whose_calls_hold_slots_long() {
        // Both in the quick lane, one call 8 times longer than the other's.
        let (long_hold, short_hold) = (SLOW_HOLD * 4 / 5, SLOW_HOLD / 10);
        let slots = FairSlots::new(1, 100, QUICK_TRAFFIC_WINDOW, SLOW_HOLD);
        let (long, short) = (module(1), module(2));
        teach(&slots, long, long_hold);
        teach(&slots, short, short_hold);
        let running = now(slots.acquire(long).unwrap());
        let mut long_waiting = queued(slots.acquire(long).unwrap());
        let mut short_waiting: Vec<_> = (0..30).map(|_| queued(slots.acquire(short).unwrap())).collect();
        finish(running, long_hold);
        // Short calls go first until they have had as much slot time as the
        // long call: 8 of them, then the long one, which does not starve.
        for (n, waiting) in short_waiting.iter_mut().enumerate().take(8) {
            let slot = waiting.try_recv().unwrap_or_else(|_| panic!("short call {n} is served first"));
            assert!(long_waiting.try_recv().is_err());
            finish(slot, short_hold);
        }
        assert!(long_waiting.try_recv().is_ok(), "the long call's turn comes after 8 short ones");
    }

    #[test]
    fn a_module_is_charged_for_the_time_it_really_held_a_slot() {
        // Both slow (30 ms), with no quick traffic: the lanes play no part here.
        let usual = Duration::from_millis(30);
        let slots = FairSlots::new(1, 100, QUICK_TRAFFIC_WINDOW, SLOW_HOLD);
        let (turned_endless, honest) = (module(1), module(2));
        teach(&slots, turned_endless, usual);
        teach(&slots, honest, usual);
        // Charged 30 ms when it started, its call ran for a whole second.
        let running = now(slots.acquire(turned_endless).unwrap());
        let mut endless_waiting = queued(slots.acquire(turned_endless).unwrap());
        let mut honest_waiting: Vec<_> = (0..10).map(|_| queued(slots.acquire(honest).unwrap())).collect();
        finish(running, Duration::from_secs(1));
        for (n, waiting) in honest_waiting.iter_mut().enumerate() {
            let slot = waiting.try_recv().unwrap_or_else(|_| panic!("honest call {n} goes first"));
            assert!(endless_waiting.try_recv().is_err());
            finish(slot, usual);
        }
    }

    #[test]
    fn an_idle_module_does_not_save_up_its_share() {
        let slots = FairSlots::new(1, 100, QUICK_TRAFFIC_WINDOW, SLOW_HOLD);
        let (busy, idle) = (module(1), module(2));
        teach(&slots, busy, Duration::from_millis(1));
        let mut state = slots.state.lock().unwrap();
        // The busy module runs alone for 50 calls of 1 ms (charged, never re-measured).
        for _ in 0..50 {
            state.take(&busy, Instant::now());
            state.give_back(false);
        }
        // A module that was idle starts where the busy one stood before its
        // last call: one call ahead of it, not 50.
        assert_eq!(state.charge_of(&busy), 50_000.0);
        assert_eq!(state.charge_of(&idle), 49_000.0);
    }

    #[test]
    fn slow_modules_cannot_take_the_reserve_while_quick_calls_come() {
        let slots = FairSlots::new(4, 100, QUICK_TRAFFIC_WINDOW, SLOW_HOLD);
        let (slow, quick) = (module(1), module(2));
        teach(&slots, slow, Duration::from_secs(1));
        teach(&slots, quick, Duration::from_millis(1));
        drop(now(slots.acquire(quick).unwrap())); // quick traffic is under way

        let held: Vec<_> = (0..2).map(|_| now(slots.acquire(slow).unwrap())).collect();
        let mut third_slow = queued(slots.acquire(slow).unwrap());
        // The reserved half stays for the quick module, again and again.
        for _ in 0..3 {
            let both = [now(slots.acquire(quick).unwrap()), now(slots.acquire(quick).unwrap())];
            drop(both);
        }
        assert!(third_slow.try_recv().is_err());
        drop(held);
        assert!(third_slow.try_recv().is_ok());
    }

    #[test]
    fn never_seen_modules_queue_like_slow_ones() {
        let slots = FairSlots::new(2, 100, QUICK_TRAFFIC_WINDOW, SLOW_HOLD);
        let quick = module(2);
        teach(&slots, quick, Duration::from_millis(1));
        drop(now(slots.acquire(quick).unwrap()));
        let _first = now(slots.acquire(module(7)).unwrap());
        let _waiting = queued(slots.acquire(module(8)).unwrap());
        let _quick = now(slots.acquire(quick).unwrap());
    }

    #[test]
    fn without_quick_traffic_slow_modules_use_every_slot() {
        let slots = FairSlots::new(4, 100, QUICK_TRAFFIC_WINDOW, SLOW_HOLD);
        let slow = module(1);
        teach(&slots, slow, Duration::from_secs(1));
        let held: Vec<_> = (0..4).map(|_| now(slots.acquire(slow).unwrap())).collect();
        assert_eq!(held.len(), 4);
    }

    #[test]
    fn a_full_queue_is_refused_with_a_retry_hint_and_others_still_queue() {
        let slots = FairSlots::new(1, 2, QUICK_TRAFFIC_WINDOW, SLOW_HOLD);
        let (flood, other) = (module(1), module(2));
        let _running = now(slots.acquire(flood).unwrap());
        let _a = queued(slots.acquire(flood).unwrap());
        let _b = queued(slots.acquire(flood).unwrap());
        let refused = slots.acquire(flood).err().expect("third waiter refused");
        assert_eq!(refused.queued, 2);
        assert!(refused.retry_after >= Duration::from_millis(100));
        assert!(slots.acquire(other).is_ok(), "another module's queue is its own");
    }

    #[test]
    fn a_caller_that_stopped_waiting_passes_its_slot_on() {
        let slots = FairSlots::new(1, 10, QUICK_TRAFFIC_WINDOW, SLOW_HOLD);
        let m = module(1);
        let running = now(slots.acquire(m).unwrap());
        let gone = queued(slots.acquire(m).unwrap());
        let mut next = queued(slots.acquire(m).unwrap());
        drop(gone);
        drop(running);
        let slot = next.try_recv().expect("the slot skipped the caller that left");
        drop(slot);
        assert!(matches!(slots.acquire(m).unwrap(), Acquired::Now(_)), "and no slot leaked");
    }

    #[test]
    fn closing_refuses_waiting_and_later_calls() {
        let slots = FairSlots::new(1, 10, QUICK_TRAFFIC_WINDOW, SLOW_HOLD);
        let _running = now(slots.acquire(module(1)).unwrap());
        let mut waiting = queued(slots.acquire(module(1)).unwrap());
        slots.close();
        assert!(waiting.try_recv().is_err());
        assert!(matches!(slots.acquire(module(2)).unwrap(), Acquired::Queued(_)));
    }
}
