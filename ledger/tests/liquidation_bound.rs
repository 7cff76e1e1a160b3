//! The per-command liquidation bound: a mark price that puts more accounts
//! under maintenance than `MAX_LIQUIDATIONS_PER_COMMAND` liquidates that
//! many (lowest account ids first), says so with `LiquidationsDeferred`,
//! and the next mark price takes the rest; conservation holds through both
//! and the scan (index off) reaches the identical state.
//!
//! Setup: BTC-PERP (`common::market_command`: MM 1% below 10,000
//! notional), marked 100. N = bound + 76 accounts each deposit 10 USDT and
//! buy 1 BTC at 100 from a well-funded short (account 1). At 90.5 each long
//! has equity 10 − 9.5 = 0.5 < MM 0.905: every one is liquidated (its
//! position goes to the insurance fund at the mark, the 0.5 left is the
//! fee), the short stays safe.

mod common;

use common::*;
use tally_ledger::*;

const EXTRA: u64 = 76;

fn applied(h: &mut Harness, command: Command) -> Vec<Event> {
    let (envelope, result) = h.send(command);
    match result.outcome {
        Outcome::Applied { events } => events,
        other => panic!("{:?} not applied: {other:?}", envelope.command),
    }
}

fn longs() -> std::ops::RangeInclusive<u64> {
    let n = u64::from(MAX_LIQUIDATIONS_PER_COMMAND) + EXTRA;
    100..=99 + n
}

fn harness() -> Harness {
    let mut h = perp_harness();
    applied(&mut h, deposit(1, "1000000"));
    applied(&mut h, mark("BTC-PERP", "100"));
    for account in longs() {
        applied(&mut h, Command::CreateAccount(CreateAccount { account }));
        applied(&mut h, deposit(account, "10"));
        applied(&mut h, perp_fill("BTC-PERP", account, 1, "1", "100"));
    }
    h
}

fn liquidated(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Liquidation { account, .. } => Some(*account),
            _ => None,
        })
        .collect()
}

fn deferred(events: &[Event]) -> Option<(u32, u32)> {
    events.iter().find_map(|e| match e {
        Event::LiquidationsDeferred {
            liquidated,
            checked,
            ..
        } => Some((*liquidated, *checked)),
        _ => None,
    })
}

fn assert_conserved(events: &[Event]) {
    for (asset, net) in net_flows(events) {
        assert_eq!(net, Decimal::ZERO, "{asset} not conserved");
    }
}

#[test]
fn a_mark_price_liquidates_at_most_the_bound_and_the_next_mark_takes_the_rest() {
    let mut h = harness();
    let bound = MAX_LIQUIDATIONS_PER_COMMAND as usize;
    let mut scanned = h.ledger.clone();
    scanned.set_liquidation_index(false);

    // The scan twin gets each mark at the same leader time (marks carry it).
    let mut scan = |h: &Harness, id: &str| {
        let result = scanned.apply(&envelope(id, mark("BTC-PERP", "90.5")), h.now_ms + 1);
        let Outcome::Applied { events } = result.outcome else {
            panic!("scan rejected: {:?}", result.outcome)
        };
        liquidated(&events)
    };
    let scanned_first = scan(&h, "scan-1");
    let first = h.ok(mark("BTC-PERP", "90.5"));
    assert_eq!(scanned_first, liquidated(&first), "the scan takes the same");
    let ids = liquidated(&first);
    assert_eq!(ids.len(), bound);
    let expected: Vec<u64> = longs().take(bound).collect();
    assert_eq!(ids, expected, "lowest account ids first");
    assert_eq!(
        deferred(&first),
        Some((MAX_LIQUIDATIONS_PER_COMMAND, 1 + bound as u32))
    );
    assert_conserved(&first);
    // The rest are still open and under maintenance.
    let rest: Vec<u64> = longs().skip(bound).collect();
    for &account in &rest {
        assert_eq!(
            h.pos("BTC-PERP", account).0,
            d("1"),
            "{account} closed early"
        );
    }

    // The same mark again drains the backlog: no deferral this time.
    let scanned_second = scan(&h, "scan-2");
    let second = h.ok(mark("BTC-PERP", "90.5"));
    assert_eq!(
        scanned_second,
        liquidated(&second),
        "the scan takes the same"
    );
    assert_eq!(liquidated(&second), rest);
    assert_eq!(deferred(&second), None);
    assert_conserved(&second);
    for account in longs() {
        assert_eq!(h.pos("BTC-PERP", account).0, Decimal::ZERO);
    }
    assert_eq!(h.pos("BTC-PERP", 1).0, d("-1100"), "the short is untouched");

    // The scan applies the same bound: the same state.
    assert_eq!(business_hash(&scanned), business_hash(&h.ledger));
}

#[test]
fn below_the_bound_a_mark_price_liquidates_everyone_without_deferring() {
    let mut h = harness();
    // Only the last EXTRA longs get under water: give the others margin.
    for account in longs().take(MAX_LIQUIDATIONS_PER_COMMAND as usize) {
        applied(&mut h, deposit(account, "100"));
    }
    let events = h.ok(mark("BTC-PERP", "90.5"));
    assert_eq!(liquidated(&events).len(), EXTRA as usize);
    assert_eq!(deferred(&events), None);
    assert_conserved(&events);
}
