//! The account model in `tallyctl`: opening accounts with a master,
//! wallets, grants and withdrawal rights, wallet transfers, deposits and
//! withdrawals, insurance payouts and fee sweeps, pairs and pair fills,
//! partial releases; and the listings (assets, pairs, markets, accounts,
//! holds), an account's wallets, its history, the transferable amount and
//! the conservation report. Cut like every area into command line
//! ([`args`]), execution ([`run`]) and output ([`render`]).

pub mod args;
pub mod render;
pub mod run;
