//! The account model with numbers worked out by hand: allocation between
//! wallets and sub-accounts, the transferable amount of a margin wallet
//! with a winning and a losing position, spot pair fills with fees in a
//! third asset and price improvement refunds, partial releases, insurance
//! and fee payouts; and bad input, each refused with its own reason and
//! changing nothing (the harness checks every record).

mod common;

use common::*;
use tally_ledger::*;

const MASTER: AccountId = 1;
const SUB_A: AccountId = 11;
const SUB_B: AccountId = 12;
const OTHER: AccountId = 2;

fn open(account: AccountId, parent: AccountId, collateral: Wallet, can_withdraw: bool) -> Command {
    // Every test account keeps history, so every path (rollbacks too)
    // records it.
    Command::OpenAccount(OpenAccount {
        account,
        parent,
        collateral,
        can_withdraw,
        history: true,
    })
}

fn wallet_transfer(
    from: (AccountId, Wallet),
    to: (AccountId, Wallet),
    asset: &str,
    amount: &str,
) -> Command {
    Command::WalletTransfer(WalletTransfer {
        from: from.0,
        from_wallet: from.1,
        to: to.0,
        to_wallet: to.1,
        asset: asset.into(),
        amount: d(amount),
    })
}

fn wallet_deposit(account: AccountId, wallet: Wallet, asset: &str, amount: &str) -> Command {
    Command::WalletDeposit(WalletDeposit {
        account,
        wallet,
        asset: asset.into(),
        amount: d(amount),
    })
}

fn grant(from: AccountId, to: AccountId, allowed: bool) -> Command {
    Command::SetTransferGrant(SetTransferGrant {
        master: MASTER,
        from,
        to,
        allowed,
    })
}

/// BTC (8), USDT (6); master 1 (margin collateral) with sub-accounts 11
/// and 12 (margin collateral, no withdrawals) and the unrelated top-level
/// account 2.
fn family() -> Harness {
    let mut h = Harness::new();
    for (symbol, scale) in [("BTC", 8), ("USDT", 6)] {
        h.ok(Command::CreateAsset(CreateAsset {
            symbol: symbol.into(),
            scale,
        }));
    }
    h.ok(open(MASTER, 0, Wallet::Margin, true));
    h.ok(open(SUB_A, MASTER, Wallet::Margin, false));
    h.ok(open(SUB_B, MASTER, Wallet::Margin, false));
    h.ok(open(OTHER, 0, Wallet::Spot, true));
    h
}

fn usdt(h: &Harness, account: AccountId, wallet: Wallet) -> Decimal {
    h.balance(Owner::wallet(account, wallet), "USDT").0
}

fn total(h: &Harness, asset: &str) -> Decimal {
    let report = h.ledger.conservation();
    let row = report
        .iter()
        .find(|r| r.asset == asset)
        .expect("asset in the report");
    row.total
}

/// ```text
/// deposit        master spot +1,000                    External -1,000
/// spot->margin   master spot 400, margin 600
/// margin->sub A  master margin 350, sub A margin 250
/// sub A margin->spot  sub A margin 150, spot 100
/// sub A spot->master spot 100, sub A margin->master margin 150
///                master spot 500, margin 500, sub A 0
/// margin->spot   master spot 1,000, margin 0: back where it started
/// ```
#[test]
fn an_allocation_round_trip_spot_margin_sub_account_and_back_conserves_every_unit() {
    let mut h = family();
    h.ok(Command::Deposit(Deposit {
        account: MASTER,
        asset: "USDT".into(),
        amount: d("1000"),
    }));
    let (spot, margin) = (Wallet::Spot, Wallet::Margin);
    let events = h.ok(wallet_transfer(
        (MASTER, spot),
        (MASTER, margin),
        "USDT",
        "600",
    ));
    assert_eq!(
        events,
        vec![
            Event::Balance(BalanceChange {
                owner: Owner::Account(MASTER),
                asset: "USDT".into(),
                available_delta: d("-600"),
                locked_delta: d("0"),
                available: d("400"),
                locked: d("0"),
            }),
            Event::Balance(BalanceChange {
                owner: Owner::Margin(MASTER),
                asset: "USDT".into(),
                available_delta: d("600"),
                locked_delta: d("0"),
                available: d("600"),
                locked: d("0"),
            }),
        ]
    );
    h.ok(wallet_transfer(
        (MASTER, margin),
        (SUB_A, margin),
        "USDT",
        "250",
    ));
    h.ok(wallet_transfer(
        (SUB_A, margin),
        (SUB_A, spot),
        "USDT",
        "100",
    ));
    assert_eq!(usdt(&h, MASTER, spot), d("400"));
    assert_eq!(usdt(&h, MASTER, margin), d("350"));
    assert_eq!(usdt(&h, SUB_A, margin), d("150"));
    assert_eq!(usdt(&h, SUB_A, spot), d("100"));
    let report = h.ledger.conservation();
    let row = report.iter().find(|r| r.asset == "USDT").expect("USDT");
    assert_eq!(row.clients, [d("500"), d("0"), d("500")]);
    assert_eq!(row.external, d("-1000"));
    assert_eq!(row.total, d("0"));

    h.ok(wallet_transfer(
        (SUB_A, spot),
        (MASTER, spot),
        "USDT",
        "100",
    ));
    h.ok(wallet_transfer(
        (SUB_A, margin),
        (MASTER, margin),
        "USDT",
        "150",
    ));
    assert_eq!(usdt(&h, MASTER, spot), d("500"));
    assert_eq!(usdt(&h, MASTER, margin), d("500"));
    assert_eq!(usdt(&h, SUB_A, spot), d("0"));
    assert_eq!(usdt(&h, SUB_A, margin), d("0"));
    h.ok(wallet_transfer(
        (MASTER, margin),
        (MASTER, spot),
        "USDT",
        "500",
    ));
    assert_eq!(usdt(&h, MASTER, spot), d("1000"));
    assert_eq!(usdt(&h, MASTER, margin), d("0"));
    assert_eq!(total(&h, "USDT"), d("0"));

    let view = h.ledger.account_model(MASTER).expect("master");
    assert_eq!(view.subs, vec![SUB_A, SUB_B]);
    assert_eq!(view.collateral, Wallet::Margin);
    let sub = h.ledger.account_model(SUB_A).expect("sub");
    assert_eq!(sub.parent, Some(MASTER));
    assert!(!sub.can_withdraw);
    // Every wallet it touched is listed, zero or not, spot first.
    let listed: Vec<_> = sub
        .wallets
        .iter()
        .map(|w| (w.wallet, w.asset.as_str()))
        .collect();
    assert_eq!(listed, vec![(spot, "USDT"), (margin, "USDT")]);
}

/// The standard BTC-PERP (20x up to 10,000 notional, MMR 1%), master 1
/// trading from its margin wallet against account 2 (spot collateral).
fn with_long(h: &mut Harness) {
    h.ok(market_command("BTC-PERP"));
    h.ok(wallet_deposit(MASTER, Wallet::Margin, "USDT", "1000"));
    h.ok(Command::Deposit(Deposit {
        account: OTHER,
        asset: "USDT".into(),
        amount: d("100000"),
    }));
    h.ok(mark("BTC-PERP", "30000"));
    h.ok(Command::PerpFill(PerpFill {
        market: "BTC-PERP".into(),
        buyer: MASTER,
        seller: OTHER,
        size: d("0.1"),
        price: d("30000"),
        buyer_fee: d("0"),
        seller_fee: d("0"),
    }));
}

/// ```text
/// long 0.1 BTC @ 30,000 from a 1,000 USDT margin wallet
/// mark 30,000  UPNL 0     IM 3,000/20 = 150  transferable 1,000 - 150 = 850
/// mark 31,000  UPNL +100  IM 3,100/20 = 155  transferable 1,000 - 155 = 845
///              (the profit is not transferable)
/// mark 29,000  UPNL -100  IM 2,900/20 = 145  transferable 1,000 - 100 - 145 = 755
/// transfer 755 out: wallet 245, equity 245 - 100 = 145 = IM exactly
/// ```
#[test]
fn transferable_out_of_a_margin_wallet_keeps_initial_margin_and_never_counts_profit() {
    let mut h = family();
    with_long(&mut h);
    let transferable = |h: &Harness| {
        h.ledger
            .transferable(MASTER, Wallet::Margin, "USDT")
            .expect("known")
    };
    assert_eq!(transferable(&h), d("850"));
    // The spot wallet is not collateral: all of it is transferable.
    assert_eq!(
        h.ledger.transferable(MASTER, Wallet::Spot, "USDT"),
        Some(d("0"))
    );
    h.ok(mark("BTC-PERP", "31000"));
    assert_eq!(transferable(&h), d("845"));
    h.ok(mark("BTC-PERP", "29000"));
    assert_eq!(transferable(&h), d("755"));

    let out = |amount: &str| {
        wallet_transfer(
            (MASTER, Wallet::Margin),
            (MASTER, Wallet::Spot),
            "USDT",
            amount,
        )
    };
    let rejection = h.rejected(out("755.000001"), RejectCode::ExceedsTransferable);
    assert_eq!(
        rejection.message(),
        "account 1's margin wallet can transfer at most 755 USDT, not 755.000001 (initial \
         margin stays covered; unrealized profit is not transferable)"
    );
    // A withdrawal is held to the same amount.
    h.rejected(
        Command::WalletWithdraw(WalletWithdraw {
            account: MASTER,
            wallet: Wallet::Margin,
            asset: "USDT".into(),
            amount: d("800"),
        }),
        RejectCode::ExceedsTransferable,
    );
    h.ok(out("755"));
    let margin = &h.ledger.margin(MASTER).expect("margin")[0];
    assert_eq!(margin.wallet_balance, d("245"));
    assert_eq!(margin.equity, d("145"));
    assert_eq!(margin.initial_margin, d("145"));
    assert_eq!(transferable(&h), d("0"));
    h.rejected(out("0.000001"), RejectCode::ExceedsTransferable);
    // Perps never touched the spot wallet: it holds exactly what came out.
    assert_eq!(usdt(&h, MASTER, Wallet::Spot), d("755"));
    assert_eq!(total(&h, "USDT"), d("0"));
}

#[test]
fn sub_to_sub_needs_the_masters_grant_and_sub_accounts_never_reach_outsiders() {
    let mut h = family();
    h.ok(wallet_deposit(SUB_A, Wallet::Spot, "USDT", "100"));
    let a_to_b = wallet_transfer((SUB_A, Wallet::Spot), (SUB_B, Wallet::Spot), "USDT", "10");
    let rejection = h.rejected(a_to_b.clone(), RejectCode::TransferNotAllowed);
    assert_eq!(
        rejection.message(),
        "sub-account 11 may not transfer to sub-account 12: their master, account 1, has not \
         granted it"
    );
    // The legacy spot transfer obeys the same rule.
    let legacy = Command::Transfer(Transfer {
        from: SUB_A,
        to: SUB_B,
        asset: "USDT".into(),
        amount: d("10"),
    });
    h.rejected(legacy.clone(), RejectCode::TransferNotAllowed);
    h.ok(grant(SUB_A, SUB_B, true));
    h.ok(a_to_b.clone());
    h.ok(legacy);
    // The grant is one way.
    h.rejected(
        wallet_transfer((SUB_B, Wallet::Spot), (SUB_A, Wallet::Spot), "USDT", "1"),
        RejectCode::TransferNotAllowed,
    );
    h.ok(grant(SUB_A, SUB_B, false));
    h.rejected(a_to_b, RejectCode::TransferNotAllowed);
    // Outsiders: neither way, whatever the wallet.
    for (from, to) in [(SUB_A, OTHER), (OTHER, SUB_A)] {
        h.ok(wallet_deposit(from, Wallet::Spot, "USDT", "1"));
        let rejection = h.rejected(
            wallet_transfer((from, Wallet::Spot), (to, Wallet::Margin), "USDT", "1"),
            RejectCode::TransferNotAllowed,
        );
        assert!(
            rejection
                .message()
                .contains("are not master and sub-account")
        );
    }
    // A sub-account without the right cannot withdraw; once allowed it can.
    let withdraw = Command::Withdraw(Withdraw {
        account: SUB_A,
        asset: "USDT".into(),
        amount: d("1"),
    });
    let rejection = h.rejected(withdraw.clone(), RejectCode::WithdrawNotAllowed);
    assert_eq!(rejection.message(), "account 11 may not withdraw");
    h.ok(Command::SetWithdrawAllowed(SetWithdrawAllowed {
        account: SUB_A,
        allowed: true,
    }));
    h.ok(withdraw);
}

/// Assets BTC (8), USDT (6), BNB (8); pair BTC-USDT (size 4 decimals,
/// price 2, min 0.001 BTC).
///
/// ```text
/// buyer 1: 20,000 USDT, 1 BNB; hold 100 locks 15,000 USDT (0.5 @ limit 30,000)
/// seller 2: 1 BTC, 10 USDT;    hold 200 locks 0.5 BTC
///
/// fill 1  0.2 @ 29,900, buyer fee 0.015 BNB (third asset), seller fee
///         5.98 USDT (received), refund at limit 30,000:
///         quote 5,980; refund 0.2 * 100 = 20; hold 100 gives 6,000 -> 9,000
///         buyer USDT 5,000 + 20 = 5,020 avail; BTC +0.2; BNB 0.985
///         seller BTC locked 0.3; USDT 10 + 5,980 - 5.98 = 5,984.02
///         fees BNB 0.015, USDT 5.98
/// fill 2  0.1 @ 30,000, buyer fee 0.0001 BTC (received), seller fee
///         0.0001 BTC (paid: from its hold), no refund:
///         hold 100 9,000 - 3,000 = 6,000; hold 200 0.3 - 0.1001 = 0.1999
///         buyer BTC 0.2 + 0.0999 = 0.2999; seller USDT 8,984.02
///         fees BTC 0.0002
/// ```
#[test]
fn pair_fills_take_fees_in_a_third_asset_the_received_or_the_paid_one_and_refund_improvement() {
    let mut h = family();
    h.ok(Command::CreateAsset(CreateAsset {
        symbol: "BNB".into(),
        scale: 8,
    }));
    h.ok(Command::CreatePair(CreatePair {
        pair: "BTC-USDT".into(),
        base: "BTC".into(),
        quote: "USDT".into(),
        size_scale: 4,
        price_scale: 2,
        min_base_amount: d("0.001"),
    }));
    let (buyer, seller) = (MASTER, OTHER);
    h.ok(wallet_deposit(buyer, Wallet::Spot, "USDT", "20000"));
    h.ok(wallet_deposit(buyer, Wallet::Spot, "BNB", "1"));
    h.ok(wallet_deposit(seller, Wallet::Spot, "BTC", "1"));
    h.ok(wallet_deposit(seller, Wallet::Spot, "USDT", "10"));
    for (hold, account, asset, amount) in
        [(100, buyer, "USDT", "15000"), (200, seller, "BTC", "0.5")]
    {
        h.ok(Command::Lock(Lock {
            hold,
            account,
            asset: asset.into(),
            amount: d(amount),
        }));
    }
    let fee = |asset: &str, amount: &str| Fee {
        asset: asset.into(),
        amount: d(amount),
    };
    let fill = |base: &str, price: &str, bf: Fee, sf: Fee, limit: &str| {
        Command::PairFill(PairFill {
            pair: "BTC-USDT".into(),
            buy_hold: 100,
            sell_hold: 200,
            base_amount: d(base),
            price: d(price),
            buyer_fee: bf,
            seller_fee: sf,
            buyer_limit_price: d(limit),
        })
    };
    let events = h.ok(fill(
        "0.2",
        "29900",
        fee("BNB", "0.015"),
        fee("", "5.98"),
        "30000",
    ));
    assert!(events.contains(&Event::PairFill {
        pair: "BTC-USDT".into(),
        buyer,
        seller,
        base_amount: d("0.2"),
        quote_amount: d("5980"),
        price: d("29900"),
        buyer_fee_asset: "BNB".into(),
        buyer_fee: d("0.015"),
        seller_fee_asset: "USDT".into(),
        seller_fee: d("5.98"),
        price_improvement: d("20"),
    }));
    assert_eq!(
        h.balance(Owner::Account(buyer), "USDT"),
        (d("5020"), d("9000"))
    );
    assert_eq!(h.balance(Owner::Account(buyer), "BTC"), (d("0.2"), d("0")));
    assert_eq!(
        h.balance(Owner::Account(buyer), "BNB"),
        (d("0.985"), d("0"))
    );
    assert_eq!(
        h.balance(Owner::Account(seller), "BTC"),
        (d("0.5"), d("0.3"))
    );
    assert_eq!(
        h.balance(Owner::Account(seller), "USDT"),
        (d("5984.02"), d("0"))
    );
    assert_eq!(h.balance(Owner::Fees, "BNB"), (d("0.015"), d("0")));
    assert_eq!(h.balance(Owner::Fees, "USDT"), (d("5.98"), d("0")));

    h.ok(fill(
        "0.1",
        "30000",
        fee("", "0.0001"),
        fee("BTC", "0.0001"),
        "0",
    ));
    assert_eq!(h.ledger.hold(100).expect("open").remaining, d("6000"));
    assert_eq!(h.ledger.hold(200).expect("open").remaining, d("0.1999"));
    assert_eq!(
        h.balance(Owner::Account(buyer), "BTC"),
        (d("0.2999"), d("0"))
    );
    assert_eq!(
        h.balance(Owner::Account(seller), "USDT"),
        (d("8984.02"), d("0"))
    );
    assert_eq!(h.balance(Owner::Fees, "BTC"), (d("0.0002"), d("0")));
    for asset in ["BTC", "USDT", "BNB"] {
        assert_eq!(total(&h, asset), d("0"), "{asset}");
    }

    // Not covered: the third-asset fee exceeds the buyer's 0.985 BNB ...
    let r = h.rejected(
        fill("0.01", "30000", fee("BNB", "1"), fee("", "0"), "0"),
        RejectCode::FeeNotCovered,
    );
    assert_eq!(
        r.message(),
        "the buy fee 1 BNB is not covered: 0.985 BNB left for it"
    );
    // ... a paid-asset fee exceeds what the sell hold keeps after the trade.
    h.rejected(
        fill("0.1999", "30000", fee("", "0"), fee("BTC", "0.0001"), "0"),
        RejectCode::FeeNotCovered,
    );
    // Swapped holds never settle as the inverse pair.
    let swapped = Command::PairFill(PairFill {
        pair: "BTC-USDT".into(),
        buy_hold: 200,
        sell_hold: 100,
        base_amount: d("0.01"),
        price: d("30000"),
        buyer_fee: Fee::default(),
        seller_fee: Fee::default(),
        buyer_limit_price: d("0"),
    });
    let r = h.rejected(swapped, RejectCode::PairMismatch);
    assert_eq!(
        r.message(),
        "buy hold 200 holds BTC, but the buy side of BTC-USDT locks USDT"
    );
    h.rejected(
        fill("0.0005", "30000", Fee::default(), Fee::default(), "0"),
        RejectCode::BelowMinSize,
    );
    h.rejected(
        fill("0.00011", "30000", Fee::default(), Fee::default(), "0"),
        RejectCode::BadPrecision,
    );
    h.rejected(
        fill("0.01", "30000.001", Fee::default(), Fee::default(), "0"),
        RejectCode::BadPrecision,
    );
    h.rejected(
        fill("0.01", "30000", Fee::default(), Fee::default(), "29999"),
        RejectCode::InvalidPrice,
    );
    let mut unknown = fill("0.01", "30000", Fee::default(), Fee::default(), "0");
    if let Command::PairFill(f) = &mut unknown {
        f.pair = "ETH-USDT".into();
    }
    h.rejected(unknown, RejectCode::UnknownPair);
}

#[test]
fn a_hold_is_released_in_part_then_closed_by_its_last_part() {
    let mut h = family();
    h.ok(wallet_deposit(MASTER, Wallet::Spot, "USDT", "100"));
    h.ok(Command::Lock(Lock {
        hold: 7,
        account: MASTER,
        asset: "USDT".into(),
        amount: d("60"),
    }));
    let part = |amount: &str| {
        Command::ReleasePart(ReleasePart {
            hold: 7,
            amount: d(amount),
        })
    };
    h.ok(part("25.5"));
    assert_eq!(
        h.balance(Owner::Account(MASTER), "USDT"),
        (d("65.5"), d("34.5"))
    );
    let r = h.rejected(part("34.500001"), RejectCode::HoldInsufficient);
    assert_eq!(
        r.message(),
        "hold 7 has 34.5 left, cannot release 34.500001"
    );
    h.rejected(part("0"), RejectCode::InvalidAmount);
    h.rejected(part("0.0000001"), RejectCode::BadPrecision);
    let events = h.ok(part("34.5"));
    assert!(events.contains(&Event::Hold {
        hold: 7,
        account: MASTER,
        asset: "USDT".into(),
        remaining: d("0"),
        closed: true,
    }));
    assert!(h.ledger.hold(7).is_none());
    assert_eq!(
        h.balance(Owner::Account(MASTER), "USDT"),
        (d("100"), d("0"))
    );
}

#[test]
fn the_insurance_fund_is_topped_up_and_paid_out_and_fees_are_swept_with_events() {
    let mut h = family();
    h.ok(wallet_deposit(OTHER, Wallet::Spot, "USDT", "500"));
    h.ok(Command::FundInsurance(FundInsurance {
        account: OTHER,
        asset: "USDT".into(),
        amount: d("300"),
    }));
    let payout = |amount: &str| {
        Command::WithdrawInsurance(WithdrawInsurance {
            asset: "USDT".into(),
            account: MASTER,
            wallet: Wallet::Margin,
            amount: d(amount),
        })
    };
    let r = h.rejected(payout("300.000001"), RejectCode::InsufficientFunds);
    assert_eq!(
        r.message(),
        "the insurance fund holds 300 USDT, needs 300.000001"
    );
    let events = h.ok(payout("120"));
    assert!(events.contains(&Event::InsuranceFund {
        asset: "USDT".into(),
        delta: d("-120"),
        balance: d("180"),
    }));
    assert_eq!(usdt(&h, MASTER, Wallet::Margin), d("120"));

    // Fees: a spot fill pays 1 USDT to the fee account, swept to account 2.
    h.ok(wallet_deposit(MASTER, Wallet::Spot, "BTC", "1"));
    h.ok(Command::Lock(Lock {
        hold: 1,
        account: OTHER,
        asset: "USDT".into(),
        amount: d("100"),
    }));
    h.ok(Command::Lock(Lock {
        hold: 2,
        account: MASTER,
        asset: "BTC".into(),
        amount: d("0.001"),
    }));
    h.ok(Command::Fill(Fill {
        buy_hold: 1,
        sell_hold: 2,
        base_amount: d("0.001"),
        price: d("30000"),
        buyer_fee: d("0"),
        seller_fee: d("1"),
    }));
    let sweep = |amount: &str| {
        Command::SweepFees(SweepFees {
            asset: "USDT".into(),
            account: OTHER,
            wallet: Wallet::Funding,
            amount: d(amount),
        })
    };
    h.rejected(sweep("1.5"), RejectCode::InsufficientFunds);
    let events = h.ok(sweep("1"));
    assert!(events.contains(&Event::FeesSwept {
        asset: "USDT".into(),
        account: OTHER,
        wallet: Wallet::Funding,
        amount: d("1"),
    }));
    assert_eq!(h.balance(Owner::Fees, "USDT"), (d("0"), d("0")));
    assert_eq!(usdt(&h, OTHER, Wallet::Funding), d("1"));
    assert_eq!(total(&h, "USDT"), d("0"));
}

#[test]
fn bad_account_model_input_is_refused_with_its_own_reason_and_changes_nothing() {
    let mut h = family();
    h.ok(wallet_deposit(MASTER, Wallet::Spot, "USDT", "100"));
    h.ok(Command::Lock(Lock {
        hold: 5,
        account: MASTER,
        asset: "USDT".into(),
        amount: d("80"),
    }));
    // Locked funds never move.
    let r = h.rejected(
        wallet_transfer(
            (MASTER, Wallet::Spot),
            (MASTER, Wallet::Margin),
            "USDT",
            "50",
        ),
        RejectCode::InsufficientFunds,
    );
    assert_eq!(
        r.message(),
        "account 1 has 20 USDT available, needs 50: its 80 locked is never transferable"
    );
    let r = h.rejected(
        wallet_transfer((MASTER, Wallet::Spot), (MASTER, Wallet::Spot), "USDT", "1"),
        RejectCode::InvalidWallet,
    );
    assert_eq!(r.message(), "a transfer from account 1 to itself");
    let r = h.rejected(
        open(21, SUB_A, Wallet::Spot, true),
        RejectCode::InvalidParent,
    );
    assert_eq!(
        r.message(),
        "account 11 is a sub-account: a master must be a top-level account"
    );
    h.rejected(open(21, 99, Wallet::Spot, true), RejectCode::InvalidParent);
    h.rejected(
        open(21, 0, Wallet::Funding, true),
        RejectCode::InvalidWallet,
    );
    h.rejected(
        open(SUB_A, 0, Wallet::Spot, true),
        RejectCode::AccountExists,
    );
    h.rejected(open(0, 0, Wallet::Spot, true), RejectCode::InvalidAccount);
    // Grants: only between two sub-accounts of the named master.
    h.rejected(
        Command::SetTransferGrant(SetTransferGrant {
            master: OTHER,
            from: SUB_A,
            to: SUB_B,
            allowed: true,
        }),
        RejectCode::NotSubAccount,
    );
    h.rejected(grant(SUB_A, SUB_A, true), RejectCode::TransferNotAllowed);
    h.rejected(grant(SUB_A, MASTER, true), RejectCode::NotSubAccount);
    // Pairs.
    let pair = |pair: &str, base: &str, size_scale: u32, min: &str| {
        Command::CreatePair(CreatePair {
            pair: pair.into(),
            base: base.into(),
            quote: "USDT".into(),
            size_scale,
            price_scale: 2,
            min_base_amount: d(min),
        })
    };
    h.rejected(pair("btc/usdt", "BTC", 4, "0"), RejectCode::InvalidPair);
    h.rejected(pair("X", "USDT", 4, "0"), RejectCode::InvalidPair);
    h.rejected(pair("X", "BTC", 9, "0"), RejectCode::InvalidPair);
    h.rejected(pair("X", "DOGE", 4, "0"), RejectCode::UnknownAsset);
    h.rejected(pair("X", "BTC", 4, "0.00001"), RejectCode::BadPrecision);
    h.rejected(pair("X", "BTC", 4, "-1"), RejectCode::InvalidAmount);
    h.ok(pair("X", "BTC", 4, "0"));
    h.rejected(pair("X", "BTC", 4, "0"), RejectCode::PairExists);
}

#[test]
fn an_unknown_wallet_kind_is_a_decode_error_never_a_command() {
    let command = Command::WalletDeposit(WalletDeposit {
        account: 1,
        wallet: Wallet::Margin,
        asset: "USDT".into(),
        amount: d("1"),
    });
    let mut bytes = Vec::new();
    encode_envelope(&envelope("w", command), &mut bytes);
    // The wallet byte follows the id, the tag and the account varint.
    let at = 1 + 1 + 1 + 1;
    assert_eq!(bytes[at], Wallet::Margin.tag());
    bytes[at] = 7;
    assert_eq!(decode_envelope(&bytes), Err(WireError::BadWallet(7)));
    assert_eq!(Wallet::parse("savings"), None);
    assert_eq!(Wallet::parse("funding"), Some(Wallet::Funding));
}

#[test]
fn account_settings_pairs_and_wallet_balances_survive_a_rebuild_from_records() {
    let mut h = family();
    with_long(&mut h);
    h.ok(grant(SUB_A, SUB_B, true));
    h.ok(wallet_deposit(SUB_A, Wallet::Funding, "BTC", "0.5"));
    h.ok(Command::CreatePair(CreatePair {
        pair: "BTC-USDT".into(),
        base: "BTC".into(),
        quote: "USDT".into(),
        size_scale: 4,
        price_scale: 2,
        min_base_amount: d("0.001"),
    }));
    let restored =
        Ledger::from_records(LedgerConfig::default(), h.ledger.records()).expect("restores");
    assert_eq!(restored.state_hash(), h.ledger.state_hash());
    assert_eq!(restored.account_model(SUB_A), h.ledger.account_model(SUB_A));
    assert_eq!(restored.pairs(), h.ledger.pairs());
    assert_eq!(
        restored.transferable(MASTER, Wallet::Margin, "USDT"),
        Some(d("850"))
    );
    // The filters of the account listing.
    let subs = h.ledger.list_accounts(
        AccountFilter {
            parent: Some(MASTER),
            ..AccountFilter::default()
        },
        0,
        10,
    );
    let ids: Vec<_> = subs.iter().map(|a| a.account).collect();
    assert_eq!(ids, vec![SUB_A, SUB_B]);
    let trading = h.ledger.list_accounts(
        AccountFilter {
            has_positions: true,
            ..AccountFilter::default()
        },
        0,
        10,
    );
    let ids: Vec<_> = trading.iter().map(|a| a.account).collect();
    assert_eq!(ids, vec![MASTER, OTHER]);
    let funded = h.ledger.list_accounts(
        AccountFilter {
            non_zero: true,
            ..AccountFilter::default()
        },
        MASTER,
        1,
    );
    let ids: Vec<_> = funded.iter().map(|a| a.account).collect();
    assert_eq!(ids, vec![OTHER], "after the cursor, one per page");
}

#[test]
fn history_lists_balance_changes_in_log_order_with_ids_and_index_and_keeps_the_newest() {
    let mut h = family();
    h.ledger.set_log_index(40);
    h.ok(wallet_deposit(MASTER, Wallet::Spot, "USDT", "100"));
    h.ledger.set_log_index(41);
    h.ok(wallet_transfer(
        (MASTER, Wallet::Spot),
        (MASTER, Wallet::Margin),
        "USDT",
        "30",
    ));
    // A refusal records nothing.
    h.rejected(
        wallet_transfer(
            (MASTER, Wallet::Spot),
            (MASTER, Wallet::Margin),
            "USDT",
            "71",
        ),
        RejectCode::InsufficientFunds,
    );
    let page = h.ledger.history(MASTER, 0, 0, 10).expect("known");
    let rows: Vec<_> = page
        .iter()
        .map(|e| {
            (
                e.seq,
                e.log_index,
                e.wallet,
                e.available_delta,
                e.available,
                e.command_id.as_str(),
            )
        })
        .collect();
    let deposit_id = page[0].command_id.clone();
    let transfer_id = page[1].command_id.clone();
    assert_ne!(deposit_id, transfer_id);
    assert_eq!(
        rows,
        vec![
            (0, 40, Wallet::Spot, d("100"), d("100"), deposit_id.as_str()),
            (1, 41, Wallet::Spot, d("-30"), d("70"), transfer_id.as_str()),
            (
                2,
                41,
                Wallet::Margin,
                d("30"),
                d("30"),
                transfer_id.as_str()
            ),
        ]
    );
    // Pages by sequence number, and from a log index.
    let after = h.ledger.history(MASTER, 1, 0, 1).expect("known");
    assert_eq!(after.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1]);
    let from_41 = h.ledger.history(MASTER, 0, 41, 10).expect("known");
    assert_eq!(from_41.len(), 2);
    // An account without the flag keeps nothing; an unknown one is None.
    h.ok(Command::CreateAccount(CreateAccount { account: 99 }));
    h.ok(wallet_deposit(99, Wallet::Spot, "USDT", "1"));
    assert_eq!(h.ledger.history(99, 0, 0, 10), Some(vec![]));
    assert_eq!(h.ledger.history(98, 0, 0, 10), None);

    // Retention: the newest MAX_HISTORY_PER_ACCOUNT entries stay.
    let extra = MAX_HISTORY_PER_ACCOUNT as u64;
    for i in 0..extra {
        let (_, r) = h.send(wallet_deposit(MASTER, Wallet::Funding, "BTC", "0.00000001"));
        assert!(matches!(r.outcome, Outcome::Applied { .. }), "deposit {i}");
    }
    let oldest = h.ledger.history(MASTER, 0, 0, 1).expect("known");
    assert_eq!(oldest[0].seq, 3, "the three oldest were dropped");
    let kept = h
        .ledger
        .records()
        .into_iter()
        .filter(|(k, _)| RecordKind::of_key(k) == Some(RecordKind::History))
        .count();
    assert_eq!(kept, MAX_HISTORY_PER_ACCOUNT);
    h.ledger.check_invariants().expect("invariants");
    let restored =
        Ledger::from_records(LedgerConfig::default(), h.ledger.records()).expect("restores");
    assert_eq!(restored.state_hash(), h.ledger.state_hash());
    assert_eq!(
        restored.history(MASTER, 10_000, 0, 5),
        h.ledger.history(MASTER, 10_000, 0, 5)
    );
}

/// Cost to open on the standard BTC-PERP (20x below 10,000 notional), mark
/// 30,000, account 3 trading 0.1 BTC from its margin wallet:
///
/// ```text
/// buy at 30,300 (above the mark): IM at the fill price 3,030 / 20 = 151.5
///   plus the open loss 0.1 * 300 = 30: needs 181.5 in the wallet
///   (the IM at the mark alone, 150 + 30 = 180, is not enough)
/// buy at 29,700 (below the mark): IM at the mark 3,000 / 20 = 150; the
///   open profit 0.1 * 300 = 30 does not count: needs 150
///   (counting it, 120 would have been let through)
/// ```
#[test]
fn opening_a_position_away_from_the_mark_costs_im_at_the_fill_price_plus_the_open_loss() {
    let cases = [
        ("30300", "181.499999", false),
        ("30300", "181.5", true),
        ("29700", "149.999999", false),
        ("29700", "150", true),
    ];
    for (price, wallet, opens) in cases {
        let mut h = family();
        h.ok(market_command("BTC-PERP"));
        h.ok(open(3, 0, Wallet::Margin, true));
        h.ok(wallet_deposit(3, Wallet::Margin, "USDT", wallet));
        h.ok(wallet_deposit(OTHER, Wallet::Spot, "USDT", "100000"));
        h.ok(mark("BTC-PERP", "30000"));
        let fill = Command::PerpFill(PerpFill {
            market: "BTC-PERP".into(),
            buyer: 3,
            seller: OTHER,
            size: d("0.1"),
            price: d(price),
            buyer_fee: d("0"),
            seller_fee: d("0"),
        });
        if opens {
            h.ok(fill);
            let position = h.ledger.position("BTC-PERP", 3).expect("opened");
            assert_eq!(position.size, d("0.1"), "{price} {wallet}");
        } else {
            let r = h.rejected(fill, RejectCode::InsufficientMargin);
            assert!(
                r.message().starts_with("account 3: equity"),
                "{}",
                r.message()
            );
        }
    }
    // The legacy rules (a log written before the account model) keep the
    // IM at the mark with the open profit counted.
    let mut h = family();
    h.ledger.set_legacy_rules(true);
    h.ok(market_command("BTC-PERP"));
    h.ok(open(3, 0, Wallet::Margin, true));
    h.ok(wallet_deposit(3, Wallet::Margin, "USDT", "120"));
    h.ok(wallet_deposit(OTHER, Wallet::Spot, "USDT", "100000"));
    h.ok(mark("BTC-PERP", "30000"));
    h.ok(Command::PerpFill(PerpFill {
        market: "BTC-PERP".into(),
        buyer: 3,
        seller: OTHER,
        size: d("0.1"),
        price: d("29700"),
        buyer_fee: d("0"),
        seller_fee: d("0"),
    }));
}

/// Isolated margin on the standard markets (20x, MMR 1% below 10,000
/// notional), account 3 with a 1,000 USDT margin wallet:
///
/// ```text
/// isolate BTC-PERP, add 200: wallet 800, isolated 200
/// long 0.1 BTC @ 30,000 (isolated, IM 150), long 1 ETH @ 2,000 (cross, IM 100)
/// isolated liquidation price (Binance, WB = 200, TMM1 = UPNL1 = 0):
///   (200 - 0.1 * 30,000) / (0.1 * 0.01 - 0.1) = -2,800 / -0.099 = 28,282.82828
/// remove 100: margin 100 + UPNL 0 < IM 150: refused (at most 50 movable)
/// remove 50: margin 150; LP = -2,850 / -0.099 = 28,787.87879
/// mark 28,700: equity 150 - 130 = 20 < MM 28.7: the isolated long closes
///   at its bankruptcy value 3,000 - 150 = 2,850 (price 28,500); margin 0;
///   the insurance fund takes it and marks +20; the ETH position and the
///   800 in the wallet are untouched
/// ```
#[test]
fn an_isolated_position_has_its_own_liquidation_price_and_liquidation_leaving_cross_untouched() {
    let mut h = family();
    h.ok(market_command("BTC-PERP"));
    h.ok(market_command("ETH-PERP"));
    h.ok(open(3, 0, Wallet::Margin, true));
    h.ok(wallet_deposit(3, Wallet::Margin, "USDT", "1000"));
    h.ok(wallet_deposit(OTHER, Wallet::Spot, "USDT", "100000"));
    h.ok(mark("BTC-PERP", "30000"));
    h.ok(mark("ETH-PERP", "2000"));
    let isolate = |isolated| {
        Command::SetIsolated(SetIsolated {
            account: 3,
            market: "BTC-PERP".into(),
            isolated,
        })
    };
    let adjust = |delta: &str| {
        Command::AdjustIsolatedMargin(AdjustIsolatedMargin {
            account: 3,
            market: "BTC-PERP".into(),
            delta: d(delta),
        })
    };
    h.rejected(adjust("10"), RejectCode::NotIsolated);
    h.ok(isolate(true));
    h.rejected(adjust("1000.000001"), RejectCode::InsufficientMargin);
    h.ok(adjust("200"));
    assert_eq!(usdt(&h, 3, Wallet::Margin), d("800"));
    let buy = |market: &str, size: &str, price: &str| {
        Command::PerpFill(PerpFill {
            market: market.into(),
            buyer: 3,
            seller: OTHER,
            size: d(size),
            price: d(price),
            buyer_fee: d("0"),
            seller_fee: d("0"),
        })
    };
    h.ok(buy("BTC-PERP", "0.1", "30000"));
    h.ok(buy("ETH-PERP", "1", "2000"));
    let btc = h.ledger.position("BTC-PERP", 3).expect("isolated long");
    assert_eq!(btc.isolated_margin, Some(d("200")));
    assert_eq!(btc.liquidation_price, Some(d("28282.82828")));
    // The cross margin view sees only the ETH position.
    let cross = &h.ledger.margin(3).expect("margin")[0];
    assert_eq!(cross.positions.len(), 1);
    assert_eq!(cross.positions[0].market, "ETH-PERP");
    assert_eq!(cross.wallet_balance, d("800"));

    // The mode changes only while flat; removal keeps IM covered.
    h.rejected(isolate(false), RejectCode::PositionOpen);
    let r = h.rejected(adjust("-100"), RejectCode::InsufficientMargin);
    assert_eq!(
        r.message(),
        "account 3 BTC-PERP isolated margin 200: cannot move -100, at most 50 (margin + UPNL \
         stays at or above the initial margin)"
    );
    h.ok(adjust("-50"));
    let btc = h.ledger.position("BTC-PERP", 3).expect("isolated long");
    assert_eq!(btc.liquidation_price, Some(d("28787.87879")));
    assert_eq!(usdt(&h, 3, Wallet::Margin), d("850"));

    let insurance_before = h.balance(Owner::Insurance, "USDT").0;
    let events = h.ok(mark("BTC-PERP", "28700"));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Liquidation { account: 3, .. }))
    );
    assert!(h.ledger.position("BTC-PERP", 3).is_none(), "closed");
    let closed = events.iter().find_map(|e| match e {
        Event::Position {
            holder: Owner::Account(3),
            cause: PositionCause::Liquidation,
            price,
            realized_pnl,
            ..
        } => Some((*price, *realized_pnl)),
        _ => None,
    });
    assert_eq!(closed, Some((d("28500"), d("-150"))));
    let eth = h
        .ledger
        .position("ETH-PERP", 3)
        .expect("cross long untouched");
    assert_eq!(eth.size, d("1"));
    assert_eq!(usdt(&h, 3, Wallet::Margin), d("850"));
    assert_eq!(
        h.balance(Owner::Insurance, "USDT").0 - insurance_before,
        d("20")
    );
    assert_eq!(total(&h, "USDT"), d("0"));
    // Back to cross once flat: nothing left to return.
    h.ok(isolate(false));
    assert_eq!(usdt(&h, 3, Wallet::Margin), d("850"));
}

/// Open-order margin, account 3 (margin collateral, 1,000 USDT), the
/// standard BTC-PERP at mark 30,000:
///
/// ```text
/// buy order 0.1 @ 30,300: the matching engine locks its cost to open,
///   151.5 + 30 = 181.5, as hold 9 in the margin wallet
///   available 818.5, locked 181.5; transferable 818.5 (the lock is IM)
/// a second order for 900: more than the 818.5 available, refused
/// it fills: PerpOrderFill returns the 181.5 and opens the position in one
///   transaction; the hold closes; the wallet is 1,000 available again and
///   the position's own IM (at the fill price) holds 151.5 of it
/// cancel path: lock 100 (hold 10), ReleasePart 40, Release: back to 1,000
/// ```
#[test]
fn open_order_margin_is_locked_in_the_margin_wallet_counted_in_im_and_consumed_by_the_fill() {
    let mut h = family();
    h.ok(market_command("BTC-PERP"));
    h.ok(open(3, 0, Wallet::Margin, true));
    h.ok(wallet_deposit(3, Wallet::Margin, "USDT", "1000"));
    h.ok(wallet_deposit(OTHER, Wallet::Spot, "USDT", "100000"));
    h.ok(mark("BTC-PERP", "30000"));
    let lock = |hold: u64, amount: &str| {
        Command::WalletLock(WalletLock {
            hold,
            account: 3,
            wallet: Wallet::Margin,
            asset: "USDT".into(),
            amount: d(amount),
        })
    };
    h.ok(lock(9, "181.5"));
    assert_eq!(
        h.balance(Owner::Margin(3), "USDT"),
        (d("818.5"), d("181.5"))
    );
    assert_eq!(
        h.ledger.transferable(3, Wallet::Margin, "USDT"),
        Some(d("818.5"))
    );
    h.rejected(lock(10, "900"), RejectCode::InsufficientFunds);
    let r = h.rejected(
        Command::WalletLock(WalletLock {
            hold: 10,
            account: 3,
            wallet: Wallet::Funding,
            asset: "USDT".into(),
            amount: d("1"),
        }),
        RejectCode::InvalidWallet,
    );
    assert!(r.message().contains("not the funding wallet"));
    // A margin hold never settles a spot fill.
    h.ok(wallet_deposit(OTHER, Wallet::Spot, "BTC", "1"));
    h.ok(Command::Lock(Lock {
        hold: 11,
        account: OTHER,
        asset: "BTC".into(),
        amount: d("0.1"),
    }));
    h.rejected(
        Command::Fill(Fill {
            buy_hold: 9,
            sell_hold: 11,
            base_amount: d("0.001"),
            price: d("30000"),
            buyer_fee: d("0"),
            seller_fee: d("0"),
        }),
        RejectCode::HoldAssetMismatch,
    );
    let fill = |release: &str, hold: u64| {
        Command::PerpOrderFill(PerpOrderFill {
            fill: PerpFill {
                market: "BTC-PERP".into(),
                buyer: 3,
                seller: OTHER,
                size: d("0.1"),
                price: d("30300"),
                buyer_fee: d("0"),
                seller_fee: d("0"),
            },
            buy_hold: hold,
            buy_release: d(release),
            sell_hold: 0,
            sell_release: d("0"),
        })
    };
    h.rejected(fill("181.500001", 9), RejectCode::HoldInsufficient);
    h.rejected(fill("1", 11), RejectCode::HoldAssetMismatch);
    h.ok(fill("181.5", 9));
    assert!(h.ledger.hold(9).is_none(), "consumed");
    assert_eq!(h.balance(Owner::Margin(3), "USDT"), (d("1000"), d("0")));
    let position = h.ledger.position("BTC-PERP", 3).expect("opened");
    assert_eq!(position.size, d("0.1"));
    // Cancel path.
    h.ok(lock(10, "100"));
    h.ok(Command::ReleasePart(ReleasePart {
        hold: 10,
        amount: d("40"),
    }));
    assert_eq!(h.balance(Owner::Margin(3), "USDT"), (d("940"), d("60")));
    h.ok(Command::Release(Release { hold: 10 }));
    assert_eq!(h.balance(Owner::Margin(3), "USDT"), (d("1000"), d("0")));
    assert_eq!(total(&h, "USDT"), d("0"));
}
