//! Conversions of the account model between the gRPC messages and the
//! engine: the wallet enum, the account-model commands (open account,
//! grants, wallet transfers, deposits and withdrawals, insurance payouts,
//! fee sweeps, spot pairs and pair fills, partial releases), their events,
//! and the `tally.v1.Accounts` views. Kept apart from `convert` (which
//! calls in here) so each stays one screenful per concern.

use tally_ledger as ledger;
use tally_proto::v1 as pb;

use crate::grpc::convert::{ConvertError, decimal, fee};

/// A proto wallet value as the engine's wallet; a value this build does
/// not know is `UNKNOWN_WALLET`.
pub fn wallet_from_pb(field: &'static str, value: i32) -> Result<ledger::Wallet, ConvertError> {
    match pb::Wallet::try_from(value) {
        Ok(pb::Wallet::Spot) => Ok(ledger::Wallet::Spot),
        Ok(pb::Wallet::Funding) => Ok(ledger::Wallet::Funding),
        Ok(pb::Wallet::Margin) => Ok(ledger::Wallet::Margin),
        Err(_) => Err(ConvertError::UnknownWallet { field, value }),
    }
}

pub fn wallet_to_pb(wallet: ledger::Wallet) -> pb::Wallet {
    match wallet {
        ledger::Wallet::Spot => pb::Wallet::Spot,
        ledger::Wallet::Funding => pb::Wallet::Funding,
        ledger::Wallet::Margin => pb::Wallet::Margin,
    }
}

fn fee_spec(field: &'static str, spec: Option<&pb::FeeSpec>) -> Result<ledger::Fee, ConvertError> {
    let Some(spec) = spec else {
        return Ok(ledger::Fee::default());
    };
    Ok(ledger::Fee {
        asset: spec.asset.clone(),
        amount: fee(field, &spec.amount)?,
    })
}

/// The account-model command of `body`, or `None` for any other body.
pub fn command(body: &pb::command::Body) -> Option<Result<ledger::Command, ConvertError>> {
    use pb::command::Body;
    let command = || -> Result<Option<ledger::Command>, ConvertError> {
        Ok(Some(match body {
            Body::OpenAccount(c) => ledger::OpenAccount {
                account: c.account,
                parent: c.parent,
                collateral: wallet_from_pb("collateral", c.collateral)?,
                can_withdraw: c.can_withdraw,
                history: c.history,
            }
            .into(),
            Body::SetWithdrawAllowed(c) => ledger::SetWithdrawAllowed {
                account: c.account,
                allowed: c.allowed,
            }
            .into(),
            Body::SetTransferGrant(c) => ledger::SetTransferGrant {
                master: c.master,
                from: c.from,
                to: c.to,
                allowed: c.allowed,
            }
            .into(),
            Body::WalletTransfer(c) => ledger::WalletTransfer {
                from: c.from,
                from_wallet: wallet_from_pb("from_wallet", c.from_wallet)?,
                to: c.to,
                to_wallet: wallet_from_pb("to_wallet", c.to_wallet)?,
                asset: c.asset.clone(),
                amount: decimal("amount", &c.amount)?,
            }
            .into(),
            Body::WalletDeposit(c) => ledger::WalletDeposit {
                account: c.account,
                wallet: wallet_from_pb("wallet", c.wallet)?,
                asset: c.asset.clone(),
                amount: decimal("amount", &c.amount)?,
            }
            .into(),
            Body::WalletWithdraw(c) => ledger::WalletWithdraw {
                account: c.account,
                wallet: wallet_from_pb("wallet", c.wallet)?,
                asset: c.asset.clone(),
                amount: decimal("amount", &c.amount)?,
            }
            .into(),
            Body::WithdrawInsurance(c) => ledger::WithdrawInsurance {
                asset: c.asset.clone(),
                account: c.account,
                wallet: wallet_from_pb("wallet", c.wallet)?,
                amount: decimal("amount", &c.amount)?,
            }
            .into(),
            Body::SweepFees(c) => ledger::SweepFees {
                asset: c.asset.clone(),
                account: c.account,
                wallet: wallet_from_pb("wallet", c.wallet)?,
                amount: decimal("amount", &c.amount)?,
            }
            .into(),
            Body::CreatePair(c) => ledger::CreatePair {
                pair: c.pair.clone(),
                base: c.base.clone(),
                quote: c.quote.clone(),
                size_scale: c.size_scale,
                price_scale: c.price_scale,
                min_base_amount: fee("min_base_amount", &c.min_base_amount)?,
            }
            .into(),
            Body::PairFill(c) => ledger::PairFill {
                pair: c.pair.clone(),
                buy_hold: c.buy_hold,
                sell_hold: c.sell_hold,
                base_amount: decimal("base_amount", &c.base_amount)?,
                price: decimal("price", &c.price)?,
                buyer_fee: fee_spec("buyer_fee", c.buyer_fee.as_ref())?,
                seller_fee: fee_spec("seller_fee", c.seller_fee.as_ref())?,
                buyer_limit_price: fee("buyer_limit_price", &c.buyer_limit_price)?,
            }
            .into(),
            Body::ReleasePart(c) => ledger::ReleasePart {
                hold: c.hold,
                amount: decimal("amount", &c.amount)?,
            }
            .into(),
            Body::SetIsolated(c) => ledger::SetIsolated {
                account: c.account,
                market: c.market.clone(),
                isolated: c.isolated,
            }
            .into(),
            Body::AdjustIsolatedMargin(c) => ledger::AdjustIsolatedMargin {
                account: c.account,
                market: c.market.clone(),
                delta: decimal("delta", &c.delta)?,
            }
            .into(),
            _ => return Ok(None),
        }))
    };
    command().transpose()
}

/// The proto event of an account-model event, or `None` for any other.
pub fn event(event: &ledger::Event) -> Option<pb::event::Kind> {
    use pb::event::Kind;
    Some(match event {
        ledger::Event::AccountOpened {
            account,
            parent,
            collateral,
            can_withdraw,
            history,
        } => Kind::AccountOpened(pb::AccountOpenedEvent {
            account: *account,
            parent: *parent,
            collateral: wallet_to_pb(*collateral) as i32,
            can_withdraw: *can_withdraw,
            history: *history,
        }),
        ledger::Event::WithdrawAllowed { account, allowed } => {
            Kind::WithdrawAllowed(pb::SetWithdrawAllowed {
                account: *account,
                allowed: *allowed,
            })
        }
        ledger::Event::TransferGrant {
            master,
            from,
            to,
            allowed,
        } => Kind::TransferGrant(pb::SetTransferGrant {
            master: *master,
            from: *from,
            to: *to,
            allowed: *allowed,
        }),
        ledger::Event::InsuranceFund {
            asset,
            delta,
            balance,
        } => Kind::InsuranceFund(pb::InsuranceFundEvent {
            asset: asset.clone(),
            delta: delta.to_string(),
            balance: balance.to_string(),
        }),
        ledger::Event::FeesSwept {
            asset,
            account,
            wallet,
            amount,
        } => Kind::FeesSwept(pb::FeesSweptEvent {
            asset: asset.clone(),
            account: *account,
            wallet: wallet_to_pb(*wallet) as i32,
            amount: amount.to_string(),
        }),
        ledger::Event::IsolatedMargin {
            market,
            account,
            delta,
            margin,
        } => Kind::IsolatedMargin(pb::IsolatedMarginEvent {
            market: market.clone(),
            account: *account,
            delta: delta.to_string(),
            margin: margin.map(|m| m.to_string()).unwrap_or_default(),
        }),
        ledger::Event::PairCreated { pair, base, quote } => {
            Kind::PairCreated(pb::PairCreatedEvent {
                pair: pair.clone(),
                base: base.clone(),
                quote: quote.clone(),
            })
        }
        ledger::Event::PairFill {
            pair,
            buyer,
            seller,
            base_amount,
            quote_amount,
            price,
            buyer_fee_asset,
            buyer_fee,
            seller_fee_asset,
            seller_fee,
            price_improvement,
        } => Kind::PairFill(pb::PairFillEvent {
            pair: pair.clone(),
            buyer: *buyer,
            seller: *seller,
            base_amount: base_amount.to_string(),
            quote_amount: quote_amount.to_string(),
            price: price.to_string(),
            buyer_fee_asset: buyer_fee_asset.clone(),
            buyer_fee: buyer_fee.to_string(),
            seller_fee_asset: seller_fee_asset.clone(),
            seller_fee: seller_fee.to_string(),
            price_improvement: price_improvement.to_string(),
        }),
        _ => return None,
    })
}

pub fn account_model_to_pb(view: &ledger::AccountModelView) -> pb::AccountModel {
    pb::AccountModel {
        account: view.account,
        parent: view.parent.unwrap_or(0),
        collateral: wallet_to_pb(view.collateral) as i32,
        can_withdraw: view.can_withdraw,
        grants: view.grants.clone(),
        subs: view.subs.clone(),
        wallets: view
            .wallets
            .iter()
            .map(|w| pb::WalletBalance {
                wallet: wallet_to_pb(w.wallet) as i32,
                asset: w.asset.clone(),
                available: w.available.to_string(),
                locked: w.locked.to_string(),
            })
            .collect(),
    }
}

pub fn history_to_pb(entry: &ledger::HistoryView) -> pb::HistoryEntry {
    pb::HistoryEntry {
        seq: entry.seq,
        log_index: entry.log_index,
        time_ms: entry.time_ms,
        command_id: entry.command_id.clone(),
        wallet: wallet_to_pb(entry.wallet) as i32,
        asset: entry.asset.clone(),
        available_delta: entry.available_delta.to_string(),
        locked_delta: entry.locked_delta.to_string(),
        available: entry.available.to_string(),
        locked: entry.locked.to_string(),
    }
}

pub fn pair_to_pb(view: &ledger::PairView) -> pb::PairInfo {
    pb::PairInfo {
        pair: view.pair.clone(),
        base: view.base.clone(),
        quote: view.quote.clone(),
        size_scale: view.size_scale,
        price_scale: view.price_scale,
        min_base_amount: view.min_base_amount.to_string(),
    }
}

pub fn sums_to_pb(view: &ledger::ConservationView) -> pb::AssetSums {
    pb::AssetSums {
        asset: view.asset.clone(),
        spot: view.clients[0].to_string(),
        funding: view.clients[1].to_string(),
        margin: view.clients[2].to_string(),
        external: view.external.to_string(),
        fees: view.fees.to_string(),
        insurance: view.insurance.to_string(),
        pools: view.pools.to_string(),
        total: view.total.to_string(),
        isolated: view.isolated.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_wallet_is_refused_with_its_own_reason() {
        let body = pb::command::Body::WalletDeposit(pb::WalletDeposit {
            account: 1,
            wallet: 9,
            asset: "USDT".into(),
            amount: "1".into(),
        });
        let err = match command(&body) {
            Some(Err(e)) => e,
            other => panic!("expected an error, got {other:?}"),
        };
        assert_eq!(err.reason(), "UNKNOWN_WALLET");
        assert_eq!(
            err.to_string(),
            "wallet: 9 is not a known wallet (0 spot, 1 funding, 2 margin)"
        );
    }

    #[test]
    fn every_account_model_event_has_a_proto_form() {
        use ledger::{Decimal, Event, Wallet};
        let events = [
            Event::AccountOpened {
                account: 1,
                parent: 0,
                collateral: Wallet::Margin,
                can_withdraw: true,
                history: true,
            },
            Event::WithdrawAllowed {
                account: 1,
                allowed: false,
            },
            Event::TransferGrant {
                master: 1,
                from: 11,
                to: 12,
                allowed: true,
            },
            Event::InsuranceFund {
                asset: "USDT".into(),
                delta: Decimal::ONE,
                balance: Decimal::ONE,
            },
            Event::FeesSwept {
                asset: "USDT".into(),
                account: 2,
                wallet: Wallet::Funding,
                amount: Decimal::ONE,
            },
            Event::IsolatedMargin {
                market: "BTC-PERP".into(),
                account: 3,
                delta: Decimal::ONE,
                margin: None,
            },
            Event::PairCreated {
                pair: "BTC-USDT".into(),
                base: "BTC".into(),
                quote: "USDT".into(),
            },
        ];
        for e in &events {
            assert!(event(e).is_some(), "{e:?}");
            assert!(crate::grpc::convert::event_to_pb(e).kind.is_some(), "{e:?}");
        }
    }

    #[test]
    fn a_pair_fill_converts_with_empty_fees_and_limit_as_zero() {
        let body = pb::command::Body::PairFill(pb::PairFill {
            pair: "BTC-USDT".into(),
            buy_hold: 1,
            sell_hold: 2,
            base_amount: "0.2".into(),
            price: "29900".into(),
            buyer_fee: Some(pb::FeeSpec {
                asset: "BNB".into(),
                amount: "0.015".into(),
            }),
            seller_fee: None,
            buyer_limit_price: String::new(),
        });
        let Some(Ok(ledger::Command::PairFill(fill))) = command(&body) else {
            panic!("converts");
        };
        assert_eq!(fill.buyer_fee.asset, "BNB");
        assert_eq!(fill.seller_fee, ledger::Fee::default());
        assert!(fill.buyer_limit_price.is_zero());
    }
}
